//! Per-container CPU and memory over the last minutes, for the status page's
//! sparklines: a small bounded ring filled by one sampler task that reads the
//! containers' cgroups through the runtime ([`Runtime::usage`]).
//!
//! # Guarantees
//! - Bounded: at most [`SAMPLES`] samples per container and [`MAX_SERIES`]
//!   containers; a container that stops running drops out at the next sample.
//! - One writer (the sampler), many readers (the API); the lock is held only
//!   to copy a few numbers, never across I/O, and the reconciler never takes it.
//! - Nothing is written to disk: after an agent restart the ring starts empty.
//!
//! CPU is a cumulative counter in the cgroup; the ring keeps the counter and
//! serves rates (millicores) between consecutive samples. A counter that goes
//! backwards (the container restarted into a fresh cgroup) gives no rate for
//! that step.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use berth_reconciler::traits::{ContainerState, Runtime, Usage};
use serde_json::{Value, json};
use tokio::sync::watch;

/// Samples kept per container: 10 minutes at [`INTERVAL`].
pub const SAMPLES: usize = 60;
/// Containers tracked at most (an edge box runs tens).
pub const MAX_SERIES: usize = 1024;
/// How often the sampler reads the cgroups.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// `(namespace, pod, container)`
pub type Key = (String, String, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sample {
    /// Unix time in milliseconds.
    at_ms: u64,
    cpu_nanos: u64,
    memory_bytes: u64,
}

/// The ring; cheap to share (`Arc`).
#[derive(Debug)]
pub struct UsageRing {
    series: Mutex<BTreeMap<Key, VecDeque<Sample>>>,
    /// Bumped after every sample, so live page streams wake up.
    changed: watch::Sender<u64>,
}

impl Default for UsageRing {
    fn default() -> Self {
        UsageRing {
            series: Mutex::new(BTreeMap::new()),
            changed: watch::channel(0).0,
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl UsageRing {
    /// Record one sample of every running container at `at`. Containers
    /// absent from `now` are forgotten.
    pub fn record(&self, at: SystemTime, now: Vec<(Key, Usage)>) {
        let at_ms = unix_ms(at);
        {
            let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
            let mut next: BTreeMap<Key, VecDeque<Sample>> = BTreeMap::new();
            for (key, u) in now.into_iter().take(MAX_SERIES) {
                let mut ring = series.remove(&key).unwrap_or_default();
                ring.push_back(Sample {
                    at_ms,
                    cpu_nanos: u.cpu_usage_nanos,
                    memory_bytes: u.memory_working_set_bytes,
                });
                while ring.len() > SAMPLES {
                    ring.pop_front();
                }
                next.insert(key, ring);
            }
            *series = next;
        }
        self.changed.send_modify(|v| *v += 1);
    }

    /// Wakes when a sample was recorded.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The last minutes as JSON: per container `points` of
    /// `[unix ms, cpu millicores or null, working set bytes]`.
    pub fn to_json(&self) -> Value {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let containers: Vec<Value> = series
            .iter()
            .map(|((ns, pod, c), ring)| {
                let mut prev: Option<&Sample> = None;
                let points: Vec<Value> = ring
                    .iter()
                    .map(|s| {
                        let cpu = prev.and_then(|p| millicores(p, s));
                        prev = Some(s);
                        json!([s.at_ms, cpu, s.memory_bytes])
                    })
                    .collect();
                json!({"namespace": ns, "pod": pod, "container": c, "points": points})
            })
            .collect();
        json!({"intervalSeconds": INTERVAL.as_secs(), "samples": SAMPLES, "containers": containers})
    }
}

/// The newest reading of each container: `(key, cpu nanocores over the
/// last interval or `None` with one sample only, working set bytes, unix ms
/// of the reading, window ms)` (the figures `metrics.k8s.io` serves).
pub type Latest = (Key, Option<u64>, u64, u64, u64);

impl UsageRing {
    pub fn latest(&self) -> Vec<Latest> {
        let series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        series
            .iter()
            .filter_map(|(k, ring)| {
                let last = ring.back()?;
                let prev = ring.len().checked_sub(2).and_then(|i| ring.get(i));
                let (cpu, window) = match prev {
                    Some(p) => {
                        let dt = last.at_ms.saturating_sub(p.at_ms);
                        let rate = (dt > 0)
                            .then(|| last.cpu_nanos.checked_sub(p.cpu_nanos))
                            .flatten()
                            .map(|d| (d as u128 * 1000 / dt as u128) as u64);
                        (rate, dt)
                    }
                    None => (None, 0),
                };
                Some((k.clone(), cpu, last.memory_bytes, last.at_ms, window))
            })
            .collect()
    }
}

/// CPU rate between two samples in millicores (1000 = one core busy).
fn millicores(a: &Sample, b: &Sample) -> Option<f64> {
    let dt_ms = b.at_ms.checked_sub(a.at_ms).filter(|d| *d > 0)?;
    let dcpu = b.cpu_nanos.checked_sub(a.cpu_nanos)?;
    // ns / (ms * 1e6) cores = ns / (ms * 1e3) millicores
    Some(((dcpu as f64 / (dt_ms as f64 * 1000.0)) * 10.0).round() / 10.0)
}

/// Usage of every running container the runtime knows.
pub async fn sample<R: Runtime>(rt: &R) -> Vec<(Key, Usage)> {
    let Ok(list) = rt.list().await else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in list {
        if !matches!(c.state, ContainerState::Running { .. }) {
            continue;
        }
        if let Ok(u) = rt.usage(&c.id).await {
            out.push(((c.pod.namespace, c.pod.name, c.name), u));
        }
    }
    out
}

/// The sampler task: one sample every [`INTERVAL`] until shutdown.
pub async fn run<R: Runtime>(rt: R, ring: Arc<UsageRing>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = crate::sources::stopped(&mut shutdown) => return,
        }
        let now = sample(&rt).await;
        ring.record(SystemTime::now(), now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: &str) -> Key {
        ("default".into(), p.into(), "main".into())
    }

    fn usage(cpu: u64, mem: u64) -> Usage {
        Usage {
            cpu_usage_nanos: cpu,
            memory_working_set_bytes: mem,
        }
    }

    fn at(s: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + s)
    }

    #[test]
    fn rates_are_millicores_between_samples() {
        let r = UsageRing::default();
        r.record(at(0), vec![(key("a"), usage(0, 100))]);
        // 5 s of CPU time in 10 s: half a core
        r.record(at(10), vec![(key("a"), usage(5_000_000_000, 200))]);
        let j = r.to_json();
        let pts = &j["containers"][0]["points"];
        assert_eq!(pts[0][1], Value::Null, "no rate for the first sample");
        assert_eq!(pts[1][1], 500.0);
        assert_eq!(pts[1][2], 200);
        assert_eq!(j["containers"][0]["pod"], "a");
    }

    #[test]
    fn a_restarted_counter_gives_no_rate() {
        let r = UsageRing::default();
        r.record(at(0), vec![(key("a"), usage(9_000_000_000, 1))]);
        r.record(at(10), vec![(key("a"), usage(1_000, 1))]);
        assert_eq!(r.to_json()["containers"][0]["points"][1][1], Value::Null);
    }

    #[test]
    fn bounded_in_samples_and_series_and_gone_containers_drop_out() {
        let r = UsageRing::default();
        for i in 0..(SAMPLES as u64 + 25) {
            r.record(
                at(i * 10),
                vec![(key("a"), usage(i, 1)), (key("b"), usage(i, 1))],
            );
        }
        let j = r.to_json();
        assert_eq!(
            j["containers"][0]["points"].as_array().unwrap().len(),
            SAMPLES
        );
        r.record(at(10_000), vec![(key("b"), usage(1, 1))]);
        let j = r.to_json();
        assert_eq!(j["containers"].as_array().unwrap().len(), 1);
        assert_eq!(j["containers"][0]["pod"], "b");
        let many: Vec<(Key, Usage)> = (0..MAX_SERIES + 10)
            .map(|i| (key(&format!("p{i}")), usage(0, 0)))
            .collect();
        r.record(at(10_010), many);
        assert_eq!(
            r.to_json()["containers"].as_array().unwrap().len(),
            MAX_SERIES
        );
    }

    #[test]
    fn recording_wakes_subscribers() {
        let r = UsageRing::default();
        let mut rx = r.subscribe();
        assert!(!rx.has_changed().unwrap());
        r.record(at(0), vec![]);
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
    }
}
