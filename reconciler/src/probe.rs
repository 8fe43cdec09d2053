//! Probes (exec, httpGet, tcpSocket) with Kubernetes' field semantics.
//!
//! One task per (container attempt, probe kind) runs the probe every
//! `periodSeconds` after `initialDelaySeconds`, applies the success/failure
//! thresholds, and reports only *transitions* to the pod worker, which decides
//! what they mean (Ready, restart).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use berth_spec::k8s_openapi::api::core::v1::{ContainerPort, Probe};
use berth_spec::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::traits::Runtime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Startup,
    Liveness,
    Readiness,
}

impl ProbeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
        }
    }
}

/// A threshold transition reported to the pod worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeEvent {
    pub container: String,
    pub container_id: String,
    pub kind: ProbeKind,
    /// true = passed successThreshold times; false = failed failureThreshold times.
    pub ok: bool,
    pub message: String,
}

/// Where a probe connects.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    pub container: String,
    pub container_id: String,
    /// Pod IP; 127.0.0.1 for hostNetwork pods.
    pub ip: Ipv4Addr,
    pub ports: Vec<ContainerPort>,
}

/// Outcome of one probe attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure(String),
}

/// Counts consecutive results and reports threshold crossings (pure, G8).
#[derive(Debug, Clone)]
pub struct Thresholds {
    success_needed: u32,
    failure_needed: u32,
    successes: u32,
    failures: u32,
    /// Last reported state; None before the first report.
    state: Option<bool>,
}

impl Thresholds {
    pub fn new(p: &Probe) -> Self {
        Self {
            success_needed: p.success_threshold.unwrap_or(1).max(1) as u32,
            failure_needed: p.failure_threshold.unwrap_or(3).max(1) as u32,
            successes: 0,
            failures: 0,
            state: None,
        }
    }

    /// Feed one result; returns Some(new state) when it changes.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= self.success_needed && self.state != Some(true) {
                self.state = Some(true);
                return Some(true);
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= self.failure_needed && self.state != Some(false) {
                self.state = Some(false);
                return Some(false);
            }
        }
        None
    }
}

fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .or_else(|| name.parse().ok()),
    }
}

/// Run one probe attempt with its timeout.
pub async fn probe_once<R: Runtime>(rt: &R, probe: &Probe, target: &ProbeTarget) -> Outcome {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(exec) = &probe.exec {
        let argv = exec.command.clone().unwrap_or_default();
        return match rt.exec(&target.container_id, &argv, timeout).await {
            Ok(r) if r.timed_out => {
                Outcome::Failure(format!("command timed out after {timeout:?}"))
            }
            Ok(r) if r.exit_code == 0 => Outcome::Success,
            Ok(r) => Outcome::Failure(format!(
                "command exited with {}: {}",
                r.exit_code,
                r.output.trim()
            )),
            Err(e) => Outcome::Failure(crate::traits::error_chain(&e)),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(port) = resolve_port(&tcp.port, &target.ports) else {
            return Outcome::Failure(format!("port {:?} not found", tcp.port));
        };
        let ip = tcp
            .host
            .as_deref()
            .and_then(|h| h.parse::<IpAddr>().ok())
            .unwrap_or(IpAddr::V4(target.ip));
        let addr = SocketAddr::new(ip, port);
        return match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: {e}")),
            Err(_) => Outcome::Failure(format!("dial tcp {addr}: timeout")),
        };
    }
    if let Some(http) = &probe.http_get {
        let Some(port) = resolve_port(&http.port, &target.ports) else {
            return Outcome::Failure(format!("port {:?} not found", http.port));
        };
        if http
            .scheme
            .as_deref()
            .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
        {
            return Outcome::Failure("HTTPS probes are not supported by berth yet".into());
        }
        let ip = http
            .host
            .as_deref()
            .and_then(|h| h.parse::<IpAddr>().ok())
            .unwrap_or(IpAddr::V4(target.ip));
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let addr = SocketAddr::new(ip, port);
        return match tokio::time::timeout(timeout, http_get(addr, &path, &headers)).await {
            Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
            Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
            Ok(Err(e)) => Outcome::Failure(format!("Get \"http://{addr}{path}\": {e}")),
            Err(_) => Outcome::Failure(format!(
                "Get \"http://{addr}{path}\": context deadline exceeded"
            )),
        };
    }
    if let Some(g) = &probe.grpc {
        let Ok(port) = u16::try_from(g.port) else {
            return Outcome::Failure(format!("port {} is not valid", g.port));
        };
        let addr = SocketAddr::new(IpAddr::V4(target.ip), port);
        let service = g.service.clone().unwrap_or_default();
        return match tokio::time::timeout(timeout, crate::grpc_health::check(addr, &service)).await
        {
            Ok(Ok(crate::grpc_health::SERVING)) => Outcome::Success,
            Ok(Ok(st)) => Outcome::Failure(format!(
                "service unhealthy (responded with {})",
                match st {
                    0 => "UNKNOWN",
                    2 => "NOT_SERVING",
                    3 => "SERVICE_UNKNOWN",
                    _ => "an unknown status",
                }
            )),
            Ok(Err(e)) => Outcome::Failure(e),
            Err(_) => Outcome::Failure(format!(
                "timeout: health rpc did not complete within {timeout:?}"
            )),
        };
    }
    Outcome::Failure("probe has no handler".into())
}

/// Minimal HTTP/1.1 GET; returns the status code.
pub(crate) async fn http_get(
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
    let mut buf = [0u8; 64];
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

/// The probe loop for one container attempt. Ends when the receiver is gone.
pub async fn run_probe<R: Runtime>(
    rt: Arc<R>,
    kind: ProbeKind,
    probe: Probe,
    target: ProbeTarget,
    tx: mpsc::Sender<ProbeEvent>,
) {
    let initial = Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64);
    let period = Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64);
    tokio::time::sleep(initial).await;
    let mut th = Thresholds::new(&probe);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let outcome = probe_once(rt.as_ref(), &probe, &target).await;
        let (ok, message) = match outcome {
            Outcome::Success => (true, String::new()),
            Outcome::Failure(m) => (false, m),
        };
        if let Some(state) = th.observe(ok) {
            let ev = ProbeEvent {
                container: target.container.clone(),
                container_id: target.container_id.clone(),
                kind,
                ok: state,
                message,
            };
            if tx.send(ev).await.is_err() {
                return;
            }
        }
        if tx.is_closed() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_report_transitions_only() {
        let p = Probe {
            success_threshold: Some(2),
            failure_threshold: Some(3),
            ..Default::default()
        };
        let mut t = Thresholds::new(&p);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(true));
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(false));
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(true), None);
        assert_eq!(t.observe(true), Some(true));
    }

    #[test]
    fn defaults_are_one_and_three() {
        let mut t = Thresholds::new(&Probe::default());
        assert_eq!(t.observe(true), Some(true));
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), None);
        assert_eq!(t.observe(false), Some(false));
    }

    #[test]
    fn named_ports() {
        let ports = vec![ContainerPort {
            name: Some("http".into()),
            container_port: 8080,
            ..Default::default()
        }];
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &ports),
            Some(8080)
        );
        assert_eq!(resolve_port(&IntOrString::Int(81), &ports), Some(81));
        assert_eq!(
            resolve_port(&IntOrString::String("nope".into()), &ports),
            None
        );
    }

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
