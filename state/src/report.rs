//! One path for every file berth could not read: whoever finds one (the
//! records, IPAM, Services, the rollout state when they are quarantined; the
//! runtime when a container's `spec.json` or the supervisor's files do not
//! decode and are kept in place) reports it here, and the reconciler takes
//! the reports of its own state and run dirs and turns each into an event
//! and a status condition.
//!
//! The list is process-wide (the readers live in several crates and run
//! before the reconciler does), bounded, and a file kept in place is
//! reported once per path however often it is read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Reports kept until taken; later ones are dropped (and counted).
const MAX_PENDING: usize = 256;
/// Paths of files kept in place already reported.
const MAX_SEEN: usize = 4096;

/// A file that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProblem {
    /// What the file holds (`"pod records"`, `"container spec"`).
    pub what: String,
    pub path: PathBuf,
    /// Where it was moved (quarantined); `None` when it was kept in place.
    pub moved_to: Option<PathBuf>,
    /// Why it could not be read (the whole error chain).
    pub cause: String,
}

impl FileProblem {
    /// One line naming the file and where it went.
    pub fn message(&self) -> String {
        match &self.moved_to {
            Some(to) => format!(
                "{} {} could not be read ({}); moved aside to {}",
                self.what,
                self.path.display(),
                self.cause,
                to.display()
            ),
            None => format!(
                "{} {} could not be read ({}); kept in place",
                self.what,
                self.path.display(),
                self.cause
            ),
        }
    }
}

struct Reports {
    pending: Vec<FileProblem>,
    dropped: u64,
    seen: BTreeSet<PathBuf>,
}

static REPORTS: Mutex<Reports> = Mutex::new(Reports {
    pending: Vec::new(),
    dropped: 0,
    seen: BTreeSet::new(),
});

fn reports() -> std::sync::MutexGuard<'static, Reports> {
    REPORTS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The error and its sources, `: `-separated.
pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        s.push_str(": ");
        s.push_str(&e.to_string());
        cur = e.source();
    }
    s
}

/// Report a file that could not be read. A file kept in place is reported
/// the first time only; `false` when this report was not new (the caller
/// then need not log it again).
pub fn report(problem: FileProblem) -> bool {
    let mut r = reports();
    if problem.moved_to.is_none() {
        if r.seen.contains(&problem.path) || r.seen.len() >= MAX_SEEN {
            return false;
        }
        r.seen.insert(problem.path.clone());
    }
    if r.pending.len() >= MAX_PENDING {
        r.dropped += 1;
        return true;
    }
    r.pending.push(problem);
    true
}

/// Report a file kept in place because it could not be read in full;
/// `false` when it was reported before.
pub fn report_unreadable(what: &str, path: &Path, cause: &dyn std::error::Error) -> bool {
    report(FileProblem {
        what: what.into(),
        path: path.to_path_buf(),
        moved_to: None,
        cause: chain(cause),
    })
}

/// Take the reports of files beneath any of `roots` (the others stay for
/// their owner), oldest first.
pub fn take_reports(roots: &[&Path]) -> Vec<FileProblem> {
    let mut r = reports();
    let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut r.pending)
        .into_iter()
        .partition(|p| roots.iter().any(|root| p.path.starts_with(root)));
    r.pending = rest;
    mine
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_taken_by_root_and_in_place_ones_once() {
        let root = Path::new("/report-test-root");
        let other = Path::new("/report-test-other");
        let p = |dir: &Path, name: &str, moved: bool| FileProblem {
            what: "thing".into(),
            path: dir.join(name),
            moved_to: moved.then(|| dir.join(format!("{name}.quarantined-1-0"))),
            cause: "bad".into(),
        };
        report(p(root, "a.json", true));
        report(p(other, "b.json", true));
        assert!(report_unreadable(
            "spec",
            &root.join("c.json"),
            &std::io::Error::other("x")
        ));
        assert!(!report_unreadable(
            "spec",
            &root.join("c.json"),
            &std::io::Error::other("x")
        ));
        let mine = take_reports(&[root]);
        assert_eq!(mine.len(), 2, "{mine:?}");
        assert!(
            mine[0]
                .message()
                .contains("moved aside to /report-test-root/a.json.quarantined-1-0")
        );
        assert!(
            mine[1].message().ends_with("(x); kept in place"),
            "{}",
            mine[1].message()
        );
        assert!(take_reports(&[root]).is_empty());
        assert_eq!(take_reports(&[other]).len(), 1);
    }
}
