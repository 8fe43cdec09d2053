//! `meta.k8s.io/v1` Tables, the shape `kubectl get` asks for, with kubectl's columns.

use serde_json::{Value, json};

use super::objects::Res;

fn columns(res: Res) -> &'static [(&'static str, &'static str)] {
    match res {
        Res::Pods => &[
            ("Name", "string"),
            ("Ready", "string"),
            ("Status", "string"),
            ("Restarts", "string"),
            ("Age", "string"),
            ("IP", "string"),
            ("Node", "string"),
        ],
        Res::Deployments => &[
            ("Name", "string"),
            ("Ready", "string"),
            ("Up-to-date", "integer"),
            ("Available", "integer"),
            ("Age", "string"),
        ],
        Res::Services => &[
            ("Name", "string"),
            ("Type", "string"),
            ("Cluster-IP", "string"),
            ("External-IP", "string"),
            ("Port(s)", "string"),
            ("Age", "string"),
        ],
        Res::ConfigMaps | Res::Secrets => {
            &[("Name", "string"), ("Data", "integer"), ("Age", "string")]
        }
        Res::Volumes => &[
            ("Name", "string"),
            ("Reclaim", "string"),
            ("Size", "string"),
            ("Phase", "string"),
            ("Age", "string"),
        ],
        Res::Events => &[
            ("Last Seen", "string"),
            ("Type", "string"),
            ("Reason", "string"),
            ("Object", "string"),
            ("Message", "string"),
        ],
        Res::Namespaces => &[("Name", "string"), ("Status", "string"), ("Age", "string")],
    }
}

/// kubectl's short durations: `45s`, `12m`, `5h`, `3d`.
pub fn age(ts: &Value) -> String {
    let Some(t) = ts.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    let secs = (jiff::Timestamp::now().as_second() - t.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 3600 * 2 => format!("{}m", s / 60),
        s if s < 86400 * 2 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

fn s(v: &Value) -> String {
    v.as_str().unwrap_or("").to_string()
}

fn pod_cells(o: &Value) -> Vec<Value> {
    let st = &o["status"];
    let total = o["spec"]["containers"].as_array().map_or(0, Vec::len);
    let statuses = st["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ready = statuses
        .iter()
        .filter(|c| c["ready"].as_bool() == Some(true))
        .count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|c| c["restartCount"].as_i64())
        .sum();
    // kubectl shows a waiting/terminated reason over the phase
    let reason = statuses
        .iter()
        .find_map(|c| {
            c["state"]["waiting"]["reason"]
                .as_str()
                .or(c["state"]["terminated"]["reason"].as_str())
        })
        .map(String::from)
        .or_else(|| st["reason"].as_str().map(String::from))
        .or_else(|| st["phase"].as_str().map(String::from))
        .unwrap_or_else(|| "Pending".into());
    vec![
        json!(s(&o["metadata"]["name"])),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts.to_string()),
        json!(age(&o["metadata"]["creationTimestamp"])),
        json!(st["podIP"].as_str().unwrap_or("<none>")),
        json!(o["spec"]["nodeName"].as_str().unwrap_or("<none>")),
    ]
}

fn cells(res: Res, o: &Value) -> Vec<Value> {
    let name = json!(s(&o["metadata"]["name"]));
    let created = json!(age(&o["metadata"]["creationTimestamp"]));
    match res {
        Res::Pods => pod_cells(o),
        Res::Deployments => {
            let st = &o["status"];
            let want = o["spec"]["replicas"].as_i64().unwrap_or(1);
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    st["readyReplicas"].as_i64().unwrap_or(0),
                    want
                )),
                json!(st["updatedReplicas"].as_i64().unwrap_or(0)),
                json!(st["availableReplicas"].as_i64().unwrap_or(0)),
                created,
            ]
        }
        Res::Services => {
            let ports: Vec<String> = o["spec"]["ports"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| match p["nodePort"].as_i64() {
                    Some(np) => format!(
                        "{}:{}/{}",
                        p["port"],
                        np,
                        p["protocol"].as_str().unwrap_or("TCP")
                    ),
                    None => format!("{}/{}", p["port"], p["protocol"].as_str().unwrap_or("TCP")),
                })
                .collect();
            vec![
                name,
                json!(o["spec"]["type"].as_str().unwrap_or("ClusterIP")),
                json!(o["spec"]["clusterIP"].as_str().unwrap_or("<pending>")),
                json!("<none>"),
                json!(ports.join(",")),
                created,
            ]
        }
        Res::ConfigMaps => {
            let n = ["data", "binaryData"]
                .iter()
                .filter_map(|f| o[*f].as_object())
                .map(|m| m.len())
                .sum::<usize>();
            vec![name, json!(n), created]
        }
        Res::Secrets => {
            let keys = o["metadata"]["annotations"]["berth.dev/redacted-keys"]
                .as_str()
                .unwrap_or("");
            vec![
                name,
                json!(keys.split(',').filter(|k| !k.is_empty()).count()),
                created,
            ]
        }
        Res::Volumes => vec![
            name,
            json!(o["spec"]["reclaimPolicy"].as_str().unwrap_or("Retain")),
            json!(o["spec"]["size"].as_str().unwrap_or("")),
            json!(o["status"]["phase"].as_str().unwrap_or("<pending>")),
            created,
        ],
        Res::Events => {
            let inv = &o["involvedObject"];
            vec![
                json!(age(&o["lastTimestamp"])),
                json!(s(&o["type"])),
                json!(s(&o["reason"])),
                json!(format!(
                    "{}/{}",
                    s(&inv["kind"]).to_lowercase(),
                    s(&inv["name"])
                )),
                json!(s(&o["message"])),
            ]
        }
        Res::Namespaces => vec![name, json!("Active"), created],
    }
}

/// A Table of `items`; each row carries the object's metadata (kubectl reads the namespace there).
pub fn table(res: Res, items: &[Value], rv: &str) -> Value {
    let cols: Vec<Value> = columns(res)
        .iter()
        .map(|(n, t)| json!({"name": n, "type": t, "format": if *n == "Name" { "name" } else { "" }, "description": "", "priority": 0}))
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| json!({"cells": cells(res, o), "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}}))
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv}, "columnDefinitions": cols, "rows": rows})
}
