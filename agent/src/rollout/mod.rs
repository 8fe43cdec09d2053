//! Health-gated rollouts of each source's revisions (issue 18), wired
//! between the sources and the [`Hub`](crate::sources::Hub).
//!
//! Every report a source publishes passes [`Rollouts::admit`]: a new revision
//! has its exact objects recorded in the state dir ([`store`]), what it
//! changed is computed against what runs ([`observe::changed`]) and the
//! reconciler's pure [`Tracker`] starts watching it. [`Rollouts::tick`] feeds
//! the tracker what the reconciler observes; when a revision fails, the
//! recorded objects of the last healthy revision are served instead of the
//! source's (for Git the commit stays fetched, for a directory the files stay
//! as the user wrote them; status says what runs). The images of every last
//! healthy revision are kept by image GC ([`Rollouts::keep_images`]).
//!
//! Lock order: the hub's lock, then this one.

pub mod observe;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use berth_reconciler::desired::DesiredState;
use berth_reconciler::rollout::{Attempt, Effect, HistoryEntry, Outcome, Serve, Settings, Tracker};
use berth_reconciler::{Event, Snapshot};
use berth_spec::{Object, Sourced};
use serde::Serialize;
use tokio::sync::watch;

use crate::sources::{Hub, SourceReport, rfc3339};
use store::SourceStore;

/// Rollout events kept for `/api/v1/events`.
const EVENTS_KEPT: usize = 100;
/// How often a rollout in flight is looked at even when nothing changed.
const TICK: Duration = Duration::from_secs(1);

/// One entry of a source's rollout history, as `/api/v1/status` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryView {
    pub revision: String,
    pub rollback: bool,
    /// RFC 3339 time the revision was applied.
    pub time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided: Option<String>,
    /// in-progress, healthy, failed, rolled-back, superseded.
    pub result: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<berth_reconciler::rollout::Failure>,
}

/// A source's rollouts in `/api/v1/status` (`sources[].rollout`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    /// The revision the source publishes (the commit fetched, the directory's hash).
    pub applied_revision: Option<String>,
    /// The revision whose objects run.
    pub running_revision: Option<String>,
    pub last_healthy_revision: Option<String>,
    /// progressing, rolling-back, healthy, failed, rolled-back.
    pub state: &'static str,
    pub message: String,
    /// Newest last.
    pub history: Vec<HistoryView>,
}

struct SourceState {
    store: SourceStore,
    kind: &'static str,
    location: String,
    tracker: Tracker,
    /// The last report of the source itself.
    raw: SourceReport,
    /// The objects last served to the hub (what runs).
    served: Vec<Sourced>,
    /// Recorded objects of the running and last healthy revisions.
    recorded: BTreeMap<String, Vec<Sourced>>,
}

#[derive(Default)]
struct Inner {
    sources: BTreeMap<usize, SourceState>,
    events: VecDeque<Event>,
    totals: BTreeMap<&'static str, u64>,
}

/// The rollout gate of every source; one per agent.
pub struct Rollouts {
    root: PathBuf,
    settings: Settings,
    inner: Mutex<Inner>,
}

impl Rollouts {
    /// Rollout state lives in `<state_dir>/rollouts`.
    pub fn new(state_dir: &Path, settings: Settings) -> Arc<Self> {
        Arc::new(Rollouts {
            root: state_dir.join("rollouts"),
            settings,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take in a source's report; returns the report the hub should merge
    /// (the recorded objects of the running revision after a rollback).
    pub fn admit(&self, idx: usize, report: SourceReport) -> SourceReport {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let st = inner.sources.entry(idx).or_insert_with(|| {
            let kind = report.status.kind;
            let location = report.status.location.clone();
            let store = SourceStore::new(&self.root, kind, &location);
            let tracker = store.load_tracker();
            let mut recorded = BTreeMap::new();
            let mut served = Vec::new();
            for rev in [&tracker.running, &tracker.last_healthy]
                .into_iter()
                .flatten()
            {
                if let Some(objs) = store.load_objects(rev) {
                    if Some(rev) == tracker.running.as_ref() {
                        served = objs.clone();
                    }
                    recorded.insert(rev.clone(), objs);
                }
            }
            SourceState {
                store,
                kind,
                location,
                tracker,
                raw: SourceReport::default(),
                served,
                recorded,
            }
        });
        st.raw = report;
        let revision = match (&st.raw.status.revision, st.raw.complete) {
            (Some(r), true) => r.clone(),
            _ => return effective(st),
        };
        if st.tracker.applied.as_deref() != Some(revision.as_str()) {
            let changed = observe::changed(&st.served, &st.raw.objects);
            let now = SystemTime::now();
            let (t, fx) = std::mem::take(&mut st.tracker).on_revision(
                &revision,
                changed,
                now,
                &self.settings,
            );
            st.tracker = t;
            if st.tracker.running.as_deref() == Some(revision.as_str()) {
                if let Err(e) = st.store.save_objects(&revision, &st.raw.objects) {
                    tracing::error!(revision = %revision, err = %crate::sources::git::error_chain(&e), "cannot record the revision's objects; it cannot be rolled back to");
                }
                st.recorded.insert(revision.clone(), st.raw.objects.clone());
            }
            tracing::info!(source = %st.location, revision = %revision, watching = st.tracker.watch.as_ref().map(|w| w.changed.len()).unwrap_or(0), "revision applied");
            note_effects(&mut inner.events, &mut inner.totals, st, &fx);
            persist(st);
        }
        effective(st)
    }

    /// The report the hub should merge for source `idx` now.
    pub fn effective(&self, idx: usize) -> Option<SourceReport> {
        let mut inner = self.lock();
        inner.sources.get_mut(&idx).map(effective)
    }

    /// Feed the rollouts in flight what the reconciler observes; returns the
    /// sources whose state (and maybe objects) changed.
    pub fn tick(&self, snap: &Snapshot, desired: &DesiredState, now: SystemTime) -> Vec<usize> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let mut changed = Vec::new();
        for (idx, st) in inner.sources.iter_mut() {
            let Some(w) = &st.tracker.watch else { continue };
            let obs: Vec<_> = w
                .changed
                .iter()
                .map(|wl| observe::observe(wl, desired, snap, w.started))
                .collect();
            let (t, mut fx) = std::mem::take(&mut st.tracker).observe(&obs, now, &self.settings);
            st.tracker = t;
            if fx.is_empty() {
                continue;
            }
            attach_logs(&mut st.tracker, &mut fx, snap);
            let mut more = Vec::new();
            for e in &fx {
                if let Effect::RollBack { to, failed } = e {
                    more.extend(self.roll_back(st, to, failed, now));
                }
            }
            fx.extend(more);
            note_effects(&mut inner.events, &mut inner.totals, st, &fx);
            persist(st);
            changed.push(*idx);
        }
        changed
    }

    /// Serve the recorded objects of `to` again and watch them.
    fn roll_back(
        &self,
        st: &mut SourceState,
        to: &str,
        failed: &str,
        now: SystemTime,
    ) -> Vec<Effect> {
        let objs = match st
            .recorded
            .get(to)
            .cloned()
            .or_else(|| st.store.load_objects(to))
        {
            Some(o) => o,
            None => {
                tracing::error!(source = %st.location, revision = %to, "no recorded objects of the last healthy revision: cannot roll back");
                // report it as failed (not rolled back), keep what runs
                if let Some(e) = st
                    .tracker
                    .history
                    .iter_mut()
                    .rev()
                    .find(|e| e.revision == failed)
                {
                    e.result = Outcome::Failed;
                }
                return Vec::new();
            }
        };
        let changed = observe::changed(&st.served, &objs);
        st.recorded.insert(to.to_string(), objs);
        match std::mem::take(&mut st.tracker).begin_rollback(
            to,
            failed,
            changed,
            now,
            &self.settings,
        ) {
            Ok((t, fx)) => {
                st.tracker = t;
                fx
            }
            Err(e) => {
                tracing::error!(err = %e, "rollback");
                Vec::new()
            }
        }
    }

    /// Images the last healthy revisions use: image GC keeps them.
    pub fn keep_images(&self) -> BTreeSet<String> {
        let inner = self.lock();
        let mut out = BTreeSet::new();
        for st in inner.sources.values() {
            if let Some(h) = &st.tracker.last_healthy {
                images_of(st.recorded.get(h).into_iter().flatten(), &mut out);
            }
        }
        out
    }

    /// Images of the recorded objects served by a rollback: never pulled.
    pub fn rollback_images(&self) -> BTreeSet<String> {
        let inner = self.lock();
        let mut out = BTreeSet::new();
        for st in inner.sources.values() {
            if let Serve::Recorded(rev) = st.tracker.serve() {
                images_of(st.recorded.get(&rev).into_iter().flatten(), &mut out);
            }
        }
        out
    }

    /// Rollout events, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.lock().events.iter().cloned().collect()
    }

    /// `berth_rollouts_total` by result.
    pub fn totals(&self) -> BTreeMap<&'static str, u64> {
        self.lock().totals.clone()
    }
}

/// The container images (init containers too) of the Pods and Deployments in `objs`.
fn images_of<'a>(objs: impl Iterator<Item = &'a Sourced>, out: &mut BTreeSet<String>) {
    for s in objs {
        let spec = s.object.pod_spec().map(|(_, spec)| spec);
        for c in spec.into_iter().flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        }) {
            out.extend(c.image.clone());
        }
    }
}

/// Record what effects say: log, events, counters.
fn note_effects(
    events: &mut VecDeque<Event>,
    totals: &mut BTreeMap<&'static str, u64>,
    st: &SourceState,
    fx: &[Effect],
) {
    let now = SystemTime::now();
    let mut push = |warning: bool, reason: &str, message: String| {
        events.push_back(Event {
            type_: if warning { "Warning" } else { "Normal" }.into(),
            reason: reason.into(),
            message,
            kind: "Source".into(),
            namespace: "default".into(),
            name: format!("source-{}", st.kind),
            first_time: now,
            last_time: now,
            count: 1,
        });
        while events.len() > EVENTS_KEPT {
            events.pop_front();
        }
    };
    let what = if st.kind == "git" {
        "commit"
    } else {
        "revision"
    };
    for e in fx {
        match e {
            Effect::Started { revision, rollback } => {
                tracing::info!(source = %st.location, revision = %revision, rollback, "rollout started");
                push(
                    false,
                    "RolloutStarted",
                    format!(
                        "{} {what} {}{}: watching the workloads it changed",
                        st.location,
                        short(revision),
                        if *rollback { " (rollback)" } else { "" }
                    ),
                );
            }
            Effect::Healthy { revision, rollback } => {
                tracing::info!(source = %st.location, revision = %revision, rollback, "rollout healthy");
                *totals.entry("healthy").or_default() += 1;
                push(
                    false,
                    "RolloutHealthy",
                    format!(
                        "{} {what} {}{} is healthy",
                        st.location,
                        short(revision),
                        if *rollback { " (rollback)" } else { "" }
                    ),
                );
            }
            Effect::Failed { revision, failure } => {
                tracing::warn!(source = %st.location, revision = %revision, reason = %failure.reason, object = %failure.object, message = %failure.message, "rollout failed");
                let rolled = fx.iter().any(|e| {
                    matches!(
                        e,
                        Effect::Started { rollback: true, .. }
                            | Effect::Healthy { rollback: true, .. }
                    )
                });
                *totals
                    .entry(if rolled { "rolled-back" } else { "failed" })
                    .or_default() += 1;
                push(
                    true,
                    "RolloutFailed",
                    format!(
                        "{} {what} {} failed: {} {}{}: {}",
                        st.location,
                        short(revision),
                        failure.reason,
                        failure.object,
                        failure
                            .container
                            .as_ref()
                            .map(|c| format!(" container {c}"))
                            .unwrap_or_default(),
                        failure.message
                    ),
                );
            }
            Effect::RollBack { to, failed } => {
                if st.tracker.running.as_deref() == Some(to.as_str()) {
                    tracing::warn!(source = %st.location, failed = %failed, to = %to, "rolled back");
                    push(
                        true,
                        "RolledBack",
                        format!(
                            "{} {what} {} failed; re-applied the last healthy {what} {} from the recorded objects",
                            st.location,
                            short(failed),
                            short(to)
                        ),
                    );
                }
            }
        }
    }
}

/// Copy the failing container's last log lines into the failure and its history entry.
fn attach_logs(tracker: &mut Tracker, fx: &mut [Effect], snap: &Snapshot) {
    for e in fx.iter_mut() {
        let Effect::Failed { revision, failure } = e else {
            continue;
        };
        let (Some(pod), Some(c)) = (&failure.pod, &failure.container) else {
            continue;
        };
        let ns = failure.object.split('/').nth(1).unwrap_or("default");
        failure.logs = observe::log_tail(snap, ns, pod, c);
        if let Some(h) = tracker
            .history
            .iter_mut()
            .rev()
            .find(|h| h.revision == *revision && h.failure.is_some())
            && let Some(f) = &mut h.failure
        {
            f.logs = failure.logs.clone();
        }
    }
}

fn persist(st: &SourceState) {
    if let Err(e) = st.store.save_tracker(&st.tracker) {
        tracing::error!(source = %st.location, err = %crate::sources::git::error_chain(&e), "cannot save the rollout state");
    }
    let keep: Vec<&str> = [&st.tracker.running, &st.tracker.last_healthy]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    if !keep.is_empty() {
        st.store.prune_objects(&keep);
    }
}

fn effective(st: &mut SourceState) -> SourceReport {
    let mut rep = st.raw.clone();
    if let Serve::Recorded(rev) = st.tracker.serve() {
        match st.recorded.get(&rev) {
            Some(objs) => rep.objects = with_volumes_of(objs, &st.raw.objects),
            None => {
                tracing::error!(source = %st.location, revision = %rev, "recorded objects missing; serving the source's");
            }
        }
    }
    rep.status.rollout = Some(status_of(st));
    if rep.status.revision.is_some() || !rep.objects.is_empty() {
        st.served = rep.objects.clone();
    }
    rep
}

/// `recorded` plus the Volumes only `current` has: a rollback never
/// deletes a Volume (nor, through `reclaimPolicy: Delete`, its data).
fn with_volumes_of(recorded: &[Sourced], current: &[Sourced]) -> Vec<Sourced> {
    let keys: BTreeSet<_> = recorded.iter().map(|s| s.object.key()).collect();
    let mut out = recorded.to_vec();
    out.extend(
        current
            .iter()
            .filter(|s| matches!(s.object, Object::Volume(_)) && !keys.contains(&s.object.key()))
            .cloned(),
    );
    out
}

fn short(rev: &str) -> &str {
    &rev[..rev.len().min(12)]
}

fn status_of(st: &SourceState) -> RolloutStatus {
    let t = &st.tracker;
    let what = if st.kind == "git" {
        "commit"
    } else {
        "revision"
    };
    let failure_of = |rev: &str| {
        t.history
            .iter()
            .rev()
            .find(|h| h.revision == rev && h.failure.is_some())
            .and_then(|h| h.failure.as_ref())
    };
    let disk = if st.kind == "directory" {
        "; the files on disk are not what runs"
    } else {
        ""
    };
    let (state, message) = match (&t.watch, &t.applied, &t.running) {
        (Some(w), _, _) => match &w.attempt {
            Attempt::Rollback { failed } => (
                "rolling-back",
                format!(
                    "{what} {} failed; rolling back to {}{disk}",
                    short(failed),
                    short(&w.revision)
                ),
            ),
            Attempt::Apply => (
                "progressing",
                format!("watching {what} {}", short(&w.revision)),
            ),
        },
        (None, Some(a), Some(r)) if a != r => {
            let why = failure_of(a)
                .map(|f| format!(" ({} {})", f.reason, f.object))
                .unwrap_or_default();
            (
                "rolled-back",
                format!(
                    "{what} {} failed{why}; running the last healthy {what} {}{disk}",
                    short(a),
                    short(r)
                ),
            )
        }
        (None, Some(a), _) if t.failed.contains(a) => {
            let why = failure_of(a)
                .map(|f| format!(" ({} {})", f.reason, f.object))
                .unwrap_or_default();
            (
                "failed",
                format!("{what} {} failed{why}; not rolled back", short(a)),
            )
        }
        (None, Some(a), _) if t.last_healthy.as_ref() == Some(a) => {
            ("healthy", format!("{what} {} is healthy", short(a)))
        }
        _ => ("unknown", String::new()),
    };
    RolloutStatus {
        applied_revision: t.applied.clone(),
        running_revision: t.running.clone(),
        last_healthy_revision: t.last_healthy.clone(),
        state,
        message,
        history: t.history.iter().map(history_view).collect(),
    }
}

fn history_view(h: &HistoryEntry) -> HistoryView {
    HistoryView {
        revision: h.revision.clone(),
        rollback: h.rollback,
        time: rfc3339(h.applied),
        decided: h.decided.map(rfc3339),
        result: h.result.as_str(),
        reason: h.failure.clone(),
    }
}

/// Look at the rollouts in flight whenever the reconciler publishes and
/// every [`TICK`], until shutdown.
pub async fn run(
    hub: Arc<Hub>,
    mut status: berth_reconciler::StatusReader,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = crate::sources::stopped(&mut shutdown) => break,
            r = status.changed() => if r.is_err() { break },
            _ = tick.tick() => {}
        }
        let snap = status.borrow_and_update().clone();
        if !snap.ready {
            continue; // adoption not finished: pods not yet known
        }
        hub.rollout_tick(&snap);
    }
}

#[cfg(test)]
mod tests;
