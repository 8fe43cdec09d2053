//! Kubernetes discovery documents: every resource the API serves, with its
//! short names, categories (`kubectl get all`) and subresources.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::ApiState;
use super::objects::Res;

fn short(r: Res) -> &'static [&'static str] {
    match r {
        Res::Pods => &["po"],
        Res::Deployments => &["deploy"],
        Res::Services => &["svc"],
        Res::Volumes => &["vol"],
        Res::ConfigMaps => &["cm"],
        Res::Events => &["ev"],
        Res::Namespaces => &["ns"],
        Res::Nodes => &["no"],
        Res::ReplicaSets => &["rs"],
        Res::Endpoints => &["ep"],
        Res::Pvcs => &["pvc"],
        Res::CronJobs => &["cj"],
        Res::Jobs => &[],
        Res::StatefulSets => &["sts"],
        Res::DaemonSets => &["ds"],
        Res::ReplicationControllers => &["rc"],
        Res::Secrets | Res::EndpointSlices => &[],
    }
}

/// `kubectl get all` asks for the `all` category: in a cluster pods,
/// services, deployments and replicasets among what berth has.
fn categories(r: Res) -> &'static [&'static str] {
    match r {
        Res::Pods
        | Res::Services
        | Res::Deployments
        | Res::ReplicaSets
        | Res::Jobs
        | Res::CronJobs
        | Res::StatefulSets
        | Res::DaemonSets
        | Res::ReplicationControllers => &["all"],
        _ => &[],
    }
}

fn subresources(r: Res) -> &'static [&'static str] {
    match r {
        Res::Pods => &["status", "log"],
        Res::Deployments | Res::ReplicaSets | Res::StatefulSets | Res::ReplicationControllers => {
            &["status", "scale"]
        }
        Res::DaemonSets => &["status"],
        Res::Services
        | Res::Nodes
        | Res::Namespaces
        | Res::Volumes
        | Res::Pvcs
        | Res::Jobs
        | Res::CronJobs => &["status"],
        _ => &[],
    }
}

fn singular(r: Res) -> String {
    r.kind().to_ascii_lowercase()
}

fn resource_list(gv: &str) -> Value {
    let mut resources = Vec::new();
    for r in Res::ALL.into_iter().filter(|r| r.api_version() == gv) {
        resources.push(json!({"name": r.plural(), "singularName": singular(r), "namespaced": r.namespaced(),
            "kind": r.kind(), "verbs": ["get", "list", "watch"], "shortNames": short(r), "categories": categories(r)}));
        for sub in subresources(r) {
            resources.push(json!({"name": format!("{}/{sub}", r.plural()), "singularName": "", "namespaced": r.namespaced(),
                "kind": if *sub == "scale" { "Scale" } else { r.kind() }, "verbs": ["get"]}));
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

fn metrics_list() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "metrics.k8s.io/v1beta1", "resources": [
        {"name": "pods", "singularName": "", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
        {"name": "nodes", "singularName": "", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
    ]})
}

fn group(name: &str, version: &str) -> Value {
    let gv = format!("{name}/{version}");
    json!({"name": name, "versions": [{"groupVersion": gv, "version": version}], "preferredVersion": {"groupVersion": gv, "version": version}})
}

/// The API server version berth reports (kubectl warns beyond one minor of skew).
fn version() -> Value {
    json!({"major": "1", "minor": "32", "gitVersion": super::node::version(),
        "gitCommit": "", "gitTreeState": "clean", "buildDate": "", "goVersion": "",
        "compiler": "rustc", "platform": format!("linux/{}", crate::config::kube_arch())})
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/version", get(|| async { Json(version()) }))
        .route("/version/", get(|| async { Json(version()) }))
        .route("/api", get(|| async { Json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})) }))
        .route("/api/v1", get(|| async { Json(resource_list("v1")) }))
        .route("/apis", get(|| async { Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [
            group("apps", "v1"), group("batch", "v1"), group("discovery.k8s.io", "v1"), group("berth.dev", "v1alpha1"), group("metrics.k8s.io", "v1beta1"),
        ]})) }))
        .route("/apis/apps/v1", get(|| async { Json(resource_list("apps/v1")) }))
        .route("/apis/batch/v1", get(|| async { Json(resource_list("batch/v1")) }))
        .route("/apis/discovery.k8s.io/v1", get(|| async { Json(resource_list("discovery.k8s.io/v1")) }))
        .route("/apis/berth.dev/v1alpha1", get(|| async { Json(resource_list(berth_spec::volume::API_VERSION)) }))
        .route("/apis/metrics.k8s.io/v1beta1", get(|| async { Json(metrics_list()) }))
}
