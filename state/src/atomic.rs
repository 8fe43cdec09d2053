//! The one atomic writer.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Create `dir` and its missing parents, root-only (0700).
///
/// Directories that exist keep their mode. Each directory it creates is
/// made durable (its parent fsynced), so a file written into a new
/// directory survives a power cut together with the directory.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|a| !a.as_os_str().is_empty() && !a.exists())
        .collect();
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    for d in missing.iter().rev() {
        let parent = match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Create `dir` (and missing parents) 0700, or tighten it to 0700 if it
/// exists wider. Returns the mode it had when it was not 0700, for the
/// caller to report (a mode with group or other bits is worth a warning).
///
/// Fails if `dir` is not a directory (a symlink included). The owner is left
/// as it is; taking over a directory is the agent's decision.
pub fn ensure_private_dir(dir: &Path) -> io::Result<Option<u32>> {
    use std::os::unix::fs::MetadataExt;
    create_private_dir(dir)?;
    let m = fs::symlink_metadata(dir)?;
    if !m.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not a directory", dir.display()),
        ));
    }
    let mode = m.mode() & 0o7777;
    if mode == 0o700 {
        return Ok(None);
    }
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    Ok(Some(mode))
}

/// Replace `path` with `data` so that a crash leaves the old or the new file.
///
/// # Guarantees
/// The data goes to a temp file (mode 0600, a name unique to this process and
/// call, in the same directory, so the rename never crosses a filesystem),
/// which is fsynced, renamed over `path`, and then the directory is fsynced.
/// The temp file is removed on failure. Missing parent directories are
/// created with mode 0700.
///
/// # Caveats
/// The new file is 0600 whatever the old one was.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, data, 0o600)
}

/// [`write_atomic`] for a file processes other than root must read (e.g. a
/// pod's `/etc/hosts` and `resolv.conf`, bind-mounted into containers that
/// run as any user): the file gets `mode` instead of 0600.
pub fn write_atomic_mode(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    create_private_dir(dir)?;
    write_atomic_in(path, data, mode)
}

/// [`write_atomic_mode`] in a directory that must exist already: a directory
/// removed meanwhile (a container's, by its teardown) is not brought back.
pub fn write_atomic_in(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = temp_name(dir, path);
    let res = write_then_rename(&tmp, path, data, mode).and_then(|()| File::open(dir)?.sync_all());
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
}

fn write_then_rename(tmp: &Path, path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)?;
    // not through open's mode, which the umask would narrow
    if mode != 0o600 {
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
    }
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    fs::rename(tmp, path)
}

/// `.<name>.<pid>.<n>.tmp`: the agent and a shim may write the same file, and
/// one process may write it from two threads.
fn temp_name(dir: &Path, path: &Path) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn writes_replaces_and_is_root_only() {
        let d = tempdir("atomic");
        let p = d.join("sub/file.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let mode = fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dmode = fs::metadata(d.join("sub")).unwrap().permissions().mode() & 0o777;
        assert_eq!(dmode, 0o700);
        // no temp file left behind
        let names: Vec<_> = fs::read_dir(d.join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("file.json")]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn files_containers_read_keep_their_mode() {
        let d = tempdir("mode");
        let p = d.join("resolv.conf");
        write_atomic_mode(&p, b"nameserver 10.0.0.1\n", 0o644).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o644
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn failure_leaves_the_old_file_and_no_temp() {
        let d = tempdir("atomicfail");
        let p = d.join("file");
        write_atomic(&p, b"old").unwrap();
        // a directory in the way of the rename
        let blocked = d.join("blocked");
        fs::create_dir_all(blocked.join("inner")).unwrap();
        assert!(write_atomic(&blocked, b"new").is_err());
        assert_eq!(fs::read(&p).unwrap(), b"old");
        let tmps = fs::read_dir(&d)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".tmp")
            })
            .count();
        assert_eq!(tmps, 0);
        fs::remove_dir_all(&d).unwrap();
    }
}
