//! Volumes (claims) as objects: their directories exist while the object
//! does, `reclaimPolicy: Delete` removes the data once the object is gone and
//! no pod uses it, and their usage is measured now and then. The host work
//! (making, deleting and measuring directories) is the runtime's
//! ([`crate::traits::Volumes`]); this only decides.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use berth_spec::Object;
use berth_spec::volume::ReclaimPolicy;
use tokio::sync::mpsc;

use super::Reconciler;
use crate::desired::DesiredState;
use crate::traits::{Images, Network, Runtime, error_chain};

/// A Volume object the controller knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    pub policy: ReclaimPolicy,
    /// Where its directory is, once the runtime made it (the Volume is `Bound`).
    pub path: Option<PathBuf>,
}

/// (namespace, name) of a claim.
pub(crate) type ClaimKey = (String, String);

/// Bytes used by each claim, as measured (a claim without a directory is absent).
pub(crate) type Usage = BTreeMap<ClaimKey, u64>;

fn volumes_of(desired: &DesiredState) -> Vec<(ClaimKey, ReclaimPolicy)> {
    desired
        .objects
        .values()
        .filter_map(|s| match &s.object {
            Object::Volume(v) => {
                let ns = berth_spec::namespace_of(&v.metadata).to_string();
                let name = v.metadata.name.clone().unwrap_or_default();
                Some(((ns, name), v.spec.reclaim_policy))
            }
            _ => None,
        })
        .collect()
}

impl<I: Images, R: Runtime, N: Network> Reconciler<I, R, N> {
    pub(super) async fn sync_volumes(&mut self, desired: &DesiredState) {
        let mut present = BTreeSet::new();
        for (key, policy) in volumes_of(desired) {
            let made = self.claims.get(&key).and_then(|c| c.path.clone());
            let path = match made {
                Some(p) => Some(p),
                None => match self.deps.runtime.ensure_claim(&key.0, &key.1).await {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::warn!(volume = %key.1, err = %error_chain(&e), "creating volume directory");
                        None
                    }
                },
            };
            let claim = Claim { policy, path };
            if self.claims.get(&key) != Some(&claim) {
                self.claims.insert(key.clone(), claim);
            }
            present.insert(key);
        }
        // StatefulSet replicas' claims: made as needed, kept (Retain) when
        // the set scales down or goes, as Kubernetes keeps the claims
        for key in super::replicated::claims(desired, &self.pods) {
            if present.contains(&key) {
                continue;
            }
            if self.claims.get(&key).and_then(|c| c.path.clone()).is_none() {
                match self.deps.runtime.ensure_claim(&key.0, &key.1).await {
                    Ok(p) => {
                        let claim = Claim {
                            policy: ReclaimPolicy::Retain,
                            path: Some(p),
                        };
                        self.claims.insert(key.clone(), claim);
                    }
                    Err(e) => {
                        tracing::warn!(volume = %key.1, err = %error_chain(&e), "creating volume directory");
                    }
                }
            }
            present.insert(key);
        }
        if !desired.complete {
            return;
        }
        let gone: Vec<ClaimKey> = self
            .claims
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            let in_use = self.pods.values().any(|e| {
                e.record.pod.namespace == key.0
                    && e.record.spec.volumes.iter().flatten().any(|v| {
                        v.persistent_volume_claim
                            .as_ref()
                            .is_some_and(|c| c.claim_name == key.1)
                    })
            });
            if in_use {
                continue;
            }
            let Some(claim) = self.claims.remove(&key) else {
                continue;
            };
            if claim.policy == ReclaimPolicy::Delete {
                tracing::info!(volume = %key.1, dir = ?claim.path, "reclaimPolicy Delete: removing volume data");
                if let Err(e) = self.deps.runtime.remove_claim(&key.0, &key.1).await {
                    tracing::warn!(volume = %key.1, err = %error_chain(&e), "removing volume data");
                }
            }
        }
    }

    /// Measure the bytes used by each Volume off the loop (the runtime walks
    /// the directory on a blocking thread).
    pub(super) fn spawn_volume_usage(&self, desired: &DesiredState, tx: mpsc::Sender<Usage>) {
        let keys: Vec<ClaimKey> = volumes_of(desired).into_iter().map(|(k, _)| k).collect();
        if keys.is_empty() {
            return;
        }
        let rt = self.deps.runtime.clone();
        tokio::spawn(async move {
            let mut out = Usage::new();
            for key in keys {
                match rt.claim_usage(&key.0, &key.1).await {
                    Ok(Some(bytes)) => {
                        out.insert(key, bytes);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(volume = %key.1, err = %error_chain(&e), "measuring volume usage");
                    }
                }
            }
            let _ = tx.try_send(out);
        });
    }
}
