//! Pods and Deployments with the real berth binary: run, restart, back-off,
//! readiness, rollout, prune, and agent kill -9 adoption.

use std::time::{Duration, Instant};

use berth_e2e::{Agent, AgentOpts, IMAGE, pgrep, preconditions};
use serde_json::Value;

fn phase(v: &Value, name: &str) -> Option<String> {
    Agent::pod(v, name)?["status"]["phase"]
        .as_str()
        .map(str::to_string)
}

fn restarts(v: &Value, name: &str) -> i64 {
    Agent::pod(v, name)
        .and_then(|p| p["status"]["containerStatuses"][0]["restartCount"].as_i64())
        .unwrap_or(-1)
}

fn pod_yaml(name: &str, restart: &str, cmd: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  restartPolicy: {restart}
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{cmd}"]
"#
    )
}

#[test]
fn pod_runs_restarts_and_is_pruned() -> anyhow::Result<()> {
    if !preconditions("pod_runs_restarts_and_is_pruned") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btwl1",
        net: 1,
        port: 17101,
        with_image: true,
    })?;
    a.write_manifest(
        "p.yaml",
        &pod_yaml(
            "sleeper",
            "Always",
            "echo hello-from-berth; exec sleep 7101",
        ),
    )?;
    a.start()?;
    a.wait_for("sleeper Running", Duration::from_secs(60), |v| {
        (phase(v, "sleeper").as_deref() == Some("Running")).then_some(())
    })?;
    let pids = pgrep("sleep 7101");
    assert_eq!(pids.len(), 1, "one container process: {pids:?}");
    // isolation: the container has its own pid namespace
    let host_ns = std::fs::read_link("/proc/self/ns/pid")?;
    let ctr_ns = std::fs::read_link(format!("/proc/{}/ns/pid", pids[0]))?;
    assert_ne!(host_ns, ctr_ns);
    // logs through the API
    let t0 = std::time::Instant::now();
    loop {
        let (code, log) = a.get("/api/v1/namespaces/default/pods/sleeper/log")?;
        assert_eq!(code, 200, "log: {log}");
        if log.contains("hello-from-berth") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "log: {log}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // SIGKILL the container: restarted at once (first restart), new PID
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pids[0] as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    a.wait_for("restart 1", Duration::from_secs(30), |v| {
        (restarts(v, "sleeper") == 1 && phase(v, "sleeper").as_deref() == Some("Running"))
            .then_some(())
    })?;
    let pids2 = pgrep("sleep 7101");
    assert_eq!(pids2.len(), 1);
    assert_ne!(pids2[0], pids[0]);
    let last = a.get_json("/api/v1/namespaces/default/pods/sleeper")?;
    let lt = &last["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(lt["exitCode"], 137, "{last}");
    assert_eq!(lt["reason"], "Error");
    // prune: removing the file removes the pod and its process
    a.remove_manifest("p.yaml")?;
    a.write_manifest("empty.yaml", "# nothing\n")?;
    a.wait_for("sleeper gone", Duration::from_secs(30), |v| {
        Agent::pod(v, "sleeper").is_none().then_some(())
    })?;
    assert!(pgrep("sleep 7101").is_empty());
    a.shutdown_clean()
}

#[test]
fn crash_loop_backs_off() -> anyhow::Result<()> {
    if !preconditions("crash_loop_backs_off") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btwl2",
        net: 2,
        port: 17102,
        with_image: true,
    })?;
    a.write_manifest("p.yaml", &pod_yaml("crasher", "Always", "exit 3"))?;
    a.start()?;
    // 0 s, then 10 s, then 20 s: restartCount 2 arrives after >= ~10 s, and the
    // container waits in CrashLoopBackOff in between.
    let t0 = Instant::now();
    a.wait_for("CrashLoopBackOff", Duration::from_secs(60), |v| {
        let reason = Agent::pod(v, "crasher")?["status"]["containerStatuses"][0]["state"]["waiting"]["reason"].as_str()?.to_string();
        (reason == "CrashLoopBackOff").then_some(())
    })?;
    a.wait_for("restartCount 2", Duration::from_secs(60), |v| {
        (restarts(v, "crasher") >= 2).then_some(())
    })?;
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_secs(9),
        "second restart came after {took:?}, expected the 10 s back-off"
    );
    let p = a.get_json("/api/v1/namespaces/default/pods/crasher")?;
    assert_eq!(
        p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"], 3,
        "{p}"
    );
    // events show the back-off
    let ev = a.get_json("/api/v1/events")?;
    assert!(ev.to_string().contains("BackOff"), "{ev}");
    a.shutdown_clean()
}

#[test]
fn agent_kill9_adopts_running_pods() -> anyhow::Result<()> {
    if !preconditions("agent_kill9_adopts_running_pods") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btwl3",
        net: 3,
        port: 17103,
        with_image: true,
    })?;
    a.write_manifest("a.yaml", &pod_yaml("keeper", "Always", "exec sleep 7103"))?;
    a.write_manifest("b.yaml", &pod_yaml("quitter", "Never", "sleep 4; exit 5"))?;
    a.start()?;
    a.wait_for("both Running", Duration::from_secs(60), |v| {
        (phase(v, "keeper").as_deref() == Some("Running")
            && phase(v, "quitter").as_deref() == Some("Running"))
        .then_some(())
    })?;
    let before = pgrep("sleep 7103");
    assert_eq!(before.len(), 1);
    a.kill9();
    // workloads keep running while the agent is down; quitter exits meanwhile
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(pgrep("sleep 7103"), before, "container survived the agent");
    a.start()?;
    a.wait_for("adopted", Duration::from_secs(60), |v| {
        (phase(v, "keeper").as_deref() == Some("Running")
            && phase(v, "quitter").as_deref() == Some("Failed"))
        .then_some(())
    })?;
    // same process: not restarted
    assert_eq!(pgrep("sleep 7103"), before);
    let q = a.get_json("/api/v1/namespaces/default/pods/quitter")?;
    assert_eq!(
        q["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"], 5,
        "{q}"
    );
    assert_eq!(restarts(&a.get_json("/api/v1/pods")?, "keeper"), 0);
    a.shutdown_clean()
}

#[test]
fn deployment_rolls_and_scales() -> anyhow::Result<()> {
    if !preconditions("deployment_rolls_and_scales") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btwl4",
        net: 4,
        port: 17104,
        with_image: true,
    })?;
    let dep = |version: &str, replicas: u32| {
        format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  strategy: {{type: RollingUpdate, rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: {IMAGE}
        command: ["sh", "-c", "mkdir -p /www && echo {version} > /www/index.html && exec httpd -f -p 8080 -h /www"]
        readinessProbe:
          httpGet: {{path: /, port: 8080}}
          periodSeconds: 1
"#
        )
    };
    a.write_manifest("web.yaml", &dep("v1", 2))?;
    a.start()?;
    let ready_count = |v: &Value| -> usize {
        v["items"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                    .filter(|p| {
                        p["status"]["conditions"].as_array().is_some_and(|c| {
                            c.iter()
                                .any(|c| c["type"] == "Ready" && c["status"] == "True")
                        })
                    })
                    .count()
            })
            .unwrap_or(0)
    };
    a.wait_for("2 ready", Duration::from_secs(60), |v| {
        (ready_count(v) == 2).then_some(())
    })?;
    let d = a.get_json("/apis/apps/v1/namespaces/default/deployments/web")?;
    assert_eq!(d["status"]["readyReplicas"], 2, "{d}");
    let v1_hashes: std::collections::BTreeSet<String> = a.get_json("/api/v1/pods")?["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| {
            p["metadata"]["labels"]["pod-template-hash"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(v1_hashes.len(), 1);
    // roll to v2 with maxUnavailable 0: never fewer than 2 ready pods
    a.write_manifest("web.yaml", &dep("v2", 2))?;
    let t0 = Instant::now();
    let mut seen_hashes = std::collections::BTreeSet::new();
    loop {
        let v = a.get_json("/api/v1/pods")?;
        let ready = ready_count(&v);
        assert!(
            ready >= 2,
            "ready pods dropped to {ready} during rollout: {v}"
        );
        for p in v["items"].as_array().unwrap() {
            if let Some(h) = p["metadata"]["labels"]["pod-template-hash"].as_str() {
                seen_hashes.insert(h.to_string());
            }
        }
        let d = a.get_json("/apis/apps/v1/namespaces/default/deployments/web")?;
        let all_new = v["items"].as_array().unwrap().iter().all(|p| {
            p["metadata"]["labels"]["pod-template-hash"]
                .as_str()
                .is_some_and(|h| !v1_hashes.contains(h))
        });
        if all_new
            && d["status"]["updatedReplicas"] == 2
            && v["items"].as_array().unwrap().len() == 2
            && ready == 2
        {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "rollout did not finish: {d}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(seen_hashes.len(), 2, "two template revisions seen");
    // scale to 3, then 1
    a.write_manifest("web.yaml", &dep("v2", 3))?;
    a.wait_for("3 ready", Duration::from_secs(60), |v| {
        (ready_count(v) == 3).then_some(())
    })?;
    a.write_manifest("web.yaml", &dep("v2", 1))?;
    a.wait_for("1 pod", Duration::from_secs(60), |v| {
        (v["items"].as_array()?.len() == 1).then_some(())
    })?;
    a.shutdown_clean()
}
