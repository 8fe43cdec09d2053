//! What berth created, persisted so a restarted agent can adopt or prune it.
//!
//! On-disk format (`<state-dir>/reconciler/pods.json`), written atomically
//! (temp + fsync + rename + fsync dir):
//!
//! ```text
//! { "version": 1, "pods": [ PodRecord, ... ] }
//! ```
//!
//! A record is written *before* anything of the pod is created on the host, and
//! removed only after everything of it is gone, so nothing berth creates is
//! ever unrecorded.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use berth_spec::k8s_openapi::api::core::v1::PodSpec;
use serde::{Deserialize, Serialize};

use crate::traits::PodRef;

pub const FORMAT_VERSION: u32 = 1;

/// One pod instance berth created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub pod: PodRef,
    /// Name of the owning Deployment, if any.
    pub owner: Option<String>,
    /// `pod-template-hash` for Deployment pods.
    pub template_hash: Option<String>,
    pub spec_hash: String,
    pub labels: BTreeMap<String, String>,
    pub spec: PodSpec,
    pub created: SystemTime,
}

#[derive(Debug, Serialize, Deserialize)]
struct FileFormat {
    version: u32,
    pods: Vec<PodRecord>,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("reading pod records {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pod records {path} are corrupt")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("pod records {path} have format version {found}, this berth reads {FORMAT_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("writing pod records {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The record file of one instance.
#[derive(Debug, Clone)]
pub struct RecordStore {
    path: PathBuf,
}

impl RecordStore {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("reconciler").join("pods.json"),
        }
    }

    pub fn load(&self) -> Result<Vec<PodRecord>, RecordError> {
        let data = match fs::read(&self.path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(RecordError::Read {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let f: FileFormat =
            serde_json::from_slice(&data).map_err(|source| RecordError::Corrupt {
                path: self.path.clone(),
                source,
            })?;
        if f.version != FORMAT_VERSION {
            return Err(RecordError::Version {
                path: self.path.clone(),
                found: f.version,
            });
        }
        Ok(f.pods)
    }

    pub fn save(&self, pods: &[PodRecord]) -> Result<(), RecordError> {
        let body = serde_json::to_vec_pretty(&FileFormat {
            version: FORMAT_VERSION,
            pods: pods.to_vec(),
        })
        .unwrap_or_default();
        write_atomic(&self.path, &body).map_err(|source| RecordError::Write {
            path: self.path.clone(),
            source,
        })
    }
}

/// temp file + fsync + rename + fsync of the directory.
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
    ));
    {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str) -> PodRecord {
        PodRecord {
            pod: PodRef {
                namespace: "default".into(),
                name: name.into(),
                uid: "abc".into(),
            },
            owner: None,
            template_hash: None,
            spec_hash: "h".into(),
            labels: BTreeMap::new(),
            spec: PodSpec::default(),
            created: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn roundtrip_and_missing_file() {
        let dir = std::env::temp_dir().join(format!("berth-rec-{}", std::process::id()));
        let store = RecordStore::new(&dir);
        assert!(store.load().unwrap().is_empty());
        store.save(&[rec("a"), rec("b")]).unwrap();
        let back = store.load().unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].pod.name, "b");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn wrong_version_is_refused() {
        let dir = std::env::temp_dir().join(format!("berth-recv-{}", std::process::id()));
        let store = RecordStore::new(&dir);
        write_atomic(&store.path, br#"{"version": 99, "pods": []}"#).unwrap();
        assert!(matches!(
            store.load(),
            Err(RecordError::Version { found: 99, .. })
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
