//! Kubernetes discovery documents, enough for `kubectl get`.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::ApiState;

fn res(name: &str, singular: &str, kind: &str, namespaced: bool, short: &[&str]) -> Value {
    json!({"name": name, "singularName": singular, "namespaced": namespaced, "kind": kind, "verbs": ["get", "list", "watch"], "shortNames": short})
}

fn core_v1() -> Value {
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": [
        res("pods", "pod", "Pod", true, &["po"]),
        {"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]},
        res("services", "service", "Service", true, &["svc"]),
        res("configmaps", "configmap", "ConfigMap", true, &["cm"]),
        res("secrets", "secret", "Secret", true, &[]),
        res("events", "event", "Event", true, &["ev"]),
        res("namespaces", "namespace", "Namespace", false, &["ns"]),
    ]})
}

fn group(name: &str, version: &str) -> Value {
    let gv = format!("{name}/{version}");
    json!({"name": name, "versions": [{"groupVersion": gv, "version": version}], "preferredVersion": {"groupVersion": gv, "version": version}})
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/version", get(|| async {
            Json(json!({"major": "1", "minor": "31", "gitVersion": concat!("v1.31.0-berth.", env!("CARGO_PKG_VERSION")), "platform": format!("linux/{}", crate::config::kube_arch())}))
        }))
        .route("/api", get(|| async { Json(json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})) }))
        .route("/api/v1", get(|| async { Json(core_v1()) }))
        .route("/apis", get(|| async { Json(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": [group("apps", "v1"), group("berth.dev", "v1alpha1")]})) }))
        .route("/apis/apps/v1", get(|| async {
            Json(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "apps/v1", "resources": [res("deployments", "deployment", "Deployment", true, &["deploy"])]}))
        }))
        .route("/apis/berth.dev/v1alpha1", get(|| async {
            Json(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "berth.dev/v1alpha1", "resources": [res("volumes", "volume", "Volume", true, &["vol"])]}))
        }))
}
