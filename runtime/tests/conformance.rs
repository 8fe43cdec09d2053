//! berth-contract's conformance suite against the real host implementations
//! the runtime uses ([`HostProber`], [`VolumeDirs`], [`ShimRuntime`]); the
//! reconciler runs the same suite against its fakes. Probes dial loopback
//! listeners this test binds and volumes live in a temp dir (no root); the
//! container lifecycle is privileged.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use berth_contract::Runtime;

use berth_contract::conformance::{self, ProbeEndpoints};
use berth_runtime::probe::HostProber;
use berth_runtime::volumes::VolumeDirs;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use common::{Harness, require_root};

/// A loopback HTTP server answering every request with `code`, until the test ends.
async fn http_server(code: u16) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let resp = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

/// A loopback gRPC server (HTTP/2 cleartext, prior knowledge) whose health
/// service answers every `Check` with `status`, until the test ends. It
/// speaks just enough of the frame layer: reads the client's preface and
/// frames until the request ends, then answers headers, the message and
/// trailers.
async fn grpc_server(status: u8) -> SocketAddr {
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, kind, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut preface = [0u8; 24];
                if s.read_exact(&mut preface).await.is_err() {
                    return; // a TCP probe: connect and close
                }
                loop {
                    let mut head = [0u8; 9];
                    if s.read_exact(&mut head).await.is_err() {
                        return;
                    }
                    let len = (usize::from(head[0]) << 16)
                        | (usize::from(head[1]) << 8)
                        | usize::from(head[2]);
                    let mut payload = vec![0u8; len];
                    if s.read_exact(&mut payload).await.is_err() {
                        return;
                    }
                    // DATA with END_STREAM: the request is complete
                    if head[3] == 0 && head[4] & 1 != 0 {
                        break;
                    }
                }
                let mut out = frame(4, 0, 0, &[]);
                out.extend(frame(1, 0x4, 1, &[0x88])); // :status 200
                out.extend(frame(0, 0, 1, &[0, 0, 0, 0, 2, 0x08, status]));
                out.extend(frame(1, 0x4 | 0x1, 1, &[0x00])); // trailers, end of stream
                let _ = s.write_all(&out).await;
                let mut rest = [0u8; 256];
                while matches!(s.read(&mut rest).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

#[tokio::test]
async fn host_prober_conforms() {
    let open = TcpListener::bind("127.0.0.1:0").await.unwrap();
    // a port that was just free: bound, noted, released
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let eps = ProbeEndpoints {
        tcp_open: open.local_addr().unwrap(),
        closed,
        http_ok: http_server(200).await,
        http_redirect: http_server(302).await,
        http_unavailable: http_server(503).await,
        grpc_serving: grpc_server(1).await,
        grpc_not_serving: grpc_server(2).await,
    };
    conformance::prober(&HostProber, &eps).await;
}

#[tokio::test]
async fn host_volumes_conform() {
    let t = tempfile::tempdir().unwrap();
    let dirs = VolumeDirs {
        state_dir: t.path().join("state"),
        run_dir: t.path().join("run"),
        host_path_prefixes: None,
    };
    let host = t.path().join("host");
    std::fs::create_dir(&host).unwrap();
    let gid = std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(t.path()).unwrap());
    conformance::volumes(&dirs, host, gid).await;
    assert!(
        !dirs
            .state_dir
            .join("pods")
            .read_dir()
            .unwrap()
            .any(|_| true),
        "every pod's volumes were removed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shim_runtime_lifecycle_conforms() {
    require_root!();
    let h = Harness::new("btcore1");
    let pod = h.pod("conformance");
    let sb = h.sandbox(&pod, None).await;
    let long = h.container(&sb, "long", &["/bin/sleep", "300"]);
    conformance::runtime_lifecycle(
        h.rt(),
        &long,
        &format!("{}_never-run_0", pod.key()),
        Duration::from_secs(30),
    )
    .await;
    h.rt()
        .remove_sandbox(&pod)
        .await
        .expect("removing the sandbox");
}

#[tokio::test]
async fn host_claims_conform() {
    let t = tempfile::tempdir().unwrap();
    let dirs = VolumeDirs {
        state_dir: t.path().join("state"),
        run_dir: t.path().join("run"),
        host_path_prefixes: None,
    };
    conformance::claims(&dirs).await;
    // beyond the contract: usage counts the bytes of regular files
    let p = berth_contract::Volumes::ensure_claim(&dirs, "default", "sized")
        .await
        .unwrap();
    std::fs::create_dir(p.join("sub")).unwrap();
    std::fs::write(p.join("sub/f"), vec![0u8; 5000]).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", p.join("link")).unwrap();
    let used = berth_contract::Volumes::claim_usage(&dirs, "default", "sized")
        .await
        .unwrap();
    assert_eq!(used, Some(5000));
    let mode = |p: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    assert_eq!(mode(&t.path().join("state/volumes")), 0o700);
    assert_eq!(mode(&t.path().join("state/volumes/default")), 0o700);
}
