//! The pure per-pod planner (kubelet's `computePodActions`, in small).
//!
//! Each container's state is one [`CtrState`]; the pod's init containers are
//! a phase of the pod ([`init_phase`]). [`plan_pod`] says which containers to
//! start now, [`next_wake`] when to look again; the `on_*` functions are the
//! transitions a runtime report (an exit, a failed start, a probe result)
//! makes. Nothing here awaits, reads a clock or touches the host: the worker
//! passes `now` in and executes the [`PodAction`]s through the traits.
//!
//! ```text
//! Waiting --start--> Starting --run ok--> Running --exit--> BackingOff --until--> Starting
//!    ^                  |                    |                                  (restart policy)
//!    +--retry_at--------+ pull/config/run    +--exit, no restart--> Terminated
//!                         error
//! ```

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::error::{MIN_RETRY, PodError, Reason};
use super::status::{self, CState, Terminated};
use crate::backoff::ResetAfter;
use crate::probe::ProbeKind;
use crate::traits::{ContainerState, REASON_STATUS_UNKNOWN};

pub mod hooks;
#[cfg(test)]
mod sidecar_tests;
#[cfg(test)]
mod tests;

/// The pod's `restartPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    /// From the spec's field (validated upstream; anything else is `Always`, the default).
    pub fn from_spec(policy: Option<&str>) -> Self {
        match policy {
            Some("Never") => RestartPolicy::Never,
            Some("OnFailure") => RestartPolicy::OnFailure,
            _ => RestartPolicy::Always,
        }
    }

    /// Whether a container that ended with `exit_code` is started again.
    /// Init containers run to success: `Always` restarts them only on failure.
    pub fn restarts(self, init: bool, exit_code: i32) -> bool {
        match self {
            RestartPolicy::Never => false,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Always => !init || exit_code != 0,
        }
    }
}

/// One container of the pod: an init container (`init`) or a main one, by
/// its index in the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CtrRef {
    pub init: bool,
    pub index: usize,
}

impl CtrRef {
    pub fn init(index: usize) -> Self {
        Self { init: true, index }
    }

    pub fn main(index: usize) -> Self {
        Self { init: false, index }
    }
}

/// A container's state as the worker tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CtrState {
    /// Not running and not started yet: before its first start, or after a
    /// start that failed before anything ran (image, configuration, runtime),
    /// tried again at `retry_at` (`None`: as soon as the pod allows).
    Waiting {
        reason: Reason,
        message: String,
        retry_at: Option<Instant>,
    },
    /// The worker is starting it (image, configuration, runtime).
    Starting,
    Running {
        since: SystemTime,
        ready: bool,
        started: bool,
    },
    /// Exited; the restart policy starts it again at `until`.
    BackingOff {
        until: Instant,
        delay: Duration,
        last_exit: Terminated,
    },
    /// Exited and stays so (an init container that succeeded, or a
    /// container its restart policy does not restart).
    Terminated(Terminated),
}

impl AsRef<CtrState> for CtrState {
    fn as_ref(&self) -> &CtrState {
        self
    }
}

impl CtrState {
    /// Before its first start.
    pub fn initial(init: bool) -> Self {
        CtrState::Waiting {
            reason: if init {
                Reason::PodInitializing
            } else {
                Reason::ContainerCreating
            },
            message: String::new(),
            retry_at: None,
        }
    }

    pub fn is_running(&self) -> bool {
        matches!(self, CtrState::Running { .. })
    }

    /// Ended for good.
    pub fn is_done(&self) -> bool {
        matches!(self, CtrState::Terminated(_))
    }

    pub fn ready(&self) -> bool {
        matches!(self, CtrState::Running { ready: true, .. })
    }

    pub fn started(&self) -> bool {
        matches!(self, CtrState::Running { started: true, .. })
    }

    /// Running since, when running.
    pub fn since(&self) -> Option<SystemTime> {
        match self {
            CtrState::Running { since, .. } => Some(*since),
            _ => None,
        }
    }

    /// Not (re)started before this instant.
    pub fn not_before(&self) -> Option<Instant> {
        match self {
            CtrState::Waiting { retry_at, .. } => *retry_at,
            CtrState::BackingOff { until, .. } => Some(*until),
            _ => None,
        }
    }

    /// May be started at `now`.
    fn startable(&self, now: Instant) -> bool {
        match self {
            CtrState::Waiting { .. } | CtrState::BackingOff { .. } => {
                self.not_before().is_none_or(|t| t <= now)
            }
            CtrState::Starting | CtrState::Running { .. } | CtrState::Terminated(_) => false,
        }
    }

    /// The Kubernetes-shaped state shown in the pod's status.
    pub fn view(&self, init: bool, container: &str, pod: &str) -> CState {
        match self {
            CtrState::Waiting {
                reason, message, ..
            } => CState::waiting(reason.as_str(), message.clone()),
            CtrState::Starting => CState::waiting(CtrState::initial(init).reason_str(), ""),
            CtrState::Running { since, .. } => CState::Running { started_at: *since },
            // restarted at once: shown as the exit until the new start
            CtrState::BackingOff {
                delay, last_exit, ..
            } if delay.is_zero() => CState::Terminated(last_exit.clone()),
            CtrState::BackingOff { delay, .. } => CState::waiting(
                Reason::CrashLoopBackOff.as_str(),
                format!(
                    "back-off {}s restarting failed container={container} pod={pod}",
                    delay.as_secs()
                ),
            ),
            CtrState::Terminated(t) => CState::Terminated(t.clone()),
        }
    }

    fn reason_str(&self) -> &'static str {
        match self {
            CtrState::Waiting { reason, .. } => reason.as_str(),
            _ => "",
        }
    }
}

/// Where the pod's init containers stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitPhase {
    /// Some init container has still to succeed.
    Running,
    /// Every init container succeeded (or there are none): main containers run.
    Done,
    /// An init container failed and is not restarted: the pod failed.
    Failed,
}

pub fn init_phase<C: AsRef<CtrState>>(init: &[C]) -> InitPhase {
    init_phase_with(init, &[])
}

/// A native sidecar (an init container with `restartPolicy: Always`) lets
/// the next container start once it runs and its startup probe passed; a
/// sidecar waiting out a restart back-off has passed that point already, and
/// so has one stopped for good (after the main containers ended).
pub fn sidecar_passed(s: &CtrState) -> bool {
    matches!(
        s,
        CtrState::Running { started: true, .. }
            | CtrState::BackingOff { .. }
            | CtrState::Terminated(_)
    )
}

fn is_sidecar(sidecar: &[bool], i: usize) -> bool {
    sidecar.get(i).copied().unwrap_or(false)
}

/// [`init_phase`] with the init containers that are sidecars (`sidecar[i]`).
pub fn init_phase_with<C: AsRef<CtrState>>(init: &[C], sidecar: &[bool]) -> InitPhase {
    let mut done = true;
    for (i, c) in init.iter().enumerate() {
        if is_sidecar(sidecar, i) {
            done &= sidecar_passed(c.as_ref());
            continue;
        }
        match c.as_ref() {
            CtrState::Terminated(t) if t.exit_code != 0 => return InitPhase::Failed,
            CtrState::Terminated(_) => {}
            _ => done = false,
        }
    }
    if done {
        InitPhase::Done
    } else {
        InitPhase::Running
    }
}

/// What the worker is to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodAction {
    /// Make the image ready, build the configuration and run the container.
    Start(CtrRef),
    /// Start the liveness and readiness probes (the startup probe passed).
    StartProbes(CtrRef),
    /// Stop the container with this grace, so its restart policy restarts it.
    Stop { ctr: CtrRef, grace: Duration },
    /// Stop every container of the pod with this grace, then remove the pod.
    StopAll { grace: Duration },
    Event {
        warning: bool,
        reason: &'static str,
        message: String,
    },
}

/// The containers to start at `now`: the first init container not yet
/// succeeded (one at a time, in order; none while one runs or waits out a
/// back-off), then, once every init container succeeded, every main
/// container that is neither running, done, nor waiting out a back-off.
pub fn plan_pod<C: AsRef<CtrState>>(init: &[C], main: &[C], now: Instant) -> Vec<PodAction> {
    plan_pod_with(init, &[], main, now)
}

/// [`plan_pod`] with native sidecars (`sidecar[i]`: init container `i` has
/// `restartPolicy: Always`): a sidecar starts in its turn like any init
/// container, but the next one starts once it runs (and its startup probe
/// passed), not once it ended; a sidecar that ended is started again after
/// its back-off whatever the pod's restart policy, before and after the
/// main containers started.
pub fn plan_pod_with<C: AsRef<CtrState>>(
    init: &[C],
    sidecar: &[bool],
    main: &[C],
    now: Instant,
) -> Vec<PodAction> {
    let restart_sidecars = |upto: usize| {
        init.iter()
            .take(upto)
            .enumerate()
            .filter(|(i, c)| is_sidecar(sidecar, *i) && c.as_ref().startable(now))
            .map(|(i, _)| PodAction::Start(CtrRef::init(i)))
            .collect::<Vec<_>>()
    };
    match init_phase_with(init, sidecar) {
        InitPhase::Failed => Vec::new(),
        InitPhase::Running => {
            let Some((first, c)) = init.iter().enumerate().find(|(i, c)| {
                if is_sidecar(sidecar, *i) {
                    !sidecar_passed(c.as_ref())
                } else {
                    !c.as_ref().is_done()
                }
            }) else {
                return Vec::new();
            };
            let mut out = restart_sidecars(first);
            if c.as_ref().startable(now) {
                out.push(PodAction::Start(CtrRef::init(first)));
            }
            out
        }
        InitPhase::Done => {
            let mut out = restart_sidecars(init.len());
            out.extend(
                main.iter()
                    .enumerate()
                    .filter(|(_, c)| c.as_ref().startable(now))
                    .map(|(i, _)| PodAction::Start(CtrRef::main(i))),
            );
            out
        }
    }
}

/// Every main container ended for good (a pod whose restart policy does not
/// restart them): its sidecars are stopped and not started again.
pub fn main_done<C: AsRef<CtrState>>(main: &[C]) -> bool {
    !main.is_empty() && main.iter().all(|c| c.as_ref().is_done())
}

/// When the pod has to be looked at again without any report: the earliest
/// end of a back-off or retry wait.
pub fn next_wake<C: AsRef<CtrState>>(init: &[C], main: &[C]) -> Option<Instant> {
    init.iter()
        .chain(main)
        .filter_map(|c| c.as_ref().not_before())
        .min()
}

/// Stopping the pod: say which running containers are stopped, then stop all.
pub fn plan_termination<C: AsRef<CtrState>>(
    main: &[C],
    names: &[&str],
    grace: Duration,
) -> Vec<PodAction> {
    let mut actions: Vec<PodAction> = main
        .iter()
        .zip(names)
        .filter(|(c, _)| c.as_ref().is_running())
        .map(|(_, name)| PodAction::Event {
            warning: false,
            reason: "Killing",
            message: format!("Stopping container {name}"),
        })
        .collect();
    actions.push(PodAction::StopAll { grace });
    actions
}

/// The state of a container the runtime just started (or one adopted
/// running): a main container is started unless a startup probe has to pass
/// first, and ready unless a readiness probe has to pass; init containers
/// are neither.
pub fn on_started(
    init: bool,
    since: SystemTime,
    startup_probe: bool,
    readiness_probe: bool,
) -> CtrState {
    let started = !init && !startup_probe;
    CtrState::Running {
        since,
        started,
        ready: started && !readiness_probe,
    }
}

/// How a container ended, from what the runtime reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exit {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub started_at: Option<SystemTime>,
    pub finished_at: SystemTime,
    pub message: String,
    /// The reason shown instead of the one the exit code gives
    /// (`ContainerStatusUnknown`).
    pub reason: Option<String>,
    /// An earlier agent saw this very exit and started a back-off after it:
    /// what is left of that wait, waited out instead of a new back-off step.
    pub resumed_wait: Option<Duration>,
}

impl Exit {
    /// `None` while the container still runs (nothing ended). An end that
    /// was not recorded, or a state the runtime could not tell, is what
    /// kubelet reports for a container it cannot locate:
    /// `ContainerStatusUnknown` with exit code 137, a failure.
    pub fn from_state(st: Option<ContainerState>, now: SystemTime) -> Option<Exit> {
        match st {
            Some(ContainerState::Exited {
                exit_code,
                signal,
                oom_killed,
                started_at,
                finished_at,
            }) => Some(Exit {
                exit_code,
                signal,
                oom_killed,
                started_at,
                finished_at,
                message: String::new(),
                reason: None,
                resumed_wait: None,
            }),
            Some(ContainerState::Failed { reason, message }) if reason == REASON_STATUS_UNKNOWN => {
                Some(Exit::status_unknown(message, now))
            }
            Some(ContainerState::Failed { reason, message }) => Some(Exit {
                exit_code: 128,
                signal: None,
                oom_killed: false,
                started_at: None,
                finished_at: now,
                message: format!("{reason}: {message}"),
                reason: None,
                resumed_wait: None,
            }),
            Some(ContainerState::Running { .. }) | Some(ContainerState::Created) => None,
            None => Some(Exit::status_unknown(
                "the container could not be located and its state could not be determined".into(),
                now,
            )),
        }
    }

    /// Kubelet's terminated state for a container whose end is not known.
    pub fn status_unknown(message: String, now: SystemTime) -> Exit {
        Exit {
            exit_code: 137,
            signal: None,
            oom_killed: false,
            started_at: None,
            finished_at: now,
            message,
            reason: Some(REASON_STATUS_UNKNOWN.to_string()),
            resumed_wait: None,
        }
    }
}

/// The result of an exit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitOutcome {
    pub state: CtrState,
    /// The new `lastState` (`None`: keep the previous one).
    pub last: Option<Terminated>,
    pub restart: bool,
}

/// A container ended. The restart policy decides between `BackingOff`
/// (delay from the container's back-off, reset after a long enough run, or
/// the rest of a resumed wait, which leaves the back-off as it is) and
/// `Terminated`; an init container that succeeded is `Terminated`.
pub fn on_exit(
    current: &CtrState,
    init: bool,
    policy: RestartPolicy,
    exit: Exit,
    container_id: &str,
    backoff: &mut ResetAfter,
    now: Instant,
) -> ExitOutcome {
    let started_at = exit.started_at.or(current.since());
    let ran_for = started_at
        .and_then(|s| exit.finished_at.duration_since(s).ok())
        .unwrap_or_default();
    let term = Terminated {
        exit_code: exit.exit_code,
        signal: exit.signal,
        reason: exit
            .reason
            .unwrap_or_else(|| status::exit_reason(exit.exit_code, exit.oom_killed).to_string()),
        message: exit.message,
        started_at,
        finished_at: exit.finished_at,
        container_id: container_id.to_string(),
    };
    let restart = policy.restarts(init, exit.exit_code);
    if !restart || (init && exit.exit_code == 0) {
        return ExitOutcome {
            state: CtrState::Terminated(term),
            last: None,
            restart: false,
        };
    }
    let delay = match exit.resumed_wait {
        Some(left) => left,
        None => backoff.delay_after_run(ran_for),
    };
    ExitOutcome {
        state: CtrState::BackingOff {
            until: now + delay,
            delay,
            last_exit: term.clone(),
        },
        last: Some(term),
        restart: true,
    }
}

/// Starting failed before the process ran ([`super::error::Policy::Fail`]):
/// it counts as a failed run (exit code 128, `ContainerCannotRun`) for the
/// restart policy and the back-off.
pub fn on_run_failed(
    init: bool,
    policy: RestartPolicy,
    err: &PodError,
    container_id: &str,
    backoff: &mut ResetAfter,
    now_wall: SystemTime,
    now: Instant,
) -> ExitOutcome {
    let term = Terminated {
        exit_code: 128,
        signal: None,
        reason: "ContainerCannotRun".into(),
        message: err.message.clone(),
        started_at: None,
        finished_at: now_wall,
        container_id: container_id.to_string(),
    };
    if !policy.restarts(init, 128) {
        return ExitOutcome {
            state: CtrState::Terminated(term),
            last: None,
            restart: false,
        };
    }
    let delay = backoff.delay_after_run(Duration::ZERO).max(MIN_RETRY);
    ExitOutcome {
        state: CtrState::Waiting {
            reason: err.reason,
            message: err.message.clone(),
            retry_at: Some(now + delay),
        },
        last: Some(term),
        restart: true,
    }
}

/// A start step to be retried after `after` ([`super::error::Policy::Retry`]).
/// A pull of an image never pulled before that keeps failing shows as
/// `ImagePullBackOff` from its second retry on.
pub fn on_retry(err: &PodError, after: Duration, had_image: bool, now: Instant) -> CtrState {
    let reason = if err.reason == Reason::ErrImagePull && !had_image && after > MIN_RETRY {
        Reason::ImagePullBackOff
    } else {
        err.reason
    };
    CtrState::Waiting {
        reason,
        message: err.message.clone(),
        retry_at: Some(now + after),
    }
}

/// A probe crossed its threshold (`ok`) for the running container `ctr`.
/// Results for a container that is no longer running change nothing. An
/// `errored` attempt (it could not run) is only reported, as kubelet does
/// ("<Kind> probe errored: ..."): it changes no state and stops nothing.
#[allow(clippy::too_many_arguments)]
pub fn on_probe(
    state: &mut CtrState,
    ctr: CtrRef,
    name: &str,
    kind: ProbeKind,
    ok: bool,
    message: &str,
    errored: bool,
    readiness_probe: bool,
    grace: Duration,
) -> Vec<PodAction> {
    let CtrState::Running { ready, started, .. } = state else {
        return Vec::new();
    };
    if errored {
        return vec![PodAction::Event {
            warning: true,
            reason: "Unhealthy",
            message: format!("{} probe errored: {message}", kind.as_str()),
        }];
    }
    match (kind, ok) {
        (ProbeKind::Startup, true) => {
            *started = true;
            *ready = !readiness_probe;
            vec![PodAction::StartProbes(ctr)]
        }
        (ProbeKind::Readiness, ok) => {
            *ready = ok;
            if ok {
                Vec::new()
            } else {
                vec![PodAction::Event {
                    warning: true,
                    reason: "Unhealthy",
                    message: format!("Readiness probe failed: {message}"),
                }]
            }
        }
        (ProbeKind::Liveness, true) => Vec::new(),
        (kind @ (ProbeKind::Liveness | ProbeKind::Startup), false) => vec![
            PodAction::Event {
                warning: true,
                reason: "Unhealthy",
                message: format!("{} probe failed: {message}", kind.as_str()),
            },
            PodAction::Event {
                warning: false,
                reason: "Killing",
                message: format!(
                    "Container {name} failed {} probe, will be restarted",
                    kind.as_str().to_lowercase()
                ),
            },
            PodAction::Stop { ctr, grace },
        ],
    }
}
