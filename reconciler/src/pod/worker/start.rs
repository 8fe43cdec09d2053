//! Starting a container: image, configuration, run, then its exit watcher
//! and probes.

use super::*;

impl<I: Images, R: Runtime, N: Network> Worker<I, R, N> {
    pub(super) async fn start(&mut self, r: CtrRef) {
        let spec = {
            let c = self.ctr(r);
            c.state = CtrState::Starting;
            c.spec.clone()
        };
        let image_ref = spec.image.clone().unwrap_or_default();
        let policy = match spec.image_pull_policy.as_deref() {
            // a rollback uses the image the host has (see World::no_pull)
            Some("Always") if self.world.borrow().no_pull.contains(&image_ref) => {
                PullPolicy::IfNotPresent
            }
            Some("Always") => PullPolicy::Always,
            Some("Never") => PullPolicy::Never,
            _ => PullPolicy::IfNotPresent,
        };
        // image
        let image = match self.deps.images.ensure(&image_ref, policy).await {
            Ok(img) => img,
            Err(e) => {
                let err = PodError::new(
                    I::failure_reason(&e).into(),
                    error_chain(&e),
                    Some(e.kind()),
                );
                self.event(
                    true,
                    "Failed",
                    format!("Failed to pull image \"{image_ref}\": {}", err.message),
                )
                .await;
                let c = self.ctr(r);
                let after = match error::error_policy(Step::Pull, err.kind, &mut c.pull_backoff) {
                    Policy::Retry(after) => after,
                    Policy::Fail(_) | Policy::Done => MIN_RETRY,
                };
                c.state = plan::on_retry(&err, after, !c.image_id.is_empty(), Instant::now());
                return;
            }
        };
        tracing::debug!(target: "berth::timing", pod = %self.pod.key(), container = %spec.name, "image ready");
        self.event(
            false,
            "Pulled",
            format!(
                "Container image \"{image_ref}\" is ready ({})",
                image.image_id
            ),
        )
        .await;
        self.ctr(r).pull_backoff = schedule::pull();
        // the previous attempt's container goes before the new one starts
        let had_run = {
            let c = self.ctr(r);
            c.image_id = image.image_id.clone();
            c.id.take()
        };
        if let Some(old) = &had_run
            && let Err(e) = self.deps.runtime.remove(old).await
        {
            tracing::warn!(container = %old, err = %error_chain(&e), "removing previous container");
            self.stray.push(old.clone());
        }
        let restarts = {
            let c = self.ctr(r);
            if had_run.is_some() {
                c.restarts += 1;
            }
            c.restarts
        };
        let cfg = match self.container_config(&spec, image, r.init, restarts) {
            Ok(cfg) => cfg,
            Err(err) => {
                self.event(true, "Failed", format!("Error: {}", err.message))
                    .await;
                let c = self.ctr(r);
                let after = match error::error_policy(Step::Config, err.kind, &mut c.config_backoff)
                {
                    Policy::Retry(after) => after,
                    Policy::Fail(_) | Policy::Done => MIN_RETRY,
                };
                c.state = plan::on_retry(&err, after, true, Instant::now());
                return;
            }
        };
        match self.deps.runtime.run(&cfg).await {
            Ok(info) => {
                tracing::debug!(target: "berth::timing", pod = %self.pod.key(), container = %spec.name, "container running");
                let started_at = match info.state {
                    ContainerState::Running { started_at, .. } => started_at,
                    _ => SystemTime::now(),
                };
                let c = self.ctr(r);
                c.id = Some(info.id.clone());
                c.log_path = Some(info.log_path.clone());
                let plain_init = r.init && !c.sidecar;
                c.state = plan::on_started(
                    plain_init,
                    started_at,
                    c.spec.startup_probe.is_some(),
                    c.spec.readiness_probe.is_some(),
                );
                let name = c.spec.name.clone();
                self.event(false, "Created", format!("Created container {name}"))
                    .await;
                self.event(false, "Started", format!("Started container {name}"))
                    .await;
                // kubelet runs postStart before it goes on (the next init
                // container or sidecar waits for it); probes start after it
                self.post_start(r).await;
                self.watch_container(r);
            }
            Err(e) => {
                let kind = e.kind();
                let reason = match error::decide(Step::Run, Some(kind)) {
                    Decision::Fail(reason) => reason,
                    Decision::Retry { .. } | Decision::Done => Reason::RunContainerError,
                };
                let err = PodError::new(reason, error_chain(&e), Some(kind));
                self.event(true, "Failed", format!("Error: {}", err.message))
                    .await;
                // nothing ran: keep no id, but count it as a failed run for back-off
                let policy = self.policy;
                let (now_wall, now) = (SystemTime::now(), Instant::now());
                let c = self.ctr(r);
                c.id = None;
                // a sidecar is started again whatever the pod's policy
                let (init, policy) = match c.sidecar {
                    true => (false, RestartPolicy::Always),
                    false => (r.init, policy),
                };
                let out =
                    plan::on_run_failed(init, policy, &err, &cfg.id, &mut c.backoff, now_wall, now);
                c.state = out.state;
                if let Some(last) = out.last {
                    c.last = Some(last);
                }
                // a restart waits out its back-off: saved, so that an agent
                // started meanwhile keeps waiting
                if out.restart
                    && let Some(retry_at) = c.state.not_before()
                {
                    let saved = BackoffRecord {
                        restarts: c.restarts,
                        next_delay_ms: c.backoff.peek().as_millis() as u64,
                        waiting: Some(BackoffWait {
                            container_id: cfg.id.clone(),
                            until: now_wall + retry_at.saturating_duration_since(now),
                            exit_code: 128,
                        }),
                    };
                    let name = c.spec.name.clone();
                    self.save_backoff(name, saved).await;
                }
            }
        }
    }

    pub(super) fn container_config(
        &self,
        spec: &Container,
        image: crate::traits::ImageInfo,
        init: bool,
        restarts: u32,
    ) -> Result<ContainerConfig, PodError> {
        let cfg_err = |m: String| PodError::new(Reason::CreateContainerConfigError, m, None);
        let world = self.world.borrow().clone();
        let fields = self.fields();
        // Service variables go under what the container sets itself
        // (envFrom, env), over the image's, as kubelet's
        let links = self.d.spec.enable_service_links.unwrap_or(true);
        let service_env = crate::service_env::variables(&world.services, &self.d.namespace, links);
        let mut env_image = image.clone();
        env_image
            .config
            .env
            .extend(service_env.iter().map(|(k, v)| format!("{k}={v}")));
        let env = container::environment(spec, &env_image, &fields, &world.objs)
            .map_err(|e| cfg_err(e.to_string()))?;
        let args = container::argv(spec, &image, &env).map_err(|e| cfg_err(e.to_string()))?;
        let mut resources = container::resources(spec).map_err(|e| cfg_err(e.to_string()))?;
        resources.pids_limit = None;
        let mounts = volumes::mounts_for(spec, &self.prepared)
            .map_err(|e| PodError::new(Reason::FailedMount, e.to_string(), None))?;
        let sandbox = self
            .sandbox
            .clone()
            .ok_or_else(|| cfg_err("pod sandbox is not ready".into()))?;
        let pod_sc = self.d.spec.security_context.as_ref();
        let mut security = container::security(spec, pod_sc);
        security.seccomp_localhost =
            crate::seccomp_localhost::profile(spec, pod_sc, &self.settings.state_dir)
                .map_err(|e| cfg_err(error_chain(&e)))?;
        security.apparmor_profile =
            crate::apparmor::localhost_profile(spec, pod_sc, &self.d.annotations);
        security.host_pid = self.d.spec.host_pid == Some(true);
        security.host_ipc = self.d.spec.host_ipc == Some(true);
        let mut labels = std::collections::BTreeMap::new();
        labels.insert(LABEL_CONTAINER.to_string(), spec.name.clone());
        labels.insert(LABEL_RESTARTS.to_string(), restarts.to_string());
        labels.insert(LABEL_INIT.to_string(), init.to_string());
        labels.insert(LABEL_SPEC_HASH.to_string(), self.d.spec_hash.clone());
        labels.insert("berth.dev/image-id".to_string(), image.image_id.clone());
        Ok(ContainerConfig {
            id: format!("{}-{}-{}", self.pod.uid, spec.name, restarts),
            pod: self.pod.clone(),
            name: spec.name.clone(),
            labels,
            working_dir: container::working_dir(spec, &image),
            image_user: image.config.user.clone().filter(|u| !u.is_empty()),
            env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
            args,
            image,
            sandbox,
            mounts,
            resources,
            security,
        })
    }

    /// The pod's own fields (downward API, `$(VAR)` sources).
    pub(super) fn fields(&self) -> PodFields<'_> {
        PodFields {
            namespace: &self.d.namespace,
            name: &self.d.name,
            uid: &self.pod.uid,
            node_name: &self.settings.node_name,
            labels: &self.d.labels,
            annotations: &self.d.annotations,
            pod_ip: self.pod_ip(),
            host_ip: self.settings.host_ip,
            service_account: self
                .d
                .spec
                .service_account_name
                .as_deref()
                .unwrap_or("default"),
            containers: &self.all_containers,
        }
    }

    /// Start the exit watcher and the probes of a running container.
    pub(super) fn watch_container(&mut self, r: CtrRef) {
        let rt = self.deps.runtime.clone();
        let exit_tx = self.exit_tx.clone();
        let ip = self.pod_ip().unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        let probe_tx = self.probe_tx.clone();
        let c = self.ctr(r);
        let Some(id) = c.id.clone() else { return };
        c.abort_tasks();
        let wid = id.clone();
        let wrt = rt.clone();
        let h = tokio::spawn(async move {
            let st = wrt.wait(&wid).await.ok();
            let _ = exit_tx.send((wid, st)).await;
        });
        c.tasks.push(h.abort_handle());
        if r.init && !c.sidecar {
            return;
        }
        let target = ProbeTarget {
            container: c.spec.name.clone(),
            container_id: id,
            ip,
            ports: c.spec.ports.clone().unwrap_or_default(),
        };
        if let Some(p) = c.spec.startup_probe.clone() {
            let h = tokio::spawn(probe::run_probe(
                rt,
                ProbeKind::Startup,
                p,
                target,
                probe_tx,
            ));
            c.tasks.push(h.abort_handle());
        } else {
            start_after_startup(c, rt, target, probe_tx);
        }
    }
}

pub(super) fn start_after_startup<R: Runtime>(
    c: &mut Ctr,
    rt: Arc<R>,
    target: ProbeTarget,
    tx: mpsc::Sender<ProbeEvent>,
) {
    if let Some(p) = c.spec.liveness_probe.clone() {
        let h = tokio::spawn(probe::run_probe(
            rt.clone(),
            ProbeKind::Liveness,
            p,
            target.clone(),
            tx.clone(),
        ));
        c.tasks.push(h.abort_handle());
    }
    // without a readiness probe the planner made the container ready
    if let Some(p) = c.spec.readiness_probe.clone() {
        let h = tokio::spawn(probe::run_probe(rt, ProbeKind::Readiness, p, target, tx));
        c.tasks.push(h.abort_handle());
    }
}
