//! The pod worker: executes the pod planner's actions ([`super::plan`]) for
//! one pod instance, through the host traits, inside a `pod` tracing span.
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
use tracing::Instrument;

use super::error::{self, Decision, MIN_RETRY, PodError, Policy, Reason, Step, schedule};
use super::plan::{self, CtrRef, CtrState, InitPhase, PodAction, RestartPolicy};
use super::status::{self, CState, ContainerView, Terminated};
use super::volumes::{self, Prepared, VolumeDirs};
use super::{Deps, DesiredPod, WorkerHandle, WorkerInit, WorkerMsg, WorkerSettings, World};
use crate::backoff::{Backoff, ResetAfter};
use crate::container::{self, PodFields};
use crate::probe::{self, ProbeEvent, ProbeKind, ProbeTarget};
use crate::traits::{
    Classify, ContainerConfig, ContainerInfo, ContainerState, Images, Network, PodNetRequest,
    PodNetwork, PodRef, PullPolicy, Runtime, Sandbox, SandboxConfig, error_chain,
};

pub const LABEL_CONTAINER: &str = "berth.dev/container";
pub const LABEL_RESTARTS: &str = "berth.dev/restarts";
pub const LABEL_INIT: &str = "berth.dev/init";
pub const LABEL_SPEC_HASH: &str = "berth.dev/spec-hash";

/// Reason of the `ContainerState::Failed` a runtime's `wait` returns when the
/// container's supervisor died before it recorded the end: the runtime has
/// killed what was left and recorded the end, which `status` then reports.
pub const REASON_SUPERVISOR_LOST: &str = "SupervisorLost";

/// Start a worker task.
pub fn spawn<I: Images, R: Runtime, N: Network>(init: WorkerInit<I, R, N>) -> WorkerHandle {
    let (stop_tx, stop_rx) = watch::channel(None);
    let span = tracing::info_span!("pod", pod = %init.pod.key());
    let task = tokio::spawn(Worker::new(init, stop_rx).run().instrument(span));
    WorkerHandle {
        stop: stop_tx,
        task,
    }
}

struct Ctr {
    spec: Container,
    init: bool,
    id: Option<String>,
    restarts: u32,
    state: CtrState,
    last: Option<Terminated>,
    /// Restarts after exits and failed runs.
    backoff: ResetAfter,
    /// Image pull retries back off on their own, so they don't eat the crash back-off.
    pull_backoff: Backoff,
    config_backoff: Backoff,
    image_id: String,
    log_path: Option<std::path::PathBuf>,
    tasks: Vec<AbortHandle>,
}

impl AsRef<CtrState> for Ctr {
    fn as_ref(&self) -> &CtrState {
        &self.state
    }
}

impl Ctr {
    fn new(spec: Container, init: bool) -> Self {
        Self {
            spec,
            init,
            id: None,
            restarts: 0,
            state: CtrState::initial(init),
            last: None,
            backoff: ResetAfter::kubernetes(),
            pull_backoff: schedule::pull(),
            config_backoff: schedule::config(),
            image_id: String::new(),
            log_path: None,
            tasks: Vec::new(),
        }
    }

    fn abort_tasks(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }

    fn view(&self, pod: &str) -> ContainerView {
        ContainerView {
            name: self.spec.name.clone(),
            image: self.spec.image.clone().unwrap_or_default(),
            image_id: self.image_id.clone(),
            container_id: self.id.clone(),
            state: self.state.view(self.init, &self.spec.name, pod),
            last_state: self.last.clone().map(CState::Terminated),
            ready: self.state.ready(),
            started: self.state.started(),
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
    policy: RestartPolicy,
    /// Network, sandbox and volumes are set up (the pod may initialize).
    set_up: bool,
    exit_tx: mpsc::Sender<(String, Option<ContainerState>)>,
    exit_rx: mpsc::Receiver<(String, Option<ContainerState>)>,
    probe_tx: mpsc::Sender<ProbeEvent>,
    probe_rx: mpsc::Receiver<ProbeEvent>,
    start_time: SystemTime,
    message: Option<PodError>,
    last_status: Option<PodStatus>,
    /// Containers of this pod whose removal failed earlier (removed again at the end).
    stray: Vec<String>,
}

impl<I: Images, R: Runtime, N: Network> Worker<I, R, N> {
    fn new(init: WorkerInit<I, R, N>, stop_rx: watch::Receiver<Option<Duration>>) -> Self {
        let (exit_tx, exit_rx) = mpsc::channel(64);
        let (probe_tx, probe_rx) = mpsc::channel(64);
        let spec = &init.desired.spec;
        Self {
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
            policy: RestartPolicy::from_spec(spec.restart_policy.as_deref()),
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
            set_up: false,
            exit_tx,
            exit_rx,
            probe_tx,
            probe_rx,
            start_time: SystemTime::now(),
            message: None,
            last_status: None,
            stray: Vec::new(),
        }
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
        let mut retry = schedule::setup();
        loop {
            let delay = match self.prepare().await {
                Ok(()) => {
                    self.message = None;
                    break;
                }
                Err(e) => {
                    tracing::warn!(pod = %self.pod.key(), reason = %e.reason, msg = %e.message, "pod setup failed");
                    self.event(true, e.reason.as_str(), e.message.clone()).await;
                    let policy = error::error_policy(Step::Setup, e.kind, &mut retry);
                    self.message = Some(e);
                    self.publish().await;
                    match policy {
                        Policy::Retry(after) => after,
                        Policy::Fail(_) | Policy::Done => MIN_RETRY,
                    }
                }
            };
            match self.wait(Some(Instant::now() + delay)).await {
                Wake::Stop(grace) => return self.terminate(grace).await,
                Wake::Detach => return,
                _ => {}
            }
        }
        self.set_up = true;
        self.adopt().await;
        loop {
            self.drive().await;
            self.publish().await;
            let next = plan::next_wake(&self.init, &self.main);
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
                    if let Err(e) = self.prepare_volumes() {
                        self.event(true, e.reason.as_str(), e.message).await;
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

    async fn prepare(&mut self) -> Result<(), PodError> {
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
        }
        if self.sandbox.is_none() {
            let cfg = SandboxConfig {
                pod: self.pod.clone(),
                hostname: self.d.name.clone(),
                network: self.net.clone().unwrap_or(PodNetwork {
                    netns: None,
                    ip: None,
                    dns_servers: vec![],
                    dns_search: vec![],
                }),
                resources: container::pod_resources(&self.d.spec),
            };
            let sb = self.deps.runtime.ensure_sandbox(&cfg).await.map_err(|e| {
                PodError::new(
                    Reason::FailedCreatePodSandBox,
                    error_chain(&e),
                    Some(e.kind()),
                )
            })?;
            self.sandbox = Some(sb);
        }
        self.prepare_volumes()
    }

    fn prepare_volumes(&mut self) -> Result<(), PodError> {
        let world = self.world.borrow_and_update().clone();
        let p = volumes::prepare(
            &self.dirs(),
            &self.pod,
            &self.d.spec,
            &world.claims,
            &world.objs,
        )
        .map_err(|e| PodError::new(Reason::FailedMount, error_chain(&e), None))?;
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
                    ctr.state = plan::on_started(
                        is_init,
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
            for c in &mut self.init {
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
    }

    // === driving ===

    /// Start what the planner says may start now.
    async fn drive(&mut self) {
        for action in plan::plan_pod(&self.init, &self.main, Instant::now()) {
            if let PodAction::Start(r) = action {
                if !r.init && self.stop_requested() {
                    return;
                }
                self.start(r).await;
            }
        }
    }

    /// Execute a planned action other than a start.
    async fn act(&mut self, action: PodAction) {
        match action {
            PodAction::Start(r) => self.start(r).await,
            PodAction::StartProbes(r) => {
                let rt = self.deps.runtime.clone();
                let tx = self.probe_tx.clone();
                let ip = self.pod_ip().unwrap_or(std::net::Ipv4Addr::LOCALHOST);
                let c = self.ctr(r);
                let Some(id) = c.id.clone() else { return };
                let target = ProbeTarget {
                    container: c.spec.name.clone(),
                    container_id: id,
                    ip,
                    ports: c.spec.ports.clone().unwrap_or_default(),
                };
                start_after_startup(c, rt, target, tx);
            }
            PodAction::Stop { ctr, grace } => {
                let Some(id) = self.ctr(ctr).id.clone() else {
                    return;
                };
                let rt = self.deps.runtime.clone();
                tokio::spawn(async move {
                    if let Err(e) = rt.stop(&id, grace).await {
                        tracing::warn!(container = %id, err = %error_chain(&e), "stopping unhealthy container");
                    }
                });
            }
            // termination is carried out by `terminate`
            PodAction::StopAll { .. } => {}
            PodAction::Event {
                warning,
                reason,
                message,
            } => self.event(warning, reason, message).await,
        }
    }

    fn stop_requested(&self) -> bool {
        self.stop_rx.borrow().is_some()
    }

    fn ctr(&mut self, r: CtrRef) -> &mut Ctr {
        if r.init {
            &mut self.init[r.index]
        } else {
            &mut self.main[r.index]
        }
    }

    fn find(&self, id: &str) -> Option<CtrRef> {
        let pos = |list: &[Ctr]| list.iter().position(|c| c.id.as_deref() == Some(id));
        pos(&self.init)
            .map(CtrRef::init)
            .or_else(|| pos(&self.main).map(CtrRef::main))
    }

    async fn start(&mut self, r: CtrRef) {
        let spec = {
            let c = self.ctr(r);
            c.state = CtrState::Starting;
            c.spec.clone()
        };
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
                let started_at = match info.state {
                    ContainerState::Running { started_at, .. } => started_at,
                    _ => SystemTime::now(),
                };
                let c = self.ctr(r);
                c.id = Some(info.id.clone());
                c.log_path = Some(info.log_path.clone());
                c.state = plan::on_started(
                    r.init,
                    started_at,
                    c.spec.startup_probe.is_some(),
                    c.spec.readiness_probe.is_some(),
                );
                let name = c.spec.name.clone();
                self.event(false, "Created", format!("Created container {name}"))
                    .await;
                self.event(false, "Started", format!("Started container {name}"))
                    .await;
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
                let c = self.ctr(r);
                c.id = None;
                let out = plan::on_run_failed(
                    r.init,
                    policy,
                    &err,
                    &cfg.id,
                    &mut c.backoff,
                    SystemTime::now(),
                    Instant::now(),
                );
                c.state = out.state;
                if let Some(last) = out.last {
                    c.last = Some(last);
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
    ) -> Result<ContainerConfig, PodError> {
        let cfg_err = |m: String| PodError::new(Reason::CreateContainerConfigError, m, None);
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
            .map_err(|e| PodError::new(Reason::FailedMount, e.to_string(), None))?;
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
    fn watch_container(&mut self, r: CtrRef) {
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
        if r.init {
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

    // === events ===

    async fn on_exit(&mut self, id: &str, st: Option<ContainerState>) {
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
                match self.deps.runtime.status(id).await.map(|i| i.state) {
                    Ok(s @ ContainerState::Exited { .. }) => Some(s),
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
        let pod_name = self.d.name.clone();
        let c = self.ctr(r);
        c.abort_tasks();
        let out = plan::on_exit(
            &c.state,
            r.init,
            policy,
            exit,
            id,
            &mut c.backoff,
            Instant::now(),
        );
        let name = c.spec.name.clone();
        let restart = out.restart;
        tracing::info!(pod = %pod_name, container = %name, exit_code, oom, restart, "container exited");
        let backing_off =
            matches!(out.state, CtrState::BackingOff { delay, .. } if !delay.is_zero());
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
    }

    async fn on_probe(&mut self, ev: ProbeEvent) {
        let grace = self.grace();
        let Some(index) = self
            .main
            .iter()
            .position(|c| c.id.as_deref() == Some(ev.container_id.as_str()))
        else {
            return;
        };
        let c = &mut self.main[index];
        let name = c.spec.name.clone();
        let readiness = c.spec.readiness_probe.is_some();
        let actions = plan::on_probe(
            &mut c.state,
            CtrRef::main(index),
            &name,
            ev.kind,
            ev.ok,
            &ev.message,
            readiness,
            grace,
        );
        for a in actions {
            self.act(a).await;
        }
    }

    // === termination ===

    async fn terminate(mut self, grace: Duration) {
        let ids: Vec<String> = self
            .init
            .iter_mut()
            .chain(self.main.iter_mut())
            .filter_map(|c| {
                c.abort_tasks();
                c.id.clone()
            })
            .collect();
        let actions = {
            let names: Vec<&str> = self.main.iter().map(|c| c.spec.name.as_str()).collect();
            plan::plan_termination(&self.main, &names, grace)
        };
        let rt = self.deps.runtime.clone();
        for action in actions {
            match action {
                PodAction::StopAll { grace } => {
                    let stops = ids.iter().map(|id| {
                        let rt = rt.clone();
                        async move {
                            if let Err(e) = rt.stop(id, grace).await {
                                tracing::warn!(container = %id, err = %error_chain(&e), "stop");
                            }
                        }
                    });
                    futures::future::join_all(stops).await;
                }
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
            if attempt > 0
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
            if let Err(e) = volumes::remove_pod(&self.dirs(), &self.pod) {
                failed.push(format!("volumes: {e}"));
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

    async fn publish(&mut self) {
        let pod = self.d.name.as_str();
        let init: Vec<ContainerView> = self.init.iter().map(|c| c.view(pod)).collect();
        let main: Vec<ContainerView> = self.main.iter().map(|c| c.view(pod)).collect();
        let init_phase = plan::init_phase(&self.init);
        let init_done = self.set_up && init_phase == InitPhase::Done;
        let phase = status::phase(
            init_done,
            init_phase == InitPhase::Failed,
            &main,
            self.policy == RestartPolicy::Never,
            self.policy == RestartPolicy::OnFailure,
        );
        let st = status::pod_status(
            self.last_status.as_ref(),
            phase,
            &init,
            &main,
            init_done,
            self.pod_ip(),
            self.settings.host_ip,
            self.start_time,
            SystemTime::now(),
            self.message
                .as_ref()
                .map(|e| (e.reason.as_str().to_string(), e.message.clone())),
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
    // without a readiness probe the planner made the container ready
    if let Some(p) = c.spec.readiness_probe.clone() {
        let h = tokio::spawn(probe::run_probe(rt, ProbeKind::Readiness, p, target, tx));
        c.tasks.push(h.abort_handle());
    }
}
