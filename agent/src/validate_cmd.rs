//! `berth validate [--policy FILE] PATH...`: read files and directories
//! (recursively), print every finding as `file:line:col: ...`, a summary,
//! exit 1 on any error. With `--policy`, objects the operator policy refuses
//! are errors too (as the agent would refuse them; nodeSelectors are not
//! considered); a policy file that cannot be used exits 64.
//! Never touches the host beyond reading the given paths.

use std::path::{Path, PathBuf};

use berth_spec::validate::policy::{Policy, check_objects};
use berth_spec::{Diagnostic, Location, Severity};

use crate::sources::scan::scan_dir;

/// Everything found under `paths`: (files read, objects, diagnostics sorted by place).
pub fn check(paths: &[PathBuf], policy: Option<&Policy>) -> (usize, usize, Vec<Diagnostic>) {
    let mut files: Vec<(PathBuf, std::io::Result<String>)> = Vec::new();
    let mut diags = Vec::new();
    for p in paths {
        let err = |msg: String| Diagnostic {
            severity: Severity::Error,
            location: Location {
                file: p.display().to_string(),
                line: 1,
                column: 1,
            },
            object: None,
            path: None,
            message: msg,
        };
        match std::fs::metadata(p) {
            Err(e) => diags.push(err(format!("cannot read: {e}"))),
            Ok(m) if m.is_dir() => match scan_dir(p) {
                Ok(found) if found.is_empty() => diags.push(err(
                    "no manifest files (*.yaml, *.yml) in this directory".into(),
                )),
                Ok(found) => files.extend(found),
                Err(e) => diags.push(err(format!("cannot read directory: {e}"))),
            },
            Ok(_) => files.push((p.clone(), crate::sources::scan::read_manifest(p))),
        }
    }
    let mut objects = Vec::new();
    let n_files = files.len();
    for (path, text) in files {
        match text {
            Ok(text) => {
                let parsed = berth_spec::parse_str(&display(&path), &text);
                objects.extend(parsed.objects);
                diags.extend(parsed.diagnostics);
            }
            Err(e) => diags.push(Diagnostic {
                severity: Severity::Error,
                location: Location {
                    file: display(&path),
                    line: 1,
                    column: 1,
                },
                object: None,
                path: None,
                message: format!("cannot read: {e}"),
            }),
        }
    }
    diags.extend(berth_spec::validate_set(&objects));
    if let Some(p) = policy {
        diags.extend(check_objects(p, &objects));
    }
    diags.sort_by(|a, b| a.location.cmp(&b.location).then(a.message.cmp(&b.message)));
    diags.dedup();
    (n_files, objects.len(), diags)
}

fn display(p: &Path) -> String {
    p.display().to_string()
}

/// Run the subcommand; returns the process exit code.
pub fn run(paths: &[PathBuf], policy: Option<&Path>) -> i32 {
    let policy = match policy.map(crate::policy::load).transpose() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("berth: {}", crate::sources::git::error_chain(&e));
            return crate::config::EXIT_CONFIG;
        }
    };
    let (files, objects, diags) = check(paths, policy.as_ref().map(|p| &p.policy));
    for d in &diags {
        println!("{d}");
    }
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diags.len() - errors;
    eprintln!("{files} file(s), {objects} object(s): {errors} error(s), {warnings} warning(s)");
    i32::from(errors > 0)
}
