//! How much log a container keeps on disk.
//!
//! Each run of a container (restart count `n`) logs to
//! `<log dir>/<pod key>/<container>/<n>.log`, rotated by the supervisor into
//! `<n>.log.1 .. <n>.log.<files-1>`. Kept are only the current run and the
//! newest earlier one (what `kubectl logs --previous` shows), together within
//! the per-container cap `max_bytes * max_files`: before a run starts, older
//! runs are deleted, the previous run is trimmed to half the cap (oldest
//! rotated files first), and the new run's rotation gets what is left.
//! A pod's whole log dir goes with the pod ([`remove_pod`]).

use std::fs;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Rotation settings for one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogBudget {
    pub max_bytes: u64,
    pub max_files: u32,
}

/// Smallest file size the rotation is given (the supervisor's own floor).
const MIN_FILE: u64 = 1024;

/// One log file of a run: (run, rotation index, path); index 0 is the live file.
type LogFile = (u32, u32, PathBuf);

/// `<n>.log` -> (n, 0), `<n>.log.<k>` -> (n, k); anything else: `None`.
fn parse_name(name: &str) -> Option<(u32, u32)> {
    let (run, rest) = name.split_once(".log")?;
    let run = run.parse().ok()?;
    match rest {
        "" => Some((run, 0)),
        r => Some((run, r.strip_prefix('.')?.parse().ok()?)),
    }
}

fn log_files(dir: &Path) -> io::Result<Vec<LogFile>> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let is_file = e.file_type().map(|t| t.is_file()).unwrap_or(false);
        if let (true, Some((run, idx))) = (is_file, parse_name(&e.file_name().to_string_lossy())) {
            out.push((run, idx, e.path()));
        }
    }
    Ok(out)
}

fn size(p: &Path) -> u64 {
    fs::symlink_metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// Before run `run` of the container whose logs are in `dir` starts: delete
/// every run's logs but this one's and the newest earlier run's, trim that
/// one to half of the cap, and return the rotation for this run so that
/// both stay within `max_bytes * max_files` together.
pub fn prepare(dir: &Path, run: u32, max_bytes: u64, max_files: u32) -> io::Result<LogBudget> {
    let max_files = max_files.max(1);
    let max_bytes = max_bytes.max(MIN_FILE);
    let cap = max_bytes.saturating_mul(max_files as u64);
    let files = log_files(dir)?;
    let previous = files.iter().map(|f| f.0).filter(|r| *r < run).max();
    let mut kept: Vec<LogFile> = Vec::new();
    for f in files {
        if f.0 == run || Some(f.0) == previous {
            kept.push(f);
        } else {
            remove(&f.2)?;
        }
    }
    // the previous run: oldest rotated files go first
    let mut prev: Vec<LogFile> = kept.iter().filter(|f| f.0 != run).cloned().collect();
    prev.sort_by_key(|f| std::cmp::Reverse(f.1));
    let half = cap / 2;
    let mut prev_total: u64 = prev.iter().map(|f| size(&f.2)).sum();
    for f in &prev {
        if prev_total <= half {
            break;
        }
        if f.1 == 0 {
            // only the live file is left and it alone is too big: keep its end
            keep_tail(&f.2, half)?;
            prev_total = size(&f.2);
        } else {
            prev_total -= size(&f.2);
            remove(&f.2)?;
        }
    }
    let current: u64 = kept.iter().filter(|f| f.0 == run).map(|f| size(&f.2)).sum();
    let left = cap.saturating_sub(prev_total).saturating_sub(current);
    Ok(LogBudget {
        max_bytes: (left / max_files as u64).clamp(MIN_FILE, max_bytes),
        max_files,
    })
}

fn remove(p: &Path) -> io::Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Cut `p` to at most its last `keep` bytes, starting at a line.
fn keep_tail(p: &Path, keep: u64) -> io::Result<()> {
    let mut f = fs::File::open(p)?;
    let len = f.metadata()?.len();
    if len <= keep {
        return Ok(());
    }
    f.seek(SeekFrom::Start(len - keep))?;
    let mut tail = Vec::with_capacity(keep as usize);
    f.take(keep).read_to_end(&mut tail)?;
    let start = tail
        .iter()
        .position(|b| *b == b'\n')
        .map_or(tail.len(), |i| i + 1);
    berth_supervise::layout::write_atomic_in(p, &tail[start..], 0o600)
}

/// Delete the log dir of a pod (`<log dir>/<pod key>`). Idempotent.
pub fn remove_pod(log_dir: &Path, pod_key: &str) -> io::Result<()> {
    if !is_component(pod_key) {
        return Err(io::Error::other(format!("bad pod key {pod_key:?}")));
    }
    match fs::remove_dir_all(log_dir.join(pod_key)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// One plain path component: joined below a root, it stays below it.
pub fn is_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, len: usize) {
        let mut line = vec![b'x'; len.saturating_sub(1)];
        line.push(b'\n');
        fs::write(dir.join(name), line).unwrap();
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn names_parse() {
        assert_eq!(parse_name("3.log"), Some((3, 0)));
        assert_eq!(parse_name("3.log.2"), Some((3, 2)));
        assert_eq!(parse_name("x.log"), None);
        assert_eq!(parse_name("3.log.x"), None);
        assert_eq!(parse_name("3.logs"), None);
        assert!(!is_component("..") && !is_component("a/b") && is_component("default_p_1"));
    }

    #[test]
    fn keeps_this_run_and_the_previous_within_the_cap() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        for n in 0..4 {
            write(dir, &format!("{n}.log"), 4000);
            write(dir, &format!("{n}.log.1"), 10_000);
            write(dir, &format!("{n}.log.2"), 10_000);
        }
        fs::write(dir.join("notes.txt"), "not a log").unwrap();
        // run 5 starts (run 4 failed to start, so 3 is the previous run)
        let b = prepare(dir, 5, 10_000, 3).unwrap();
        // cap 30000: run 3 trimmed to <= 15000 (its oldest rotated file went)
        assert_eq!(names(dir), vec!["3.log", "3.log.1", "notes.txt"]);
        assert_eq!(b.max_files, 3);
        assert_eq!(b.max_bytes, (30_000 - 14_000) / 3);
        // the next run: 5 is the previous one, 3 goes
        write(dir, "5.log", 2000);
        let b = prepare(dir, 6, 10_000, 3).unwrap();
        assert_eq!(names(dir), vec!["5.log", "notes.txt"]);
        assert_eq!(b.max_bytes, (30_000 - 2000) / 3);
        let b = prepare(&dir.join("new"), 0, 10_000, 3).unwrap();
        assert_eq!(b.max_bytes, 10_000, "never more than the configured size");
    }

    #[test]
    fn an_oversized_previous_file_keeps_its_end() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let text: String = (0..1000).map(|i| format!("line {i}\n")).collect();
        fs::write(dir.join("0.log"), &text).unwrap();
        prepare(dir, 1, 1024, 2).unwrap();
        let left = fs::read_to_string(dir.join("0.log")).unwrap();
        assert!(left.len() <= 1024 && left.ends_with("line 999\n"), "{left}");
        assert!(left.starts_with("line "), "cut at a line start: {left:.20}");
        assert!(prepare(&dir.join("missing"), 0, 1024, 2).is_ok());
    }

    #[test]
    fn pod_logs_are_removed_and_keys_checked() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("ns_p_1/c")).unwrap();
        write(&d.path().join("ns_p_1/c"), "0.log", 10);
        remove_pod(d.path(), "ns_p_1").unwrap();
        assert!(!d.path().join("ns_p_1").exists());
        remove_pod(d.path(), "ns_p_1").unwrap();
        assert!(remove_pod(d.path(), "..").is_err());
        assert!(d.path().exists());
    }
}
