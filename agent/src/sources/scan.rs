//! Which files are manifests, and reading a directory tree of them, bounded.
//!
//! The walk follows symlinks (a manifest directory may be assembled from
//! links, as Kubernetes' ConfigMap volumes are) but visits every directory
//! once, by device and inode: a link back to a directory that contains it is
//! a loop, reported at the link's path and not followed; a second way into a
//! directory already read is skipped. Depth, directory, entry, file and byte
//! counts are bounded, so a hostile tree costs a bounded amount of time and
//! memory (issue 14: two `x -> .` links used to grow the agent by ~100 MB/s).
//!
//! Bounds that would make the result incomplete (too many files, directories,
//! entries or bytes) fail the whole scan, so a caller never takes a truncated
//! tree for the truth and drops objects; a loop, a too-deep directory or a
//! too-large file is an error entry at its path, like an unreadable file.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Directory levels read below the root.
pub const MAX_DEPTH: usize = 32;
/// Directories read (the root included).
pub const MAX_DIRS: usize = 5_000;
/// Directory entries looked at, manifests or not.
pub const MAX_ENTRIES: usize = 100_000;
/// Manifest files read.
pub const MAX_FILES: usize = 10_000;
/// Largest manifest file read (the parser refuses larger ones anyway).
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// Bytes of all manifest files of one scan together.
pub const MAX_TOTAL_BYTES: u64 = 64 << 20;

/// `*.yaml` / `*.yml`, not hidden, not an editor's temporary file
/// (`.#x.yaml`, `x.yaml~`, `.x.yaml.swp`, vim's `4913` probe).
pub fn is_manifest_name(name: &str) -> bool {
    !name.starts_with('.')
        && !name.ends_with('~')
        && !name.ends_with(".swp")
        && name != "4913"
        && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// One file found by [`scan_dir`]: its path and its text (or why it could not be read).
pub type Scanned = (PathBuf, io::Result<String>);

/// Why a scan or one of its entries failed (carried inside an [`io::Error`],
/// so callers print it like any read error).
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("directory loop: {link} leads back to {target}, which contains it (not followed)")]
    Loop { link: PathBuf, target: PathBuf },
    #[error("more than {MAX_DEPTH} directory levels below {root} (not read)")]
    TooDeep { root: PathBuf },
    #[error("file is larger than {MAX_FILE_BYTES} bytes (not read)")]
    FileTooLarge,
    #[error("not a regular file")]
    NotAFile,
    #[error("more than {limit} {what} under {root}: not read, split the directory")]
    TooMany {
        what: &'static str,
        limit: u64,
        root: PathBuf,
    },
}

impl From<ScanError> for io::Error {
    fn from(e: ScanError) -> Self {
        io::Error::other(e)
    }
}

/// Every manifest file under `root` (recursive, sorted, hidden directories
/// skipped, symlinks followed; see the module docs for the bounds).
///
/// # Errors
/// When `root` itself is missing or unreadable, and when a bound that would
/// leave the result incomplete is reached; unreadable files, loops and
/// too-deep directories inside are returned as entries with their error.
pub fn scan_dir(root: &Path) -> io::Result<Vec<Scanned>> {
    let meta = std::fs::metadata(root)?;
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotADirectory,
            "not a directory",
        ));
    }
    let mut walk = Walk {
        root,
        out: Vec::new(),
        visited: HashSet::new(),
        ancestors: Vec::new(),
        entries: 0,
        bytes: 0,
    };
    walk.dir(root, &meta, 0)?;
    let mut out = walk.out;
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

struct Walk<'r> {
    root: &'r Path,
    out: Vec<Scanned>,
    /// (device, inode) of every directory read.
    visited: HashSet<(u64, u64)>,
    /// The directories from the root down to the current one, with their paths.
    ancestors: Vec<((u64, u64), PathBuf)>,
    entries: usize,
    bytes: u64,
}

impl Walk<'_> {
    fn too_many(&self, what: &'static str, limit: usize) -> io::Error {
        ScanError::TooMany {
            what,
            limit: limit as u64,
            root: self.root.to_path_buf(),
        }
        .into()
    }

    fn dir(&mut self, dir: &Path, meta: &std::fs::Metadata, depth: usize) -> io::Result<()> {
        let id = (meta.dev(), meta.ino());
        if let Some((_, target)) = self.ancestors.iter().find(|(a, _)| *a == id) {
            let e = ScanError::Loop {
                link: dir.to_path_buf(),
                target: target.clone(),
            };
            self.out.push((dir.to_path_buf(), Err(e.into())));
            return Ok(());
        }
        if !self.visited.insert(id) {
            tracing::debug!(dir = %dir.display(), "directory already read through another path; skipped");
            return Ok(());
        }
        if self.visited.len() > MAX_DIRS {
            return Err(self.too_many("directories", MAX_DIRS));
        }
        let rd = match std::fs::read_dir(dir) {
            Ok(rd) => rd,
            Err(e) if depth == 0 => return Err(e),
            Err(e) => {
                self.out.push((dir.to_path_buf(), Err(e)));
                return Ok(());
            }
        };
        self.ancestors.push((id, dir.to_path_buf()));
        let r = self.entries_of(rd, depth);
        self.ancestors.pop();
        r
    }

    fn entries_of(&mut self, rd: std::fs::ReadDir, depth: usize) -> io::Result<()> {
        for entry in rd {
            let entry = entry?;
            self.entries += 1;
            if self.entries > MAX_ENTRIES {
                return Err(self.too_many("directory entries", MAX_ENTRIES));
            }
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else {
                continue; // dangling symlink
            };
            if meta.is_dir() {
                if depth >= MAX_DEPTH {
                    let e = ScanError::TooDeep {
                        root: self.root.to_path_buf(),
                    };
                    self.out.push((path, Err(e.into())));
                } else {
                    self.dir(&path, &meta, depth + 1)?;
                }
            } else if meta.is_file() && is_manifest_name(name) {
                if self.out.len() >= MAX_FILES {
                    return Err(self.too_many("manifest files", MAX_FILES));
                }
                let text = read_manifest(&path);
                if let Ok(t) = &text {
                    self.bytes += t.len() as u64;
                    if self.bytes > MAX_TOTAL_BYTES {
                        return Err(self.too_many("bytes of manifests", MAX_TOTAL_BYTES as usize));
                    }
                }
                self.out.push((path, text));
            }
        }
        Ok(())
    }
}

/// Read one manifest file: a regular file (opened without blocking, so a FIFO
/// swapped in cannot hang the scan) of at most [`MAX_FILE_BYTES`], UTF-8.
pub fn read_manifest(path: &Path) -> io::Result<String> {
    let f = File::options()
        .read(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(ScanError::NotAFile.into());
    }
    let mut buf = Vec::new();
    f.take(MAX_FILE_BYTES + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(ScanError::FileTooLarge.into());
    }
    String::from_utf8(buf).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
#[path = "scan_tests.rs"]
mod tests;
