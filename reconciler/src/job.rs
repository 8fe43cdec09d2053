//! Jobs on one node, planned purely: run pods until `completions` of them
//! succeeded (default 1), at most `parallelism` at a time (default 1); fail
//! the Job after more than `backoffLimit` failed pods (default 6), or when
//! it ran longer than `activeDeadlineSeconds`; failed pods are replaced after
//! an exponential back-off (10 s doubling, at most 6 min) as the Job
//! controller does. A finished Job's pods are removed `ttlSecondsAfterFinished`
//! after it finished; the Job stays finished (it is not run again while its
//! manifest stays the same).
//!
//! With `restartPolicy: OnFailure` a failing container restarts in its pod
//! (the pod's restart policy); its restarts count as failures here.

use std::time::{Duration, SystemTime};

use berth_spec::k8s_openapi::api::batch::v1::JobSpec;

/// A pod of the Job as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObs {
    pub name: String,
    pub phase: Phase,
    /// Container restarts (OnFailure) count as failures.
    pub restarts: u32,
    pub terminating: bool,
    /// When it finished (Succeeded or Failed).
    pub finished: Option<SystemTime>,
    /// `Indexed` completion mode: the pod's index.
    pub index: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

/// How the Job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    Complete,
    /// Reason (`BackoffLimitExceeded`, `DeadlineExceeded`) and message.
    Failed(&'static str, String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// New pods to start now; for `Indexed` Jobs, their indexes.
    pub create: Vec<Option<u32>>,
    /// Pods to delete (active pods of a finished Job, or all after the TTL).
    pub delete: Vec<String>,
    /// The Job finished in this step or before.
    pub finished: Option<Finished>,
    /// When to look again (back-off, deadline, TTL), if something is due later.
    pub wake: Option<SystemTime>,
    pub active: u32,
    pub succeeded: u32,
    pub failed: u32,
}

const BACKOFF_BASE: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(360);

/// Plan one step. `started`: when the Job was first seen running;
/// `done`: how it finished and when, if it did before (persisted by the caller).
pub fn plan(
    spec: &JobSpec,
    pods: &[PodObs],
    started: SystemTime,
    done: Option<&(Finished, SystemTime)>,
    now: SystemTime,
) -> Plan {
    let completions = spec.completions.unwrap_or(1).max(0) as u32;
    let parallelism = spec.parallelism.unwrap_or(1).max(0) as u32;
    let backoff_limit = spec.backoff_limit.unwrap_or(6).max(0) as u32;
    let indexed = spec.completion_mode.as_deref() == Some("Indexed");
    let live: Vec<&PodObs> = pods.iter().filter(|p| !p.terminating).collect();
    let active: Vec<&&PodObs> = live
        .iter()
        .filter(|p| matches!(p.phase, Phase::Pending | Phase::Running))
        .collect();
    let succeeded_pods: Vec<&&PodObs> = live
        .iter()
        .filter(|p| p.phase == Phase::Succeeded)
        .collect();
    let succeeded = if indexed {
        let mut idx: Vec<u32> = succeeded_pods.iter().filter_map(|p| p.index).collect();
        idx.sort();
        idx.dedup();
        idx.len() as u32
    } else {
        succeeded_pods.len() as u32
    };
    let failed = pods.iter().filter(|p| p.phase == Phase::Failed).count() as u32
        + pods.iter().map(|p| p.restarts).sum::<u32>();
    let mut out = Plan {
        active: active.len() as u32,
        succeeded,
        failed,
        ..Default::default()
    };
    let finish = |out: &mut Plan, f: Finished, at: SystemTime| {
        out.delete.extend(active.iter().map(|p| p.name.clone()));
        if let Some(ttl) = spec.ttl_seconds_after_finished {
            let due = at + Duration::from_secs(ttl.max(0) as u64);
            if now >= due {
                out.delete = pods
                    .iter()
                    .filter(|p| !p.terminating)
                    .map(|p| p.name.clone())
                    .collect();
            } else {
                out.wake = Some(due);
            }
        }
        out.finished = Some(f);
    };
    if let Some((f, at)) = done {
        finish(&mut out, f.clone(), *at);
        return out;
    }
    if succeeded >= completions {
        finish(&mut out, Finished::Complete, now);
        return out;
    }
    if failed > backoff_limit {
        let msg = format!("Job has reached the specified backoff limit ({backoff_limit})");
        finish(&mut out, Finished::Failed("BackoffLimitExceeded", msg), now);
        return out;
    }
    if let Some(d) = spec.active_deadline_seconds {
        let due = started + Duration::from_secs(d.max(0) as u64);
        if now >= due {
            let msg = "Job was active longer than specified deadline".to_string();
            finish(&mut out, Finished::Failed("DeadlineExceeded", msg), now);
            return out;
        }
        out.wake = Some(due);
    }
    if spec.suspend == Some(true) {
        out.delete.extend(active.iter().map(|p| p.name.clone()));
        return out;
    }
    // back-off after failed pods: 10 s, 20 s, 40 s ... from the last failure
    let failed_pods = pods.iter().filter(|p| p.phase == Phase::Failed).count() as u32;
    if failed_pods > 0
        && let Some(last) = pods
            .iter()
            .filter(|p| p.phase == Phase::Failed)
            .filter_map(|p| p.finished)
            .max()
    {
        let delay = BACKOFF_BASE
            .saturating_mul(1u32 << (failed_pods - 1).min(10))
            .min(BACKOFF_MAX);
        if now < last + delay {
            out.wake = Some(out.wake.map_or(last + delay, |w| w.min(last + delay)));
            return out;
        }
    }
    let remaining = completions.saturating_sub(succeeded);
    let room = parallelism.saturating_sub(active.len() as u32);
    if indexed {
        let busy: Vec<u32> = active
            .iter()
            .chain(succeeded_pods.iter())
            .filter_map(|p| p.index)
            .collect();
        out.create = (0..completions)
            .filter(|i| !busy.contains(i))
            .take(room as usize)
            .map(Some)
            .collect();
    } else {
        let n = room.min(remaining.saturating_sub(active.len() as u32));
        out.create = vec![None; n as usize];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn at(s: u64) -> SystemTime {
        T0 + Duration::from_secs(s)
    }

    fn spec(completions: i32, parallelism: i32) -> JobSpec {
        JobSpec {
            completions: Some(completions),
            parallelism: Some(parallelism),
            ..Default::default()
        }
    }

    fn pod(name: &str, phase: Phase, finished: Option<u64>) -> PodObs {
        PodObs {
            name: name.into(),
            phase,
            restarts: 0,
            terminating: false,
            finished: finished.map(at),
            index: None,
        }
    }

    #[test]
    fn completions_and_parallelism() {
        // (completions, parallelism, pods, creates, finished)
        type Case = (i32, i32, Vec<PodObs>, usize, Option<Finished>);
        let cases: Vec<Case> = vec![
            (1, 1, vec![], 1, None),
            (5, 2, vec![], 2, None),
            (5, 2, vec![pod("a", Phase::Running, None)], 1, None),
            (2, 4, vec![pod("a", Phase::Succeeded, Some(5))], 1, None),
            (
                2,
                2,
                vec![
                    pod("a", Phase::Succeeded, Some(5)),
                    pod("b", Phase::Succeeded, Some(6)),
                ],
                0,
                Some(Finished::Complete),
            ),
            (0, 1, vec![], 0, Some(Finished::Complete)),
        ];
        for (i, (c, p, pods, create, fin)) in cases.into_iter().enumerate() {
            let plan = plan(&spec(c, p), &pods, at(0), None, at(10));
            assert_eq!(plan.create.len(), create, "case {i}");
            assert_eq!(plan.finished, fin, "case {i}");
        }
    }

    #[test]
    fn backoff_limit_and_exponential_delay() {
        let mut s = spec(1, 1);
        s.backoff_limit = Some(2);
        let one = [pod("a", Phase::Failed, Some(100))];
        let p = plan(&s, &one, at(0), None, at(105));
        assert!(p.create.is_empty(), "10 s back-off after the first failure");
        assert_eq!(p.wake, Some(at(110)));
        assert_eq!(plan(&s, &one, at(0), None, at(110)).create.len(), 1);
        let two = [
            pod("a", Phase::Failed, Some(100)),
            pod("b", Phase::Failed, Some(120)),
        ];
        assert_eq!(plan(&s, &two, at(0), None, at(135)).wake, Some(at(140)));
        let three = [
            pod("a", Phase::Failed, Some(100)),
            pod("b", Phase::Failed, Some(120)),
            pod("c", Phase::Failed, Some(150)),
        ];
        let p = plan(&s, &three, at(0), None, at(151));
        assert!(matches!(
            p.finished,
            Some(Finished::Failed("BackoffLimitExceeded", _))
        ));
        // OnFailure: container restarts count
        let mut restarting = pod("a", Phase::Running, None);
        restarting.restarts = 3;
        let p = plan(&s, &[restarting], at(0), None, at(151));
        assert!(matches!(p.finished, Some(Finished::Failed(..))));
        assert_eq!(p.delete, ["a"], "the active pod of a failed Job is stopped");
    }

    #[test]
    fn active_deadline_and_ttl() {
        let mut s = spec(1, 1);
        s.active_deadline_seconds = Some(30);
        let running = [pod("a", Phase::Running, None)];
        let p = plan(&s, &running, at(0), None, at(10));
        assert_eq!(p.wake, Some(at(30)));
        assert!(p.finished.is_none());
        let p = plan(&s, &running, at(0), None, at(30));
        assert!(matches!(
            p.finished,
            Some(Finished::Failed("DeadlineExceeded", _))
        ));
        assert_eq!(p.delete, ["a"]);
        // finished at 50 with a TTL of 100: pods go at 150, the Job stays done
        s.ttl_seconds_after_finished = Some(100);
        let done = (Finished::Complete, at(50));
        let ok = [pod("a", Phase::Succeeded, Some(50))];
        let p = plan(&s, &ok, at(0), Some(&done), at(60));
        assert!(p.delete.is_empty());
        assert_eq!(p.wake, Some(at(150)));
        let p = plan(&s, &ok, at(0), Some(&done), at(150));
        assert_eq!(p.delete, ["a"]);
        let p = plan(&s, &[], at(0), Some(&done), at(200));
        assert!(p.create.is_empty(), "a finished Job is not run again");
        assert_eq!(p.finished, Some(Finished::Complete));
    }

    #[test]
    fn indexed_jobs_run_each_index_once() {
        let mut s = spec(3, 2);
        s.completion_mode = Some("Indexed".into());
        let p = plan(&s, &[], at(0), None, at(1));
        assert_eq!(p.create, [Some(0), Some(1)]);
        let mut a = pod("a", Phase::Succeeded, Some(2));
        a.index = Some(0);
        let mut b = pod("b", Phase::Running, None);
        b.index = Some(1);
        let p = plan(&s, &[a, b], at(0), None, at(3));
        assert_eq!(p.create, [Some(2)]);
    }
}
