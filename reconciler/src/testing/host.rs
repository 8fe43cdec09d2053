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
    /// Answers gRPC health checks with this `ServingStatus` (and accepts TCP).
    pub grpc: BTreeMap<SocketAddr, u64>,
}

impl Prober for FakeRuntime {
    async fn check(&self, check: &NetCheck, _timeout: Duration) -> CheckOutcome {
        let eps = self.endpoints.lock().unwrap();
        match check {
            NetCheck::Tcp { addr } => {
                if eps.listening.contains(addr)
                    || eps.http.contains_key(addr)
                    || eps.grpc.contains_key(addr)
                {
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
            NetCheck::Grpc { addr, .. } => match eps.grpc.get(addr) {
                Some(1) => CheckOutcome::Success,
                Some(st) => CheckOutcome::Failure(format!(
                    "service unhealthy (responded with {})",
                    if *st == 2 { "NOT_SERVING" } else { "UNKNOWN" }
                )),
                None if eps.listening.contains(addr) || eps.http.contains_key(addr) => {
                    CheckOutcome::Failure(format!("{addr}: not a gRPC server"))
                }
                None => CheckOutcome::Failure(format!("dial {addr}: connection refused")),
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
                let p = claim_path(&req.pod.namespace, claim)?;
                self.claims
                    .lock()
                    .unwrap()
                    .entry((req.pod.namespace.clone(), claim.clone()))
                    .or_insert(0);
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

    async fn apply_fs_group(&self, req: &FsGroupRequest) -> Result<(), FakeError> {
        let empty_dirs = PathBuf::from("/fake/pods")
            .join(req.pod.key())
            .join("empty-dir");
        let claims = PathBuf::from("/fake/volumes").join(&req.pod.namespace);
        for v in &req.volumes {
            let one_below = |base: &PathBuf| {
                v.strip_prefix(base).is_ok_and(|rest| {
                    rest.components().count() == 1
                        && rest
                            .components()
                            .all(|c| matches!(c, std::path::Component::Normal(_)))
                })
            };
            if !one_below(&empty_dirs) && !one_below(&claims) {
                return Err(FakeError(
                    format!("{} is not a volume of the pod", v.display()),
                    ErrorKind::Invalid,
                ));
            }
        }
        self.fs_groups.lock().unwrap().push(req.clone());
        Ok(())
    }

    async fn ensure_claim(&self, namespace: &str, claim: &str) -> Result<PathBuf, FakeError> {
        let p = claim_path(namespace, claim)?;
        self.claims
            .lock()
            .unwrap()
            .entry((namespace.into(), claim.into()))
            .or_insert(0);
        Ok(p)
    }

    async fn remove_claim(&self, namespace: &str, claim: &str) -> Result<(), FakeError> {
        claim_path(namespace, claim)?;
        self.claims
            .lock()
            .unwrap()
            .remove(&(namespace.into(), claim.into()));
        Ok(())
    }

    async fn claim_usage(&self, namespace: &str, claim: &str) -> Result<Option<u64>, FakeError> {
        claim_path(namespace, claim)?;
        Ok(self
            .claims
            .lock()
            .unwrap()
            .get(&(namespace.into(), claim.into()))
            .copied())
    }
}

fn claim_path(namespace: &str, claim: &str) -> Result<PathBuf, FakeError> {
    if !single_component(namespace) || !single_component(claim) {
        return Err(FakeError(
            format!("claim {namespace}/{claim}: bad name"),
            ErrorKind::Invalid,
        ));
    }
    Ok(PathBuf::from("/fake/volumes").join(namespace).join(claim))
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
            grpc_serving: "127.0.0.1:1006".parse().unwrap(),
            grpc_not_serving: "127.0.0.1:1007".parse().unwrap(),
        };
        {
            let mut e = rt.endpoints.lock().unwrap();
            e.listening.insert(eps.tcp_open);
            e.http.insert(eps.http_ok, 200);
            e.http.insert(eps.http_redirect, 302);
            e.http.insert(eps.http_unavailable, 503);
            e.grpc.insert(eps.grpc_serving, 1);
            e.grpc.insert(eps.grpc_not_serving, 2);
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
        berth_contract::conformance::volumes(&rt, "/fake-host-file-never-checked".into(), 100)
            .await;
        assert!(rt.volumes.lock().unwrap().is_empty());
        assert_eq!(rt.fs_groups.lock().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn fake_claims_conform() {
        let rt = FakeRuntime::default();
        berth_contract::conformance::claims(&rt).await;
        assert!(rt.claims.lock().unwrap().is_empty());
    }
}
