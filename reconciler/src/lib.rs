//! berth's control loop.
//!
//! The reconciler turns the desired object set (from the agent's sources) into
//! running pods, through the [`traits`] that `image/`, `runtime/` and `net/`
//! implement, and publishes Kubernetes-shaped status for the API. Planning is a
//! pure function of desired + observed state; acting goes through the traits.
//! It does not read manifests, talk HTTP, or call the kernel itself.

pub mod desired;
pub mod status;
pub mod traits;

pub use desired::{DesiredRx, DesiredState, DesiredTx, desired_channel};
pub use status::{Event, Snapshot, StatusReader, StatusWriter, status_channel};
