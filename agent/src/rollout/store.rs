//! The rollout state of each source on disk.
//!
//! ```text
//! <state-dir>/rollouts/                      0700
//!   <source id>/                             0700; id = sha256(type + location), 16 hex
//!     tracker.json                           {"version":1, "type", "location", "tracker": {...}}
//!     objects-<sha256(revision), 16 hex>.json {"version":1, "revision", "objects": [{"kind", "location", "object"}]}
//! ```
//!
//! Every file is written with [`berth_state::write_versioned`] (temp file,
//! fsync, rename, fsync of the directory), so a kill -9 leaves the old file or
//! the new one. A file that cannot be decoded is quarantined
//! (`<name>.quarantined-...`): the tracker then starts empty (the next
//! revision is a rollout like a first one) and a missing object set means
//! there is nothing recorded to roll back to; never "nothing runs".
//!
//! Object sets are kept for the running and the last healthy revision only.

use std::path::{Path, PathBuf};

use berth_reconciler::rollout::Tracker;
use berth_spec::k8s_openapi::api::apps::v1::Deployment;
use berth_spec::k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use berth_spec::{Kind, Location, Object, Sourced, Volume};
use berth_state::{DecodeError, Loaded, StateError, Versioned};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("creating {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("rollout state")]
    State(#[from] StateError),
    #[error("encoding {object} for the rollout record")]
    Encode {
        object: String,
        #[source]
        source: serde_json::Error,
    },
}

/// `16 hex` digest naming a file or directory after arbitrary text.
fn short_digest(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

/// One source's directory.
#[derive(Debug, Clone)]
pub struct SourceStore {
    dir: PathBuf,
    kind: String,
    location: String,
}

#[derive(Serialize, Deserialize)]
struct TrackerFile {
    #[serde(rename = "type")]
    kind: String,
    location: String,
    tracker: Tracker,
}

impl Versioned for TrackerFile {
    const WHAT: &'static str = "rollout state";
    const CURRENT: u32 = VERSION;
    const MAX_BYTES: u64 = 4 << 20;

    fn decode(version: u32, doc: serde_json::Value) -> Result<Self, DecodeError> {
        match version {
            1 => serde_json::from_value(doc)
                .map_err(|source| DecodeError::Invalid { version, source }),
            found => Err(DecodeError::UnknownVersion {
                found,
                newest: VERSION,
            }),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct StoredObject {
    kind: Kind,
    location: Location,
    object: serde_json::Value,
}

#[derive(Serialize, Deserialize)]
struct ObjectsFile {
    revision: String,
    objects: Vec<StoredObject>,
}

impl Versioned for ObjectsFile {
    const WHAT: &'static str = "recorded revision objects";
    const CURRENT: u32 = VERSION;
    /// A source's objects are bounded by the parser (files of 4 MiB, a
    /// bounded file count); this is far above what a host runs.
    const MAX_BYTES: u64 = 64 << 20;

    fn decode(version: u32, doc: serde_json::Value) -> Result<Self, DecodeError> {
        match version {
            1 => serde_json::from_value(doc)
                .map_err(|source| DecodeError::Invalid { version, source }),
            found => Err(DecodeError::UnknownVersion {
                found,
                newest: VERSION,
            }),
        }
    }
}

fn object_from_json(kind: Kind, v: serde_json::Value) -> Result<Object, serde_json::Error> {
    Ok(match kind {
        Kind::Pod => Object::Pod(Box::new(serde_json::from_value::<Pod>(v)?)),
        Kind::Deployment => Object::Deployment(Box::new(serde_json::from_value::<Deployment>(v)?)),
        Kind::Service => Object::Service(Box::new(serde_json::from_value::<Service>(v)?)),
        Kind::Volume => Object::Volume(Box::new(serde_json::from_value::<Volume>(v)?)),
        Kind::ConfigMap => Object::ConfigMap(Box::new(serde_json::from_value::<ConfigMap>(v)?)),
        Kind::Secret => Object::Secret(Box::new(serde_json::from_value::<Secret>(v)?)),
        Kind::Job => Object::Job(Box::new(serde_json::from_value(v)?)),
        Kind::CronJob => Object::CronJob(Box::new(serde_json::from_value(v)?)),
        Kind::StatefulSet => Object::StatefulSet(Box::new(serde_json::from_value(v)?)),
        Kind::DaemonSet => Object::DaemonSet(Box::new(serde_json::from_value(v)?)),
        Kind::ReplicaSet => Object::ReplicaSet(Box::new(serde_json::from_value(v)?)),
        Kind::ReplicationController => {
            Object::ReplicationController(Box::new(serde_json::from_value(v)?))
        }
    })
}

impl SourceStore {
    /// The store of the source `kind` at `location`, below `root` (`<state-dir>/rollouts`).
    pub fn new(root: &Path, kind: &str, location: &str) -> Self {
        SourceStore {
            dir: root.join(short_digest(&format!("{kind}\n{location}"))),
            kind: kind.to_string(),
            location: location.to_string(),
        }
    }

    fn ensure_dir(&self) -> Result<(), StoreError> {
        for d in [self.dir.parent(), Some(self.dir.as_path())]
            .into_iter()
            .flatten()
        {
            berth_state::create_private_dir(d).map_err(|source| StoreError::CreateDir {
                path: d.to_path_buf(),
                source,
            })?;
        }
        Ok(())
    }

    fn tracker_path(&self) -> PathBuf {
        self.dir.join("tracker.json")
    }

    fn objects_path(&self, revision: &str) -> PathBuf {
        self.dir
            .join(format!("objects-{}.json", short_digest(revision)))
    }

    /// The persisted tracker; empty on a first start or when the file was
    /// quarantined (logged).
    pub fn load_tracker(&self) -> Tracker {
        match berth_state::read_versioned::<TrackerFile>(&self.tracker_path()) {
            Ok(Loaded::Found { value, .. }) => value.tracker,
            Ok(Loaded::Missing) => Tracker::default(),
            Ok(Loaded::Quarantined(q)) => {
                tracing::error!(path = %q.path.display(), moved_to = %q.moved_to.display(), err = %crate::sources::git::error_chain(&q.cause), "rollout state unreadable; quarantined, starting afresh");
                Tracker::default()
            }
            Err(e) => {
                tracing::error!(err = %crate::sources::git::error_chain(&e), "reading the rollout state");
                Tracker::default()
            }
        }
    }

    pub fn save_tracker(&self, tracker: &Tracker) -> Result<(), StoreError> {
        self.ensure_dir()?;
        let file = TrackerFile {
            kind: self.kind.clone(),
            location: self.location.clone(),
            tracker: tracker.clone(),
        };
        berth_state::write_versioned(&self.tracker_path(), VERSION, &file)?;
        Ok(())
    }

    /// Record the exact objects of `revision`.
    pub fn save_objects(&self, revision: &str, objects: &[Sourced]) -> Result<(), StoreError> {
        self.ensure_dir()?;
        let objects = objects
            .iter()
            .map(|s| {
                let object =
                    serde_json::to_value(&s.object).map_err(|source| StoreError::Encode {
                        object: s.object.key().to_string(),
                        source,
                    })?;
                Ok(StoredObject {
                    kind: s.object.kind(),
                    location: s.location.clone(),
                    object,
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let file = ObjectsFile {
            revision: revision.to_string(),
            objects,
        };
        berth_state::write_versioned(&self.objects_path(revision), VERSION, &file)?;
        Ok(())
    }

    /// The recorded objects of `revision`, if they were recorded and can be read.
    pub fn load_objects(&self, revision: &str) -> Option<Vec<Sourced>> {
        let path = self.objects_path(revision);
        let file = match berth_state::read_versioned::<ObjectsFile>(&path) {
            Ok(Loaded::Found { value, .. }) => value,
            Ok(Loaded::Missing) => return None,
            Ok(Loaded::Quarantined(q)) => {
                tracing::error!(path = %q.path.display(), moved_to = %q.moved_to.display(), err = %crate::sources::git::error_chain(&q.cause), "recorded objects unreadable; quarantined");
                return None;
            }
            Err(e) => {
                tracing::error!(err = %crate::sources::git::error_chain(&e), "reading recorded objects");
                return None;
            }
        };
        if file.revision != revision {
            tracing::error!(path = %path.display(), "recorded objects belong to another revision");
            return None;
        }
        let mut out = Vec::with_capacity(file.objects.len());
        for o in file.objects {
            match object_from_json(o.kind, o.object) {
                Ok(object) => out.push(Sourced {
                    object,
                    location: o.location,
                }),
                Err(e) => {
                    tracing::error!(path = %path.display(), err = %e, "a recorded object cannot be decoded");
                    return None;
                }
            }
        }
        Some(out)
    }

    /// Remove recorded object sets of every revision but `keep`.
    pub fn prune_objects(&self, keep: &[&str]) {
        let keep: Vec<PathBuf> = keep.iter().map(|r| self.objects_path(r)).collect();
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with("objects-")
                && name.ends_with(".json")
                && !keep.contains(&p)
                && let Err(err) = std::fs::remove_file(&p)
            {
                tracing::warn!(path = %p.display(), err = %err, "removing old recorded objects");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const YAML: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: web, annotations: {a: b}}\nspec:\n  containers:\n  - name: app\n    image: busybox:1.36\n    command: [sh, -c, 'sleep 1000']\n    env: [{name: X, value: '1'}]\n    readinessProbe: {exec: {command: ['true']}, periodSeconds: 1}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: d}}\n  template:\n    metadata: {labels: {app: d}}\n    spec: {containers: [{name: c, image: 'busybox:1.36'}]}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {k: v}\n---\napiVersion: berth.dev/v1alpha1\nkind: Volume\nmetadata: {name: vol}\nspec: {}\n";

    fn parsed() -> Vec<Sourced> {
        let p = berth_spec::parse_str("m.yaml", YAML);
        assert!(!p.has_errors(), "{:?}", p.diagnostics);
        p.objects
    }

    #[test]
    fn recorded_objects_come_back_identical_with_the_same_hashes() {
        let tmp = tempfile::tempdir().unwrap();
        let st = SourceStore::new(&tmp.path().join("rollouts"), "git", "file:///r");
        let objs = parsed();
        st.save_objects("c1", &objs).unwrap();
        let back = st.load_objects("c1").unwrap();
        assert_eq!(back, objs);
        for (a, b) in objs.iter().zip(&back) {
            if let (Object::Pod(a), Object::Pod(b)) = (&a.object, &b.object) {
                assert_eq!(
                    berth_reconciler::hash::spec_hash(&a.spec),
                    berth_reconciler::hash::spec_hash(&b.spec)
                );
            }
        }
        assert!(st.load_objects("c2").is_none());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&st.dir), 0o700);
        assert_eq!(mode(&st.objects_path("c1")), 0o600);
    }

    #[test]
    fn tracker_round_trips_and_garbage_is_quarantined() {
        let tmp = tempfile::tempdir().unwrap();
        let st = SourceStore::new(tmp.path(), "directory", "/m");
        assert_eq!(st.load_tracker(), Tracker::default());
        let t = Tracker {
            applied: Some("x".into()),
            running: Some("x".into()),
            last_healthy: Some("x".into()),
            ..Default::default()
        };
        st.save_tracker(&t).unwrap();
        assert_eq!(st.load_tracker(), t);
        std::fs::write(st.tracker_path(), b"{\"version\": 1, \"tracker\": 7").unwrap();
        assert_eq!(st.load_tracker(), Tracker::default());
        let quarantined = std::fs::read_dir(&st.dir)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains("quarantined"));
        assert!(quarantined);
    }

    #[test]
    fn prune_keeps_only_the_named_revisions() {
        let tmp = tempfile::tempdir().unwrap();
        let st = SourceStore::new(tmp.path(), "git", "u");
        for r in ["a", "b", "c"] {
            st.save_objects(r, &parsed()).unwrap();
        }
        st.prune_objects(&["a", "c"]);
        assert!(st.load_objects("a").is_some());
        assert!(st.load_objects("b").is_none());
        assert!(st.load_objects("c").is_some());
    }
}
