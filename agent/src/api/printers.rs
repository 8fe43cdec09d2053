//! Row cells by kubectl's own printer rules (Kubernetes'
//! pkg/printers/internalversion): the pod STATUS reason (Init:N/M,
//! Init:CrashLoopBackOff, PodInitializing, Terminating, NotReady, Completed,
//! Error, CrashLoopBackOff, ...), restarts with their age, and the `-o wide`
//! columns.

use serde_json::{Value, json};

use super::table::age;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn or_none(v: &str) -> String {
    if v.is_empty() {
        "<none>".into()
    } else {
        v.into()
    }
}

fn cond_true(o: &Value, type_: &str) -> bool {
    o["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == type_ && c["status"] == "True")
}

fn is_sidecar(spec: &Value, name: &str) -> bool {
    spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["name"] == name && c["restartPolicy"] == "Always")
}

fn terminated_reason(t: &Value, prefix: &str) -> String {
    match t["reason"].as_str().filter(|r| !r.is_empty()) {
        Some(r) => format!("{prefix}{r}"),
        None => match t["signal"].as_i64().filter(|s| *s != 0) {
            Some(sig) => format!("{prefix}Signal:{sig}"),
            None => format!("{prefix}ExitCode:{}", t["exitCode"].as_i64().unwrap_or(0)),
        },
    }
}

/// The later of `best` and a container's last termination time.
fn last_restart(best: &mut Option<String>, c: &Value) {
    if let Some(t) = c["lastState"]["terminated"]["finishedAt"].as_str()
        && best.as_deref().is_none_or(|b| b < t)
    {
        *best = Some(t.to_string());
    }
}

/// (ready, status reason, restarts) of a pod, as kubectl's printPod computes them.
pub fn pod_status(o: &Value) -> (String, String, String) {
    let spec = &o["spec"];
    let st = &o["status"];
    let mut total = spec["containers"].as_array().map_or(0, Vec::len);
    let n_init = spec["initContainers"].as_array().map_or(0, Vec::len);
    total += spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["restartPolicy"] == "Always")
        .count();
    let mut ready = 0;
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last: Option<String> = None;
    let mut sidecar_last: Option<String> = None;
    let mut reason = st["reason"]
        .as_str()
        .filter(|r| !r.is_empty())
        .or(st["phase"].as_str())
        .unwrap_or("")
        .to_string();
    if st["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated")
    {
        reason = "SchedulingGated".into();
    }
    let mut initializing = false;
    let empty = Vec::new();
    let inits = st["initContainerStatuses"].as_array().unwrap_or(&empty);
    for (i, c) in inits.iter().enumerate() {
        let rc = c["restartCount"].as_i64().unwrap_or(0);
        restarts += rc;
        last_restart(&mut last, c);
        let sidecar = is_sidecar(spec, s(&c["name"]));
        if sidecar {
            sidecar_restarts += rc;
            last_restart(&mut sidecar_last, c);
        }
        let state = &c["state"];
        if state["terminated"].is_object() && state["terminated"]["exitCode"].as_i64() == Some(0) {
            continue;
        }
        if sidecar && c["started"].as_bool() == Some(true) {
            if c["ready"].as_bool() == Some(true) {
                ready += 1;
            }
            continue;
        }
        if state["terminated"].is_object() {
            reason = terminated_reason(&state["terminated"], "Init:");
        } else if let Some(w) = state["waiting"]["reason"]
            .as_str()
            .filter(|w| !w.is_empty() && *w != "PodInitializing")
        {
            reason = format!("Init:{w}");
        } else {
            reason = format!("Init:{i}/{n_init}");
        }
        initializing = true;
        break;
    }
    if !initializing || cond_true(o, "Initialized") {
        restarts = sidecar_restarts;
        last = sidecar_last;
        let mut has_running = false;
        let statuses = st["containerStatuses"].as_array().unwrap_or(&empty);
        for c in statuses.iter().rev() {
            restarts += c["restartCount"].as_i64().unwrap_or(0);
            last_restart(&mut last, c);
            let state = &c["state"];
            if let Some(w) = state["waiting"]["reason"]
                .as_str()
                .filter(|w| !w.is_empty())
            {
                reason = w.to_string();
            } else if state["terminated"].is_object() {
                reason = terminated_reason(&state["terminated"], "");
            } else if c["ready"].as_bool() == Some(true) && state["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if cond_true(o, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    let phase = s(&st["phase"]);
    if !o["metadata"]["deletionTimestamp"].is_null() {
        if s(&st["reason"]) == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }
    let restarts = match (&last, restarts) {
        (Some(t), n) if n != 0 => format!("{n} ({} ago)", age(&json!(t))),
        (_, n) => n.to_string(),
    };
    (format!("{ready}/{total}"), reason, restarts)
}

pub fn pod(o: &Value) -> Vec<Value> {
    let (ready, reason, restarts) = pod_status(o);
    let st = &o["status"];
    let ip = st["podIPs"][0]["ip"]
        .as_str()
        .or(st["podIP"].as_str())
        .unwrap_or("");
    let gates = match o["spec"]["readinessGates"].as_array() {
        Some(g) if !g.is_empty() => {
            let ok = g
                .iter()
                .filter(|gate| cond_true(o, s(&gate["conditionType"])))
                .count();
            format!("{ok}/{}", g.len())
        }
        _ => "<none>".into(),
    };
    vec![
        json!(s(&o["metadata"]["name"])),
        json!(ready),
        json!(reason),
        json!(restarts),
        json!(age(&o["metadata"]["creationTimestamp"])),
        json!(or_none(ip)),
        json!(or_none(s(&o["spec"]["nodeName"]))),
        json!(or_none(s(&st["nominatedNodeName"]))),
        json!(gates),
    ]
}

/// CONTAINERS, IMAGES (comma-joined) of a pod template.
pub fn containers_images(template: &Value) -> (String, String) {
    let cs = template["spec"]["containers"].as_array();
    let names: Vec<&str> = cs.into_iter().flatten().map(|c| s(&c["name"])).collect();
    let images: Vec<&str> = cs.into_iter().flatten().map(|c| s(&c["image"])).collect();
    (names.join(","), images.join(","))
}

/// A label selector as kubectl prints it (`a=b,c in (d)`), `<none>` when empty.
pub fn selector(sel: &Value) -> String {
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", s(v)))
        .collect();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let vals: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .map(s)
            .collect();
        parts.push(match s(&e["operator"]) {
            "In" => format!("{} in ({})", s(&e["key"]), vals.join(",")),
            "NotIn" => format!("{} notin ({})", s(&e["key"]), vals.join(",")),
            "Exists" => s(&e["key"]).to_string(),
            _ => format!("!{}", s(&e["key"])),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// A Service's plain `spec.selector` map as kubectl prints it.
pub fn map_selector(m: &Value) -> String {
    let parts: Vec<String> = m
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", s(v)))
        .collect();
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

pub fn service_ports(o: &Value) -> String {
    let ports: Vec<String> = o["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            match p["nodePort"].as_i64() {
                Some(np) if np != 0 => format!("{}:{np}/{proto}", p["port"]),
                _ => format!("{}/{proto}", p["port"]),
            }
        })
        .collect();
    if ports.is_empty() {
        "<none>".into()
    } else {
        ports.join(",")
    }
}

/// kubectl's ENDPOINTS column: up to three `ip:port`, then `+ N more...`.
pub fn endpoints(o: &Value) -> String {
    let mut all = Vec::new();
    for sub in o["subsets"].as_array().into_iter().flatten() {
        let ports: Vec<i64> = sub["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["port"].as_i64())
            .collect();
        for a in sub["addresses"].as_array().into_iter().flatten() {
            if ports.is_empty() {
                all.push(s(&a["ip"]).to_string());
            }
            for p in &ports {
                all.push(format!("{}:{p}", s(&a["ip"])));
            }
        }
    }
    match all.len() {
        0 => "<none>".into(),
        n if n > 3 => format!("{} + {} more...", all[..3].join(","), n - 3),
        _ => all.join(","),
    }
}

/// kubectl's EndpointSlice ENDPOINTS column (addresses) and PORTS.
pub fn slice_cells(o: &Value) -> (String, String) {
    let addrs: Vec<&str> = o["endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|e| e["addresses"].as_array().into_iter().flatten().map(s))
        .collect();
    let ports: Vec<String> = o["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| p["port"].as_i64().unwrap_or(0).to_string())
        .collect();
    let a = match addrs.len() {
        0 => "<unset>".into(),
        n if n > 3 => format!("{} + {} more...", addrs[..3].join(","), n - 3),
        _ => addrs.join(","),
    };
    let p = if ports.is_empty() {
        "<unset>".into()
    } else {
        ports.join(",")
    };
    (a, p)
}

/// Node STATUS (Ready / NotReady [,SchedulingDisabled]) and ROLES.
pub fn node_status_roles(o: &Value) -> (String, String) {
    let status = if cond_true(o, "Ready") {
        "Ready"
    } else {
        "NotReady"
    };
    let mut roles: Vec<String> = o["metadata"]["labels"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
        .filter(|r| !r.is_empty())
        .map(String::from)
        .collect();
    if let Some(r) = o["metadata"]["labels"]["kubernetes.io/role"].as_str() {
        roles.push(r.into());
    }
    roles.sort();
    roles.dedup();
    let status = if o["spec"]["unschedulable"].as_bool() == Some(true) {
        format!("{status},SchedulingDisabled")
    } else {
        status.into()
    };
    (
        status,
        if roles.is_empty() {
            "<none>".into()
        } else {
            roles.join(",")
        },
    )
}

pub fn node_address(o: &Value, type_: &str) -> String {
    o["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == type_)
        .map(|a| s(&a["address"]).to_string())
        .unwrap_or_else(|| "<none>".into())
}

/// A Job's STATUS column (kubectl's `printJob`).
pub fn job_status(o: &Value) -> &'static str {
    let has = |t: &str| cond_true(o, t);
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if !o["metadata"]["deletionTimestamp"].is_null() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

/// A Job's COMPLETIONS column: `succeeded/completions`, or `n/1 of p`
/// for a work queue with parallelism.
pub fn job_completions(o: &Value) -> String {
    let succeeded = o["status"]["succeeded"].as_i64().unwrap_or(0);
    match (
        o["spec"]["completions"].as_i64(),
        o["spec"]["parallelism"].as_i64().unwrap_or(1),
    ) {
        (Some(c), _) => format!("{succeeded}/{c}"),
        (None, p) if p > 1 => format!("{succeeded}/1 of {p}"),
        (None, _) => format!("{succeeded}/1"),
    }
}

/// A Job's DURATION column: start to completion, or to now while it runs.
pub fn job_duration(o: &Value) -> String {
    let t = |v: &Value| v.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok());
    let Some(start) = t(&o["status"]["startTime"]) else {
        return String::new();
    };
    let end = t(&o["status"]["completionTime"]).unwrap_or_else(jiff::Timestamp::now);
    super::table::human(end.as_second() - start.as_second())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value, status: Value) -> Value {
        json!({"metadata": {"name": "p", "creationTimestamp": "2020-01-01T00:00:00Z"}, "spec": spec, "status": status})
    }
    fn two() -> Value {
        json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "a"}, {"name": "b"}]})
    }
    fn waiting(name: &str, reason: &str) -> Value {
        json!({"name": name, "ready": false, "restartCount": 0, "state": {"waiting": {"reason": reason}}})
    }
    fn running(name: &str, ready: bool) -> Value {
        json!({"name": name, "ready": ready, "restartCount": 0, "state": {"running": {}}})
    }
    fn exited(name: &str, code: i64, reason: &str) -> Value {
        json!({"name": name, "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": code, "reason": reason}}})
    }
    fn status(p: &Value) -> String {
        pod_status(p).1
    }

    #[test]
    fn init_containers() {
        let st = json!({"phase": "Pending", "initContainerStatuses": [exited("i1", 0, "Completed"), waiting("i2", "CrashLoopBackOff")],
            "containerStatuses": [waiting("a", "PodInitializing"), waiting("b", "PodInitializing")]});
        assert_eq!(status(&pod(two(), st)), "Init:CrashLoopBackOff");
        let st = json!({"phase": "Pending", "initContainerStatuses": [exited("i1", 0, "Completed"), running("i2", false)]});
        assert_eq!(status(&pod(two(), st)), "Init:1/2");
        let st = json!({"phase": "Pending", "initContainerStatuses": [exited("i1", 1, "Error")]});
        assert_eq!(status(&pod(two(), st)), "Init:Error");
        let st = json!({"phase": "Pending", "initContainerStatuses": [exited("i1", 0, "Completed"), exited("i2", 0, "Completed")],
            "containerStatuses": [waiting("a", "PodInitializing"), waiting("b", "PodInitializing")]});
        assert_eq!(status(&pod(two(), st)), "PodInitializing");
        let st = json!({"phase": "Pending", "initContainerStatuses": [{"name": "i1", "state": {"terminated": {"exitCode": 2}}}]});
        assert_eq!(status(&pod(two(), st)), "Init:ExitCode:2");
    }

    #[test]
    fn containers() {
        let spec = json!({"containers": [{"name": "a"}, {"name": "b"}]});
        // one container completed, one still running: not "Completed"
        let st = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}],
            "containerStatuses": [exited("a", 0, "Completed"), running("b", true)]});
        assert_eq!(
            pod_status(&pod(spec.clone(), st)),
            ("1/2".into(), "NotReady".into(), "0".into())
        );
        let st = json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [exited("a", 0, "Completed"), running("b", true)]});
        assert_eq!(status(&pod(spec.clone(), st)), "Running");
        let st = json!({"phase": "Succeeded", "containerStatuses": [exited("a", 0, "Completed"), exited("b", 0, "Completed")]});
        assert_eq!(
            pod_status(&pod(spec.clone(), st)),
            ("0/2".into(), "Completed".into(), "0".into())
        );
        let st = json!({"phase": "Failed", "containerStatuses": [exited("a", 1, "Error"), exited("b", 0, "Completed")]});
        assert_eq!(status(&pod(spec.clone(), st)), "Error");
        let mut c = waiting("a", "CrashLoopBackOff");
        c["restartCount"] = json!(3);
        c["lastState"] =
            json!({"terminated": {"exitCode": 1, "finishedAt": "2020-01-01T00:00:00Z"}});
        let st = json!({"phase": "Running", "containerStatuses": [c, running("b", true)]});
        let (ready, reason, restarts) = pod_status(&pod(spec.clone(), st));
        assert_eq!(
            (ready.as_str(), reason.as_str()),
            ("1/2", "CrashLoopBackOff")
        );
        assert!(
            restarts.starts_with("3 (") && restarts.ends_with(" ago)"),
            "{restarts}"
        );
        let st =
            json!({"phase": "Pending", "containerStatuses": [waiting("a", "ContainerCreating")]});
        assert_eq!(status(&pod(spec.clone(), st)), "ContainerCreating");
    }

    #[test]
    fn terminating_and_wide() {
        let mut p = pod(
            json!({"containers": [{"name": "a"}], "nodeName": "n1", "readinessGates": [{"conditionType": "x/y"}]}),
            json!({"phase": "Running", "podIP": "10.0.0.5", "conditions": [{"type": "x/y", "status": "True"}],
                "containerStatuses": [running("a", true)]}),
        );
        p["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
        let cells = super::pod(&p);
        assert_eq!(cells[2], "Terminating");
        assert_eq!(
            cells[5..],
            [
                json!("10.0.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("1/1")
            ]
        );
        p["status"]["phase"] = json!("Succeeded");
        p["status"]["containerStatuses"] = json!([exited("a", 0, "Completed")]);
        assert_eq!(status(&p), "Completed");
    }

    #[test]
    fn columns_text() {
        assert_eq!(
            selector(
                &json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "t", "operator": "In", "values": ["a", "b"]}]})
            ),
            "app=web,t in (a,b)"
        );
        let ep = json!({"subsets": [{"ports": [{"port": 80}], "addresses": [{"ip": "1.1.1.1"}, {"ip": "1.1.1.2"}, {"ip": "1.1.1.3"}, {"ip": "1.1.1.4"}]}]});
        assert_eq!(
            endpoints(&ep),
            "1.1.1.1:80,1.1.1.2:80,1.1.1.3:80 + 1 more..."
        );
        assert_eq!(super::super::table::human(59), "59s");
        assert_eq!(super::super::table::human(125), "2m5s");
        assert_eq!(super::super::table::human(3600 * 5 + 60 * 7), "5h7m");
        assert_eq!(super::super::table::human(86400 * 3), "3d");
        assert_eq!(super::super::table::human(86400 * 3 + 3600), "3d1h");
        assert_eq!(super::super::table::human(86400 * 30), "30d");
    }

    #[test]
    fn job_columns() {
        let job = |spec: Value, status: Value| json!({"metadata": {"name": "j"}, "spec": spec, "status": status});
        let done = job(
            json!({"completions": 3, "parallelism": 2}),
            json!({"succeeded": 3, "startTime": "2020-01-01T00:00:00Z", "completionTime": "2020-01-01T00:01:05Z",
                "conditions": [{"type": "Complete", "status": "True"}]}),
        );
        assert_eq!(job_status(&done), "Complete");
        assert_eq!(job_completions(&done), "3/3");
        assert_eq!(job_duration(&done), "65s");
        let failed = job(
            json!({"parallelism": 1}),
            json!({"conditions": [{"type": "Failed", "status": "True"}]}),
        );
        assert_eq!(job_status(&failed), "Failed");
        assert_eq!(job_completions(&failed), "0/1");
        assert_eq!(job_duration(&failed), "");
        let queue = job(json!({"parallelism": 4}), json!({"succeeded": 1}));
        assert_eq!(job_status(&queue), "Running");
        assert_eq!(job_completions(&queue), "1/1 of 4");
    }
}
