//! The behaviour every implementation of the host traits must show, as
//! generic test functions. `berth-reconciler` runs them against its fakes
//! and `berth-runtime` against the real implementations, so a fake cannot
//! drift from what the host does. They panic (assert) on a deviation.

use std::path::PathBuf;
use std::time::Duration;

use crate::*;

/// Addresses a [`Prober`] test provides. The real test binds them on
/// loopback; the fake is told what is there.
#[derive(Debug, Clone)]
pub struct ProbeEndpoints {
    /// Accepts TCP connections (and need not speak HTTP).
    pub tcp_open: SocketAddr,
    /// Refuses connections.
    pub closed: SocketAddr,
    /// Answers every GET with 200.
    pub http_ok: SocketAddr,
    /// Answers every GET with 302.
    pub http_redirect: SocketAddr,
    /// Answers every GET with 503.
    pub http_unavailable: SocketAddr,
}

fn get(addr: SocketAddr) -> NetCheck {
    NetCheck::HttpGet {
        addr,
        path: "/healthz".into(),
        headers: vec![("X-Probe".into(), "1".into())],
    }
}

fn failure(o: CheckOutcome, what: &str) -> String {
    match o {
        CheckOutcome::Failure(m) => m,
        CheckOutcome::Success => panic!("{what}: succeeded, expected a failure"),
    }
}

pub async fn prober<P: Prober>(p: &P, eps: &ProbeEndpoints) {
    let t = Duration::from_secs(5);
    let tcp = |addr| NetCheck::Tcp { addr };
    assert_eq!(
        p.check(&tcp(eps.tcp_open), t).await,
        CheckOutcome::Success,
        "tcp to a listening port"
    );
    assert_eq!(
        p.check(&tcp(eps.http_ok), t).await,
        CheckOutcome::Success,
        "tcp to an HTTP server"
    );
    let m = failure(p.check(&tcp(eps.closed), t).await, "tcp to a closed port");
    assert!(m.starts_with(&format!("dial tcp {}: ", eps.closed)), "{m}");
    for (addr, what) in [(eps.http_ok, "200"), (eps.http_redirect, "302")] {
        assert_eq!(
            p.check(&get(addr), t).await,
            CheckOutcome::Success,
            "GET answered {what}"
        );
    }
    assert_eq!(
        p.check(&get(eps.http_unavailable), t).await,
        CheckOutcome::Failure("HTTP probe failed with statuscode: 503".into()),
        "GET answered 503"
    );
    let m = failure(p.check(&get(eps.closed), t).await, "GET to a closed port");
    assert!(
        m.starts_with(&format!("Get \"http://{}/healthz\": ", eps.closed)),
        "{m}"
    );
}

fn pod(uid: &str) -> PodRef {
    PodRef {
        namespace: "default".into(),
        name: "conformance".into(),
        uid: uid.into(),
    }
}

fn scratch(memory: bool) -> VolumeSource {
    VolumeSource::EmptyDir {
        memory,
        size_bytes: memory.then_some(1 << 20),
    }
}

fn files(content: &[u8]) -> VolumeSource {
    VolumeSource::Projection {
        files: vec![ProjectedFile {
            path: "key".into(),
            content: content.to_vec(),
            mode: 0o644,
        }],
    }
}

/// `host_path` is an existing directory the implementation may bind as is.
pub async fn volumes<V: Volumes>(v: &V, host_path: PathBuf) {
    let (a, b) = (pod("conformance-a"), pod("conformance-b"));
    let req = |pod: &PodRef, name: &str, source: VolumeSource| VolumeRequest {
        pod: pod.clone(),
        name: name.into(),
        source,
    };
    let ensure = |r: VolumeRequest| async move {
        v.ensure_volume(&r)
            .await
            .unwrap_or_else(|e| panic!("{r:?}: {}", error_chain(&e)))
    };

    let s1 = ensure(req(&a, "scratch", scratch(false))).await;
    assert_eq!(s1.kind, MountKind::Bind, "an emptyDir on disk is a bind");
    let s2 = ensure(req(&a, "scratch", scratch(false))).await;
    assert_eq!(s1, s2, "ensure is idempotent");
    let other = ensure(req(&b, "scratch", scratch(false))).await;
    assert_ne!(s1.path, other.path, "each pod has its own emptyDir");
    let mem = ensure(req(&a, "mem", scratch(true))).await;
    assert_eq!(
        mem.kind,
        MountKind::Tmpfs {
            size_bytes: Some(1 << 20)
        },
        "a memory emptyDir is a tmpfs of its size limit"
    );

    let claim = || VolumeSource::Claim {
        claim: "shared".into(),
    };
    let ca = ensure(req(&a, "data", claim())).await;
    let cb = ensure(req(&b, "other-name", claim())).await;
    assert_eq!(ca.kind, MountKind::Bind);
    assert_eq!(ca.path, cb.path, "pods of a namespace share a claim");

    let p1 = ensure(req(&a, "cfg", files(b"one"))).await;
    let p2 = ensure(req(&a, "cfg", files(b"two"))).await;
    assert_eq!(p1.kind, MountKind::Bind);
    assert_eq!(p1.path, p2.path, "a projection is updated in place");

    let hp = ensure(req(
        &a,
        "host",
        VolumeSource::HostPath {
            path: host_path.clone(),
            type_: HostPathType::Any,
        },
    ))
    .await;
    assert_eq!(
        hp,
        HostVolume {
            kind: MountKind::Bind,
            path: host_path
        },
        "a hostPath is bound as it is"
    );

    for (name, source) in [
        ("..", scratch(false)),
        ("a/b", scratch(false)),
        ("", files(b"x")),
        (
            "ok",
            VolumeSource::Claim {
                claim: "../../escape".into(),
            },
        ),
    ] {
        let r = req(&a, name, source);
        match v.ensure_volume(&r).await {
            Err(e) => assert_eq!(e.kind(), ErrorKind::Invalid, "{r:?}: {}", error_chain(&e)),
            Ok(h) => panic!("{r:?}: accepted as {h:?}"),
        }
    }

    for p in [&a, &a, &b] {
        v.remove_pod_volumes(p)
            .await
            .unwrap_or_else(|e| panic!("removing {p:?} (twice is fine): {}", error_chain(&e)));
    }
    let again = ensure(req(&a, "scratch", scratch(false))).await;
    assert_eq!(again, s1, "a removed pod's volume can be made again");
    v.remove_pod_volumes(&a).await.expect("removing again");
}
