//! The host side of `tcpSocket`, `httpGet` and `grpc` probes: the
//! reconciler decides what to check ([`NetCheck`]), this dials it from the
//! host.
//!
//! The HTTP client is deliberately minimal: one `GET` with `Connection:
//! close`, and only the status line is read (at most [`STATUS_LINE_MAX`]
//! bytes), as kubelet's probe only looks at the code.

use std::net::SocketAddr;
use std::time::Duration;

use berth_contract::{CheckOutcome, NetCheck, Prober};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod grpc;

/// Bytes of the response read to find the status code.
const STATUS_LINE_MAX: usize = 64;

/// One probe attempt, bounded by `timeout` (connect and response together).
pub async fn check(check: &NetCheck, timeout: Duration) -> CheckOutcome {
    match check {
        NetCheck::Tcp { addr } => {
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(_)) => CheckOutcome::Success,
                Ok(Err(e)) => CheckOutcome::Failure(format!("dial tcp {addr}: {e}")),
                Err(_) => CheckOutcome::Failure(format!("dial tcp {addr}: timeout")),
            }
        }
        NetCheck::HttpGet {
            addr,
            path,
            headers,
        } => match tokio::time::timeout(timeout, http_get(*addr, path, headers)).await {
            Ok(Ok(code)) if (200..400).contains(&code) => CheckOutcome::Success,
            Ok(Ok(code)) => {
                CheckOutcome::Failure(format!("HTTP probe failed with statuscode: {code}"))
            }
            Ok(Err(e)) => CheckOutcome::Failure(format!("Get \"http://{addr}{path}\": {e}")),
            Err(_) => CheckOutcome::Failure(format!(
                "Get \"http://{addr}{path}\": context deadline exceeded"
            )),
        },
        NetCheck::Grpc { addr, service } => {
            match tokio::time::timeout(timeout, grpc::check(*addr, service)).await {
                Ok(Ok(grpc::SERVING)) => CheckOutcome::Success,
                Ok(Ok(st)) => CheckOutcome::Failure(format!(
                    "service unhealthy (responded with {})",
                    match st {
                        0 => "UNKNOWN",
                        2 => "NOT_SERVING",
                        3 => "SERVICE_UNKNOWN",
                        _ => "an unknown status",
                    }
                )),
                Ok(Err(e)) => CheckOutcome::Failure(e),
                Err(_) => CheckOutcome::Failure(format!(
                    "timeout: health rpc did not complete within {timeout:?}"
                )),
            }
        }
    }
}

/// Minimal HTTP/1.1 GET; returns the status code.
async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
) -> std::io::Result<u16> {
    let mut s = TcpStream::connect(addr).await?;
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/berth\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut buf = [0u8; STATUS_LINE_MAX];
    let mut got = 0;
    while got < 12 {
        let n = s.read(&mut buf[got..]).await?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let head = String::from_utf8_lossy(&buf[..got]);
    head.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed HTTP response")
        })
}

/// Dials from the host's network namespace (pod IPs are routed via the bridge).
#[derive(Debug, Clone, Copy, Default)]
pub struct HostProber;

impl Prober for HostProber {
    async fn check(&self, c: &NetCheck, timeout: Duration) -> CheckOutcome {
        check(c, timeout).await
    }
}

impl Prober for crate::ShimRuntime {
    async fn check(&self, c: &NetCheck, timeout: Duration) -> CheckOutcome {
        check(c, timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn http_get_reads_status() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 256];
            let _ = s.read(&mut b).await;
            s.write_all(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
                .await
                .unwrap();
        });
        assert_eq!(http_get(addr, "/", &[]).await.unwrap(), 503);
    }
}
