//! Lifecycle hooks in the worker: postStart after a start (a failure kills
//! the container), preStop before every stop, inside the grace period, and
//! sidecars stopped after the main containers, in reverse order.

use std::net::SocketAddr;

use super::*;
use crate::pod::plan::hooks::{self, Hook, HookKind};
use crate::traits::{CheckOutcome, NetCheck};

/// Run `hook` in (or against) container `id`, to its end or `timeout`.
pub(super) async fn run_hook<R: Runtime>(
    rt: &R,
    id: &str,
    hook: &Hook,
    timeout: Duration,
) -> Result<(), String> {
    let run = async {
        match hook {
            Hook::Exec(argv) => match rt.exec(id, argv, timeout).await {
                Ok(r) if r.timed_out => {
                    Err(format!("command {argv:?} timed out after {timeout:?}"))
                }
                Ok(r) if r.exit_code == 0 => Ok(()),
                Ok(r) => Err(format!(
                    "command {argv:?} exited with {}: {}",
                    r.exit_code,
                    r.output.trim()
                )),
                Err(e) => Err(error_chain(&e)),
            },
            Hook::HttpGet {
                ip,
                port,
                path,
                headers,
            } => {
                let check = NetCheck::HttpGet {
                    addr: SocketAddr::new(*ip, *port),
                    path: path.clone(),
                    headers: headers.clone(),
                };
                match rt.check(&check, timeout).await {
                    CheckOutcome::Success => Ok(()),
                    CheckOutcome::Failure(m) => Err(m),
                }
            }
            // a sleep longer than the time allowed ends with it, as kubelet's
            Hook::Sleep(d) => {
                tokio::time::sleep((*d).min(timeout)).await;
                Ok(())
            }
        }
    };
    tokio::time::timeout(timeout, run)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {timeout:?}")))
}

/// One container to stop, with its preStop hook when it is running.
pub(super) struct Stopping {
    pub id: String,
    pub name: String,
    pub hook: Option<Result<Hook, String>>,
}

/// Stop `s` with the time left until `deadline` (the pod's grace, from when
/// termination began): its preStop hook first, then SIGTERM with what is
/// left (at least 2 s, as kubelet), then SIGKILL. Returns the hook's failure.
pub(super) async fn stop_through_hook<R: Runtime>(
    rt: &R,
    s: &Stopping,
    grace: Duration,
    began: Instant,
) -> Option<String> {
    let mut failed = None;
    if let Some(h) = &s.hook {
        let left = grace.saturating_sub(began.elapsed());
        let r = match h {
            Ok(h) => run_hook(rt, &s.id, h, hooks::hook_timeout(HookKind::PreStop, left)).await,
            Err(m) => Err(m.clone()),
        };
        failed = r.err();
    }
    let left = hooks::grace_after_hook(grace, began.elapsed());
    if let Err(e) = rt.stop(&s.id, left).await {
        tracing::warn!(container = %s.id, err = %error_chain(&e), "stop");
    }
    failed
}

impl<I: Images, R: Runtime, N: Network> Worker<I, R, N> {
    pub(super) fn stopping(&self, r: CtrRef) -> Option<Stopping> {
        let c = match r.init {
            true => &self.init[r.index],
            false => &self.main[r.index],
        };
        let id = c.id.clone()?;
        let ip = self.pod_ip().unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        Some(Stopping {
            id,
            name: c.spec.name.clone(),
            hook: c
                .state
                .is_running()
                .then(|| hooks::hook(&c.spec, HookKind::PreStop, ip))
                .flatten(),
        })
    }

    /// Stop one container (a failed liveness or startup probe) through its
    /// preStop hook, without holding up the worker: its exit is seen as usual.
    pub(super) fn stop_one(&mut self, r: CtrRef, grace: Duration) {
        let Some(s) = self.stopping(r) else { return };
        let rt = self.deps.runtime.clone();
        let tx = self.tx.clone();
        let pod = self.pod.clone();
        tokio::spawn(async move {
            if let Some(m) = stop_through_hook(rt.as_ref(), &s, grace, Instant::now()).await {
                let _ = tx
                    .send(WorkerMsg::Event {
                        pod,
                        warning: true,
                        reason: HookKind::PreStop.failed_reason().into(),
                        message: format!("PreStopHook for container {} failed: {m}", s.name),
                    })
                    .await;
            }
        });
    }

    /// Run the postStart hook of the container just started; on failure
    /// say so (`FailedPostStartHook`) and kill it: its exit then goes through
    /// the restart policy like any other.
    pub(super) async fn post_start(&mut self, r: CtrRef) {
        let grace = self.grace();
        let ip = self.pod_ip().unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        let c = self.ctr(r);
        let Some(id) = c.id.clone() else { return };
        let Some(h) = hooks::hook(&c.spec, HookKind::PostStart, ip) else {
            return;
        };
        let name = c.spec.name.clone();
        let rt = self.deps.runtime.clone();
        let r = match h {
            Ok(h) => {
                run_hook(
                    rt.as_ref(),
                    &id,
                    &h,
                    hooks::hook_timeout(HookKind::PostStart, grace),
                )
                .await
            }
            Err(m) => Err(m),
        };
        let Err(m) = r else { return };
        tracing::warn!(pod = %self.d.name, container = %name, err = %m, "postStart hook failed");
        // events only (`act` may start containers, which runs this again)
        for a in hooks::on_hook_failed(HookKind::PostStart, &name, &m) {
            if let PodAction::Event {
                warning,
                reason,
                message,
            } = a
            {
                self.event(warning, reason, message).await;
            }
        }
        if let Err(e) = rt.stop(&id, grace).await {
            tracing::warn!(container = %id, err = %error_chain(&e), "killing after a failed postStart hook");
        }
    }

    /// Once every main container ended for good, the sidecars are stopped
    /// (in reverse order, through their preStop hooks) and stay so.
    pub(super) async fn stop_sidecars_when_done(&mut self) {
        if self.sidecars_stopped
            || !plan::main_done(&self.main)
            || !self.init.iter().any(|c| c.sidecar && c.state.is_running())
        {
            return;
        }
        self.sidecars_stopped = true;
        let grace = self.grace();
        let began = Instant::now();
        for i in (0..self.init.len()).rev() {
            if !(self.init[i].sidecar && self.init[i].state.is_running()) {
                continue;
            }
            if let Some(s) = self.stopping(CtrRef::init(i)) {
                let rt = self.deps.runtime.clone();
                if let Some(m) = stop_through_hook(rt.as_ref(), &s, grace, began).await {
                    self.event(
                        true,
                        HookKind::PreStop.failed_reason(),
                        format!("PreStopHook for container {} failed: {m}", s.name),
                    )
                    .await;
                }
            }
        }
    }

    /// Terminate the pod's containers: the main ones (and anything not known
    /// as a sidecar) at once, each through its preStop hook; then the
    /// sidecars, last started first. All within one grace period.
    pub(super) async fn stop_all(&mut self, ids: &[String], grace: Duration) {
        let began = Instant::now();
        let sidecars: Vec<CtrRef> = (0..self.init.len())
            .rev()
            .filter(|i| self.init[*i].sidecar)
            .map(CtrRef::init)
            .collect();
        let sidecar_ids: Vec<String> = sidecars
            .iter()
            .filter_map(|r| self.init[r.index].id.clone())
            .collect();
        let known: Vec<Stopping> = (0..self.main.len())
            .map(CtrRef::main)
            .chain(
                (0..self.init.len())
                    .filter(|i| !self.init[*i].sidecar)
                    .map(CtrRef::init),
            )
            .filter_map(|r| self.stopping(r))
            .collect();
        let mut first: Vec<Stopping> = known;
        for id in ids {
            if !sidecar_ids.contains(id) && !first.iter().any(|s| &s.id == id) {
                first.push(Stopping {
                    id: id.clone(),
                    name: id.clone(),
                    hook: None,
                });
            }
        }
        let rt = self.deps.runtime.clone();
        let failed = futures::future::join_all(first.iter().map(|s| {
            let rt = rt.clone();
            async move {
                stop_through_hook(rt.as_ref(), s, grace, began)
                    .await
                    .map(|m| (s.name.clone(), m))
            }
        }))
        .await;
        let mut failed: Vec<(String, String)> = failed.into_iter().flatten().collect();
        for r in sidecars {
            if let Some(s) = self.stopping(r)
                && let Some(m) = stop_through_hook(rt.as_ref(), &s, grace, began).await
            {
                failed.push((s.name.clone(), m));
            }
        }
        for (name, m) in failed {
            self.event(
                true,
                HookKind::PreStop.failed_reason(),
                format!("PreStopHook for container {name} failed: {m}"),
            )
            .await;
        }
    }
}
