//! The one Node object: this host as `kubectl get/describe node` shows it
//! (capacity, allocatable, conditions, addresses, nodeInfo, the operator's
//! `--node-labels`).

use std::process::Command;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::model::Ctx;
use super::{ApiError, ApiState};

/// Pods a node advertises (kubelet's default).
const MAX_PODS: u32 = 110;

/// Facts about the host, read once when the API starts.
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    pub hostname: String,
    pub cpus: usize,
    pub memory_kib: u64,
    pub kernel: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
    pub internal_ip: Option<String>,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `ip` output, bounded by the command itself (it only reads the kernel's tables).
fn ip(args: &[&str]) -> String {
    Command::new("ip")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// The IPv4 address of the interface the default route leaves through.
fn internal_ip() -> Option<String> {
    let route = ip(&["-o", "-4", "route", "show", "default"]);
    let dev = route
        .split_whitespace()
        .skip_while(|w| *w != "dev")
        .nth(1)?
        .to_string();
    let addr = ip(&["-o", "-4", "addr", "show", "dev", &dev]);
    let cidr = addr
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)?;
    Some(cidr.split('/').next()?.to_string())
}

impl HostFacts {
    pub fn read() -> HostFacts {
        let meminfo = read("/proc/meminfo");
        let memory_kib = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        HostFacts {
            hostname: nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_kib,
            kernel: read("/proc/sys/kernel/osrelease"),
            os_image,
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            internal_ip: internal_ip(),
        }
    }
}

/// kubelet-style version string berth reports.
pub fn version() -> String {
    concat!("v1.32.0-berth.", env!("CARGO_PKG_VERSION")).to_string()
}

pub fn node(ctx: &Ctx<'_>, host: &HostFacts, _pods: &[Value], started: &str) -> Value {
    let now = crate::sources::rfc3339(std::time::SystemTime::now());
    let cond = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": started})
    };
    let capacity = json!({
        "cpu": host.cpus.to_string(),
        "memory": format!("{}Ki", host.memory_kib),
        "pods": MAX_PODS.to_string(),
    });
    let mut addresses = Vec::new();
    if let Some(ip) = &host.internal_ip {
        addresses.push(json!({"type": "InternalIP", "address": ip}));
    }
    addresses.push(json!({"type": "Hostname", "address": if host.hostname.is_empty() { ctx.node_name } else { host.hostname.as_str() }}));
    let mut labels = json!(ctx.node_labels);
    for (k, v) in [
        ("kubernetes.io/hostname", ctx.node_name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", crate::config::kube_arch()),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", crate::config::kube_arch()),
    ] {
        if labels[k].is_null() {
            labels[k] = json!(v);
        }
    }
    json!({
        "metadata": {"name": ctx.node_name, "labels": labels, "creationTimestamp": started,
            "annotations": {"berth.dev/agent": concat!("berth ", env!("CARGO_PKG_VERSION"))}},
        "spec": {},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "berth has sufficient memory available"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "berth has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "berth has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "berth is posting ready status"),
            ],
            "addresses": addresses,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": host.machine_id, "systemUUID": host.machine_id, "bootID": host.boot_id,
                "kernelVersion": host.kernel, "osImage": host.os_image,
                "containerRuntimeVersion": concat!("berth://", env!("CARGO_PKG_VERSION")),
                "kubeletVersion": version(), "kubeProxyVersion": version(),
                "operatingSystem": "linux", "architecture": crate::config::kube_arch(),
            },
        },
    })
}

/// The node's `coordination.k8s.io/v1` Lease (what `describe node` shows
/// under `Lease:`): held by the node, renewed whenever it is read.
async fn lease(
    State(st): State<ApiState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if name != *st.node {
        return Err(ApiError::NotFound {
            kind: "Lease",
            name,
        });
    }
    let micro = |t: std::time::SystemTime| {
        jiff::Timestamp::try_from(t)
            .map(|t| {
                format!(
                    "{}.{:06}Z",
                    t.strftime("%Y-%m-%dT%H:%M:%S"),
                    t.subsec_microsecond()
                )
            })
            .unwrap_or_default()
    };
    let started = crate::sources::rfc3339(st.page.started);
    Ok(Json(json!({
        "kind": "Lease", "apiVersion": "coordination.k8s.io/v1",
        "metadata": {"name": name, "namespace": "kube-node-lease", "creationTimestamp": started,
            "uid": super::model::uid("Lease", "kube-node-lease", &name, &started)},
        "spec": {"holderIdentity": name, "leaseDurationSeconds": 40,
            "acquireTime": micro(st.page.started), "renewTime": micro(std::time::SystemTime::now())},
    })))
}

pub fn routes() -> Router<ApiState> {
    Router::new().route(
        "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{name}",
        get(lease),
    )
}
