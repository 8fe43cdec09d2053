//! Health-gated rollouts: every revision a source publishes is watched until
//! the workloads it changed are healthy, or it fails and (by default) the last
//! healthy revision is applied again.
//!
//! This module is pure planning (G7, G8): a [`Tracker`] per source holds the
//! revisions (applied, running, last healthy, failed), a bounded history and
//! the rollout in flight ([`Watch`]); its transitions take the revision and
//! its changed set, the clock and [`WorkloadObs`] observations, and return
//! [`Effect`]s. The agent records the objects of each revision, observes the
//! pods, persists the tracker and re-applies recorded objects when told to.
//!
//! ```text
//!            new revision (changed set)
//!   Idle ────────────────────────────────> Watching(rev)
//!    ^   (nothing changed: Healthy at once)   │ all changed workloads Ready,
//!    │                                        │ no restart for `soak`      ──> Healthy: last_healthy = rev
//!    │                                        │ crash loop / image / liveness /
//!    │                                        │ deadline                  ──> Failed: rev never applied again
//!    │                                        │   auto-rollback and a last healthy revision:
//!    │                                        │   RollBack -> Watching(last healthy, rollback)
//!    └──────── a newer revision supersedes a rollout in flight
//! ```
//!
//! A restart of the agent keeps everything but the soak clock: a rollout in
//! flight resumes its watch and must soak again before it is healthy.

mod plan;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub use plan::{Decision, Verdict, decide, evaluate};

/// Annotation on a Pod or Deployment: `"false"` turns automatic rollback off
/// for any revision that changes it (the failure is only reported).
pub const ANNOTATION_AUTO_ROLLBACK: &str = "berth.dev/auto-rollback";
/// The deadline when neither the flag nor a changed Deployment sets one.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);
/// Entries of history kept per source.
pub const HISTORY_LIMIT: usize = 20;
/// How long an image failure (ImagePullBackOff, ...) must last to fail a revision.
pub const IMAGE_GRACE: Duration = Duration::from_secs(15);
/// Failed revisions remembered per source.
pub const FAILED_LIMIT: usize = 50;

/// Operator settings (flags `--rollout-soak`, `--rollout-deadline`,
/// `--rollout-crash-loop-restarts`, `--auto-rollback`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// How long the changed workloads must stay Ready without a restart.
    pub soak: Duration,
    /// Deadline for every rollout; `None`: the largest progressDeadlineSeconds
    /// of the changed Deployments, else [`DEFAULT_DEADLINE`].
    pub deadline: Option<Duration>,
    /// Restarts of one changed container that make a crash loop.
    pub crash_loop_restarts: u32,
    /// Roll back a failed revision (else only report it).
    pub auto_rollback: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            soak: Duration::from_secs(30),
            deadline: None,
            crash_loop_restarts: 3,
            auto_rollback: true,
        }
    }
}

/// A workload a revision created or replaced, as the reconciler names its pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum WorkloadRef {
    /// A bare Pod; its pod carries this spec hash.
    Pod {
        namespace: String,
        name: String,
        spec_hash: String,
    },
    /// A Deployment; its new pods carry this `pod-template-hash`.
    Deployment {
        namespace: String,
        name: String,
        template_hash: String,
        replicas: u32,
    },
    /// A StatefulSet or DaemonSet; its new pods carry the
    /// `controller-revision-hash` `<name>-<revision>`; `replicas` of them
    /// are replaced (a StatefulSet's partition and OnDelete spare some).
    Set {
        controller: berth_spec::Kind,
        namespace: String,
        name: String,
        revision: String,
        replicas: u32,
    },
}

impl WorkloadRef {
    /// `Kind/namespace/name`.
    pub fn object(&self) -> String {
        match self {
            WorkloadRef::Pod {
                namespace, name, ..
            } => format!("Pod/{namespace}/{name}"),
            WorkloadRef::Deployment {
                namespace, name, ..
            } => format!("Deployment/{namespace}/{name}"),
            WorkloadRef::Set {
                controller,
                namespace,
                name,
                ..
            } => format!("{controller}/{namespace}/{name}"),
        }
    }

    /// Pods needed Ready: 1 for a Pod, `replicas` for a Deployment.
    pub fn expected(&self) -> usize {
        match self {
            WorkloadRef::Pod { .. } => 1,
            WorkloadRef::Deployment { replicas, .. } | WorkloadRef::Set { replicas, .. } => {
                *replicas as usize
            }
        }
    }
}

/// What a revision changed relative to what ran before it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changed {
    pub workloads: Vec<WorkloadRef>,
    /// The largest progressDeadlineSeconds of the changed Deployments.
    pub progress_deadline: Option<Duration>,
    /// False when a changed object says `berth.dev/auto-rollback: "false"`.
    pub auto_rollback: bool,
}

/// One container of a watched pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerObs {
    pub name: String,
    pub ready: bool,
    pub restarts: u32,
    /// `state.waiting.reason` (CrashLoopBackOff, ImagePullBackOff, ...).
    pub waiting_reason: Option<String>,
    /// Exit code of the current or last termination.
    pub exit_code: Option<i32>,
}

/// One pod of a watched workload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodObs {
    pub name: String,
    pub ready: bool,
    /// `status.phase`.
    pub phase: Option<String>,
    pub containers: Vec<ContainerObs>,
    /// A liveness probe failed since the rollout started.
    pub liveness_failed: bool,
}

/// What the agent observed of one changed workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkloadObs {
    /// Not desired on this node (nodeSelector, refused by policy): not watched.
    NotHere,
    /// Its pods of this revision (terminating ones left out).
    Pods(Vec<PodObs>),
}

/// Why a revision failed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    /// CrashLoopBackOff, ImagePullBackOff, ProgressDeadlineExceeded, Unhealthy, ...
    pub reason: String,
    /// `Kind/namespace/name` of the workload.
    pub object: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub message: String,
    /// The last log lines of the failing container (filled by the agent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub logs: Vec<String>,
}

/// Why a revision is being watched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Attempt {
    /// The source published it.
    Apply,
    /// It is the last healthy revision, applied again after `failed` failed.
    Rollback { failed: String },
}

/// The soak clock: not persisted, so an agent restart never counts as soak.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Soak {
    /// All changed workloads Ready since then, with `restarts` restarts in total.
    pub since: Option<SystemTime>,
    pub restarts: u32,
    /// A changed container cannot get its image since then (it fails after
    /// [`IMAGE_GRACE`]: an archive import or a registry blip may end first).
    pub image_failing_since: Option<SystemTime>,
}

/// A rollout in flight.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Watch {
    pub revision: String,
    pub attempt: Attempt,
    pub changed: Vec<WorkloadRef>,
    pub started: SystemTime,
    /// Not Ready by then: ProgressDeadlineExceeded.
    pub deadline_at: SystemTime,
    pub auto_rollback: bool,
    #[serde(skip)]
    pub soak: Soak,
}

/// The result of one history entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    InProgress,
    Healthy,
    /// Failed and still running (auto-rollback off, or nothing to roll back to).
    Failed,
    /// Failed, and the last healthy revision was applied again.
    RolledBack,
    /// A newer revision arrived before this one was decided.
    Superseded,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::InProgress => "in-progress",
            Outcome::Healthy => "healthy",
            Outcome::Failed => "failed",
            Outcome::RolledBack => "rolled-back",
            Outcome::Superseded => "superseded",
        }
    }
}

/// One rollout in a source's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub revision: String,
    /// True for a rollback (the last healthy revision applied again).
    pub rollback: bool,
    pub applied: SystemTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<SystemTime>,
    pub result: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// What the caller must do after a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// A rollout started (event RolloutStarted).
    Started { revision: String, rollback: bool },
    /// The rollout is healthy: keep its objects as the last healthy ones.
    Healthy { revision: String, rollback: bool },
    /// The rollout failed (event RolloutFailed).
    Failed { revision: String, failure: Failure },
    /// Apply the recorded objects of `to` again, then call
    /// [`Tracker::begin_rollback`] with what that changes.
    RollBack { to: String, failed: String },
}

/// Which objects the source should contribute now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serve {
    /// The objects the source just read.
    Source,
    /// The recorded objects of this (last healthy) revision.
    Recorded(String),
}

/// One source's rollout state. Persisted as a whole by the agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tracker {
    /// The revision the source last published.
    pub applied: Option<String>,
    /// The revision whose objects run (differs from `applied` after a rollback).
    pub running: Option<String>,
    pub last_healthy: Option<String>,
    /// Revisions that failed: not applied again until a newer one appears.
    pub failed: VecDeque<String>,
    pub history: VecDeque<HistoryEntry>,
    pub watch: Option<Watch>,
}

impl Tracker {
    /// What to serve for the current state: the recorded objects of the
    /// running revision when it is not the one the source publishes.
    pub fn serve(&self) -> Serve {
        match (&self.running, &self.applied) {
            (Some(r), Some(a)) if r != a => Serve::Recorded(r.clone()),
            _ => Serve::Source,
        }
    }

    /// The source published `revision`, which changes `changed` relative to
    /// what runs now. Republishing the same revision changes nothing; a
    /// failed revision is not applied again.
    pub fn on_revision(
        mut self,
        revision: &str,
        changed: Changed,
        now: SystemTime,
        settings: &Settings,
    ) -> (Self, Vec<Effect>) {
        if self.applied.as_deref() == Some(revision) {
            return (self, Vec::new());
        }
        let mut effects = Vec::new();
        if let Some(w) = self.watch.take() {
            self.set_result(&w.revision, w.started, Outcome::Superseded, None, now);
        }
        self.applied = Some(revision.to_string());
        if self.failed.iter().any(|f| f == revision) {
            // keep running what runs (the last healthy revision, or the
            // failed one when it was only reported)
            return (self, effects);
        }
        self.running = Some(revision.to_string());
        self.push_history(revision, false, now);
        if changed.workloads.is_empty() {
            self.mark_healthy(revision, false, now, &mut effects);
            return (self, effects);
        }
        effects.push(Effect::Started {
            revision: revision.to_string(),
            rollback: false,
        });
        self.watch = Some(new_watch(revision, Attempt::Apply, changed, now, settings));
        (self, effects)
    }

    /// The rollback to `to` was applied; `changed` is what it changed.
    ///
    /// # Errors
    /// [`RolloutError::NotRollingBack`] when `to` is not the last healthy revision.
    pub fn begin_rollback(
        mut self,
        to: &str,
        failed: &str,
        changed: Changed,
        now: SystemTime,
        settings: &Settings,
    ) -> Result<(Self, Vec<Effect>), RolloutError> {
        if self.last_healthy.as_deref() != Some(to) {
            return Err(RolloutError::NotRollingBack {
                revision: to.to_string(),
            });
        }
        let mut effects = Vec::new();
        self.running = Some(to.to_string());
        self.push_history(to, true, now);
        if changed.workloads.is_empty() {
            self.mark_healthy(to, true, now, &mut effects);
            return Ok((self, effects));
        }
        effects.push(Effect::Started {
            revision: to.to_string(),
            rollback: true,
        });
        let mut w = new_watch(
            to,
            Attempt::Rollback {
                failed: failed.to_string(),
            },
            changed,
            now,
            settings,
        );
        // a rollback is watched even when the annotation turned rollback off:
        // there is nothing further to roll back to anyway
        w.auto_rollback = false;
        self.watch = Some(w);
        Ok((self, effects))
    }

    /// New observations of the rollout in flight (one per changed workload,
    /// in the order of [`Watch::changed`]).
    pub fn observe(
        mut self,
        obs: &[WorkloadObs],
        now: SystemTime,
        settings: &Settings,
    ) -> (Self, Vec<Effect>) {
        let Some(mut w) = self.watch.take() else {
            return (self, Vec::new());
        };
        let mut effects = Vec::new();
        match decide(&mut w, obs, now, settings) {
            Decision::Watching => self.watch = Some(w),
            Decision::Healthy => {
                let rollback = matches!(w.attempt, Attempt::Rollback { .. });
                self.mark_healthy(&w.revision, rollback, now, &mut effects);
            }
            Decision::Failed(failure) => {
                effects.push(Effect::Failed {
                    revision: w.revision.clone(),
                    failure: failure.clone(),
                });
                let target = self
                    .last_healthy
                    .clone()
                    .filter(|h| *h != w.revision && settings.auto_rollback && w.auto_rollback);
                let outcome = if target.is_some() {
                    Outcome::RolledBack
                } else {
                    Outcome::Failed
                };
                self.set_result(&w.revision, w.started, outcome, Some(failure), now);
                if w.attempt == Attempt::Apply {
                    self.failed.retain(|f| *f != w.revision);
                    self.failed.push_back(w.revision.clone());
                    while self.failed.len() > FAILED_LIMIT {
                        self.failed.pop_front();
                    }
                    if let Some(to) = target {
                        effects.push(Effect::RollBack {
                            to,
                            failed: w.revision.clone(),
                        });
                    }
                }
            }
        }
        (self, effects)
    }

    /// The entry of the rollout in flight, or the latest one.
    pub fn latest(&self) -> Option<&HistoryEntry> {
        self.history.back()
    }

    fn mark_healthy(
        &mut self,
        revision: &str,
        rollback: bool,
        now: SystemTime,
        effects: &mut Vec<Effect>,
    ) {
        self.last_healthy = Some(revision.to_string());
        if let Some(e) = self.history.back_mut()
            && e.revision == revision
            && e.result == Outcome::InProgress
        {
            e.result = Outcome::Healthy;
            e.decided = Some(now);
        }
        effects.push(Effect::Healthy {
            revision: revision.to_string(),
            rollback,
        });
    }

    fn push_history(&mut self, revision: &str, rollback: bool, now: SystemTime) {
        self.history.push_back(HistoryEntry {
            revision: revision.to_string(),
            rollback,
            applied: now,
            decided: None,
            result: Outcome::InProgress,
            failure: None,
        });
        while self.history.len() > HISTORY_LIMIT {
            self.history.pop_front();
        }
    }

    fn set_result(
        &mut self,
        revision: &str,
        applied: SystemTime,
        result: Outcome,
        failure: Option<Failure>,
        now: SystemTime,
    ) {
        if let Some(e) = self
            .history
            .iter_mut()
            .rev()
            .find(|e| e.revision == revision && e.applied == applied)
        {
            e.result = result;
            e.failure = failure;
            e.decided = Some(now);
        }
    }
}

fn new_watch(
    revision: &str,
    attempt: Attempt,
    changed: Changed,
    now: SystemTime,
    settings: &Settings,
) -> Watch {
    let deadline = settings
        .deadline
        .or(changed.progress_deadline)
        .unwrap_or(DEFAULT_DEADLINE);
    Watch {
        revision: revision.to_string(),
        attempt,
        changed: changed.workloads,
        started: now,
        deadline_at: now + deadline,
        auto_rollback: changed.auto_rollback,
        soak: Soak::default(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("cannot roll back to {revision}: it is not the last healthy revision")]
    NotRollingBack { revision: String },
}
