//! What the sources want: the merged, validated object set handed from the
//! agent's sources to the reconciler through a `tokio::sync::watch`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use berth_spec::{ObjectKey, Sourced};

/// The whole desired state. Sources replace it as a unit; the reconciler only
/// ever looks at the latest value (level-triggered).
#[derive(Debug, Clone, Default)]
pub struct DesiredState {
    /// Combined revision of all sources (e.g. hashes/commits joined), for logs and status.
    pub revision: String,
    /// False until every source has produced its first good (or last-known-good) set.
    /// The reconciler prunes nothing before this is true.
    pub complete: bool,
    pub objects: BTreeMap<ObjectKey, Sourced>,
    /// Images image GC keeps although no pod uses them now: those of each
    /// source's last healthy revision, so a rollback needs no registry.
    pub keep_images: BTreeSet<String>,
    /// Images of the recorded objects a rollback re-applies: used from the
    /// host as they are, never pulled (even with `imagePullPolicy: Always`).
    pub rollback_images: BTreeSet<String>,
    /// Objects that a complete source dropped: pruned even while `complete`
    /// is false because some other source is incomplete (a missing
    /// directory, a Git remote never reached). Keys of Pods and of the
    /// controllers (Deployments) whose pods go with them.
    pub prunable: BTreeSet<ObjectKey>,
}

impl DesiredState {
    /// Whether what `key` named may be removed now that it is not desired.
    pub fn may_prune(&self, key: &ObjectKey) -> bool {
        self.complete || self.prunable.contains(key)
    }
}

pub type DesiredTx = tokio::sync::watch::Sender<Arc<DesiredState>>;
pub type DesiredRx = tokio::sync::watch::Receiver<Arc<DesiredState>>;

/// A channel holding an empty, incomplete desired state.
pub fn desired_channel() -> (DesiredTx, DesiredRx) {
    tokio::sync::watch::channel(Arc::new(DesiredState::default()))
}
