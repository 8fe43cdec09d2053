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
//! - Every path operation (create, write, chmod, chown, utimes, xattrs,
//!   whiteouts, hard links, removal) is made relative to a directory file
//!   descriptor opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
//!   RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`, and metadata is set on the
//!   entry's own file descriptor or with `AT_SYMLINK_NOFOLLOW`: no link is
//!   ever followed, inside the layer or out of it. Leading `/` is stripped
//!   (as Docker does), `..` is resolved lexically and an entry that would
//!   climb above the root fails the layer; an entry whose parent is a symlink
//!   or a non-directory fails the layer, naming the entry.
//! - Directory modes and times are set last (so read-only directories can
//!   be filled), on a descriptor opened again without following links: a
//!   directory that a later entry replaced with a symlink fails the layer
//!   (the old `chmod` through such a link was the critical hole of issue 14).
//! - Hard links may only point at an existing non-directory inside the layer,
//!   reached without symlinks; a link to a symlink links the symlink itself.
//! - Files are created with `O_EXCL|O_NOFOLLOW` after removing what was there.
//! - Whiteouts must name a file of their own directory (`.wh..` and `.wh...`
//!   are refused).
//! - Char/block devices are created only with `CAP_MKNOD` (else skipped with a
//!   debug log); FIFOs always.
//! - Ownership is applied when running as root, then the mode (so setuid and
//!   setgid bits survive `chown`), then xattrs (`user.*` and
//!   `security.capability`, on the file's descriptor; best effort), then
//!   mtimes (directories last).
//! - Bounded: [`UnpackLimits`] caps the bytes (checked from each header
//!   before writing, and while streaming) and the entries of a layer, and
//!   paths deeper than [`MAX_DEPTH`] components are refused. A refused layer
//!   leaves nothing behind: its scratch directory is removed.
//!
//! # Assumptions
//! The scratch directory is private to this process (the store is 0700):
//! only the archive is hostile, not concurrent local writers.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{
    AtFlags, Dir, FileType, Gid, Mode, OFlags, ResolveFlags, Timespec, Timestamps, Uid, XattrFlags,
    chownat, fchmod, fchown, fsetxattr, futimens, linkat, makedev, mknodat, openat2, statat,
    symlinkat, unlinkat, utimensat,
};
use rustix::io::Errno;
use tar::EntryType;

use crate::content::Digest;
use crate::fsutil::{fsync_dir, unique_name};
use crate::layerstream::LayerStream;
use crate::targuard::TarGuard;

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
    #[error("whiteout {entry:?} names no file of its directory")]
    BadWhiteout { entry: String },
    #[error("layer entry {entry:?} is deeper than {max} path components")]
    TooDeep { entry: String, max: usize },
    #[error("layer entry {entry:?} takes the layer over its size limit of {max} bytes")]
    TooLarge { entry: String, max: u64 },
    #[error("layer has more than {max} entries")]
    TooManyEntries { max: u64 },
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

fn sys_err(op: &'static str, path: &Path) -> impl FnOnce(Errno) -> UnpackError {
    move |e| UnpackError::Io {
        op,
        path: path.to_path_buf(),
        source: e.into(),
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
    limits: UnpackLimits,
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
        // Reading, hashing and decompressing run on the stream's own
        // thread while this one applies the entries.
        let mut stream = LayerStream::start(f, comp).map_err(io_err("read", blob))?;
        let stats = {
            let mut ar = tar::Archive::new(TarGuard::new(&mut stream));
            apply_tar(&mut ar, &work, caps, limits)?
        };
        // Hash everything, including padding after the end-of-archive marker.
        let digests = stream
            .finish()
            .map_err(|source| UnpackError::Tar { source })?;
        let actual = digests.blob;
        if actual != *blob_digest {
            return Err(UnpackError::DigestMismatch {
                what: "blob",
                expected: blob_digest.clone(),
                actual,
            });
        }
        let actual = digests.diff;
        if actual != *diff_id {
            return Err(UnpackError::DigestMismatch {
                what: "uncompressed (diff ID)",
                expected: diff_id.clone(),
                actual,
            });
        }
        // One syncfs instead of an fsync per file, then commit by rename.
        let d = File::open(&work).map_err(io_err("open", &work))?;
        nix::unistd::syncfs(&d).map_err(|source| UnpackError::Sys {
            op: "syncfs",
            path: work.clone(),
            source,
        })?;
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

/// Resolution rules for every path operation inside a layer: stay beneath
/// the directory fd, and follow no symlink (nor magic link, nor mount point).
const BENEATH: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_XDEV);

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// One layer being extracted: every operation is relative to `root`, a
/// directory fd, with [`BENEATH`] resolution or `AT_SYMLINK_NOFOLLOW`.
struct Layer {
    root: OwnedFd,
    root_path: PathBuf,
    caps: Caps,
    /// The last parent directory opened, reused while entries stay in it.
    /// Dropped whenever a directory is removed (a component of its path may
    /// be gone).
    cached: Option<(PathBuf, OwnedFd)>,
}

impl Layer {
    fn open(root: &Path, caps: Caps) -> Result<Self, UnpackError> {
        let fd = rustix::fs::open(root, DIR_FLAGS, Mode::empty()).map_err(sys_err("open", root))?;
        Ok(Layer {
            root: fd,
            root_path: root.to_path_buf(),
            caps,
            cached: None,
        })
    }

    fn at(&self, rel: &Path) -> PathBuf {
        self.root_path.join(rel)
    }

    /// Open directory `rel` (relative to the root) without following any
    /// symlink, creating missing components when `create`.
    fn dir(
        &mut self,
        rel: &Path,
        entry: &str,
        create: bool,
    ) -> Result<BorrowedFd<'_>, UnpackError> {
        let hit = matches!(&self.cached, Some((p, _)) if p == rel);
        if !hit {
            let fd = self.walk(rel, entry, create)?;
            self.cached = Some((rel.to_path_buf(), fd));
        }
        Ok(self
            .cached
            .as_ref()
            .map(|(_, fd)| fd.as_fd())
            .unwrap_or(self.root.as_fd()))
    }

    fn walk(&self, rel: &Path, entry: &str, create: bool) -> Result<OwnedFd, UnpackError> {
        // The common case: the whole path exists as directories.
        if let Ok(fd) = openat2(
            &self.root,
            dot_if_empty(rel),
            DIR_FLAGS,
            Mode::empty(),
            BENEATH,
        ) {
            return Ok(fd);
        }
        let mut cur = openat2(&self.root, ".", DIR_FLAGS, Mode::empty(), BENEATH)
            .map_err(sys_err("open", &self.root_path))?;
        let mut so_far = PathBuf::new();
        for c in rel.components() {
            so_far.push(c);
            let name = c.as_os_str();
            let next = match openat2(&cur, name, DIR_FLAGS, Mode::empty(), BENEATH) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rustix::fs::mkdirat(&cur, name, Mode::from_raw_mode(0o755)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(sys_err("mkdir", &self.at(&so_far))(e)),
                    }
                    openat2(&cur, name, DIR_FLAGS, Mode::empty(), BENEATH)
                        .map_err(|e| self.classify(&cur, name, &so_far, entry, e))?
                }
                Err(e) => return Err(self.classify(&cur, name, &so_far, entry, e)),
            };
            cur = next;
        }
        Ok(cur)
    }

    /// Name why `name` in `dir` could not be opened as a directory.
    fn classify(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        so_far: &Path,
        entry: &str,
        e: Errno,
    ) -> UnpackError {
        match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                UnpackError::ThroughSymlink {
                    entry: entry.to_string(),
                    component: so_far.to_path_buf(),
                }
            }
            Ok(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
                UnpackError::NotADirectory {
                    entry: entry.to_string(),
                    component: so_far.to_path_buf(),
                }
            }
            _ => sys_err("open", &self.at(so_far))(e),
        }
    }

    /// Remove whatever is at `name` in `dir` unless it is a directory and
    /// `keep_dir`. Returns whether a directory was kept.
    fn clear(&mut self, parent: &Path, name: &OsStr, keep_dir: bool) -> Result<bool, UnpackError> {
        let path = self.at(&parent.join(name));
        let dir = self.dir(parent, "", false)?;
        let st = match statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(sys_err("lstat", &path)(e)),
            Ok(st) => st,
        };
        if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
            unlinkat(dir, name, AtFlags::empty()).map_err(sys_err("remove", &path))?;
            return Ok(false);
        }
        if keep_dir {
            return Ok(true);
        }
        let dir = self
            .dir(parent, "", false)?
            .try_clone_to_owned()
            .map_err(|e| io_err("dup", &path)(e))?;
        self.cached = None;
        remove_tree(&dir, name, &path, 0)?;
        Ok(false)
    }

    fn chown_fd(&self, fd: BorrowedFd<'_>, m: &Meta, path: &Path) -> Result<(), UnpackError> {
        if self.caps.is_root {
            fchown(fd, Some(uid(m)), Some(gid(m))).map_err(sys_err("chown", path))?;
        }
        Ok(())
    }
}

fn chown_at(
    caps: Caps,
    dir: BorrowedFd<'_>,
    name: &OsStr,
    m: &Meta,
    path: &Path,
) -> Result<(), UnpackError> {
    if caps.is_root {
        chownat(
            dir,
            name,
            Some(uid(m)),
            Some(gid(m)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(sys_err("chown", path))?;
    }
    Ok(())
}

fn dot_if_empty(p: &Path) -> &Path {
    if p.as_os_str().is_empty() {
        Path::new(".")
    } else {
        p
    }
}

fn uid(m: &Meta) -> Uid {
    Uid::from_raw(m.uid as u32)
}

fn gid(m: &Meta) -> Gid {
    Gid::from_raw(m.gid as u32)
}

fn times(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime.min(i64::MAX as u64) as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Remove the directory `name` in `dir` and everything beneath it, without
/// following symlinks.
fn remove_tree(dir: &OwnedFd, name: &OsStr, path: &Path, depth: usize) -> Result<(), UnpackError> {
    if depth > MAX_DEPTH {
        return Err(UnpackError::TooDeep {
            entry: path.display().to_string(),
            max: MAX_DEPTH,
        });
    }
    let fd =
        openat2(dir, name, DIR_FLAGS, Mode::empty(), BENEATH).map_err(sys_err("open", path))?;
    let mut children = Vec::new();
    for e in Dir::read_from(&fd).map_err(sys_err("read dir", path))? {
        let e = e.map_err(sys_err("read dir", path))?;
        let n = e.file_name().to_bytes();
        if n == b"." || n == b".." {
            continue;
        }
        children.push((OsStr::from_bytes(n).to_os_string(), e.file_type()));
    }
    for (n, ft) in children {
        let p = path.join(&n);
        let is_dir = match ft {
            FileType::Unknown => statat(&fd, &n, AtFlags::SYMLINK_NOFOLLOW)
                .map(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory)
                .map_err(sys_err("lstat", &p))?,
            ft => ft == FileType::Directory,
        };
        if is_dir {
            remove_tree(&fd, &n, &p, depth + 1)?;
        } else {
            unlinkat(&fd, &n, AtFlags::empty()).map_err(sys_err("remove", &p))?;
        }
    }
    unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(sys_err("remove", path))
}

struct Meta {
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
}

/// Deepest path (in components) an entry may have; real images stay far below.
pub const MAX_DEPTH: usize = 256;

/// Bounds on one layer, checked while streaming.
#[derive(Debug, Clone, Copy)]
pub struct UnpackLimits {
    /// Total bytes of file content in one layer.
    pub max_bytes: u64,
    /// Entries in one layer.
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_bytes: 8 << 30,
            max_entries: 2_000_000,
        }
    }
}

/// Apply every entry of `ar` under `root` (see the module guarantees).
pub fn apply_tar<R: Read>(
    ar: &mut tar::Archive<R>,
    root: &Path,
    caps: Caps,
    limits: UnpackLimits,
) -> Result<UnpackStats, UnpackError> {
    let tar_err = |source| UnpackError::Tar { source };
    let mut layer = Layer::open(root, caps)?;
    let mut stats = UnpackStats::default();
    let mut dirs: Vec<(PathBuf, Meta, String)> = Vec::new();
    let mut buf = vec![0u8; 256 * 1024];
    for entry in ar.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        stats.entries += 1;
        if stats.entries > limits.max_entries {
            return Err(UnpackError::TooManyEntries {
                max: limits.max_entries,
            });
        }
        let raw = entry.path().map_err(tar_err)?.into_owned();
        let name = raw.display().to_string();
        let rel = clean_path(&raw)?;
        if rel.components().count() > MAX_DEPTH {
            return Err(UnpackError::TooDeep {
                entry: name,
                max: MAX_DEPTH,
            });
        }
        let h = entry.header();
        let kind = h.entry_type();
        let size = entry.size();
        if stats.bytes.saturating_add(size) > limits.max_bytes {
            return Err(UnpackError::TooLarge {
                entry: name,
                max: limits.max_bytes,
            });
        }
        let meta = Meta {
            mode: h.mode().map_err(tar_err)? & 0o7777,
            uid: h.uid().map_err(tar_err)?,
            gid: h.gid().map_err(tar_err)?,
            mtime: h.mtime().map_err(tar_err)?,
        };
        let (parent, base) = match (rel.parent(), rel.file_name()) {
            (Some(p), Some(b)) => (p.to_path_buf(), b.to_os_string()),
            _ => {
                // The layer root itself ("./"): only directories make sense.
                if kind != EntryType::Directory {
                    return Err(UnpackError::PathEscapes { entry: name });
                }
                continue;
            }
        };
        let target = layer.at(&rel);
        let base_str = base.to_string_lossy();

        // OCI whiteouts.
        if base_str == ".wh..wh..opq" {
            let dir = layer.dir(&parent, &name, true)?;
            let fd = dir.try_clone_to_owned().map_err(io_err("dup", &target))?;
            fsetxattr(&fd, "trusted.overlay.opaque", b"y", XattrFlags::empty()).map_err(|e| {
                UnpackError::OpaqueNotPermitted {
                    entry: name.clone(),
                    source: e.into(),
                }
            })?;
            stats.whiteouts += 1;
            continue;
        }
        if let Some(hidden) = base_str.strip_prefix(".wh.") {
            if hidden.starts_with(".wh.") {
                tracing::debug!(entry = %name, "skipping aufs metadata entry");
                continue;
            }
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(UnpackError::BadWhiteout { entry: name });
            }
            let hidden = OsStr::new(hidden);
            let path = layer.at(&parent.join(hidden));
            layer.dir(&parent, &name, true)?;
            layer.clear(&parent, hidden, false)?;
            let dir = layer.dir(&parent, &name, true)?;
            mknodat(
                dir,
                hidden,
                FileType::CharacterDevice,
                Mode::empty(),
                makedev(0, 0),
            )
            .map_err(|e| UnpackError::WhiteoutNotPermitted {
                entry: name.clone(),
                source: nix::Error::from_raw(e.raw_os_error()),
            })?;
            chown_at(caps, dir, hidden, &meta, &path)?;
            stats.whiteouts += 1;
            continue;
        }

        layer.dir(&parent, &name, true)?;
        match kind {
            EntryType::Directory => {
                if !layer.clear(&parent, &base, true)? {
                    let dir = layer.dir(&parent, &name, true)?;
                    rustix::fs::mkdirat(dir, &base, Mode::from_raw_mode(0o700))
                        .map_err(sys_err("mkdir", &target))?;
                }
                // Owner and xattrs now; mode and mtime once the children are written.
                let fd = layer.walk(&rel, &name, false)?;
                layer.chown_fd(fd.as_fd(), &meta, &target)?;
                apply_xattrs(&mut entry, &fd, &name);
                dirs.push((rel, meta, name));
                continue;
            }
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                layer.clear(&parent, &base, false)?;
                let dir = layer.dir(&parent, &name, true)?;
                let fd = openat2(
                    dir,
                    &base,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                    BENEATH,
                )
                .map_err(sys_err("create", &target))?;
                let mut f = File::from(fd);
                loop {
                    let n = entry.read(&mut buf).map_err(tar_err)?;
                    if n == 0 {
                        break;
                    }
                    f.write_all(&buf[..n]).map_err(io_err("write", &target))?;
                    stats.bytes += n as u64;
                    if stats.bytes > limits.max_bytes {
                        return Err(UnpackError::TooLarge {
                            entry: name,
                            max: limits.max_bytes,
                        });
                    }
                }
                layer.chown_fd(f.as_fd(), &meta, &target)?;
                fchmod(&f, Mode::from_raw_mode(meta.mode)).map_err(sys_err("chmod", &target))?;
                apply_xattrs(&mut entry, &f, &name);
                futimens(&f, &times(meta.mtime)).map_err(sys_err("utimens", &target))?;
                continue;
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
                    })?
                    .into_owned();
                layer.clear(&parent, &base, false)?;
                let dir = layer.dir(&parent, &name, true)?;
                symlinkat(&link, dir, &base).map_err(sys_err("symlink", &target))?;
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
                let (Some(lparent), Some(lbase)) = (lrel.parent(), lrel.file_name()) else {
                    return Err(bad("target is the layer root"));
                };
                let src_dir = match layer.walk(lparent, &name, false) {
                    Ok(fd) => fd,
                    Err(UnpackError::ThroughSymlink { .. }) => {
                        return Err(bad("target path goes through a symlink"));
                    }
                    Err(UnpackError::NotADirectory { .. }) => {
                        return Err(bad("target path goes through a non-directory"));
                    }
                    Err(UnpackError::Io { .. }) => {
                        return Err(bad("target does not exist in this layer"));
                    }
                    Err(other) => return Err(other),
                };
                match statat(&src_dir, lbase, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                        return Err(bad("target is a directory"));
                    }
                    Ok(_) => {}
                    Err(_) => return Err(bad("target does not exist in this layer")),
                }
                if lrel == rel {
                    continue;
                }
                layer.clear(&parent, &base, false)?;
                let dir = layer.dir(&parent, &name, true)?;
                // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
                linkat(&src_dir, lbase, dir, &base, AtFlags::empty())
                    .map_err(sys_err("link", &target))?;
                continue; // the inode's metadata came with its first name
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let ft = match kind {
                    EntryType::Char => FileType::CharacterDevice,
                    EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                if ft != FileType::Fifo && !caps.can_mknod {
                    tracing::debug!(entry = %name, "skipping device node: no CAP_MKNOD");
                    stats.skipped_devices += 1;
                    continue;
                }
                let major = entry.header().device_major().map_err(tar_err)?.unwrap_or(0);
                let minor = entry.header().device_minor().map_err(tar_err)?.unwrap_or(0);
                layer.clear(&parent, &base, false)?;
                let dir = layer.dir(&parent, &name, true)?;
                mknodat(
                    dir,
                    &base,
                    ft,
                    Mode::from_raw_mode(0o600),
                    makedev(major, minor),
                )
                .map_err(sys_err("mknod", &target))?;
                chown_at(caps, dir, &base, &meta, &target)?;
                // fchmodat cannot refuse symlinks on every kernel: check the
                // node just made is still what it is (the directory is
                // private to this process; only the archive is hostile, and
                // it is read sequentially).
                let st = statat(dir, &base, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(sys_err("lstat", &target))?;
                if FileType::from_raw_mode(st.st_mode) != ft {
                    return Err(UnpackError::PathEscapes { entry: name });
                }
                rustix::fs::chmodat(dir, &base, Mode::from_raw_mode(meta.mode), AtFlags::empty())
                    .map_err(sys_err("chmod", &target))?;
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
        // Symlinks and special files: owner, then mtime, never following.
        let dir = layer.dir(&parent, &name, false)?;
        chown_at(caps, dir, &base, &meta, &target)?;
        utimensat(dir, &base, &times(meta.mtime), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(sys_err("utimensat", &target))?;
    }
    // Deepest first, so setting a parent's mtime is the last touch. A
    // directory that a later entry replaced is skipped; one that a symlink
    // replaced refuses the layer (its mode must never reach the link's target).
    dirs.sort_by_key(|(p, _, _)| std::cmp::Reverse(p.components().count()));
    for (rel, m, name) in &dirs {
        let p = layer.at(rel);
        let fd = match openat2(&layer.root, rel, DIR_FLAGS, Mode::empty(), BENEATH) {
            Ok(fd) => fd,
            Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => {
                // Find out why, component by component.
                match layer.walk(rel, name, false) {
                    Err(UnpackError::NotADirectory { .. }) => continue,
                    Err(UnpackError::Io { source, .. })
                        if source.kind() == io::ErrorKind::NotFound =>
                    {
                        continue;
                    }
                    Err(e) => return Err(e),
                    Ok(_) => {
                        return Err(UnpackError::PathEscapes {
                            entry: name.clone(),
                        });
                    }
                }
            }
            Err(e) => return Err(sys_err("open", &p)(e)),
        };
        fchmod(&fd, Mode::from_raw_mode(m.mode)).map_err(sys_err("chmod", &p))?;
        futimens(&fd, &times(m.mtime)).map_err(sys_err("utimens", &p))?;
    }
    Ok(stats)
}

/// PAX `SCHILY.xattr.*` records, set on the entry's own file descriptor;
/// `user.*` and `security.capability` are applied, other namespaces
/// skipped. Failures are logged, not fatal.
fn apply_xattrs<R: Read, F: AsFd>(entry: &mut tar::Entry<'_, R>, fd: F, name: &str) {
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
        if let Err(err) = fsetxattr(&fd, attr, ext.value_bytes(), XattrFlags::empty()) {
            tracing::debug!(entry = %name, attr, %err, "could not set xattr");
        }
    }
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
