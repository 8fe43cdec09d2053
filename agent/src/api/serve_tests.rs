//! The server's bounds over real loopback sockets (no root needed), with
//! short timeouts.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use axum::routing::get;

use super::*;

fn limits(max: usize) -> Limits {
    Limits {
        max_connections: max,
        header_timeout: Duration::from_millis(300),
        write_timeout: Duration::from_millis(300),
        shutdown_grace: Duration::from_millis(100),
    }
}

async fn start(max: usize) -> (SocketAddr, watch::Sender<bool>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let big = vec![b'x'; 32 << 20];
    let router = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/big", get(move || async move { big.clone() }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "late"
            }),
        );
    let (tx, rx) = watch::channel(false);
    tokio::spawn(serve(listener, router, limits(max), rx));
    (addr, tx)
}

/// GET on a fresh connection (blocking; run it off the runtime's threads).
fn get_blocking(addr: SocketAddr, path: &str) -> io::Result<String> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

async fn fetch(addr: SocketAddr, path: &'static str) -> io::Result<String> {
    tokio::task::spawn_blocking(move || get_blocking(addr, path))
        .await
        .unwrap()
}

/// Whether the server closed `s` (EOF or reset) within `within`.
fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // e.g. hyper's 408 before closing
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_sent_request_is_closed_after_the_header_timeout() {
    let (addr, _stop) = start(8).await;
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        let t0 = Instant::now();
        (
            closed_by_server(&mut s, Duration::from_secs(5)),
            t0.elapsed(),
        )
    })
    .await
    .unwrap();
    assert!(closed.0, "still open after 5 s");
    assert!(closed.1 >= Duration::from_millis(250), "{:?}", closed.1);
    // an idle keep-alive connection is closed the same way
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        closed_by_server(&mut s, Duration::from_secs(5))
    })
    .await
    .unwrap();
    assert!(closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_idle_connections_make_room_and_busy_ones_do_not() {
    let (addr, _stop) = start(4).await;
    // fill the cap with half-sent requests: a new client still gets through
    let flood: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
            s
        })
        .collect();
    let t0 = Instant::now();
    let r = fetch(addr, "/healthz").await.unwrap();
    assert!(r.starts_with("HTTP/1.1 200") && r.ends_with("ok"), "{r}");
    assert!(
        t0.elapsed() < Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    drop(flood);
    // four requests in progress: the fifth connection is refused with a 503
    let slow: Vec<_> = (0..4)
        .map(|_| tokio::task::spawn_blocking(move || get_blocking(addr, "/slow")))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = fetch(addr, "/healthz").await.unwrap();
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
    for s in slow {
        s.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_dropped() {
    let (addr, _stop) = start(4).await;
    let got = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_secs(2)); // socket buffers fill; the write stalls
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut n = 0usize;
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
        }
        n
    })
    .await
    .unwrap();
    assert!(
        got < 32 << 20,
        "the whole body arrived ({got} bytes): never timed out"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting() {
    let (addr, stop) = start(4).await;
    assert!(fetch(addr, "/healthz").await.unwrap().ends_with("ok"));
    stop.send(true).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(fetch(addr, "/healthz").await.is_err());
}
