//! The health decision of one rollout: observations + clock -> decision.

use std::time::SystemTime;

use super::{Failure, IMAGE_GRACE, PodObs, Settings, Soak, Watch, WorkloadObs, WorkloadRef};

/// Waiting reasons that mean the image will not come without a change.
const IMAGE_FAILURES: [&str; 4] = [
    "ImagePullBackOff",
    "ErrImageNeverPull",
    "InvalidImageName",
    "ErrImageInspect",
];

/// How one changed workload stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Not all of its pods are Ready yet.
    Progressing {
        pod: Option<String>,
        container: Option<String>,
    },
    /// All of its pods are Ready (or completed).
    Ready {
        restarts: u32,
    },
    Failed(Failure),
}

/// What the rollout is, after these observations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Watching,
    Healthy,
    Failed(Failure),
}

/// Decide the rollout `w` from one observation per changed workload (same
/// order as `w.changed`; a missing one counts as no pods yet). Updates the
/// soak clock in `w`.
pub fn decide(w: &mut Watch, obs: &[WorkloadObs], now: SystemTime, s: &Settings) -> Decision {
    let mut restarts = 0;
    let mut waiting: Option<(String, Option<String>, Option<String>)> = None;
    let mut image_failure = None;
    let none = WorkloadObs::Pods(Vec::new());
    for (i, wl) in w.changed.iter().enumerate() {
        match evaluate(wl, obs.get(i).unwrap_or(&none), s.crash_loop_restarts) {
            Verdict::Failed(f) if IMAGE_FAILURES.contains(&f.reason.as_str()) => {
                if image_failure.is_none() {
                    waiting =
                        waiting.or(Some((f.object.clone(), f.pod.clone(), f.container.clone())));
                    image_failure = Some(f);
                }
            }
            Verdict::Failed(f) => return Decision::Failed(f),
            Verdict::Ready { restarts: r } => restarts += r,
            Verdict::Progressing { pod, container } => {
                if waiting.is_none() {
                    waiting = Some((wl.object(), pod, container));
                }
            }
        }
    }
    match image_failure {
        Some(f) => {
            let since = *w.soak.image_failing_since.get_or_insert(now);
            if now.duration_since(since).unwrap_or_default() >= IMAGE_GRACE {
                return Decision::Failed(f);
            }
        }
        None => w.soak.image_failing_since = None,
    }
    if let Some((object, pod, container)) = waiting {
        w.soak = Soak {
            image_failing_since: w.soak.image_failing_since,
            ..Soak::default()
        };
        if now >= w.deadline_at {
            let secs = w
                .deadline_at
                .duration_since(w.started)
                .unwrap_or_default()
                .as_secs();
            return Decision::Failed(Failure {
                reason: "ProgressDeadlineExceeded".into(),
                message: format!("{object} did not become ready within {secs}s"),
                object,
                pod,
                container,
                ..Default::default()
            });
        }
        return Decision::Watching;
    }
    match w.soak.since {
        Some(since) if w.soak.restarts == restarts => {
            if now.duration_since(since).unwrap_or_default() >= s.soak {
                Decision::Healthy
            } else {
                Decision::Watching
            }
        }
        _ => {
            // (re)start the soak: first Ready, or a restart since
            w.soak = Soak {
                since: Some(now),
                restarts,
                image_failing_since: None,
            };
            if s.soak.is_zero() {
                Decision::Healthy
            } else {
                Decision::Watching
            }
        }
    }
}

/// How `wl` stands given its pods (`crash_loop`: restarts that make a crash loop).
pub fn evaluate(wl: &WorkloadRef, obs: &WorkloadObs, crash_loop: u32) -> Verdict {
    let pods = match obs {
        WorkloadObs::NotHere => return Verdict::Ready { restarts: 0 },
        WorkloadObs::Pods(p) => p,
    };
    for p in pods {
        if let Some(f) = pod_failure(wl, p, crash_loop) {
            return Verdict::Failed(f);
        }
    }
    let done = |p: &&PodObs| p.ready || p.phase.as_deref() == Some("Succeeded");
    if pods.iter().filter(done).count() >= wl.expected() && pods.iter().all(|p| done(&p)) {
        return Verdict::Ready {
            restarts: pods
                .iter()
                .flat_map(|p| &p.containers)
                .map(|c| c.restarts)
                .sum(),
        };
    }
    let pod = pods.iter().find(|p| !done(p));
    Verdict::Progressing {
        pod: pod.map(|p| p.name.clone()),
        container: pod.and_then(|p| {
            p.containers
                .iter()
                .find(|c| !c.ready)
                .map(|c| c.name.clone())
        }),
    }
}

fn pod_failure(wl: &WorkloadRef, p: &PodObs, crash_loop: u32) -> Option<Failure> {
    let fail = |reason: &str, c: Option<&super::ContainerObs>, message: String| Failure {
        reason: reason.to_string(),
        object: wl.object(),
        pod: Some(p.name.clone()),
        container: c.map(|c| c.name.clone()),
        exit_code: c.and_then(|c| c.exit_code),
        message,
        logs: Vec::new(),
    };
    for c in &p.containers {
        if let Some(r) = c.waiting_reason.as_deref()
            && IMAGE_FAILURES.contains(&r)
        {
            return Some(fail(
                r,
                Some(c),
                format!("container {} cannot get its image ({r})", c.name),
            ));
        }
        if crash_loop > 0 && c.restarts >= crash_loop {
            return Some(fail(
                "CrashLoopBackOff",
                Some(c),
                format!(
                    "container {} restarted {} times (last exit code {})",
                    c.name,
                    c.restarts,
                    c.exit_code
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "unknown".into())
                ),
            ));
        }
    }
    if p.liveness_failed {
        let c = p.containers.iter().find(|c| !c.ready);
        return Some(fail(
            "Unhealthy",
            c,
            format!("pod {} failed its liveness probe", p.name),
        ));
    }
    if p.phase.as_deref() == Some("Failed") {
        let c = p
            .containers
            .iter()
            .find(|c| c.exit_code.is_some_and(|e| e != 0));
        return Some(fail("PodFailed", c, format!("pod {} failed", p.name)));
    }
    None
}
