//! Why a pod or container step failed, and the one policy that says what
//! follows a failure: retry the step after a back-off, fail the attempt (the
//! container's restart policy takes over), or treat the step as done.
//!
//! The policy reads only the [`ErrorKind`] the host crates already classify
//! their errors with, never message text; every retry delay comes from a
//! [`Backoff`] (reconciler/src/backoff.rs).

use std::fmt;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::traits::{ErrorKind, ImageFailureReason};

/// Kubernetes' reason strings for what the worker reports (events, waiting
/// states, the pod's status reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// A container that has not run yet.
    ContainerCreating,
    /// An init container that has not run yet.
    PodInitializing,
    FailedCreatePodSandBox,
    FailedMount,
    InvalidImageName,
    ErrImagePull,
    ErrImageNeverPull,
    ImagePullBackOff,
    CreateContainerConfigError,
    CreateContainerError,
    RunContainerError,
    CrashLoopBackOff,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ContainerCreating => "ContainerCreating",
            Reason::PodInitializing => "PodInitializing",
            Reason::FailedCreatePodSandBox => "FailedCreatePodSandBox",
            Reason::FailedMount => "FailedMount",
            Reason::InvalidImageName => "InvalidImageName",
            Reason::ErrImagePull => "ErrImagePull",
            Reason::ErrImageNeverPull => "ErrImageNeverPull",
            Reason::ImagePullBackOff => "ImagePullBackOff",
            Reason::CreateContainerConfigError => "CreateContainerConfigError",
            Reason::CreateContainerError => "CreateContainerError",
            Reason::RunContainerError => "RunContainerError",
            Reason::CrashLoopBackOff => "CrashLoopBackOff",
        }
    }
}

impl From<ImageFailureReason> for Reason {
    fn from(r: ImageFailureReason) -> Self {
        match r {
            ImageFailureReason::InvalidImageName => Reason::InvalidImageName,
            ImageFailureReason::ErrImagePull => Reason::ErrImagePull,
            ImageFailureReason::ErrImageNeverPull => Reason::ErrImageNeverPull,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed pod or container step, as reported: a reason and a one-line
/// message (the whole cause chain, see [`crate::traits::error_chain`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct PodError {
    pub reason: Reason,
    pub message: String,
    /// The host crate's class of the failure; `None` for the reconciler's own
    /// checks (a volume, an environment variable that cannot be built).
    pub kind: Option<ErrorKind>,
}

impl PodError {
    pub fn new(reason: Reason, message: impl Into<String>, kind: Option<ErrorKind>) -> Self {
        Self {
            reason,
            message: message.into(),
            kind,
        }
    }
}

/// The step that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Network, sandbox or volumes of the pod.
    Setup,
    /// Making a container's image ready.
    Pull,
    /// Building a container's configuration (environment, mounts).
    Config,
    /// Creating and starting a container.
    Run,
    /// Stopping or removing something of the pod.
    Cleanup,
}

/// What follows a failed step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Try the same step again after this long.
    Retry(Duration),
    /// The attempt is over: it counts as a failed run with this reason, and
    /// the container's restart policy decides what follows.
    Fail(Reason),
    /// Nothing to do: what the step wanted already holds.
    Done,
}

/// The shortest retry delay of a container step: a step that fails at once
/// is not tried again in a tight loop.
pub const MIN_RETRY: Duration = Duration::from_secs(1);

/// The one error policy of the pod worker. `backoff` is the retry schedule of
/// this step for this pod or container; it advances only on `Retry`.
pub fn error_policy(step: Step, kind: Option<ErrorKind>, backoff: &mut Backoff) -> Policy {
    match decide(step, kind) {
        Decision::Retry { floor } => Policy::Retry(backoff.next().unwrap_or(floor).max(floor)),
        Decision::Fail(reason) => Policy::Fail(reason),
        Decision::Done => Policy::Done,
    }
}

/// [`error_policy`] before a delay is chosen, for a caller that retries many
/// things on one schedule (cleanup) or never retries the step itself (run).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Retry { floor: Duration },
    Fail(Reason),
    Done,
}

pub fn decide(step: Step, kind: Option<ErrorKind>) -> Decision {
    match (step, kind) {
        (Step::Run, Some(ErrorKind::Invalid)) => Decision::Fail(Reason::CreateContainerError),
        (Step::Run, _) => Decision::Fail(Reason::RunContainerError),
        // gone already is what stopping or removing wanted
        (Step::Cleanup, Some(ErrorKind::NotFound)) => Decision::Done,
        (Step::Setup | Step::Cleanup, _) => Decision::Retry {
            floor: Duration::ZERO,
        },
        // an invalid image name or a missing config object may be fixed by
        // the next manifest change; until then they are retried slowly
        (Step::Pull | Step::Config, _) => Decision::Retry { floor: MIN_RETRY },
    }
}

/// The retry schedules the worker uses, one [`Backoff`] each.
pub mod schedule {
    use super::*;

    /// Pod setup: 0.5 s doubling to 30 s.
    pub fn setup() -> Backoff {
        bounded(Duration::from_millis(500), Duration::from_secs(30))
    }

    /// Image pulls: Kubernetes' 10 s doubling to 5 min, the first retry after
    /// [`MIN_RETRY`].
    pub fn pull() -> Backoff {
        Backoff::kubernetes()
    }

    /// A configuration that cannot be built yet (a ConfigMap missing): every 10 s.
    pub fn config() -> Backoff {
        bounded(Duration::from_secs(10), Duration::from_secs(10))
    }

    /// Cleanup when a pod goes: 1 s, 2 s, 4 s.
    pub fn cleanup() -> Backoff {
        bounded(Duration::from_secs(1), Duration::from_secs(4))
    }

    /// Listing the host's containers (adoption, restarting a failed
    /// worker): 0.2 s doubling to 5 s.
    pub fn list() -> Backoff {
        bounded(Duration::from_millis(200), Duration::from_secs(5))
    }

    /// A failed pod worker is replaced after 1 s, doubling to 5 min.
    pub fn worker_restart() -> Backoff {
        bounded(Duration::from_secs(1), Duration::from_secs(300))
    }

    /// Number of cleanup attempts before leftovers are left to adoption.
    pub const CLEANUP_ATTEMPTS: u32 = 3;

    fn bounded(initial: Duration, max: Duration) -> Backoff {
        match Backoff::try_new(initial, max) {
            Ok(b) => b.without_immediate(),
            Err(_) => Backoff::kubernetes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KINDS: [Option<ErrorKind>; 7] = [
        None,
        Some(ErrorKind::NotFound),
        Some(ErrorKind::AlreadyExists),
        Some(ErrorKind::Invalid),
        Some(ErrorKind::Transient),
        Some(ErrorKind::Unsupported),
        Some(ErrorKind::Internal),
    ];

    #[test]
    fn run_failures_fail_the_attempt_with_a_kubernetes_reason() {
        for kind in KINDS {
            let mut b = schedule::setup();
            let want = if kind == Some(ErrorKind::Invalid) {
                Reason::CreateContainerError
            } else {
                Reason::RunContainerError
            };
            assert_eq!(
                error_policy(Step::Run, kind, &mut b),
                Policy::Fail(want),
                "{kind:?}"
            );
            // a failed attempt does not consume the step's retry schedule
            assert_eq!(b, schedule::setup());
        }
    }

    #[test]
    fn setup_is_retried_on_its_schedule_whatever_the_kind() {
        for kind in KINDS {
            let mut b = schedule::setup();
            let got: Vec<Policy> = (0..8)
                .map(|_| error_policy(Step::Setup, kind, &mut b))
                .collect();
            let want: Vec<Policy> = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]
                .into_iter()
                .map(|ms| Policy::Retry(Duration::from_millis(ms)))
                .collect();
            assert_eq!(got, want, "{kind:?}");
        }
    }

    #[test]
    fn pulls_retry_after_one_second_then_back_off() {
        let mut b = schedule::pull();
        let got: Vec<Policy> = (0..4)
            .map(|_| error_policy(Step::Pull, Some(ErrorKind::Transient), &mut b))
            .collect();
        let secs = |s| Policy::Retry(Duration::from_secs(s));
        assert_eq!(got, vec![secs(1), secs(10), secs(20), secs(40)]);
    }

    #[test]
    fn config_errors_retry_every_ten_seconds() {
        let mut b = schedule::config();
        for _ in 0..4 {
            assert_eq!(
                error_policy(Step::Config, None, &mut b),
                Policy::Retry(Duration::from_secs(10))
            );
        }
    }

    #[test]
    fn cleanup_of_something_gone_is_done() {
        let mut b = schedule::cleanup();
        assert_eq!(
            error_policy(Step::Cleanup, Some(ErrorKind::NotFound), &mut b),
            Policy::Done
        );
        let got: Vec<Policy> = (0..3)
            .map(|_| error_policy(Step::Cleanup, Some(ErrorKind::Transient), &mut b))
            .collect();
        let secs = |s| Policy::Retry(Duration::from_secs(s));
        assert_eq!(got, vec![secs(1), secs(2), secs(4)]);
    }

    #[test]
    fn image_reasons_map_one_to_one() {
        assert_eq!(
            Reason::from(ImageFailureReason::InvalidImageName).as_str(),
            "InvalidImageName"
        );
        assert_eq!(
            Reason::from(ImageFailureReason::ErrImagePull).as_str(),
            "ErrImagePull"
        );
        assert_eq!(
            Reason::from(ImageFailureReason::ErrImageNeverPull).as_str(),
            "ErrImageNeverPull"
        );
    }

    #[test]
    fn pod_error_displays_reason_and_message() {
        let e = PodError::new(Reason::FailedMount, "volume data: not found", None);
        assert_eq!(e.to_string(), "FailedMount: volume data: not found");
    }
}
