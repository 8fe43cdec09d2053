//! Where a container's files live and the small JSON files the agent and the
//! shim exchange: shared with the supervisor, see `berth_supervise::layout`.

use berth_contract::ContainerConfig;
use serde::{Deserialize, Serialize};

pub use berth_supervise::layout::*;

/// Everything the shim needs, written by the agent before it starts the shim.
pub type ShimSpec<C = ContainerConfig> = berth_supervise::layout::ShimSpec<C>;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SetupError {
    pub reason: String,
    pub message: String,
    /// How the agent should react; absent in files of older shims.
    #[serde(default)]
    pub kind: Option<berth_contract::ErrorKind>,
}
