//! Pods: one worker task per pod instance drives its lifecycle (network,
//! sandbox, volumes, init containers, containers, restarts, probes,
//! termination) and reports Kubernetes status to the controller.

pub mod error;
pub mod etc_files;
pub mod fs_group;
#[cfg(test)]
mod hooks_tests;
pub mod hostname;
pub mod plan;
mod projection;
#[cfg(test)]
mod setup_tests;
pub mod status;
pub mod volumes;
pub(crate) mod worker;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use berth_spec::k8s_openapi::api::core::v1::{PodSpec, PodStatus};
use tokio::sync::{mpsc, watch};

use crate::container::ConfigObjects;
use crate::traits::{ContainerInfo, PodRef};

pub use worker::{REASON_SUPERVISOR_LOST, spawn};

/// A pod berth wants on this host, after Deployment expansion.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredPod {
    pub namespace: String,
    pub name: String,
    /// Owning controller (a Deployment unless `owner_kind` says otherwise).
    pub owner: Option<String>,
    pub owner_kind: Option<berth_spec::Kind>,
    pub template_hash: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub spec: PodSpec,
    pub spec_hash: String,
}

/// The host-facing dependencies.
pub struct Deps<I, R, N> {
    pub images: Arc<I>,
    pub runtime: Arc<R>,
    pub net: Arc<N>,
}

impl<I, R, N> Clone for Deps<I, R, N> {
    fn clone(&self) -> Self {
        Self {
            images: self.images.clone(),
            runtime: self.runtime.clone(),
            net: self.net.clone(),
        }
    }
}

/// Objects pods refer to (ConfigMaps, Secrets, Volume claims), shared by all workers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct World {
    pub objs: ConfigObjects,
    /// (namespace, name) of every Volume.
    pub claims: BTreeSet<(String, String)>,
    /// Images of a rollback: taken from the host, never pulled, even with
    /// `imagePullPolicy: Always` (a rollback must work with no registry).
    pub no_pull: BTreeSet<String>,
    /// Services with a cluster IP, for containers' environment.
    pub services: Vec<crate::service_env::ServiceEnv>,
}

/// Settings every worker needs.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub state_dir: std::path::PathBuf,
    pub run_dir: std::path::PathBuf,
    pub node_name: String,
    pub host_ip: Option<std::net::Ipv4Addr>,
}

/// Messages from workers to the controller.
#[derive(Debug)]
pub enum WorkerMsg {
    Status {
        pod: PodRef,
        status: Box<PodStatus>,
        /// (container name, current log file)
        logs: Vec<(String, std::path::PathBuf)>,
    },
    Event {
        pod: PodRef,
        warning: bool,
        reason: String,
        message: String,
    },
    /// A container's restart back-off changed (saved with the pod's record).
    Backoff {
        pod: PodRef,
        container: String,
        state: crate::backoff::BackoffRecord,
    },
    /// The worker's task panicked (sent by its supervisor in [`spawn`]).
    Crashed { pod: PodRef, message: String },
    /// Everything of the pod is gone from the host.
    Gone { pod: PodRef },
}

/// The controller's handle on a worker.
pub struct WorkerHandle {
    /// `Some(grace)` asks the worker to terminate the pod.
    pub stop: watch::Sender<Option<Duration>>,
    pub task: tokio::task::JoinHandle<()>,
}

/// What a worker starts with.
pub struct WorkerInit<I, R, N> {
    pub deps: Deps<I, R, N>,
    pub settings: Arc<WorkerSettings>,
    pub pod: PodRef,
    pub desired: DesiredPod,
    pub world: watch::Receiver<Arc<World>>,
    pub tx: mpsc::Sender<WorkerMsg>,
    pub adopted: Vec<ContainerInfo>,
    /// Saved back-off per container name (from the pod's record).
    pub backoff: BTreeMap<String, crate::backoff::BackoffRecord>,
}
