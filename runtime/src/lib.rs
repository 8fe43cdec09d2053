//! berth's container runtime: one container's life.
//!
//! Each container runs under its own supervisor process, `berth-shim` (see
//! [`shim`]). `berth-shim run` forks the supervisor off (own session, child
//! subreaper) and exits, so the agent never holds it. The supervisor, still
//! single-threaded, mounts the overlay rootfs, checks the command and working
//! dir ([`precheck`]), resolves subPaths without following symlinks
//! ([`subpath`]), builds the OCI spec ([`oci`], capabilities limited to what
//! the host grants and the RuntimeDefault seccomp allow-list: [`caps`],
//! [`seccomp`]) and creates the container with youki's libcontainer. Then it
//! execs the small `berth-supervise` binary next to it (crate
//! `berth-supervise`, re-exported as [`supervise`], same
//! pid, so the init stays its child) to drop libcontainer's memory, which in
//! one thread pumps stdout/stderr into CRI logs ([`logs`]), serves the control
//! socket ([`control`]: status, wait, stop), waits for the init and records
//! how it ended. Files in the container's run dir
//! ([`layout`]) are the source of truth, so containers, logs and exit codes
//! outlive agent restarts; a container whose supervisor dies is killed and
//! replaced ([`orphan`]). Logs keep the current and the previous run within
//! a cap per container and go with the pod ([`retention`]). Everything the
//! runtime writes is root-only (files 0600, dirs 0700). Pod sandboxes
//! (shared IPC/UTS namespaces, hosts files) are in [`sandbox`]; pod cgroups,
//! usage and OOM counts in [`cgroups`].
//!
//! Not here: images (`berth-image` hands over unpacked layer dirs), networks
//! (`berth-net` hands over a netns path), deciding what runs (the reconciler).

pub mod caps;
pub mod cgroups;
pub mod control;
pub mod exec_seccomp;
pub mod heap;
pub mod host_path;
pub mod identity;
pub mod layout;
mod observe;
pub use berth_supervise::logs;
pub mod oci;
pub mod orphan;
pub mod pid_ns;
pub mod precheck;
pub mod probe;
pub mod retention;
pub mod sandbox;
pub mod seccomp;
pub mod seccomp_bpf;
pub mod seccomp_handoff;
pub mod shim;
pub mod spec_file;
pub mod subpath;
pub use berth_supervise::supervise;
mod sys;
pub mod volumes;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use berth_contract::{
    Classify, ContainerConfig, ContainerInfo, ContainerState, ErrorKind, ExecResult, PodRef,
    Runtime, Sandbox, SandboxConfig, Usage,
};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cgroups::{Cgroups, PodCgroup};
use crate::layout::{Layout, SetupError, ShimSpec, read_json};
use crate::spec_file::{SpecIdentity, write_spec};

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("container {id}: {reason}: {message}")]
    Setup {
        id: String,
        reason: String,
        message: String,
        /// Decided by the shim where the failure happened.
        kind: ErrorKind,
    },
    #[error("container {id}: {step}")]
    Io {
        id: String,
        step: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id} not found")]
    NotFound { id: String },
    #[error("container {id}: the shim did not report within {secs}s")]
    ShimTimeout { id: String, secs: u64 },
    #[error("pod {pod}: {step}: {message}")]
    Sandbox {
        pod: String,
        step: &'static str,
        message: String,
    },
    #[error("container {id}: exec failed: {message}")]
    Exec { id: String, message: String },
    #[error("container {id}: its spec.json cannot be read")]
    SpecRead {
        id: String,
        #[source]
        source: berth_state::StateError,
    },
    #[error("container {id}: writing spec.json")]
    SpecWrite {
        id: String,
        #[source]
        source: berth_state::StateError,
    },
    #[error("container {id}: writing identity.json")]
    IdentityWrite {
        id: String,
        #[source]
        source: berth_state::StateError,
    },
}

impl Classify for RuntimeError {
    fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::Setup { kind, .. } => *kind,
            RuntimeError::NotFound { .. } => ErrorKind::NotFound,
            RuntimeError::ShimTimeout { .. }
            | RuntimeError::Io { .. }
            | RuntimeError::Exec { .. } => ErrorKind::Transient,
            RuntimeError::Sandbox { .. }
            | RuntimeError::SpecRead { .. }
            | RuntimeError::SpecWrite { .. }
            | RuntimeError::IdentityWrite { .. } => ErrorKind::Internal,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub instance: String,
    pub run_dir: PathBuf,
    pub state_dir: PathBuf,
    pub log_dir: PathBuf,
    pub shim_path: PathBuf,
    pub default_pids_limit: i64,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    pub cgroup_root: PathBuf,
    /// The operator policy's `allowedHostPaths` prefixes (None: no policy);
    /// hostPath volumes are resolved beneath them.
    pub host_path_prefixes: Option<Vec<PathBuf>>,
}

impl RuntimeConfig {
    pub fn new(instance: &str, run_dir: &Path, state_dir: &Path) -> Self {
        let shim_path = std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("berth-shim")))
            .unwrap_or_else(|| PathBuf::from("berth-shim"));
        Self {
            instance: instance.to_string(),
            run_dir: run_dir.to_path_buf(),
            state_dir: state_dir.to_path_buf(),
            log_dir: state_dir.join("logs"),
            shim_path,
            default_pids_limit: 1024,
            log_max_bytes: 10 * 1024 * 1024,
            log_max_files: 3,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            host_path_prefixes: None,
        }
    }
}

/// Cheap to clone (paths and settings): blocking work takes a clone to a
/// `spawn_blocking` thread, so the async methods never block the runtime.
#[derive(Clone)]
pub struct ShimRuntime {
    cfg: RuntimeConfig,
    layout: Layout,
    cg: Cgroups,
}

fn io(id: &str, step: &'static str) -> impl FnOnce(std::io::Error) -> RuntimeError {
    let id = id.to_string();
    move |source| RuntimeError::Io { id, step, source }
}

/// The last error lines libcontainer logged in the shim, for error messages.
fn shim_log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
    if let Ok(p) = std::env::var("BERTH_SHIM_DEBUG_COPY") {
        let _ = std::fs::write(p, &log);
    }
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("ERROR")).collect();
    lines[lines.len().saturating_sub(3)..].join("; ")
}

/// The shim's pid if the process `shim.pid` names still runs (same pid and
/// start time: a dead shim's pid may be reused) and is not a zombie.
fn shim_process(dir: &Path) -> Option<i32> {
    crate::layout::live_shim_pid(dir).filter(|p| alive(*p))
}

/// `remove_dir_all`, retried a few times: a file that appears while the tree
/// is walked (ENOTEMPTY) is taken by the next attempt. What is left after
/// that is found again by the next adoption.
fn remove_tree(dir: &Path) {
    for attempt in 0..3 {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if attempt == 2 => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a container's files");
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn alive(pid: i32) -> bool {
    pid > 0 && kill(Pid::from_raw(pid), None).is_ok() && !is_zombie(pid)
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with('Z'))
        })
        .unwrap_or(true)
}

impl ShimRuntime {
    pub fn new(cfg: RuntimeConfig) -> Result<Self, RuntimeError> {
        let layout = Layout {
            run_dir: cfg.run_dir.clone(),
            state_dir: cfg.state_dir.clone(),
        };
        crate::layout::private_dir(&layout.containers())
            .map_err(io("-", "creating the run dir"))?;
        let cg = Cgroups::detect(&cfg.cgroup_root);
        Ok(Self { cfg, layout, cg })
    }

    /// Run `f` (file reads, `/proc` and cgroup walks, libcontainer, sleeps)
    /// on a blocking thread with a clone of this runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&ShimRuntime) -> T + Send + 'static,
    ) -> T {
        let me = self.clone();
        tokio::task::spawn_blocking(move || f(&me))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }

    fn pod_cgroup(&self, pod: &PodRef) -> String {
        format!("/{}/{}", self.cfg.instance, pod.key())
    }

    /// Remove the instance's empty parent cgroups (uninstall, tests).
    pub fn cleanup_instance(&self) {
        self.cg.remove(&format!("/{}", self.cfg.instance));
    }

    /// Container as the files in its dir describe it.
    fn info(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let dir = self.layout.dir(id);
        let spec = self.identity_at(&dir)?;
        let state = self.state_of(&dir);
        Ok(ContainerInfo {
            id: id.to_string(),
            pod: spec.config.pod,
            name: spec.config.name,
            labels: spec.config.labels,
            state,
            log_path: spec.log_path,
        })
    }

    /// The container has files saying who it is (`spec.json` or
    /// `identity.json`): it exists.
    fn present(dir: &Path) -> bool {
        dir.join("spec.json").exists() || dir.join(identity::IDENTITY_FILE).exists()
    }

    /// `pid` still runs in the container's cgroup (a bare pid may have been
    /// reused by another process since the container ended).
    fn init_in_cgroup(&self, dir: &Path, pid: i32) -> bool {
        alive(pid)
            && self
                .identity_at(dir)
                .is_ok_and(|s| self.cg.pids(&s.cgroup_path).contains(&pid))
    }

    /// The container's init pid, only while it is in the container's cgroup.
    fn live_init(&self, id: &str) -> Option<Pid> {
        self.init_pid(&self.layout.dir(id)).map(Pid::from_raw)
    }

    fn cgroup_of(&self, id: &str) -> Option<String> {
        self.identity_at(&self.layout.dir(id))
            .ok()
            .map(|s| s.cgroup_path)
    }

    fn exited(&self, id: &str) -> bool {
        matches!(
            self.state_of(&self.layout.dir(id)),
            ContainerState::Exited { .. } | ContainerState::Failed { .. }
        )
    }

    /// Everything of `run` up to the detached supervisor (blocking: purge of
    /// a leftover, dirs, log retention, spec.json, the shim's fork, which
    /// returns once the container runs or its failure is recorded).
    fn launch(&self, cfg: &ContainerConfig) -> Result<(), RuntimeError> {
        let id = cfg.id.clone();
        let dir = self.layout.dir(&id);
        if dir.exists() {
            self.purge(&id);
        }
        let restarts: u32 = cfg
            .labels
            .get(berth_contract::LABEL_RESTARTS)
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        let (pod_key, name) = (cfg.pod.key(), cfg.name.clone());
        if !retention::is_component(&pod_key) || !retention::is_component(&name) {
            return Err(RuntimeError::Setup {
                id: id.clone(),
                kind: ErrorKind::Invalid,
                reason: "CreateContainerConfigError".into(),
                message: format!(
                    "pod key {pod_key:?} or container name {name:?} is not a plain name"
                ),
            });
        }
        crate::layout::private_dir(&dir).map_err(io(&id, "creating the container dir"))?;
        let log_dir = self.cfg.log_dir.join(&pod_key).join(&name);
        for d in [
            &self.cfg.log_dir,
            &self.cfg.log_dir.join(&pod_key),
            &log_dir,
        ] {
            crate::layout::private_dir(d).map_err(io(&id, "creating the log dir"))?;
        }
        // only this run's and the previous run's logs stay, within the cap
        let budget = retention::prepare(
            &log_dir,
            restarts,
            self.cfg.log_max_bytes,
            self.cfg.log_max_files,
        )
        .map_err(io(&id, "pruning old logs"))?;
        let spec = ShimSpec {
            config: cfg.clone(),
            run_dir: self.cfg.run_dir.clone(),
            state_dir: self.cfg.state_dir.clone(),
            log_path: log_dir.join(format!("{restarts}.log")),
            log_max_bytes: budget.max_bytes,
            log_max_files: budget.max_files,
            cgroup_path: format!("{}/{}", self.pod_cgroup(&cfg.pod), id),
            default_pids_limit: self.cfg.default_pids_limit,
        };
        write_spec(&dir.join("spec.json"), &spec).map_err(|source| RuntimeError::SpecWrite {
            id: id.clone(),
            source,
        })?;
        // after spec.json (a dir with neither is one being set up): the
        // container stays identified if spec.json is damaged later
        identity::write_identity(&dir, &SpecIdentity::of(&spec)).map_err(|source| {
            RuntimeError::IdentityWrite {
                id: id.clone(),
                source,
            }
        })?;
        let shim_log = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(dir.join("shim.log"))
                .map_err(io(&id, "creating shim.log"))?
        };
        let shim_log2 = shim_log.try_clone().map_err(io(&id, "creating shim.log"))?;
        tracing::debug!(target: "berth::timing", container = %id, "container files written");
        // `run` forks the supervisor off and exits at once: the agent never
        // holds a running shim as its child (it survives `kill -9` of the agent)
        let child = std::process::Command::new(&self.cfg.shim_path)
            .arg("run")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(shim_log)
            .stderr(shim_log2)
            .spawn()
            .map_err(io(&id, "starting berth-shim"))?;
        let mut child = child;
        let launched = child
            .wait()
            .map_err(io(&id, "waiting for berth-shim to detach"))?;
        if !launched.success() {
            let log = std::fs::read_to_string(dir.join("shim.log")).unwrap_or_default();
            return Err(RuntimeError::Setup {
                id: id.clone(),
                kind: ErrorKind::Internal,
                reason: "RunContainerError".into(),
                message: format!(
                    "berth-shim could not start the supervisor ({launched}): {}",
                    log.trim()
                ),
            });
        }
        Ok(())
    }

    /// Every container dir, read (blocking).
    fn list_blocking(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(self.layout.containers()) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io("-", "listing containers")(e)),
        };
        for e in rd.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            match self.info(&id) {
                Ok(i) => out.push(i),
                Err(err) => {
                    tracing::warn!(container = %id, %err, "skipping unreadable container dir")
                }
            }
        }
        Ok(out)
    }

    /// Everything of a container except its logs, whatever state it is in.
    fn purge(&self, id: &str) {
        let dir = self.layout.dir(id);
        if let Some(p) = shim_process(&dir) {
            let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            // a supervisor may be inside a write into `dir` (a temp file
            // renamed into place) when the signal lands: the dir is removed
            // once it is gone. Bounded short (this holds a blocking thread; a
            // process killed with SIGKILL ends within milliseconds unless the
            // kernel holds it in I/O), and by its start time, so a reused pid
            // is not waited for; `remove_tree` retries what appears meanwhile
            let t0 = std::time::Instant::now();
            while shim_process(&dir) == Some(p) && t0.elapsed() < Duration::from_millis(300) {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        if let Some(cg) = self.cgroup_of(id)
            && !self.cg.kill_and_remove(&cg)
        {
            // the pod's cgroup removal takes it (and retries) with the pod
            tracing::warn!(container = %id, cgroup = %cg, "container cgroup still busy after its processes were killed");
        }
        let youki = self.layout.youki_root().join(id);
        if youki.exists() {
            if let Ok(mut c) = libcontainer::container::Container::load(youki.clone()) {
                let _ = c.delete(true);
            }
            remove_tree(&youki);
        }
        sandbox::unmount_below(&dir);
        // identity.json before spec.json: a dir listed meanwhile never has
        // the second without the first (which reads as a damaged spec)
        let _ = std::fs::remove_file(dir.join(identity::IDENTITY_FILE));
        remove_tree(&dir);
        remove_tree(&self.layout.upper(id));
    }
}

impl Runtime for ShimRuntime {
    type Error = RuntimeError;

    async fn ensure_sandbox(&self, cfg: &SandboxConfig) -> Result<Sandbox, RuntimeError> {
        let cfg = cfg.clone();
        self.blocking(move |rt| {
            let dir = rt.layout.pod_dir(&cfg.pod.key());
            let cg = rt.pod_cgroup(&cfg.pod);
            // the pod's cgroup with the pod-level limits; containers go below it
            rt.cg
                .ensure_pod(&cg, &cfg.resources)
                .map_err(|e| RuntimeError::Sandbox {
                    pod: cfg.pod.key(),
                    step: "creating the pod cgroup",
                    message: berth_contract::error_chain(&e),
                })?;
            sandbox::ensure(&dir, &cfg, cg, &rt.cfg.shim_path)
        })
        .await
    }

    async fn remove_sandbox(&self, pod: &PodRef) -> Result<(), RuntimeError> {
        let pod = pod.clone();
        self.blocking(move |rt| {
            let dir = rt.layout.pod_dir(&pod.key());
            sandbox::remove(&dir).map_err(|e| RuntimeError::Sandbox {
                pod: pod.key(),
                step: "removing the pod dir",
                message: e.to_string(),
            })?;
            // the containers are gone; a supervisor may still be on its way out
            // of the pod's `supervisor` leaf: wait for it (briefly) before
            // rmdir, and report a cgroup still there so cleanup retries it
            // (an error, not a leak: on a loaded host that exit can be slow)
            let cg = rt.pod_cgroup(&pod);
            if !rt.cg.kill_and_remove(&cg) {
                return Err(RuntimeError::Sandbox {
                    pod: pod.key(),
                    step: "removing the pod cgroup",
                    message: format!("{cg} still has processes or children"),
                });
            }
            retention::remove_pod(&rt.cfg.log_dir, &pod.key()).map_err(|e| RuntimeError::Sandbox {
                pod: pod.key(),
                step: "removing the pod's logs",
                message: e.to_string(),
            })
        })
        .await
    }

    async fn run(&self, cfg: &ContainerConfig) -> Result<ContainerInfo, RuntimeError> {
        let id = cfg.id.clone();
        let dir = self.layout.dir(&id);
        let c = cfg.clone();
        // the 60 s bound covers the launch too: `berth-shim run` returns once
        // the container runs or failed, or after 60 s (see `shim::launch`)
        let t0 = tokio::time::Instant::now();
        tracing::debug!(target: "berth::timing", container = %id, "container launch");
        self.blocking(move |rt| rt.launch(&c)).await?;
        tracing::debug!(target: "berth::timing", container = %id, "container launched");
        let mut delay = Duration::from_millis(2);
        loop {
            let d = dir.clone();
            match self.blocking(move |rt| rt.state_of(&d)).await {
                ContainerState::Created => {}
                // it ran and ended unrecorded: the caller learns it from `info`
                ContainerState::Failed { reason, message }
                    if reason != berth_contract::REASON_STATUS_UNKNOWN =>
                {
                    let d = dir.clone();
                    let (detail, kind) = self
                        .blocking(move |_| {
                            let kind = read_json::<SetupError>(&d.join("error.json"));
                            (shim_log_tail(&d), kind.and_then(|e| e.kind))
                        })
                        .await;
                    let message = if detail.is_empty() {
                        message
                    } else {
                        format!("{message} ({detail})")
                    };
                    // the shim recorded how to react; a shim that died
                    // without saying is an internal problem
                    let kind = kind.unwrap_or(ErrorKind::Internal);
                    break Err(RuntimeError::Setup {
                        id: id.clone(),
                        reason,
                        message,
                        kind,
                    });
                }
                _ => {
                    let i = id.clone();
                    break self.blocking(move |rt| rt.info(&i)).await;
                }
            }
            if t0.elapsed() > Duration::from_secs(60) {
                break Err(RuntimeError::ShimTimeout {
                    id: id.clone(),
                    secs: 60,
                });
            }
            tokio::time::sleep(delay).await;
            // state.json is a cheap read: poll finely, start latency is what users see
            delay = (delay * 2).min(Duration::from_millis(5));
        }
    }

    async fn status(&self, id: &str) -> Result<ContainerInfo, RuntimeError> {
        let id = id.to_string();
        self.blocking(move |rt| rt.info(&id)).await
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>, RuntimeError> {
        self.blocking(|rt| rt.list_blocking()).await
    }

    async fn wait(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        let dir = self.layout.dir(id);
        // The shim answers a `wait` when the container ends; the files decide
        // either way. The socket appears a few ms after start (once the shim
        // has re-executed), so look for it again while polling.
        let mut delay = Duration::from_millis(2);
        loop {
            let d = dir.clone();
            let (exists, gone, state) = self
                .blocking(move |rt| {
                    let exists = ShimRuntime::present(&d);
                    // the state first, then whether the supervisor is gone:
                    // a supervisor the state saw gone is gone to the second
                    // check too (its death and a missing record are final),
                    // so an end it left unrecorded always goes to
                    // `replace_lost`. The other way round, a supervisor that
                    // died between the checks was alive to the first and gone
                    // to the state, and `wait` returned ContainerStatusUnknown
                    // instead of SupervisorLost, without the cleanup
                    let state = exists.then(|| rt.state_of(&d));
                    let gone = exists && rt.supervisor_gone(&d);
                    (exists, gone, state)
                })
                .await;
            if !exists {
                return Err(RuntimeError::NotFound { id: id.into() });
            }
            // the supervisor died without recording the end: kill what is
            // left and say so (see `orphan`)
            if gone {
                return Ok(self.replace_lost(id).await);
            }
            match state.unwrap_or(ContainerState::Created) {
                s @ (ContainerState::Exited { .. } | ContainerState::Failed { .. }) => {
                    return Ok(s);
                }
                _ => {
                    if let Some(sock) = control::sock_path(&dir)
                        && control::call(&sock, &control::Request::Wait, None)
                            .await
                            .is_some()
                    {
                        continue;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(100));
                }
            }
        }
    }

    async fn stop(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let dir = self.layout.dir(id);
        let exited = |id: &str| {
            let id = id.to_string();
            self.blocking(move |rt| rt.exited(&id))
        };
        let d = dir.clone();
        if !self.blocking(move |_| ShimRuntime::present(&d)).await {
            return Err(RuntimeError::NotFound { id: id.into() });
        }
        if exited(id).await {
            return Ok(());
        }
        // the shim stops its container (SIGTERM, grace, SIGKILL to the cgroup);
        // without a shim to ask, the agent does the same itself
        if let Some(sock) = control::sock_path(&dir) {
            let req = control::Request::Stop {
                grace_ms: grace.as_millis() as u64,
            };
            if control::call(&sock, &req, Some(grace + Duration::from_secs(15)))
                .await
                .is_some()
                || exited(id).await
            {
                return Ok(());
            }
        }
        let i = id.to_string();
        self.blocking(move |rt| {
            if let Some(pid) = rt.live_init(&i) {
                let _ = kill(pid, Signal::SIGTERM);
            }
        })
        .await;
        let t0 = tokio::time::Instant::now();
        while t0.elapsed() < grace {
            if exited(id).await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // every process of the container, not only its init
        let i = id.to_string();
        self.blocking(move |rt| {
            if let Some(cg) = rt.cgroup_of(&i) {
                for p in rt.cg.pids(&cg) {
                    let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
                }
            }
            if let Some(pid) = rt.live_init(&i) {
                let _ = kill(pid, Signal::SIGKILL);
            }
        })
        .await;
        let t1 = tokio::time::Instant::now();
        while t1.elapsed() < Duration::from_secs(10) {
            let i = id.to_string();
            let done = self
                .blocking(move |rt| rt.exited(&i) || shim_process(&rt.layout.dir(&i)).is_none())
                .await;
            if done {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let i = id.to_string();
        let (present, exited) = self
            .blocking(move |rt| {
                let present = rt.layout.dir(&i).exists();
                (present, present && rt.exited(&i))
            })
            .await;
        if !present {
            return Ok(());
        }
        if !exited {
            self.stop(id, Duration::ZERO).await.ok();
        }
        let i = id.to_string();
        self.blocking(move |rt| rt.purge(&i)).await;
        Ok(())
    }

    async fn exec(
        &self,
        id: &str,
        argv: &[String],
        timeout: Duration,
    ) -> Result<ExecResult, RuntimeError> {
        let dir = self.layout.dir(id);
        let d = dir.clone();
        if !self.blocking(move |_| d.join("state.json").exists()).await {
            return Err(RuntimeError::NotFound { id: id.into() });
        }
        let child = tokio::process::Command::new(&self.cfg.shim_path)
            .arg("exec")
            .arg(&dir)
            .arg(timeout.as_millis().to_string())
            .arg("--")
            .args(argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output();
        let out = tokio::time::timeout(timeout + Duration::from_secs(10), child)
            .await
            .map_err(|_| RuntimeError::Exec {
                id: id.into(),
                message: "exec helper hung".into(),
            })?
            .map_err(|e| RuntimeError::Exec {
                id: id.into(),
                message: e.to_string(),
            })?;
        // a process that never started (a refused exec: no filter the
        // container's own) is an error of the exec, not the command's exit
        if let Ok(n) = serde_json::from_slice::<shim::ExecNotStarted>(&out.stdout) {
            return Err(RuntimeError::Exec {
                id: id.into(),
                message: n.not_started,
            });
        }
        serde_json::from_slice(&out.stdout).map_err(|e| RuntimeError::Exec {
            id: id.into(),
            message: format!("{e}: {}", String::from_utf8_lossy(&out.stderr).trim()),
        })
    }

    async fn usage(&self, id: &str) -> Result<Usage, RuntimeError> {
        let id = id.to_string();
        self.blocking(move |rt| {
            let cg = rt
                .cgroup_of(&id)
                .ok_or_else(|| RuntimeError::NotFound { id: id.clone() })?;
            let (cpu, mem) = rt.cg.usage(&cg);
            Ok(Usage {
                cpu_usage_nanos: cpu,
                memory_working_set_bytes: mem,
            })
        })
        .await
    }
}
