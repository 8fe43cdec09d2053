//! The directory source: `*.yaml`/`*.yml` under a directory, watched with
//! `notify` (inotify), debounced here, plus a periodic full re-read as a
//! safety net. A burst of events ends after 200 ms of quiet while some file is
//! still open for writing (written in place and not closed yet), after 10 ms
//! while a manifest removed or renamed away has not come back (a deletion,
//! or the gap in an editor's save), and after only 3 ms once every written
//! file was closed or renamed into place (the common
//! case: `cp`, `mv`, an editor's save, `git checkout`: one tool's files land
//! microseconds apart, so 3 ms still makes them one reload). A burst never
//! delays a reload by more than 2 s.
//!
//! Every change burst becomes one full re-scan; files whose bytes did not
//! change are not parsed again (content hash). Per file the last good parse is
//! kept: a file that now fails to parse or validate is reported with
//! file:line and the objects it last defined stay in the desired set; a removed
//! file drops its objects. A missing, unreadable or empty directory is an
//! error in status and keeps the previous set (never "delete everything").
//!
//! `complete` (the reconciler may prune) is false until the directory was read
//! once, and while a file is refused that never had a good version in this
//! run: after an agent restart its objects may still be running, and pruning
//! them because the file is broken now would tear them down.
//!
//! The scan is bounded ([`super::scan`]): a symlink loop is an error entry
//! (the source stays incomplete, so nothing is pruned, until it is removed);
//! a tree beyond the file, directory or byte bounds is an error for the
//! whole source, keeping the previous objects. notify watches the tree
//! without following symlinks; changes below a symlinked directory are seen
//! at the next periodic re-read.
//!
//! Debouncing is done here rather than with `notify-debouncer-full`: that
//! crate's thread wakes every timeout/4 forever (50 ms at 200 ms), and berth
//! must not use CPU while nothing changes. We re-scan the whole tree on every
//! burst anyway, so its per-file event bookkeeping buys nothing.

use std::collections::{BTreeMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_spec::{Diagnostic, Location, Severity, Sourced};
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use super::scan::{Scanned, scan_dir};
use super::{DiagView, SourceHandle, SourceReport, SourceStatus, rfc3339};

/// Quiet time that ends a burst of file events while a file is still open
/// for writing.
pub const DEBOUNCE: Duration = Duration::from_millis(200);
/// Quiet time that ends a burst once every written file was closed.
pub const SETTLE: Duration = Duration::from_millis(3);
/// Quiet time that ends a burst while a manifest removed or renamed away has
/// not come back: an editor's save or `git checkout` that replaces a file
/// leaves a moment without it, and a writer descheduled there would get the
/// file's objects pruned and recreated. Longer than [`SETTLE`], short enough
/// that deleting a manifest still takes effect at once.
pub const GAP_SETTLE: Duration = Duration::from_millis(10);
/// A burst never delays a reload longer than this.
const MAX_BURST: Duration = Duration::from_secs(2);
/// Re-read interval while the directory is missing or unreadable.
const RETRY_MISSING: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
struct FileState {
    hash: [u8; 32],
    /// Objects of the last good version (empty if never good in this run).
    good: Vec<Sourced>,
    ever_good: bool,
    diagnostics: Vec<Diagnostic>,
    /// Objects of kinds berth does not run in the current content.
    skipped: Vec<berth_spec::Skipped>,
    /// The current content is refused.
    bad: bool,
}

/// The pure part of the directory source: scan results in, report out.
#[derive(Debug)]
pub struct DirState {
    root: PathBuf,
    files: BTreeMap<PathBuf, FileState>,
    read_once: bool,
    revision: Option<String>,
    last_error: Option<String>,
    last_sync: Option<SystemTime>,
}

impl DirState {
    pub fn new(root: PathBuf) -> Self {
        DirState {
            root,
            files: BTreeMap::new(),
            read_once: false,
            revision: None,
            last_error: None,
            last_sync: None,
        }
    }

    /// Fold one scan of the directory into the state and say what the source wants now.
    pub fn apply(&mut self, scan: io::Result<Vec<Scanned>>, now: SystemTime) -> SourceReport {
        match scan {
            Err(e) => {
                self.last_error = Some(format!(
                    "cannot read directory {}: {e}; keeping the previous objects",
                    self.root.display()
                ));
            }
            Ok(files) if files.is_empty() => {
                self.last_error = Some(format!(
                    "no manifest files (*.yaml, *.yml) in {}; an empty source is an error, keeping the previous objects",
                    self.root.display()
                ));
            }
            Ok(files) => {
                let mut hasher = Sha256::new();
                let mut next = BTreeMap::new();
                for (path, text) in files {
                    let old = self.files.remove(&path);
                    let state = match text {
                        Err(e) => read_failed(&path, &e, old),
                        Ok(text) => {
                            hasher.update(path.to_string_lossy().as_bytes());
                            hasher.update([0]);
                            hasher.update(text.as_bytes());
                            hasher.update([0]);
                            parse_file(&path, &text, old)
                        }
                    };
                    next.insert(path, state);
                }
                for (path, _) in std::mem::take(&mut self.files) {
                    tracing::info!(path = %path.display(), "manifest file removed; its objects are dropped");
                }
                self.files = next;
                self.revision = Some(hex::encode(hasher.finalize()));
                self.last_error = None;
                self.last_sync = Some(now);
                self.read_once = true;
            }
        }
        self.report()
    }

    fn report(&self) -> SourceReport {
        let objects: Vec<Sourced> = self
            .files
            .values()
            .flat_map(|f| f.good.iter().cloned())
            .collect();
        let never_good_and_bad = self.files.values().any(|f| f.bad && !f.ever_good);
        let diagnostics: Vec<DiagView> = self
            .files
            .values()
            .flat_map(|f| f.diagnostics.iter().map(DiagView::from))
            .collect();
        let files_with_errors = self
            .files
            .iter()
            .filter(|(_, f)| f.bad)
            .map(|(p, _)| p.display().to_string())
            .collect();
        let skipped: Vec<berth_spec::Skipped> = self
            .files
            .values()
            .flat_map(|f| f.skipped.iter().cloned())
            .collect();
        SourceReport {
            complete: self.read_once && !never_good_and_bad,
            status: SourceStatus {
                kind: "directory",
                location: self.root.display().to_string(),
                revision: self.revision.clone(),
                complete: self.read_once && !never_good_and_bad,
                last_sync: self.last_sync.map(rfc3339),
                last_error: self.last_error.clone(),
                files: self.files.len(),
                objects: objects.len(),
                diagnostics,
                files_with_errors,
                skipped_count: skipped.len(),
                skipped,
                git: None,
                rollout: None,
            },
            objects,
        }
    }
}

fn read_failed(path: &Path, e: &io::Error, old: Option<FileState>) -> FileState {
    let diag = Diagnostic {
        severity: Severity::Error,
        location: Location {
            file: path.display().to_string(),
            line: 1,
            column: 1,
        },
        object: None,
        path: None,
        message: format!("cannot read: {e}"),
    };
    let mut st = old.unwrap_or(FileState {
        hash: [0; 32],
        good: Vec::new(),
        ever_good: false,
        diagnostics: Vec::new(),
        skipped: Vec::new(),
        bad: true,
    });
    st.hash = [0; 32];
    st.bad = true;
    st.diagnostics = vec![diag];
    st
}

fn parse_file(path: &Path, text: &str, old: Option<FileState>) -> FileState {
    let hash: [u8; 32] = Sha256::digest(text.as_bytes()).into();
    if let Some(old) = old.as_ref().filter(|o| o.hash == hash) {
        return old.clone();
    }
    let parsed = berth_spec::parse_str(&path.display().to_string(), text);
    if parsed.has_errors() {
        for d in parsed
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
        {
            tracing::warn!(diagnostic = %d, "manifest refused; its last good objects are kept");
        }
        let (good, ever_good) = old.map(|o| (o.good, o.ever_good)).unwrap_or_default();
        FileState {
            hash,
            good,
            ever_good,
            diagnostics: parsed.diagnostics,
            skipped: parsed.skipped,
            bad: true,
        }
    } else {
        tracing::debug!(path = %path.display(), objects = parsed.objects.len(), "manifest file read");
        FileState {
            hash,
            good: parsed.objects,
            ever_good: true,
            diagnostics: parsed.diagnostics,
            skipped: parsed.skipped,
            bad: false,
        }
    }
}

/// Events worth a re-scan: everything but reads (our own scans open files,
/// which must not trigger another scan); a close after writing counts.
fn relevant(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// What a burst of events left unfinished: files written in place whose
/// writer has not closed them yet (a half-written file may parse as a
/// valid, shorter manifest), and manifests removed or renamed away that no
/// event has brought back yet (vim's save renames the file away before it
/// writes the new one; `rm a.yaml && cp b.yaml a.yaml` leaves a moment
/// without it). The first makes the burst wait [`DEBOUNCE`] for quiet, the
/// second [`GAP_SETTLE`], instead of [`SETTLE`].
#[derive(Debug, Default)]
pub(crate) struct OpenWrites {
    open: HashSet<PathBuf>,
    gone: HashSet<PathBuf>,
}

impl OpenWrites {
    pub(crate) fn note(&mut self, ev: &notify::Event) {
        match &ev.kind {
            EventKind::Create(CreateKind::File)
            | EventKind::Create(CreateKind::Any)
            | EventKind::Modify(ModifyKind::Data(_))
            | EventKind::Modify(ModifyKind::Any) => {
                for p in &ev.paths {
                    self.gone.remove(p);
                    self.open.insert(p.clone());
                }
            }
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => {
                for p in &ev.paths {
                    self.open.remove(p);
                }
            }
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
                for p in &ev.paths {
                    self.open.remove(p);
                    self.went(p);
                }
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
                for p in &ev.paths {
                    self.gone.remove(p);
                }
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                // [from, to]: the old name is done (a temporary name renamed
                // into place) or gone (a manifest renamed away)
                if let Some(from) = ev.paths.first() {
                    self.open.remove(from);
                    self.went(from);
                }
                if let Some(to) = ev.paths.get(1) {
                    self.gone.remove(to);
                }
            }
            _ => {}
        }
    }

    /// `p` went away: a gap in the directory if it was a manifest.
    fn went(&mut self, p: &Path) {
        let manifest = p
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(super::scan::is_manifest_name);
        if manifest {
            self.gone.insert(p.to_path_buf());
        }
    }

    /// How long a burst must be quiet before the directory is re-read.
    pub(crate) fn quiet(&self) -> Duration {
        if !self.open.is_empty() {
            DEBOUNCE
        } else if !self.gone.is_empty() {
            GAP_SETTLE
        } else {
            SETTLE
        }
    }

    fn clear(&mut self) {
        self.open.clear();
        self.gone.clear();
    }
}

/// A relevant event, or `None` when events were lost (queue overflow).
type Change = Option<notify::Event>;

fn watch(
    root: &Path,
    tx: mpsc::UnboundedSender<Change>,
) -> notify::Result<notify::RecommendedWatcher> {
    let handler = move |res: notify::Result<notify::Event>| match res {
        Ok(ev) if relevant(&ev.kind) => {
            let _ = tx.send(Some(ev));
        }
        Ok(_) => {}
        Err(_) => {
            let _ = tx.send(None); // e.g. queue overflow: re-scan
        }
    };
    // notify's recursive watch walks the tree itself; following symlinks
    // there would be unbounded (a diamond of links, issue 14). Changes below
    // a symlinked directory are picked up by the periodic re-read.
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut w = notify::RecommendedWatcher::new(handler, config)?;
    w.watch(root, RecursiveMode::Recursive)?;
    Ok(w)
}

/// Run the directory source until `shutdown` turns true.
pub async fn run(
    root: PathBuf,
    resync: Duration,
    handle: SourceHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut state = DirState::new(root.clone());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher: Option<notify::RecommendedWatcher> = None;
    let mut reloads: u64 = 0;
    let mut open = OpenWrites::default();
    loop {
        // a watcher is (re)established before scanning, so no change between the two is lost
        if watcher.is_none() && root.is_dir() {
            match watch(&root, tx.clone()) {
                Ok(w) => watcher = Some(w),
                Err(e) => {
                    tracing::warn!(dir = %root.display(), error = %e, "cannot watch manifest directory; relying on periodic re-reads")
                }
            }
        }
        let scan_root = root.clone();
        let scan = tokio::task::spawn_blocking(move || scan_dir(&scan_root))
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
        let ok = scan.is_ok();
        let before = state.revision.clone();
        let report = state.apply(scan, SystemTime::now());
        reloads += 1;
        if let Some(err) = &report.status.last_error {
            tracing::warn!(dir = %root.display(), error = %err, "manifest directory");
        } else if before != state.revision {
            tracing::info!(dir = %root.display(), revision = %state.revision.as_deref().unwrap_or(""), objects = report.objects.len(), reloads, "manifest directory read");
        }
        if !ok {
            watcher = None; // the directory may come back as a new inode
        }
        handle.publish(report);
        tracing::debug!(target: "berth::timing", dir = %root.display(), "manifest scan published");
        let wait = if ok {
            resync
        } else {
            resync.min(RETRY_MISSING)
        };
        tokio::select! {
            _ = super::stopped(&mut shutdown) => break,
            _ = tokio::time::sleep(wait) => {}
            Some(change) = rx.recv() => {
                // one burst = one reload: wait until it is quiet (long while a
                // file is still open for writing), at most MAX_BURST
                if let Some(ev) = &change {
                    open.note(ev);
                }
                let deadline = tokio::time::Instant::now() + MAX_BURST;
                loop {
                    let quiet = tokio::time::timeout(open.quiet(), rx.recv());
                    tokio::select! {
                        r = quiet => match r {
                            Err(_) | Ok(None) => break,
                            Ok(Some(Some(ev))) => open.note(&ev),
                            Ok(Some(None)) => {}
                        },
                        _ = tokio::time::sleep_until(deadline) => break,
                    }
                }
                open.clear();
                tracing::debug!(target: "berth::timing", dir = %root.display(), "manifest change burst ended");
            }
        }
    }
    tracing::debug!(dir = %root.display(), "directory source stopped");
}

#[cfg(test)]
pub(crate) mod tests_support {
    /// A minimal valid Pod manifest.
    pub fn pod(name: &str, image: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: {image}\n"
        )
    }
}

#[cfg(test)]
#[path = "dir_tests.rs"]
mod tests;
