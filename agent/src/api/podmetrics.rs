//! `metrics.k8s.io/v1beta1` PodMetrics and NodeMetrics, so `kubectl top
//! pod/node` works: pods from the usage sampler's cgroup figures
//! ([`super::usage`]), the node from `/proc/stat` and `/proc/meminfo`.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::objects::Res;
use super::{ApiError, ApiState};

const GV: &str = "metrics.k8s.io/v1beta1";
/// The two `/proc/stat` readings a node CPU rate is taken between.
const NODE_WINDOW: Duration = Duration::from_millis(250);

fn rfc3339_ms(ms: u64) -> String {
    jiff::Timestamp::from_millisecond(ms as i64)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn window(ms: u64) -> String {
    format!("{}s", (ms as f64 / 1000.0).max(0.0))
}

fn pod_metrics(st: &ApiState, ns: Option<&str>) -> Vec<Value> {
    let latest = st.page.usage.latest();
    let model = st.model();
    let mut out = Vec::new();
    for p in model.list(Res::Pods) {
        let m = &p["metadata"];
        let (pns, name) = (
            m["namespace"].as_str().unwrap_or(""),
            m["name"].as_str().unwrap_or(""),
        );
        if ns.is_some_and(|n| n != pns) {
            continue;
        }
        let mine: Vec<_> = latest
            .iter()
            .filter(|l| l.0.0 == pns && l.0.1 == name)
            .collect();
        if mine.is_empty() {
            continue; // not running: a cluster's metrics-server has no figures either
        }
        let at = mine.iter().map(|l| l.3).max().unwrap_or(0);
        let win = mine.iter().map(|l| l.4).max().unwrap_or(0);
        let containers: Vec<Value> = mine
            .iter()
            .map(|l| {
                json!({"name": l.0.2, "usage": {
                    "cpu": format!("{}n", l.1.unwrap_or(0)),
                    "memory": format!("{}Ki", l.2 / 1024),
                }})
            })
            .collect();
        out.push(json!({"kind": "PodMetrics", "apiVersion": GV,
            "metadata": {"name": name, "namespace": pns, "labels": m["labels"], "creationTimestamp": rfc3339_ms(at)},
            "timestamp": rfc3339_ms(at), "window": window(win), "containers": containers}));
    }
    out
}

/// (busy, total) jiffies of all CPUs.
fn cpu_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

fn meminfo(field: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

async fn node_metrics(st: &ApiState) -> Value {
    let a = cpu_jiffies();
    tokio::time::sleep(NODE_WINDOW).await;
    let b = cpu_jiffies();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let nanocores = match (a, b) {
        (Some((ba, ta)), Some((bb, tb))) if tb > ta => {
            (bb.saturating_sub(ba) as u128 * cpus as u128 * 1_000_000_000 / (tb - ta) as u128)
                as u64
        }
        _ => 0,
    };
    let used_kib = meminfo("MemTotal:").saturating_sub(meminfo("MemAvailable:"));
    let now = crate::sources::rfc3339(std::time::SystemTime::now());
    json!({"kind": "NodeMetrics", "apiVersion": GV,
        "metadata": {"name": &*st.node, "creationTimestamp": now, "labels": &*st.page.node_labels},
        "timestamp": now, "window": window(NODE_WINDOW.as_millis() as u64),
        "usage": {"cpu": format!("{nanocores}n"), "memory": format!("{used_kib}Ki")}})
}

fn list(kind: &str, items: Vec<Value>) -> Json<Value> {
    Json(json!({"kind": kind, "apiVersion": GV, "metadata": {}, "items": items}))
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route(
            "/apis/metrics.k8s.io/v1beta1/pods",
            get(|State(st): State<ApiState>| async move {
                list("PodMetricsList", pod_metrics(&st, None))
            }),
        )
        .route(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods",
            get(
                |State(st): State<ApiState>, Path(ns): Path<String>| async move {
                    list("PodMetricsList", pod_metrics(&st, Some(&ns)))
                },
            ),
        )
        .route(
            "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods/{name}",
            get(
                |State(st): State<ApiState>, Path((ns, name)): Path<(String, String)>| async move {
                    pod_metrics(&st, Some(&ns))
                        .into_iter()
                        .find(|p| p["metadata"]["name"] == name.as_str())
                        .map(Json)
                        .ok_or(ApiError::NotFound {
                            kind: "PodMetrics",
                            name,
                        })
                },
            ),
        )
        .route(
            "/apis/metrics.k8s.io/v1beta1/nodes",
            get(|State(st): State<ApiState>| async move {
                list("NodeMetricsList", vec![node_metrics(&st).await])
            }),
        )
        .route(
            "/apis/metrics.k8s.io/v1beta1/nodes/{name}",
            get(
                |State(st): State<ApiState>, Path(name): Path<String>| async move {
                    if name != *st.node {
                        return Err(ApiError::NotFound {
                            kind: "NodeMetrics",
                            name,
                        });
                    }
                    Ok(Json(node_metrics(&st).await))
                },
            ),
        )
}
