//! The control loop: level-triggered passes over the desired set.
//!
//! Each pass expands Pods and Deployments into the pods berth wants, compares
//! them with the pods it has (keyed by namespace/name; each with a worker task),
//! starts and stops workers, syncs Services, and publishes a status snapshot.
//! Triggers (a new desired set, a worker message, the resync timer) only make
//! the next pass come sooner.
//!
//! Adoption after a restart is in [`adoption`]; failed workers in [`workers`].

mod adoption;
mod claims;
mod cronjobs;
mod file_problems;
pub(crate) mod jobs;
mod pace;
pub mod replicated;
mod workers;

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_spec::k8s_openapi::api::apps::v1::Deployment;
use berth_spec::k8s_openapi::api::core::v1::{PodStatus, Service};
use berth_spec::{Kind, Object, ObjectKey};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::container::ConfigObjects;
use crate::deployment::{self, PodObs};
use crate::desired::{DesiredRx, DesiredState};
use crate::events::{EventInput, EventRing};
use crate::generation::{Generation, Tracked};
use crate::pod::{
    self, Deps, DesiredPod, WorkerHandle, WorkerInit, WorkerMsg, WorkerSettings, World,
};
use crate::record::{PodRecord, RecordStore};
use crate::service;
use crate::snapshot;
use crate::status::AgentCondition;
use crate::status::{Snapshot, StatusWriter};
use crate::traits::{
    ContainerInfo, Images, Network, PodRef, Runtime, ServiceAssigned, ServiceEntry, error_chain,
};
use adoption::Orphan;
use workers::WorkerCrash;
pub(crate) use workers::panic_message;

/// The bare Pods of one desired state, planned (spec hash computed).
type PlainPods = Arc<BTreeMap<ObjectKey, DesiredPod>>;

pub const LABEL_TEMPLATE_HASH: &str = "pod-template-hash";

/// Settings of the reconciler.
#[derive(Debug, Clone)]
pub struct ReconcilerConfig {
    pub state_dir: PathBuf,
    pub run_dir: PathBuf,
    pub node_name: String,
    pub host_ip: Option<Ipv4Addr>,
    /// Periodic pass even when nothing happened.
    pub resync: Duration,
    pub image_gc_interval: Duration,
}

pub(crate) struct PodEntry {
    pub record: PodRecord,
    pub annotations: BTreeMap<String, String>,
    pub handle: Option<WorkerHandle>,
    pub status: Option<PodStatus>,
    pub logs: Vec<(String, PathBuf)>,
    pub terminating: Option<SystemTime>,
    /// Set when the pod's worker failed (see [`workers`]).
    pub crash: Option<WorkerCrash>,
    /// Adopted at start: the containers its worker takes over. The worker
    /// starts after the first pass decided whether the pod stays, so a pod
    /// deleted while the agent was down is only taken down, never set up.
    pub adopting: Option<Vec<ContainerInfo>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Progress {
    pub hash: String,
    pub last_change: Instant,
    pub last_counts: deployment::Counts,
    /// The last plan found the rollout complete.
    pub complete: bool,
    pub stalled: bool,
}

impl Progress {
    /// What the Deployment's status shows of it.
    fn shown(&self) -> (String, deployment::Counts, bool, bool) {
        (
            self.hash.clone(),
            self.last_counts.clone(),
            self.complete,
            self.stalled,
        )
    }
}

pub struct Reconciler<I, R, N> {
    deps: Deps<I, R, N>,
    pub(crate) cfg: ReconcilerConfig,
    settings: Arc<WorkerSettings>,
    records: RecordStore,
    pub(crate) pods: Tracked<BTreeMap<(String, String), PodEntry>>,
    pub(crate) blocked: Tracked<BTreeMap<(String, String), (DesiredPod, String)>>,
    pub(crate) events: Tracked<EventRing>,
    status_tx: StatusWriter,
    world_tx: watch::Sender<Arc<World>>,
    worker_tx: mpsc::Sender<WorkerMsg>,
    worker_rx: mpsc::Receiver<WorkerMsg>,
    /// Not tracked: `last_change` moves every pass; [`Progress::shown`] bumps the generation.
    pub(crate) progress: BTreeMap<(String, String), Progress>,
    synced_services: Option<Vec<ServiceEntry>>,
    pub(crate) assigned: Tracked<BTreeMap<(String, String), ServiceAssigned>>,
    /// Volume objects (claims), as made on the host (see [`claims`]).
    pub(crate) claims: Tracked<BTreeMap<claims::ClaimKey, claims::Claim>>,
    volume_usage: Tracked<claims::Usage>,
    /// Pods created in this pass whose workers start once their records are saved.
    pending: Vec<(PodRef, DesiredPod)>,
    /// The bare Pods of the last desired state, as planned (see `plain_pods`).
    plain: Option<(Arc<DesiredState>, PlainPods)>,
    passes: u64,
    /// How many worker messages the last drain found (see `pace`).
    last_drain: usize,
    /// Bumps on every change of what the status shows (the tracked fields).
    generation: Generation,
    /// The generation of the last published snapshot.
    published: Option<u64>,
    /// A pod ended since the records were last saved (saved once per burst).
    records_dirty: bool,
    /// Pods on the host with no readable record, by uid (see [`adoption`]).
    orphans: BTreeMap<String, Orphan>,
    /// Unrecorded pods being removed, by uid, with their workers.
    reaping: BTreeMap<String, (PodRef, WorkerHandle)>,
    /// (reason, message) of each problem reading the records at start.
    record_problems: Vec<(String, String)>,
    /// Files that could not be read (see [`file_problems`]).
    file_problems: Tracked<Vec<berth_state::FileProblem>>,
    /// Image archives whose import failed, as last reported by the store.
    import_failures: Tracked<Vec<(String, String)>>,
    /// The conditions last published.
    pub(crate) last_conditions: Tracked<Vec<AgentCondition>>,
    /// Jobs and CronJobs (see [`jobs`]).
    pub(crate) batch: jobs::Batch,
}

impl<I: Images, R: Runtime, N: Network> Reconciler<I, R, N> {
    pub fn new(
        images: Arc<I>,
        runtime: Arc<R>,
        net: Arc<N>,
        cfg: ReconcilerConfig,
        status_tx: StatusWriter,
    ) -> Self {
        let (worker_tx, worker_rx) = mpsc::channel(1024);
        let (world_tx, _) = watch::channel(Arc::new(World::default()));
        let g = Generation::default();
        Self {
            deps: Deps {
                images,
                runtime,
                net,
            },
            settings: Arc::new(WorkerSettings {
                state_dir: cfg.state_dir.clone(),
                run_dir: cfg.run_dir.clone(),
                node_name: cfg.node_name.clone(),
                host_ip: cfg.host_ip,
            }),
            records: RecordStore::new(&cfg.state_dir),
            batch: jobs::Batch::new(&cfg.state_dir),
            cfg,
            pods: g.track(BTreeMap::new()),
            blocked: g.track(BTreeMap::new()),
            events: g.track(EventRing::new(crate::events::DEFAULT_CAPACITY)),
            status_tx,
            world_tx,
            worker_tx,
            worker_rx,
            progress: BTreeMap::new(),
            synced_services: None,
            assigned: g.track(BTreeMap::new()),
            claims: g.track(BTreeMap::new()),
            volume_usage: g.track(BTreeMap::new()),
            pending: Vec::new(),
            plain: None,
            passes: 0,
            last_drain: 0,
            records_dirty: false,
            orphans: BTreeMap::new(),
            reaping: BTreeMap::new(),
            record_problems: Vec::new(),
            file_problems: g.track(Vec::new()),
            import_failures: g.track(Vec::new()),
            last_conditions: g.track(Vec::new()),
            generation: g,
            published: None,
        }
    }

    /// Run until `shutdown` turns true (or its sender goes). Workloads keep running.
    pub async fn run(mut self, mut desired_rx: DesiredRx, mut shutdown: watch::Receiver<bool>) {
        self.adopt().await;
        self.load_batch();
        let mut resync = tokio::time::interval(self.cfg.resync);
        resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut gc = tokio::time::interval(self.cfg.image_gc_interval);
        gc.tick().await;
        let mut usage = tokio::time::interval(Duration::from_secs(60));
        let (usage_tx, mut usage_rx) = mpsc::channel::<claims::Usage>(1);
        loop {
            let desired = desired_rx.borrow_and_update().clone();
            let started = Instant::now();
            self.pass(&desired).await;
            let planned = started.elapsed();
            self.check_imports();
            self.publish(&desired);
            let took = started.elapsed();
            tracing::debug!(
                target: "berth::timing",
                pods = self.pods.len(),
                pass_us = planned.as_micros() as u64,
                publish_us = (took - planned).as_micros() as u64,
                "reconcile pass"
            );
            let retry = earliest(self.next_worker_retry(), self.batch_wake());
            tokio::select! {
                r = shutdown.changed() => {
                    if r.is_err() || *shutdown.borrow() {
                        break;
                    }
                }
                r = desired_rx.changed() => {
                    if r.is_err() {
                        break;
                    }
                }
                Some(msg) = self.worker_rx.recv() => {
                    self.on_worker(msg);
                    // fold a burst of messages into one pass and one save,
                    // after letting it gather for a while (see `pace`)
                    let gather = pace::gather_window(took, self.last_drain);
                    if !gather.is_zero() {
                        tokio::time::sleep(gather).await;
                    }
                    let mut drained = 1;
                    while let Ok(m) = self.worker_rx.try_recv() {
                        self.on_worker(m);
                        drained += 1;
                    }
                    self.last_drain = drained;
                    if std::mem::take(&mut self.records_dirty) {
                        self.save_records();
                    }
                }
                _ = resync.tick() => {}
                _ = sleep_until_some(retry) => {}
                _ = gc.tick() => self.spawn_image_gc(&desired),
                _ = usage.tick() => self.spawn_volume_usage(&desired, usage_tx.clone()),
                Some(u) = usage_rx.recv() => {
                    if u != *self.volume_usage {
                        *self.volume_usage = u;
                    }
                }
            }
        }
        tracing::info!("reconciler stopped; containers keep running");
    }

    /// Report image archives that failed to import (an `ImportFailed` event
    /// per new failure, and a condition while any remains).
    fn check_imports(&mut self) {
        let Some(now) = self.deps.images.import_failures() else {
            return;
        };
        if now == *self.import_failures {
            return;
        }
        for (file, err) in &now {
            if !self
                .import_failures
                .iter()
                .any(|(f, e)| f == file && e == err)
            {
                let msg = format!("image archive {file}: {err}");
                self.node_event(true, "ImportFailed", &msg);
            }
        }
        *self.import_failures = now;
    }

    /// Collect unused images; those of running pods and `desired.keep_images`
    /// (the last healthy revisions', for rollbacks) are in use.
    fn spawn_image_gc(&self, desired: &DesiredState) {
        let images = self.deps.images.clone();
        let in_use: Vec<String> = self
            .pods
            .values()
            .flat_map(|e| {
                e.record
                    .spec
                    .containers
                    .iter()
                    .chain(e.record.spec.init_containers.iter().flatten())
            })
            .filter_map(|c| c.image.clone())
            .chain(desired.keep_images.iter().cloned())
            .collect();
        tokio::spawn(async move {
            match images.gc(&in_use).await {
                Ok(r) if !r.removed_images.is_empty() => {
                    tracing::info!(removed = ?r.removed_images, freed = r.freed_bytes, "image gc")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(err = %error_chain(&e), "image gc"),
            }
        });
    }

    fn spawn_worker(
        &self,
        pod: PodRef,
        desired: DesiredPod,
        adopted: Vec<ContainerInfo>,
        backoff: &BTreeMap<String, crate::backoff::BackoffRecord>,
    ) -> WorkerHandle {
        pod::spawn(WorkerInit {
            deps: self.deps.clone(),
            settings: self.settings.clone(),
            pod,
            desired,
            world: self.world_tx.subscribe(),
            tx: self.worker_tx.clone(),
            adopted,
            backoff: backoff.clone(),
        })
    }

    fn save_records(&self) {
        let recs: Vec<PodRecord> = self.pods.values().map(|e| e.record.clone()).collect();
        if let Err(e) = self.records.save(&recs) {
            tracing::error!(err = %error_chain(&e), "saving pod records");
        }
    }

    fn on_worker(&mut self, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Status { pod, status, logs } => {
                if let Some(e) = self.entry_for(&pod) {
                    e.status = Some(*status);
                    e.logs = logs;
                }
            }
            WorkerMsg::Event {
                pod,
                warning,
                reason,
                message,
            } => {
                self.events.record(
                    EventInput {
                        warning,
                        kind: "Pod",
                        namespace: &pod.namespace,
                        name: &pod.name,
                        reason: &reason,
                        message: &message,
                    },
                    SystemTime::now(),
                );
            }
            WorkerMsg::Backoff {
                pod,
                container,
                state,
            } => {
                if let Some(e) = self.entry_for(&pod) {
                    e.record.backoff.insert(container, state);
                    self.records_dirty = true;
                }
            }
            WorkerMsg::Crashed { pod, message } => self.on_worker_crashed(pod, message),
            WorkerMsg::Gone { pod } if self.reaping.contains_key(&pod.uid) => {
                self.reaping.remove(&pod.uid);
                tracing::info!(pod = %pod.key(), "unrecorded pod removed");
            }
            WorkerMsg::Gone { pod } => {
                let key = (pod.namespace.clone(), pod.name.clone());
                if self
                    .pods
                    .get(&key)
                    .is_some_and(|e| e.record.pod.uid == pod.uid)
                {
                    self.pods.remove(&key);
                    // a record left a moment longer is harmless: adoption
                    // finds the pod gone and forgets it
                    self.records_dirty = true;
                    tracing::info!(pod = %pod.key(), "pod removed");
                }
            }
        }
    }

    fn entry_for(&mut self, pod: &PodRef) -> Option<&mut PodEntry> {
        self.pods
            .get_mut(&(pod.namespace.clone(), pod.name.clone()))
            .filter(|e| e.record.pod.uid == pod.uid)
    }

    // === one pass ===

    /// The bare Pods of `desired` with their spec hashes, computed once per
    /// desired state rather than once per pass: a pass runs after every
    /// burst of worker messages, and hashing every pod's spec each time
    /// made starting n pods cost O(n^2).
    fn plain_pods(&mut self, desired: &Arc<DesiredState>) -> PlainPods {
        if let Some((d, plain)) = &self.plain
            && Arc::ptr_eq(d, desired)
        {
            return plain.clone();
        }
        let plain: BTreeMap<ObjectKey, DesiredPod> = desired
            .objects
            .iter()
            .filter_map(|(k, s)| match &s.object {
                Object::Pod(p) => Some((k.clone(), desired_from_pod(p))),
                _ => None,
            })
            .collect();
        let plain = Arc::new(plain);
        self.plain = Some((desired.clone(), plain.clone()));
        plain
    }

    async fn pass(&mut self, desired: &Arc<DesiredState>) {
        self.passes += 1;
        self.collect_file_problems();
        self.update_world(desired);
        self.sync_volumes(desired).await;
        self.resolve_orphans(desired);
        self.restart_failed_workers().await;
        let now = SystemTime::now();
        let plain = self.plain_pods(desired);
        let mut want: Vec<Cow<'_, DesiredPod>> = Vec::new();
        let mut planned: Vec<DesiredPod> = Vec::new();
        let mut names: BTreeSet<(String, String)> = BTreeSet::new();
        let mut deployments: BTreeSet<(String, String)> = BTreeSet::new();
        let mut controllers: BTreeSet<ObjectKey> = BTreeSet::new();
        for (okey, sourced) in &desired.objects {
            match &sourced.object {
                Object::Pod(_) => {
                    let Some(d) = plain.get(okey) else { continue };
                    names.insert((d.namespace.clone(), d.name.clone()));
                    want.push(Cow::Borrowed(d));
                }
                Object::Deployment(d) => {
                    let key = (
                        berth_spec::namespace_of(&d.metadata).to_string(),
                        d.metadata.name.clone().unwrap_or_default(),
                    );
                    deployments.insert(key.clone());
                    self.plan_deployment(d, &key, now, &mut planned);
                    want.extend(planned.drain(..).map(Cow::Owned));
                }
                o @ (Object::StatefulSet(_)
                | Object::DaemonSet(_)
                | Object::ReplicaSet(_)
                | Object::ReplicationController(_)) => {
                    let k = o.key();
                    let key = (k.namespace.clone(), k.name.clone());
                    controllers.insert(k);
                    self.plan_replicated(o, &key, now, &mut planned);
                    want.extend(planned.drain(..).map(Cow::Owned));
                }
                _ => {}
            }
        }
        // deletions: replaced, pruned, or scaled away
        let mut unowned: BTreeMap<(&str, &str), &DesiredPod> = BTreeMap::new();
        for d in want.iter().filter(|d| d.owner.is_none()) {
            unowned
                .entry((d.namespace.as_str(), d.name.as_str()))
                .or_insert(d);
        }
        let mut to_delete: Vec<((String, String), Duration)> = Vec::new();
        for (key, e) in &self.pods {
            if e.terminating.is_some() {
                continue;
            }
            let grace = grace_of(&e.record.spec);
            match &e.record.owner {
                None => match unowned.get(&(key.0.as_str(), key.1.as_str())) {
                    Some(d) if d.spec_hash != e.record.spec_hash => {
                        to_delete.push((key.clone(), grace))
                    }
                    Some(_) => {}
                    None if desired.may_prune(&ObjectKey::new(Kind::Pod, &key.0, &key.1)) => {
                        to_delete.push((key.clone(), grace))
                    }
                    None => {}
                },
                // Jobs' pods: see `jobs`
                Some(_) if e.record.owner_kind == Some(Kind::Job) => {}
                Some(owner) => {
                    let kind = e.record.owner_kind.unwrap_or(Kind::Deployment);
                    let controller = ObjectKey::new(kind, &key.0, owner);
                    let owned = match controller.kind {
                        Kind::Deployment => deployments.contains(&(key.0.clone(), owner.clone())),
                        _ => controllers.contains(&controller),
                    };
                    if !owned && desired.may_prune(&controller) {
                        to_delete.push((key.clone(), grace));
                    }
                }
            }
        }
        for (key, grace) in to_delete {
            self.delete_pod(&key, grace, "Killing");
        }
        self.sync_batch(desired, now);
        self.start_adopted();
        drop(unowned);
        for d in &want {
            self.ensure_pod(d);
        }
        self.start_pending();
        if self.blocked.keys().any(|k| !names.contains(k)) {
            self.blocked.retain(|k, _| names.contains(k));
        }
        self.sync_services(desired).await;
        // the cluster IPs just assigned, for containers' environment
        self.update_world(desired);
        let conditions = self.conditions();
        if conditions != *self.last_conditions {
            *self.last_conditions = conditions;
        }
    }

    fn plan_deployment(
        &mut self,
        d: &Deployment,
        key: &(String, String),
        now: SystemTime,
        want: &mut Vec<DesiredPod>,
    ) {
        let spec = &d.spec;
        let hash = deployment::template_hash(&spec.template);
        let obs: Vec<PodObs> = self
            .pods
            .values()
            .filter(|e| {
                e.record.pod.namespace == key.0 && e.record.owned_by(Kind::Deployment, &key.1)
            })
            .map(pod_obs)
            .collect();
        let deadline =
            Duration::from_secs(spec.progress_deadline_seconds.unwrap_or(600).max(0) as u64);
        let shown_before = self.progress.get(key).map(Progress::shown);
        let prog = self
            .progress
            .entry(key.clone())
            .or_insert_with(|| Progress {
                hash: hash.clone(),
                last_change: Instant::now(),
                last_counts: Default::default(),
                complete: false,
                stalled: false,
            });
        if prog.hash != hash {
            *prog = Progress {
                hash: hash.clone(),
                last_change: Instant::now(),
                last_counts: Default::default(),
                complete: false,
                stalled: false,
            };
        }
        let p = deployment::plan(spec, &hash, &obs, now, prog.stalled);
        if p.counts != prog.last_counts || p.complete {
            prog.last_counts = p.counts.clone();
            prog.last_change = Instant::now();
        }
        prog.complete = p.complete;
        if !p.complete && !prog.stalled && prog.last_change.elapsed() > deadline {
            prog.stalled = true;
        }
        let stalled_now = prog.stalled && shown_before.as_ref().is_none_or(|s| !s.3);
        if shown_before != Some(prog.shown()) {
            self.generation.bump();
        }
        if stalled_now {
            self.events.record(
                EventInput {
                    warning: true,
                    kind: "Deployment",
                    namespace: &key.0,
                    name: &key.1,
                    reason: "ProgressDeadlineExceeded",
                    message: &format!("Deployment {:?} has timed out progressing", key.1),
                },
                now,
            );
        }
        for name in &p.delete {
            if let Some(e) = self.pods.get(&(key.0.clone(), name.clone())) {
                let grace = grace_of(&e.record.spec);
                self.delete_pod(&(key.0.clone(), name.clone()), grace, "Killing");
            }
        }
        // keep the current-template pods that exist (so the pass doesn't prune them)
        let mut n = 0u32;
        let mut created = 0;
        while created < p.create {
            let name = format!(
                "{}-{}-{}",
                key.1,
                hash,
                crate::hash::name_suffix(&format!("{}/{}/{hash}/{n}", key.0, key.1), 5)
            );
            n += 1;
            if self.pods.contains_key(&(key.0.clone(), name.clone()))
                || want.iter().any(|w| w.name == name && w.namespace == key.0)
            {
                continue;
            }
            want.push(adoption::deployment_pod(d, &key.0, &key.1, &hash, name));
            created += 1;
        }
        if created > 0 {
            // what a cluster's deployment controller reports (kubectl describe deploy)
            let current = obs
                .iter()
                .filter(|o| o.template_hash == hash && !o.terminating)
                .count();
            self.events.record(
                EventInput {
                    warning: false,
                    kind: "Deployment",
                    namespace: &key.0,
                    name: &key.1,
                    reason: "ScalingReplicaSet",
                    message: &format!(
                        "Scaled up replica set {}-{hash} from {current} to {}",
                        key.1,
                        current + created
                    ),
                },
                now,
            );
        }
    }

    fn delete_pod(&mut self, key: &(String, String), grace: Duration, reason: &str) {
        let Some(e) = self.pods.get_mut(key) else {
            return;
        };
        if e.terminating.is_some() {
            return;
        }
        e.terminating = Some(SystemTime::now());
        tracing::info!(pod = %e.record.pod.key(), ?grace, "deleting pod");
        if let Some(h) = &e.handle {
            let _ = h.stop.send(Some(grace));
        }
        let _ = reason;
    }

    /// Create the pod unless it exists (same name) or its hostPorts are taken.
    fn ensure_pod(&mut self, d: &DesiredPod) {
        let key = (d.namespace.clone(), d.name.clone());
        if !self.pods.contains_key(&key) && self.name_held_by_orphan(&key.0, &key.1) {
            // an unrecorded instance still runs or is being removed
            return;
        }
        if let Some(e) = self.pods.get(&key) {
            let relabel = e.record.spec_hash == d.spec_hash
                && e.terminating.is_none()
                && e.record.labels != d.labels;
            let reannotate = e.terminating.is_none() && e.annotations != d.annotations;
            if !relabel && !reannotate {
                return;
            }
        }
        if let Some(e) = self.pods.get_mut(&key) {
            if e.record.spec_hash == d.spec_hash
                && e.terminating.is_none()
                && e.record.labels != d.labels
            {
                e.record.labels = d.labels.clone();
                e.annotations = d.annotations.clone();
                self.save_records();
            } else if e.terminating.is_none() {
                e.annotations = d.annotations.clone();
            }
            return;
        }
        let wanted = service::host_ports(&d.spec);
        if !wanted.is_empty() {
            let taken: Vec<String> = self
                .pods
                .values()
                .flat_map(|e| {
                    let theirs = service::host_ports(&e.record.spec);
                    wanted
                        .iter()
                        .filter(move |w| {
                            theirs
                                .iter()
                                .any(|t| t.host_port == w.host_port && t.protocol == w.protocol)
                        })
                        .map(move |w| {
                            format!(
                                "{}/{:?} (pod {})",
                                w.host_port, w.protocol, e.record.pod.name
                            )
                        })
                })
                .collect();
            if !taken.is_empty() {
                let msg = format!("hostPort already in use: {}", taken.join(", "));
                if self.blocked.get(&key).map(|(_, m)| m) != Some(&msg) {
                    self.events.record(
                        EventInput {
                            warning: true,
                            kind: "Pod",
                            namespace: &key.0,
                            name: &key.1,
                            reason: "FailedScheduling",
                            message: &msg,
                        },
                        SystemTime::now(),
                    );
                }
                let same = self
                    .blocked
                    .get(&key)
                    .is_some_and(|(b, m)| *m == msg && b.spec_hash == d.spec_hash);
                if !same {
                    self.blocked.insert(key, (d.clone(), msg));
                }
                return;
            }
        }
        self.blocked.remove(&key);
        let now = SystemTime::now();
        let nanos = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let uid =
            crate::hash::spec_hash(&(key.0.as_str(), key.1.as_str(), d.spec_hash.as_str(), nanos));
        let pod = PodRef {
            namespace: key.0.clone(),
            name: key.1.clone(),
            uid,
        };
        let record = PodRecord {
            pod: pod.clone(),
            owner: d.owner.clone(),
            owner_kind: d.owner_kind,
            template_hash: d.template_hash.clone(),
            spec_hash: d.spec_hash.clone(),
            labels: d.labels.clone(),
            spec: d.spec.clone(),
            created: now,
            backoff: BTreeMap::new(),
        };
        tracing::info!(pod = %pod.key(), "creating pod");
        self.pods.insert(
            key.clone(),
            PodEntry {
                record,
                annotations: d.annotations.clone(),
                handle: None,
                status: None,
                logs: Vec::new(),
                terminating: None,
                crash: None,
                adopting: None,
            },
        );
        // the worker starts after the pass has saved the records (see `pass`)
        self.pending.push((pod, d.clone()));
    }

    /// Start the workers of adopted pods, told to stop at once if this pass
    /// deleted them.
    fn start_adopted(&mut self) {
        let keys: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(_, e)| e.adopting.is_some())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            let Some(e) = self.pods.get_mut(&key) else {
                continue;
            };
            let adopted = e.adopting.take().unwrap_or_default();
            let mut d = desired_from_record(&e.record);
            d.annotations = e.annotations.clone();
            let (pod, backoff) = (e.record.pod.clone(), e.record.backoff.clone());
            let grace = e.terminating.map(|_| grace_of(&e.record.spec));
            let handle = self.spawn_worker(pod, d, adopted, &backoff);
            if let Some(g) = grace {
                let _ = handle.stop.send(Some(g));
            }
            if let Some(e) = self.pods.get_mut(&key) {
                e.handle = Some(handle);
            }
        }
    }

    /// Save the records of pods created in this pass, then start their workers:
    /// a record is on disk before anything of its pod exists on the host.
    fn start_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.save_records();
        for (pod, d) in std::mem::take(&mut self.pending) {
            let key = (pod.namespace.clone(), pod.name.clone());
            let handle = self.spawn_worker(pod, d, Vec::new(), &BTreeMap::new());
            if let Some(e) = self.pods.get_mut(&key) {
                e.handle = Some(handle);
            }
        }
    }

    fn update_world(&mut self, desired: &DesiredState) {
        let mut w = World {
            objs: ConfigObjects::default(),
            claims: BTreeSet::new(),
            no_pull: desired.rollback_images.clone(),
            services: Vec::new(),
        };
        w.claims.extend(replicated::claims(desired, &self.pods));
        for s in desired.objects.values() {
            let m = s.object.metadata();
            let key = (
                berth_spec::namespace_of(m).to_string(),
                m.name.clone().unwrap_or_default(),
            );
            match &s.object {
                Object::ConfigMap(c) => {
                    w.objs.config_maps.insert(key, (**c).clone());
                }
                Object::Secret(c) => {
                    w.objs.secrets.insert(key, (**c).clone());
                }
                Object::Volume(_) => {
                    w.claims.insert(key);
                }
                Object::Service(svc) => {
                    let ip = self.assigned.get(&key).map(|a| a.cluster_ip);
                    w.services
                        .extend(crate::service_env::ServiceEnv::from_service(svc, ip));
                }
                _ => {}
            }
        }
        self.world_tx.send_if_modified(|cur| {
            if **cur == w {
                false
            } else {
                *cur = Arc::new(w);
                true
            }
        });
    }

    async fn sync_services(&mut self, desired: &DesiredState) {
        let services: Vec<&Service> = desired
            .objects
            .values()
            .filter_map(|s| match &s.object {
                Object::Service(s) => Some(&**s),
                _ => None,
            })
            .collect();
        let pods: Vec<service::EndpointPod<'_>> = self
            .pods
            .values()
            .map(|e| service::EndpointPod {
                namespace: &e.record.pod.namespace,
                labels: &e.record.labels,
                spec: &e.record.spec,
                ip: e
                    .status
                    .as_ref()
                    .and_then(|s| s.pod_ip.as_deref())
                    .and_then(|ip| ip.parse().ok()),
                ready: e.status.as_ref().is_some_and(pod_ready),
                terminating: e.terminating.is_some(),
            })
            .collect();
        let entries = service::entries(&services, &pods);
        if self.synced_services.as_ref() == Some(&entries) {
            return;
        }
        match self.deps.net.sync_services(&entries).await {
            Ok(assigned) => {
                tracing::debug!(target: "berth::timing", services = entries.len(), "services programmed");
                self.assigned.clear();
                for a in assigned {
                    if let Some(err) = &a.error {
                        self.events.record(
                            EventInput {
                                warning: true,
                                kind: "Service",
                                namespace: &a.namespace,
                                name: &a.name,
                                reason: "FailedToAllocate",
                                message: err,
                            },
                            SystemTime::now(),
                        );
                    }
                    self.assigned
                        .insert((a.namespace.clone(), a.name.clone()), a);
                }
                self.synced_services = Some(entries);
            }
            Err(e) => {
                tracing::warn!(err = %error_chain(&e), "syncing services");
            }
        }
    }

    /// A new snapshot when the observed state changed (or every 50 passes);
    /// its `version` counts the changes published, one at a time.
    fn publish(&mut self, desired: &DesiredState) {
        let cur = self.status_tx.borrow().clone();
        let generation = self.generation.get();
        let changed = self.published != Some(generation);
        if cur.ready && !changed && cur.reconcile_passes + 50 > self.passes {
            return;
        }
        self.published = Some(generation);
        let version = cur.version + u64::from(changed);
        let snap: Snapshot = snapshot::build(self, desired, version, self.passes);
        self.status_tx.send_replace(Arc::new(snap));
    }
}

/// `terminationGracePeriodSeconds`, Kubernetes' 30 s when unset.
pub(crate) fn grace_of(spec: &berth_spec::k8s_openapi::api::core::v1::PodSpec) -> Duration {
    Duration::from_secs(spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64)
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

async fn sleep_until_some(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

pub(crate) fn pod_ready(s: &PodStatus) -> bool {
    s.conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn ready_since(s: &PodStatus) -> Option<SystemTime> {
    let c = s
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "True")?;
    let t = c.last_transition_time.as_ref()?;
    Some(crate::pod::status::system_time(t))
}

pub(crate) fn pod_obs(e: &PodEntry) -> PodObs {
    PodObs {
        name: e.record.pod.name.clone(),
        template_hash: e.record.template_hash.clone().unwrap_or_default(),
        ready: e.status.as_ref().is_some_and(pod_ready),
        ready_since: e.status.as_ref().and_then(ready_since),
        terminating: e.terminating.is_some(),
        created: e.record.created,
        host_ports: deployment::host_ports(Some(&e.record.spec)),
    }
}

pub(crate) fn desired_from_pod(p: &berth_spec::k8s_openapi::api::core::v1::Pod) -> DesiredPod {
    let spec = p.spec.clone().unwrap_or_default();
    DesiredPod {
        namespace: berth_spec::namespace_of(&p.metadata).to_string(),
        name: p.metadata.name.clone().unwrap_or_default(),
        owner: None,
        owner_kind: None,
        template_hash: None,
        labels: p.metadata.labels.clone().unwrap_or_default(),
        annotations: p.metadata.annotations.clone().unwrap_or_default(),
        spec_hash: crate::hash::spec_hash(&spec),
        spec,
    }
}

fn desired_from_record(r: &PodRecord) -> DesiredPod {
    DesiredPod {
        namespace: r.pod.namespace.clone(),
        name: r.pod.name.clone(),
        owner: r.owner.clone(),
        owner_kind: r.owner_kind,
        template_hash: r.template_hash.clone(),
        labels: r.labels.clone(),
        annotations: BTreeMap::new(),
        spec: r.spec.clone(),
        spec_hash: r.spec_hash.clone(),
    }
}

// for snapshot.rs
impl<I, R, N> Reconciler<I, R, N> {
    pub(crate) fn cfg(&self) -> &ReconcilerConfig {
        &self.cfg
    }

    /// `ip:port` of the ready endpoints last programmed for a Service.
    pub(crate) fn assigned_endpoints(&self, key: &(String, String)) -> Vec<String> {
        self.synced_services
            .iter()
            .flatten()
            .filter(|e| (&e.namespace, &e.name) == (&key.0, &key.1))
            .flat_map(|e| {
                e.endpoints.iter().flat_map(|ip| {
                    e.ports
                        .iter()
                        .map(move |p| format!("{ip}:{}", p.target_port))
                })
            })
            .collect()
    }

    pub(crate) fn volume_usage(&self, ns: &str, name: &str) -> Option<u64> {
        self.volume_usage
            .get(&(ns.to_string(), name.to_string()))
            .copied()
    }
}

#[cfg(test)]
mod tests;
