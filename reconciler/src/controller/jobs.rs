//! Jobs: the act/observe side of [`crate::job::plan`].
//!
//! Each pass plans every Job (a manifest's, or one a CronJob created, see
//! [`super::cronjobs`]) from its pods, creates and deletes pods, and keeps
//! what must survive a restart in [`BatchState`] (`jobs.json`): the Job's
//! uid, when it started, how and when it finished. So a finished Job is
//! not run again while its manifest is unchanged, also after kill -9.
//!
//! Pods are named `<job>-<5 chars>` (`<job>-<index>-<5 chars>` for Indexed
//! Jobs) and labelled `job-name`, `batch.kubernetes.io/job-name`,
//! `controller-uid` and `batch.kubernetes.io/controller-uid`, as the Job
//! controller does; the record's owner is the Job.
//!
//! A changed manifest: the fields Kubernetes lets change on a Job
//! (parallelism, activeDeadlineSeconds, backoffLimit, suspend,
//! ttlSecondsAfterFinished) apply to the run in place. Kubernetes refuses
//! any other change (the pod template, completions, completionMode are
//! immutable); berth instead treats it as a new Job, as
//! `kubectl replace --force` would: the old run's pods are stopped, a
//! `JobReplaced` warning is recorded, and the Job runs again from zero.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use berth_spec::k8s_openapi::api::batch::v1::JobSpec;
use berth_spec::k8s_openapi::api::core::v1::EnvVar;
use berth_spec::{Kind, Object, ObjectKey};

use super::{PodEntry, Reconciler, grace_of};
use crate::batch_store::{self, BatchState, BatchStore, JobDone, JobRun};
use crate::desired::DesiredState;
use crate::events::EventInput;
use crate::job::{self, Finished, Phase, PodObs};
use crate::pod::DesiredPod;
use crate::traits::{Images, Network, Runtime, error_chain};

pub const LABEL_JOB_NAME: &str = "job-name";
pub const LABEL_BATCH_JOB_NAME: &str = "batch.kubernetes.io/job-name";
pub const LABEL_CONTROLLER_UID: &str = "controller-uid";
pub const LABEL_BATCH_CONTROLLER_UID: &str = "batch.kubernetes.io/controller-uid";
pub const ANNOTATION_INDEX: &str = "batch.kubernetes.io/job-completion-index";

/// What the controller keeps of Jobs and CronJobs.
pub(crate) struct Batch {
    pub state: BatchState,
    store: BatchStore,
    /// The earliest time a Job or CronJob wants a pass.
    pub wake: Option<SystemTime>,
    /// Counts shown in each Job's status: (active, ready, succeeded, failed).
    pub shown: BTreeMap<String, (u32, u32, u32, u32)>,
    /// The last "not run" message per CronJob (one event per change).
    pub last_skipped: BTreeMap<String, String>,
    dirty: bool,
}

impl Batch {
    pub fn new(state_dir: &std::path::Path) -> Self {
        Batch {
            state: BatchState::default(),
            store: BatchStore::new(state_dir),
            wake: None,
            shown: BTreeMap::new(),
            last_skipped: BTreeMap::new(),
            dirty: false,
        }
    }

    pub fn wake_at(&mut self, t: Option<SystemTime>) {
        if let Some(t) = t {
            self.wake = Some(self.wake.map_or(t, |w| w.min(t)));
        }
    }

    pub fn changed(&mut self) {
        self.dirty = true;
    }
}

/// A Job to plan in this pass.
struct Wanted {
    ns: String,
    name: String,
    spec: JobSpec,
    cron: Option<crate::batch_store::CronOwned>,
}

/// The hash of what Kubernetes keeps immutable on a Job.
pub(crate) fn identity_hash(spec: &JobSpec) -> String {
    crate::hash::spec_hash(&(
        &spec.template,
        spec.completions,
        spec.completion_mode.as_deref(),
    ))
}

fn new_uid(ns: &str, name: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    crate::hash::spec_hash(&("job", ns, name, nanos))
}

fn phase_of(e: &PodEntry) -> Phase {
    match e.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => Phase::Succeeded,
        Some("Failed") => Phase::Failed,
        Some("Running") => Phase::Running,
        _ => Phase::Pending,
    }
}

pub(crate) fn job_pod_obs(e: &PodEntry) -> PodObs {
    let statuses = e
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref());
    let restarts = statuses
        .into_iter()
        .flatten()
        .map(|c| c.restart_count.max(0) as u32)
        .sum();
    let finished = statuses
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(crate::pod::status::system_time)
        .max();
    PodObs {
        name: e.record.pod.name.clone(),
        phase: phase_of(e),
        restarts,
        terminating: e.terminating.is_some(),
        finished: finished.or(e.terminating),
        index: e
            .annotations
            .get(ANNOTATION_INDEX)
            .or_else(|| e.record.labels.get(ANNOTATION_INDEX))
            .and_then(|i| i.parse().ok()),
    }
}

/// The pod of Job `w` (run `uid`) named `name`, with completion `index`.
fn job_pod(w: &Wanted, uid: &str, name: String, index: Option<u32>) -> DesiredPod {
    let meta = w.spec.template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(LABEL_JOB_NAME.into(), w.name.clone());
    labels.insert(LABEL_BATCH_JOB_NAME.into(), w.name.clone());
    labels.insert(LABEL_CONTROLLER_UID.into(), uid.to_string());
    labels.insert(LABEL_BATCH_CONTROLLER_UID.into(), uid.to_string());
    let mut annotations = meta.annotations.unwrap_or_default();
    let mut spec = w.spec.template.spec.clone().unwrap_or_default();
    if let Some(i) = index {
        labels.insert(ANNOTATION_INDEX.into(), i.to_string());
        annotations.insert(ANNOTATION_INDEX.into(), i.to_string());
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            c.env.get_or_insert_with(Vec::new).push(EnvVar {
                name: "JOB_COMPLETION_INDEX".into(),
                value: Some(i.to_string()),
                value_from: None,
            });
        }
    }
    DesiredPod {
        namespace: w.ns.clone(),
        name,
        owner: Some(w.name.clone()),
        owner_kind: Some(Kind::Job),
        template_hash: None,
        labels,
        annotations,
        spec_hash: crate::hash::spec_hash(&spec),
        spec,
    }
}

impl<I: Images, R: Runtime, N: Network> Reconciler<I, R, N> {
    /// Read the Job state at start (before the first pass).
    pub(super) fn load_batch(&mut self) {
        let (state, problem) = self.batch_store_load();
        self.batch.state = state;
        if let Some(msg) = problem {
            tracing::error!(%msg, "job state");
            self.node_event(true, "JobStateQuarantined", &msg);
            self.record_problems
                .push(("JobStateQuarantined".into(), msg));
        }
    }

    fn batch_store_load(&self) -> (BatchState, Option<String>) {
        self.batch.store.load()
    }

    pub(super) fn save_batch(&mut self) {
        if !std::mem::take(&mut self.batch.dirty) {
            return;
        }
        self.generation.bump();
        if let Err(e) = self.batch.store.save(&self.batch.state) {
            tracing::error!(err = %error_chain(&e), "saving job state");
        }
    }

    pub(super) fn batch_event(
        &mut self,
        kind: &'static str,
        ns: &str,
        name: &str,
        warn: bool,
        reason: &str,
        msg: &str,
    ) {
        self.events.record(
            EventInput {
                warning: warn,
                kind,
                namespace: ns,
                name,
                reason,
                message: msg,
            },
            SystemTime::now(),
        );
    }

    /// Plan CronJobs, then every Job; prune what the manifests dropped.
    pub(super) fn sync_batch(&mut self, desired: &DesiredState, now: SystemTime) {
        self.batch.wake = None;
        self.sync_cronjobs(desired, now);
        let mut wanted: Vec<Wanted> = Vec::new();
        for s in desired.objects.values() {
            if let Object::Job(j) = &s.object {
                let m = &j.metadata;
                wanted.push(Wanted {
                    ns: berth_spec::namespace_of(m).to_string(),
                    name: m.name.clone().unwrap_or_default(),
                    spec: j.spec.clone().unwrap_or_default(),
                    cron: None,
                });
            }
        }
        for (k, run) in &self.batch.state.jobs {
            if let Some(c) = &run.cron {
                let (ns, name) = batch_store::split_key(k);
                wanted.push(Wanted {
                    ns: ns.to_string(),
                    name: name.to_string(),
                    spec: c.spec.clone(),
                    cron: Some(c.clone()),
                });
            }
        }
        let planned: BTreeSet<String> = wanted
            .iter()
            .map(|w| batch_store::key(&w.ns, &w.name))
            .collect();
        for w in &wanted {
            self.sync_job(w, now);
        }
        self.prune_jobs(desired, &planned);
        self.save_batch();
    }

    fn sync_job(&mut self, w: &Wanted, now: SystemTime) {
        let k = batch_store::key(&w.ns, &w.name);
        let hash = identity_hash(&w.spec);
        let owned: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(key, e)| key.0 == w.ns && e.record.owned_by(Kind::Job, &w.name))
            .map(|(key, e)| {
                let uid = e.record.labels.get(LABEL_CONTROLLER_UID).cloned();
                (key.1.clone(), uid.unwrap_or_default())
            })
            .collect();
        let mut replaced = false;
        if let Some(run) = self.batch.state.jobs.get(&k)
            && run.hash != hash
            && w.cron.is_none()
        {
            let msg = "the Job's pod template, completions or completionMode changed (immutable in Kubernetes): the running Job is stopped and runs again as a new Job";
            self.batch_event("Job", &w.ns, &w.name, true, "JobReplaced", msg);
            tracing::warn!(job = %k, "{msg}");
            self.batch.state.jobs.remove(&k);
            replaced = true;
        }
        if !self.batch.state.jobs.contains_key(&k) {
            // no state (first sight, or the file was lost): recorded pods of
            // the Job are this run's, so a Job that finished is not run again
            let earlier = owned
                .iter()
                .map(|(_, u)| u)
                .find(|u| !u.is_empty() && !replaced)
                .cloned();
            let (uid, started) = match earlier {
                Some(u) => {
                    let started = self
                        .pods
                        .values()
                        .filter(|e| e.record.labels.get(LABEL_CONTROLLER_UID) == Some(&u))
                        .map(|e| e.record.created)
                        .min()
                        .unwrap_or(now);
                    (u, started)
                }
                None => (new_uid(&w.ns, &w.name), now),
            };
            tracing::info!(job = %k, %uid, "job started");
            self.batch.state.jobs.insert(
                k.clone(),
                JobRun {
                    uid,
                    hash: hash.clone(),
                    started,
                    done: None,
                    succeeded: 0,
                    failed: 0,
                    created_pods: owned.len() as u32,
                    cron: w.cron.clone(),
                },
            );
            self.batch.changed();
            // saved now: a pod is never created for a run not on disk
            self.save_batch();
        }
        let Some(run) = self.batch.state.jobs.get(&k).cloned() else {
            return;
        };
        // pods of earlier runs go
        for (name, uid) in &owned {
            if *uid != run.uid {
                self.delete_job_pod(&w.ns, name);
            }
        }
        let obs: Vec<PodObs> = self
            .pods
            .values()
            .filter(|e| {
                e.record.pod.namespace == w.ns
                    && e.record.owned_by(Kind::Job, &w.name)
                    && e.record.labels.get(LABEL_CONTROLLER_UID) == Some(&run.uid)
            })
            .map(job_pod_obs)
            .collect();
        let ready = self
            .pods
            .values()
            .filter(|e| {
                e.record.labels.get(LABEL_CONTROLLER_UID) == Some(&run.uid)
                    && e.terminating.is_none()
                    && e.status.as_ref().is_some_and(super::pod_ready)
            })
            .count() as u32;
        let done = run.done.as_ref().map(|d| {
            let f = if d.complete {
                Finished::Complete
            } else {
                let reason: &'static str = match d.reason.as_deref() {
                    Some("DeadlineExceeded") => "DeadlineExceeded",
                    _ => "BackoffLimitExceeded",
                };
                Finished::Failed(reason, d.message.clone().unwrap_or_default())
            };
            (f, d.at)
        });
        let p = job::plan(&w.spec, &obs, run.started, done.as_ref(), now);
        let ttl_passed = run.done.as_ref().is_some_and(|d| {
            w.spec
                .ttl_seconds_after_finished
                .is_some_and(|t| now >= d.at + std::time::Duration::from_secs(t.max(0) as u64))
        });
        for name in &p.delete {
            // A Job that had finished before this pass keeps its pods until
            // its TTL: after an agent restart its adopted pods have no status
            // (or a passing one) for a moment and would look like active pods
            // of a finished Job to the planner. Active pods are deleted in the
            // pass that finishes the Job.
            if run.done.is_some() && !ttl_passed {
                continue;
            }
            self.delete_job_pod(&w.ns, name);
        }
        let mut created = 0u32;
        for index in &p.create {
            let mut n = run.created_pods + created;
            // a name in use (an earlier pod of this run): the next seed
            let name = loop {
                let seed = format!("{}/{}/{n}", run.uid, w.name);
                let suffix = crate::hash::name_suffix(&seed, 5);
                let name = match index {
                    Some(i) => format!("{}-{i}-{suffix}", w.name),
                    None => format!("{}-{suffix}", w.name),
                };
                if !self.pods.contains_key(&(w.ns.clone(), name.clone())) {
                    break name;
                }
                n += 1;
            };
            let d = job_pod(w, &run.uid, name.clone(), *index);
            self.ensure_pod(&d);
            if self.pods.contains_key(&(w.ns.clone(), name.clone())) {
                created = n + 1 - run.created_pods;
                self.batch_event(
                    "Job",
                    &w.ns,
                    &w.name,
                    false,
                    "SuccessfulCreate",
                    &format!("Created pod: {name}"),
                );
            }
        }
        let shown = if run.done.as_ref().is_some_and(|d| d.expired) {
            (0, 0, run.succeeded, run.failed)
        } else {
            (p.active, ready, p.succeeded, p.failed)
        };
        if self.batch.shown.get(&k) != Some(&shown) {
            self.batch.shown.insert(k.clone(), shown);
            self.generation.bump();
        }
        let ttl = w.spec.ttl_seconds_after_finished;
        let mut event = None;
        let mut forget = false;
        let Some(run) = self.batch.state.jobs.get_mut(&k) else {
            return;
        };
        let mut dirty = created > 0;
        run.created_pods += created;
        if run.done.is_none()
            && let Some(f) = &p.finished
        {
            let (complete, reason, message) = match f {
                Finished::Complete => (true, None, None),
                Finished::Failed(r, m) => (false, Some(r.to_string()), Some(m.clone())),
            };
            run.done = Some(JobDone {
                complete,
                reason: reason.clone(),
                message: message.clone(),
                at: now,
                expired: false,
            });
            run.succeeded = p.succeeded;
            run.failed = p.failed;
            dirty = true;
            event = Some(match (complete, reason, message) {
                (true, _, _) => (false, "Completed".to_string(), "Job completed".to_string()),
                (false, r, m) => (true, r.unwrap_or_default(), m.unwrap_or_default()),
            });
        }
        // ttlSecondsAfterFinished: the planner deleted its pods
        if let Some(d) = run.done.as_mut()
            && !d.expired
            && let Some(ttl) = ttl
            && now >= d.at + std::time::Duration::from_secs(ttl.max(0) as u64)
        {
            d.expired = true;
            dirty = true;
            // a CronJob's Job is gone for good (its time stays recorded)
            forget = w.cron.is_some();
            tracing::info!(job = %k, "ttlSecondsAfterFinished passed: job removed");
        }
        if forget {
            self.batch.state.jobs.remove(&k);
            self.batch.shown.remove(&k);
        }
        if dirty {
            self.batch.changed();
        }
        if let Some((warn, reason, msg)) = event {
            tracing::info!(job = %k, %reason, "job finished");
            self.batch_event("Job", &w.ns, &w.name, warn, &reason, &msg);
        }
        self.batch.wake_at(p.wake);
    }

    pub(super) fn delete_job_pod(&mut self, ns: &str, name: &str) {
        let key = (ns.to_string(), name.to_string());
        if let Some(e) = self.pods.get(&key)
            && e.terminating.is_none()
        {
            let grace = grace_of(&e.record.spec);
            self.delete_pod(&key, grace, "Killing");
        }
    }

    /// Jobs the manifests dropped (or whose CronJob went): their pods are
    /// stopped and their state forgotten, when the desired set allows pruning.
    fn prune_jobs(&mut self, desired: &DesiredState, planned: &BTreeSet<String>) {
        let gone: Vec<String> = self
            .batch
            .state
            .jobs
            .keys()
            .filter(|k| !planned.contains(*k))
            .cloned()
            .collect();
        for k in gone {
            let (ns, name) = batch_store::split_key(&k);
            if desired.may_prune(&ObjectKey::new(Kind::Job, ns, name)) {
                tracing::info!(job = %k, "job removed from the manifests");
                self.batch.state.jobs.remove(&k);
                self.batch.shown.remove(&k);
                self.batch.dirty = true;
            }
        }
        // pods of Jobs no one plans (their state was pruned or lost)
        let stray: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(_, e)| e.record.owner_kind == Some(Kind::Job) && e.terminating.is_none())
            .filter(|(key, e)| {
                let owner = e.record.owner.as_deref().unwrap_or_default();
                !planned.contains(&batch_store::key(&key.0, owner))
                    && desired.may_prune(&ObjectKey::new(Kind::Job, &key.0, owner))
            })
            .map(|(k, _)| k.clone())
            .collect();
        for (ns, name) in stray {
            self.delete_job_pod(&ns, &name);
        }
    }
}

impl<I, R, N> Reconciler<I, R, N> {
    /// When a Job or CronJob wants the next pass (back-off, deadline, TTL,
    /// schedule), on tokio's clock.
    pub(super) fn batch_wake(&self) -> Option<tokio::time::Instant> {
        let at = self.batch.wake?;
        let wait = at
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            // the wall clock and tokio's may differ slightly: never early
            + std::time::Duration::from_millis(50);
        Some(tokio::time::Instant::now() + wait)
    }
}

#[cfg(test)]
mod tests;
