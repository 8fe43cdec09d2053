//! What berth remembers of Jobs and CronJobs, so a restarted agent (also
//! after kill -9) neither runs a finished Job again nor loses or repeats a
//! CronJob's scheduled time.
//!
//! On-disk format (`<state-dir>/reconciler/jobs.json`), written with
//! berth-state's atomic writer (temp file, fsync, rename) and versioned
//! envelope:
//!
//! ```text
//! version 1: { "version": 1,
//!              "jobs":     { "<ns>/<name>": JobRun, ... },
//!              "cronjobs": { "<ns>/<name>": CronState, ... } }
//! ```
//!
//! A file that cannot be decoded is quarantined (moved aside) and reported;
//! berth then starts from no Job state: Jobs whose pods are still recorded
//! count those pods again, so a finished Job whose pods remain is not re-run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use berth_spec::k8s_openapi::api::batch::v1::JobSpec;
use berth_state::{DecodeError, Loaded, StateError, Versioned};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cronjob::CronState;
use crate::traits::error_chain;

pub const FORMAT_VERSION: u32 = 1;
const MAX_BYTES: u64 = 64 << 20;

/// How a Job ended (persisted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobDone {
    pub complete: bool,
    /// `BackoffLimitExceeded`, `DeadlineExceeded` for a failed Job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub at: SystemTime,
    /// `ttlSecondsAfterFinished` passed: its pods are removed, it is no
    /// longer shown, and it stays finished while its manifest is unchanged.
    #[serde(default)]
    pub expired: bool,
}

/// A Job a CronJob created: its spec lives here, not in a manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CronOwned {
    pub cronjob: String,
    pub cronjob_uid: String,
    pub scheduled: SystemTime,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub spec: JobSpec,
}

/// One run of a Job (a manifest's, or a CronJob's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobRun {
    pub uid: String,
    /// Hash of what Kubernetes keeps immutable (template, completions,
    /// completionMode): a change makes a new run.
    pub hash: String,
    pub started: SystemTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<JobDone>,
    /// Pods counted when it finished (shown after its pods are gone).
    #[serde(default)]
    pub succeeded: u32,
    #[serde(default)]
    pub failed: u32,
    /// Pods created so far (seeds the pods' name suffixes).
    #[serde(default)]
    pub created_pods: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<CronOwned>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchState {
    #[serde(default)]
    pub jobs: BTreeMap<String, JobRun>,
    #[serde(default)]
    pub cronjobs: BTreeMap<String, CronState>,
}

/// `<ns>/<name>`, the key in the file.
pub fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

/// Namespace and name of a key.
pub fn split_key(k: &str) -> (&str, &str) {
    k.split_once('/').unwrap_or(("default", k))
}

impl Versioned for BatchState {
    const WHAT: &'static str = "job state";
    const CURRENT: u32 = FORMAT_VERSION;
    const MAX_BYTES: u64 = MAX_BYTES;

    fn decode(version: u32, doc: Value) -> Result<Self, DecodeError> {
        match version {
            1 => serde_json::from_value(doc)
                .map_err(|source| DecodeError::Invalid { version, source }),
            found => Err(DecodeError::UnknownVersion {
                found,
                newest: Self::CURRENT,
            }),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BatchStoreError {
    #[error("saving job state")]
    Save(#[source] StateError),
}

#[derive(Debug, Clone)]
pub struct BatchStore {
    path: PathBuf,
}

impl BatchStore {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join("reconciler").join("jobs.json"),
        }
    }

    /// The state, and a message when the file was unreadable (quarantined
    /// or left in place): the caller reports it.
    pub fn load(&self) -> (BatchState, Option<String>) {
        match berth_state::read_versioned::<BatchState>(&self.path) {
            Ok(Loaded::Missing) => (BatchState::default(), None),
            Ok(Loaded::Found { value, .. }) => (value, None),
            Ok(Loaded::Quarantined(q)) => (
                BatchState::default(),
                Some(format!(
                    "job state {} could not be read ({}); moved aside to {}; Jobs are counted from their recorded pods",
                    q.path.display(),
                    error_chain(&q.cause),
                    q.moved_to.display()
                )),
            ),
            Err(e) => {
                let cause = error_chain(&e);
                let moved = berth_state::quarantine("job state", &self.path, e)
                    .map(|q| format!("; moved aside to {}", q.moved_to.display()))
                    .unwrap_or_default();
                (
                    BatchState::default(),
                    Some(format!(
                        "job state {} could not be read ({cause}){moved}; Jobs are counted from their recorded pods",
                        self.path.display()
                    )),
                )
            }
        }
    }

    pub fn save(&self, state: &BatchState) -> Result<(), BatchStoreError> {
        berth_state::write_versioned(&self.path, FORMAT_VERSION, state)
            .map_err(BatchStoreError::Save)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_quarantine() {
        let dir = std::env::temp_dir().join(format!(
            "berth-batch-store-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let store = BatchStore::new(&dir);
        assert_eq!(store.load(), (BatchState::default(), None));
        let mut s = BatchState::default();
        s.jobs.insert(
            key("default", "backup"),
            JobRun {
                uid: "u1".into(),
                hash: "h".into(),
                started: SystemTime::UNIX_EPOCH,
                done: Some(JobDone {
                    complete: true,
                    reason: None,
                    message: None,
                    at: SystemTime::UNIX_EPOCH,
                    expired: false,
                }),
                succeeded: 1,
                failed: 0,
                created_pods: 1,
                cron: None,
            },
        );
        store.save(&s).unwrap();
        assert_eq!(store.load(), (s, None));
        std::fs::write(dir.join("reconciler/jobs.json"), b"{not json").unwrap();
        let (loaded, problem) = store.load();
        assert_eq!(loaded, BatchState::default());
        assert!(problem.unwrap().contains("moved aside"));
        assert!(!dir.join("reconciler/jobs.json").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
