//! The pod worker: a small state machine per pod instance.
//!
//! ```text
//! prepare (net, sandbox, volumes) --retry--> adopt existing containers
//!   -> init containers in order (each must exit 0)
//!   -> containers: start, watch exits and probes, restart with back-off
//!   -> on stop(grace): SIGTERM..SIGKILL all, remove containers, sandbox, network
//! ```
//!
//! If the controller goes away (agent shutdown) the worker ends without
//! touching anything: workloads outlive the agent.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_spec::k8s_openapi::api::core::v1::{Container, PodStatus};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::status::{self, CState, ContainerView, Terminated};
use super::volumes::{self, Prepared, VolumeDirs};
use super::{Deps, DesiredPod, WorkerHandle, WorkerInit, WorkerMsg, WorkerSettings, World};
use crate::backoff::{BackoffRecord, BackoffWait, ResetAfter};
use crate::container::{self, PodFields};
use crate::probe::{self, ProbeEvent, ProbeKind, ProbeTarget};
use crate::traits::{
    ContainerConfig, ContainerInfo, ContainerState, Images, Network, PodNetRequest, PodNetwork,
    PodRef, PullPolicy, Runtime, Sandbox, SandboxConfig, error_chain,
};

pub const LABEL_CONTAINER: &str = "berth.dev/container";
pub const LABEL_RESTARTS: &str = "berth.dev/restarts";
pub const LABEL_INIT: &str = "berth.dev/init";
pub const LABEL_SPEC_HASH: &str = "berth.dev/spec-hash";

/// Reason of the `ContainerState::Failed` a runtime's `wait` returns when the
/// container's supervisor died before it recorded the end: the runtime has
/// killed what was left and recorded the end, which `status` then reports.
pub const REASON_SUPERVISOR_LOST: &str = "SupervisorLost";

/// Start a worker task, supervised: if it panics, the controller gets a
/// [`WorkerMsg::Crashed`] (and starts a new worker after a back-off).
pub fn spawn<I: Images, R: Runtime, N: Network>(init: WorkerInit<I, R, N>) -> WorkerHandle {
    let (stop_tx, stop_rx) = watch::channel(None);
    let pod = init.pod.clone();
    let tx = init.tx.clone();
    let inner = tokio::spawn(Worker::new(init, stop_rx).run());
    let task = tokio::spawn(async move {
        if let Err(e) = inner.await
            && e.is_panic()
        {
            let message = crate::controller::panic_message(e.into_panic().as_ref());
            tracing::error!(pod = %pod.key(), %message, "pod worker panicked");
            let _ = tx.send(WorkerMsg::Crashed { pod, message }).await;
        }
    });
    WorkerHandle {
        stop: stop_tx,
        task,
    }
}

struct Ctr {
    spec: Container,
    id: Option<String>,
    restarts: u32,
    state: CState,
    last: Option<CState>,
    ready: bool,
    started: bool,
    backoff: ResetAfter,
    /// Image pull retries back off on their own, so they don't eat the crash back-off.
    pull_backoff: ResetAfter,
    restart_at: Option<Instant>,
    image_id: String,
    running_since: Option<SystemTime>,
    /// Init: exited 0. Main: terminated and not restarting.
    done: bool,
    log_path: Option<std::path::PathBuf>,
    tasks: Vec<AbortHandle>,
    /// Back-off saved by an earlier agent, until the exit it waits after is seen.
    persisted: Option<BackoffRecord>,
}

impl Ctr {
    fn new(spec: Container, init: bool) -> Self {
        Self {
            spec,
            id: None,
            restarts: 0,
            state: CState::waiting(
                if init {
                    "PodInitializing"
                } else {
                    "ContainerCreating"
                },
                "",
            ),
            last: None,
            ready: false,
            started: false,
            backoff: ResetAfter::kubernetes(),
            pull_backoff: ResetAfter::kubernetes(),
            restart_at: None,
            image_id: String::new(),
            running_since: None,
            done: false,
            log_path: None,
            tasks: Vec::new(),
            persisted: None,
        }
    }

    /// Continue the back-off an earlier agent saved.
    fn resume(&mut self, saved: &BackoffRecord) {
        self.backoff = ResetAfter::resume_kubernetes(Duration::from_millis(saved.next_delay_ms));
        self.restarts = self.restarts.max(saved.restarts);
        self.persisted = Some(saved.clone());
    }

    fn abort_tasks(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }

    fn view(&self) -> ContainerView {
        ContainerView {
            name: self.spec.name.clone(),
            image: self.spec.image.clone().unwrap_or_default(),
            image_id: self.image_id.clone(),
            container_id: self.id.clone(),
            state: self.state.clone(),
            last_state: self.last.clone(),
            ready: self.ready,
            started: self.started,
            restart_count: self.restarts as i32,
        }
    }
}

enum Wake {
    Stop(Duration),
    Detach,
    Exit(String, Option<ContainerState>),
    Probe(ProbeEvent),
    World,
    Timer,
}

struct Worker<I, R, N> {
    deps: Deps<I, R, N>,
    settings: Arc<WorkerSettings>,
    pod: PodRef,
    d: DesiredPod,
    world: watch::Receiver<Arc<World>>,
    tx: mpsc::Sender<WorkerMsg>,
    stop_rx: watch::Receiver<Option<Duration>>,
    adopted: Vec<ContainerInfo>,
    net: Option<PodNetwork>,
    sandbox: Option<Sandbox>,
    prepared: Prepared,
    init: Vec<Ctr>,
    main: Vec<Ctr>,
    init_done: bool,
    init_failed: bool,
    exit_tx: mpsc::Sender<(String, Option<ContainerState>)>,
    exit_rx: mpsc::Receiver<(String, Option<ContainerState>)>,
    probe_tx: mpsc::Sender<ProbeEvent>,
    probe_rx: mpsc::Receiver<ProbeEvent>,
    start_time: SystemTime,
    message: Option<(String, String)>,
    last_status: Option<PodStatus>,
    /// Containers of this pod whose removal failed earlier (removed again at the end).
    stray: Vec<String>,
}

impl<I: Images, R: Runtime, N: Network> Worker<I, R, N> {
    fn new(init: WorkerInit<I, R, N>, stop_rx: watch::Receiver<Option<Duration>>) -> Self {
        let (exit_tx, exit_rx) = mpsc::channel(64);
        let (probe_tx, probe_rx) = mpsc::channel(64);
        let spec = &init.desired.spec;
        let mut w = Self {
            init: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| Ctr::new(c.clone(), true))
                .collect(),
            main: spec
                .containers
                .iter()
                .map(|c| Ctr::new(c.clone(), false))
                .collect(),
            deps: init.deps,
            settings: init.settings,
            pod: init.pod,
            d: init.desired,
            world: init.world,
            tx: init.tx,
            stop_rx,
            adopted: init.adopted,
            net: None,
            sandbox: None,
            prepared: Prepared::new(),
            init_done: false,
            init_failed: false,
            exit_tx,
            exit_rx,
            probe_tx,
            probe_rx,
            start_time: SystemTime::now(),
            message: None,
            last_status: None,
            stray: Vec::new(),
        };
        for c in w.init.iter_mut().chain(w.main.iter_mut()) {
            if let Some(saved) = init.backoff.get(&c.spec.name) {
                c.resume(saved);
            }
        }
        w
    }

    fn dirs(&self) -> VolumeDirs {
        VolumeDirs {
            state_dir: self.settings.state_dir.clone(),
            run_dir: self.settings.run_dir.clone(),
        }
    }

    fn grace(&self) -> Duration {
        Duration::from_secs(
            self.d
                .spec
                .termination_grace_period_seconds
                .unwrap_or(30)
                .max(0) as u64,
        )
    }

    fn restart_policy(&self) -> &str {
        self.d.spec.restart_policy.as_deref().unwrap_or("Always")
    }

    async fn event(&self, warning: bool, reason: &str, message: String) {
        let _ = self
            .tx
            .send(WorkerMsg::Event {
                pod: self.pod.clone(),
                warning,
                reason: reason.to_string(),
                message,
            })
            .await;
    }

    async fn run(mut self) {
        self.publish().await;
        let mut delay = Duration::from_millis(500);
        loop {
            // a pod deleted before it was set up (e.g. adopted and pruned in
            // the same pass) is only taken down, never set up first
            let stop = *self.stop_rx.borrow();
            if let Some(grace) = stop {
                return self.terminate(grace).await;
            }
            match self.prepare().await {
                Ok(()) => {
                    self.message = None;
                    break;
                }
                Err((reason, msg)) => {
                    tracing::warn!(pod = %self.pod.key(), %reason, %msg, "pod setup failed");
                    self.release_setup().await;
                    self.event(true, &reason, msg.clone()).await;
                    self.message = Some((reason, msg));
                    self.publish().await;
                }
            }
            match self.wait(Some(Instant::now() + delay)).await {
                Wake::Stop(grace) => return self.terminate(grace).await,
                Wake::Detach => return,
                _ => {}
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
        self.adopt().await;
        loop {
            self.drive().await;
            self.publish().await;
            let next = self.next_wake();
            match self.wait(next).await {
                Wake::Stop(grace) => return self.terminate(grace).await,
                Wake::Detach => {
                    for c in self.init.iter_mut().chain(self.main.iter_mut()) {
                        c.abort_tasks();
                    }
                    return;
                }
                Wake::Exit(id, st) => self.on_exit(&id, st).await,
                Wake::Probe(ev) => self.on_probe(ev).await,
                Wake::World => {
                    if let Err((reason, msg)) = self.prepare_volumes() {
                        self.event(true, &reason, msg).await;
                    }
                }
                Wake::Timer => {}
            }
        }
    }

    async fn wait(&mut self, until: Option<Instant>) -> Wake {
        let sleep = async {
            match until {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = self.stop_rx.changed() => match r {
                Err(_) => Wake::Detach,
                Ok(()) => match *self.stop_rx.borrow() {
                    Some(g) => Wake::Stop(g),
                    None => Wake::Timer,
                },
            },
            Some((id, st)) = self.exit_rx.recv() => Wake::Exit(id, st),
            Some(ev) = self.probe_rx.recv() => Wake::Probe(ev),
            Ok(()) = self.world.changed() => Wake::World,
            _ = sleep => Wake::Timer,
        }
    }

    // === prepare ===

    async fn prepare(&mut self) -> Result<(), (String, String)> {
        let host_network = self.d.spec.host_network.unwrap_or(false);
        if self.net.is_none() {
            let req = PodNetRequest {
                pod: self.pod.clone(),
                host_network,
                host_ports: crate::service::host_ports(&self.d.spec),
            };
            let net = self.deps.net.ensure_pod(&req).await.map_err(|e| {
                (
                    "FailedCreatePodSandBox".to_string(),
                    format!("network: {}", error_chain(&e)),
                )
            })?;
            self.net = Some(net);
        }
        if self.sandbox.is_none() {
            let cfg = SandboxConfig {
                pod: self.pod.clone(),
                // at most 63 bytes, as kubelet (the kernel refuses more than 64)
                hostname: berth_spec::validate::names::pod_hostname(&self.d.name).to_string(),
                network: self.net.clone().unwrap_or(PodNetwork {
                    netns: None,
                    ip: None,
                    dns_servers: vec![],
                    dns_search: vec![],
                }),
                resources: container::pod_resources(&self.d.spec),
            };
            let sb = self
                .deps
                .runtime
                .ensure_sandbox(&cfg)
                .await
                .map_err(|e| ("FailedCreatePodSandBox".to_string(), error_chain(&e)))?;
            self.sandbox = Some(sb);
        }
        self.prepare_volumes()
    }

    /// After a failed setup, give back the sandbox and the network (the pod's
    /// IP and hostPorts above all): a pod that cannot start holds no address,
    /// whichever step failed, and the next attempt starts clean. Nothing is
    /// given back while containers of this pod instance run (adopted after an
    /// agent restart): they still use both. A failed release is retried by
    /// the next attempt and by termination.
    async fn release_setup(&mut self) {
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

    fn prepare_volumes(&mut self) -> Result<(), (String, String)> {
        let world = self.world.borrow_and_update().clone();
        let p = volumes::prepare(
            &self.dirs(),
            &self.pod,
            &self.d.spec,
            &world.claims,
            &world.objs,
        )
        .map_err(|e| ("FailedMount".to_string(), error_chain(&e)))?;
        self.prepared = p;
        Ok(())
    }

    fn pod_ip(&self) -> Option<std::net::Ipv4Addr> {
        self.net.as_ref().and_then(|n| n.ip)
    }

    // === adoption ===

    async fn adopt(&mut self) {
        let mut existing = std::mem::take(&mut self.adopted);
        existing.sort_by_key(|c| {
            c.labels
                .get(LABEL_RESTARTS)
                .and_then(|r| r.parse::<u32>().ok())
                .unwrap_or(0)
        });
        let any_main = existing
            .iter()
            .any(|c| c.labels.get(LABEL_INIT).map(String::as_str) != Some("true"));
        let mut stale = Vec::new();
        let mut adopted_exits = Vec::new();
        for info in existing.into_iter().rev() {
            let name = info
                .labels
                .get(LABEL_CONTAINER)
                .cloned()
                .unwrap_or_else(|| info.name.clone());
            let is_init = info.labels.get(LABEL_INIT).map(String::as_str) == Some("true");
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
                    ctr.state = CState::Running { started_at };
                    ctr.running_since = Some(started_at);
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
            for c in &mut self.init {
                c.done = true;
                c.state = CState::Terminated(Terminated {
                    exit_code: 0,
                    signal: None,
                    reason: "Completed".into(),
                    message: String::new(),
                    started_at: None,
                    finished_at: SystemTime::now(),
                    container_id: c.id.clone().unwrap_or_default(),
                });
            }
            self.init_done = true;
        }
        // watch the adopted running ones
        let running: Vec<(usize, bool)> = self
            .init
            .iter()
            .enumerate()
            .map(|(i, c)| (i, true, c))
            .chain(self.main.iter().enumerate().map(|(i, c)| (i, false, c)))
            .filter(|(_, _, c)| matches!(c.state, CState::Running { .. }))
            .map(|(i, init, _)| (i, init))
            .collect();
        for (i, init) in running {
            self.watch_container(i, init);
        }
        for (id, st) in adopted_exits {
            self.on_exit(&id, st).await;
        }
        // a container that failed to start, waiting out its back-off when
        // the agent stopped: it keeps waiting
        let now = SystemTime::now();
        for c in self.init.iter_mut().chain(self.main.iter_mut()) {
            if c.id.is_some() || c.done {
                continue;
            }
            if let Some(left) = c
                .persisted
                .take()
                .and_then(|p| p.remaining_for(None, now))
                .filter(|d| !d.is_zero())
            {
                c.restart_at = Some(Instant::now() + left);
                c.state = CState::waiting(
                    "CrashLoopBackOff",
                    format!("back-off {}s restarting failed container", left.as_secs()),
                );
            }
        }
    }

    // === driving ===

    fn next_wake(&self) -> Option<Instant> {
        self.init
            .iter()
            .chain(self.main.iter())
            .filter(|c| !c.done)
            .filter_map(|c| c.restart_at)
            .min()
    }

    async fn drive(&mut self) {
        if self.init_failed {
            return;
        }
        let now = Instant::now();
        if !self.init_done {
            for i in 0..self.init.len() {
                let c = &self.init[i];
                if c.done {
                    continue;
                }
                if matches!(c.state, CState::Running { .. }) {
                    return;
                }
                if c.restart_at.is_some_and(|t| t > now) {
                    return;
                }
                self.start(i, true).await;
                return;
            }
            self.init_done = true;
        }
        for i in 0..self.main.len() {
            let c = &self.main[i];
            if c.done || matches!(c.state, CState::Running { .. }) {
                continue;
            }
            if c.restart_at.is_some_and(|t| t > now) {
                continue;
            }
            if self.stop_requested() {
                return;
            }
            self.start(i, false).await;
        }
    }

    fn stop_requested(&self) -> bool {
        self.stop_rx.borrow().is_some()
    }

    fn ctr(&mut self, i: usize, init: bool) -> &mut Ctr {
        if init {
            &mut self.init[i]
        } else {
            &mut self.main[i]
        }
    }

    async fn start(&mut self, i: usize, init: bool) {
        let spec = self.ctr(i, init).spec.clone();
        let image_ref = spec.image.clone().unwrap_or_default();
        let policy = match spec.image_pull_policy.as_deref() {
            Some("Always") => PullPolicy::Always,
            Some("Never") => PullPolicy::Never,
            _ => PullPolicy::IfNotPresent,
        };
        // image
        let image = match self.deps.images.ensure(&image_ref, policy).await {
            Ok(img) => img,
            Err(e) => {
                let reason = match I::failure_reason(&e) {
                    crate::traits::ImageFailureReason::InvalidImageName => "InvalidImageName",
                    crate::traits::ImageFailureReason::ErrImageNeverPull => "ErrImageNeverPull",
                    crate::traits::ImageFailureReason::ErrImagePull => "ErrImagePull",
                };
                let msg = error_chain(&e);
                self.event(
                    true,
                    "Failed",
                    format!("Failed to pull image \"{image_ref}\": {msg}"),
                )
                .await;
                let c = self.ctr(i, init);
                let delay = c
                    .pull_backoff
                    .delay_after_run(Duration::ZERO)
                    .max(Duration::from_secs(1));
                c.restart_at = Some(Instant::now() + delay);
                c.state = CState::waiting(
                    if c.image_id.is_empty()
                        && reason == "ErrImagePull"
                        && delay > Duration::from_secs(1)
                    {
                        "ImagePullBackOff"
                    } else {
                        reason
                    },
                    msg,
                );
                return;
            }
        };
        self.event(
            false,
            "Pulled",
            format!(
                "Container image \"{image_ref}\" is ready ({})",
                image.image_id
            ),
        )
        .await;
        self.ctr(i, init).pull_backoff = ResetAfter::kubernetes();
        // the previous attempt's container goes before the new one starts
        let had_run = {
            let c = self.ctr(i, init);
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
            let c = self.ctr(i, init);
            if had_run.is_some() {
                c.restarts += 1;
            }
            c.restarts
        };
        let cfg = match self.container_config(&spec, image, init, restarts) {
            Ok(cfg) => cfg,
            Err((reason, msg)) => {
                self.event(true, "Failed", format!("Error: {msg}")).await;
                let c = self.ctr(i, init);
                c.state = CState::waiting(&reason, msg);
                c.restart_at = Some(Instant::now() + Duration::from_secs(10));
                return;
            }
        };
        match self.deps.runtime.run(&cfg).await {
            Ok(info) => {
                let started_at = match info.state {
                    ContainerState::Running { started_at, .. } => started_at,
                    _ => SystemTime::now(),
                };
                let c = self.ctr(i, init);
                c.id = Some(info.id.clone());
                c.log_path = Some(info.log_path.clone());
                c.state = CState::Running { started_at };
                c.running_since = Some(started_at);
                c.restart_at = None;
                let name = c.spec.name.clone();
                self.event(false, "Created", format!("Created container {name}"))
                    .await;
                self.event(false, "Started", format!("Started container {name}"))
                    .await;
                self.watch_container(i, init);
            }
            Err(e) => {
                let msg = error_chain(&e);
                let reason = match crate::traits::Classify::kind(&e) {
                    crate::traits::ErrorKind::Invalid => "CreateContainerError",
                    _ => "RunContainerError",
                };
                self.event(true, "Failed", format!("Error: {msg}")).await;
                let now = SystemTime::now();
                let term = Terminated {
                    exit_code: 128,
                    signal: None,
                    reason: "ContainerCannotRun".into(),
                    message: msg.clone(),
                    started_at: None,
                    finished_at: now,
                    container_id: cfg.id.clone(),
                };
                // nothing ran: keep no id, but count it as a failed run for back-off
                let restart = self.should_restart(init, 128);
                let pod_name = self.d.name.clone();
                let c = self.ctr(i, init);
                c.id = None;
                if restart {
                    let delay = c
                        .backoff
                        .delay_after_run(Duration::ZERO)
                        .max(Duration::from_secs(1));
                    c.last = Some(CState::Terminated(term));
                    c.state = CState::waiting(reason, msg);
                    c.restart_at = Some(Instant::now() + delay);
                    let _ = pod_name;
                    let saved = BackoffRecord {
                        restarts: c.restarts,
                        next_delay_ms: c.backoff.peek().as_millis() as u64,
                        waiting: Some(BackoffWait {
                            container_id: cfg.id.clone(),
                            until: now + delay,
                            exit_code: 128,
                        }),
                    };
                    let name = c.spec.name.clone();
                    self.save_backoff(name, saved).await;
                } else {
                    c.state = CState::Terminated(term);
                    c.done = true;
                    if init {
                        self.init_failed = true;
                    }
                }
            }
        }
    }

    fn container_config(
        &self,
        spec: &Container,
        image: crate::traits::ImageInfo,
        init: bool,
        restarts: u32,
    ) -> Result<ContainerConfig, (String, String)> {
        let cfg_err = |m: String| ("CreateContainerConfigError".to_string(), m);
        let world = self.world.borrow().clone();
        let fields = PodFields {
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
        };
        let env = container::environment(spec, &image, &fields, &world.objs)
            .map_err(|e| cfg_err(e.to_string()))?;
        let args = container::argv(spec, &image, &env).map_err(|e| cfg_err(e.to_string()))?;
        let mut resources = container::resources(spec).map_err(|e| cfg_err(e.to_string()))?;
        resources.pids_limit = None;
        let mounts = volumes::mounts_for(spec, &self.prepared)
            .map_err(|e| ("FailedMount".to_string(), e.to_string()))?;
        let sandbox = self
            .sandbox
            .clone()
            .ok_or_else(|| cfg_err("pod sandbox is not ready".into()))?;
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
            security: container::security(spec, self.d.spec.security_context.as_ref()),
        })
    }

    /// Start the exit watcher and the probes of a running container.
    fn watch_container(&mut self, i: usize, init: bool) {
        let rt = self.deps.runtime.clone();
        let exit_tx = self.exit_tx.clone();
        let ip = self.pod_ip().unwrap_or(std::net::Ipv4Addr::LOCALHOST);
        let probe_tx = self.probe_tx.clone();
        let c = self.ctr(i, init);
        let Some(id) = c.id.clone() else { return };
        c.abort_tasks();
        let wid = id.clone();
        let wrt = rt.clone();
        let h = tokio::spawn(async move {
            let st = wrt.wait(&wid).await.ok();
            let _ = exit_tx.send((wid, st)).await;
        });
        c.tasks.push(h.abort_handle());
        c.ready = false;
        if init {
            return;
        }
        let target = ProbeTarget {
            container: c.spec.name.clone(),
            container_id: id,
            ip,
            ports: c.spec.ports.clone().unwrap_or_default(),
        };
        if let Some(p) = c.spec.startup_probe.clone() {
            c.started = false;
            let h = tokio::spawn(probe::run_probe(
                rt,
                ProbeKind::Startup,
                p,
                target,
                probe_tx,
            ));
            c.tasks.push(h.abort_handle());
        } else {
            c.started = true;
            start_after_startup(c, rt, target, probe_tx);
        }
    }

    // === events ===

    fn should_restart(&self, init: bool, exit_code: i32) -> bool {
        match self.restart_policy() {
            "Never" => false,
            "OnFailure" => exit_code != 0,
            _ => !init || exit_code != 0,
        }
    }

    async fn on_exit(&mut self, id: &str, st: Option<ContainerState>) {
        let pos = self
            .init
            .iter()
            .position(|c| c.id.as_deref() == Some(id))
            .map(|i| (i, true))
            .or_else(|| {
                self.main
                    .iter()
                    .position(|c| c.id.as_deref() == Some(id))
                    .map(|i| (i, false))
            });
        let Some((i, init)) = pos else { return };
        let now = SystemTime::now();
        // a lost supervisor: say so, then go on with the end the runtime recorded
        let mut lost = None;
        let st = match st {
            Some(ContainerState::Failed { reason, message })
                if reason == REASON_SUPERVISOR_LOST =>
            {
                let name = self.ctr(i, init).spec.name.clone();
                tracing::warn!(pod = %self.d.name, container = %name, %message, "supervisor lost");
                self.event(
                    true,
                    REASON_SUPERVISOR_LOST,
                    format!("Container {name}: {message}"),
                )
                .await;
                lost = Some(format!("{REASON_SUPERVISOR_LOST}: {message}"));
                match self.deps.runtime.status(id).await.map(|i| i.state) {
                    Ok(s @ ContainerState::Exited { .. }) => Some(s),
                    _ => None,
                }
            }
            other => other,
        };
        let (exit_code, signal, oom, started_at, finished_at, msg) = match st {
            Some(ContainerState::Exited {
                exit_code,
                signal,
                oom_killed,
                started_at,
                finished_at,
            }) => (
                exit_code,
                signal,
                oom_killed,
                started_at,
                finished_at,
                String::new(),
            ),
            Some(ContainerState::Failed { reason, message }) => {
                (128, None, false, None, now, format!("{reason}: {message}"))
            }
            Some(ContainerState::Running { .. }) | Some(ContainerState::Created) => return,
            None => (
                255,
                None,
                false,
                None,
                now,
                "container state unknown (shim gone)".to_string(),
            ),
        };
        let msg = lost.unwrap_or(msg);
        let restart = self.should_restart(init, exit_code);
        let pod_name = self.d.name.clone();
        let c = self.ctr(i, init);
        c.abort_tasks();
        c.ready = false;
        let started_at = started_at.or(c.running_since);
        let ran_for = started_at
            .and_then(|s| finished_at.duration_since(s).ok())
            .unwrap_or_default();
        let term = Terminated {
            exit_code,
            signal,
            reason: status::exit_reason(exit_code, oom).to_string(),
            message: msg,
            started_at,
            finished_at,
            container_id: id.to_string(),
        };
        let name = c.spec.name.clone();
        tracing::info!(pod = %pod_name, container = %name, exit_code, oom, restart, "container exited");
        if init && exit_code == 0 {
            c.state = CState::Terminated(term);
            c.done = true;
            return;
        }
        if restart {
            // an exit an earlier agent already saw: wait out what is left of
            // the back-off it started, rather than restarting at once
            let resumed = c
                .persisted
                .take()
                .and_then(|p| p.remaining_for(Some(id), now));
            let delay = match resumed {
                Some(left) => left,
                None => c.backoff.delay_after_run(ran_for),
            };
            let saved = BackoffRecord {
                restarts: c.restarts,
                next_delay_ms: c.backoff.peek().as_millis() as u64,
                waiting: Some(BackoffWait {
                    container_id: id.to_string(),
                    until: now + delay,
                    exit_code,
                }),
            };
            c.last = Some(CState::Terminated(term.clone()));
            c.restart_at = Some(Instant::now() + delay);
            if delay.is_zero() {
                c.state = CState::Terminated(term);
            } else {
                let m = format!(
                    "back-off {}s restarting failed container={name} pod={pod_name}",
                    delay.as_secs()
                );
                c.state = CState::waiting("CrashLoopBackOff", m.clone());
                self.event(
                    true,
                    "BackOff",
                    format!("Back-off restarting failed container {name}"),
                )
                .await;
            }
            self.save_backoff(name, saved).await;
        } else {
            c.state = CState::Terminated(term);
            c.done = true;
            if init {
                self.init_failed = true;
            }
        }
    }

    async fn on_probe(&mut self, ev: ProbeEvent) {
        let grace = self.grace();
        let Some(c) = self
            .main
            .iter_mut()
            .find(|c| c.id.as_deref() == Some(ev.container_id.as_str()))
        else {
            return;
        };
        match (ev.kind, ev.ok) {
            (ProbeKind::Startup, true) => {
                c.started = true;
                let target = ProbeTarget {
                    container: c.spec.name.clone(),
                    container_id: ev.container_id.clone(),
                    ip: self
                        .net
                        .as_ref()
                        .and_then(|n| n.ip)
                        .unwrap_or(std::net::Ipv4Addr::LOCALHOST),
                    ports: c.spec.ports.clone().unwrap_or_default(),
                };
                start_after_startup(c, self.deps.runtime.clone(), target, self.probe_tx.clone());
            }
            (ProbeKind::Readiness, ok) => {
                c.ready = ok;
                if !ok {
                    let m = format!("Readiness probe failed: {}", ev.message);
                    self.event(true, "Unhealthy", m).await;
                }
            }
            (ProbeKind::Liveness, true) => {}
            (kind @ (ProbeKind::Liveness | ProbeKind::Startup), false) => {
                let name = c.spec.name.clone();
                let rt = self.deps.runtime.clone();
                let id = ev.container_id.clone();
                self.event(
                    true,
                    "Unhealthy",
                    format!("{} probe failed: {}", kind.as_str(), ev.message),
                )
                .await;
                self.event(
                    false,
                    "Killing",
                    format!(
                        "Container {name} failed {} probe, will be restarted",
                        kind.as_str().to_lowercase()
                    ),
                )
                .await;
                tokio::spawn(async move {
                    if let Err(e) = rt.stop(&id, grace).await {
                        tracing::warn!(container = %id, err = %error_chain(&e), "stopping unhealthy container");
                    }
                });
            }
        }
    }

    // === termination ===

    async fn terminate(mut self, grace: Duration) {
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
        for c in &self.main {
            if matches!(c.state, CState::Running { .. }) {
                self.event(
                    false,
                    "Killing",
                    format!("Stopping container {}", c.spec.name),
                )
                .await;
            }
        }
        let rt = self.deps.runtime.clone();
        let stops = ids.iter().map(|id| {
            let rt = rt.clone();
            async move {
                if let Err(e) = rt.stop(id, grace).await {
                    tracing::warn!(container = %id, err = %error_chain(&e), "stop");
                }
            }
        });
        futures::future::join_all(stops).await;
        // remove everything, retrying a few times; leftovers are found again at adoption.
        // The runtime's full list (every container's files) is read only on a
        // retry: with many pods going at once, one list per pod is O(n^2).
        let known: Vec<String> = ids.iter().chain(&self.stray).cloned().collect();
        for attempt in 0..3u32 {
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
                if let Err(e) = rt.remove(id).await {
                    failed.push(format!("container {id}: {}", error_chain(&e)));
                }
            }
            if let Err(e) = rt.remove_sandbox(&self.pod).await {
                failed.push(format!("sandbox: {}", error_chain(&e)));
            }
            if let Err(e) = self.deps.net.remove_pod(&self.pod).await {
                failed.push(format!("network: {}", error_chain(&e)));
            }
            if let Err(e) = volumes::remove_pod(&self.dirs(), &self.pod) {
                failed.push(format!("volumes: {e}"));
            }
            if failed.is_empty() {
                break;
            }
            let m = failed.join("; ");
            tracing::warn!(pod = %self.pod.key(), attempt, err = %m, "pod cleanup incomplete");
            self.event(true, "FailedKillPod", m).await;
            tokio::time::sleep(Duration::from_secs(1 << attempt)).await;
        }
        let _ = self
            .tx
            .send(WorkerMsg::Gone {
                pod: self.pod.clone(),
            })
            .await;
    }

    async fn save_backoff(&self, container: String, state: BackoffRecord) {
        let _ = self
            .tx
            .send(WorkerMsg::Backoff {
                pod: self.pod.clone(),
                container,
                state,
            })
            .await;
    }

    async fn publish(&mut self) {
        let init: Vec<ContainerView> = self.init.iter().map(Ctr::view).collect();
        let main: Vec<ContainerView> = self.main.iter().map(Ctr::view).collect();
        let policy = self.restart_policy();
        let phase = status::phase(
            self.init_done,
            self.init_failed,
            &main,
            policy == "Never",
            policy == "OnFailure",
        );
        let st = status::pod_status(
            self.last_status.as_ref(),
            phase,
            &init,
            &main,
            self.init_done,
            self.pod_ip(),
            self.settings.host_ip,
            self.start_time,
            SystemTime::now(),
            self.message.clone(),
        );
        if self.last_status.as_ref() == Some(&st) {
            return;
        }
        self.last_status = Some(st.clone());
        let logs = self
            .init
            .iter()
            .chain(self.main.iter())
            .filter_map(|c| Some((c.spec.name.clone(), c.log_path.clone()?)))
            .collect();
        let _ = self
            .tx
            .send(WorkerMsg::Status {
                pod: self.pod.clone(),
                status: Box::new(st),
                logs,
            })
            .await;
    }
}

fn start_after_startup<R: Runtime>(
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
    match c.spec.readiness_probe.clone() {
        Some(p) => {
            let h = tokio::spawn(probe::run_probe(rt, ProbeKind::Readiness, p, target, tx));
            c.tasks.push(h.abort_handle());
        }
        None => c.ready = true,
    }
}
