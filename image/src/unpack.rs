//! Safe layer extraction.
//!
//! A layer blob (tar, tar+gzip or tar+zstd, sniffed from its magic bytes) is
//! extracted into a fresh temp directory, and the directory is renamed to
//! `<root>/layers/<chain-id hex>` only when every entry was applied and both
//! the compressed digest (the blob digest) and the uncompressed digest (the
//! diff ID) matched. Each layer directory holds the raw layer, not the layer
//! applied onto its parents: overlayfs stacks them, so OCI whiteouts are
//! converted to overlayfs ones (`.wh.x` -> char device 0:0 named `x`,
//! `.wh..wh..opq` -> `trusted.overlay.opaque=y` on the directory).
//!
//! # Guarantees (whatever the archive contains)
//! - Nothing is written outside the layer directory: leading `/` is stripped
//!   (as Docker does), `..` is resolved lexically and an entry that would
//!   climb above the root fails the layer, and every parent component is
//!   checked with `lstat`: traversal through a symlink or a non-directory
//!   fails the layer. Symlinks are created but never followed.
//! - Hard links may only point at an existing non-directory inside the layer,
//!   reached without symlinks.
//! - Files are created with `O_EXCL|O_NOFOLLOW` after removing what was there.
//! - Char/block devices are created only with `CAP_MKNOD` (else skipped with a
//!   debug log); FIFOs always.
//! - Ownership is applied when running as root, then the mode (so setuid and
//!   setgid bits survive `chown`), then xattrs (`user.*` and
//!   `security.capability`; best effort), then mtimes (directories last).
//!
//! # Assumptions
//! The temp directory is private to this process: only the archive is
//! hostile, not concurrent local writers.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::stat::{Mode, SFlag, UtimensatFlags, makedev, mknod, utimensat};
use nix::sys::time::TimeSpec;
use sha2::{Digest as _, Sha256};
use tar::EntryType;

use crate::content::Digest;
use crate::fsutil::{fsync_dir, unique_name};

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {entry:?} escapes the layer directory")]
    PathEscapes { entry: String },
    #[error("layer entry {entry:?} goes through symlink {component:?}")]
    ThroughSymlink { entry: String, component: PathBuf },
    #[error("layer entry {entry:?}: {component:?} is not a directory")]
    NotADirectory { entry: String, component: PathBuf },
    #[error("hard link {entry:?} -> {target:?} refused: {reason}")]
    BadHardlink {
        entry: String,
        target: String,
        reason: &'static str,
    },
    #[error(
        "whiteout {entry:?} needs a 0:0 character device, which this process may not create (run as root)"
    )]
    WhiteoutNotPermitted {
        entry: String,
        #[source]
        source: nix::Error,
    },
    #[error("opaque directory marker {entry:?}: cannot set trusted.overlay.opaque (run as root)")]
    OpaqueNotPermitted {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("layer entry {entry:?} has unsupported type {kind:?}")]
    UnsupportedType { entry: String, kind: EntryType },
    #[error("layer {what} digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        what: &'static str,
        expected: Digest,
        actual: Digest,
    },
    #[error("reading layer tar stream")]
    Tar {
        #[source]
        source: io::Error,
    },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{op} {path}")]
    Sys {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> UnpackError {
    move |source| UnpackError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

fn sys_err(op: &'static str, path: &Path) -> impl FnOnce(nix::Error) -> UnpackError {
    move |source| UnpackError::Sys {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Compression of a layer blob, sniffed from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn sniff(head: &[u8]) -> Compression {
    if head.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// Counts what extraction did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
    pub skipped_devices: u64,
}

/// Host capabilities extraction depends on.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub is_root: bool,
    pub can_mknod: bool,
}

impl Caps {
    pub fn detect() -> Caps {
        let is_root = nix::unistd::geteuid().is_root();
        // CAP_MKNOD = 27 in the effective set.
        let can_mknod = fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("CapEff:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .is_some_and(|c| c & (1 << 27) != 0);
        Caps { is_root, can_mknod }
    }
}

struct HashReader<'a, R> {
    inner: R,
    h: &'a mut Sha256,
}

impl<R: Read> Read for HashReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.h.update(&buf[..n]);
        Ok(n)
    }
}

/// Extract the layer blob at `blob` into `final_dir`, verifying `blob_digest`
/// and `diff_id`; `tmp` is a scratch directory on the same filesystem.
///
/// # Guarantees
/// `final_dir` either does not appear or holds the complete, verified layer.
/// If it already exists (another unpack won), the work is discarded.
pub fn unpack_layer(
    blob: &Path,
    blob_digest: &Digest,
    diff_id: &Digest,
    final_dir: &Path,
    tmp: &Path,
    caps: Caps,
) -> Result<UnpackStats, UnpackError> {
    let work = tmp.join(unique_name("unpack"));
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&work)
        .map_err(io_err("create", &work))?;
    let res = (|| {
        let mut f = File::open(blob).map_err(io_err("open", blob))?;
        let mut head = [0u8; 4];
        let n = f.read(&mut head).map_err(io_err("read", blob))?;
        f.rewind().map_err(io_err("seek", blob))?;
        let comp = sniff(&head[..n]);
        let mut ch = Sha256::new();
        let mut uh = Sha256::new();
        let stats = {
            let cr = HashReader {
                inner: io::BufReader::with_capacity(1 << 20, f),
                h: &mut ch,
            };
            let dec: Box<dyn Read + '_> = match comp {
                Compression::None => Box::new(cr),
                Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(cr)),
                Compression::Zstd => {
                    Box::new(zstd::Decoder::new(cr).map_err(io_err("zstd", blob))?)
                }
            };
            let ur = HashReader {
                inner: dec,
                h: &mut uh,
            };
            let mut ar = tar::Archive::new(ur);
            let stats = apply_tar(&mut ar, &work, caps)?;
            // Hash everything, including padding after the end-of-archive marker.
            io::copy(&mut ar.into_inner(), &mut io::sink())
                .map_err(|source| UnpackError::Tar { source })?;
            stats
        };
        let actual = Digest::from_hasher(ch);
        if actual != *blob_digest {
            return Err(UnpackError::DigestMismatch {
                what: "blob",
                expected: blob_digest.clone(),
                actual,
            });
        }
        let actual = Digest::from_hasher(uh);
        if actual != *diff_id {
            return Err(UnpackError::DigestMismatch {
                what: "uncompressed (diff ID)",
                expected: diff_id.clone(),
                actual,
            });
        }
        // One syncfs instead of an fsync per file, then commit by rename.
        let d = File::open(&work).map_err(io_err("open", &work))?;
        nix::unistd::syncfs(&d).map_err(sys_err("syncfs", &work))?;
        match fs::rename(&work, final_dir) {
            Ok(()) => {}
            Err(_) if final_dir.is_dir() => {
                tracing::debug!(layer = %final_dir.display(), "layer unpacked concurrently; keeping the first");
                let _ = fs::remove_dir_all(&work);
            }
            Err(e) => return Err(io_err("rename layer into place", final_dir)(e)),
        }
        if let Some(p) = final_dir.parent() {
            fsync_dir(p).map_err(io_err("fsync", p))?;
        }
        Ok(stats)
    })();
    if res.is_err() {
        let _ = fs::remove_dir_all(&work);
    }
    res
}

/// Lexically clean an entry path: strip `/`, drop `.`, resolve `..`;
/// refuse climbing above the root.
pub fn clean_path(raw: &Path) -> Result<PathBuf, UnpackError> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::RootDir | Component::Prefix(_) | Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(UnpackError::PathEscapes {
                        entry: raw.display().to_string(),
                    });
                }
            }
            Component::Normal(s) => out.push(s),
        }
    }
    Ok(out)
}

/// Walk `rel`'s parents under `root` without following symlinks, creating
/// missing directories when `create`; return the full path of `rel`.
fn resolve_parent(
    root: &Path,
    rel: &Path,
    entry: &str,
    create: bool,
) -> Result<PathBuf, UnpackError> {
    let mut cur = root.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in &comps[..comps.len().saturating_sub(1)] {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(UnpackError::ThroughSymlink {
                    entry: entry.to_string(),
                    component: cur.strip_prefix(root).unwrap_or(&cur).to_path_buf(),
                });
            }
            Ok(_) => {
                return Err(UnpackError::NotADirectory {
                    entry: entry.to_string(),
                    component: cur.strip_prefix(root).unwrap_or(&cur).to_path_buf(),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&cur)
                    .map_err(io_err("mkdir", &cur))?;
            }
            Err(e) => return Err(io_err("lstat", &cur)(e)),
        }
    }
    Ok(root.join(rel))
}

/// Remove whatever is at `p` unless it is a directory and `keep_dir`.
/// Returns whether a directory was kept.
fn clear(p: &Path, keep_dir: bool) -> Result<bool, UnpackError> {
    match fs::symlink_metadata(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("lstat", p)(e)),
        Ok(m) if m.is_dir() && keep_dir => Ok(true),
        Ok(m) if m.is_dir() => fs::remove_dir_all(p)
            .map(|_| false)
            .map_err(io_err("remove", p)),
        Ok(_) => fs::remove_file(p)
            .map(|_| false)
            .map_err(io_err("remove", p)),
    }
}

struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

/// Apply every entry of `ar` under `root` (see the module guarantees).
pub fn apply_tar<R: Read>(
    ar: &mut tar::Archive<R>,
    root: &Path,
    caps: Caps,
) -> Result<UnpackStats, UnpackError> {
    let tar_err = |source| UnpackError::Tar { source };
    let mut stats = UnpackStats::default();
    let mut dirs: Vec<(PathBuf, Meta)> = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    for entry in ar.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        stats.entries += 1;
        let raw = entry.path().map_err(tar_err)?.into_owned();
        let name = raw.display().to_string();
        let rel = clean_path(&raw)?;
        let h = entry.header();
        let kind = h.entry_type();
        let meta = Meta {
            mode: h.mode().map_err(tar_err)? & 0o7777,
            uid: h.uid().map_err(tar_err)?,
            gid: h.gid().map_err(tar_err)?,
            mtime: h.mtime().map_err(tar_err)?,
        };
        let base = rel
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();

        // OCI whiteouts.
        if base == ".wh..wh..opq" {
            let dir = resolve_parent(root, &rel, &name, true)?;
            let dir = dir.parent().unwrap_or(root).to_path_buf();
            xattr::set(&dir, "trusted.overlay.opaque", b"y").map_err(|source| {
                UnpackError::OpaqueNotPermitted {
                    entry: name.clone(),
                    source,
                }
            })?;
            stats.whiteouts += 1;
            continue;
        }
        if let Some(hidden) = base.strip_prefix(".wh.") {
            if hidden.starts_with(".wh.") || hidden.is_empty() {
                tracing::debug!(entry = %name, "skipping aufs metadata entry");
                continue;
            }
            let p = resolve_parent(root, &rel, &name, true)?;
            let target = p.with_file_name(hidden);
            clear(&target, false)?;
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0)).map_err(|source| {
                UnpackError::WhiteoutNotPermitted {
                    entry: name.clone(),
                    source,
                }
            })?;
            if caps.is_root {
                std::os::unix::fs::lchown(&target, Some(meta.uid as u32), Some(meta.gid as u32))
                    .map_err(io_err("chown", &target))?;
            }
            stats.whiteouts += 1;
            continue;
        }

        if rel.as_os_str().is_empty() {
            // The layer root itself ("./"): only directories make sense.
            if kind != EntryType::Directory {
                return Err(UnpackError::PathEscapes { entry: name });
            }
            continue;
        }
        let target = resolve_parent(root, &rel, &name, true)?;
        match kind {
            EntryType::Directory => {
                if !clear(&target, true)? {
                    fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&target)
                        .map_err(io_err("mkdir", &target))?;
                }
                // Owner now; mode and mtime once the children are written.
                set_owner(&target, &meta, caps)?;
                dirs.push((target, meta));
                continue;
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                clear(&target, false)?;
                let mut f = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(nix::libc::O_NOFOLLOW)
                    .open(&target)
                    .map_err(io_err("create", &target))?;
                loop {
                    let n = entry.read(&mut buf).map_err(tar_err)?;
                    if n == 0 {
                        break;
                    }
                    f.write_all(&buf[..n]).map_err(io_err("write", &target))?;
                    stats.bytes += n as u64;
                }
                drop(f);
            }
            EntryType::Symlink => {
                let link = entry
                    .link_name()
                    .map_err(tar_err)?
                    .ok_or_else(|| UnpackError::Tar {
                        source: io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("symlink {name:?} without target"),
                        ),
                    })?;
                clear(&target, false)?;
                std::os::unix::fs::symlink(&link, &target).map_err(io_err("symlink", &target))?;
            }
            EntryType::Link => {
                let link = entry
                    .link_name()
                    .map_err(tar_err)?
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let bad = |reason| UnpackError::BadHardlink {
                    entry: name.clone(),
                    target: link.display().to_string(),
                    reason,
                };
                let lrel = clean_path(&link).map_err(|_| bad("target outside the layer"))?;
                if lrel.as_os_str().is_empty() {
                    return Err(bad("target is the layer root"));
                }
                let src = resolve_parent(root, &lrel, &name, false).map_err(|e| match e {
                    UnpackError::ThroughSymlink { .. } => bad("target path goes through a symlink"),
                    UnpackError::NotADirectory { .. } => {
                        bad("target path goes through a non-directory")
                    }
                    UnpackError::Io { .. } => bad("target does not exist in this layer"),
                    other => other,
                })?;
                match fs::symlink_metadata(&src) {
                    Ok(m) if m.is_dir() => return Err(bad("target is a directory")),
                    Ok(_) => {}
                    Err(_) => return Err(bad("target does not exist in this layer")),
                }
                if src == target {
                    continue;
                }
                clear(&target, false)?;
                fs::hard_link(&src, &target).map_err(io_err("link", &target))?;
                continue; // the inode's metadata came with its first name
            }
            EntryType::Char | EntryType::Block => {
                if !caps.can_mknod {
                    tracing::debug!(entry = %name, "skipping device node: no CAP_MKNOD");
                    stats.skipped_devices += 1;
                    continue;
                }
                let major = entry.header().device_major().map_err(tar_err)?.unwrap_or(0);
                let minor = entry.header().device_minor().map_err(tar_err)?.unwrap_or(0);
                let flag = if kind == EntryType::Char {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                clear(&target, false)?;
                mknod(
                    &target,
                    flag,
                    Mode::from_bits_truncate(0o600),
                    makedev(major.into(), minor.into()),
                )
                .map_err(sys_err("mknod", &target))?;
            }
            EntryType::Fifo => {
                clear(&target, false)?;
                nix::unistd::mkfifo(&target, Mode::from_bits_truncate(0o600))
                    .map_err(sys_err("mkfifo", &target))?;
            }
            EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink => continue,
            other => {
                return Err(UnpackError::UnsupportedType {
                    entry: name,
                    kind: other,
                });
            }
        }
        let is_symlink = kind == EntryType::Symlink;
        set_owner(&target, &meta, caps)?;
        if !is_symlink {
            fs::set_permissions(&target, fs::Permissions::from_mode(meta.mode))
                .map_err(io_err("chmod", &target))?;
        }
        apply_xattrs(&mut entry, &target, &name);
        set_mtime(&target, meta.mtime)?;
    }
    // Deepest first, so setting a parent's mtime is the last touch.
    dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
    for (p, m) in &dirs {
        fs::set_permissions(p, fs::Permissions::from_mode(m.mode)).map_err(io_err("chmod", p))?;
        set_mtime(p, m.mtime)?;
    }
    Ok(stats)
}

fn set_owner(p: &Path, m: &Meta, caps: Caps) -> Result<(), UnpackError> {
    if caps.is_root {
        std::os::unix::fs::lchown(p, Some(m.uid as u32), Some(m.gid as u32))
            .map_err(io_err("chown", p))?;
    }
    Ok(())
}

fn set_mtime(p: &Path, mtime: u64) -> Result<(), UnpackError> {
    let t = TimeSpec::new(mtime as i64, 0);
    utimensat(
        nix::fcntl::AT_FDCWD,
        p,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(sys_err("utimensat", p))
}

/// PAX `SCHILY.xattr.*` records; `user.*` and `security.capability` are
/// applied, other namespaces skipped. Failures are logged, not fatal.
fn apply_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>, target: &Path, name: &str) {
    let Ok(Some(exts)) = entry.pax_extensions() else {
        return;
    };
    for ext in exts.flatten() {
        let Ok(key) = ext.key() else { continue };
        let Some(attr) = key.strip_prefix("SCHILY.xattr.") else {
            continue;
        };
        if !(attr.starts_with("user.") || attr == "security.capability") {
            tracing::debug!(entry = %name, attr, "skipping xattr namespace");
            continue;
        }
        if let Err(err) = xattr::set(target, attr, ext.value_bytes()) {
            tracing::debug!(entry = %name, attr, %err, "could not set xattr");
        }
    }
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
