//! Restart back-off as a small value type (G9).
//!
//! Kubernetes' kubelet restarts a crashed container at once the first time,
//! then waits 10 s, doubling up to 5 min; the delay resets once a container has
//! run for 10 min. [`Backoff`] yields the delays; [`ResetAfter`] applies the
//! "quiet period" rule. [`BackoffRecord`] is what survives an agent restart
//! (saved with the pod records), so a crash-looping container keeps waiting
//! out its back-off instead of being started at once by the new agent.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Yields 0, then `initial`, doubling up to `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BackoffError {
    #[error("back-off initial delay must be positive and not above the maximum")]
    InvalidBounds,
}

impl Backoff {
    /// Kubernetes' defaults: 10 s doubling to 300 s.
    pub const fn kubernetes() -> Self {
        Self {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(300),
            next: Duration::ZERO,
        }
    }

    pub fn try_new(initial: Duration, max: Duration) -> Result<Self, BackoffError> {
        if initial.is_zero() || initial > max {
            return Err(BackoffError::InvalidBounds);
        }
        Ok(Self {
            initial,
            max,
            next: Duration::ZERO,
        })
    }

    /// Back to "restart at once".
    pub fn reset(&mut self) {
        self.next = Duration::ZERO;
    }

    /// The delay the next call to `next()` will return, without advancing.
    pub fn peek(&self) -> Duration {
        self.next
    }

    /// The same schedule without the immediate first retry: `initial`,
    /// doubling up to `max` (for retries of a step that just failed).
    pub fn without_immediate(mut self) -> Self {
        self.next = self.initial;
        self
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let cur = self.next;
        self.next = if cur.is_zero() {
            self.initial
        } else {
            (cur * 2).min(self.max)
        };
        Some(cur)
    }
}

/// Resets the inner back-off when the thing ran longer than `quiet` before failing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetAfter {
    inner: Backoff,
    quiet: Duration,
}

impl ResetAfter {
    /// Kubernetes: reset after 10 minutes of running.
    pub const fn kubernetes() -> Self {
        Self {
            inner: Backoff::kubernetes(),
            quiet: Duration::from_secs(600),
        }
    }

    pub fn new(inner: Backoff, quiet: Duration) -> Self {
        Self { inner, quiet }
    }

    /// Delay before restarting something that ran for `ran_for`.
    pub fn delay_after_run(&mut self, ran_for: Duration) -> Duration {
        if ran_for >= self.quiet {
            self.inner.reset();
        }
        self.inner.next().unwrap_or(Duration::ZERO)
    }

    pub fn peek(&self) -> Duration {
        self.inner.peek()
    }

    /// Kubernetes' back-off resumed where a saved one stood: the next
    /// failure waits `next` (clamped to the bounds).
    pub fn resume_kubernetes(next: Duration) -> Self {
        let mut r = Self::kubernetes();
        r.inner.next = if next.is_zero() {
            Duration::ZERO
        } else {
            next.clamp(r.inner.initial, r.inner.max)
        };
        r
    }
}

/// A container's back-off as saved with its pod's record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffRecord {
    pub restarts: u32,
    /// What the next failure will wait ([`ResetAfter::peek`]), in milliseconds.
    pub next_delay_ms: u64,
    /// Set while the container waits out a back-off after an exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<BackoffWait>,
}

/// The exit a back-off is waiting after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffWait {
    /// The exited container (still on the host until it is restarted).
    pub container_id: String,
    /// Not restarted before this wall-clock time.
    pub until: SystemTime,
    pub exit_code: i32,
}

impl BackoffRecord {
    /// Time left to wait at `now` if the back-off waits after `container_id`.
    pub fn remaining_for(&self, container_id: Option<&str>, now: SystemTime) -> Option<Duration> {
        let w = self.waiting.as_ref()?;
        if container_id.is_some_and(|id| id != w.container_id) {
            return None;
        }
        Some(w.until.duration_since(now).unwrap_or(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_sequence() {
        let b = Backoff::kubernetes();
        let v: Vec<u64> = b.take(9).map(|d| d.as_secs()).collect();
        assert_eq!(v, vec![0, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn reset_returns_to_zero() {
        let mut b = Backoff::kubernetes();
        b.next();
        b.next();
        assert_eq!(b.peek(), Duration::from_secs(20));
        b.reset();
        assert_eq!(b.next(), Some(Duration::ZERO));
    }

    #[test]
    fn without_immediate_starts_at_initial() {
        let b = Backoff::try_new(Duration::from_millis(500), Duration::from_secs(30))
            .unwrap()
            .without_immediate();
        let v: Vec<u128> = b.take(8).map(|d| d.as_millis()).collect();
        assert_eq!(v, vec![500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    }

    #[test]
    fn invalid_bounds() {
        assert_eq!(
            Backoff::try_new(Duration::ZERO, Duration::from_secs(1)),
            Err(BackoffError::InvalidBounds)
        );
        assert_eq!(
            Backoff::try_new(Duration::from_secs(2), Duration::from_secs(1)),
            Err(BackoffError::InvalidBounds)
        );
        assert!(Backoff::try_new(Duration::from_secs(1), Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn resumed_backoff_continues_the_sequence() {
        let mut r = ResetAfter::resume_kubernetes(Duration::from_secs(40));
        assert_eq!(r.peek(), Duration::from_secs(40));
        assert_eq!(
            r.delay_after_run(Duration::from_secs(1)),
            Duration::from_secs(40)
        );
        assert_eq!(r.peek(), Duration::from_secs(80));
        // out-of-range saved values are clamped, zero stays "at once"
        assert_eq!(
            ResetAfter::resume_kubernetes(Duration::from_secs(9999)).peek(),
            Duration::from_secs(300)
        );
        assert_eq!(
            ResetAfter::resume_kubernetes(Duration::from_millis(1)).peek(),
            Duration::from_secs(10)
        );
        assert_eq!(
            ResetAfter::resume_kubernetes(Duration::ZERO).peek(),
            Duration::ZERO
        );
    }

    #[test]
    fn remaining_wait_only_for_the_same_exit() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let r = BackoffRecord {
            restarts: 2,
            next_delay_ms: 40_000,
            waiting: Some(BackoffWait {
                container_id: "c-2".into(),
                until: now + Duration::from_secs(15),
                exit_code: 1,
            }),
        };
        assert_eq!(
            r.remaining_for(Some("c-2"), now),
            Some(Duration::from_secs(15))
        );
        assert_eq!(r.remaining_for(Some("c-3"), now), None);
        assert_eq!(r.remaining_for(None, now), Some(Duration::from_secs(15)));
        assert_eq!(
            r.remaining_for(None, now + Duration::from_secs(60)),
            Some(Duration::ZERO)
        );
        assert_eq!(BackoffRecord::default().remaining_for(None, now), None);
    }

    #[test]
    fn reset_after_quiet_period() {
        let mut r = ResetAfter::kubernetes();
        assert_eq!(r.delay_after_run(Duration::from_secs(1)), Duration::ZERO);
        assert_eq!(
            r.delay_after_run(Duration::from_secs(1)),
            Duration::from_secs(10)
        );
        assert_eq!(
            r.delay_after_run(Duration::from_secs(1)),
            Duration::from_secs(20)
        );
        // ran 10 minutes: back to an immediate restart
        assert_eq!(r.delay_after_run(Duration::from_secs(600)), Duration::ZERO);
        assert_eq!(
            r.delay_after_run(Duration::from_secs(5)),
            Duration::from_secs(10)
        );
    }
}
