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
    /// A gRPC server whose health service answers `SERVING` (to every service name).
    pub grpc_serving: SocketAddr,
    /// A gRPC server whose health service answers `NOT_SERVING`.
    pub grpc_not_serving: SocketAddr,
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

    let grpc = |addr| NetCheck::Grpc {
        addr,
        service: "db".into(),
    };
    assert_eq!(
        p.check(&grpc(eps.grpc_serving), t).await,
        CheckOutcome::Success,
        "gRPC health check answered SERVING"
    );
    assert_eq!(
        p.check(&tcp(eps.grpc_serving), t).await,
        CheckOutcome::Success,
        "tcp to a gRPC server"
    );
    assert_eq!(
        p.check(&grpc(eps.grpc_not_serving), t).await,
        CheckOutcome::Failure("service unhealthy (responded with NOT_SERVING)".into()),
        "gRPC health check answered NOT_SERVING"
    );
    let m = failure(p.check(&grpc(eps.closed), t).await, "gRPC to a closed port");
    assert!(m.starts_with(&format!("dial {}: ", eps.closed)), "{m}");
    failure(
        p.check(&grpc(eps.http_ok), t).await,
        "gRPC to an HTTP/1.1 server",
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

/// `host_path` is an existing directory the implementation may bind as is;
/// `gid` a group the caller may give files to (its own).
pub async fn volumes<V: Volumes>(v: &V, host_path: PathBuf, gid: u32) {
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
            path: host_path.clone()
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

    // fsGroup: on the pod's own volumes and claims, twice (idempotent);
    // never on a path the implementation did not make
    for on_root_mismatch in [false, true, false] {
        let fg = FsGroupRequest {
            pod: a.clone(),
            gid,
            on_root_mismatch,
            volumes: vec![s1.path.clone(), ca.path.clone()],
        };
        v.apply_fs_group(&fg)
            .await
            .unwrap_or_else(|e| panic!("{fg:?}: {}", error_chain(&e)));
    }
    for outside in [
        host_path.clone(),
        PathBuf::from("/"),
        s1.path.join("../../.."),
        PathBuf::from("relative"),
    ] {
        let fg = FsGroupRequest {
            pod: a.clone(),
            gid,
            on_root_mismatch: false,
            volumes: vec![outside],
        };
        match v.apply_fs_group(&fg).await {
            Err(e) => assert_eq!(e.kind(), ErrorKind::Invalid, "{fg:?}: {}", error_chain(&e)),
            Ok(()) => panic!("{fg:?}: fsGroup applied outside the volumes"),
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

/// The claims of `Volume` objects: made, measured and deleted by name.
pub async fn claims<V: Volumes>(v: &V) {
    fn ok<T, E: Classify>(r: Result<T, E>, what: &str) -> T {
        r.unwrap_or_else(|e| panic!("{what}: {}", error_chain(&e)))
    }
    let usage =
        |name: &'static str| async move { ok(v.claim_usage("default", name).await, "claim_usage") };
    assert_eq!(usage("conf-claim").await, None, "no directory yet");
    let p = ok(
        v.ensure_claim("default", "conf-claim").await,
        "ensure_claim",
    );
    let p2 = ok(
        v.ensure_claim("default", "conf-claim").await,
        "ensure_claim again",
    );
    assert_eq!(p, p2, "ensure_claim is idempotent");
    let pod = pod("conformance-claim");
    let bound = ok(
        v.ensure_volume(&VolumeRequest {
            pod: pod.clone(),
            name: "data".into(),
            source: VolumeSource::Claim {
                claim: "conf-claim".into(),
            },
        })
        .await,
        "ensure_volume of the claim",
    );
    assert_eq!(bound.path, p, "pods bind the claim's directory");
    assert!(
        usage("conf-claim").await.is_some(),
        "a made claim is measured"
    );
    let other = ok(
        v.ensure_claim("other", "conf-claim").await,
        "ensure_claim in another namespace",
    );
    assert_ne!(other, p, "claims are per namespace");
    for (ns, name) in [
        ("default", ".."),
        ("default", "a/b"),
        ("..", "x"),
        ("default", ""),
    ] {
        match v.ensure_claim(ns, name).await {
            Err(e) => assert_eq!(e.kind(), ErrorKind::Invalid, "{ns}/{name}"),
            Ok(p) => panic!("claim {ns}/{name:?} accepted as {p:?}"),
        }
        assert!(
            v.remove_claim(ns, name).await.is_err(),
            "removing claim {ns}/{name:?}"
        );
    }
    for _ in 0..2 {
        ok(
            v.remove_claim("default", "conf-claim").await,
            "remove_claim (twice is fine)",
        );
    }
    assert_eq!(usage("conf-claim").await, None, "a removed claim is gone");
    ok(v.remove_claim("other", "conf-claim").await, "remove_claim");
    ok(v.remove_pod_volumes(&pod).await, "remove_pod_volumes");
}

/// A [`Runtime`]'s container lifecycle. `long` is a container that runs
/// until stopped (its sandbox already ensured); `unknown` an id that was
/// never run. Every wait is bounded by `timeout`.
pub async fn runtime_lifecycle<R: Runtime>(
    rt: &R,
    long: &ContainerConfig,
    unknown: &str,
    timeout: Duration,
) {
    let not_found = |what: &str, kind: Option<ErrorKind>| {
        assert_eq!(
            kind,
            Some(ErrorKind::NotFound),
            "{what} of an unknown container"
        );
    };
    not_found("status", rt.status(unknown).await.err().map(|e| e.kind()));
    not_found("wait", rt.wait(unknown).await.err().map(|e| e.kind()));
    not_found(
        "stop",
        rt.stop(unknown, Duration::ZERO)
            .await
            .err()
            .map(|e| e.kind()),
    );
    rt.remove(unknown)
        .await
        .unwrap_or_else(|e| panic!("remove of an unknown container: {}", error_chain(&e)));

    let info = rt
        .run(long)
        .await
        .unwrap_or_else(|e| panic!("run: {}", error_chain(&e)));
    assert!(
        matches!(info.state, ContainerState::Running { .. }),
        "run returns a running container: {:?}",
        info.state
    );
    assert_eq!(
        (&info.id, &info.pod, &info.name, &info.labels),
        (&long.id, &long.pod, &long.name, &long.labels),
        "run reports the container as configured"
    );
    let st = rt
        .status(&long.id)
        .await
        .unwrap_or_else(|e| panic!("status: {}", error_chain(&e)));
    assert!(matches!(st.state, ContainerState::Running { .. }), "{st:?}");
    let listed = rt
        .list()
        .await
        .unwrap_or_else(|e| panic!("list: {}", error_chain(&e)));
    assert!(
        listed
            .iter()
            .any(|c| c.id == long.id && c.labels == long.labels),
        "list shows the running container with its labels"
    );

    let grace = Duration::from_secs(1);
    rt.stop(&long.id, grace)
        .await
        .unwrap_or_else(|e| panic!("stop: {}", error_chain(&e)));
    rt.stop(&long.id, grace)
        .await
        .unwrap_or_else(|e| panic!("stop of a stopped container: {}", error_chain(&e)));
    let end = wait_bounded(rt.wait(&long.id), timeout)
        .await
        .unwrap_or_else(|| panic!("wait did not return within {timeout:?} of stop"))
        .unwrap_or_else(|e| panic!("wait: {}", error_chain(&e)));
    assert!(
        matches!(end, ContainerState::Exited { .. }),
        "a stopped container has exited: {end:?}"
    );
    let st = rt
        .status(&long.id)
        .await
        .unwrap_or_else(|e| panic!("status after stop: {}", error_chain(&e)));
    assert!(
        matches!(st.state, ContainerState::Exited { .. }),
        "status after stop: {st:?}"
    );

    rt.remove(&long.id)
        .await
        .unwrap_or_else(|e| panic!("remove: {}", error_chain(&e)));
    not_found(
        "status after remove",
        rt.status(&long.id).await.err().map(|e| e.kind()),
    );
    let listed = rt
        .list()
        .await
        .unwrap_or_else(|e| panic!("list: {}", error_chain(&e)));
    assert!(
        !listed.iter().any(|c| c.id == long.id),
        "a removed container is not listed"
    );
}

/// `fut`, or `None` once `timeout` passed (a timer thread, so this crate
/// needs no async runtime of its own).
async fn wait_bounded<F: Future>(fut: F, timeout: Duration) -> Option<F::Output> {
    use std::pin::pin;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    use std::task::{Poll, Waker};

    struct Timer {
        fired: AtomicBool,
        waker: Mutex<Option<Waker>>,
    }
    let timer = Arc::new(Timer {
        fired: AtomicBool::new(false),
        waker: Mutex::new(None),
    });
    let t = timer.clone();
    std::thread::spawn(move || {
        std::thread::sleep(timeout);
        t.fired.store(true, Ordering::SeqCst);
        if let Some(w) = t.waker.lock().ok().and_then(|mut w| w.take()) {
            w.wake();
        }
    });
    let mut fut = pin!(fut);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(v) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if let Ok(mut w) = timer.waker.lock() {
            *w = Some(cx.waker().clone());
        }
        if timer.fired.load(Ordering::SeqCst) {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}
