//! Reference -> image record, one JSON file written atomically.
//!
//! ```text
//! <root>/index.json
//! { "version": 1,
//!   "images": { "docker.io/library/busybox:latest": {
//!       "manifest": "sha256:..", "config": "sha256:..", "repo_digest": "docker.io/library/busybox@sha256:..",
//!       "extra_blobs": ["sha256:<index>"], "layers": [{"blob": "sha256:..", "diff_id": "sha256:..", "chain_id": "sha256:.."}],
//!       "size": 123, "created": 1700000000, "last_used": 1700000000 } } }
//! ```
//!
//! An entry is written only after its blobs are committed and its layers
//! unpacked, so an entry never names a half-pulled image.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::fsutil::atomic_write;

pub const INDEX_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("reading image index {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("image index {path} is not valid JSON")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("image index {path} has format version {found}, this berth reads {INDEX_VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("writing image index {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LayerRecord {
    pub blob: String,
    pub diff_id: String,
    pub chain_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    pub manifest: String,
    pub config: String,
    #[serde(default)]
    pub repo_digest: Option<String>,
    /// Other blobs kept for this image (e.g. the multi-arch index).
    #[serde(default)]
    pub extra_blobs: Vec<String>,
    pub layers: Vec<LayerRecord>,
    #[serde(default)]
    pub size: u64,
    pub created: u64,
    pub last_used: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct IndexFile {
    version: u32,
    images: BTreeMap<String, ImageRecord>,
}

pub struct Index {
    path: PathBuf,
    state: Mutex<BTreeMap<String, ImageRecord>>,
}

pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Index {
    pub fn open(root: &Path) -> Result<Self, IndexError> {
        let path = root.join("index.json");
        let images = match std::fs::read(&path) {
            Ok(data) => {
                let f: IndexFile =
                    serde_json::from_slice(&data).map_err(|source| IndexError::Parse {
                        path: path.clone(),
                        source,
                    })?;
                if f.version != INDEX_VERSION {
                    return Err(IndexError::Version {
                        path,
                        found: f.version,
                    });
                }
                f.images
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(source) => return Err(IndexError::Read { path, source }),
        };
        Ok(Index {
            path,
            state: Mutex::new(images),
        })
    }

    fn persist(&self, images: &BTreeMap<String, ImageRecord>) -> Result<(), IndexError> {
        #[derive(Serialize)]
        struct Out<'a> {
            version: u32,
            images: &'a BTreeMap<String, ImageRecord>,
        }
        let data = serde_json::to_vec_pretty(&Out {
            version: INDEX_VERSION,
            images,
        })
        .expect("index serialises");
        atomic_write(&self.path, &data).map_err(|source| IndexError::Write {
            path: self.path.clone(),
            source,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ImageRecord>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, reference: &str) -> Option<ImageRecord> {
        self.lock().get(reference).cloned()
    }

    pub fn all(&self) -> BTreeMap<String, ImageRecord> {
        self.lock().clone()
    }

    pub fn put(&self, reference: &str, rec: ImageRecord) -> Result<(), IndexError> {
        let mut g = self.lock();
        let mut next = g.clone();
        next.insert(reference.to_string(), rec);
        self.persist(&next)?;
        *g = next;
        Ok(())
    }

    pub fn remove(&self, reference: &str) -> Result<Option<ImageRecord>, IndexError> {
        let mut g = self.lock();
        if !g.contains_key(reference) {
            return Ok(None);
        }
        let mut next = g.clone();
        let old = next.remove(reference);
        self.persist(&next)?;
        *g = next;
        Ok(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(m: &str) -> ImageRecord {
        ImageRecord {
            manifest: m.into(),
            config: "sha256:c".into(),
            repo_digest: None,
            extra_blobs: vec![],
            layers: vec![],
            size: 1,
            created: 1,
            last_used: 2,
        }
    }

    #[test]
    fn persists_and_versions() {
        let t = tempfile::tempdir().unwrap();
        let i = Index::open(t.path()).unwrap();
        i.put("a", rec("m1")).unwrap();
        i.put("b", rec("m2")).unwrap();
        i.remove("a").unwrap();
        let j = Index::open(t.path()).unwrap();
        assert_eq!(j.get("b"), Some(rec("m2")));
        assert_eq!(j.get("a"), None);
        let text = std::fs::read_to_string(t.path().join("index.json")).unwrap();
        assert!(text.contains("\"version\": 1"), "{text}");
        std::fs::write(t.path().join("index.json"), r#"{"version":9,"images":{}}"#).unwrap();
        assert!(matches!(
            Index::open(t.path()),
            Err(IndexError::Version { found: 9, .. })
        ));
        std::fs::write(t.path().join("index.json"), "{").unwrap();
        assert!(matches!(
            Index::open(t.path()),
            Err(IndexError::Parse { .. })
        ));
    }
}
