//! How long the loop lets worker messages gather before its next pass.
//!
//! A pass reads every pod (desired specs hashed, Services' endpoints, the
//! status snapshot), so it costs O(n). Starting n pods sends a few status
//! messages per pod; a pass per message (or per small burst) made the
//! agent's work for a start of n pods O(n^2): 7 ms of agent CPU per pod at
//! 10 pods, 22 ms at 200. After a message, the loop waits a multiple of the
//! last pass's duration before draining the queue, so passes take at most
//! about a fifth of the loop's time whatever n is, and a small host (a pass
//! of well under a millisecond) sees no added delay worth the name.

use std::time::Duration;

/// The wait is this many times the last pass.
const FACTOR: u32 = 4;

/// Never longer than this: a status change reaches the API, Services and
/// rollouts within it.
pub(crate) const MAX_GATHER: Duration = Duration::from_millis(50);

/// Shorter waits than this are not worth a timer.
const MIN_GATHER: Duration = Duration::from_micros(200);

/// A burst is this many worker messages found waiting at once; fewer are
/// handled at once, without a wait.
pub(crate) const BURST: usize = 4;

/// How long to gather worker messages after the first one, given how long
/// the last pass took and how many messages the last drain found.
///
/// Only a burst is paced: a lone message (one pod's next step: its network,
/// its container running, its readiness) gets its pass at once, whatever the
/// pass costs. The last pass's wall time includes awaited I/O (an nft
/// transaction for a Service, a record save), so a pass of one pod can look
/// like 5-10 ms; pacing on time alone put 20-40 ms on every step of a single
/// pod's path to its first HTTP answer.
pub(crate) fn gather_window(last_pass: Duration, last_drain: usize) -> Duration {
    if last_drain < BURST {
        return Duration::ZERO;
    }
    let w = last_pass.saturating_mul(FACTOR).min(MAX_GATHER);
    if w < MIN_GATHER { Duration::ZERO } else { w }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_the_pass_and_is_capped() {
        assert_eq!(gather_window(Duration::ZERO, BURST), Duration::ZERO);
        // a pass of a few pods: no timer at all
        assert_eq!(
            gather_window(Duration::from_micros(40), BURST),
            Duration::ZERO
        );
        assert_eq!(
            gather_window(Duration::from_millis(3), BURST),
            Duration::from_millis(12)
        );
        assert_eq!(gather_window(Duration::from_millis(13), BURST), MAX_GATHER);
        assert_eq!(gather_window(Duration::from_secs(3600), BURST), MAX_GATHER);
    }

    #[test]
    fn a_lone_message_is_never_delayed() {
        for drained in 0..BURST {
            assert_eq!(
                gather_window(Duration::from_millis(10), drained),
                Duration::ZERO
            );
        }
        assert_eq!(
            gather_window(Duration::from_millis(10), BURST),
            Duration::from_millis(40)
        );
    }

    #[test]
    fn passes_stay_a_bounded_share_of_the_loop() {
        // while messages keep coming, the loop alternates pass and gather:
        // the passes' share is pass / (pass + gather), at most 1/(1+FACTOR)
        // until the cap, and falling after it
        for ms in [1u64, 2, 5, 10, 25, 40, 100] {
            let pass = Duration::from_millis(ms);
            let share = pass.as_secs_f64() / (pass + gather_window(pass, BURST)).as_secs_f64();
            let bound = if pass * FACTOR <= MAX_GATHER {
                1.0 / f64::from(1 + FACTOR)
            } else {
                pass.as_secs_f64() / (pass + MAX_GATHER).as_secs_f64()
            };
            assert!((share - bound).abs() < 1e-9, "pass {ms} ms: share {share}");
            assert!(share < 0.7, "pass {ms} ms: share {share}");
        }
    }
}
