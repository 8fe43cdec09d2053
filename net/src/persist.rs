//! Atomic, versioned JSON files (G11): temp file, fsync, rename, fsync dir.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("write state file {path}")]
    Write {
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

/// Write `value` to `path` so that a crash leaves either the old or the new
/// file (berth-state's one atomic writer: 0600 temp, fsync, rename, fsync dir).
pub fn write_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), PersistError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|source| PersistError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    berth_state::write_atomic(path, &bytes).map_err(|source| PersistError::Write {
        path: path.to_path_buf(),
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
