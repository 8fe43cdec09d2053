//! The operator policy with the real berth binary (issue 14): a privileged
//! pod is refused with the reason in status and events while a compliant pod
//! runs; a policy file that cannot be used stops the agent at start;
//! `berth validate --policy` reports the same refusal. Also: a pod whose name
//! is longer than a hostname runs (its hostname is cut to 63, as kubelet does).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use berth_e2e::{Agent, AgentOpts, IMAGE, berth_bin, pgrep, preconditions};
use serde_json::Value;

const POLICY: &str = "apiVersion: berth.dev/v1alpha1
kind: Policy
metadata: {name: e2e}
spec:
  allowedHostPaths:
  - pathPrefix: /srv/btpol1
    readOnly: true
";

/// A 70-character pod name (a DNS subdomain): more than a hostname may have.
fn long_name() -> String {
    format!("long-{}.{}", "n".repeat(35), "m".repeat(29))
}

fn manifests() -> String {
    let long = long_name();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: fine
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "exec sleep 7175"]
    securityContext:
      runAsUser: 1000
---
apiVersion: v1
kind: Pod
metadata:
  name: root
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "exec sleep 7176"]
    securityContext:
      privileged: true
---
apiVersion: v1
kind: Pod
metadata:
  name: hostfs
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "exec sleep 7177"]
    volumeMounts:
    - {{name: host, mountPath: /host}}
  volumes:
  - name: host
    hostPath: {{path: /}}
---
apiVersion: v1
kind: Pod
metadata:
  name: {long}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "exec sleep 7178"]
"#
    )
}

fn phase(v: &Value, name: &str) -> Option<String> {
    Agent::pod(v, name)?["status"]["phase"]
        .as_str()
        .map(str::to_string)
}

fn texts(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| d["text"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn policy_refuses_a_privileged_pod_and_runs_a_compliant_one() -> anyhow::Result<()> {
    if !preconditions("policy_refuses_a_privileged_pod_and_runs_a_compliant_one") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btpol1",
        net: 75,
        port: 17175,
        with_image: true,
    })?;
    let policy = a.dir.join("policy.yaml");
    std::fs::write(&policy, POLICY)?;
    a.extra_args = vec!["--policy".into(), policy.display().to_string()];
    a.write_manifest("pods.yaml", &manifests())?;
    a.start()?;
    let long = long_name();
    a.wait_for(
        "fine and the long-named pod Running",
        Duration::from_secs(90),
        |v| {
            (phase(v, "fine").as_deref() == Some("Running")
                && phase(v, &long).as_deref() == Some("Running"))
            .then_some(())
        },
    )?;
    assert!(a.log().contains("operator policy in force"), "{}", a.log());

    // the refused pods: per-object errors with file:line and the rule
    let st = a.get_json("/api/v1/status")?;
    let diags = texts(&st["sources"][0]["diagnostics"]);
    let file = a.manifests.join("pods.yaml").display().to_string();
    let want_root = format!(
        "{file}:15:1: Pod \"root\": spec.containers[0].securityContext.privileged: refused by policy (privileged): privileged containers are not allowed"
    );
    assert!(diags.contains(&want_root), "{diags:#?}");
    assert!(
        diags.iter().any(|d| d.starts_with(&format!("{file}:29:1: Pod \"hostfs\": spec.volumes[0].hostPath.path: refused by policy (allowedHostPaths)"))),
        "{diags:#?}"
    );
    let refused: Vec<&str> = st["refused"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["object"].as_str())
        .collect();
    assert_eq!(refused, ["Pod/default/hostfs", "Pod/default/root"]);
    assert!(st["errors"].as_u64() >= Some(2), "{st:#}");
    // as events
    let ev = a.get_json("/api/v1/events")?;
    let violations: Vec<(String, String)> = ev["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == "PolicyViolation")
        .map(|e| {
            (
                e["involvedObject"]["name"].as_str().unwrap_or("").into(),
                e["message"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(
        violations
            .iter()
            .any(|(n, m)| n == "root" && m.contains("privileged containers are not allowed")),
        "{violations:?}"
    );
    // never run: not listed, no process (give the agent a few passes)
    std::thread::sleep(Duration::from_secs(3));
    let pods = a.get_json("/api/v1/pods")?;
    assert!(Agent::pod(&pods, "root").is_none(), "{pods:#}");
    assert!(Agent::pod(&pods, "hostfs").is_none(), "{pods:#}");
    assert!(pgrep("sleep 7176").is_empty(), "the privileged pod runs");
    assert!(pgrep("sleep 7177").is_empty(), "the hostPath pod runs");
    assert_eq!(pgrep("sleep 7175").len(), 1);
    // the agent's own dirs are root-only (and a non-root container still runs)
    for d in [&a.state_dir, &a.run_dir] {
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(d)?.permissions());
        assert_eq!(mode & 0o777, 0o700, "{}", d.display());
    }

    // berth validate --policy reports the same, and exits 1
    let out = Command::new(berth_bin())
        .args(["validate", "--policy"])
        .arg(&policy)
        .arg(&a.manifests)
        .output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.lines().any(|l| l == want_root), "{stdout}");
    // without the policy the same files are valid
    let out = Command::new(berth_bin())
        .arg("validate")
        .arg(&a.manifests)
        .output()?;
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    a.shutdown_clean()?;
    Ok(())
}

/// Run the agent's command line with another `--policy`: it must exit 64
/// before touching the host, naming the file and the problem.
fn start_fails(a: &Agent, policy: &str) -> anyhow::Result<String> {
    let mut args = a.args();
    args.extend(["--policy".to_string(), policy.to_string()]);
    let mut child = Command::new(berth_bin())
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let t0 = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            anyhow::bail!("berth with --policy {policy} kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err)?;
    assert_eq!(status.code(), Some(64), "{err}");
    Ok(err)
}

#[test]
fn an_unusable_policy_stops_the_agent_at_start() -> anyhow::Result<()> {
    if !preconditions("an_unusable_policy_stops_the_agent_at_start") {
        return Ok(());
    }
    let a = Agent::new(AgentOpts {
        instance: "btpol2",
        net: 76,
        port: 17176,
        with_image: false,
    })?;
    a.write_manifest("p.yaml", &manifests())?;
    let missing = a.dir.join("missing.yaml").display().to_string();
    let err = start_fails(&a, &missing)?;
    assert!(
        err.contains(&format!("reading policy file {missing}")),
        "{err}"
    );
    let typo = a.dir.join("typo.yaml");
    std::fs::write(
        &typo,
        "apiVersion: berth.dev/v1alpha1\nkind: Policy\nspec:\n  privilegd: true\n",
    )?;
    let err = start_fails(&a, &typo.display().to_string())?;
    assert!(
        err.contains("policy file") && err.contains("privilegd"),
        "{err}"
    );
    let empty = a.dir.join("empty.yaml");
    std::fs::write(&empty, "")?;
    let err = start_fails(&a, &empty.display().to_string())?;
    assert!(err.contains("is empty"), "{err}");
    // nothing of the instance was created
    assert!(!a.run_dir.exists(), "the run dir was created");
    Ok(())
}

/// A symlink inside an allowed hostPath directory must not lead a mount out
/// of it: a pod allowed a directory read-write could otherwise plant
/// `allowed/escape -> /etc` and a second pod mount the host's `/etc` through
/// it. A symlink that stays inside the prefix still works.
#[test]
fn a_symlink_in_an_allowed_host_path_cannot_lead_a_mount_out() -> anyhow::Result<()> {
    if !preconditions("a_symlink_in_an_allowed_host_path_cannot_lead_a_mount_out") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btpol3",
        net: 77,
        port: 17177,
        with_image: true,
    })?;
    let allowed = a.dir.join("allowed");
    let outside = a.dir.join("outside");
    std::fs::create_dir_all(allowed.join("sub"))?;
    std::fs::create_dir_all(&outside)?;
    std::fs::write(outside.join("secret"), "host secret\n")?;
    std::fs::write(allowed.join("sub/shared"), "shared data\n")?;
    std::os::unix::fs::symlink(&outside, allowed.join("escape"))?;
    std::os::unix::fs::symlink("sub", allowed.join("inside"))?;
    let policy = a.dir.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "apiVersion: berth.dev/v1alpha1\nkind: Policy\nmetadata: {{name: e2e}}\nspec:\n  allowedHostPaths:\n  - pathPrefix: {}\n",
            allowed.display()
        ),
    )?;
    a.extra_args = vec!["--policy".into(), policy.display().to_string()];
    let pod = |name: &str, path: &str, n: u32| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "ls /mnt; exec sleep {n}"]
    volumeMounts:
    - {{name: h, mountPath: /mnt}}
  volumes:
  - name: h
    hostPath: {{path: {}, type: Directory}}
"#,
            allowed.join(path).display()
        )
    };
    a.write_manifest(
        "pods.yaml",
        &format!(
            "{}---\n{}",
            pod("leak", "escape", 7188),
            pod("ok", "inside", 7189)
        ),
    )?;
    a.start()?;
    a.wait_for("ok Running", Duration::from_secs(90), |v| {
        (phase(v, "ok").as_deref() == Some("Running")).then_some(())
    })?;
    // the refused mount: an event naming the escape, the container never started
    let t0 = Instant::now();
    let msg = loop {
        let ev = a.get_json("/api/v1/events")?;
        let found = ev["items"].as_array().into_iter().flatten().find_map(|e| {
            (e["involvedObject"]["name"] == "leak" && e["reason"] == "FailedMount")
                .then(|| e["message"].as_str().unwrap_or("").to_string())
        });
        if let Some(m) = found {
            break m;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "no FailedMount event for leak: {ev:#}\n{}",
            berth_e2e::tail(&a.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(msg.contains("resolves outside the allowed prefix"), "{msg}");
    let pods = a.get_json("/api/v1/pods")?;
    assert_ne!(phase(&pods, "leak").as_deref(), Some("Running"), "{pods:#}");
    assert!(pgrep("sleep 7188").is_empty(), "the escaping pod runs");
    // the pod whose symlink stays inside sees the directory it points to
    let (code, log) = a.get("/api/v1/namespaces/default/pods/ok/log")?;
    assert_eq!(code, 200, "{log}");
    assert!(log.contains("shared"), "{log}");
    a.shutdown_clean()?;
    Ok(())
}
