//! The agent's own directories: root-only.
//!
//! The state and run dirs hold image layers (setuid files, device nodes),
//! resolved secrets, container specs and sockets. Another local user must
//! not traverse them, so they are created 0700 and owned by the agent's
//! user; a directory left wider (or owned by someone else) by an older
//! berth or by hand is tightened at start, with a warning.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
#[cfg(test)]
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Create `dir` (and missing parents) 0700, or tighten it to 0700 and the
/// agent's owner if it exists wider.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    let was = berth_state::ensure_private_dir(dir)?;
    if let Some(mode) = was.filter(|m| m & 0o077 != 0) {
        tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"),
            "directory was accessible to other users; made it 0700");
    }
    let m = fs::symlink_metadata(dir)?;
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    if m.uid() != uid.as_raw() {
        tracing::warn!(dir = %dir.display(), owner = m.uid(), "directory owned by another user; taking it over");
        nix::unistd::chown(dir, Some(uid), Some(gid)).map_err(io::Error::from)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_and_tightens() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("a/state");
        ensure_private_dir(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o7777, 0o700);
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&d).unwrap();
        assert_eq!(fs::metadata(&d).unwrap().mode() & 0o7777, 0o700);
        let f = t.path().join("file");
        fs::write(&f, b"").unwrap();
        assert!(ensure_private_dir(&f).is_err());
    }
}
