//! Pod identity and namespaces through the real binary (issue 15):
//! `shareProcessNamespace` (one PID namespace for the pod's containers,
//! PID 1 is the pod's init as kubelet's pause, `ps` in one container sees
//! the other's processes, the init goes with the pod), and `spec.hostname`
//! with `spec.subdomain` (the UTS hostname and the pod's own `/etc/hosts`
//! line `<ip> <hostname>.<subdomain>.<ns>.svc.<domain> <hostname>`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use berth_e2e::{Agent, AgentOpts, IMAGE, preconditions};
use serde_json::Value;

fn running(v: &Value, name: &str) -> bool {
    Agent::pod(v, name).is_some_and(|p| p["status"]["phase"] == "Running")
}

/// Wait for a file a container writes into the test's hostPath dir.
fn wait_file(a: &Agent, p: &Path, timeout: Duration) -> anyhow::Result<String> {
    let t0 = Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(p)
            && s.ends_with("END\n")
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

/// `pidns.pid` files under the instance's pod dirs: (file, pid).
fn pid_ns_inits(run_dir: &Path) -> Vec<(PathBuf, i32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(run_dir.join("pods"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let f = e.path().join("pidns.pid");
        if let Some(pid) = std::fs::read_to_string(&f)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            out.push((f, pid));
        }
    }
    out
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

#[test]
fn shared_pid_namespace_and_hostname_with_subdomain() -> anyhow::Result<()> {
    if !preconditions("shared_pid_namespace_and_hostname_with_subdomain") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btpfns",
        net: 31,
        port: 17321,
        with_image: true,
    })?;
    let out = a.dir.join("out");
    std::fs::create_dir_all(&out)?;
    // "b" reports what it sees once "a" runs; "a" is found by its marker argument
    let report = |file: &str| {
        format!(
            "until ps | grep -q '[s]leep 3601'; do sleep 0.2; [ $((n+=1)) -gt 100 ] && break; done; \
             {{ echo PS; ps; echo PID1; tr '\\000' ' ' < /proc/1/cmdline; echo; echo HOST; hostname; \
             echo HOSTS; cat /etc/hosts; echo END; }} > /out/{file}.tmp; mv /out/{file}.tmp /out/{file}; \
             while true; do sleep 1; done"
        )
    };
    a.write_manifest(
        "pods.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: shared}}
spec:
  shareProcessNamespace: true
  terminationGracePeriodSeconds: 2
  volumes:
  - name: out
    hostPath: {{path: {out}, type: Directory}}
  containers:
  - name: a
    image: {IMAGE}
    command: ["sleep", "3601"]
  - name: b
    image: {IMAGE}
    command:
    - sh
    - -c
    - |
      {shared}
    volumeMounts: [{{name: out, mountPath: /out}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: named}}
spec:
  hostname: db-0
  subdomain: dbs
  terminationGracePeriodSeconds: 2
  volumes:
  - name: out
    hostPath: {{path: {out}, type: Directory}}
  containers:
  - name: a
    image: {IMAGE}
    command: ["sleep", "3601"]
  - name: b
    image: {IMAGE}
    command:
    - sh
    - -c
    - |
      {named}
    volumeMounts: [{{name: out, mountPath: /out}}]
"#,
            out = out.display(),
            shared = report("shared"),
            named = report("named"),
        ),
    )?;
    a.start()?;
    a.wait_for("both pods running", Duration::from_secs(60), |v| {
        (running(v, "shared") && running(v, "named")).then_some(())
    })?;

    // shareProcessNamespace: b sees a's process; PID 1 is the pod's init
    let shared = wait_file(&a, &out.join("shared"), Duration::from_secs(30))?;
    ensure!(
        shared.contains("sleep 3601"),
        "ps in container b does not show container a's process:\n{shared}"
    );
    let pid1 = shared
        .split("PID1\n")
        .nth(1)
        .and_then(|s| s.lines().next())
        .unwrap_or("");
    ensure!(
        pid1.contains("berth-shim") && pid1.contains("pid1"),
        "PID 1 of the shared namespace is {pid1:?}, not the pod's init:\n{shared}"
    );
    // without it (the other pod), each container is its own PID 1
    let named = wait_file(&a, &out.join("named"), Duration::from_secs(30))?;
    ensure!(
        !named.contains("sleep 3601"),
        "a pod without shareProcessNamespace sees its other container:\n{named}"
    );
    let named_pid1 = named
        .split("PID1\n")
        .nth(1)
        .and_then(|s| s.lines().next())
        .unwrap_or("");
    ensure!(
        named_pid1.starts_with("sh -c"),
        "PID 1 of an unshared pod is {named_pid1:?}"
    );

    // spec.hostname + spec.subdomain
    let section = |text: &str, from: &str, to: &str| -> String {
        text.split(from)
            .nth(1)
            .and_then(|s| s.split(to).next())
            .unwrap_or("")
            .to_string()
    };
    ensure!(
        section(&named, "HOST\n", "HOSTS\n").trim() == "db-0",
        "UTS hostname:\n{named}"
    );
    let hosts = section(&named, "HOSTS\n", "END\n");
    let pods = a.get_json("/api/v1/pods")?;
    let ip = Agent::pod(&pods, "named")
        .and_then(|p| p["status"]["podIP"].as_str())
        .context("no podIP for named")?
        .to_string();
    ensure!(
        hosts
            .lines()
            .any(|l| l == format!("{ip}\tdb-0.dbs.default.svc.cluster.local\tdb-0")),
        "no kubelet-shaped line for {ip} in /etc/hosts:\n{hosts}"
    );
    ensure!(
        section(&shared, "HOST\n", "HOSTS\n").trim() == "shared",
        "the pod name stays the hostname without spec.hostname:\n{shared}"
    );

    // the init holds the namespace while the pod lives, and goes with it
    let inits = pid_ns_inits(&a.run_dir);
    ensure!(inits.len() == 1, "pid namespace inits: {inits:?}");
    let (file, init) = inits[0].clone();
    ensure!(
        cmdline(init).contains("pid1"),
        "{} names {init}, which is {:?}",
        file.display(),
        cmdline(init)
    );
    a.write_manifest("pods.yaml", "# removed\n")?;
    a.wait_for("pods gone", Duration::from_secs(60), |v| {
        v["items"]
            .as_array()
            .is_some_and(|i| i.is_empty())
            .then_some(())
    })?;
    let t0 = Instant::now();
    while cmdline(init).contains("pid1") {
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("the pod's PID namespace init {init} outlived the pod");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    a.shutdown_clean()
}
