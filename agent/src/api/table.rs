//! `meta.k8s.io/v1` Tables, the shape `kubectl get` asks for, with kubectl's columns.

use serde_json::{Value, json};

use super::objects::Res;
use super::printers;

/// (name, type, priority): priority 1 columns show with `-o wide` only.
type Col = (&'static str, &'static str, u8);

fn columns(res: Res) -> &'static [Col] {
    match res {
        Res::Pods => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
            ("Nominated Node", "string", 1),
            ("Readiness Gates", "string", 1),
        ],
        Res::Deployments => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        Res::StatefulSets => &[
            ("Name", "string", 0),
            ("Ready", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
        ],
        Res::DaemonSets => &[
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Node Selector", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        Res::ReplicaSets | Res::ReplicationControllers => &[
            ("Name", "string", 0),
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        Res::Services => &[
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        Res::ConfigMaps => &[
            ("Name", "string", 0),
            ("Data", "integer", 0),
            ("Age", "string", 0),
        ],
        Res::Secrets => &[
            ("Name", "string", 0),
            ("Type", "string", 0),
            ("Data", "integer", 0),
            ("Age", "string", 0),
        ],
        Res::Volumes => &[
            ("Name", "string", 0),
            ("Reclaim", "string", 0),
            ("Size", "string", 0),
            ("Phase", "string", 0),
            ("Age", "string", 0),
        ],
        Res::Events => &[
            ("Last Seen", "string", 0),
            ("Type", "string", 0),
            ("Reason", "string", 0),
            ("Object", "string", 0),
            ("Subobject", "string", 1),
            ("Source", "string", 1),
            ("Message", "string", 0),
            ("First Seen", "string", 1),
            ("Count", "string", 1),
            ("Name", "string", 1),
        ],
        Res::Namespaces => &[
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Age", "string", 0),
        ],
        Res::Nodes => &[
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
            ("External-IP", "string", 1),
            ("OS-Image", "string", 1),
            ("Kernel-Version", "string", 1),
            ("Container-Runtime", "string", 1),
        ],
        Res::Endpoints => &[
            ("Name", "string", 0),
            ("Endpoints", "string", 0),
            ("Age", "string", 0),
        ],
        Res::EndpointSlices => &[
            ("Name", "string", 0),
            ("AddressType", "string", 0),
            ("Ports", "string", 0),
            ("Endpoints", "string", 0),
            ("Age", "string", 0),
        ],
        Res::Pvcs => &[
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Volume", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            ("Age", "string", 0),
            ("VolumeMode", "string", 1),
        ],
        Res::Jobs => &[
            ("Name", "string", 0),
            ("Status", "string", 0),
            ("Completions", "string", 0),
            ("Duration", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        Res::CronJobs => &[
            ("Name", "string", 0),
            ("Schedule", "string", 0),
            ("Timezone", "string", 0),
            ("Suspend", "boolean", 0),
            ("Active", "integer", 0),
            ("Last Schedule", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
    }
}

/// kubectl's ages (apimachinery's `duration.HumanDuration`): `45s`,
/// `3m20s`, `12m`, `5h30m`, `20h`, `3d4h`, `40d`, `2y10d`.
pub fn age(ts: &Value) -> String {
    let Some(t) = ts.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()) else {
        return "<unknown>".into();
    };
    human(jiff::Timestamp::now().as_second() - t.as_second())
}

pub fn human(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    let s = secs.max(0);
    let (m, h) = (s / 60, s / 3600);
    let pair = |a: i64, ua: &str, b: i64, ub: &str| {
        if b == 0 {
            format!("{a}{ua}")
        } else {
            format!("{a}{ua}{b}{ub}")
        }
    };
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        pair(m, "m", s % 60, "s")
    } else if m < 180 {
        format!("{m}m")
    } else if h < 8 {
        pair(h, "h", m % 60, "m")
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        pair(h / 24, "d", h % 24, "h")
    } else if h < 24 * 365 * 2 {
        format!("{}d", h / 24)
    } else if h < 24 * 365 * 8 {
        let y = h / (24 * 365);
        pair(y, "y", (h / 24) % 365, "d")
    } else {
        format!("{}y", h / (24 * 365))
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn cells(res: Res, o: &Value) -> Vec<Value> {
    let name = json!(s(&o["metadata"]["name"]));
    let created = json!(age(&o["metadata"]["creationTimestamp"]));
    let st = &o["status"];
    match res {
        Res::Pods => printers::pod(o),
        Res::StatefulSets => {
            let want = o["spec"]["replicas"].as_i64().unwrap_or(1);
            let (cs, images) = printers::containers_images(&o["spec"]["template"]);
            let ready = st["readyReplicas"].as_i64().unwrap_or(0);
            vec![
                name,
                json!(format!("{ready}/{want}")),
                created,
                json!(cs),
                json!(images),
            ]
        }
        Res::DaemonSets => {
            let (cs, images) = printers::containers_images(&o["spec"]["template"]);
            let n = |f: &str| st[f].as_i64().unwrap_or(0);
            let node_sel = o["spec"]["template"]["spec"]["nodeSelector"]
                .as_object()
                .filter(|m| !m.is_empty())
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", s(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_else(|| "<none>".into());
            vec![
                name,
                json!(n("desiredNumberScheduled")),
                json!(n("currentNumberScheduled")),
                json!(n("numberReady")),
                json!(n("updatedNumberScheduled")),
                json!(n("numberAvailable")),
                json!(node_sel),
                created,
                json!(cs),
                json!(images),
                json!(printers::selector(&o["spec"]["selector"])),
            ]
        }
        Res::Deployments | Res::ReplicaSets | Res::ReplicationControllers => {
            let want = o["spec"]["replicas"].as_i64().unwrap_or(1);
            let (cs, images) = printers::containers_images(&o["spec"]["template"]);
            let sel = if res == Res::ReplicationControllers {
                json!(printers::map_selector(&o["spec"]["selector"]))
            } else {
                json!(printers::selector(&o["spec"]["selector"]))
            };
            let n = |f: &str| st[f].as_i64().unwrap_or(0);
            if res == Res::Deployments {
                vec![
                    name,
                    json!(format!("{}/{want}", n("readyReplicas"))),
                    json!(n("updatedReplicas")),
                    json!(n("availableReplicas")),
                    created,
                    json!(cs),
                    json!(images),
                    sel,
                ]
            } else {
                vec![
                    name,
                    json!(want),
                    json!(n("replicas")),
                    json!(n("readyReplicas")),
                    created,
                    json!(cs),
                    json!(images),
                    sel,
                ]
            }
        }
        Res::Services => {
            let external = match o["spec"]["externalIPs"].as_array() {
                Some(ips) if !ips.is_empty() => ips
                    .iter()
                    .map(|i| s(i).to_string())
                    .collect::<Vec<_>>()
                    .join(","),
                _ => "<none>".into(),
            };
            vec![
                name,
                json!(o["spec"]["type"].as_str().unwrap_or("ClusterIP")),
                json!(o["spec"]["clusterIP"].as_str().unwrap_or("<none>")),
                json!(external),
                json!(printers::service_ports(o)),
                created,
                json!(printers::map_selector(&o["spec"]["selector"])),
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
                json!(o["type"].as_str().unwrap_or("Opaque")),
                json!(keys.split(',').filter(|k| !k.is_empty()).count()),
                created,
            ]
        }
        Res::Volumes => vec![
            name,
            json!(o["spec"]["reclaimPolicy"].as_str().unwrap_or("Retain")),
            json!(o["spec"]["size"].as_str().unwrap_or("")),
            json!(st["phase"].as_str().unwrap_or("<pending>")),
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
                json!(s(&inv["fieldPath"])),
                json!(s(&o["source"]["component"])),
                json!(s(&o["message"])),
                json!(age(&o["firstTimestamp"])),
                json!(o["count"].as_i64().unwrap_or(1).to_string()),
                name,
            ]
        }
        Res::Namespaces => vec![
            name,
            json!(st["phase"].as_str().unwrap_or("Active")),
            created,
        ],
        Res::Nodes => {
            let (status, roles) = printers::node_status_roles(o);
            let info = &st["nodeInfo"];
            vec![
                name,
                json!(status),
                json!(roles),
                created,
                json!(s(&info["kubeletVersion"])),
                json!(printers::node_address(o, "InternalIP")),
                json!(printers::node_address(o, "ExternalIP")),
                json!(s(&info["osImage"])),
                json!(s(&info["kernelVersion"])),
                json!(s(&info["containerRuntimeVersion"])),
            ]
        }
        Res::Endpoints => vec![name, json!(printers::endpoints(o)), created],
        Res::EndpointSlices => {
            let (eps, ports) = printers::slice_cells(o);
            vec![
                name,
                json!(s(&o["addressType"])),
                json!(ports),
                json!(eps),
                created,
            ]
        }
        Res::Pvcs => {
            let modes: Vec<&str> = st["accessModes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| match s(m) {
                    "ReadWriteOnce" => "RWO",
                    "ReadOnlyMany" => "ROX",
                    "ReadWriteMany" => "RWX",
                    "ReadWriteOncePod" => "RWOP",
                    other => other,
                })
                .collect();
            vec![
                name,
                json!(s(&st["phase"])),
                json!(s(&o["spec"]["volumeName"])),
                json!(s(&st["capacity"]["storage"])),
                json!(modes.join(",")),
                json!(or_unset(s(&o["spec"]["storageClassName"]))),
                json!(or_unset(s(&o["spec"]["volumeAttributesClassName"]))),
                created,
                json!(s(&o["spec"]["volumeMode"])),
            ]
        }
        Res::Jobs => {
            let (cs, images) = printers::containers_images(&o["spec"]["template"]);
            vec![
                name,
                json!(printers::job_status(o)),
                json!(printers::job_completions(o)),
                json!(printers::job_duration(o)),
                created,
                json!(cs),
                json!(images),
                json!(printers::selector(&o["spec"]["selector"])),
            ]
        }
        Res::CronJobs => {
            let spec = &o["spec"];
            let (cs, images) =
                printers::containers_images(&spec["jobTemplate"]["spec"]["template"]);
            let last = match st["lastScheduleTime"].as_str() {
                Some(_) => age(&st["lastScheduleTime"]),
                None => "<none>".into(),
            };
            let sel = &spec["jobTemplate"]["spec"]["selector"];
            vec![
                name,
                json!(s(&spec["schedule"])),
                json!(spec["timeZone"].as_str().unwrap_or("<none>")),
                json!(spec["suspend"].as_bool().unwrap_or(false)),
                json!(st["active"].as_array().map_or(0, Vec::len)),
                json!(last),
                created,
                json!(cs),
                json!(images),
                json!(if sel.is_null() {
                    "<none>".to_string()
                } else {
                    printers::selector(sel)
                }),
            ]
        }
    }
}

fn or_unset(v: &str) -> &str {
    if v.is_empty() { "<unset>" } else { v }
}

/// A Table of `items`; each row carries the object's metadata (kubectl reads the namespace there).
pub fn table(res: Res, items: &[&Value], rv: &str) -> Value {
    let cols: Vec<Value> = columns(res)
        .iter()
        .map(|(n, t, p)| json!({"name": n, "type": t, "format": if *n == "Name" { "name" } else { "" }, "description": "", "priority": p}))
        .collect();
    let rows: Vec<Value> = items
        .iter()
        .map(|o| json!({"cells": cells(res, o), "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}}))
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {"resourceVersion": rv}, "columnDefinitions": cols, "rows": rows})
}
