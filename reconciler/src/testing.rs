//! Fakes of the host traits for unit tests of the control loop (G5). They keep
//! everything in memory, record calls, and let tests make containers exit.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use crate::traits::*;

mod host;
pub use host::FakeEndpoints;

#[derive(Debug, thiserror::Error)]
#[error("fake failure: {0}")]
pub struct FakeError(pub String, pub ErrorKind);

impl Classify for FakeError {
    fn kind(&self) -> ErrorKind {
        self.1
    }
}

#[derive(Default)]
pub struct FakeImages {
    pub pulls: Mutex<Vec<String>>,
    pub fail: Mutex<Vec<String>>,
    /// Images whose `ensure` panics (a bug inside a pod worker).
    pub panic: Mutex<Vec<String>>,
    /// The `in_use` list of each `gc` call.
    pub gc_calls: Mutex<Vec<Vec<String>>>,
}

impl Images for FakeImages {
    type Error = FakeError;

    async fn ensure(&self, image: &str, _policy: PullPolicy) -> Result<ImageInfo, FakeError> {
        self.pulls.lock().unwrap().push(image.to_string());
        if self.panic.lock().unwrap().iter().any(|f| f == image) {
            panic!("fake panic pulling {image}");
        }
        if self.fail.lock().unwrap().iter().any(|f| f == image) {
            return Err(FakeError(format!("pull {image}"), ErrorKind::Transient));
        }
        Ok(ImageInfo {
            reference: image.to_string(),
            image_id: format!("sha256:{}", crate::hash::spec_hash(&image)),
            repo_digest: None,
            layers: vec![],
            config: ImageConfig {
                entrypoint: vec!["/bin/sh".into()],
                ..Default::default()
            },
        })
    }

    fn failure_reason(_err: &FakeError) -> ImageFailureReason {
        ImageFailureReason::ErrImagePull
    }

    async fn gc(&self, in_use: &[String]) -> Result<GcReport, FakeError> {
        self.gc_calls.lock().unwrap().push(in_use.to_vec());
        Ok(GcReport::default())
    }
}

struct FakeCtr {
    info: ContainerInfo,
    exit: watch::Sender<Option<ContainerState>>,
}

#[derive(Default)]
pub struct FakeRuntime {
    ctrs: Mutex<BTreeMap<String, FakeCtr>>,
    pub runs: Mutex<Vec<ContainerConfig>>,
    pub removed: Mutex<Vec<String>>,
    pub sandboxes: Mutex<Vec<String>>,
    /// While set, `ensure_sandbox` fails with this message.
    pub fail_sandbox: Mutex<Option<String>>,
    /// What `tcpSocket`/`httpGet` probes find.
    pub endpoints: Mutex<FakeEndpoints>,
    /// Pod volumes asked for, by (pod key, volume name).
    pub volumes: Mutex<BTreeMap<(String, String), VolumeSource>>,
    /// Each `apply_fs_group` call.
    pub fs_groups: Mutex<Vec<FsGroupRequest>>,
    /// Claims made (and not removed) as (namespace, claim), with their usage.
    pub claims: Mutex<BTreeMap<(String, String), u64>>,
    /// `exec <id> <argv...>` and `stop <id>`, in call order.
    pub calls: Mutex<Vec<String>>,
}

impl FakeRuntime {
    /// Make a running container exit with `code`.
    pub fn exit(&self, id: &str, code: i32) {
        let mut m = self.ctrs.lock().unwrap();
        if let Some(c) = m.get_mut(id) {
            let st = ContainerState::Exited {
                exit_code: code,
                signal: None,
                oom_killed: false,
                started_at: Some(SystemTime::now()),
                finished_at: SystemTime::now(),
            };
            c.info.state = st.clone();
            let _ = c.exit.send(Some(st));
        }
    }

    /// Keep only the `keep` labels of a container: what a runtime reports
    /// of a container it identified without its spec file (by its names).
    pub fn keep_labels(&self, id: &str, keep: &[&str]) {
        if let Some(c) = self.ctrs.lock().unwrap().get_mut(id) {
            c.info.labels.retain(|k, _| keep.contains(&k.as_str()));
        }
    }

    pub fn running(&self) -> Vec<ContainerInfo> {
        self.ctrs
            .lock()
            .unwrap()
            .values()
            .filter(|c| matches!(c.info.state, ContainerState::Running { .. }))
            .map(|c| c.info.clone())
            .collect()
    }

    pub fn all(&self) -> Vec<ContainerInfo> {
        self.ctrs
            .lock()
            .unwrap()
            .values()
            .map(|c| c.info.clone())
            .collect()
    }
}

impl Runtime for FakeRuntime {
    type Error = FakeError;

    async fn ensure_sandbox(&self, cfg: &SandboxConfig) -> Result<Sandbox, FakeError> {
        if let Some(m) = self.fail_sandbox.lock().unwrap().clone() {
            return Err(FakeError(m, ErrorKind::Internal));
        }
        self.sandboxes.lock().unwrap().push(cfg.pod.key());
        Ok(Sandbox {
            pod: cfg.pod.clone(),
            netns: cfg.network.netns.clone(),
            ipc_ns: None,
            uts_ns: None,
            pid_ns: None,
            hosts_file: "/tmp/hosts".into(),
            hostname_file: "/tmp/hostname".into(),
            resolv_conf: "/tmp/resolv.conf".into(),
            cgroup_parent: format!("fake/{}", cfg.pod.key()),
        })
    }

    async fn remove_sandbox(&self, pod: &PodRef) -> Result<(), FakeError> {
        self.sandboxes.lock().unwrap().retain(|k| *k != pod.key());
        Ok(())
    }

    async fn run(&self, cfg: &ContainerConfig) -> Result<ContainerInfo, FakeError> {
        self.runs.lock().unwrap().push(cfg.clone());
        let info = ContainerInfo {
            id: cfg.id.clone(),
            pod: cfg.pod.clone(),
            name: cfg.name.clone(),
            labels: cfg.labels.clone(),
            state: ContainerState::Running {
                pid: 1000 + self.runs.lock().unwrap().len() as u32,
                started_at: SystemTime::now(),
            },
            log_path: format!("/tmp/{}.log", cfg.id).into(),
        };
        let (tx, _) = watch::channel(None);
        self.ctrs.lock().unwrap().insert(
            cfg.id.clone(),
            FakeCtr {
                info: info.clone(),
                exit: tx,
            },
        );
        Ok(info)
    }

    async fn status(&self, id: &str) -> Result<ContainerInfo, FakeError> {
        self.ctrs
            .lock()
            .unwrap()
            .get(id)
            .map(|c| c.info.clone())
            .ok_or_else(|| FakeError(id.into(), ErrorKind::NotFound))
    }

    async fn list(&self) -> Result<Vec<ContainerInfo>, FakeError> {
        Ok(self.all())
    }

    async fn wait(&self, id: &str) -> Result<ContainerState, FakeError> {
        let mut rx = {
            let m = self.ctrs.lock().unwrap();
            let c = m
                .get(id)
                .ok_or_else(|| FakeError(id.into(), ErrorKind::NotFound))?;
            if !matches!(c.info.state, ContainerState::Running { .. }) {
                return Ok(c.info.state.clone());
            }
            c.exit.subscribe()
        };
        loop {
            if let Some(st) = rx.borrow_and_update().clone() {
                return Ok(st);
            }
            if rx.changed().await.is_err() {
                return Err(FakeError(id.into(), ErrorKind::NotFound));
            }
        }
    }

    async fn stop(&self, id: &str, _grace: Duration) -> Result<(), FakeError> {
        self.calls.lock().unwrap().push(format!("stop {id}"));
        let running = match self.ctrs.lock().unwrap().get(id) {
            Some(c) => matches!(c.info.state, ContainerState::Running { .. }),
            // as the real runtime: stopping what does not exist is NotFound
            None => return Err(FakeError(id.into(), ErrorKind::NotFound)),
        };
        if running {
            self.exit(id, 137);
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<(), FakeError> {
        if self.stop(id, Duration::ZERO).await.is_err() {
            return Ok(());
        }
        if self.ctrs.lock().unwrap().remove(id).is_some() {
            self.removed.lock().unwrap().push(id.to_string());
        }
        Ok(())
    }

    async fn exec(&self, id: &str, argv: &[String], _t: Duration) -> Result<ExecResult, FakeError> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("exec {id} {}", argv.join(" ")));
        // the runtime refuses to start it (e.g. a filter it cannot apply)
        if argv.iter().any(|a| a == "refuse") {
            return Err(FakeError("exec refused".into(), ErrorKind::Invalid));
        }
        Ok(ExecResult {
            exit_code: if argv.iter().any(|a| a == "fail") {
                1
            } else {
                0
            },
            output: String::new(),
            timed_out: false,
        })
    }

    async fn usage(&self, _id: &str) -> Result<Usage, FakeError> {
        Ok(Usage::default())
    }
}

#[derive(Default)]
pub struct FakeNetwork {
    pods: Mutex<BTreeMap<String, (PodRef, Ipv4Addr)>>,
    next: Mutex<u8>,
    pub services: Mutex<Vec<ServiceEntry>>,
}

impl FakeNetwork {
    pub fn pod_count(&self) -> usize {
        self.pods.lock().unwrap().len()
    }
}

impl Network for FakeNetwork {
    type Error = FakeError;

    async fn ensure_pod(&self, req: &PodNetRequest) -> Result<PodNetwork, FakeError> {
        let mut pods = self.pods.lock().unwrap();
        let ip = match pods.get(&req.pod.key()) {
            Some((_, ip)) => *ip,
            None => {
                let mut n = self.next.lock().unwrap();
                *n += 1;
                let ip = Ipv4Addr::new(10, 0, 0, *n + 1);
                pods.insert(req.pod.key(), (req.pod.clone(), ip));
                ip
            }
        };
        Ok(PodNetwork {
            netns: Some(format!("/run/fake/{}", req.pod.key()).into()),
            ip: Some(ip),
            dns_servers: vec![Ipv4Addr::new(10, 0, 0, 1)],
            dns_search: vec![],
        })
    }

    async fn remove_pod(&self, pod: &PodRef) -> Result<(), FakeError> {
        self.pods.lock().unwrap().remove(&pod.key());
        Ok(())
    }

    async fn list_pods(&self) -> Result<Vec<PodRef>, FakeError> {
        Ok(self
            .pods
            .lock()
            .unwrap()
            .values()
            .map(|(p, _)| p.clone())
            .collect())
    }

    async fn sync_services(
        &self,
        services: &[ServiceEntry],
    ) -> Result<Vec<ServiceAssigned>, FakeError> {
        *self.services.lock().unwrap() = services.to_vec();
        Ok(services
            .iter()
            .enumerate()
            .map(|(i, s)| ServiceAssigned {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                cluster_ip: s.cluster_ip.unwrap_or(Ipv4Addr::new(10, 1, 0, i as u8 + 1)),
                node_ports: vec![],
                error: None,
            })
            .collect())
    }
}

/// Wait (in paused or real time) until `f` holds for the latest snapshot.
pub async fn until<F: Fn(&crate::status::Snapshot) -> bool>(
    rx: &mut crate::status::StatusReader,
    what: &str,
    f: F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    loop {
        if f(&rx.borrow_and_update()) {
            return;
        }
        tokio::select! {
            _ = rx.changed() => {}
            _ = tokio::time::sleep_until(deadline) => panic!("timed out waiting for: {what}"),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// `o` as if read from `t.yaml:1:1`.
pub fn sourced(o: berth_spec::Object) -> berth_spec::Sourced {
    berth_spec::Sourced {
        object: o,
        location: berth_spec::Location {
            file: "t.yaml".into(),
            line: 1,
            column: 1,
        },
    }
}

/// A desired state of `objs` (revision "r").
pub fn desired_state(
    objs: Vec<berth_spec::Object>,
    complete: bool,
) -> crate::desired::DesiredState {
    crate::desired::DesiredState {
        revision: "r".into(),
        complete,
        objects: objs.into_iter().map(|o| (o.key(), sourced(o))).collect(),
        ..Default::default()
    }
}
