//! hostPath volumes under an operator policy (`allowedHostPaths`): the path
//! a pod names is resolved *beneath* the allowed prefix it matches, so a
//! symlink inside an allowed directory cannot lead the mount out of it.
//!
//! The policy check in `spec` compares the path as written. Without this
//! step a pod allowed `/srv/data` read-write could create the symlink
//! `/srv/data/etc -> /etc`, and a second pod naming `/srv/data/etc` would
//! get the host's `/etc`: the classic escape of path-prefix policies.
//!
//! How: the prefix (the operator's own configuration, which may be a
//! symlink on purpose) is resolved once; the rest of the path is opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)` relative to it, which
//! follows symlinks only while they stay below the prefix and refuses
//! absolute ones. Missing parts of a `DirectoryOrCreate` path are created
//! with `mkdirat` in the already-opened parent; a `FileOrCreate` file with
//! `openat(O_CREAT | O_NOFOLLOW)` (its parent must exist, as with kubelet).
//! The mount then uses the resolved path, read back through `/proc/self/fd`.
//!
//! Remaining window (as for subPath, and runc before fd-based mounts): the
//! resolved path is mounted by name a moment later by the shim; a process
//! writing in the same directory at that instant could swap a checked
//! directory for a symlink.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{Mode, mkdirat};

/// What to create when the path does not exist (the hostPath `type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Nothing,
    Directory,
    File,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfineError {
    #[error("{path:?} is not below an allowed hostPath prefix")]
    NotAllowed { path: String },
    #[error("{path:?} resolves outside the allowed prefix {prefix:?} (a symlink leads out of it)")]
    Escapes { path: String, prefix: String },
    #[error("{path:?}: {op}: {errno}")]
    Io {
        path: String,
        op: &'static str,
        errno: Errno,
    },
}

/// The real host path of `path`, resolved beneath the longest of `prefixes`
/// it lies at or below (whole components), creating what `create` asks for.
pub fn confine(path: &Path, prefixes: &[PathBuf], create: Create) -> Result<PathBuf, ConfineError> {
    let shown = || path.display().to_string();
    let parts = normal_parts(path).ok_or_else(|| ConfineError::NotAllowed { path: shown() })?;
    let prefix = prefixes
        .iter()
        .filter_map(|p| normal_parts(p).map(|pp| (p, pp)))
        .filter(|(_, pp)| parts.starts_with(pp))
        .max_by_key(|(_, pp)| pp.len())
        .ok_or_else(|| ConfineError::NotAllowed { path: shown() })?;
    let (prefix, pre_parts) = prefix;
    let io = |op: &'static str| {
        move |errno: Errno| ConfineError::Io {
            path: shown(),
            op,
            errno,
        }
    };
    let real_prefix = std::fs::canonicalize(prefix).map_err(|e| {
        io("resolving the allowed prefix")(Errno::from_raw(e.raw_os_error().unwrap_or(0)))
    })?;
    let rel: PathBuf = parts[pre_parts.len()..].iter().collect();
    if rel.as_os_str().is_empty() {
        return Ok(real_prefix);
    }
    let root = openat(
        nix::fcntl::AT_FDCWD,
        real_prefix.as_path(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(io("opening the allowed prefix"))?;
    let escapes = || ConfineError::Escapes {
        path: shown(),
        prefix: prefix.display().to_string(),
    };
    let fd = match beneath(&root, &rel) {
        Ok(fd) => fd,
        Err(Errno::EXDEV | Errno::ELOOP) => return Err(escapes()),
        Err(Errno::ENOENT) if create != Create::Nothing => create_beneath(&root, &rel, create)
            .map_err(|e| match e {
                Errno::EXDEV | Errno::ELOOP => escapes(),
                e => io("creating")(e),
            })?,
        Err(e) => return Err(io("opening")(e)),
    };
    let real = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).map_err(|e| {
        io("reading the resolved path")(Errno::from_raw(e.raw_os_error().unwrap_or(0)))
    })?;
    // belt and braces: the kernel kept the walk beneath the prefix
    if !real.starts_with(&real_prefix) {
        return Err(escapes());
    }
    Ok(real)
}

/// `rel` opened as an `O_PATH` fd, never leaving `root`.
fn beneath(root: &OwnedFd, rel: &Path) -> Result<OwnedFd, Errno> {
    openat2(
        root,
        rel,
        OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS),
    )
}

/// Create the missing tail of `rel` below its deepest existing ancestor.
fn create_beneath(root: &OwnedFd, rel: &Path, create: Create) -> Result<OwnedFd, Errno> {
    let comps: Vec<&std::ffi::OsStr> = rel.iter().collect();
    // the deepest ancestor that exists, opened beneath the root
    let mut have = comps.len();
    let mut cur = loop {
        have -= 1;
        if have == 0 {
            break root.try_clone().map_err(|_| Errno::EBADF)?;
        }
        let anc: PathBuf = comps[..have].iter().collect();
        match beneath(root, &anc) {
            Ok(fd) => break fd,
            Err(Errno::ENOENT) => continue,
            Err(e) => return Err(e),
        }
    };
    let missing = &comps[have..];
    if create == Create::File && missing.len() > 1 {
        // kubelet does not create a FileOrCreate file's parent either
        return Err(Errno::ENOENT);
    }
    for (i, name) in missing.iter().enumerate() {
        let last = i + 1 == missing.len();
        let name = Path::new(name);
        if last && create == Create::File {
            let f = openat(
                &cur,
                name,
                OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::from_bits_truncate(0o644),
            )?;
            drop(f);
        } else {
            match mkdirat(&cur, name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(e),
            }
        }
        // what is there now, without following a symlink put in its place
        cur = openat(
            &cur,
            name,
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        let is_link = nix::sys::stat::fstat(&cur)
            .map(|s| s.st_mode & nix::libc::S_IFMT == nix::libc::S_IFLNK)?;
        if is_link {
            return Err(Errno::ELOOP);
        }
    }
    Ok(cur)
}

/// The normal components of an absolute path without `..`; None otherwise.
fn normal_parts(p: &Path) -> Option<Vec<&std::ffi::OsStr>> {
    let mut out = Vec::new();
    let mut comps = p.components();
    if comps.next() != Some(Component::RootDir) {
        return None;
    }
    for c in comps {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let allowed = t.path().join("allowed");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(allowed.join("data/sub")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), "s").unwrap();
        (t, allowed, outside)
    }

    #[test]
    fn a_plain_path_below_the_prefix_resolves_to_itself() {
        let (_t, allowed, _) = setup();
        let real = std::fs::canonicalize(&allowed).unwrap();
        let got = confine(
            &allowed.join("data/sub"),
            std::slice::from_ref(&allowed),
            Create::Nothing,
        )
        .unwrap();
        assert_eq!(got, real.join("data/sub"));
        assert_eq!(
            confine(&allowed, std::slice::from_ref(&allowed), Create::Nothing).unwrap(),
            real
        );
    }

    #[test]
    fn symlinks_out_of_the_prefix_are_refused() {
        let (_t, allowed, outside) = setup();
        symlink(&outside, allowed.join("abs")).unwrap();
        symlink("../../outside", allowed.join("data/rel")).unwrap();
        symlink(&outside, allowed.join("data/sub/deeper")).unwrap();
        for p in ["abs", "abs/secret", "data/rel", "data/sub/deeper/secret"] {
            let e = confine(
                &allowed.join(p),
                std::slice::from_ref(&allowed),
                Create::Nothing,
            )
            .unwrap_err();
            assert!(matches!(e, ConfineError::Escapes { .. }), "{p}: {e}");
        }
        // creating through an escaping symlink is refused too, and creates nothing
        let e = confine(
            &allowed.join("abs/new"),
            std::slice::from_ref(&allowed),
            Create::Directory,
        )
        .unwrap_err();
        assert!(matches!(e, ConfineError::Escapes { .. }), "{e}");
        assert!(!outside.join("new").exists());
        let e = confine(
            &allowed.join("abs/f"),
            std::slice::from_ref(&allowed),
            Create::File,
        )
        .unwrap_err();
        assert!(matches!(e, ConfineError::Escapes { .. }), "{e}");
        assert!(!outside.join("f").exists());
    }

    #[test]
    fn symlinks_that_stay_below_the_prefix_are_followed() {
        let (_t, allowed, _) = setup();
        symlink("sub", allowed.join("data/link")).unwrap();
        let real = std::fs::canonicalize(&allowed).unwrap();
        let got = confine(
            &allowed.join("data/link"),
            std::slice::from_ref(&allowed),
            Create::Nothing,
        )
        .unwrap();
        assert_eq!(got, real.join("data/sub"));
    }

    #[test]
    fn the_prefix_itself_may_be_a_symlink_the_operator_made() {
        let (t, allowed, _) = setup();
        let alias = t.path().join("alias");
        symlink(&allowed, &alias).unwrap();
        let real = std::fs::canonicalize(&allowed).unwrap();
        assert_eq!(
            confine(
                &alias.join("data"),
                std::slice::from_ref(&alias),
                Create::Nothing
            )
            .unwrap(),
            real.join("data")
        );
    }

    #[test]
    fn the_longest_matching_prefix_confines_and_components_match_whole() {
        let (_t, allowed, _) = setup();
        let data = allowed.join("data");
        symlink("../", data.join("up")).unwrap();
        // allowed/data/up -> allowed: beneath `allowed`, not beneath `allowed/data`
        let e = confine(
            &data.join("up"),
            &[allowed.clone(), data.clone()],
            Create::Nothing,
        )
        .unwrap_err();
        assert!(matches!(e, ConfineError::Escapes { .. }), "{e}");
        let e = confine(
            &PathBuf::from(format!("{}x", allowed.display())),
            std::slice::from_ref(&allowed),
            Create::Nothing,
        )
        .unwrap_err();
        assert!(matches!(e, ConfineError::NotAllowed { .. }), "{e}");
        assert!(matches!(
            confine(Path::new("/etc"), &[allowed], Create::Nothing),
            Err(ConfineError::NotAllowed { .. })
        ));
    }

    #[test]
    fn or_create_types_create_beneath() {
        let (_t, allowed, _) = setup();
        let real = std::fs::canonicalize(&allowed).unwrap();
        let got = confine(
            &allowed.join("new/a/b"),
            std::slice::from_ref(&allowed),
            Create::Directory,
        )
        .unwrap();
        assert_eq!(got, real.join("new/a/b"));
        assert!(got.is_dir());
        let got = confine(
            &allowed.join("data/f.log"),
            std::slice::from_ref(&allowed),
            Create::File,
        )
        .unwrap();
        assert!(got.is_file());
        // FileOrCreate does not create the parent (as kubelet)
        assert!(
            confine(
                &allowed.join("nodir/f"),
                std::slice::from_ref(&allowed),
                Create::File
            )
            .is_err()
        );
        assert!(!allowed.join("nodir").exists());
        // a missing path without a create type is an error, nothing is created
        assert!(
            confine(
                &allowed.join("none"),
                std::slice::from_ref(&allowed),
                Create::Nothing
            )
            .is_err()
        );
        assert!(!allowed.join("none").exists());
    }
}
