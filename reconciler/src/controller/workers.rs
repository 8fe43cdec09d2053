//! Pod workers that fail: a panic inside a worker ends its task; the
//! controller hears of it (`WorkerMsg::Crashed`, sent by the task's
//! supervisor in `pod::spawn`), reports it as an event and a condition that
//! keeps `/readyz` failing, and starts a new worker for the pod after a
//! back-off (1 s doubling to 5 min; the count resets after 10 min without a
//! failure). The new worker adopts the pod's containers as they run.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::{Reconciler, desired_from_record};
use crate::backoff::Backoff;
use crate::pod::error::{MIN_RETRY, schedule};
use crate::status::AgentCondition;
use crate::traits::{ContainerInfo, Images, Network, PodRef, Runtime, error_chain};

/// A failure counts as "recent" (not ready) this long after the worker restarted.
const HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// The failure count and the back-off reset after this long without a failure.
const RESET_AFTER: Duration = Duration::from_secs(600);

/// A pod whose worker failed.
#[derive(Debug, Clone)]
pub(crate) struct WorkerCrash {
    pub count: u32,
    pub last: Instant,
    pub message: String,
    /// When the next worker starts; `None` once it has.
    pub retry_at: Option<Instant>,
    /// The restart back-off of this pod's worker.
    pub backoff: Backoff,
}

/// The text of a panic payload.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

// === impl Reconciler ===

impl<I: Images, R: Runtime, N: Network> Reconciler<I, R, N> {
    pub(super) fn on_worker_crashed(&mut self, pod: PodRef, message: String) {
        if let Some((p, _)) = self.reaping.remove(&pod.uid) {
            // a pod being removed without a record: plan it again next pass
            tracing::error!(pod = %p.key(), %message, "worker removing an unrecorded pod failed");
            self.node_event(
                true,
                "WorkerFailed",
                &format!("removing pod {}: worker failed: {message}", p.key()),
            );
            self.orphans.insert(
                p.uid.clone(),
                super::adoption::Orphan {
                    pod: p,
                    containers: Vec::new(),
                    reported: true,
                },
            );
            return;
        }
        let now = Instant::now();
        let Some(e) = self.entry_for(&pod) else {
            return;
        };
        let (count, mut backoff) = match e.crash.take() {
            Some(c) if now.duration_since(c.last) < RESET_AFTER => (c.count + 1, c.backoff),
            _ => (1, schedule::worker_restart()),
        };
        let delay = backoff.next().unwrap_or(MIN_RETRY);
        e.handle = None;
        e.crash = Some(WorkerCrash {
            count,
            last: now,
            message: message.clone(),
            retry_at: Some(now + delay),
            backoff,
        });
        tracing::error!(pod = %pod.key(), %message, count, ?delay, "pod worker failed");
        let msg = format!(
            "pod worker failed: {message}; starting a new one in {}s",
            delay.as_secs()
        );
        self.events.record(
            crate::events::EventInput {
                warning: true,
                kind: "Pod",
                namespace: &pod.namespace,
                name: &pod.name,
                reason: "WorkerFailed",
                message: &msg,
            },
            SystemTime::now(),
        );
    }

    /// When the next failed worker is due to start again.
    pub(super) fn next_worker_retry(&self) -> Option<Instant> {
        self.pods
            .values()
            .filter_map(|e| e.crash.as_ref()?.retry_at)
            .min()
    }

    /// Start new workers for the pods whose worker failed and whose back-off is over.
    pub(super) async fn restart_failed_workers(&mut self) {
        let now = Instant::now();
        let due: Vec<(String, String)> = self
            .pods
            .iter()
            .filter(|(_, e)| {
                e.handle.is_none()
                    && e.crash
                        .as_ref()
                        .and_then(|c| c.retry_at)
                        .is_some_and(|t| t <= now)
            })
            .map(|(k, _)| k.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        let all = match self.deps.runtime.list().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(err = %error_chain(&e), "listing containers for failed workers");
                // a worker that could not be started counts as failed again
                for k in &due {
                    if let Some(c) = self.pods.get_mut(k).and_then(|e| e.crash.as_mut()) {
                        c.retry_at = Some(now + c.backoff.next().unwrap_or(MIN_RETRY));
                    }
                }
                return;
            }
        };
        let mut by_uid: BTreeMap<String, Vec<ContainerInfo>> = BTreeMap::new();
        for c in all {
            by_uid.entry(c.pod.uid.clone()).or_default().push(c);
        }
        for key in due {
            let Some(e) = self.pods.get(&key) else {
                continue;
            };
            let mut d = desired_from_record(&e.record);
            d.annotations = e.annotations.clone();
            let pod = e.record.pod.clone();
            let backoff = e.record.backoff.clone();
            let grace = e.terminating.map(|_| super::grace_of(&e.record.spec));
            let adopted = by_uid.remove(&pod.uid).unwrap_or_default();
            tracing::info!(pod = %pod.key(), containers = adopted.len(), "starting a new pod worker");
            let handle = self.spawn_worker(pod, d, adopted, &backoff);
            if let Some(g) = grace {
                let _ = handle.stop.send(Some(g));
            }
            if let Some(e) = self.pods.get_mut(&key) {
                e.handle = Some(handle);
                if let Some(c) = e.crash.as_mut() {
                    c.retry_at = None;
                }
            }
        }
    }

    /// Agent-level conditions: records problems, failed workers, orphans.
    pub(super) fn conditions(&self) -> Vec<AgentCondition> {
        let mut out = Vec::new();
        if !self.record_problems.is_empty() {
            out.push(AgentCondition {
                type_: "PodRecordsReadable".into(),
                status: "False".into(),
                reason: self.record_problems[0].0.clone(),
                message: self
                    .record_problems
                    .iter()
                    .map(|(_, m)| m.as_str())
                    .collect::<Vec<_>>()
                    .join("; "),
                blocks_ready: false,
            });
        }
        out.extend(super::file_problems::condition(&self.file_problems));
        let now = Instant::now();
        let failing: Vec<String> = self
            .pods
            .values()
            .filter_map(|e| {
                let c = e.crash.as_ref()?;
                let recent = now.duration_since(c.last) < HEALTHY_AFTER;
                (c.retry_at.is_some() || recent).then(|| {
                    format!(
                        "{}/{}: {} (failures: {})",
                        e.record.pod.namespace, e.record.pod.name, c.message, c.count
                    )
                })
            })
            .collect();
        if !failing.is_empty() {
            out.push(AgentCondition {
                type_: "PodWorkersHealthy".into(),
                status: "False".into(),
                reason: "WorkerFailed".into(),
                message: failing.join("; "),
                blocks_ready: true,
            });
        }
        if !self.import_failures.is_empty() {
            out.push(AgentCondition {
                type_: "ImageImportsSucceeded".into(),
                status: "False".into(),
                reason: "ImportFailed".into(),
                message: self
                    .import_failures
                    .iter()
                    .map(|(f, e)| format!("{f}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; "),
                blocks_ready: false,
            });
        }
        if !self.orphans.is_empty() {
            let names: Vec<String> = self.orphans.values().map(|o| o.pod.key()).collect();
            out.push(AgentCondition {
                type_: "UnrecordedPods".into(),
                status: "True".into(),
                reason: "WaitingForSources".into(),
                message: format!(
                    "running without a record, kept until every source has been read: {}",
                    names.join(", ")
                ),
                blocks_ready: false,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crash_delays_double_to_five_minutes() {
        let v: Vec<u64> = schedule::worker_restart()
            .take(11)
            .map(|d| d.as_secs())
            .collect();
        assert_eq!(v, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
    }

    #[test]
    fn panic_messages() {
        assert_eq!(panic_message(&"boom"), "boom");
        assert_eq!(panic_message(&String::from("x")), "x");
        assert_eq!(panic_message(&3u8), "a panic without a message");
    }
}
