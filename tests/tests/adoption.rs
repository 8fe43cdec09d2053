//! Adoption with the real berth binary (issue 17): an unreadable records file
//! replaces no container, a pod deleted while the agent was down is removed
//! completely, and a crash-looping container keeps its back-off across an
//! agent restart.

use std::time::{Duration, Instant};

use berth_e2e::{Agent, AgentOpts, IMAGE, pgrep, preconditions};
use serde_json::Value;

fn pod_yaml(name: &str, cmd: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{cmd}"]
"#
    )
}

fn running(v: &Value) -> usize {
    v["items"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|p| p["status"]["phase"] == "Running")
                .count()
        })
        .unwrap_or(0)
}

fn restarts(v: &Value, name: &str) -> i64 {
    Agent::pod(v, name)
        .and_then(|p| p["status"]["containerStatuses"][0]["restartCount"].as_i64())
        .unwrap_or(-1)
}

fn pids(markers: &[&str]) -> Vec<Vec<u32>> {
    markers.iter().map(|m| pgrep(m)).collect()
}

#[test]
fn corrupt_records_replace_no_container() -> anyhow::Result<()> {
    if !preconditions("corrupt_records_replace_no_container") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btcr2",
        net: 36,
        port: 17332,
        with_image: true,
    })?;
    let markers = ["sleep 7141", "sleep 7142", "sleep 7143"];
    for (i, m) in markers.iter().enumerate() {
        a.write_manifest(
            &format!("p{i}.yaml"),
            &pod_yaml(&format!("p{i}"), &format!("exec {m}")),
        )?;
    }
    a.start()?;
    a.wait_for("3 running", Duration::from_secs(90), |v| {
        (running(v) == 3).then_some(())
    })?;
    let before = pids(&markers);
    assert!(before.iter().all(|p| p.len() == 1), "{before:?}");
    let records = a.state_dir.join("reconciler/pods.json");
    let good = std::fs::read(&records)?;
    let cases: [(&str, Vec<u8>); 3] = [
        ("truncated", good[..good.len() / 3].to_vec()),
        ("garbage", b"\x00\x7fgarbage{{".to_vec()),
        ("future", br#"{"version": 99, "pods": []}"#.to_vec()),
    ];
    for (tag, body) in cases {
        a.kill9();
        std::fs::write(&records, &body)?;
        a.start()?;
        a.wait_ready(Duration::from_secs(60))?;
        a.wait_for(
            &format!("{tag}: 3 running again"),
            Duration::from_secs(60),
            |v| (running(v) == 3).then_some(()),
        )?;
        // give a wrong removal or restart time to happen
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(pids(&markers), before, "{tag}: a container was replaced");
        let st = a.get_json("/api/v1/status")?;
        let cond = st["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "StateFilesReadable"))
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(cond["status"], "False", "{tag}: {st}");
        assert!(
            cond["message"]
                .as_str()
                .is_some_and(|m| m.contains(&format!(
                    "moved aside to {}.quarantined-",
                    records.display()
                ))),
            "{tag}: {cond}"
        );
        let ev = a.get_json("/api/v1/events")?.to_string();
        assert!(ev.contains("Quarantined"), "{tag}: {ev}");
        let kept = std::fs::read_dir(a.state_dir.join("reconciler"))?
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("pods.json.quarantined-")
            })
            .count();
        assert!(kept >= 1, "{tag}: quarantined file kept");
        // new records name all three again
        let text = std::fs::read_to_string(&records)?;
        for i in 0..3 {
            assert!(text.contains(&format!("\"p{i}\"")), "{tag}: {text}");
        }
    }
    a.shutdown_clean()?;
    assert!(pids(&markers).iter().all(Vec::is_empty));
    Ok(())
}

/// The instance's cgroup dirs below its parent (pods and containers).
fn cgroups_of(instance: &str) -> Vec<String> {
    let out = std::process::Command::new("find")
        .args([
            "/sys/fs/cgroup",
            "-maxdepth",
            "6",
            "-mindepth",
            "2",
            "-type",
            "d",
            "-path",
        ])
        .arg(format!("*/{instance}/*"))
        .output();
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    })
    .unwrap_or_default()
}

fn mounts_under(dir: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|t| t.starts_with(dir))
        .collect()
}

// regression (issue 17): "adopting pod", "deleting pod", "pod setup failed
// FailedMount", "pod removed", and every container kept running unmanaged
#[test]
fn pods_deleted_while_the_agent_was_down_are_removed_completely() -> anyhow::Result<()> {
    if !preconditions("pods_deleted_while_the_agent_was_down_are_removed_completely") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btcr3",
        net: 37,
        port: 17333,
        with_image: true,
    })?;
    a.write_manifest(
        "cfg.yaml",
        &format!(
            r#"apiVersion: v1
kind: ConfigMap
metadata: {{name: conf}}
data: {{greeting: hello}}
---
apiVersion: v1
kind: Pod
metadata: {{name: withconf}}
spec:
  terminationGracePeriodSeconds: 2
  volumes: [{{name: conf, configMap: {{name: conf}}}}]
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "exec sleep 7241"]
    volumeMounts: [{{name: conf, mountPath: /etc/conf}}]
"#
        ),
    )?;
    a.write_manifest("p.yaml", &pod_yaml("plain", "exec sleep 7242"))?;
    a.start()?;
    a.wait_for("2 running", Duration::from_secs(90), |v| {
        (running(v) == 2).then_some(())
    })?;
    assert_eq!(pgrep("sleep 724").len(), 2);
    assert!(!cgroups_of(&a.instance).is_empty());
    a.stop();
    // workloads outlive the agent
    assert_eq!(pgrep("sleep 724").len(), 2);
    for e in std::fs::read_dir(&a.manifests)?.flatten() {
        std::fs::remove_file(e.path())?;
    }
    std::fs::write(a.manifests.join("empty.yaml"), "# nothing\n")?;
    a.start()?;
    a.wait_ready(Duration::from_secs(60))?;
    let t0 = Instant::now();
    while !(pgrep("sleep 724").is_empty() && cgroups_of(&a.instance).is_empty()) {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "left running: {:?}, cgroups: {:?}\n{}",
            pgrep("sleep 724"),
            cgroups_of(&a.instance),
            berth_e2e::tail(&a.log(), 40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // the pods leave the API once their network and volumes are gone too,
    // shortly after their processes and cgroups
    a.wait_for("no pods", Duration::from_secs(10), |v| {
        (v["items"].as_array().map(Vec::len) == Some(0)).then_some(())
    })?;
    let run = a.run_dir.display().to_string();
    // per-pod and per-container mounts (below the dirs, not the dirs themselves)
    let left: Vec<String> = mounts_under(&format!("{run}/containers/"))
        .into_iter()
        .chain(mounts_under(&format!("{run}/pods/")))
        .chain(mounts_under(&format!("{run}/netns/")))
        .collect();
    assert!(left.is_empty(), "mounts left: {left:?}");
    let containers: Vec<String> = std::fs::read_dir(a.run_dir.join("containers"))
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    let inside: Vec<String> = std::fs::read_dir(e.path())
                        .map(|d| {
                            d.flatten()
                                .map(|f| f.file_name().to_string_lossy().into_owned())
                                .collect()
                        })
                        .unwrap_or_default();
                    format!("{} {inside:?}", e.file_name().to_string_lossy())
                })
                .collect()
        })
        .unwrap_or_default();
    assert!(
        containers.is_empty(),
        "container dirs left: {containers:?}\n{}",
        berth_e2e::tail(&a.log(), 40)
    );
    let log = a.log();
    assert!(
        !log.contains("FailedMount"),
        "set-up attempted for a deleted pod:\n{log}"
    );
    a.stop();
    Ok(())
}

#[test]
fn crash_loop_keeps_its_back_off_across_an_agent_restart() -> anyhow::Result<()> {
    if !preconditions("crash_loop_keeps_its_back_off_across_an_agent_restart") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btcr4",
        net: 38,
        port: 17334,
        with_image: true,
    })?;
    a.write_manifest("p.yaml", &pod_yaml("crasher", "exit 3"))?;
    a.start()?;
    // exits at 0 s (restart at once), ~0 s (10 s back-off), ~10 s (20 s back-off)
    a.wait_for("third exit, 20 s back-off", Duration::from_secs(90), |v| {
        let p = Agent::pod(v, "crasher")?;
        let waiting =
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff";
        (waiting && restarts(v, "crasher") == 2).then_some(())
    })?;
    a.kill9();
    let t0 = Instant::now();
    a.start()?;
    a.wait_ready(Duration::from_secs(60))?;
    // still waiting: not restarted at once by the new agent
    let v = a.wait_for("adopted in back-off", Duration::from_secs(30), |v| {
        let p = Agent::pod(v, "crasher")?;
        (p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"] == "CrashLoopBackOff")
            .then(|| v.clone())
    })?;
    assert_eq!(restarts(&v, "crasher"), 2, "{v}");
    while t0.elapsed() < Duration::from_secs(8) {
        let v = a.get_json("/api/v1/pods")?;
        assert_eq!(
            restarts(&v, "crasher"),
            2,
            "restarted {:?} after the agent restart, inside the back-off",
            t0.elapsed()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    // and it does restart once the back-off is over
    a.wait_for("restart 3", Duration::from_secs(60), |v| {
        (restarts(v, "crasher") >= 3).then_some(())
    })?;
    a.shutdown_clean()
}

/// An upgrade: pods started by the previous release's binaries (unversioned
/// `spec.json`, version 1 records) are all adopted by this build, none
/// replaced. Needs the previous `berth`, `berth-shim` and `berth-supervise`
/// in one directory, named by `BERTH_PREV_BIN_DIR`; `scripts/build-prev.sh`
/// builds them (cached by commit) and prints that directory, so it only runs
/// when asked:
/// `BERTH_PREV_BIN_DIR=$(scripts/build-prev.sh) cargo test -p berth-e2e --test adoption -- --ignored upgrade`.
#[test]
#[ignore = "needs the previous release's binaries in BERTH_PREV_BIN_DIR"]
fn upgrade_adopts_every_pod_of_the_previous_release() -> anyhow::Result<()> {
    if !preconditions("upgrade_adopts_every_pod_of_the_previous_release") {
        return Ok(());
    }
    let prev = std::path::PathBuf::from(
        std::env::var("BERTH_PREV_BIN_DIR")
            .map_err(|_| anyhow::anyhow!("BERTH_PREV_BIN_DIR is not set"))?,
    );
    let mut a = Agent::new(AgentOpts {
        instance: "btcr5",
        net: 39,
        port: 17335,
        with_image: true,
    })?;
    let markers = ["sleep 7441", "sleep 7442"];
    for (i, m) in markers.iter().enumerate() {
        a.write_manifest(
            &format!("p{i}.yaml"),
            &pod_yaml(&format!("u{i}"), &format!("exec {m}")),
        )?;
    }
    a.write_manifest(
        "d.yaml",
        &format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "exec sleep 7443"]
"#
        ),
    )?;
    // the previous release
    let log = std::fs::File::create(a.dir.join("prev.log"))?;
    let mut old = std::process::Command::new(prev.join("berth"))
        .args(a.args())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    let started = a.wait_for(
        "4 running under the previous release",
        Duration::from_secs(120),
        |v| (running(v) == 4).then_some(()),
    );
    let _ = old.kill();
    let _ = old.wait();
    started?;
    let spec = std::fs::read_dir(a.run_dir.join("containers"))?
        .flatten()
        .next()
        .map(|e| std::fs::read_to_string(e.path().join("spec.json")))
        .transpose()?
        .unwrap_or_default();
    assert!(
        !spec.contains("\"version\""),
        "the previous release wrote a versioned spec.json"
    );
    let before = (pids(&markers), pgrep("sleep 7443"));
    assert_eq!(before.1.len(), 2);
    // this build on the same state
    a.start()?;
    a.wait_ready(Duration::from_secs(60))?;
    a.wait_for(
        "4 running after the upgrade",
        Duration::from_secs(60),
        |v| (running(v) == 4).then_some(()),
    )?;
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        (pids(&markers), pgrep("sleep 7443")),
        before,
        "a container was replaced"
    );
    let st = a.get_json("/api/v1/status")?;
    assert!(
        !st["conditions"].to_string().contains("StateFilesReadable"),
        "records of the previous release were not read: {st}"
    );
    // read in place (rewritten as version 2 at the next change), not moved aside
    let moved = std::fs::read_dir(a.state_dir.join("reconciler"))?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("quarantined"))
        .count();
    assert_eq!(moved, 0);
    a.shutdown_clean()
}
