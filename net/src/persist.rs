//! Atomic, versioned JSON files (G11): temp file, fsync, rename, fsync dir.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("create state directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("write temporary file {path}")]
    WriteTemp {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("rename {from} to {to}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("fsync directory {path}")]
    SyncDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("read state file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parse state file {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("encode state for {path}")]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("state file {path} has format version {found}, this berth understands {expected}")]
    Version {
        path: PathBuf,
        found: u32,
        expected: u32,
    },
}

/// Write `value` to `path` so that a crash leaves either the old or the new file.
pub fn write_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), PersistError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|source| PersistError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| PersistError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    let tmp = path.with_extension("json.tmp");
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()
    };
    write().map_err(|source| PersistError::WriteTemp {
        path: tmp.clone(),
        source,
    })?;
    fs::rename(&tmp, path).map_err(|source| PersistError::Rename {
        from: tmp.clone(),
        to: path.to_path_buf(),
        source,
    })?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| PersistError::SyncDir {
            path: dir.to_path_buf(),
            source,
        })
}

/// Read a JSON state file; `Ok(None)` when it does not exist.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, PersistError> {
    match fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| PersistError::Parse {
                    path: path.to_path_buf(),
                    source,
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PersistError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Check a file's format version.
pub fn check_version(path: &Path, found: u32, expected: u32) -> Result<(), PersistError> {
    if found == expected {
        Ok(())
    } else {
        Err(PersistError::Version {
            path: path.to_path_buf(),
            found,
            expected,
        })
    }
}
