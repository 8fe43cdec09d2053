//! Manifest sources and the merge of their objects into one desired set.
//!
//! Each source (a watched directory, a Git repository) publishes a
//! [`SourceReport`]: the objects it currently wants (already reduced to its
//! "last good" set), whether it is `complete`, and its status for the API.
//! The [`Hub`] merges all reports:
//!
//! - cross-object rules ([`berth_spec::validate_set`]) run over the merged set;
//!   an object with a set-level error (the same key twice, in one source or
//!   two; a clashing clusterIP or nodePort) is not changed: the previously
//!   published definition of that key stays, or it stays absent;
//! - Pods and Deployments whose `nodeSelector` does not match this node are
//!   left out and listed as not scheduled here (not an error);
//! - with an operator policy (`--policy`), a Pod or Deployment the policy
//!   refuses is an error of its own source and is listed as refused (status,
//!   events); like a set-level error it is not changed: its previous
//!   definition stays, or it stays absent. The other objects are applied;
//! - the result goes to the reconciler through the desired-state watch (only
//!   when something changed) and to the API through a [`View`] watch.
//!
//! `complete` is true only when every source is complete, so the reconciler
//! prunes nothing while any source has never produced a good set, except
//! what a complete source dropped in this run (`prunable`): an incomplete
//! source (a missing directory, a Git remote never reached) never stops the
//! pruning of objects another, complete, source removed.

pub mod dir;
pub mod git;
mod git_repo;
pub mod node;
pub mod scan;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use berth_reconciler::{DesiredState, DesiredTx};
use berth_spec::validate::policy::{self as policy_rules, Policy};
use berth_spec::{Diagnostic, Location, ObjectKey, Severity, Sourced};
use serde::Serialize;
use tokio::sync::watch;

pub use node::NodeInfo;

/// A diagnostic with its `file:line:col: ...` text, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DiagView {
    pub text: String,
    #[serde(flatten)]
    pub diag: Diagnostic,
}

impl From<&Diagnostic> for DiagView {
    fn from(d: &Diagnostic) -> Self {
        DiagView {
            text: d.to_string(),
            diag: d.clone(),
        }
    }
}

/// What `/api/v1/status` shows about one source.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceStatus {
    /// `directory` or `git`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Directory path, or the Git URL with credentials redacted.
    pub location: String,
    /// Applied revision: content hash of a directory, commit id for Git.
    pub revision: Option<String>,
    pub complete: bool,
    /// RFC 3339 time of the last successful read/fetch.
    pub last_sync: Option<String>,
    pub last_error: Option<String>,
    pub files: usize,
    pub objects: usize,
    /// Per-file findings (errors and warnings), plus the set-level ones that concern this source.
    pub diagnostics: Vec<DiagView>,
    /// Files whose current content is refused; their last good objects are kept.
    pub files_with_errors: Vec<String>,
    /// How many objects of kinds berth does not run were skipped (one warning each).
    pub skipped_count: usize,
    /// Those objects: apiVersion, kind, namespace, name and file:line.
    pub skipped: Vec<berth_spec::Skipped>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git: Option<git::GitStatus>,
    /// Health-gated rollouts: applied, running and last healthy revision, history.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<crate::rollout::RolloutStatus>,
}

/// One source's current contribution.
#[derive(Debug, Clone, Default)]
pub struct SourceReport {
    pub complete: bool,
    pub objects: Vec<Sourced>,
    pub status: SourceStatus,
}

/// An object left out because its nodeSelector does not match this node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unscheduled {
    pub object: String,
    pub location: String,
    pub reason: String,
    /// The object itself (a DaemonSet is still listed, with 0 pods desired).
    #[serde(skip)]
    pub sourced: Sourced,
}

/// An object the operator's policy refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refused {
    #[serde(skip)]
    pub key: ObjectKey,
    /// `Kind/namespace/name`.
    pub object: String,
    /// `file:line:col` of the object.
    pub location: String,
    /// Each violation as `file:line:col: Kind "name": field: refused by policy (rule): ...`.
    pub reasons: Vec<String>,
    /// RFC 3339 time this agent first refused the object for these reasons.
    pub since: String,
}

/// Everything the API needs from the sources side, replaced as a unit.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Bumped on every change of the view.
    pub generation: u64,
    pub desired: Arc<DesiredState>,
    pub sources: Vec<SourceStatus>,
    /// Set-level errors (duplicates, clashes) over all sources.
    pub conflicts: Vec<DiagView>,
    pub unscheduled: Vec<Unscheduled>,
    /// Objects the operator's policy refused.
    pub refused: Vec<Refused>,
    /// When each desired object was first seen by this agent (its `creationTimestamp`).
    pub first_seen: BTreeMap<ObjectKey, jiff::Timestamp>,
    /// True once every source has reported at least once.
    pub synced: bool,
    /// RolloutStarted / RolloutHealthy / RolloutFailed / RolledBack events.
    pub rollout_events: Vec<berth_reconciler::Event>,
    /// `berth_rollouts_total` by result.
    pub rollouts_total: BTreeMap<&'static str, u64>,
}

pub type ViewRx = watch::Receiver<Arc<View>>;

/// Merges source reports; one per agent.
pub struct Hub {
    inner: Mutex<HubInner>,
    desired_tx: DesiredTx,
    view_tx: watch::Sender<Arc<View>>,
    node: NodeInfo,
    policy: Option<Arc<Policy>>,
    /// Health-gated rollouts (None: reports are merged as published).
    rollouts: Option<Arc<crate::rollout::Rollouts>>,
}

#[derive(Default)]
struct HubInner {
    reports: Vec<Option<SourceReport>>,
    first_seen: BTreeMap<ObjectKey, jiff::Timestamp>,
    generation: u64,
    /// Policy refusals still in force: their reasons and since when.
    refused_since: BTreeMap<ObjectKey, (Vec<String>, jiff::Timestamp)>,
    /// Per source, the keys of its last report.
    published: Vec<BTreeSet<ObjectKey>>,
    /// Keys a complete source dropped and no source names again.
    prunable: BTreeSet<ObjectKey>,
}

/// A source's slot in the hub.
#[derive(Clone)]
pub struct SourceHandle {
    hub: Arc<Hub>,
    idx: usize,
}

impl SourceHandle {
    pub fn publish(&self, report: SourceReport) {
        self.hub.update(self.idx, report);
    }
}

impl Hub {
    /// A hub without an operator policy (tests; the agent uses [`Hub::with_rollouts`]).
    #[cfg(test)]
    pub fn new(desired_tx: DesiredTx, node: NodeInfo) -> Arc<Self> {
        Self::with_policy(desired_tx, node, None)
    }

    /// A hub that applies the operator's `policy` to every Pod and pod
    /// template (tests; the agent uses [`Hub::with_rollouts`]).
    #[cfg(test)]
    pub fn with_policy(
        desired_tx: DesiredTx,
        node: NodeInfo,
        policy: Option<Arc<Policy>>,
    ) -> Arc<Self> {
        Self::with_rollouts(desired_tx, node, policy, None)
    }

    /// A hub that also passes every report through the rollout gate.
    pub fn with_rollouts(
        desired_tx: DesiredTx,
        node: NodeInfo,
        policy: Option<Arc<Policy>>,
        rollouts: Option<Arc<crate::rollout::Rollouts>>,
    ) -> Arc<Self> {
        let (view_tx, _) = watch::channel(Arc::new(View::default()));
        Arc::new(Hub {
            inner: Mutex::new(HubInner::default()),
            desired_tx,
            view_tx,
            node,
            policy,
            rollouts,
        })
    }

    /// Let the rollouts in flight see the reconciler's latest snapshot, and
    /// merge again the sources whose served objects or status changed.
    pub fn rollout_tick(&self, snap: &berth_reconciler::Snapshot) {
        let Some(r) = &self.rollouts else { return };
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let desired = self.desired_tx.borrow().clone();
        let changed = r.tick(snap, &desired, std::time::SystemTime::now());
        if changed.is_empty() {
            return;
        }
        for idx in changed {
            if let Some(rep) = r.effective(idx)
                && idx < inner.reports.len()
            {
                inner.reports[idx] = Some(rep);
            }
        }
        self.merge_all(&mut inner);
    }

    /// Reserve a slot; call for every source before any of them publishes.
    pub fn register(self: &Arc<Self>) -> SourceHandle {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.reports.push(None);
        inner.published.push(BTreeSet::new());
        SourceHandle {
            hub: self.clone(),
            idx: inner.reports.len() - 1,
        }
    }

    pub fn view(&self) -> ViewRx {
        self.view_tx.subscribe()
    }

    fn update(&self, idx: usize, report: SourceReport) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let report = match &self.rollouts {
            Some(r) => r.admit(idx, report),
            None => report,
        };
        let keys: BTreeSet<ObjectKey> = report.objects.iter().map(|s| s.object.key()).collect();
        if report.complete {
            let dropped: Vec<ObjectKey> = inner.published[idx].difference(&keys).cloned().collect();
            inner.prunable.extend(dropped);
        }
        inner.published[idx] = keys;
        inner.reports[idx] = Some(report);
        self.merge_all(&mut inner);
    }

    fn merge_all(&self, inner: &mut HubInner) {
        let previous = self.desired_tx.borrow().clone();
        let mut merged = merge(
            &inner.reports,
            &previous,
            &self.node,
            self.policy.as_deref(),
        );
        let HubInner {
            published,
            prunable,
            ..
        } = &mut *inner;
        prunable.retain(|k| !published.iter().any(|p| p.contains(k)));
        if merged.desired.complete {
            prunable.clear();
        }
        merged.desired.prunable = prunable.clone();
        let now = jiff::Timestamp::now();
        let first_seen = std::mem::take(&mut inner.first_seen);
        // desired objects, and those not scheduled here (a DaemonSet is
        // still listed)
        let unscheduled = merged.unscheduled.iter().map(|u| u.sourced.object.key());
        inner.first_seen = merged
            .desired
            .objects
            .keys()
            .cloned()
            .chain(unscheduled)
            .map(|k| {
                let t = first_seen.get(&k).copied().unwrap_or(now);
                (k, t)
            })
            .collect();
        let mut desired = merged.desired;
        if let Some(r) = &self.rollouts {
            desired.keep_images = r.keep_images();
            desired.rollback_images = r.rollback_images();
        }
        let desired = Arc::new(desired);
        self.desired_tx.send_if_modified(|cur| {
            let changed = cur.objects != desired.objects
                || cur.complete != desired.complete
                || cur.revision != desired.revision
                || cur.keep_images != desired.keep_images
                || cur.rollback_images != desired.rollback_images
                || cur.prunable != desired.prunable;
            if changed {
                *cur = desired.clone();
            }
            changed
        });
        let before = std::mem::take(&mut inner.refused_since);
        let mut refused = Vec::new();
        for r in merged.refused {
            let since = match before.get(&r.key) {
                Some((reasons, t)) if *reasons == r.reasons => *t,
                _ => {
                    tracing::warn!(object = %r.object, reasons = ?r.reasons, "refused by policy");
                    now
                }
            };
            inner
                .refused_since
                .insert(r.key.clone(), (r.reasons.clone(), since));
            refused.push(Refused {
                since: since.to_string(),
                ..r
            });
        }
        inner.generation += 1;
        let view = View {
            generation: inner.generation,
            desired,
            sources: merged.sources,
            conflicts: merged.conflicts,
            unscheduled: merged.unscheduled,
            refused,
            first_seen: inner.first_seen.clone(),
            synced: inner.reports.iter().all(Option::is_some),
            rollout_events: self
                .rollouts
                .as_ref()
                .map(|r| r.events())
                .unwrap_or_default(),
            rollouts_total: self
                .rollouts
                .as_ref()
                .map(|r| r.totals())
                .unwrap_or_default(),
        };
        self.view_tx.send_replace(Arc::new(view));
    }
}

struct Merged {
    desired: DesiredState,
    sources: Vec<SourceStatus>,
    conflicts: Vec<DiagView>,
    unscheduled: Vec<Unscheduled>,
    /// `since` not filled in yet.
    refused: Vec<Refused>,
}

/// The pure merge (see module docs). `previous` is the last published desired state.
fn merge(
    reports: &[Option<SourceReport>],
    previous: &DesiredState,
    node: &NodeInfo,
    policy: Option<&Policy>,
) -> Merged {
    let mut all: Vec<Sourced> = Vec::new();
    let mut owner: HashMap<Location, usize> = HashMap::new();
    for (i, r) in reports.iter().enumerate() {
        for s in r.iter().flat_map(|r| &r.objects) {
            owner.insert(s.location.clone(), i);
            all.push(s.clone());
        }
    }
    let set_diags = berth_spec::validate_set(&all);
    let mut sources: Vec<SourceStatus> = reports
        .iter()
        .map(|r| r.as_ref().map(|r| r.status.clone()).unwrap_or_default())
        .collect();
    let key_at: HashMap<&Location, ObjectKey> =
        all.iter().map(|s| (&s.location, s.object.key())).collect();
    let mut refused_keys = std::collections::BTreeSet::new();
    let mut conflicts = Vec::new();
    for d in &set_diags {
        if let Some(&i) = owner.get(&d.location) {
            sources[i].diagnostics.push(d.into());
        }
        if d.severity == Severity::Error {
            conflicts.push(d.into());
            if let Some(k) = key_at.get(&d.location) {
                refused_keys.insert(k.clone());
            }
        }
    }
    let mut objects = BTreeMap::new();
    for s in all {
        let key = s.object.key();
        if !refused_keys.contains(&key) {
            objects.insert(key, s);
        }
    }
    for key in &refused_keys {
        if let Some(prev) = previous.objects.get(key) {
            objects.insert(key.clone(), prev.clone());
        }
    }
    let mut unscheduled = Vec::new();
    objects.retain(|key, s| match node.mismatch(&s.object) {
        None => true,
        Some(reason) => {
            unscheduled.push(Unscheduled {
                object: key.to_string(),
                location: s.location.to_string(),
                reason,
                sourced: s.clone(),
            });
            false
        }
    });
    let refused = match policy {
        Some(p) => police(p, &mut objects, previous, &owner, &mut sources),
        None => Vec::new(),
    };
    let revision = reports
        .iter()
        .flatten()
        .map(|r| {
            format!(
                "{}:{}",
                r.status.kind,
                r.status.revision.as_deref().map(short).unwrap_or("none")
            )
        })
        .collect::<Vec<_>>()
        .join("+");
    let complete = !reports.is_empty()
        && reports
            .iter()
            .all(|r| r.as_ref().is_some_and(|r| r.complete));
    Merged {
        desired: DesiredState {
            revision,
            complete,
            objects,
            ..Default::default()
        },
        sources,
        conflicts,
        unscheduled,
        refused,
    }
}

/// Apply the operator's policy to the objects about to be desired: each
/// refused object's findings go to its source's diagnostics, and the object
/// keeps its previous definition (it passed this same policy) or is left out.
fn police(
    policy: &Policy,
    objects: &mut BTreeMap<ObjectKey, Sourced>,
    previous: &DesiredState,
    owner: &HashMap<Location, usize>,
    sources: &mut [SourceStatus],
) -> Vec<Refused> {
    let mut out = Vec::new();
    for (key, s) in objects.iter() {
        let diags = policy_rules::check_sourced(policy, s);
        if diags.is_empty() {
            continue;
        }
        if let Some(&i) = owner.get(&s.location) {
            sources[i]
                .diagnostics
                .extend(diags.iter().map(DiagView::from));
        }
        out.push(Refused {
            key: key.clone(),
            object: key.to_string(),
            location: s.location.to_string(),
            reasons: diags.iter().map(ToString::to_string).collect(),
            since: String::new(),
        });
    }
    for r in &out {
        let prev = previous
            .objects
            .get(&r.key)
            .filter(|p| policy_rules::check(policy, &p.object).is_empty());
        match prev {
            Some(p) => objects.insert(r.key.clone(), p.clone()),
            None => objects.remove(&r.key),
        };
    }
    out
}

fn short(rev: &str) -> &str {
    &rev[..rev.len().min(12)]
}

/// Resolves once `rx` holds `true` (or its sender is gone).
pub async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// RFC 3339 text of a time, for status fields.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    jiff::Timestamp::try_from(t)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod policy_tests;
#[cfg(test)]
mod skip_tests;
#[cfg(test)]
mod tests;
