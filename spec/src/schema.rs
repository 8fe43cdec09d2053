//! One JSON Schema (draft 2020-12) for every kind berth reads, for
//! yaml-language-server: `kind` picks the schema of that kind.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ReplicationController, Secret, Service,
};
use schemars::JsonSchema;
use serde_json::{Map, Value, json};

use crate::volume::Volume;

fn add<T: JsonSchema>(defs: &mut Map<String, Value>, name: &str) {
    let mut root = serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null);
    if let Some(obj) = root.as_object_mut() {
        if let Some(Value::Object(inner)) = obj.remove("$defs") {
            for (k, v) in inner {
                defs.entry(k).or_insert(v);
            }
        }
        obj.remove("$schema");
    }
    defs.insert(name.to_string(), root);
}

/// The schema document.
pub fn json_schema() -> Value {
    let mut defs = Map::new();
    let kinds: [(&str, &str, &str); 13] = [
        ("Pod", "v1", "berth.Pod"),
        ("Deployment", "apps/v1", "berth.Deployment"),
        ("Service", "v1", "berth.Service"),
        ("ConfigMap", "v1", "berth.ConfigMap"),
        ("Secret", "v1", "berth.Secret"),
        ("PersistentVolumeClaim", "v1", "berth.PersistentVolumeClaim"),
        ("Volume", crate::volume::API_VERSION, "berth.Volume"),
        ("Job", "batch/v1", "berth.Job"),
        ("CronJob", "batch/v1", "berth.CronJob"),
        ("StatefulSet", "apps/v1", "berth.StatefulSet"),
        ("DaemonSet", "apps/v1", "berth.DaemonSet"),
        ("ReplicaSet", "apps/v1", "berth.ReplicaSet"),
        ("ReplicationController", "v1", "berth.ReplicationController"),
    ];
    add::<Pod>(&mut defs, kinds[0].2);
    add::<Deployment>(&mut defs, kinds[1].2);
    add::<Service>(&mut defs, kinds[2].2);
    add::<ConfigMap>(&mut defs, kinds[3].2);
    add::<Secret>(&mut defs, kinds[4].2);
    add::<PersistentVolumeClaim>(&mut defs, kinds[5].2);
    add::<Volume>(&mut defs, kinds[6].2);
    add::<Job>(&mut defs, kinds[7].2);
    add::<CronJob>(&mut defs, kinds[8].2);
    add::<StatefulSet>(&mut defs, kinds[9].2);
    add::<DaemonSet>(&mut defs, kinds[10].2);
    add::<ReplicaSet>(&mut defs, kinds[11].2);
    add::<ReplicationController>(&mut defs, kinds[12].2);
    let names: Vec<&str> = kinds.iter().map(|k| k.0).chain(["List"]).collect();
    let mut rules: Vec<Value> = kinds
        .iter()
        .map(|(kind, api, def)| {
            json!({
                "if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                "then": {
                    "$ref": format!("#/$defs/{def}"),
                    "properties": {"apiVersion": {"const": api}}
                }
            })
        })
        .collect();
    rules.push(json!({
        "if": {"properties": {"kind": {"const": "List"}}, "required": ["kind"]},
        "then": {"properties": {"apiVersion": {"const": "v1"}, "items": {"type": "array", "items": {"$ref": "#"}}}, "required": ["items"]}
    }));
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://berth.dev/schema/manifests.json",
        "title": "berth manifest",
        "description": "A Kubernetes-flavoured manifest berth reconciles: Pod, Deployment, StatefulSet, DaemonSet, ReplicaSet, ReplicationController, Service, ConfigMap, Secret, PersistentVolumeClaim, berth.dev/v1alpha1 Volume, batch/v1 Job and CronJob, or a v1 List of them.",
        "type": "object",
        "required": ["apiVersion", "kind"],
        "properties": {"kind": {"enum": names}, "apiVersion": {"type": "string"}},
        "allOf": rules,
        "$defs": defs
    })
}

/// The schema, built once (schemars generation takes milliseconds).
fn cached() -> &'static Value {
    static SCHEMA: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(json_schema)
}

/// Paths (`spec.containers[0].env[1].value`) where `v`, a manifest of `kind`
/// read loosely from YAML, has a number or boolean where Kubernetes wants a
/// string. The YAML library hands `8080` to a string field as "8080", but
/// kube-apiserver rejects it, so berth does too (manifests must stay valid
/// Kubernetes). Int-or-string fields (ports, quantities) are untyped in the
/// schema and never reported.
pub(crate) fn unquoted_strings(kind: &str, v: &Value) -> Vec<(String, String)> {
    let schema = cached();
    let mut out = Vec::new();
    let Some(node) = schema["$defs"].get(format!("berth.{kind}")) else {
        return out;
    };
    walk(schema, node, v, String::new(), &mut out, 0);
    out
}

fn walk<'s>(
    root: &'s Value,
    mut node: &'s Value,
    v: &Value,
    path: String,
    out: &mut Vec<(String, String)>,
    depth: usize,
) {
    if depth > 64 {
        return;
    }
    // follow references and the `anyOf: [T, null]` that Option<T> becomes
    for _ in 0..16 {
        if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            match r
                .strip_prefix("#/$defs/")
                .and_then(|name| root["$defs"].get(name))
            {
                Some(n) => node = n,
                None => return,
            }
        } else if let Some(alts) = node.get("anyOf").and_then(Value::as_array) {
            match alts.iter().find(|a| a.get("type") != Some(&json!("null"))) {
                Some(n) => node = n,
                None => return,
            }
        } else {
            break;
        }
    }
    let wants_string = match node.get("type") {
        Some(Value::String(t)) => t == "string",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "string"),
        _ => false,
    };
    match v {
        Value::Number(_) | Value::Bool(_) if wants_string => out.push((path, v.to_string())),
        Value::Object(m) => {
            for (k, child) in m {
                let sub = node
                    .get("properties")
                    .and_then(|p| p.get(k))
                    .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(sub) = sub {
                    let p = crate::validate::key_path(&path, k);
                    let p = p.strip_prefix('.').map(str::to_string).unwrap_or(p);
                    walk(root, sub, child, p, out, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = node.get("items") {
                for (i, child) in items.iter().enumerate() {
                    walk(root, sub, child, format!("{path}[{i}]"), out, depth + 1);
                }
            }
        }
        _ => {}
    }
}
