//! Kubernetes-shaped pod and container status, built from the worker's view.

use std::time::SystemTime;

use berth_spec::k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, PodCondition, PodIP, PodStatus,
};
use berth_spec::k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use berth_spec::k8s_openapi::jiff::Timestamp;

pub fn time(t: SystemTime) -> Time {
    let nanos = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0);
    Time(Timestamp::from_nanosecond(nanos).unwrap_or(Timestamp::UNIX_EPOCH))
}

/// The inverse of [`time`].
pub fn system_time(t: &Time) -> SystemTime {
    let nanos = t.0.as_nanosecond();
    if nanos <= 0 {
        return SystemTime::UNIX_EPOCH;
    }
    SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(nanos as u64)
}

/// A container's state as the worker tracks it (G8).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CState {
    /// Not running: `reason` is ContainerCreating, PodInitializing, ErrImagePull,
    /// ImagePullBackOff, CrashLoopBackOff, CreateContainerError, ...
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: SystemTime,
    },
    Terminated(Terminated),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminated {
    pub exit_code: i32,
    pub signal: Option<i32>,
    /// Completed, Error, OOMKilled, ContainerCannotRun...
    pub reason: String,
    pub message: String,
    pub started_at: Option<SystemTime>,
    pub finished_at: SystemTime,
    pub container_id: String,
}

impl CState {
    pub fn waiting(reason: &str, message: impl Into<String>) -> Self {
        CState::Waiting {
            reason: reason.to_string(),
            message: message.into(),
        }
    }

    pub fn to_k8s(&self) -> ContainerState {
        match self {
            CState::Waiting { reason, message } => ContainerState {
                waiting: Some(ContainerStateWaiting {
                    reason: Some(reason.clone()),
                    message: (!message.is_empty()).then(|| message.clone()),
                }),
                ..Default::default()
            },
            CState::Running { started_at } => ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(time(*started_at)),
                }),
                ..Default::default()
            },
            CState::Terminated(t) => ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: t.exit_code,
                    signal: t.signal,
                    reason: Some(t.reason.clone()),
                    message: (!t.message.is_empty()).then(|| t.message.clone()),
                    started_at: t.started_at.map(time),
                    finished_at: Some(time(t.finished_at)),
                    container_id: Some(format!("berth://{}", t.container_id)),
                }),
                ..Default::default()
            },
        }
    }
}

/// Kubernetes' reason for an exit.
pub fn exit_reason(exit_code: i32, oom: bool) -> &'static str {
    if oom {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

/// Everything needed to show one container.
#[derive(Debug, Clone)]
pub struct ContainerView {
    pub name: String,
    pub image: String,
    pub image_id: String,
    pub container_id: Option<String>,
    pub state: CState,
    pub last_state: Option<CState>,
    pub ready: bool,
    pub started: bool,
    pub restart_count: i32,
    /// A native sidecar (init container with `restartPolicy: Always`): its
    /// readiness counts toward the pod's.
    pub sidecar: bool,
}

impl ContainerView {
    /// Ran at least once (an exit after a run, or restarts): a container
    /// that never started (its start failed, e.g. `RunContainerError`)
    /// keeps the pod `Pending`.
    pub fn ran_once(&self) -> bool {
        let ran = |s: &CState| match s {
            CState::Terminated(t) => t.started_at.is_some(),
            CState::Running { .. } => true,
            CState::Waiting { .. } => false,
        };
        self.restart_count > 0 || ran(&self.state) || self.last_state.as_ref().is_some_and(ran)
    }

    pub fn to_k8s(&self) -> ContainerStatus {
        ContainerStatus {
            name: self.name.clone(),
            image: self.image.clone(),
            image_id: self.image_id.clone(),
            container_id: self.container_id.as_ref().map(|id| format!("berth://{id}")),
            state: Some(self.state.to_k8s()),
            last_state: Some(
                self.last_state
                    .as_ref()
                    .map(CState::to_k8s)
                    .unwrap_or_default(),
            ),
            ready: self.ready,
            started: Some(self.started),
            restart_count: self.restart_count,
            ..Default::default()
        }
    }
}

/// Pod phase from Kubernetes' rules (kubelet `getPhase`).
///
/// `will_restart(c)` tells whether the restart policy restarts a terminated container.
pub fn phase(
    init_done: bool,
    init_failed: bool,
    containers: &[ContainerView],
    restart_never: bool,
    restart_on_failure: bool,
) -> &'static str {
    if init_failed {
        return "Failed";
    }
    if !init_done {
        return "Pending";
    }
    let mut running = 0;
    let mut waiting_first = 0;
    let mut stopped = 0;
    let mut succeeded = 0;
    for c in containers {
        match &c.state {
            CState::Running { .. } => running += 1,
            CState::Terminated(t) => {
                stopped += 1;
                if t.exit_code == 0 {
                    succeeded += 1;
                }
            }
            CState::Waiting { .. } => {
                if c.ran_once() {
                    // restarting after a run
                    running += 1;
                } else {
                    waiting_first += 1;
                }
            }
        }
    }
    if waiting_first > 0 {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped == containers.len() && !containers.is_empty() {
        if restart_never || (restart_on_failure && succeeded == stopped) {
            return if succeeded == stopped {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        return "Running";
    }
    "Pending"
}

/// A condition with its last transition time kept while the status is unchanged.
pub fn condition(
    type_: &str,
    ok: bool,
    prev: &[PodCondition],
    now: SystemTime,
    reason: Option<&str>,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = prev
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| time(now));
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        last_transition_time: Some(since),
        reason: if ok { None } else { reason.map(str::to_string) },
        ..Default::default()
    }
}

/// Assemble the whole PodStatus.
#[allow(clippy::too_many_arguments)]
pub fn pod_status(
    prev: Option<&PodStatus>,
    phase: &str,
    init: &[ContainerView],
    containers: &[ContainerView],
    init_done: bool,
    pod_ip: Option<std::net::Ipv4Addr>,
    host_ip: Option<std::net::Ipv4Addr>,
    start_time: SystemTime,
    now: SystemTime,
    message: Option<(String, String)>,
) -> PodStatus {
    let prev_conds = prev.and_then(|p| p.conditions.clone()).unwrap_or_default();
    let all_ready = !containers.is_empty()
        && containers.iter().all(|c| c.ready)
        && init.iter().filter(|c| c.sidecar).all(|c| c.ready);
    let not_ready_reason = (!all_ready).then_some("ContainersNotReady");
    let conditions = vec![
        condition("PodScheduled", true, &prev_conds, now, None),
        condition(
            "Initialized",
            init_done,
            &prev_conds,
            now,
            Some("ContainersNotInitialized"),
        ),
        condition(
            "ContainersReady",
            all_ready,
            &prev_conds,
            now,
            not_ready_reason,
        ),
        condition("Ready", all_ready, &prev_conds, now, not_ready_reason),
    ];
    let (reason, msg) = message.unzip();
    PodStatus {
        phase: Some(phase.to_string()),
        conditions: Some(conditions),
        pod_ip: pod_ip.map(|i| i.to_string()),
        pod_ips: pod_ip.map(|i| vec![PodIP { ip: i.to_string() }]),
        host_ip: host_ip.map(|i| i.to_string()),
        start_time: Some(time(start_time)),
        container_statuses: Some(containers.iter().map(ContainerView::to_k8s).collect()),
        init_container_statuses: (!init.is_empty())
            .then(|| init.iter().map(ContainerView::to_k8s).collect()),
        qos_class: None,
        reason,
        message: msg,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: CState, restarts: i32) -> ContainerView {
        ContainerView {
            name: "c".into(),
            image: "i".into(),
            image_id: String::new(),
            container_id: None,
            state,
            last_state: None,
            ready: false,
            started: false,
            restart_count: restarts,
            sidecar: false,
        }
    }

    fn term(code: i32) -> CState {
        CState::Terminated(Terminated {
            exit_code: code,
            signal: None,
            reason: exit_reason(code, false).into(),
            message: String::new(),
            started_at: None,
            finished_at: SystemTime::UNIX_EPOCH,
            container_id: "x".into(),
        })
    }

    #[test]
    fn phases() {
        let running = view(
            CState::Running {
                started_at: SystemTime::UNIX_EPOCH,
            },
            0,
        );
        let creating = view(CState::waiting("ContainerCreating", ""), 0);
        let backoff = view(CState::waiting("CrashLoopBackOff", ""), 2);
        assert_eq!(
            phase(false, false, std::slice::from_ref(&running), false, false),
            "Pending"
        );
        assert_eq!(
            phase(true, false, std::slice::from_ref(&running), false, false),
            "Running"
        );
        assert_eq!(
            phase(
                true,
                false,
                &[running.clone(), creating.clone()],
                false,
                false
            ),
            "Pending"
        );
        assert_eq!(phase(true, false, &[backoff], false, false), "Running");
        assert_eq!(
            phase(true, false, &[view(term(0), 0)], true, false),
            "Succeeded"
        );
        assert_eq!(
            phase(true, false, &[view(term(1), 0)], true, false),
            "Failed"
        );
        assert_eq!(
            phase(true, false, &[view(term(0), 0)], false, true),
            "Succeeded"
        );
        assert_eq!(
            phase(
                true,
                false,
                &[view(term(0), 0), view(term(2), 0)],
                true,
                false
            ),
            "Failed"
        );
        assert_eq!(phase(true, true, &[], false, false), "Failed");
    }

    // Regression (issue 15): a container whose start failed before anything
    // ran (RunContainerError, counted as a failed run with a lastState) kept
    // the pod Running; Kubernetes keeps it Pending until it started once.
    #[test]
    fn never_started_is_pending() {
        let mut failed = view(CState::waiting("RunContainerError", "no such file"), 0);
        failed.last_state = Some(term(128));
        assert!(!failed.ran_once());
        assert_eq!(
            phase(true, false, std::slice::from_ref(&failed), false, false),
            "Pending"
        );
        let mut crashed = view(CState::waiting("CrashLoopBackOff", ""), 0);
        crashed.last_state = Some(CState::Terminated(Terminated {
            started_at: Some(SystemTime::UNIX_EPOCH),
            ..match term(1) {
                CState::Terminated(t) => t,
                _ => unreachable!(),
            }
        }));
        assert!(crashed.ran_once());
        assert_eq!(phase(true, false, &[crashed], false, false), "Running");
    }

    #[test]
    fn sidecars_count_toward_readiness() {
        let mut main = view(
            CState::Running {
                started_at: SystemTime::UNIX_EPOCH,
            },
            0,
        );
        main.ready = true;
        let mut side = main.clone();
        side.sidecar = true;
        side.ready = false;
        let ready = |init: &[ContainerView]| {
            let st = pod_status(
                None,
                "Running",
                init,
                std::slice::from_ref(&main),
                true,
                None,
                None,
                SystemTime::UNIX_EPOCH,
                SystemTime::UNIX_EPOCH,
                None,
            );
            st.conditions
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        };
        assert!(!ready(std::slice::from_ref(&side)));
        side.ready = true;
        assert!(ready(std::slice::from_ref(&side)));
    }

    #[test]
    fn reasons() {
        assert_eq!(exit_reason(0, false), "Completed");
        assert_eq!(exit_reason(1, false), "Error");
        assert_eq!(exit_reason(137, true), "OOMKilled");
    }

    #[test]
    fn condition_keeps_transition_time() {
        let t0 = SystemTime::UNIX_EPOCH;
        let t1 = t0 + std::time::Duration::from_secs(100);
        let c0 = condition("Ready", true, &[], t0, None);
        let c1 = condition("Ready", true, std::slice::from_ref(&c0), t1, None);
        assert_eq!(c0.last_transition_time, c1.last_transition_time);
        let c2 = condition("Ready", false, &[c1], t1, Some("ContainersNotReady"));
        assert_eq!(c2.last_transition_time, Some(time(t1)));
    }
}
