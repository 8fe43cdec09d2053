//! Pod setup (network, sandbox, volumes) and adoption of the containers an
//! earlier agent left running.

use super::*;
use crate::pod::etc_files;

/// The host's resolver configuration (what `dnsPolicy: Default` and a
/// pod without berth's DNS fall back to).
fn host_resolv_conf() -> String {
    std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default()
}

impl<I: Images, R: Runtime, N: Network> Worker<I, R, N> {
    // === prepare ===

    pub(super) async fn prepare(&mut self) -> Result<(), PodError> {
        let host_network = self.d.spec.host_network.unwrap_or(false);
        if self.net.is_none() {
            let req = PodNetRequest {
                pod: self.pod.clone(),
                host_network,
                host_ports: crate::service::host_ports(&self.d.spec),
            };
            let net = self.deps.net.ensure_pod(&req).await.map_err(|e| {
                PodError::new(
                    Reason::FailedCreatePodSandBox,
                    format!("network: {}", error_chain(&e)),
                    Some(e.kind()),
                )
            })?;
            self.net = Some(net);
            tracing::debug!(target: "berth::timing", pod = %self.pod.key(), "pod network ready");
        }
        if self.sandbox.is_none() {
            let network = self.net.clone().unwrap_or(PodNetwork {
                netns: None,
                ip: None,
                dns_servers: vec![],
                dns_search: vec![],
            });
            // spec.hostname / subdomain / setHostnameAsFQDN, as kubelet
            let host = super::super::hostname::pod_host(
                &self.d.name,
                &self.d.namespace,
                &self.d.spec,
                super::super::hostname::cluster_domain(&network.dns_search),
            )
            .map_err(|e| PodError::new(Reason::FailedCreatePodSandBox, e.to_string(), None))?;
            // the pod's hosts and resolv.conf as kubelet writes them (its own
            // `<ip> <fqdn> <hostname>` line, hostAliases, dnsPolicy and
            // dnsConfig), written by the runtime with the sandbox
            let hosts = etc_files::hosts(
                network.ip,
                &host,
                self.d.spec.host_aliases.as_deref().unwrap_or_default(),
            );
            let resolv_conf = etc_files::resolv_conf(&self.d.spec, &network, &host_resolv_conf());
            let cfg = SandboxConfig {
                pod: self.pod.clone(),
                hostname: host.uts.clone(),
                network,
                resources: container::pod_resources(&self.d.spec),
                share_process_namespace: self.d.spec.share_process_namespace == Some(true)
                    && self.d.spec.host_pid != Some(true),
                hosts,
                resolv_conf,
            };
            let sb = self.deps.runtime.ensure_sandbox(&cfg).await.map_err(|e| {
                PodError::new(
                    Reason::FailedCreatePodSandBox,
                    error_chain(&e),
                    Some(e.kind()),
                )
            })?;
            self.sandbox = Some(sb);
            tracing::debug!(target: "berth::timing", pod = %self.pod.key(), "pod sandbox ready");
        }
        self.prepare_volumes().await?;
        // group ownership once per set-up, not on every object change
        let Some(req) = super::super::fs_group::request(&self.pod, &self.d.spec, &self.prepared)
        else {
            return Ok(());
        };
        self.deps
            .runtime
            .apply_fs_group(&req)
            .await
            .map_err(|e| PodError::new(Reason::FailedMount, error_chain(&e), Some(e.kind())))
    }

    /// After a failed setup, give back the sandbox and the network (the pod's
    /// IP and hostPorts above all): a pod that cannot start holds no address,
    /// whichever step failed, and the next attempt starts clean. Nothing is
    /// given back while containers of this pod instance run (adopted after an
    /// agent restart): they still use both. A failed release is retried by
    /// the next attempt and by termination.
    pub(super) async fn release_setup(&mut self) {
        if !self.adopted.is_empty() {
            return;
        }
        self.sandbox = None;
        if let Err(e) = self.deps.runtime.remove_sandbox(&self.pod).await {
            tracing::warn!(pod = %self.pod.key(), err = %error_chain(&e), "releasing the sandbox after a failed setup");
        }
        self.net = None;
        if let Err(e) = self.deps.net.remove_pod(&self.pod).await {
            tracing::warn!(pod = %self.pod.key(), err = %error_chain(&e), "releasing the network after a failed setup");
        }
    }

    pub(super) async fn prepare_volumes(&mut self) -> Result<(), PodError> {
        let world = self.world.borrow_and_update().clone();
        let fields = self.fields();
        let planned = volumes::plan(
            &self.pod,
            &self.d.spec,
            &world.claims,
            &world.objs,
            Some(&fields),
        )
        .map_err(|e| PodError::new(Reason::FailedMount, error_chain(&e), None))?;
        let mut prepared = Prepared::new();
        for p in planned {
            let host = self
                .deps
                .runtime
                .ensure_volume(&p.request)
                .await
                .map_err(|e| PodError::new(Reason::FailedMount, error_chain(&e), Some(e.kind())))?;
            let v = PreparedVolume {
                kind: host.kind,
                path: host.path,
                read_only: p.read_only,
            };
            prepared.insert(p.request.name, v);
        }
        self.prepared = prepared;
        Ok(())
    }

    pub(super) fn pod_ip(&self) -> Option<std::net::Ipv4Addr> {
        self.net.as_ref().and_then(|n| n.ip)
    }

    // === adoption ===

    /// An adopted container is an init container: its label says so, or,
    /// identified without its labels (its spec file damaged), its name is
    /// one of the pod's init containers'.
    fn adopted_is_init(&self, c: &ContainerInfo) -> bool {
        match c.labels.get(LABEL_INIT) {
            Some(v) => v == "true",
            None => {
                let name = c.labels.get(LABEL_CONTAINER).unwrap_or(&c.name);
                self.init.iter().any(|i| &i.spec.name == name)
            }
        }
    }

    pub(super) async fn adopt(&mut self) {
        let mut existing = std::mem::take(&mut self.adopted);
        existing.sort_by_key(|c| {
            c.labels
                .get(LABEL_RESTARTS)
                .and_then(|r| r.parse::<u32>().ok())
                .unwrap_or(0)
        });
        let any_main = existing.iter().any(|c| !self.adopted_is_init(c));
        let mut stale = Vec::new();
        let mut adopted_exits = Vec::new();
        for info in existing.into_iter().rev() {
            let name = info
                .labels
                .get(LABEL_CONTAINER)
                .cloned()
                .unwrap_or_else(|| info.name.clone());
            let is_init = self.adopted_is_init(&info);
            let list = if is_init {
                &mut self.init
            } else {
                &mut self.main
            };
            let Some(ctr) = list.iter_mut().find(|c| c.spec.name == name) else {
                stale.push(info.id);
                continue;
            };
            if ctr.id.is_some() {
                stale.push(info.id);
                continue;
            }
            ctr.id = Some(info.id.clone());
            ctr.log_path = Some(info.log_path.clone());
            ctr.restarts = info
                .labels
                .get(LABEL_RESTARTS)
                .and_then(|r| r.parse().ok())
                .unwrap_or(0);
            ctr.image_id = info
                .labels
                .get("berth.dev/image-id")
                .cloned()
                .unwrap_or_default();
            match info.state {
                ContainerState::Running { started_at, .. } => {
                    ctr.state = plan::on_started(
                        is_init && !ctr.sidecar,
                        started_at,
                        ctr.spec.startup_probe.is_some(),
                        ctr.spec.readiness_probe.is_some(),
                    );
                }
                other => adopted_exits.push((info.id, Some(other))),
            }
        }
        for id in stale {
            if self.deps.runtime.remove(&id).await.is_err() {
                self.stray.push(id);
            }
        }
        if any_main {
            // sidecars keep their own state: adopted running, or started again
            for c in self.init.iter_mut().filter(|c| !c.sidecar) {
                c.state = CtrState::Terminated(Terminated {
                    exit_code: 0,
                    signal: None,
                    reason: "Completed".into(),
                    message: String::new(),
                    started_at: None,
                    finished_at: SystemTime::now(),
                    container_id: c.id.clone().unwrap_or_default(),
                });
            }
        }
        // watch the adopted running ones
        let running: Vec<CtrRef> = self
            .init
            .iter()
            .enumerate()
            .map(|(i, c)| (CtrRef::init(i), c))
            .chain(
                self.main
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (CtrRef::main(i), c)),
            )
            .filter(|(_, c)| c.state.is_running())
            .map(|(r, _)| r)
            .collect();
        for r in running {
            self.watch_container(r);
        }
        for (id, st) in adopted_exits {
            self.on_exit(&id, st).await;
        }
        // a container that failed to start, waiting out its back-off when
        // the agent stopped: it keeps waiting
        let now = SystemTime::now();
        for c in self.init.iter_mut().chain(self.main.iter_mut()) {
            if c.id.is_some() || c.state.is_done() {
                continue;
            }
            if let Some(left) = c
                .persisted
                .take()
                .and_then(|p| p.remaining_for(None, now))
                .filter(|d| !d.is_zero())
            {
                c.state = CtrState::Waiting {
                    reason: Reason::CrashLoopBackOff,
                    message: format!("back-off {}s restarting failed container", left.as_secs()),
                    retry_at: Some(Instant::now() + left),
                };
            }
        }
    }
}
