//! berth's control loop.
//!
//! The reconciler turns the desired object set (from the agent's sources) into
//! running pods, through the [`traits`] (the `berth-contract` crate) that `image/`, `runtime/` and `net/`
//! implement, and publishes Kubernetes-shaped status for the API. Planning is
//! pure (see [`deployment::plan`], [`statefulset::plan`], [`daemonset::plan`],
//! [`replicaset::plan`], [`job::plan`],
//! [`cron::Schedule`], [`service::entries`], the pod phase rules in
//! [`pod::status`]); acting goes through the traits. It does not read
//! manifests, talk HTTP, or call the kernel itself.

pub mod apparmor;
pub mod backoff;
mod batch_status;
pub mod batch_store;
pub mod container;
pub mod controller;
pub use berth_spec::cron;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod desired;
pub mod downward;
pub mod events;
mod generation;
pub mod hash;
pub mod job;
pub mod owner;
pub mod pod;
pub mod probe;
pub mod record;
pub mod replicaset;
pub mod rollout;
pub mod seccomp_localhost;
pub mod service;
pub mod service_env;
mod snapshot;
pub mod statefulset;
pub mod status;
#[cfg(test)]
mod testing;

/// The host contract, re-exported under its old path so `crate::traits::X`
/// and `berth_reconciler::traits::X` keep working.
pub use berth_contract as traits;
pub use controller::{Reconciler, ReconcilerConfig};
pub use desired::{DesiredRx, DesiredState, DesiredTx, desired_channel};
pub use status::{AgentCondition, Event, Snapshot, StatusReader, StatusWriter, status_channel};
