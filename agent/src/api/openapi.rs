//! OpenAPI documents generated from the Kubernetes types (k8s-openapi's
//! `schemars` schemas) and berth's own `Volume`: v3 (`/openapi/v3` and one
//! document per group/version, what kubectl 1.32 reads for `explain`,
//! `apply` validation and patches) and v2 (`/openapi/v2`, JSON only).
//!
//! Each served kind's schema carries `x-kubernetes-group-version-kind`, and
//! each object path's write operations name their kind and accept
//! `fieldValidation` (so kubectl leaves validation to the server, which then
//! answers every write with berth's 405: change the manifests).

use std::sync::OnceLock;

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};
use berth_spec::k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use berth_spec::k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, PersistentVolumeClaim, Pod,
    ReplicationController, Secret, Service,
};
use berth_spec::k8s_openapi::api::discovery::v1::EndpointSlice;
use berth_spec::k8s_openapi::schemars::generate::{SchemaGenerator, SchemaSettings};
use berth_spec::k8s_openapi::schemars::{JsonSchema, transform::RemoveRefSiblings};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::objects::Res;
use super::{ApiError, ApiState};

/// `$ref` of each served kind's schema, generated into `g`.
fn refs(g: &mut SchemaGenerator) -> Vec<(Res, String)> {
    fn r<T: JsonSchema>(g: &mut SchemaGenerator) -> String {
        g.subschema_for::<T>()
            .get("$ref")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    }
    Res::ALL
        .into_iter()
        .map(|res| {
            let rf = match res {
                Res::Pods => r::<Pod>(g),
                Res::Deployments => r::<Deployment>(g),
                Res::Services => r::<Service>(g),
                Res::Volumes => r::<berth_spec::Volume>(g),
                Res::ConfigMaps => r::<ConfigMap>(g),
                Res::Secrets => r::<Secret>(g),
                Res::Events => r::<Event>(g),
                Res::Namespaces => r::<Namespace>(g),
                Res::Nodes => r::<Node>(g),
                Res::ReplicaSets => r::<ReplicaSet>(g),
                Res::Endpoints => r::<Endpoints>(g),
                Res::EndpointSlices => r::<EndpointSlice>(g),
                Res::Pvcs => r::<PersistentVolumeClaim>(g),
                Res::Jobs => r::<berth_spec::k8s_openapi::api::batch::v1::Job>(g),
                Res::CronJobs => r::<berth_spec::k8s_openapi::api::batch::v1::CronJob>(g),
                Res::StatefulSets => r::<StatefulSet>(g),
                Res::DaemonSets => r::<DaemonSet>(g),
                Res::ReplicationControllers => r::<ReplicationController>(g),
            };
            (res, rf)
        })
        .collect()
}

fn gvk(res: Res) -> Value {
    let (group, version) = res.api_version().rsplit_once('/').unwrap_or(("", "v1"));
    json!({"group": group, "version": version, "kind": res.kind()})
}

/// The definitions with the served kinds marked, and their `$ref`s.
fn schemas(settings: SchemaSettings) -> (Map<String, Value>, Vec<(Res, String)>) {
    let mut g = settings.into_generator();
    let refs = refs(&mut g);
    let mut defs = g.take_definitions(true);
    for (res, rf) in &refs {
        let name = rf.rsplit('/').next().unwrap_or("");
        if let Some(d) = defs.get_mut(name).and_then(Value::as_object_mut) {
            d.insert("x-kubernetes-group-version-kind".into(), json!([gvk(*res)]));
        }
    }
    (defs, refs)
}

/// The query parameters of write operations (kubectl looks for `fieldValidation`).
const WRITE_PARAMS: [&str; 4] = ["dryRun", "fieldManager", "fieldValidation", "force"];

/// Collection and object paths of a resource.
fn paths_of(res: Res) -> (String, String) {
    let base = match res.api_version() {
        "v1" => "/api/v1".to_string(),
        gv => format!("/apis/{gv}"),
    };
    let coll = if res.namespaced() {
        format!("{base}/namespaces/{{namespace}}/{}", res.plural())
    } else {
        format!("{base}/{}", res.plural())
    };
    let one = format!("{coll}/{{name}}");
    (coll, one)
}

fn op3(res: Res, rf: &str, action: &str, write: bool, body: &[&str]) -> Value {
    let mut params: Vec<Value> = Vec::new();
    if write {
        params.extend(WRITE_PARAMS.iter().map(|p| json!({"name": p, "in": "query", "schema": {"type": "string"}, "uniqueItems": true})));
    }
    let content = json!({"application/json": {"schema": {"$ref": rf}}});
    let mut op = json!({
        "description": format!("{action} {} (berth answers writes with 405: change the manifests)", res.kind()),
        "operationId": format!("{action}{}", res.kind()),
        "parameters": params,
        "responses": {"200": {"description": "OK", "content": content}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(res),
    });
    if !body.is_empty() {
        let c: Map<String, Value> = body
            .iter()
            .map(|t| (t.to_string(), json!({"schema": {"$ref": rf}})))
            .collect();
        op["requestBody"] = json!({"content": c, "required": true});
    }
    op
}

fn v3_doc(gv: &str) -> Option<Value> {
    let (defs, refs) = schemas(SchemaSettings::openapi3());
    let mut paths = Map::new();
    let mut any = false;
    for (res, rf) in refs.iter().filter(|(r, _)| r.api_version() == gv) {
        any = true;
        let (coll, one) = paths_of(*res);
        paths.insert(
            coll,
            json!({
                "get": op3(*res, rf, "list", false, &[]),
                "post": op3(*res, rf, "post", true, &["application/json", "application/yaml"]),
            }),
        );
        // no strategic-merge-patch body: kubectl then builds patches from its own types
        paths.insert(one, json!({
            "get": op3(*res, rf, "get", false, &[]),
            "put": op3(*res, rf, "put", true, &["application/json", "application/yaml"]),
            "patch": op3(*res, rf, "patch", true, &["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]),
            "delete": op3(*res, rf, "delete", true, &[]),
        }));
    }
    any.then(|| {
        json!({"openapi": "3.0.0", "info": {"title": "berth", "version": env!("CARGO_PKG_VERSION")},
            "paths": paths, "components": {"schemas": defs}})
    })
}

/// Group/versions with a document: (`api/v1` or `apis/<g>/<v>`, group/version).
fn group_versions() -> Vec<(String, &'static str)> {
    let mut gvs: Vec<&'static str> = Res::ALL.iter().map(|r| r.api_version()).collect();
    gvs.sort();
    gvs.dedup();
    gvs.into_iter()
        .map(|gv| {
            let key = if gv == "v1" {
                "api/v1".to_string()
            } else {
                format!("apis/{gv}")
            };
            (key, gv)
        })
        .collect()
}

/// Per group/version documents, generated once.
fn v3_docs() -> &'static Vec<(String, Value, String)> {
    static DOCS: OnceLock<Vec<(String, Value, String)>> = OnceLock::new();
    DOCS.get_or_init(|| {
        group_versions()
            .into_iter()
            .filter_map(|(key, gv)| {
                let doc = v3_doc(gv)?;
                let hash = hex::encode(Sha256::digest(doc.to_string()))[..16].to_uppercase();
                Some((key, doc, hash))
            })
            .collect()
    })
}

fn v3_root() -> Value {
    let paths: Map<String, Value> = v3_docs()
        .iter()
        .map(|(key, _, hash)| {
            (
                key.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
            )
        })
        .collect();
    json!({"paths": paths})
}

fn v3_one(key: &str) -> Result<Json<Value>, ApiError> {
    v3_docs()
        .iter()
        .find(|(k, _, _)| k == key)
        .map(|(_, d, _)| Json(d.clone()))
        .ok_or(ApiError::NoRoute)
}

fn v2() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut settings = SchemaSettings::draft07();
        settings.meta_schema = None;
        settings.transforms = vec![Box::new(RemoveRefSiblings::default())];
        let (defs, refs) = schemas(settings);
        let mut paths = Map::new();
        for (res, rf) in &refs {
            let (coll, one) = paths_of(*res);
            let op = |action: &str, write: bool| {
                let mut params: Vec<Value> = Vec::new();
                if write {
                    params.extend(WRITE_PARAMS.iter().map(|p| json!({"name": p, "in": "query", "type": "string", "uniqueItems": true})));
                }
                json!({"operationId": format!("{action}{}", res.kind()), "parameters": params,
                    "responses": {"200": {"description": "OK", "schema": {"$ref": rf}}},
                    "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk(*res)})
            };
            paths.insert(coll, json!({"get": op("list", false), "post": op("post", true)}));
            paths.insert(one, json!({"get": op("get", false), "put": op("put", true), "patch": op("patch", true), "delete": op("delete", true)}));
        }
        json!({"swagger": "2.0", "info": {"title": "berth", "version": env!("CARGO_PKG_VERSION")},
            "paths": paths, "definitions": defs})
    })
}

pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/openapi/v2", get(|| async { Json(v2().clone()) }))
        .route("/openapi/v3", get(|| async { Json(v3_root()) }))
        .route("/openapi/v3/", get(|| async { Json(v3_root()) }))
        .route(
            "/openapi/v3/api/v1",
            get(|| async { v3_one("api/v1") }),
        )
        .route(
            "/openapi/v3/apis/{g}/{v}",
            get(|Path((g, v)): Path<(String, String)>| async move { v3_one(&format!("apis/{g}/{v}")) }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_marked_and_paths_patchable() {
        let doc = v3_doc("v1").unwrap();
        let pod = &doc["components"]["schemas"]["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
        assert!(pod["properties"]["spec"].is_object());
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        let apps = v3_doc("apps/v1").unwrap();
        assert!(
            apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"].is_object()
        );
        assert!(v2()["definitions"]["io.k8s.api.core.v1.PodSpec"].is_object());
        assert!(v3_root()["paths"]["apis/berth.dev/v1alpha1"]["serverRelativeURL"].is_string());
    }
}
