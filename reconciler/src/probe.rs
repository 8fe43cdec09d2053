//! Probes (exec, httpGet, tcpSocket, grpc) with Kubernetes' field semantics.
//!
//! One task per (container attempt, probe kind) runs the probe every
//! `periodSeconds` after `initialDelaySeconds`, applies the success/failure
//! thresholds, and reports only *transitions* to the pod worker, which decides
//! what they mean (Ready, restart). The reconciler decides what to check;
//! the runtime dials it ([`crate::traits::Prober`]).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use berth_spec::k8s_openapi::api::core::v1::{ContainerPort, Probe};
use berth_spec::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::sync::mpsc;

use crate::traits::{CheckOutcome, NetCheck, Runtime};

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
    /// Not a threshold crossing: one attempt could not run (kubelet's
    /// "probe errored"), e.g. an exec the runtime refused. As kubelet does,
    /// its result is thrown away (it counts toward no threshold and changes
    /// no state); it is only reported. `ok` is meaningless then.
    pub errored: bool,
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
    /// The attempt could not run (the runtime's exec failed or was
    /// refused): kubelet's "probe errored", counted toward no threshold.
    Error(String),
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
            Err(e) => Outcome::Error(crate::traits::error_chain(&e)),
        };
    }
    if let Some(check) = net_check(probe, target) {
        return match check {
            Ok(check) => match rt.check(&check, timeout).await {
                CheckOutcome::Success => Outcome::Success,
                CheckOutcome::Failure(m) => Outcome::Failure(m),
            },
            Err(m) => Outcome::Failure(m),
        };
    }
    Outcome::Failure("probe has no handler".into())
}

/// The network check of a `tcpSocket`, `httpGet` or `grpc` probe (None for
/// other handlers); Err is the failure to report without dialing.
fn net_check(probe: &Probe, target: &ProbeTarget) -> Option<Result<NetCheck, String>> {
    let host = |h: Option<&str>| {
        h.and_then(|h| h.parse::<IpAddr>().ok())
            .unwrap_or(IpAddr::V4(target.ip))
    };
    if let Some(g) = &probe.grpc {
        let Ok(port) = u16::try_from(g.port) else {
            return Some(Err(format!("port {} is not valid", g.port)));
        };
        let addr = SocketAddr::new(IpAddr::V4(target.ip), port);
        let service = g.service.clone().unwrap_or_default();
        return Some(Ok(NetCheck::Grpc { addr, service }));
    }
    if let Some(tcp) = &probe.tcp_socket {
        let Some(port) = resolve_port(&tcp.port, &target.ports) else {
            return Some(Err(format!("port {:?} not found", tcp.port)));
        };
        let addr = SocketAddr::new(host(tcp.host.as_deref()), port);
        return Some(Ok(NetCheck::Tcp { addr }));
    }
    let http = probe.http_get.as_ref()?;
    let Some(port) = resolve_port(&http.port, &target.ports) else {
        return Some(Err(format!("port {:?} not found", http.port)));
    };
    if http
        .scheme
        .as_deref()
        .is_some_and(|s| s.eq_ignore_ascii_case("HTTPS"))
    {
        return Some(Err("HTTPS probes are not supported by berth yet".into()));
    }
    let headers = http
        .http_headers
        .iter()
        .flatten()
        .map(|h| (h.name.clone(), h.value.clone()))
        .collect();
    Some(Ok(NetCheck::HttpGet {
        addr: SocketAddr::new(host(http.host.as_deref()), port),
        path: http.path.clone().unwrap_or_else(|| "/".into()),
        headers,
    }))
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
        // what to report: a threshold crossing, or a probe error, whose
        // result kubelet throws away (it counts toward no threshold)
        let (report, message) = match outcome {
            Outcome::Success => (th.observe(true).map(|ok| (ok, false)), String::new()),
            Outcome::Failure(m) => (th.observe(false).map(|ok| (ok, false)), m),
            Outcome::Error(m) => (Some((false, true)), m),
        };
        if let Some((ok, errored)) = report {
            let ev = ProbeEvent {
                container: target.container.clone(),
                container_id: target.container_id.clone(),
                kind,
                ok,
                message,
                errored,
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

    #[tokio::test]
    async fn an_exec_the_runtime_refuses_is_an_error_not_a_failure() {
        use berth_spec::k8s_openapi::api::core::v1::ExecAction;
        let rt = crate::testing::FakeRuntime::default();
        let target = ProbeTarget {
            container: "app".into(),
            container_id: "c1".into(),
            ip: Ipv4Addr::LOCALHOST,
            ports: Vec::new(),
        };
        let exec = |argv: &[&str]| Probe {
            exec: Some(ExecAction {
                command: Some(argv.iter().map(|s| s.to_string()).collect()),
            }),
            ..Default::default()
        };
        let refused = probe_once(&rt, &exec(&["refuse"]), &target).await;
        let Outcome::Error(m) = refused else {
            panic!("{refused:?}")
        };
        assert!(m.contains("exec refused"), "{m}");
        assert!(matches!(
            probe_once(&rt, &exec(&["fail"]), &target).await,
            Outcome::Failure(_)
        ));
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
}
