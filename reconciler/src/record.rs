//! What berth created, persisted so a restarted agent can adopt or prune it.
//!
//! On-disk format (`<state-dir>/reconciler/pods.json`), written with
//! berth-state's atomic writer and versioned envelope:
//!
//! ```text
//! version 2: { "version": 2, "pods": [ PodRecord, ... ] }
//!            PodRecord = { pod, owner, owner_kind?, template_hash, spec_hash,
//!                          labels, spec, created,
//!                          backoff: { "<container>": BackoffRecord } }
//!            (`owner_kind`, e.g. "Job", is absent for Deployment pods and
//!            in files of berth before Jobs: read as a Deployment)
//! version 1: the same without "backoff" (berth before back-off was saved)
//! ```
//!
//! A record is written *before* anything of the pod is created on the host, and
//! removed only after everything of it is gone, so nothing berth creates is
//! ever unrecorded.
//!
//! Reading never turns a problem into "no pods": a file that cannot be
//! decoded is quarantined (moved aside, see `berth_state`), an entry that
//! cannot be decoded is dropped from the set while a copy of the whole file is
//! kept, and each problem is returned so the controller reports it and
//! recovers the affected pods from what the runtime observes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use berth_spec::k8s_openapi::api::core::v1::PodSpec;
use berth_state::{DecodeError, Loaded, StateError, Versioned};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::backoff::BackoffRecord;
use crate::traits::{PodRef, error_chain};

/// The version this berth writes.
pub const FORMAT_VERSION: u32 = 2;
/// Far above what a host's pods need (a record is a few KiB).
const MAX_BYTES: u64 = 64 << 20;

/// One pod instance berth created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodRecord {
    pub pod: PodRef,
    /// Name of the owning controller, if any.
    pub owner: Option<String>,
    /// Kind of the owner: a Deployment when unset (records before Jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_kind: Option<berth_spec::Kind>,
    /// `pod-template-hash` for Deployment pods.
    pub template_hash: Option<String>,
    pub spec_hash: String,
    pub labels: BTreeMap<String, String>,
    pub spec: PodSpec,
    pub created: SystemTime,
    /// Restart back-off per container name (version 2).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backoff: BTreeMap<String, BackoffRecord>,
}

impl PodRecord {
    /// Whether the controller `kind`/`name` (in the pod's namespace) owns this pod.
    pub fn owned_by(&self, kind: berth_spec::Kind, name: &str) -> bool {
        self.owner.as_deref() == Some(name)
            && self.owner_kind.unwrap_or(berth_spec::Kind::Deployment) == kind
    }
}

#[derive(Debug, Serialize)]
struct FileBody<'a> {
    pods: &'a [PodRecord],
}

/// The decoded file: good entries, and why the others were dropped.
struct RecordFile {
    pods: Vec<PodRecord>,
    bad: Vec<String>,
}

impl Versioned for RecordFile {
    const WHAT: &'static str = "pod records";
    const CURRENT: u32 = FORMAT_VERSION;
    const MAX_BYTES: u64 = MAX_BYTES;

    fn decode(version: u32, doc: Value) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Entries {
            pods: Vec<Value>,
        }
        match version {
            // version 1 differs only by the missing `backoff` (defaulted)
            1 | 2 => {
                let entries: Entries = serde_json::from_value(doc)
                    .map_err(|source| DecodeError::Invalid { version, source })?;
                let mut out = RecordFile {
                    pods: Vec::new(),
                    bad: Vec::new(),
                };
                for (i, e) in entries.pods.into_iter().enumerate() {
                    let name = pod_name_of(&e);
                    match serde_json::from_value::<PodRecord>(e) {
                        Ok(r) => out.pods.push(r),
                        Err(err) => out.bad.push(format!("entry {i} ({name}): {err}")),
                    }
                }
                Ok(out)
            }
            found => Err(DecodeError::UnknownVersion {
                found,
                newest: Self::CURRENT,
            }),
        }
    }
}

fn pod_name_of(v: &Value) -> String {
    let p = &v["pod"];
    match (p["namespace"].as_str(), p["name"].as_str()) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        _ => "unnamed".into(),
    }
}

/// Something wrong with the records, for an event and a status condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordProblem {
    /// The file could not be decoded and was moved aside.
    Quarantined {
        path: PathBuf,
        moved_to: PathBuf,
        cause: String,
    },
    /// The file could not be read (or not moved aside); it is left in place.
    Unreadable { path: PathBuf, cause: String },
    /// Some entries could not be decoded; the file was copied aside first.
    EntriesDropped {
        path: PathBuf,
        copy: Option<PathBuf>,
        entries: Vec<String>,
    },
}

impl RecordProblem {
    pub fn message(&self) -> String {
        match self {
            RecordProblem::Quarantined {
                path,
                moved_to,
                cause,
            } => format!(
                "pod records {} could not be read ({cause}); moved aside to {}; pods are recovered from the running containers",
                path.display(),
                moved_to.display()
            ),
            RecordProblem::Unreadable { path, cause } => format!(
                "pod records {} could not be read ({cause}); pods are recovered from the running containers",
                path.display()
            ),
            RecordProblem::EntriesDropped {
                path,
                copy,
                entries,
            } => format!(
                "{} of the pod records in {} could not be read ({}); copy kept at {}; those pods are recovered from the running containers",
                entries.len(),
                path.display(),
                entries.join("; "),
                copy.as_ref()
                    .map(|c| c.display().to_string())
                    .unwrap_or_else(|| "nowhere (copy failed)".into())
            ),
        }
    }
}

/// What loading found.
#[derive(Debug, Default)]
pub struct LoadedRecords {
    pub records: Vec<PodRecord>,
    pub problems: Vec<RecordProblem>,
    /// Version of the file as found (0: no file).
    pub version: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("saving pod records")]
    Save(#[source] StateError),
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

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read the records, migrating older versions.
    ///
    /// # Guarantees
    /// Never loses a file: what cannot be decoded is moved or copied aside
    /// and named in `problems`. `records` holds every entry that could be
    /// decoded; an empty `records` with problems means "unknown", not "none".
    pub fn load(&self) -> LoadedRecords {
        match berth_state::read_versioned::<RecordFile>(&self.path) {
            Ok(Loaded::Missing) => LoadedRecords::default(),
            Ok(Loaded::Found { value, version }) => {
                let mut problems = Vec::new();
                if !value.bad.is_empty() {
                    problems.push(RecordProblem::EntriesDropped {
                        path: self.path.clone(),
                        copy: self.keep_copy(),
                        entries: value.bad,
                    });
                }
                LoadedRecords {
                    records: value.pods,
                    problems,
                    version,
                }
            }
            Ok(Loaded::Quarantined(q)) => LoadedRecords {
                records: Vec::new(),
                problems: vec![RecordProblem::Quarantined {
                    path: q.path,
                    moved_to: q.moved_to,
                    cause: error_chain(&q.cause),
                }],
                version: 0,
            },
            // not readable at all (permissions, I/O): move it aside too, so
            // the next save does not overwrite what could not be read
            Err(e) => {
                let cause = error_chain(&e);
                let problem = match berth_state::quarantine(RecordFile::WHAT, &self.path, e) {
                    Ok(q) => RecordProblem::Quarantined {
                        path: q.path,
                        moved_to: q.moved_to,
                        cause,
                    },
                    Err(_) => RecordProblem::Unreadable {
                        path: self.path.clone(),
                        cause,
                    },
                };
                LoadedRecords {
                    records: Vec::new(),
                    problems: vec![problem],
                    version: 0,
                }
            }
        }
    }

    /// Copy the file aside before entries of it are dropped by the next save.
    fn keep_copy(&self) -> Option<PathBuf> {
        let data = std::fs::read(&self.path).ok()?;
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let copy = self
            .path
            .with_file_name(format!("pods.json.partial-{secs}"));
        berth_state::write_atomic(&copy, &data).ok()?;
        Some(copy)
    }

    /// Write all records (atomically; an encode error writes nothing).
    pub fn save(&self, pods: &[PodRecord]) -> Result<(), RecordError> {
        berth_state::write_versioned(&self.path, FORMAT_VERSION, &FileBody { pods })
            .map_err(RecordError::Save)
    }
}

#[cfg(test)]
mod tests;
