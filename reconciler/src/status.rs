//! Observed state for readers (HTTP API, metrics): one writer (the reconciler),
//! many cheap readers holding an `Arc` snapshot (G10).

use std::sync::Arc;
use std::time::SystemTime;

use berth_spec::Volume;
use berth_spec::k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use berth_spec::k8s_openapi::api::core::v1::{Pod, ReplicationController, Service};
use serde::Serialize;
use tokio::sync::watch;

/// A Kubernetes-style event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// `Normal` or `Warning`.
    pub type_: String,
    pub reason: String,
    pub message: String,
    /// `Kind/namespace/name`
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub first_time: SystemTime,
    pub last_time: SystemTime,
    pub count: u32,
}

/// A condition of the agent itself (not of one object), Kubernetes-shaped:
/// unreadable state files, failed pod workers, pods running without a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCondition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` or `False`.
    pub status: String,
    pub reason: String,
    pub message: String,
    /// `/readyz` fails while this condition holds.
    #[serde(skip)]
    pub blocks_ready: bool,
}

/// Everything the API shows about workloads, as Kubernetes objects with `status` filled.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Bumped on every change; used as `metadata.resourceVersion` of lists.
    pub version: u64,
    pub pods: Vec<Pod>,
    pub deployments: Vec<Deployment>,
    pub services: Vec<Service>,
    pub volumes: Vec<Volume>,
    /// Jobs (a manifest's, and those CronJobs created) and CronJobs.
    pub jobs: Vec<berth_spec::k8s_openapi::api::batch::v1::Job>,
    pub cron_jobs: Vec<berth_spec::k8s_openapi::api::batch::v1::CronJob>,
    pub stateful_sets: Vec<StatefulSet>,
    pub daemon_sets: Vec<DaemonSet>,
    pub replica_sets: Vec<ReplicaSet>,
    pub replication_controllers: Vec<ReplicationController>,
    pub events: Vec<Event>,
    /// Log file of each container: (namespace, pod, container) -> current log path.
    pub logs: Vec<(String, String, String, std::path::PathBuf)>,
    pub reconcile_passes: u64,
    /// True once the first pass after start (including adoption) finished.
    pub ready: bool,
    /// Conditions of the agent (see [`AgentCondition`]).
    pub conditions: Vec<AgentCondition>,
}

impl Snapshot {
    /// Why the agent is not ready beyond the first pass, if anything says so.
    pub fn not_ready_reasons(&self) -> Vec<String> {
        self.conditions
            .iter()
            .filter(|c| c.blocks_ready)
            .map(|c| format!("{}: {}", c.type_, c.message))
            .collect()
    }
}

pub type StatusReader = watch::Receiver<Arc<Snapshot>>;
pub type StatusWriter = watch::Sender<Arc<Snapshot>>;

pub fn status_channel() -> (StatusWriter, StatusReader) {
    watch::channel(Arc::new(Snapshot::default()))
}
