//! One JSON Schema (draft 2020-12) for every kind berth reads, for
//! yaml-language-server: `kind` picks the schema of that kind.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
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
    let kinds: [(&str, &str, &str); 7] = [
        ("Pod", "v1", "berth.Pod"),
        ("Deployment", "apps/v1", "berth.Deployment"),
        ("Service", "v1", "berth.Service"),
        ("ConfigMap", "v1", "berth.ConfigMap"),
        ("Secret", "v1", "berth.Secret"),
        ("PersistentVolumeClaim", "v1", "berth.PersistentVolumeClaim"),
        ("Volume", crate::volume::API_VERSION, "berth.Volume"),
    ];
    add::<Pod>(&mut defs, kinds[0].2);
    add::<Deployment>(&mut defs, kinds[1].2);
    add::<Service>(&mut defs, kinds[2].2);
    add::<ConfigMap>(&mut defs, kinds[3].2);
    add::<Secret>(&mut defs, kinds[4].2);
    add::<PersistentVolumeClaim>(&mut defs, kinds[5].2);
    add::<Volume>(&mut defs, kinds[6].2);
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
        "description": "A Kubernetes-flavoured manifest berth reconciles: Pod, Deployment, Service, ConfigMap, Secret, PersistentVolumeClaim, berth.dev/v1alpha1 Volume, or a v1 List of them.",
        "type": "object",
        "required": ["apiVersion", "kind"],
        "properties": {"kind": {"enum": names}, "apiVersion": {"type": "string"}},
        "allOf": rules,
        "$defs": defs
    })
}
