//! The container runtime's accountability with the real berth binary: a
//! killed supervisor is noticed (event, container replaced, no orphan),
//! logs keep two runs and go with the pod, projected volumes are read-only.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use berth_e2e::{Agent, AgentOpts, IMAGE, pgrep, preconditions};
use serde_json::Value;

fn pod_status<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    Some(&Agent::pod(v, name)?["status"])
}

fn running_with_restarts(v: &Value, name: &str, n: i64) -> bool {
    pod_status(v, name).is_some_and(|s| {
        s["phase"] == "Running"
            && s["containerStatuses"][0]["restartCount"] == n
            && s["containerStatuses"][0]["state"]["running"].is_object()
    })
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or(0)
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z'))
}

/// The one container dir under the agent's run dir whose id ends in `suffix`.
fn container_dir(a: &Agent, suffix: &str) -> anyhow::Result<PathBuf> {
    let dirs: Vec<PathBuf> = std::fs::read_dir(a.run_dir.join("containers"))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    match dirs.as_slice() {
        [d] => Ok(d.clone()),
        _ => bail!("container dirs ending in {suffix}: {dirs:?}"),
    }
}

/// The pod's log dir `<state>/logs/default_<name>_<uid>`, if any.
fn pod_log_dir(a: &Agent, name: &str) -> Option<PathBuf> {
    let prefix = format!("default_{name}_");
    std::fs::read_dir(a.state_dir.join("logs"))
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&prefix))
        })
}

#[test]
fn killed_supervisor_is_reported_and_its_container_replaced() -> anyhow::Result<()> {
    if !preconditions("killed_supervisor_is_reported_and_its_container_replaced") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btsup1",
        net: 61,
        port: 17161,
        with_image: true,
    })?;
    a.write_manifest(
        "p.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: sup
spec:
  restartPolicy: Always
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo up; exec sleep 7161"]
    resources:
      limits: {{cpu: 500m, memory: 64Mi}}
"#
        ),
    )?;
    a.start()?;
    a.wait_for("sup Running", Duration::from_secs(60), |v| {
        running_with_restarts(v, "sup", 0).then_some(())
    })?;
    let before = pgrep("sleep 7161");
    assert_eq!(before.len(), 1, "one container process: {before:?}");
    let dir = container_dir(&a, "-main-0")?;
    let sup: u32 = std::fs::read_to_string(dir.join("shim.pid"))?
        .split_whitespace()
        .next()
        .context("empty shim.pid")?
        .parse()?;
    // the supervisor is accounted to the pod: in its cgroup's supervisor leaf
    let t0 = Instant::now();
    let cgroups = loop {
        let c = std::fs::read_to_string(format!("/proc/{sup}/cgroup"))?;
        let joined = c
            .lines()
            .any(|l| l.contains("memory:/btsup1/default_sup_") && l.ends_with("/supervisor"))
            || c.lines().any(|l| l.starts_with("0::/btsup1/default_sup_"));
        if joined || t0.elapsed() > Duration::from_secs(5) {
            break c;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        cgroups
            .lines()
            .any(|l| l.contains("/btsup1/default_sup_") && l.ends_with("/supervisor")),
        "supervisor {sup} not in the pod's cgroup:\n{cgroups}"
    );
    // root-only files
    assert_eq!(mode(&a.run_dir.join("containers")), 0o700);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("shim.sock")), 0o600);
    assert_eq!(mode(&a.state_dir.join("logs")), 0o700);

    // kill the supervisor by pid: noticed, reported, container replaced
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sup as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    a.wait_for(
        "restart after the supervisor died",
        Duration::from_secs(30),
        |v| running_with_restarts(v, "sup", 1).then_some(()),
    )?;
    let ev = a.get_json("/api/v1/events")?.to_string();
    assert!(
        ev.contains("SupervisorLost"),
        "no SupervisorLost event: {ev}"
    );
    let t0 = Instant::now();
    while alive(before[0]) && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !alive(before[0]),
        "orphaned container {} still runs",
        before[0]
    );
    let after = pgrep("sleep 7161");
    assert_eq!(after.len(), 1, "exactly the replacement runs: {after:?}");
    assert_ne!(after[0], before[0]);
    let pod = a.get_json("/api/v1/namespaces/default/pods/sup")?;
    let last = &pod["status"]["containerStatuses"][0]["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{pod}");
    assert!(
        last["message"]
            .as_str()
            .is_some_and(|m| m.contains("SupervisorLost")),
        "{pod}"
    );

    // both runs' logs are kept (current and previous), root-only
    let logs = pod_log_dir(&a, "sup").context("no log dir for pod sup")?;
    assert_eq!(mode(&logs), 0o700);
    let mut files: Vec<String> = std::fs::read_dir(logs.join("main"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, vec!["0.log", "1.log"]);
    assert_eq!(mode(&logs.join("main/1.log")), 0o600);

    // removing the pod removes its logs
    a.remove_manifest("p.yaml")?;
    a.write_manifest("empty.yaml", "# nothing\n")?;
    a.wait_for("sup gone", Duration::from_secs(60), |v| {
        Agent::pod(v, "sup").is_none().then_some(())
    })?;
    let t0 = Instant::now();
    while logs.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !logs.exists(),
        "logs of the removed pod stay: {}",
        logs.display()
    );
    assert!(pgrep("sleep 7161").is_empty());
    a.shutdown_clean()
}

#[test]
fn config_map_and_secret_volumes_are_read_only() -> anyhow::Result<()> {
    if !preconditions("config_map_and_secret_volumes_are_read_only") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btsup2",
        net: 62,
        port: 17162,
        with_image: true,
    })?;
    a.write_manifest(
        "p.yaml",
        &format!(
            r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: fast
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
data:
  password: aHVudGVyMg==
---
apiVersion: v1
kind: Pod
metadata:
  name: ro
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command:
    - sh
    - -c
    - |
      for d in /cfg /sec; do
        if echo x > $d/new; then echo "WROTE $d/new"; fi
        if echo x >> $d/..data/mode; then echo "WROTE $d/..data"; fi
      done
      cat /cfg/mode /sec/password; echo; echo finished; exec sleep 7162
    volumeMounts:
    - {{name: cfg, mountPath: /cfg}}
    - {{name: sec, mountPath: /sec, readOnly: false}}
  volumes:
  - {{name: cfg, configMap: {{name: settings}}}}
  - {{name: sec, secret: {{secretName: creds, defaultMode: 0400}}}}
"#
        ),
    )?;
    a.start()?;
    let t0 = Instant::now();
    let log = loop {
        let (code, log) = a.get("/api/v1/namespaces/default/pods/ro/log")?;
        if code == 200 && log.contains("finished") {
            break log;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("no output from pod ro ({code}): {log}\n{}", a.log());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        !log.contains("WROTE"),
        "wrote into a projected volume:\n{log}"
    );
    let erofs = log.matches("Read-only file system").count();
    assert!(erofs >= 4, "writes did not fail with EROFS:\n{log}");
    assert!(log.contains("fast") && log.contains("hunter2"), "{log}");
    // on the host, the projected files sit below root-only dirs
    let pods = a.run_dir.join("pods");
    assert_eq!(mode(&pods), 0o700);
    let pod_dir = std::fs::read_dir(&pods)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("default_ro_"))
        .context("no pod dir for ro")?;
    assert_eq!(mode(&pod_dir), 0o700);
    assert_eq!(mode(&pod_dir.join("volumes")), 0o700);
    assert_eq!(mode(&pod_dir.join("volumes/sec/password")), 0o400);
    a.shutdown_clean()
}
