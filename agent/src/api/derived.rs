//! Read-only views a cluster has and berth derives from what runs:
//! ReplicaSets (one per Deployment template, owning its pods), Endpoints and
//! EndpointSlices (the pods behind each Service), PersistentVolumeClaims (one
//! per berth `Volume`, bound when its directory exists).

use std::collections::{BTreeMap, BTreeSet};

use berth_spec::k8s_openapi::api::core::v1::PodTemplateSpec;
use serde_json::{Value, json};

use super::model::uid;

const HASH: &str = "pod-template-hash";

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn meta_key(v: &Value) -> (&str, &str) {
    (s(&v["metadata"]["namespace"]), s(&v["metadata"]["name"]))
}

fn owner_deployment(p: &Value) -> Option<&str> {
    p["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .map(|o| s(&o["name"]))
}

fn pod_ready(p: &Value) -> bool {
    p["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn terminating(p: &Value) -> bool {
    !p["metadata"]["deletionTimestamp"].is_null()
}

/// One ReplicaSet per (Deployment, template hash) seen: the current
/// template's (even with no pods yet) and older ones that still have pods.
pub fn replicasets(deployments: &[Value], pods: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for d in deployments {
        let (ns, name) = meta_key(d);
        let current = serde_json::from_value::<PodTemplateSpec>(d["spec"]["template"].clone())
            .map(|t| berth_reconciler::deployment::template_hash(&t))
            .unwrap_or_default();
        let mine: Vec<&Value> = pods
            .iter()
            .filter(|p| meta_key(p).0 == ns && owner_deployment(p) == Some(name))
            .collect();
        let mut hashes: BTreeSet<String> = mine
            .iter()
            .map(|p| s(&p["metadata"]["labels"][HASH]).to_string())
            .filter(|h| !h.is_empty())
            .collect();
        hashes.insert(current.clone());
        for h in hashes {
            let rs_pods: Vec<&&Value> = mine
                .iter()
                .filter(|p| s(&p["metadata"]["labels"][HASH]) == h && !terminating(p))
                .collect();
            let ready = rs_pods.iter().filter(|p| pod_ready(p)).count();
            let want = if h == current {
                d["spec"]["replicas"].as_i64().unwrap_or(1)
            } else {
                0
            };
            let rs_name = format!("{name}-{h}");
            let created = if h == current {
                d["metadata"]["creationTimestamp"].clone()
            } else {
                rs_pods
                    .iter()
                    .filter_map(|p| p["metadata"]["creationTimestamp"].as_str())
                    .min()
                    .map(|t| json!(t))
                    .unwrap_or_else(|| d["metadata"]["creationTimestamp"].clone())
            };
            let mut template = d["spec"]["template"].clone();
            template["metadata"]["labels"][HASH] = json!(h);
            let mut selector = d["spec"]["selector"].clone();
            selector["matchLabels"][HASH] = json!(h);
            let mut labels = d["spec"]["template"]["metadata"]["labels"].clone();
            if !labels.is_object() {
                labels = json!({});
            }
            labels[HASH] = json!(h);
            out.push(json!({
                "metadata": {
                    "name": rs_name, "namespace": ns, "labels": labels,
                    "uid": uid("ReplicaSet", ns, &rs_name, s(&created)),
                    "creationTimestamp": created, "generation": 1,
                    "annotations": {"deployment.kubernetes.io/desired-replicas": d["spec"]["replicas"].as_i64().unwrap_or(1).to_string()},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                        "uid": d["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true}],
                },
                "spec": {"replicas": want, "selector": selector, "template": template},
                "status": {"replicas": rs_pods.len(), "fullyLabeledReplicas": rs_pods.len(),
                    "readyReplicas": ready, "availableReplicas": ready, "observedGeneration": 1},
            }));
        }
    }
    out
}

/// Pods of a Deployment are owned by their ReplicaSet, as in a cluster.
pub fn own_pods(mut pods: Vec<Value>, rs: &[Value]) -> Vec<Value> {
    let by_name: BTreeMap<(&str, &str), &Value> = rs.iter().map(|r| (meta_key(r), r)).collect();
    for p in &mut pods {
        let Some(d) = owner_deployment(p) else {
            continue;
        };
        let (ns, h) = (
            s(&p["metadata"]["namespace"]).to_string(),
            s(&p["metadata"]["labels"][HASH]).to_string(),
        );
        let rs_name = format!("{d}-{h}");
        if let Some(r) = by_name.get(&(ns.as_str(), rs_name.as_str())) {
            p["metadata"]["ownerReferences"] = json!([{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name,
                "uid": r["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
            }]);
        }
    }
    pods
}

/// Pods a Service selects (same namespace, every selector label equal).
fn selected<'a>(svc: &Value, pods: &'a [Value]) -> Vec<&'a Value> {
    let Some(sel) = svc["spec"]["selector"]
        .as_object()
        .filter(|m| !m.is_empty())
    else {
        return Vec::new();
    };
    let ns = meta_key(svc).0;
    pods.iter()
        .filter(|p| {
            meta_key(p).0 == ns
                && !s(&p["status"]["podIP"]).is_empty()
                && sel
                    .iter()
                    .all(|(k, v)| p["metadata"]["labels"][k.as_str()] == *v)
        })
        .collect()
}

/// The container port a Service port's targetPort names (number or name).
fn target_port(port: &Value, pod: Option<&Value>) -> i64 {
    match &port["targetPort"] {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(name) => pod
            .and_then(|p| {
                p["spec"]["containers"]
                    .as_array()?
                    .iter()
                    .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                    .find(|cp| cp["name"] == name.as_str())
                    .and_then(|cp| cp["containerPort"].as_i64())
            })
            .unwrap_or(0),
        _ => port["port"].as_i64().unwrap_or(0),
    }
}

fn ports(svc: &Value, pod: Option<&Value>) -> Vec<Value> {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let mut o = json!({"port": target_port(p, pod), "protocol": p["protocol"].as_str().unwrap_or("TCP")});
            if let Some(n) = p["name"].as_str() {
                o["name"] = json!(n);
            }
            o
        })
        .collect()
}

fn target_ref(p: &Value) -> Value {
    json!({"kind": "Pod", "namespace": p["metadata"]["namespace"], "name": p["metadata"]["name"], "uid": p["metadata"]["uid"]})
}

fn svc_meta(svc: &Value, name: &str) -> Value {
    let (ns, svc_name) = meta_key(svc);
    json!({"name": name, "namespace": ns,
        "creationTimestamp": svc["metadata"]["creationTimestamp"],
        "labels": {"kubernetes.io/service-name": svc_name, "endpointslice.kubernetes.io/managed-by": "berth"}})
}

/// `v1` Endpoints: ready and not-ready addresses of each Service's pods.
pub fn endpoints(services: &[Value], pods: &[Value]) -> Vec<Value> {
    services
        .iter()
        .map(|svc| {
            let sel = selected(svc, pods);
            let addr = |p: &&Value| json!({"ip": p["status"]["podIP"], "nodeName": p["spec"]["nodeName"], "targetRef": target_ref(p)});
            let ready: Vec<Value> = sel.iter().filter(|p| pod_ready(p) && !terminating(p)).map(addr).collect();
            let not_ready: Vec<Value> = sel.iter().filter(|p| !pod_ready(p) || terminating(p)).map(addr).collect();
            let mut meta = svc_meta(svc, meta_key(svc).1);
            if let Some(l) = meta["labels"].as_object_mut() {
                l.remove("kubernetes.io/service-name");
                l.remove("endpointslice.kubernetes.io/managed-by");
            }
            let mut v = json!({"metadata": meta, "subsets": []});
            if !sel.is_empty() {
                let mut subset = json!({"ports": ports(svc, sel.first().copied())});
                if !ready.is_empty() {
                    subset["addresses"] = json!(ready);
                }
                if !not_ready.is_empty() {
                    subset["notReadyAddresses"] = json!(not_ready);
                }
                v["subsets"] = json!([subset]);
            }
            v
        })
        .collect()
}

/// `discovery.k8s.io/v1` EndpointSlices, one per Service.
pub fn endpoint_slices(services: &[Value], pods: &[Value]) -> Vec<Value> {
    services
        .iter()
        .filter(|svc| svc["spec"]["selector"].is_object())
        .map(|svc| {
            let sel = selected(svc, pods);
            let eps: Vec<Value> = sel
                .iter()
                .map(|p| {
                    let ready = pod_ready(p) && !terminating(p);
                    json!({"addresses": [p["status"]["podIP"]],
                        "conditions": {"ready": ready, "serving": pod_ready(p), "terminating": terminating(p)},
                        "nodeName": p["spec"]["nodeName"], "targetRef": target_ref(p)})
                })
                .collect();
            let name = format!("{}-berth", meta_key(svc).1);
            json!({"metadata": svc_meta(svc, &name), "addressType": "IPv4",
                "endpoints": eps, "ports": ports(svc, sel.first().copied())})
        })
        .collect()
}

/// A PersistentVolumeClaim per berth Volume (the claim pods name).
pub fn pvcs(volumes: &[Value], _pods: &[Value]) -> Vec<Value> {
    volumes
        .iter()
        .map(|v| {
            let (ns, name) = meta_key(v);
            let bound = v["status"]["phase"] == "Bound";
            let size = v["spec"]["size"].as_str().unwrap_or("");
            let mut spec = json!({"accessModes": ["ReadWriteOnce"], "storageClassName": "berth-local",
                "volumeMode": "Filesystem", "resources": {}});
            let mut status = json!({"phase": if bound { "Bound" } else { "Pending" }});
            if bound {
                spec["volumeName"] = json!(format!("berth-{ns}-{name}"));
                status["accessModes"] = json!(["ReadWriteOnce"]);
            }
            if !size.is_empty() {
                spec["resources"] = json!({"requests": {"storage": size}});
                if bound {
                    status["capacity"] = json!({"storage": size});
                }
            }
            json!({"metadata": {"name": name, "namespace": ns,
                    "creationTimestamp": v["metadata"]["creationTimestamp"],
                    "labels": v["metadata"]["labels"],
                    "annotations": {"berth.dev/host-path": v["status"]["hostPath"]}},
                "spec": spec, "status": status})
        })
        .collect()
}
