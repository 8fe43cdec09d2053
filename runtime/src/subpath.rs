//! Kubernetes `subPath`: a path inside a volume, resolved without ever
//! following a symlink, so content written into a volume (by a container, or
//! an image) cannot redirect a mount to somewhere else on the host.
//!
//! The walk opens every component with `openat(O_PATH | O_NOFOLLOW)` relative
//! to the previous one, refuses a symlink at any step, refuses `..` and
//! absolute paths, and creates missing directories (as kubelet does) with
//! `mkdirat` in the already-opened parent. The result is checked once more
//! through `/proc/self/fd` to be inside the volume.
//!
//! Remaining window (documented, as in runc before fd-based mounts): the path
//! is handed to libcontainer, which mounts it by name a moment later; a
//! process writing into the same volume at that instant could swap a checked
//! directory for a symlink.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag, fstat, mkdirat};

#[derive(Debug, thiserror::Error)]
pub enum SubPathError {
    #[error("subPath {sub:?} must be a relative path without '..'")]
    NotRelative { sub: String },
    #[error("subPath {sub:?}: {} is a symlink; berth does not follow symlinks in subPath", at.display())]
    Symlink { sub: String, at: PathBuf },
    #[error("subPath {sub:?}: {} is not a directory", at.display())]
    NotADirectory { sub: String, at: PathBuf },
    #[error("subPath {sub:?}: opening {}", at.display())]
    Open {
        sub: String,
        at: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("subPath {sub:?}: creating {}", at.display())]
    Create {
        sub: String,
        at: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("subPath {sub:?} resolves to {}, outside the volume {}", got.display(), base.display())]
    Escapes {
        sub: String,
        base: PathBuf,
        got: PathBuf,
    },
}

fn open_path(dir: impl AsFd, name: &Path) -> Result<OwnedFd, Errno> {
    openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn kind(fd: &OwnedFd) -> Result<SFlag, Errno> {
    Ok(SFlag::from_bits_truncate(
        fstat(fd)?.st_mode & SFlag::S_IFMT.bits(),
    ))
}

/// The host path of `sub` inside `base`, created as a directory when missing.
/// `base` itself must be a directory and not a symlink.
pub fn resolve(base: &Path, sub: &str) -> Result<PathBuf, SubPathError> {
    let err_sub = || sub.to_string();
    let parts: Vec<&std::ffi::OsStr> = Path::new(sub)
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(SubPathError::NotRelative { sub: err_sub() }),
        })
        .collect::<Result<_, _>>()?;
    // the volume's own path is berth's configuration (a hostPath may be a
    // symlink on purpose): resolve it once; only the subPath is untrusted
    let errno = |e: std::io::Error| Errno::from_raw(e.raw_os_error().unwrap_or(0));
    let real_base = std::fs::canonicalize(base).map_err(|e| SubPathError::Open {
        sub: err_sub(),
        at: base.to_path_buf(),
        source: errno(e),
    })?;
    let mut cur = open_path(nix::fcntl::AT_FDCWD, real_base.as_path()).map_err(|source| {
        SubPathError::Open {
            sub: err_sub(),
            at: real_base.clone(),
            source,
        }
    })?;
    let mut at = real_base.clone();
    let check = |fd: &OwnedFd, at: &Path, last: bool| -> Result<(), SubPathError> {
        match kind(fd) {
            Ok(k) if k == SFlag::S_IFLNK => Err(SubPathError::Symlink {
                sub: err_sub(),
                at: at.to_path_buf(),
            }),
            Ok(k) if k != SFlag::S_IFDIR && !last => Err(SubPathError::NotADirectory {
                sub: err_sub(),
                at: at.to_path_buf(),
            }),
            Ok(_) => Ok(()),
            Err(source) => Err(SubPathError::Open {
                sub: err_sub(),
                at: at.to_path_buf(),
                source,
            }),
        }
    };
    check(&cur, &at, parts.is_empty())?;
    for (i, name) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        at.push(name);
        let next = match open_path(&cur, Path::new(name)) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                let mode = Mode::from_bits_truncate(0o755);
                match mkdirat(&cur, Path::new(name), mode) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(source) => {
                        return Err(SubPathError::Create {
                            sub: err_sub(),
                            at,
                            source,
                        });
                    }
                }
                open_path(&cur, Path::new(name)).map_err(|source| SubPathError::Open {
                    sub: err_sub(),
                    at: at.clone(),
                    source,
                })?
            }
            Err(source) => {
                return Err(SubPathError::Open {
                    sub: err_sub(),
                    at,
                    source,
                });
            }
        };
        check(&next, &at, last)?;
        cur = next;
    }
    // what the kernel says the opened object is, compared with the volume's real path
    let got = std::fs::read_link(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&cur)
    ))
    .map_err(|e| SubPathError::Open {
        sub: err_sub(),
        at: at.clone(),
        source: errno(e),
    })?;
    if !got.starts_with(&real_base) {
        return Err(SubPathError::Escapes {
            sub: err_sub(),
            base: real_base,
            got,
        });
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn walks_creates_and_refuses() {
        let t = tempfile::tempdir().unwrap();
        let vol = t.path().join("vol");
        let outside = t.path().join("outside");
        std::fs::create_dir_all(vol.join("a/b")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(vol.join("a/file"), "x").unwrap();
        symlink(&outside, vol.join("abs")).unwrap();
        symlink("../outside", vol.join("rel")).unwrap();
        symlink("b", vol.join("a/inner")).unwrap();
        let real = std::fs::canonicalize(&vol).unwrap();

        assert_eq!(resolve(&vol, "a/b").unwrap(), real.join("a/b"));
        assert_eq!(resolve(&vol, "./a/./b/").unwrap(), real.join("a/b"));
        assert_eq!(resolve(&vol, "a/file").unwrap(), real.join("a/file"));
        assert_eq!(resolve(&vol, "new/dir").unwrap(), real.join("new/dir"));
        assert!(vol.join("new/dir").is_dir());
        for bad in ["abs", "rel", "a/inner", "abs/x", "rel/new"] {
            let e = resolve(&vol, bad).unwrap_err();
            assert!(matches!(e, SubPathError::Symlink { .. }), "{bad}: {e}");
        }
        assert!(
            !outside.join("x").exists() && !outside.join("new").exists(),
            "nothing created outside"
        );
        for bad in ["../outside", "/etc", "a/../../outside"] {
            assert!(
                matches!(
                    resolve(&vol, bad).unwrap_err(),
                    SubPathError::NotRelative { .. }
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            resolve(&vol, "a/file/x").unwrap_err(),
            SubPathError::NotADirectory { .. }
        ));
        // the volume's own path may be a symlink (berth's config, not content)
        symlink(&vol, t.path().join("vol-link")).unwrap();
        assert_eq!(
            resolve(&t.path().join("vol-link"), "a/b").unwrap(),
            real.join("a/b")
        );
    }
}
