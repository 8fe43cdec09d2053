//! What the runtime and the probes report about running containers.

use super::*;

impl<I: Images, R: Runtime, N: Network> Worker<I, R, N> {
    // === events ===

    pub(super) async fn on_exit(&mut self, id: &str, st: Option<ContainerState>) {
        let Some(r) = self.find(id) else { return };
        // a lost supervisor: say so, then go on with the end the runtime recorded
        let mut lost = None;
        let st = match st {
            Some(ContainerState::Failed { reason, message })
                if reason == REASON_SUPERVISOR_LOST =>
            {
                let name = self.ctr(r).spec.name.clone();
                tracing::warn!(pod = %self.d.name, container = %name, %message, "supervisor lost");
                self.event(
                    true,
                    REASON_SUPERVISOR_LOST,
                    format!("Container {name}: {message}"),
                )
                .await;
                lost = Some(format!("{REASON_SUPERVISOR_LOST}: {message}"));
                // killed by the runtime (recorded), or ended unrecorded
                // (ContainerStatusUnknown, as `None` is)
                match self.deps.runtime.status(id).await.map(|i| i.state) {
                    Ok(s @ ContainerState::Exited { .. }) => Some(s),
                    Ok(s @ ContainerState::Failed { .. }) => Some(s),
                    _ => None,
                }
            }
            other => other,
        };
        let Some(mut exit) = plan::Exit::from_state(st, SystemTime::now()) else {
            return;
        };
        if let Some(lost) = lost {
            exit.message = lost;
        }
        let (exit_code, oom) = (exit.exit_code, exit.oom_killed);
        let policy = self.policy;
        let main_done = self.sidecars_stopped || plan::main_done(&self.main);
        let pod_name = self.d.name.clone();
        let (now_wall, now) = (SystemTime::now(), Instant::now());
        let c = self.ctr(r);
        c.abort_tasks();
        // an exit an earlier agent already saw: wait out what is left of the
        // back-off it started, rather than restarting at once
        exit.resumed_wait = c
            .persisted
            .take()
            .and_then(|p| p.remaining_for(Some(id), now_wall));
        // a sidecar restarts whatever the pod's policy, until the main
        // containers all ended
        let (init, policy) = match c.sidecar {
            true if main_done => (false, RestartPolicy::Never),
            true => (false, RestartPolicy::Always),
            false => (r.init, policy),
        };
        let out = plan::on_exit(&c.state, init, policy, exit, id, &mut c.backoff, now);
        let name = c.spec.name.clone();
        let restart = out.restart;
        tracing::info!(pod = %pod_name, container = %name, exit_code, oom, restart, "container exited");
        let backing_off =
            matches!(out.state, CtrState::BackingOff { delay, .. } if !delay.is_zero());
        // the back-off is saved with the pod's record: an agent started
        // meanwhile waits out the rest
        let saved = match &out.state {
            CtrState::BackingOff { until, .. } => Some(BackoffRecord {
                restarts: c.restarts,
                next_delay_ms: c.backoff.peek().as_millis() as u64,
                waiting: Some(BackoffWait {
                    container_id: id.to_string(),
                    until: now_wall + until.saturating_duration_since(now),
                    exit_code,
                }),
            }),
            _ => None,
        };
        c.state = out.state;
        if let Some(last) = out.last {
            c.last = Some(last);
        }
        if backing_off {
            self.event(
                true,
                "BackOff",
                format!("Back-off restarting failed container {name}"),
            )
            .await;
        }
        if let Some(saved) = saved {
            self.save_backoff(name, saved).await;
        }
    }

    pub(super) async fn on_probe(&mut self, ev: ProbeEvent) {
        let grace = self.grace();
        // main containers and sidecars have probes
        let Some(r) = self.find(&ev.container_id) else {
            return;
        };
        let c = self.ctr(r);
        let name = c.spec.name.clone();
        let readiness = c.spec.readiness_probe.is_some();
        let actions = plan::on_probe(
            &mut c.state,
            r,
            &name,
            ev.kind,
            ev.ok,
            &ev.message,
            ev.errored,
            readiness,
            grace,
        );
        for a in actions {
            self.act(a).await;
        }
    }
}
