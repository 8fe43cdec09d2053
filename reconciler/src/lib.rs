//! berth's control loop.
//!
//! The reconciler turns the desired object set (from the agent's sources) into
//! running pods, through the [`traits`] that `image/`, `runtime/` and `net/`
//! implement, and publishes Kubernetes-shaped status for the API. Planning is
//! pure (see [`deployment::plan`], [`service::entries`], the pod phase rules in
//! [`pod::status`]); acting goes through the traits. It does not read
//! manifests, talk HTTP, or call the kernel itself.

pub mod backoff;
pub mod container;
pub mod controller;
pub mod deployment;
pub mod desired;
pub mod events;
pub mod hash;
pub mod pod;
pub mod probe;
pub mod record;
pub mod service;
mod snapshot;
pub mod status;
#[cfg(test)]
mod testing;
pub mod traits;

pub use controller::{Reconciler, ReconcilerConfig};
pub use desired::{DesiredRx, DesiredState, DesiredTx, desired_channel};
pub use status::{Event, Snapshot, StatusReader, StatusWriter, status_channel};
mod tmpq {
    pub fn parse_bytes(s: &str) -> Result<u64, ()> {
        s.trim_end_matches("Mi")
            .parse::<u64>()
            .map(|v| v * 1024 * 1024)
            .map_err(|_| ())
    }
    pub fn parse_millicores(s: &str) -> Result<u64, ()> {
        s.trim_end_matches('m').parse::<u64>().map_err(|_| ())
    }
}
