//! CronJobs on one node, planned purely (the CronJob controller's rules):
//! at each scheduled time (in the CronJob's time zone, see [`crate::cron`])
//! a Job named `<cronjob>-<scheduled time in minutes since the epoch>` is
//! created, unless `suspend`; `concurrencyPolicy` decides what happens while
//! an earlier Job still runs (Allow: run beside it; Forbid: wait, and run
//! the missed time once it finished if still within the deadline; Replace:
//! stop it first). Missed times (the agent was down) give at most one run,
//! the latest, and none when it is more than `startingDeadlineSeconds` late.
//! Finished Jobs beyond `successfulJobsHistoryLimit` (3) and
//! `failedJobsHistoryLimit` (1) are removed, oldest first.
//!
//! The time source is the `now` handed in; the caller persists
//! [`CronState`] so a restart neither re-runs nor loses a scheduled time.

use std::time::{Duration, SystemTime};

use berth_spec::cron::Schedule;
use berth_spec::k8s_openapi::api::batch::v1::CronJobSpec;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// What is persisted of one CronJob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CronState {
    /// When berth first saw it (its creationTimestamp): no run before.
    pub created: SystemTime,
    pub uid: String,
    pub last_schedule: Option<SystemTime>,
    pub last_successful: Option<SystemTime>,
}

/// One of the CronJob's Jobs as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobObs {
    pub name: String,
    /// None while it runs; Some(true) Complete, Some(false) Failed.
    pub succeeded: Option<bool>,
    /// When it finished (or was created, while it runs).
    pub at: SystemTime,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CronPlan {
    /// A Job to create: its name and scheduled time.
    pub create: Option<(String, SystemTime)>,
    /// Jobs to remove (Replace, history limits).
    pub delete: Vec<String>,
    pub last_schedule: Option<SystemTime>,
    pub last_successful: Option<SystemTime>,
    /// When to look again.
    pub wake: Option<SystemTime>,
    /// A scheduled time not run: (reason, message) for an event.
    pub skipped: Option<(&'static str, String)>,
}

/// The name of the Job for the time `t`.
pub fn job_name(cronjob: &str, t: SystemTime) -> String {
    let mins = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        / 60;
    format!("{cronjob}-{mins}")
}

fn ts(t: SystemTime) -> Timestamp {
    Timestamp::try_from(t).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Plan one step for CronJob `name`.
pub fn plan(
    name: &str,
    spec: &CronJobSpec,
    schedule: &Schedule,
    jobs: &[JobObs],
    state: &CronState,
    now: SystemTime,
) -> CronPlan {
    let mut out = CronPlan {
        last_schedule: state.last_schedule,
        last_successful: state.last_successful,
        ..Default::default()
    };
    // history: newest kept, oldest removed
    for (ok, limit) in [
        (true, spec.successful_jobs_history_limit.unwrap_or(3)),
        (false, spec.failed_jobs_history_limit.unwrap_or(1)),
    ] {
        let mut done: Vec<&JobObs> = jobs.iter().filter(|j| j.succeeded == Some(ok)).collect();
        done.sort_by_key(|j| std::cmp::Reverse(j.at));
        out.delete.extend(
            done.iter()
                .skip(limit.max(0) as usize)
                .map(|j| j.name.clone()),
        );
    }
    if let Some(last_ok) = jobs
        .iter()
        .filter(|j| j.succeeded == Some(true))
        .map(|j| j.at)
        .max()
    {
        out.last_successful = Some(out.last_successful.map_or(last_ok, |t| t.max(last_ok)));
    }
    out.wake = schedule.next_after(ts(now)).map(SystemTime::from);
    if spec.suspend == Some(true) {
        return out;
    }
    let mut earliest = state.last_schedule.unwrap_or(state.created);
    let deadline = spec
        .starting_deadline_seconds
        .map(|d| Duration::from_secs(d.max(0) as u64));
    if let Some(d) = deadline
        && let Some(cut) = now.checked_sub(d)
    {
        earliest = earliest.max(cut);
    }
    // a scheduled time exactly at `earliest` already ran (or is the creation time)
    let (latest, _) = schedule.latest_between(ts(earliest), ts(now));
    let Some(latest) = latest.map(SystemTime::from) else {
        if let Some(last) = state.last_schedule
            && deadline.is_some()
        {
            // missed times older than the deadline: reported once per time
            let (missed, _) = schedule.latest_between(ts(last), ts(earliest.min(now)));
            if let Some(m) = missed.map(SystemTime::from) {
                out.last_schedule = Some(m);
                out.skipped = Some((
                    "MissSchedule",
                    format!(
                        "missed the scheduled time {} by more than startingDeadlineSeconds",
                        Timestamp::try_from(m)
                            .map(|t| t.to_string())
                            .unwrap_or_default()
                    ),
                ));
            }
        }
        return out;
    };
    let job = job_name(name, latest);
    if jobs.iter().any(|j| j.name == job) {
        out.last_schedule = Some(latest);
        return out;
    }
    let active: Vec<&JobObs> = jobs.iter().filter(|j| j.succeeded.is_none()).collect();
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            // the time stays due: it runs once the active Job finished
            // (within the deadline), as the CronJob controller does
            out.skipped = Some((
                "JobAlreadyActive",
                format!(
                    "Not starting job because prior execution is running and concurrency policy is Forbid (scheduled {})",
                    ts(latest)
                ),
            ));
            return out;
        }
        Some("Replace") => out.delete.extend(active.iter().map(|j| j.name.clone())),
        _ => {}
    }
    out.create = Some((job, latest));
    out.last_schedule = Some(latest);
    out
}

#[cfg(test)]
mod tests;
