//! Every kind of state file the agent cannot read is shown the same way
//! (issue 17): the pod records, IPAM, Services and the rollout state are
//! moved aside; a container's `spec.json` of another format version and the
//! supervisor's unreadable `status.json` are kept in place. Each one raises
//! an event and is named, with where it went, in the `StateFilesReadable`
//! condition of `/api/v1/status`; no running container is removed or
//! replaced. A running container's truncated or garbage `spec.json`, its
//! garbage `state.json` and an ended one's missing `status.json` lose no
//! container either (`damaged_container_files_lose_no_running_container`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use berth_e2e::{Agent, AgentOpts, IMAGE, pgrep, preconditions};
use serde_json::Value;

const MARKER: &str = "sleep 7351";

fn manifests() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: runs
  labels: {{app: runs}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "exec {MARKER}"]
---
apiVersion: v1
kind: Pod
metadata:
  name: done
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "exit 0"]
---
apiVersion: v1
kind: Service
metadata:
  name: runs
spec:
  selector: {{app: runs}}
  ports:
  - port: 80
    targetPort: 8080
"#
    )
}

fn phase(v: &Value, name: &str) -> String {
    Agent::pod(v, name)
        .and_then(|p| p["status"]["phase"].as_str())
        .unwrap_or("")
        .to_string()
}

/// The one file named `name` below `dir` (not one already moved aside).
fn find(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let ft = e.file_type()?;
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() && e.file_name() == name {
                found.push(e.path());
            }
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        n => bail!("{n} files named {name} below {}: {found:?}", dir.display()),
    }
}

/// The `name` file of the container whose pod is `pod` (its `spec.json`
/// names the pod).
fn container_file(run_dir: &Path, pod: &str, name: &str) -> anyhow::Result<PathBuf> {
    for e in std::fs::read_dir(run_dir.join("containers"))?.flatten() {
        let spec: Value = std::fs::read(e.path().join("spec.json"))
            .ok()
            .and_then(|d| serde_json::from_slice(&d).ok())
            .unwrap_or(Value::Null);
        if spec["config"]["pod"]["name"] == pod {
            return Ok(e.path().join(name));
        }
    }
    bail!("no container of pod {pod} below {}", run_dir.display())
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Damage {
    Truncate,
    Garbage,
    FutureVersion,
}

/// Write a damaged copy of `good` (the file as the agent wrote it) to `path`.
fn damage(path: &Path, good: &[u8], how: Damage) -> anyhow::Result<()> {
    let bad = match how {
        Damage::Truncate => good[..good.len() / 2].to_vec(),
        Damage::Garbage => b"\x00\x7fgarbage{{".to_vec(),
        Damage::FutureVersion => {
            let mut doc: Value = serde_json::from_slice(good)?;
            doc["version"] = Value::from(99);
            serde_json::to_vec(&doc)?
        }
    };
    std::fs::write(path, bad)?;
    Ok(())
}

#[test]
fn unreadable_state_files_are_named_and_replace_no_container() -> anyhow::Result<()> {
    if !preconditions("unreadable_state_files_are_named_and_replace_no_container") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btcr1",
        net: 35,
        port: 17331,
        with_image: true,
    })?;
    a.write_manifest("all.yaml", &manifests())?;
    a.start()?;
    a.wait_for(
        "runs Running, done Succeeded",
        Duration::from_secs(90),
        |v| (phase(v, "runs") == "Running" && phase(v, "done") == "Succeeded").then_some(()),
    )?;
    let before = pgrep(MARKER);
    assert_eq!(before.len(), 1, "{before:?}");
    // the files, found once (a quarantine leaves a fresh file where each was)
    let read = |p: PathBuf| -> anyhow::Result<(PathBuf, Vec<u8>)> {
        let good = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        Ok((p, good))
    };
    let moved = [
        ("pod records", read(find(&a.state_dir, "pods.json")?)?),
        ("IPAM", read(find(&a.state_dir, "ipam.json")?)?),
        ("Services", read(find(&a.state_dir, "services.json")?)?),
        ("rollout state", read(find(&a.state_dir, "tracker.json")?)?),
    ];
    let spec = read(container_file(&a.run_dir, "runs", "spec.json")?)?;
    let exit = read(container_file(&a.run_dir, "done", "status.json")?)?;
    for how in [Damage::Truncate, Damage::Garbage, Damage::FutureVersion] {
        a.kill9();
        let mut kept: Vec<&Path> = Vec::new();
        for (what, (p, good)) in &moved {
            damage(p, good, how).with_context(|| format!("{how:?} {what}"))?;
        }
        // a spec.json of another version is read by the container's
        // identity (truncated or garbage ones: the test below); a
        // status.json with a newer version field is read as is
        if how == Damage::FutureVersion {
            damage(&spec.0, &spec.1, how)?;
            kept.push(&spec.0);
        } else {
            damage(&exit.0, &exit.1, how)?;
            kept.push(&exit.0);
        }
        a.start()?;
        a.wait_ready(Duration::from_secs(60))?;
        // `done` is not run again; without its exit status it may show Failed
        a.wait_for(
            &format!("{how:?}: runs Running, done ended"),
            Duration::from_secs(60),
            |v| {
                let done = phase(v, "done");
                (phase(v, "runs") == "Running" && (done == "Succeeded" || done == "Failed"))
                    .then_some(())
            },
        )?;
        // give a wrong removal or restart time to happen
        std::thread::sleep(Duration::from_secs(3));
        assert_eq!(pgrep(MARKER), before, "{how:?}: the container was replaced");
        let st = a.get_json("/api/v1/status")?;
        let cond = st["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "StateFilesReadable"))
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(cond["status"], "False", "{how:?}: {st}");
        let msg = cond["message"].as_str().unwrap_or_default();
        for (what, (p, _)) in &moved {
            let named = format!("{} could not be read (", p.display());
            assert!(msg.contains(&named), "{how:?}: {what} not named: {msg}");
            let to = format!("moved aside to {}.quarantined-", p.display());
            assert!(msg.contains(&to), "{how:?}: {what}: where it went: {msg}");
            let aside = std::fs::read_dir(p.parent().unwrap())?
                .flatten()
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.starts_with(&format!(
                        "{}.quarantined-",
                        p.file_name().unwrap().to_string_lossy()
                    ))
                })
                .count();
            assert!(aside >= 1, "{how:?}: {what}: nothing kept aside");
        }
        for p in &kept {
            let named = format!("{} could not be read (", p.display());
            assert!(
                msg.contains(&named),
                "{how:?}: {} not named: {msg}",
                p.display()
            );
            assert!(p.exists(), "{how:?}: {} was moved", p.display());
        }
        let ev = a.get_json("/api/v1/events")?.to_string();
        assert!(ev.contains("Quarantined"), "{how:?}: {ev}");
        assert!(ev.contains("FileUnreadable"), "{how:?}: {ev}");
    }
    a.shutdown_clean()?;
    assert!(pgrep(MARKER).is_empty());
    Ok(())
}

// === a container's own files damaged (issue 17, the last holes) ===

const RUNS: &str = "sleep 7411";
const STARTED: &str = "sleep 7412";
const AFTER_INIT: &str = "sleep 7413";

fn container_manifests() -> String {
    let pod = |name: &str, marker: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "sleep 3600 & exec {marker}"]
"#
        )
    };
    format!(
        r#"{}---
{}---
apiVersion: v1
kind: Pod
metadata: {{name: done}}
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "exit 0"]
---
apiVersion: v1
kind: Pod
metadata: {{name: inits}}
spec:
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: prep
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo prepared"]
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "exec {AFTER_INIT}"]
"#,
        pod("runs", RUNS),
        pod("started", STARTED),
    )
}

/// Every process in the cgroups of pod `pod` of `instance` (its containers'
/// and its supervisors'), sorted.
fn pod_processes(instance: &str, pod: &str) -> Vec<u32> {
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let base = if v2 {
        PathBuf::from("/sys/fs/cgroup").join(instance)
    } else {
        PathBuf::from("/sys/fs/cgroup/pids").join(instance)
    };
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&base) else {
        return out;
    };
    for e in rd.flatten() {
        // pod keys are <namespace>_<name>_<uid>
        if !e
            .file_name()
            .to_string_lossy()
            .contains(&format!("_{pod}_"))
        {
            continue;
        }
        let mut stack = vec![e.path()];
        while let Some(d) = stack.pop() {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            out.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            for s in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if s.path().is_dir() {
                    stack.push(s.path());
                }
            }
        }
    }
    out.sort();
    out
}

/// Container ids (with restart counts) the API shows per pod and kind.
fn container_ids(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for p in v["items"].as_array().into_iter().flatten() {
        for kind in ["initContainerStatuses", "containerStatuses"] {
            for c in p["status"][kind].as_array().into_iter().flatten() {
                out.push(format!(
                    "{}/{}/{} {} restarts={}",
                    p["metadata"]["name"].as_str().unwrap_or(""),
                    kind,
                    c["name"].as_str().unwrap_or(""),
                    c["containerID"].as_str().unwrap_or("-"),
                    c["restartCount"]
                ));
            }
        }
    }
    out.sort();
    out
}

fn terminated<'a>(v: &'a Value, pod: &str) -> &'a Value {
    &Agent::pod(v, pod).unwrap_or(&Value::Null)["status"]["containerStatuses"][0]["state"]["terminated"]
}

#[test]
fn damaged_container_files_lose_no_running_container() -> anyhow::Result<()> {
    if !preconditions("damaged_container_files_lose_no_running_container") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btq4e1",
        net: 120,
        port: 17400,
        with_image: true,
    })?;
    a.write_manifest("all.yaml", &container_manifests())?;
    a.start()?;
    let pods = ["runs", "started", "inits"];
    a.wait_for(
        "runs, started, inits Running, done Succeeded",
        Duration::from_secs(120),
        |v| {
            (pods.iter().all(|p| phase(v, p) == "Running") && phase(v, "done") == "Succeeded")
                .then_some(())
        },
    )?;
    let markers = [RUNS, STARTED, AFTER_INIT];
    let pgreps = || markers.map(pgrep);
    let before = (
        pgreps(),
        pods.map(|p| pod_processes(&a.instance, p)),
        container_ids(&a.get_json("/api/v1/pods")?),
    );
    for (i, p) in before.0.iter().enumerate() {
        assert_eq!(p.len(), 1, "{}: {p:?}", markers[i]);
    }
    for (i, p) in before.1.iter().enumerate() {
        // the init, its child and the supervisor (inits: init and supervisor)
        assert!(p.len() >= 2, "{}: {p:?}", pods[i]);
    }
    let read = |p: PathBuf| -> anyhow::Result<(PathBuf, Vec<u8>)> {
        let good = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        Ok((p, good))
    };
    let spec = read(container_file(&a.run_dir, "runs", "spec.json")?)?;
    let state = read(container_file(&a.run_dir, "started", "state.json")?)?;
    let status = read(container_file(&a.run_dir, "done", "status.json")?)?;
    // the init container's record of its end: rewritten if it ran again
    let prep_dir = std::fs::read_dir(a.run_dir.join("containers"))?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with("-prep-0")
        })
        .context("no container dir of the init container prep")?;
    let prep_end = std::fs::read(prep_dir.join("status.json"))?;
    for how in [Damage::Truncate, Damage::Garbage] {
        a.kill9();
        damage(&spec.0, &spec.1, how)?;
        damage(&state.0, &state.1, Damage::Garbage)?;
        let _ = std::fs::remove_file(&status.0);
        a.start()?;
        a.wait_ready(Duration::from_secs(60))?;
        let unknown = a.wait_for(
            &format!("{how:?}: runs, started, inits Running, done ended"),
            Duration::from_secs(60),
            |v| {
                (pods.iter().all(|p| phase(v, p) == "Running") && phase(v, "done") == "Failed")
                    .then(|| terminated(v, "done").clone())
            },
        )?;
        // give a wrong removal, restart or second copy time to happen
        std::thread::sleep(Duration::from_secs(4));
        let pods_now = a.get_json("/api/v1/pods")?;
        let after = (
            pgreps(),
            pods.map(|p| pod_processes(&a.instance, p)),
            container_ids(&pods_now),
        );
        let st = a.get_json("/api/v1/status")?;
        assert_eq!(
            after,
            before,
            "{how:?}: a container was removed, replaced or duplicated; status: {st}\nagent log:\n{}",
            berth_e2e::tail(&a.log(), 60)
        );
        for p in pods {
            assert_eq!(phase(&pods_now, p), "Running", "{how:?}: {p}");
        }
        // kubelet's answer for an end nobody recorded, a failure (Never: not run again)
        assert_eq!(
            unknown["reason"], "ContainerStatusUnknown",
            "{how:?}: {unknown}"
        );
        assert_eq!(unknown["exitCode"], 137, "{how:?}: {unknown}");
        assert_eq!(
            std::fs::read(prep_dir.join("status.json"))?,
            prep_end,
            "{how:?}: the init container ran again"
        );
        let cond = st["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "StateFilesReadable"))
            .cloned()
            .unwrap_or(Value::Null);
        assert_eq!(cond["status"], "False", "{how:?}: {st}");
        let msg = cond["message"].as_str().unwrap_or_default();
        for p in [&spec.0, &state.0, &status.0] {
            let named = format!("{} could not be read (", p.display());
            assert!(
                msg.contains(&named),
                "{how:?}: {} not named: {msg}",
                p.display()
            );
        }
        // kept in place, not rewritten
        assert!(
            spec.0.exists() && state.0.exists(),
            "{how:?}: a damaged file was moved"
        );
        assert!(!status.0.exists(), "{how:?}: an end was made up for done");
        let ev = a.get_json("/api/v1/events")?.to_string();
        assert!(ev.contains("FileUnreadable"), "{how:?}: {ev}");
    }
    // the damaged containers are still managed: deleting the pods removes them
    a.shutdown_clean()?;
    for m in markers {
        assert!(pgrep(m).is_empty(), "{m} left running");
    }
    for p in pods {
        assert!(
            pod_processes(&a.instance, p).is_empty(),
            "{p}: processes left"
        );
    }
    Ok(())
}

// an end nobody recorded is a failure: restartPolicy OnFailure runs the
// container again (restartCount 1, lastState ContainerStatusUnknown/137)
#[test]
fn an_unrecorded_end_is_a_failure_for_the_restart_policy() -> anyhow::Result<()> {
    if !preconditions("an_unrecorded_end_is_a_failure_for_the_restart_policy") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btq4e2",
        net: 121,
        port: 17401,
        with_image: true,
    })?;
    a.write_manifest(
        "once.yaml",
        &format!(
            r#"apiVersion: v1
kind: Pod
metadata: {{name: once}}
spec:
  restartPolicy: OnFailure
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "exit 0"]
"#
        ),
    )?;
    a.start()?;
    a.wait_for("once Succeeded", Duration::from_secs(90), |v| {
        (phase(v, "once") == "Succeeded").then_some(())
    })?;
    let status = container_file(&a.run_dir, "once", "status.json")?;
    // the supervisor writes status.json, then exits: wait for it to be gone
    let shim_pid = std::fs::read_to_string(status.with_file_name("shim.pid"))?;
    let shim_pid = shim_pid
        .split_whitespace()
        .next()
        .unwrap_or("0")
        .to_string();
    let t0 = std::time::Instant::now();
    while Path::new(&format!("/proc/{shim_pid}")).exists() {
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("the supervisor {shim_pid} did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    a.kill9();
    std::fs::remove_file(&status)?;
    a.start()?;
    a.wait_ready(Duration::from_secs(60))?;
    let last = a.wait_for(
        "once run again after its unknown end, Succeeded",
        Duration::from_secs(60),
        |v| {
            let p = Agent::pod(v, "once")?;
            let c = &p["status"]["containerStatuses"][0];
            (c["restartCount"] == 1 && phase(v, "once") == "Succeeded")
                .then(|| c["lastState"]["terminated"].clone())
        },
    )?;
    assert_eq!(last["reason"], "ContainerStatusUnknown", "{last}");
    assert_eq!(last["exitCode"], 137, "{last}");
    let st = a.get_json("/api/v1/status")?.to_string();
    assert!(
        st.contains(&format!("{} could not be read (", status.display())),
        "status.json not named: {st}"
    );
    a.shutdown_clean()
}
