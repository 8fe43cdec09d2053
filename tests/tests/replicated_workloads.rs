//! StatefulSets, DaemonSets, ReplicaSets and ReplicationControllers with the
//! real berth binary (issue 15): ordered start, stable names and DNS,
//! per-replica Volumes kept across a rolling update and a scale-down, one
//! DaemonSet pod per node, ReplicaSet scaling without template rollout, and
//! adoption after kill -9 without replacing containers.

use std::time::Duration;

use berth_e2e::{Agent, AgentOpts, IMAGE, pgrep, preconditions};
use serde_json::Value;

fn ready(v: &Value, name: &str) -> bool {
    Agent::pod(v, name)
        .and_then(|p| p["status"]["conditions"].as_array().cloned())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn names(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

fn with_prefix(v: &Value, prefix: &str) -> Vec<String> {
    names(v)
        .into_iter()
        .filter(|n| n.starts_with(prefix))
        .collect()
}

fn uid(v: &Value, name: &str) -> String {
    Agent::pod(v, name)
        .and_then(|p| p["metadata"]["uid"].as_str())
        .unwrap_or_default()
        .to_string()
}

const SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata: {name: nginx}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: web, port: 8080}]
"#;

fn stateful_set(replicas: u32, generation: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: web}}
spec:
  serviceName: nginx
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: {IMAGE}
        env: [{{name: GENERATION, value: "{generation}"}}]
        command: ["sh", "-c", "echo start-$(hostname) >> /data/starts; cat /data/starts; cat /etc/hosts; mkdir -p /www; echo I-am-$(hostname) > /www/index.html; exec httpd -f -p 8080 -h /www"]
        ports: [{{containerPort: 8080, name: web}}]
        readinessProbe: {{tcpSocket: {{port: 8080}}, initialDelaySeconds: 3, periodSeconds: 1}}
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 10Mi}}}}
"#
    )
}

/// The pod IP of `name` now.
fn pod_ip(a: &Agent, name: &str) -> anyhow::Result<String> {
    let pods = a.get_json("/api/v1/pods")?;
    Ok(Agent::pod(&pods, name)
        .and_then(|p| p["status"]["podIP"].as_str())
        .unwrap_or("no-ip")
        .to_string())
}

/// RFC 3339 seconds of a timestamp field, for ordering.
fn secs(v: &Value) -> i64 {
    let s = v.as_str().unwrap_or("");
    // YYYY-MM-DDTHH:MM:SSZ: compare within one day's run by the clock part
    let t = s.get(11..19).unwrap_or("00:00:00");
    let p: Vec<i64> = t.split(':').filter_map(|x| x.parse().ok()).collect();
    let day: i64 = s.get(8..10).and_then(|d| d.parse().ok()).unwrap_or(0);
    day * 86400
        + p.first().unwrap_or(&0) * 3600
        + p.get(1).unwrap_or(&0) * 60
        + p.get(2).unwrap_or(&0)
}

#[test]
fn statefulset_ordered_start_dns_and_volumes() -> anyhow::Result<()> {
    if !preconditions("statefulset_ordered_start_dns_and_volumes") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btss1",
        net: 5,
        port: 17300,
        with_image: true,
    })?;
    a.write_manifest("svc.yaml", SERVICE)?;
    a.write_manifest("web.yaml", &stateful_set(2, 1))?;
    a.start()?;
    // ordered start: web-1 never exists before web-0 is Ready
    let mut early = Vec::new();
    a.wait_for("web-0 and web-1 ready", Duration::from_secs(120), |v| {
        if Agent::pod(v, "web-1").is_some() && !ready(v, "web-0") {
            early.push(names(v));
        }
        (ready(v, "web-0") && ready(v, "web-1")).then_some(())
    })?;
    assert!(
        early.is_empty(),
        "web-1 started before web-0 was Ready: {early:?}"
    );
    let pods = a.get_json("/api/v1/pods")?;
    let w0 = Agent::pod(&pods, "web-0").unwrap();
    let w1 = Agent::pod(&pods, "web-1").unwrap();
    let ready0 = w0["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .map(|c| secs(&c["lastTransitionTime"]))
        .unwrap_or(i64::MAX);
    assert!(
        secs(&w1["metadata"]["creationTimestamp"]) >= ready0,
        "web-1 created after web-0 Ready: {w0} {w1}"
    );
    assert_eq!(
        w0["metadata"]["ownerReferences"][0]["kind"], "StatefulSet",
        "{w0}"
    );
    assert_eq!(w0["metadata"]["ownerReferences"][0]["name"], "web", "{w0}");
    assert_eq!(w0["spec"]["hostname"], "web-0", "{w0}");
    assert_eq!(w0["spec"]["subdomain"], "nginx", "{w0}");
    let ip0 = w0["status"]["podIP"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!ip0.is_empty(), "web-0 has an IP: {w0}");
    let sts = a.get_json("/apis/apps/v1/namespaces/default/statefulsets/web")?;
    assert_eq!(sts["kind"], "StatefulSet", "{sts}");
    assert_eq!(sts["status"]["replicas"], 2, "{sts}");
    assert_eq!(sts["status"]["readyReplicas"], 2, "{sts}");
    let rev1 = sts["status"]["updateRevision"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(rev1.starts_with("web-"), "{sts}");
    assert_eq!(sts["status"]["currentRevision"], rev1.as_str(), "{sts}");

    // web-0.nginx resolves from a pod to web-0's address
    let log = a.run_client(
        "echo WEB0; nslookup web-0.nginx.default.svc.cluster.local; echo PAGE; wget -qO- http://web-1.nginx:8080/",
    )?;
    let (web0, page) = log
        .split_once("WEB0")
        .and_then(|(_, r)| r.split_once("PAGE"))
        .unwrap_or_default();
    assert!(web0.contains(&ip0), "web-0.nginx is {ip0}: {log}");
    assert!(
        page.contains("I-am-web-1"),
        "web-1.nginx serves web-1: {log}"
    );
    a.remove_manifest("client.yaml")?;

    // a template change rolls web-1 then web-0; web-0's claim keeps its data
    let uid0 = uid(&pods, "web-0");
    a.write_manifest("web.yaml", &stateful_set(2, 2))?;
    let sts = a.wait_for("rolled", Duration::from_secs(120), |v| {
        if uid(v, "web-0") == uid0 || !ready(v, "web-0") || !ready(v, "web-1") {
            return None;
        }
        let s = a
            .get_json("/apis/apps/v1/namespaces/default/statefulsets/web")
            .ok()?;
        (s["status"]["currentRevision"] == s["status"]["updateRevision"]
            && s["status"]["updatedReplicas"] == 2)
            .then_some(s)
    })?;
    assert_ne!(sts["status"]["updateRevision"], rev1.as_str(), "{sts}");
    let (_, log0) = a.get("/api/v1/namespaces/default/pods/web-0/log")?;
    assert_eq!(
        log0.matches("start-web-0").count(),
        2,
        "the new web-0 sees the old one's write in its Volume: {log0}"
    );
    // the pod's own hosts line with its FQDN, as kubelet writes it
    let ip0 = pod_ip(&a, "web-0")?;
    assert!(
        log0.contains(&format!(
            "{ip0}\tweb-0.nginx.default.svc.cluster.local\tweb-0\n"
        )),
        "web-0's /etc/hosts: {log0}"
    );
    let vol1 = a.state_dir.join("volumes/default/data-web-1");
    assert!(vol1.join("starts").is_file(), "{}", vol1.display());

    // scale down: web-1 goes, its Volume stays
    a.write_manifest("web.yaml", &stateful_set(1, 2))?;
    a.wait_for("web-1 gone", Duration::from_secs(60), |v| {
        (Agent::pod(v, "web-1").is_none() && ready(v, "web-0")).then_some(())
    })?;
    assert!(
        vol1.join("starts").is_file(),
        "scale-down keeps {}",
        vol1.display()
    );
    let table = a.get("/apis/apps/v1/namespaces/default/statefulsets")?;
    assert_eq!(table.0, 200, "{table:?}");

    // kill -9 and restart: web-0 is adopted, its container not restarted
    // (a new one would add a line to its Volume's starts file)
    let pods = a.get_json("/api/v1/pods")?;
    let uid0 = uid(&pods, "web-0");
    let starts0 = a.state_dir.join("volumes/default/data-web-0/starts");
    let before = std::fs::read_to_string(&starts0)?;
    assert_eq!(before.matches("start-web-0").count(), 2, "{before}");
    a.kill9();
    std::thread::sleep(Duration::from_secs(2));
    a.start()?;
    a.wait_ready(Duration::from_secs(60))?;
    a.wait_for("web-0 ready again", Duration::from_secs(60), |v| {
        ready(v, "web-0").then_some(())
    })?;
    std::thread::sleep(Duration::from_secs(3));
    let pods = a.get_json("/api/v1/pods")?;
    assert_eq!(uid(&pods, "web-0"), uid0, "web-0 adopted, not replaced");
    assert_eq!(with_prefix(&pods, "web-"), ["web-0"], "{pods}");
    assert_eq!(
        std::fs::read_to_string(&starts0)?,
        before,
        "web-0's container kept running"
    );
    a.shutdown_clean()
}

fn daemon_set(name: &str, node_selector: &str, marker: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: DaemonSet
metadata: {{name: {name}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 1
{node_selector}      containers:
      - name: c
        image: {IMAGE}
        command: ["sh", "-c", "exec sleep {marker}"]
"#
    )
}

fn replica_set(replicas: u32, marker: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: ReplicaSet
metadata: {{name: fe}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{tier: fe}}}}
  template:
    metadata: {{labels: {{tier: fe}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: {IMAGE}
        command: ["sh", "-c", "exec sleep {marker}"]
"#
    )
}

const RC: &str = r#"apiVersion: v1
kind: ReplicationController
metadata: {name: rc}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: rc}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: IMAGE
        command: ["sh", "-c", "exec sleep 17304"]
"#;

#[test]
fn daemonset_replicaset_rc_scale_and_adoption() -> anyhow::Result<()> {
    if !preconditions("daemonset_replicaset_rc_scale_and_adoption") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btss2",
        net: 6,
        port: 17302,
        with_image: true,
    })?;
    a.write_manifest("ds.yaml", &daemon_set("agent", "", 17302))?;
    a.write_manifest(
        "picky.yaml",
        &daemon_set("picky", "      nodeSelector: {disk: ssd}\n", 17306),
    )?;
    a.write_manifest("rs.yaml", &replica_set(3, 17303))?;
    a.write_manifest("rc.yaml", &RC.replace("IMAGE", IMAGE))?;
    a.start()?;
    let all_ready = |v: &Value| {
        let ds = with_prefix(v, "agent-");
        let fe = with_prefix(v, "fe-");
        let rc = with_prefix(v, "rc-");
        (ds.len() == 1
            && fe.len() == 3
            && rc.len() == 1
            && ds.iter().chain(&fe).chain(&rc).all(|n| ready(v, n)))
        .then_some((ds, fe, rc))
    };
    let (ds, fe, rc) = a.wait_for("all ready", Duration::from_secs(120), all_ready)?;
    let pods = a.get_json("/api/v1/pods")?;
    assert!(
        with_prefix(&pods, "picky-").is_empty(),
        "nodeSelector does not match: {pods}"
    );
    for (n, kind) in [
        (&ds[0], "DaemonSet"),
        (&fe[0], "ReplicaSet"),
        (&rc[0], "ReplicationController"),
    ] {
        let p = Agent::pod(&pods, n).unwrap();
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], kind, "{p}");
    }
    let d = a.get_json("/apis/apps/v1/namespaces/default/daemonsets/agent")?;
    assert_eq!(d["status"]["desiredNumberScheduled"], 1, "{d}");
    assert_eq!(d["status"]["numberReady"], 1, "{d}");
    let r = a.get_json("/apis/apps/v1/namespaces/default/replicasets/fe")?;
    assert_eq!(r["status"]["replicas"], 3, "{r}");
    assert_eq!(r["status"]["readyReplicas"], 3, "{r}");
    let c = a.get_json("/api/v1/namespaces/default/replicationcontrollers/rc")?;
    assert_eq!(c["status"]["readyReplicas"], 1, "{c}");
    let st = a.get_json("/api/v1/status")?;
    assert!(
        st.to_string().contains("picky"),
        "the DaemonSet that does not match is reported: {st}"
    );
    // ... and listed as Kubernetes lists it (0 desired), saying why
    let picky = a.get_json("/apis/apps/v1/namespaces/default/daemonsets/picky")?;
    assert_eq!(picky["status"]["desiredNumberScheduled"], 0, "{picky}");
    assert!(
        picky["metadata"]["creationTimestamp"].is_string(),
        "{picky}"
    );
    let why = picky["status"]["conditions"][0]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(why.contains("nodeSelector disk=ssd"), "{picky}");
    let (code, table) = a.get("/apis/apps/v1/namespaces/default/daemonsets")?;
    assert_eq!(code, 200, "{table}");
    assert!(
        table.contains("\"picky\"") && table.contains("\"agent\""),
        "both listed: {table}"
    );

    // kill -9 and restart: every pod adopted, no container replaced
    let pids: Vec<Vec<u32>> = [17302, 17303, 17304]
        .iter()
        .map(|m| pgrep(&format!("sleep {m}")))
        .collect();
    assert_eq!(pids.iter().map(Vec::len).collect::<Vec<_>>(), [1, 3, 1]);
    let uids: Vec<String> = names(&pods).iter().map(|n| uid(&pods, n)).collect();
    a.kill9();
    std::thread::sleep(Duration::from_secs(2));
    a.start()?;
    a.wait_ready(Duration::from_secs(60))?;
    let again = a.wait_for("all ready again", Duration::from_secs(60), all_ready)?;
    assert_eq!(again, (ds, fe, rc.clone()), "same pods");
    let pods2 = a.get_json("/api/v1/pods")?;
    let uids2: Vec<String> = names(&pods2).iter().map(|n| uid(&pods2, n)).collect();
    assert_eq!(uids, uids2, "no pod replaced");
    for (m, before) in [17302, 17303, 17304].iter().zip(&pids) {
        assert_eq!(
            &pgrep(&format!("sleep {m}")),
            before,
            "containers of sleep {m} kept"
        );
    }

    // scale the ReplicaSet to 1 with a new template: no rollout, old pods stay
    a.write_manifest("rs.yaml", &replica_set(1, 17305))?;
    a.wait_for("fe at 1", Duration::from_secs(60), |v| {
        let fe = with_prefix(v, "fe-");
        (fe.len() == 1 && Agent::pod(v, "fe-").is_none()).then_some(())
    })?;
    std::thread::sleep(Duration::from_secs(3));
    let fe_now = with_prefix(&a.get_json("/api/v1/pods")?, "fe-");
    assert_eq!(fe_now.len(), 1, "{fe_now:?}");
    assert_eq!(
        pgrep("sleep 17305").len(),
        0,
        "a template change replaces no pod"
    );
    a.wait_for("old fe containers gone", Duration::from_secs(30), |_| {
        (pgrep("sleep 17303").len() == 1).then_some(())
    })?;

    // the manifest goes: its pods are pruned
    a.remove_manifest("rc.yaml")?;
    a.wait_for("rc pruned", Duration::from_secs(60), |v| {
        with_prefix(v, "rc-").is_empty().then_some(())
    })?;
    a.shutdown_clean()
}
