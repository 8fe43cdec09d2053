//! Kubernetes pod semantics through the real binary (issue 15): lifecycle
//! hooks (a preStop hook finishes before SIGTERM), a native sidecar,
//! downwardAPI and projected volumes and env, hostAliases and dnsConfig,
//! Service environment variables, fsGroup ownership, and an offline first
//! start (an archive in the import dir, no pull attempted).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_e2e::{Agent, AgentOpts, IMAGE, preconditions};
use serde_json::Value;

fn phase(v: &Value, name: &str) -> Option<String> {
    Agent::pod(v, name).and_then(|p| p["status"]["phase"].as_str().map(str::to_string))
}

fn ready(v: &Value, name: &str) -> bool {
    Agent::pod(v, name)
        .and_then(|p| p["status"]["conditions"].as_array().cloned())
        .is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// Wait for a file a container writes into the test's hostPath dir.
fn wait_file(a: &Agent, p: &Path, timeout: Duration) -> anyhow::Result<String> {
    let t0 = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(p)
            && !s.is_empty()
        {
            return Ok(s);
        }
        if t0.elapsed() > timeout {
            bail!(
                "{} not written in {timeout:?}; agent log tail:\n{}",
                p.display(),
                berth_e2e::tail(&a.log(), 40)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// No pod tried a registry: the image came from the import dir (offline first start).
fn assert_no_pull_error(a: &Agent) -> anyhow::Result<()> {
    let ev = a.get_json("/api/v1/events")?;
    let pulls: Vec<&Value> = ev["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.contains("Failed to pull"))
                || e["reason"] == "BackOff"
                    && e["message"].as_str().is_some_and(|m| m.contains("image"))
        })
        .collect();
    assert!(
        pulls.is_empty(),
        "pull errors on an offline first start: {pulls:#?}"
    );
    Ok(())
}

#[test]
fn pre_stop_hook_finishes_before_sigterm() -> anyhow::Result<()> {
    if !preconditions("pre_stop_hook_finishes_before_sigterm") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btpfhook",
        net: 115,
        port: 17230,
        with_image: true,
    })?;
    let out = a.dir.join("out");
    std::fs::create_dir_all(&out)?;
    a.write_manifest(
        "hook.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: hook}}
spec:
  terminationGracePeriodSeconds: 20
  volumes:
  - name: out
    hostPath: {{path: {out}, type: Directory}}
  containers:
  - name: app
    image: {IMAGE}
    command: ["sh", "-c", "trap 'echo sigterm >> /out/log; exit 0' TERM; echo started >> /out/log; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: out, mountPath: /out}}]
    lifecycle:
      postStart:
        exec: {{command: ["sh", "-c", "echo post-start > /out/post-start"]}}
      preStop:
        exec: {{command: ["sh", "-c", "echo pre-stop-begin >> /out/log; sleep 2; echo pre-stop-end >> /out/log"]}}
"#,
            out = out.display()
        ),
    )?;
    a.start()?;
    a.wait_for("hook running", Duration::from_secs(60), |v| {
        (phase(v, "hook").as_deref() == Some("Running")).then_some(())
    })?;
    assert_eq!(
        wait_file(&a, &out.join("post-start"), Duration::from_secs(10))?.trim(),
        "post-start"
    );
    assert_no_pull_error(&a)?;
    a.write_manifest("hook.yaml", "# removed\n")?;
    a.wait_for("hook gone", Duration::from_secs(60), |v| {
        Agent::pod(v, "hook").is_none().then_some(())
    })?;
    let log = std::fs::read_to_string(out.join("log")).context("reading the order log")?;
    let lines: Vec<&str> = log.lines().collect();
    let at = |s: &str| lines.iter().position(|l| *l == s);
    let (Some(begin), Some(end), Some(term)) =
        (at("pre-stop-begin"), at("pre-stop-end"), at("sigterm"))
    else {
        bail!("missing steps in the order log: {lines:?}");
    };
    assert!(
        begin < end && end < term,
        "preStop must finish before SIGTERM: {lines:?}"
    );
    a.shutdown_clean()
}

#[test]
fn sidecar_downward_api_dns_service_env_and_fs_group() -> anyhow::Result<()> {
    if !preconditions("sidecar_downward_api_dns_service_env_and_fs_group") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btpffeat",
        net: 116,
        port: 17231,
        with_image: true,
    })?;
    let out = a.dir.join("out");
    std::fs::create_dir_all(&out)?;
    // the Service exists before the pod, so its variables are set
    a.write_manifest(
        "svc.yaml",
        r#"apiVersion: v1
kind: Service
metadata: {name: redis-primary}
spec:
  selector: {app: redis}
  ports: [{name: db, port: 6379}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg}
data: {greeting: hello}
"#,
    )?;
    a.start()?;
    let t0 = Instant::now();
    let svc_ip = loop {
        let v = a.get_json("/api/v1/services")?;
        if let Some(ip) = v["items"].as_array().into_iter().flatten().find_map(|s| {
            (s["metadata"]["name"] == "redis-primary")
                .then(|| s["spec"]["clusterIP"].as_str().map(str::to_string))
                .flatten()
        }) {
            break ip;
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("service got no clusterIP: {v}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    a.write_manifest(
        "pod.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: feat
  labels: {{app: feat, zone: north}}
  annotations: {{build: "42"}}
spec:
  terminationGracePeriodSeconds: 2
  securityContext: {{fsGroup: 2000}}
  hostAliases:
  - ip: "10.1.2.3"
    hostnames: [foo.remote, bar.remote]
  dnsConfig:
    searches: [my.dns.search.suffix]
    options: [{{name: ndots, value: "2"}}, {{name: edns0}}]
  volumes:
  - name: out
    hostPath: {{path: {out}, type: Directory}}
  - name: data
    emptyDir: {{}}
  - name: podinfo
    downwardAPI:
      items:
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
      - {{path: build, fieldRef: {{fieldPath: "metadata.annotations['build']"}}}}
  - name: all
    projected:
      sources:
      - configMap: {{name: cfg}}
      - downwardAPI:
          items:
          - {{path: name, fieldRef: {{fieldPath: metadata.name}}}}
          - path: mem
            resourceFieldRef: {{containerName: main, resource: limits.memory, divisor: 1Mi}}
  initContainers:
  - name: side
    image: {IMAGE}
    restartPolicy: Always
    command: ["sh", "-c", "if [ ! -f /out/side-once ]; then touch /out/side-once; sleep 1; exit 3; fi; echo up > /out/side-up; exec sleep 1000"]
    volumeMounts: [{{name: out, mountPath: /out}}]
    startupProbe:
      exec: {{command: ["test", "-f", "/out/side-once"]}}
      periodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    resources: {{limits: {{memory: 64Mi}}}}
    env:
    - name: MY_POD
      valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}
    - name: MY_MEM
      valueFrom: {{resourceFieldRef: {{resource: limits.memory, divisor: 1Mi}}}}
    command:
    - sh
    - -c
    - |
      test -f /out/side-once && echo yes > /out/side-first
      env | grep -E '^(REDIS_PRIMARY_|MY_)' | sort > /out/env
      cat /etc/hosts > /out/hosts
      cat /etc/resolv.conf > /out/resolv
      cat /etc/podinfo/labels > /out/labels
      cat /etc/podinfo/build > /out/build
      cat /etc/all/greeting /etc/all/name /etc/all/mem > /out/projected
      touch /data/new
      stat -c '%g %A' /data /data/new > /out/fsgroup
      id -G > /out/groups
      echo done > /out/done
      exec sleep 1000
    volumeMounts:
    - {{name: out, mountPath: /out}}
    - {{name: data, mountPath: /data}}
    - {{name: podinfo, mountPath: /etc/podinfo}}
    - {{name: all, mountPath: /etc/all}}
"#,
            out = out.display()
        ),
    )?;
    a.wait_for("feat ready", Duration::from_secs(60), |v| {
        ready(v, "feat").then_some(())
    })?;
    wait_file(&a, &out.join("done"), Duration::from_secs(20))?;
    wait_file(&a, &out.join("side-up"), Duration::from_secs(20))?;
    let read = |n: &str| std::fs::read_to_string(out.join(n)).unwrap_or_default();
    // the sidecar ran (and its startup probe passed) before the main container
    assert_eq!(read("side-first").trim(), "yes");
    // ... was restarted after its exit, and counts as an init container status
    let v = a.wait_for(
        "sidecar restarted and ready",
        Duration::from_secs(30),
        |v| {
            let p = Agent::pod(v, "feat")?;
            let s = p["status"]["initContainerStatuses"]
                .as_array()?
                .iter()
                .find(|c| c["name"] == "side")?
                .clone();
            (s["restartCount"].as_i64() >= Some(1) && s["ready"] == true && ready(v, "feat"))
                .then_some(s)
        },
    )?;
    assert!(v["state"]["running"].is_object(), "sidecar state: {v}");
    let env = read("env");
    for want in [
        format!("REDIS_PRIMARY_SERVICE_HOST={svc_ip}"),
        "REDIS_PRIMARY_SERVICE_PORT=6379".to_string(),
        "REDIS_PRIMARY_SERVICE_PORT_DB=6379".to_string(),
        format!("REDIS_PRIMARY_PORT=tcp://{svc_ip}:6379"),
        format!("REDIS_PRIMARY_PORT_6379_TCP_ADDR={svc_ip}"),
        "MY_POD=feat".to_string(),
        "MY_MEM=64".to_string(),
    ] {
        assert!(
            env.lines().any(|l| l == want),
            "{want} missing from:\n{env}"
        );
    }
    let hosts = read("hosts");
    assert!(
        hosts.contains("10.1.2.3\tfoo.remote\tbar.remote"),
        "hosts:\n{hosts}"
    );
    let resolv = read("resolv");
    assert!(
        resolv.contains("my.dns.search.suffix"),
        "resolv.conf:\n{resolv}"
    );
    assert!(
        resolv.contains("options ndots:2 edns0"),
        "resolv.conf:\n{resolv}"
    );
    assert!(
        resolv.lines().any(|l| l.starts_with("nameserver ")),
        "resolv.conf:\n{resolv}"
    );
    assert_eq!(read("labels"), "app=\"feat\"\nzone=\"north\"\n");
    assert_eq!(read("build"), "42");
    assert_eq!(read("projected"), "hellofeat64");
    // fsGroup: the emptyDir and what is created in it belong to group 2000, setgid dir
    let fsg = read("fsgroup");
    let lines: Vec<&str> = fsg.lines().collect();
    assert_eq!(lines.len(), 2, "{fsg}");
    assert!(
        lines[0].starts_with("2000 d") && lines[0].contains('s'),
        "{fsg}"
    );
    assert!(
        lines[1].starts_with("2000 "),
        "new file inherits the group: {fsg}"
    );
    assert!(
        read("groups").split_whitespace().any(|g| g == "2000"),
        "groups: {}",
        read("groups")
    );
    assert_no_pull_error(&a)?;
    a.shutdown_clean()
}

#[test]
fn enable_service_links_false_sets_no_service_variables() -> anyhow::Result<()> {
    if !preconditions("enable_service_links_false_sets_no_service_variables") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btpflink",
        net: 117,
        port: 17232,
        with_image: true,
    })?;
    let out = a.dir.join("out");
    std::fs::create_dir_all(&out)?;
    a.write_manifest(
        "svc.yaml",
        r#"apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
"#,
    )?;
    a.start()?;
    a.wait_ready(Duration::from_secs(30))?;
    std::thread::sleep(Duration::from_secs(1));
    a.write_manifest(
        "pod.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: nolinks}}
spec:
  terminationGracePeriodSeconds: 1
  enableServiceLinks: false
  volumes: [{{name: out, hostPath: {{path: {out}, type: Directory}}}}]
  containers:
  - name: c
    image: {IMAGE}
    command: ["sh", "-c", "env > /out/env.tmp; mv /out/env.tmp /out/env; exec sleep 1000"]
    volumeMounts: [{{name: out, mountPath: /out}}]
"#,
            out = out.display()
        ),
    )?;
    let env = wait_file(&a, &out.join("env"), Duration::from_secs(60))?;
    assert!(!env.contains("WEB_SERVICE_HOST"), "env:\n{env}");
    assert!(
        env.contains("HOSTNAME") || env.contains("PATH"),
        "env:\n{env}"
    );
    a.shutdown_clean()
}
