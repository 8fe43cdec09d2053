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

mod exit;
mod hooks;
mod prepare;
mod start;
mod terminate;

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
use super::volumes::{self, Prepared, PreparedVolume};
use super::{Deps, DesiredPod, WorkerHandle, WorkerInit, WorkerMsg, WorkerSettings, World};
use crate::backoff::{Backoff, BackoffRecord, BackoffWait, ResetAfter};
use crate::container::{self, PodFields};
use crate::probe::{self, ProbeEvent, ProbeKind, ProbeTarget};
use crate::traits::{
    Classify, ContainerConfig, ContainerInfo, ContainerState, Images, Network, PodNetRequest,
    PodNetwork, PodRef, PullPolicy, Runtime, Sandbox, SandboxConfig, error_chain,
};

pub use berth_contract::{
    LABEL_CONTAINER, LABEL_INIT, LABEL_RESTARTS, LABEL_SPEC_HASH, REASON_SUPERVISOR_LOST,
};

/// Start a worker task, supervised: if it panics, the controller gets a
/// [`WorkerMsg::Crashed`] (and starts a new worker after a back-off).
pub fn spawn<I: Images, R: Runtime, N: Network>(init: WorkerInit<I, R, N>) -> WorkerHandle {
    let (stop_tx, stop_rx) = watch::channel(None);
    let span = tracing::info_span!("pod", pod = %init.pod.key());
    let pod = init.pod.clone();
    let tx = init.tx.clone();
    let inner = tokio::spawn(Worker::new(init, stop_rx).run().instrument(span));
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
    init: bool,
    /// A native sidecar: an init container with `restartPolicy: Always`.
    sidecar: bool,
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
    /// Back-off saved by an earlier agent, until the exit it waits after is seen.
    persisted: Option<BackoffRecord>,
}

impl AsRef<CtrState> for Ctr {
    fn as_ref(&self) -> &CtrState {
        &self.state
    }
}

impl Ctr {
    fn new(spec: Container, init: bool) -> Self {
        Self {
            sidecar: init && berth_spec::validate::lifecycle::is_sidecar(&spec),
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
            sidecar: self.sidecar,
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
    /// Every main container ended and the sidecars were stopped for good.
    sidecars_stopped: bool,
    /// Init and main containers' specs (downward API resources).
    all_containers: Vec<Container>,
}

impl<I: Images, R: Runtime, N: Network> Worker<I, R, N> {
    fn new(init: WorkerInit<I, R, N>, stop_rx: watch::Receiver<Option<Duration>>) -> Self {
        let (exit_tx, exit_rx) = mpsc::channel(64);
        let (probe_tx, probe_rx) = mpsc::channel(64);
        let spec = &init.desired.spec;
        let all_containers: Vec<Container> = spec
            .init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
            .cloned()
            .collect();
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
            sidecars_stopped: false,
            all_containers,
        };
        for c in w.init.iter_mut().chain(w.main.iter_mut()) {
            if let Some(saved) = init.backoff.get(&c.spec.name) {
                c.resume(saved);
            }
        }
        w
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
            // a pod deleted before it was set up (e.g. adopted and pruned in
            // the same pass) is only taken down, never set up first
            let stop = *self.stop_rx.borrow();
            if let Some(grace) = stop {
                return self.terminate(grace).await;
            }
            let delay = match self.prepare().await {
                Ok(()) => {
                    self.message = None;
                    break;
                }
                Err(e) => {
                    tracing::warn!(pod = %self.pod.key(), reason = %e.reason, msg = %e.message, "pod setup failed");
                    self.release_setup().await;
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
                    if let Err(e) = self.prepare_volumes().await {
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

    // === driving ===

    /// Start what the planner says may start now.
    async fn drive(&mut self) {
        self.stop_sidecars_when_done().await;
        let sidecars = self.sidecar_flags();
        // a started sidecar lets the next container start with no report
        // to wake the worker: plan again until nothing more starts (each
        // container starts at most once per round, so this ends)
        for _ in 0..=self.init.len() + self.main.len() {
            let actions = plan::plan_pod_with(&self.init, &sidecars, &self.main, Instant::now());
            if actions.is_empty() {
                return;
            }
            for action in actions {
                if let PodAction::Start(r) = action {
                    if !r.init && self.stop_requested() {
                        return;
                    }
                    self.start(r).await;
                }
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
                start::start_after_startup(c, rt, target, tx);
            }
            PodAction::Stop { ctr, grace } => self.stop_one(ctr, grace),
            // termination is carried out by `terminate`
            PodAction::StopAll { .. } => {}
            PodAction::Event {
                warning,
                reason,
                message,
            } => self.event(warning, reason, message).await,
        }
    }

    fn sidecar_flags(&self) -> Vec<bool> {
        self.init.iter().map(|c| c.sidecar).collect()
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

    /// Save a container's back-off with the pod's record, so that an agent
    /// started later goes on with it.
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
        let pod = self.d.name.as_str();
        let init: Vec<ContainerView> = self.init.iter().map(|c| c.view(pod)).collect();
        let main: Vec<ContainerView> = self.main.iter().map(|c| c.view(pod)).collect();
        let init_phase = plan::init_phase_with(&self.init, &self.sidecar_flags());
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
        tracing::debug!(target: "berth::timing", pod = %self.pod.key(), phase = ?st.phase, "pod status published");
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
