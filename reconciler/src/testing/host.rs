//! Fakes of the host work behind probes and volumes: in memory, with the
//! semantics the conformance suite (`berth_contract::conformance`) checks on
//! both these and the real implementations in `berth-runtime`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{FakeError, FakeRuntime};
use crate::traits::*;

/// What the fake prober finds at each address.
#[derive(Default)]
pub struct FakeEndpoints {
    /// Accepts TCP connections.
    pub listening: BTreeSet<SocketAddr>,
    /// Answers HTTP GET with this status (and accepts TCP).
    pub http: BTreeMap<SocketAddr, u16>,
}

impl Prober for FakeRuntime {
    async fn check(&self, check: &NetCheck, _timeout: Duration) -> CheckOutcome {
        let eps = self.endpoints.lock().unwrap();
        match check {
            NetCheck::Tcp { addr } => {
                if eps.listening.contains(addr) || eps.http.contains_key(addr) {
                    CheckOutcome::Success
                } else {
                    CheckOutcome::Failure(format!("dial tcp {addr}: connection refused"))
                }
            }
            NetCheck::HttpGet { addr, path, .. } => match eps.http.get(addr) {
                Some(code) if (200..400).contains(code) => CheckOutcome::Success,
                Some(code) => {
                    CheckOutcome::Failure(format!("HTTP probe failed with statuscode: {code}"))
                }
                None => CheckOutcome::Failure(format!(
                    "Get \"http://{addr}{path}\": connection refused"
                )),
            },
        }
    }
}

fn single_component(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && !s.contains('/') && !s.contains('\0')
}

impl Volumes for FakeRuntime {
    type VolumeError = FakeError;

    async fn ensure_volume(&self, req: &VolumeRequest) -> Result<HostVolume, FakeError> {
        let bad = || FakeError(format!("volume {}: bad name", req.name), ErrorKind::Invalid);
        if !single_component(&req.name) {
            return Err(bad());
        }
        let pod_dir = PathBuf::from("/fake/pods").join(req.pod.key());
        let (kind, path) = match &req.source {
            VolumeSource::Claim { claim } => {
                if !single_component(claim) || !single_component(&req.pod.namespace) {
                    return Err(bad());
                }
                let p = PathBuf::from("/fake/volumes")
                    .join(&req.pod.namespace)
                    .join(claim);
                (MountKind::Bind, p)
            }
            VolumeSource::HostPath { path, .. } => (MountKind::Bind, path.clone()),
            VolumeSource::EmptyDir { memory, size_bytes } => {
                let p = pod_dir.join("empty-dir").join(&req.name);
                match memory {
                    true => (
                        MountKind::Tmpfs {
                            size_bytes: *size_bytes,
                        },
                        p,
                    ),
                    false => (MountKind::Bind, p),
                }
            }
            VolumeSource::Projection { .. } => {
                (MountKind::Bind, pod_dir.join("volumes").join(&req.name))
            }
        };
        self.volumes
            .lock()
            .unwrap()
            .insert((req.pod.key(), req.name.clone()), req.source.clone());
        Ok(HostVolume { kind, path })
    }

    async fn remove_pod_volumes(&self, pod: &PodRef) -> Result<(), FakeError> {
        self.volumes
            .lock()
            .unwrap()
            .retain(|(p, _), _| *p != pod.key());
        Ok(())
    }
}

/// The conformance suite, on the fakes (the real implementations run it in
/// `berth-runtime`'s tests).
mod conformance {
    use super::*;

    #[tokio::test]
    async fn fake_prober_conforms() {
        let rt = FakeRuntime::default();
        let eps = berth_contract::conformance::ProbeEndpoints {
            tcp_open: "127.0.0.1:1001".parse().unwrap(),
            closed: "127.0.0.1:1002".parse().unwrap(),
            http_ok: "127.0.0.1:1003".parse().unwrap(),
            http_redirect: "127.0.0.1:1004".parse().unwrap(),
            http_unavailable: "127.0.0.1:1005".parse().unwrap(),
        };
        {
            let mut e = rt.endpoints.lock().unwrap();
            e.listening.insert(eps.tcp_open);
            e.http.insert(eps.http_ok, 200);
            e.http.insert(eps.http_redirect, 302);
            e.http.insert(eps.http_unavailable, 503);
        }
        berth_contract::conformance::prober(&rt, &eps).await;
    }

    #[tokio::test]
    async fn fake_runtime_lifecycle_conforms() {
        let rt = FakeRuntime::default();
        let pod = PodRef {
            namespace: "default".into(),
            name: "conformance".into(),
            uid: "u1".into(),
        };
        let long = ContainerConfig {
            id: format!("{}_long_0", pod.key()),
            pod: pod.clone(),
            name: "long".into(),
            labels: [("k".to_string(), "v".to_string())].into(),
            image: ImageInfo {
                reference: "r".into(),
                image_id: "sha256:0".into(),
                repo_digest: None,
                layers: vec![],
                config: ImageConfig::default(),
            },
            args: vec!["sleep".into(), "300".into()],
            env: vec![],
            working_dir: "/".into(),
            image_user: None,
            sandbox: Sandbox {
                pod,
                netns: None,
                ipc_ns: None,
                uts_ns: None,
                pid_ns: None,
                hosts_file: "/h".into(),
                hostname_file: "/n".into(),
                resolv_conf: "/r".into(),
                cgroup_parent: "/c".into(),
            },
            mounts: vec![],
            resources: Resources::default(),
            security: Security::default(),
        };
        berth_contract::conformance::runtime_lifecycle(
            &rt,
            &long,
            "never-run",
            Duration::from_secs(5),
        )
        .await;
    }

    #[tokio::test]
    async fn fake_volumes_conform() {
        let rt = FakeRuntime::default();
        berth_contract::conformance::volumes(&rt, "/fake-host-file-never-checked".into()).await;
        assert!(rt.volumes.lock().unwrap().is_empty());
    }
}
