//! Small durable-write helpers (G11): temp file -> fsync -> rename -> fsync dir.

use std::fs::{self, File};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Fsync a directory so a rename inside it is durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// A name unique within this process and across restarts (pid + counter + time).
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{t}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Make `dir` 0700 (owner only), saying so when it was wider.
pub fn restrict_dir(dir: &Path) -> io::Result<()> {
    if let Some(mode) = berth_state::ensure_private_dir(dir)?.filter(|m| m & 0o077 != 0) {
        tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "directory was accessible to other users; made it 0700");
    }
    Ok(())
}

/// Replace `path` atomically with `data`.
/// (berth-state's one atomic writer: 0600 temp, fsync, rename, fsync dir.)
pub fn atomic_write(path: &Path, data: &[u8]) -> io::Result<()> {
    berth_state::write_atomic(path, data)
}

/// Total bytes of regular files under `p` (not following symlinks).
pub fn du(p: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    let mut total = 0;
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            total += du(&e.path());
        }
    }
    total
}

/// Remove a directory tree by first renaming it into `trash` (so it vanishes
/// atomically from its old place), then deleting it.
pub fn remove_tree_atomic(p: &Path, trash: &Path) -> io::Result<()> {
    let t = trash.join(unique_name("del"));
    fs::rename(p, &t)?;
    fs::remove_dir_all(&t)
}
