//! Taking the pod down: stop every container with the grace, then remove
//! containers, sandbox, network and volumes, retrying on the cleanup schedule.

use super::*;

impl<I: Images, R: Runtime, N: Network> Worker<I, R, N> {
    // === termination ===

    pub(super) async fn terminate(mut self, grace: Duration) {
        // containers adopted but not yet taken over (the pod was deleted
        // before its set-up finished) are the pod's too
        let adopted: Vec<String> = std::mem::take(&mut self.adopted)
            .into_iter()
            .map(|c| c.id)
            .collect();
        let mut ids: Vec<String> = self
            .init
            .iter_mut()
            .chain(self.main.iter_mut())
            .filter_map(|c| {
                c.abort_tasks();
                c.id.clone()
            })
            .collect();
        // nothing known to this worker: ask the runtime at once, not only on a retry
        let unknown = ids.is_empty() || !adopted.is_empty();
        ids.extend(adopted);
        ids.sort();
        ids.dedup();
        let actions = {
            let names: Vec<&str> = self.main.iter().map(|c| c.spec.name.as_str()).collect();
            plan::plan_termination(&self.main, &names, grace)
        };
        let rt = self.deps.runtime.clone();
        for action in actions {
            match action {
                PodAction::StopAll { grace } => self.stop_all(&ids, grace).await,
                other => self.act(other).await,
            }
        }
        // remove everything, retrying a few times; leftovers are found again at adoption.
        // The runtime's full list (every container's files) is read only on a
        // retry: with many pods going at once, one list per pod is O(n^2).
        let known: Vec<String> = ids.iter().chain(&self.stray).cloned().collect();
        let mut retry = schedule::cleanup();
        let gone = |kind| error::decide(Step::Cleanup, Some(kind)) == Decision::Done;
        for attempt in 0..schedule::CLEANUP_ATTEMPTS {
            let mut failed = Vec::new();
            let mut all = known.clone();
            if (attempt > 0 || unknown)
                && let Ok(list) = rt.list().await
            {
                all.extend(
                    list.into_iter()
                        .filter(|c| c.pod.uid == self.pod.uid)
                        .map(|c| c.id),
                );
            }
            all.sort();
            all.dedup();
            for id in &all {
                if let Err(e) = rt.remove(id).await
                    && !gone(e.kind())
                {
                    failed.push(format!("container {id}: {}", error_chain(&e)));
                }
            }
            if let Err(e) = rt.remove_sandbox(&self.pod).await
                && !gone(e.kind())
            {
                failed.push(format!("sandbox: {}", error_chain(&e)));
            }
            if let Err(e) = self.deps.net.remove_pod(&self.pod).await
                && !gone(e.kind())
            {
                failed.push(format!("network: {}", error_chain(&e)));
            }
            if let Err(e) = self.deps.runtime.remove_pod_volumes(&self.pod).await {
                failed.push(format!("volumes: {}", error_chain(&e)));
            }
            if failed.is_empty() {
                break;
            }
            let m = failed.join("; ");
            tracing::warn!(pod = %self.pod.key(), attempt, err = %m, "pod cleanup incomplete");
            self.event(true, "FailedKillPod", m).await;
            tokio::time::sleep(retry.next().unwrap_or(Duration::from_secs(1))).await;
        }
        let _ = self
            .tx
            .send(WorkerMsg::Gone {
                pod: self.pod.clone(),
            })
            .await;
    }
}
