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
    };
    conformance::prober(&HostProber, &eps).await;
}

#[tokio::test]
async fn host_volumes_conform() {
    let t = tempfile::tempdir().unwrap();
    let dirs = VolumeDirs {
        state_dir: t.path().join("state"),
        run_dir: t.path().join("run"),
    };
    let host = t.path().join("host");
    std::fs::create_dir(&host).unwrap();
    conformance::volumes(&dirs, host).await;
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
