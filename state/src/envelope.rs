//! The versioned envelope: a JSON object whose `"version"` sits next to the
//! format's own fields.
//!
//! ```text
//! { "version": 2, ...the format's fields... }      written by write_versioned
//! { ...the format's fields... }                    no "version": read as 1
//! ```

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use crate::atomic::write_atomic;

/// A file format berth versions.
pub trait Versioned: Sized {
    /// What the file holds, for messages (`"pod records"`).
    const WHAT: &'static str;
    /// The version this berth writes.
    const CURRENT: u32;
    /// Larger files are not parsed (they are quarantined).
    const MAX_BYTES: u64;

    /// Decode a document of format `version` (the whole object, `"version"`
    /// included), migrating older versions to the current shape.
    ///
    /// # Errors
    /// [`DecodeError::UnknownVersion`] for a version this berth does not
    /// know (a newer berth wrote it), [`DecodeError::Invalid`] when the
    /// document does not have the version's shape.
    fn decode(version: u32, doc: Value) -> Result<Self, DecodeError>;
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("format version {found} is unknown (this berth reads up to {newest})")]
    UnknownVersion { found: u32, newest: u32 },
    #[error("not a valid version {version} document")]
    Invalid {
        version: u32,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path} is not valid JSON")]
    Syntax {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} is not a JSON object")]
    NotAnObject { path: PathBuf },
    #[error("{path} has a \"version\" that is not a positive integer")]
    BadVersion { path: PathBuf },
    #[error("decoding {path}")]
    Decode {
        path: PathBuf,
        #[source]
        source: DecodeError,
    },
    #[error("encoding {path}")]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("moving {path} aside to {to}")]
    Quarantine {
        path: PathBuf,
        to: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What reading a versioned file found.
#[derive(Debug)]
pub enum Loaded<T> {
    /// No such file: nothing was ever written (a first start).
    Missing,
    /// Decoded; `version` is the version the file had before migration.
    Found { value: T, version: u32 },
    /// The file could not be decoded and was moved aside.
    Quarantined(Quarantine),
}

/// A file moved aside because it could not be read.
#[derive(Debug)]
pub struct Quarantine {
    pub path: PathBuf,
    pub moved_to: PathBuf,
    /// Why it could not be read.
    pub cause: StateError,
}

/// Write `body` (which must serialize to a JSON object) with `"version": version`.
///
/// # Errors
/// An encode failure is an error: nothing is written (never an empty file).
pub fn write_versioned<T: Serialize>(
    path: &Path,
    version: u32,
    body: &T,
) -> Result<(), StateError> {
    let data = encode_versioned(path, version, body)?;
    write_atomic(path, &data).map_err(|source| StateError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// The bytes [`write_versioned`] writes, for a caller that stores them its
/// own way (the runtime's run-dir files: atomic, without fsync). `path` only
/// names the file in errors.
///
/// # Errors
/// `body` does not encode, or not as a JSON object.
pub fn encode_versioned<T: Serialize>(
    path: &Path,
    version: u32,
    body: &T,
) -> Result<Vec<u8>, StateError> {
    let mut doc = serde_json::to_value(body).map_err(|source| StateError::Encode {
        path: path.to_path_buf(),
        source,
    })?;
    let Some(map) = doc.as_object_mut() else {
        return Err(StateError::NotAnObject {
            path: path.to_path_buf(),
        });
    };
    map.insert("version".into(), Value::from(version));
    serde_json::to_vec(&doc).map_err(|source| StateError::Encode {
        path: path.to_path_buf(),
        source,
    })
}

/// Read a versioned file, migrating it; quarantine it when it cannot be decoded.
///
/// # Errors
/// Only when the file exists but cannot be read (permissions, I/O) or could
/// not be moved aside: the caller must then treat its content as unknown,
/// never as empty.
pub fn read_versioned<T: Versioned>(path: &Path) -> Result<Loaded<T>, StateError> {
    let data = match read_bounded(path, T::MAX_BYTES) {
        Ok(Some(d)) => d,
        Ok(None) => return Ok(Loaded::Missing),
        Err(ReadFail::Io(source)) => {
            return Err(StateError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
        Err(ReadFail::TooLarge) => {
            let cause = StateError::TooLarge {
                path: path.to_path_buf(),
                limit: T::MAX_BYTES,
            };
            return quarantine(T::WHAT, path, cause).map(Loaded::Quarantined);
        }
    };
    match decode::<T>(path, &data) {
        Ok((value, version)) => Ok(Loaded::Found { value, version }),
        Err(cause) => quarantine(T::WHAT, path, cause).map(Loaded::Quarantined),
    }
}

/// Decode the bytes of a versioned file (no quarantine).
pub fn decode<T: Versioned>(path: &Path, data: &[u8]) -> Result<(T, u32), StateError> {
    let doc: Value = serde_json::from_slice(data).map_err(|source| StateError::Syntax {
        path: path.to_path_buf(),
        source,
    })?;
    let version = match doc.as_object().map(|m| m.get("version")) {
        None => {
            return Err(StateError::NotAnObject {
                path: path.to_path_buf(),
            });
        }
        Some(None) => 1,
        Some(Some(v)) => v
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v > 0)
            .ok_or_else(|| StateError::BadVersion {
                path: path.to_path_buf(),
            })?,
    };
    if version > T::CURRENT {
        return Err(StateError::Decode {
            path: path.to_path_buf(),
            source: DecodeError::UnknownVersion {
                found: version,
                newest: T::CURRENT,
            },
        });
    }
    T::decode(version, doc)
        .map(|v| (v, version))
        .map_err(|source| StateError::Decode {
            path: path.to_path_buf(),
            source,
        })
}

/// Move `path` (holding `what`) aside as `<name>.quarantined-<secs>-<nanos>`
/// in its directory, and report it ([`crate::take_reports`]).
///
/// # Errors
/// When the rename fails; the file is then left where it was (and reported
/// as kept in place).
pub fn quarantine(what: &str, path: &Path, cause: StateError) -> Result<Quarantine, StateError> {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".into());
    let to = path.with_file_name(format!(
        "{name}.quarantined-{}-{:09}",
        since.as_secs(),
        since.subsec_nanos()
    ));
    let moved = fs::rename(path, &to).and_then(|()| match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => File::open(d)?.sync_all(),
        _ => Ok(()),
    });
    match moved {
        Ok(()) => {
            crate::report(crate::FileProblem {
                what: what.into(),
                path: path.to_path_buf(),
                moved_to: Some(to.clone()),
                cause: crate::report::chain(&cause),
            });
            Ok(Quarantine {
                path: path.to_path_buf(),
                moved_to: to,
                cause,
            })
        }
        Err(source) => {
            let err = StateError::Quarantine {
                path: path.to_path_buf(),
                to,
                source,
            };
            crate::report_unreadable(what, path, &err);
            Err(err)
        }
    }
}

enum ReadFail {
    Io(io::Error),
    TooLarge,
}

fn read_bounded(path: &Path, limit: u64) -> Result<Option<Vec<u8>>, ReadFail> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ReadFail::Io(e)),
    };
    let mut data = Vec::new();
    f.take(limit.saturating_add(1))
        .read_to_end(&mut data)
        .map_err(ReadFail::Io)?;
    if data.len() as u64 > limit {
        return Err(ReadFail::TooLarge);
    }
    Ok(Some(data))
}

#[cfg(test)]
mod tests;
