//! Health-gated rollouts with the real berth binary (issue 18): a revision
//! whose changed workloads do not become healthy is rolled back to the last
//! healthy revision's recorded objects, and the decision survives kill -9.
//!
//! Git tests use a real repository (a bare origin on disk, `file://`, the
//! `git` CLI); short `--rollout-soak` / `--rollout-deadline` keep them quick.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_e2e::{Agent, AgentOpts, IMAGE, preconditions, tail};
use serde_json::Value;

/// A bare origin and a work clone, made with the `git` CLI.
struct Repo {
    origin: PathBuf,
    work: PathBuf,
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=t@example.com",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .context("running git")?;
    if !out.status.success() {
        bail!("git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Repo {
    fn new(base: &Path) -> Result<Repo> {
        let origin = base.join("origin.git");
        let work = base.join("work");
        std::fs::create_dir_all(&origin)?;
        git(&origin, &["init", "--bare", "-q"])?;
        git(base, &["clone", "-q", origin.to_str().unwrap(), "work"])?;
        git(&work, &["checkout", "-q", "-b", "main"])?;
        Ok(Repo { origin, work })
    }

    fn url(&self) -> String {
        format!("file://{}", self.origin.display())
    }

    /// Commit `text` as `app.yaml` and push; returns the commit id.
    fn commit(&self, text: &str, msg: &str) -> Result<String> {
        std::fs::write(self.work.join("app.yaml"), text)?;
        git(&self.work, &["add", "-A"])?;
        git(&self.work, &["commit", "-q", "-m", msg])?;
        git(&self.work, &["push", "-q", "origin", "main"])?;
        git(&self.work, &["rev-parse", "HEAD"])
    }
}

fn pod_yaml(cmd: &str, readiness: &str, image: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {image}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{cmd}"]
    readinessProbe:
      exec: {{command: ["sh", "-c", "{readiness}"]}}
      periodSeconds: 1
"#
    )
}

fn rollout_flags(a: &mut Agent, soak: &str, deadline: &str) {
    a.extra_args.extend(
        [
            "--rollout-soak",
            soak,
            "--rollout-deadline",
            deadline,
            "--rollout-crash-loop-restarts",
            "2",
        ]
        .map(String::from),
    );
}

/// The status of the source of `kind` (`git` or `directory`) that has a rollout.
fn source(status: &Value, kind: &str) -> Option<Value> {
    status["sources"]
        .as_array()?
        .iter()
        .find(|s| s["type"] == kind && !s["rollout"].is_null() && s["objects"].as_u64() != Some(0))
        .cloned()
}

/// Poll `/api/v1/status` until `f` says yes for the source of `kind`.
fn wait_source(
    a: &Agent,
    kind: &str,
    what: &str,
    timeout: Duration,
    mut f: impl FnMut(&Value) -> bool,
) -> Result<Value> {
    let t0 = Instant::now();
    let mut last = Value::Null;
    loop {
        if let Ok(st) = a.get_json("/api/v1/status")
            && let Some(s) = source(&st, kind)
        {
            if f(&s["rollout"]) {
                return Ok(s);
            }
            last = s;
        }
        if t0.elapsed() > timeout {
            bail!(
                "timed out after {timeout:?} waiting for {what}; source:\n{}\nagent log tail:\n{}",
                serde_json::to_string_pretty(&last).unwrap_or_default(),
                tail(&a.log(), 40)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The pods named `web` (not terminating): (uid, command, ready).
fn webs(v: &Value) -> Vec<(String, String, bool)> {
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["name"] == "web" && p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| {
            let ready = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (
                p["metadata"]["uid"].as_str().unwrap_or("").to_string(),
                p["spec"]["containers"][0]["command"][2]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                ready,
            )
        })
        .collect()
}

/// The `spec` of the pod `web` that is not terminating.
fn web_spec(a: &Agent) -> Result<Value> {
    let v = a.get_json("/api/v1/pods")?;
    v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["metadata"]["name"] == "web" && p["metadata"]["deletionTimestamp"].is_null())
        .map(|p| p["spec"].clone())
        .context("no pod web")
}

fn web_ready_with(a: &Agent, cmd: &str, timeout: Duration) -> Result<String> {
    a.wait_for(&format!("web ready running {cmd:?}"), timeout, |v| {
        let w = webs(v);
        (w.len() == 1 && w[0].1 == cmd && w[0].2).then(|| w[0].0.clone())
    })
}

fn last_entry<'a>(rollout: &'a Value, revision: &str, rollback: bool) -> Option<&'a Value> {
    rollout["history"]
        .as_array()?
        .iter()
        .rev()
        .find(|h| h["revision"] == revision && h["rollback"] == rollback)
}

fn events(a: &Agent) -> Result<Vec<String>> {
    let v = a.get_json("/api/v1/events")?;
    Ok(v["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect())
}

#[test]
fn git_crashing_commit_rolls_back_and_survives_kill9() -> Result<()> {
    if !preconditions("git_crashing_commit_rolls_back_and_survives_kill9") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btrollgit",
        net: 100,
        port: 17200,
        with_image: true,
    })?;
    let repo = Repo::new(&a.dir)?;
    let good = "echo started; exec sleep 17200";
    let c1 = repo.commit(&pod_yaml(good, "true", IMAGE), "healthy")?;
    a.write_manifest("empty.yaml", "# nothing\n")?;
    a.extra_args
        .extend(["--git", &repo.url(), "--git-interval", "1s"].map(String::from));
    rollout_flags(&mut a, "2s", "60s");
    a.start()?;
    let uid1 = web_ready_with(&a, good, Duration::from_secs(60))?;
    let spec1 = web_spec(&a)?;
    wait_source(
        &a,
        "git",
        "commit 1 healthy",
        Duration::from_secs(30),
        |r| r["state"] == "healthy" && r["lastHealthyRevision"] == c1.as_str(),
    )?;

    // commit 2: the command exits 1 -> crash loop -> commit 1's pod again
    let c2 = repo.commit(
        &pod_yaml("echo boom-from-commit-2; exit 1", "true", IMAGE),
        "crash",
    )?;
    let t0 = Instant::now();
    let s = wait_source(
        &a,
        "git",
        "commit 2 rolled back",
        Duration::from_secs(90),
        |r| {
            r["appliedRevision"] == c2.as_str()
                && r["runningRevision"] == c1.as_str()
                && last_entry(r, c1.as_str(), true).is_some()
        },
    )?;
    let uid_back = web_ready_with(&a, good, Duration::from_secs(60))?;
    eprintln!("rolled back in {:?}", t0.elapsed());
    assert_ne!(
        uid_back, uid1,
        "commit 1's pod was replaced by commit 2's and came back"
    );
    assert_eq!(
        web_spec(&a)?,
        spec1,
        "commit 1's pod spec exactly (same spec hash)"
    );
    let r = &s["rollout"];
    let failed = last_entry(r, &c2, false).expect("commit 2 in the history");
    assert_eq!(failed["result"], "rolled-back", "{r:#}");
    assert_eq!(failed["reason"]["reason"], "CrashLoopBackOff", "{r:#}");
    assert_eq!(failed["reason"]["object"], "Pod/default/web");
    assert_eq!(failed["reason"]["container"], "app");
    assert_eq!(failed["reason"]["exitCode"], 1);
    let logs = failed["reason"]["logs"].to_string();
    assert!(logs.contains("boom-from-commit-2"), "logs: {logs}");
    // the Git status names the fetched (failed) commit, the rollout the one that runs
    assert_eq!(s["git"]["applied"]["id"], c2.as_str(), "{:#}", s["git"]);
    let healthy = wait_source(
        &a,
        "git",
        "rollback healthy",
        Duration::from_secs(30),
        |r| last_entry(r, c1.as_str(), true).is_some_and(|h| h["result"] == "healthy"),
    )?;
    assert_eq!(healthy["rollout"]["state"], "rolled-back");
    assert!(
        healthy["rollout"]["message"]
            .as_str()
            .unwrap_or("")
            .contains(&c2[..12]),
        "{:#}",
        healthy["rollout"]
    );
    let ev = events(&a)?;
    for reason in [
        "RolloutStarted",
        "RolloutHealthy",
        "RolloutFailed",
        "RolledBack",
    ] {
        assert!(ev.iter().any(|e| e == reason), "{reason} in {ev:?}");
    }
    let (_, metrics) = a.get("/metrics")?;
    assert!(
        metrics.contains("berth_rollouts_total{result=\"rolled-back\"} 1"),
        "{metrics}"
    );

    // kill -9 after the rollback: the decision is kept, the pod adopted, not duplicated
    a.kill9();
    a.start()?;
    a.wait_ready(Duration::from_secs(30))?;
    let s = wait_source(
        &a,
        "git",
        "state after restart",
        Duration::from_secs(30),
        |r| r["runningRevision"] == c1.as_str(),
    )?;
    assert_eq!(s["rollout"]["appliedRevision"], c2.as_str());
    std::thread::sleep(Duration::from_secs(3)); // a few polls of the same commit 2
    let w = webs(&a.get_json("/api/v1/pods")?);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].0, uid_back, "the same pod, adopted");
    assert_eq!(w[0].1, good);

    // commit 3 fixes it: applied and healthy
    let fixed = "echo fixed; exec sleep 17201";
    let c3 = repo.commit(&pod_yaml(fixed, "true", IMAGE), "fix")?;
    web_ready_with(&a, fixed, Duration::from_secs(60))?;
    wait_source(
        &a,
        "git",
        "commit 3 healthy",
        Duration::from_secs(30),
        |r| r["state"] == "healthy" && r["lastHealthyRevision"] == c3.as_str(),
    )?;
    // the Git source keeps its pod: stop the agent, Drop removes what it ran
    a.stop();
    Ok(())
}

#[test]
fn directory_readiness_never_passing_rolls_back_and_keeps_the_file() -> Result<()> {
    if !preconditions("directory_readiness_never_passing_rolls_back_and_keeps_the_file") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btrollrdy",
        net: 101,
        port: 17201,
        with_image: true,
    })?;
    // the deadline covers the first revision too, image import included
    rollout_flags(&mut a, "2s", "25s");
    let good = "exec sleep 17210";
    a.write_manifest("app.yaml", &pod_yaml(good, "true", IMAGE))?;
    a.start()?;
    web_ready_with(&a, good, Duration::from_secs(60))?;
    let s = wait_source(
        &a,
        "directory",
        "first revision healthy",
        Duration::from_secs(30),
        |r| r["state"] == "healthy",
    )?;
    let rev1 = s["rollout"]["lastHealthyRevision"]
        .as_str()
        .unwrap()
        .to_string();

    let bad = pod_yaml("exec sleep 17211", "false", IMAGE);
    a.write_manifest("app.yaml", &bad)?;
    let s = wait_source(
        &a,
        "directory",
        "rolled back",
        Duration::from_secs(90),
        |r| {
            r["runningRevision"] == rev1.as_str()
                && r["appliedRevision"] != rev1.as_str()
                && r["state"] == "rolled-back"
        },
    )?;
    let r = &s["rollout"];
    let applied = r["appliedRevision"].as_str().unwrap();
    let failed = last_entry(r, applied, false).unwrap();
    assert_eq!(failed["result"], "rolled-back");
    assert_eq!(
        failed["reason"]["reason"], "ProgressDeadlineExceeded",
        "{r:#}"
    );
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("the files on disk are not what runs"),
        "{r:#}"
    );
    web_ready_with(&a, good, Duration::from_secs(60))?;
    // the user's file is left as written
    assert_eq!(std::fs::read_to_string(a.manifests.join("app.yaml"))?, bad);
    a.shutdown_clean()
}

#[test]
fn an_image_that_cannot_be_pulled_rolls_back() -> Result<()> {
    if !preconditions("an_image_that_cannot_be_pulled_rolls_back") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btrollimg",
        net: 102,
        port: 17202,
        with_image: true,
    })?;
    rollout_flags(&mut a, "1s", "120s");
    let good = "exec sleep 17220";
    a.write_manifest("app.yaml", &pod_yaml(good, "true", IMAGE))?;
    a.start()?;
    web_ready_with(&a, good, Duration::from_secs(60))?;
    wait_source(
        &a,
        "directory",
        "first revision healthy",
        Duration::from_secs(30),
        |r| r["state"] == "healthy",
    )?;
    // a registry that is down: nothing listens on 127.0.0.1:1
    a.write_manifest(
        "app.yaml",
        &pod_yaml(good, "true", "127.0.0.1:1/berth-test/missing:1"),
    )?;
    let s = wait_source(
        &a,
        "directory",
        "rolled back",
        Duration::from_secs(90),
        |r| r["state"] == "rolled-back",
    )?;
    let r = &s["rollout"];
    let failed = last_entry(r, r["appliedRevision"].as_str().unwrap(), false).unwrap();
    let reason = failed["reason"]["reason"].as_str().unwrap_or("");
    assert!(
        ["ImagePullBackOff", "ErrImageNeverPull"].contains(&reason),
        "{r:#}"
    );
    web_ready_with(&a, good, Duration::from_secs(60))?;
    a.shutdown_clean()
}

#[test]
fn kill9_mid_rollout_resumes_the_watch() -> Result<()> {
    if !preconditions("kill9_mid_rollout_resumes_the_watch") {
        return Ok(());
    }
    let mut a = Agent::new(AgentOpts {
        instance: "btrollk9",
        net: 103,
        port: 17203,
        with_image: true,
    })?;
    rollout_flags(&mut a, "20s", "120s");
    let one = "exec sleep 17230";
    a.write_manifest("app.yaml", &pod_yaml(one, "true", IMAGE))?;
    a.start()?;
    web_ready_with(&a, one, Duration::from_secs(60))?;
    wait_source(
        &a,
        "directory",
        "first revision healthy",
        Duration::from_secs(30),
        |r| r["state"] == "healthy",
    )?;
    let two = "exec sleep 17231";
    a.write_manifest("app.yaml", &pod_yaml(two, "true", IMAGE))?;
    web_ready_with(&a, two, Duration::from_secs(60))?;
    let s = wait_source(&a, "directory", "soaking", Duration::from_secs(10), |r| {
        r["state"] == "progressing"
    })?;
    let rev2 = s["rollout"]["appliedRevision"]
        .as_str()
        .unwrap()
        .to_string();
    // half the soak passes before the kill: it must not count after the restart
    std::thread::sleep(Duration::from_secs(10));
    let uid = web_ready_with(&a, two, Duration::from_secs(5))?;
    assert_eq!(
        source(&a.get_json("/api/v1/status")?, "directory").unwrap()["rollout"]["state"],
        "progressing"
    );
    a.kill9();
    let _ = std::fs::copy(a.dir.join("agent.log"), a.dir.join("agent-before-kill.log"));
    a.start()?;
    a.wait_ready(Duration::from_secs(30))?;
    // resumed, and not declared healthy by the restart: it soaks again
    let s = wait_source(&a, "directory", "resumed", Duration::from_secs(10), |r| {
        r["appliedRevision"] == rev2.as_str()
    })?;
    let t_restart = Instant::now();
    assert_eq!(s["rollout"]["state"], "progressing", "{:#}", s["rollout"]);
    wait_source(
        &a,
        "directory",
        "healthy after a full soak",
        Duration::from_secs(60),
        |r| r["state"] == "healthy" && r["lastHealthyRevision"] == rev2.as_str(),
    )?;
    assert!(
        t_restart.elapsed() >= Duration::from_secs(15),
        "healthy {:?} after the restart: the soak (20 s) must start again",
        t_restart.elapsed()
    );
    let w = webs(&a.get_json("/api/v1/pods")?);
    assert_eq!(w.len(), 1, "no duplicate pods: {w:?}");
    assert_eq!(w[0].0, uid, "the pod was adopted, not replaced");
    a.shutdown_clean()
}
