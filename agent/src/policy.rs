//! The operator's policy file (`--policy FILE`, `BERTH_POLICY`, `policy:` in
//! the config file): read, parse and check it before anything starts.
//!
//! The rules themselves are [`berth_spec::validate::policy`]; the sources'
//! merge applies them to every Pod and pod template ([`crate::sources`]), and
//! `berth validate --policy FILE` applies them to files.
//!
//! A policy that cannot be read, parsed or understood is an error that stops
//! the agent at start (exit 64): never a silent "allow all". An empty file is
//! such an error too.

use std::io::Read;
use std::path::{Path, PathBuf};

use berth_spec::validate::policy::{Policy, PolicyFile};

/// A policy file larger than this is refused (a real one is a few hundred bytes).
pub const MAX_POLICY_BYTES: u64 = 64 * 1024;

/// The policy in force and the file it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedPolicy {
    pub path: PathBuf,
    pub policy: Policy,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("reading policy file {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "policy file {path} is empty (write apiVersion: berth.dev/v1alpha1, kind: Policy and a spec)"
    )]
    Empty { path: String },
    #[error("policy file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("policy file {path}: {}", problems.join("; "))]
    Invalid { path: String, problems: Vec<String> },
}

/// Parse and check the text of the policy file at `path` (used for messages only).
///
/// # Errors
/// Empty text, YAML or field errors (unknown fields included: a misspelt
/// rule must not silently fall back to its default), and the problems
/// [`PolicyFile::problems`] finds.
pub fn parse(path: &str, text: &str) -> Result<LoadedPolicy, PolicyError> {
    let blank = text.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..."
    });
    if blank {
        return Err(PolicyError::Empty {
            path: path.to_string(),
        });
    }
    let file: PolicyFile = serde_norway::from_str(text).map_err(|e| PolicyError::Parse {
        path: path.to_string(),
        message: e.to_string(),
    })?;
    let problems = file.problems();
    if !problems.is_empty() {
        return Err(PolicyError::Invalid {
            path: path.to_string(),
            problems,
        });
    }
    Ok(LoadedPolicy {
        path: PathBuf::from(path),
        policy: file.spec,
    })
}

/// Read a file of at most `max` bytes as UTF-8 text (a device such as
/// `/dev/zero` ends at the bound instead of filling memory).
///
/// # Errors
/// Larger than `max`, not UTF-8, a directory, or any other I/O error.
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<String> {
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    String::from_utf8(buf)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Read and check the policy file at `path`.
pub fn load(path: &Path) -> Result<LoadedPolicy, PolicyError> {
    let shown = path.display().to_string();
    let text = read_bounded(path, MAX_POLICY_BYTES).map_err(|source| PolicyError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&shown, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_policy() {
        let p = parse(
            "/etc/berth/policy.yaml",
            "apiVersion: berth.dev/v1alpha1\nkind: Policy\nmetadata: {name: edge}\nspec:\n  hostNetwork: true\n  allowedHostPaths:\n  - {pathPrefix: /srv, readOnly: true}\n",
        )
        .unwrap();
        assert!(p.policy.host_network);
        assert!(!p.policy.privileged);
        assert_eq!(p.policy.allowed_host_paths.len(), 1);
    }

    #[test]
    fn bad_policies_are_errors_never_allow_all() {
        let msg = |text: &str| parse("p.yaml", text).unwrap_err().to_string();
        assert!(msg("").contains("p.yaml is empty"), "{}", msg(""));
        assert!(msg("  \n# only a comment\n").contains("is empty"));
        let m =
            msg("apiVersion: berth.dev/v1alpha1\nkind: Policy\nspec:\n  privileged: yes please\n");
        assert!(m.starts_with("policy file p.yaml: "), "{m}");
        let m = msg("apiVersion: berth.dev/v1alpha1\nkind: Policy\nspec:\n  priviliged: true\n");
        assert!(m.contains("priviliged"), "{m}");
        let m = msg("apiVersion: v1\nkind: Policy\nspec: {}\n");
        assert!(m.contains("apiVersion: \"v1\" is not supported"), "{m}");
        let m = msg("[1, 2]\n");
        assert!(m.starts_with("policy file p.yaml: "), "{m}");
    }

    #[test]
    fn reading_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big.yaml");
        std::fs::write(&big, vec![b'#'; MAX_POLICY_BYTES as usize + 1]).unwrap();
        let e = load(&big).unwrap_err();
        assert!(
            crate::sources::git::error_chain(&e).contains("larger than 65536 bytes"),
            "{e:?}"
        );
        let e = load(dir.path()).unwrap_err();
        assert!(matches!(e, PolicyError::Read { .. }), "{e:?}");
        let e = load(&dir.path().join("missing.yaml")).unwrap_err();
        assert!(e.to_string().contains("missing.yaml"), "{e}");
        let ok = dir.path().join("ok.yaml");
        std::fs::write(
            &ok,
            "apiVersion: berth.dev/v1alpha1\nkind: Policy\nspec: {}\n",
        )
        .unwrap();
        assert_eq!(load(&ok).unwrap().policy, Policy::default());
    }
}
