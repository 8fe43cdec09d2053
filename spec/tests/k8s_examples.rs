//! The Kubernetes documentation's example manifests (a copy of
//! kubernetes/website `content/en/examples/`, each file's source commit in
//! `SOURCES.tsv`) against a checked-in expectation table: for every file,
//! whether berth accepts it, accepts it with warnings (which), or refuses it
//! (why). Any change in outcome fails until the table is regenerated:
//!
//! ```sh
//! BERTH_BLESS=1 cargo test -p berth-spec --test k8s_examples
//! ```
//!
//! A refusal is acceptable only for an object that is invalid or needs a
//! cluster; the table is what reviewers read to check that.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_spec::{Diagnostic, Severity};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/k8s-examples")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

/// A diagnostic without its line (the table is about outcomes, not places).
fn finding(d: &Diagnostic) -> String {
    let mut s = String::new();
    if let Some((kind, name)) = &d.object {
        s.push_str(&format!("{kind} {name:?}: "));
    }
    if let Some(p) = &d.path {
        s.push_str(p);
        s.push_str(": ");
    }
    s.push_str(&d.message);
    s
}

/// The table's entry for one file: `accepted`, `warned` or `refused`, and
/// one indented line per finding (errors first).
fn outcome(rel: &str, text: &str) -> (String, &'static str) {
    let parsed = berth_spec::parse_str(rel, text);
    let mut diags = parsed.diagnostics.clone();
    // `berth validate FILE` also applies the rules across objects
    diags.extend(berth_spec::validate_set(&parsed.objects));
    diags.sort();
    diags.dedup();
    let errors = diags.iter().any(|d| d.severity == Severity::Error);
    let verdict = if errors {
        "refused"
    } else if diags.is_empty() {
        "accepted"
    } else {
        "warned"
    };
    let mut s = format!("{rel}: {verdict}\n");
    for d in &diags {
        let sev = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        s.push_str(&format!("  {sev}: {}\n", finding(d)));
    }
    (s, verdict)
}

#[test]
fn upstream_examples_match_the_expectation_table() {
    let root = root();
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    assert!(files.len() >= 40, "{} files", files.len());
    let mut body = String::new();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap().display().to_string();
        let text = std::fs::read_to_string(f).unwrap();
        let (entry, verdict) = outcome(&rel, &text);
        *counts.entry(verdict).or_default() += 1;
        body.push_str(&entry);
    }
    let summary = format!(
        "# berth validate on {} upstream example files: accepted {}, warned {}, refused {}\n# regenerate: BERTH_BLESS=1 cargo test -p berth-spec --test k8s_examples\n",
        files.len(),
        counts.get("accepted").copied().unwrap_or(0),
        counts.get("warned").copied().unwrap_or(0),
        counts.get("refused").copied().unwrap_or(0),
    );
    let got = format!("{summary}{body}");
    let table = root.join("EXPECTED.txt");
    if std::env::var_os("BERTH_BLESS").is_some() {
        std::fs::write(&table, &got).unwrap();
        eprintln!("{summary}");
        return;
    }
    let want = std::fs::read_to_string(&table).unwrap_or_default();
    if want != got {
        let diff: Vec<String> = want
            .lines()
            .zip(got.lines())
            .filter(|(a, b)| a != b)
            .take(10)
            .map(|(a, b)| format!("- {a}\n+ {b}"))
            .collect();
        panic!(
            "the outcomes differ from {} (first differences below; regenerate with BERTH_BLESS=1 and review the diff):\n{}\n{summary}",
            table.display(),
            diff.join("\n")
        );
    }
}

/// Every file in the copy names its source commit.
#[test]
fn every_example_names_its_source_commit() {
    let root = root();
    let sources = std::fs::read_to_string(root.join("SOURCES.tsv")).unwrap();
    let listed: Vec<&str> = sources
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .collect();
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    for f in &files {
        let rel = f.strip_prefix(&root).unwrap().display().to_string();
        assert!(
            listed.contains(&rel.as_str()),
            "{rel} is not in SOURCES.tsv"
        );
    }
    for l in sources.lines().skip(1) {
        let mut cols = l.split('\t');
        let (path, commit) = (cols.next().unwrap(), cols.next().unwrap_or_default());
        assert!(root.join(path).is_file(), "{path} is listed but missing");
        assert!(
            commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()),
            "{path}: {commit:?} is not a commit id"
        );
    }
}
