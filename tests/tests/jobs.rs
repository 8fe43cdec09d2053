//! Jobs and CronJobs with the real berth binary: completions and
//! parallelism, backoffLimit, activeDeadlineSeconds, ttlSecondsAfterFinished,
//! a finished Job not run again after kill -9, pruning, CronJobs on a
//! schedule with history limits and concurrencyPolicy Forbid, and what
//! kubectl prints for them.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use berth_e2e::{Agent, AgentOpts, IMAGE, preconditions, tail};
use serde_json::Value;

const KUBECTL: &str = "/usr/bin/kubectl";

fn job_yaml(name: &str, extra_spec: &str, restart: &str, cmd: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{extra_spec}  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      restartPolicy: {restart}
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "{cmd}"]
"#
    )
}

fn cronjob_yaml(name: &str, extra_spec: &str, cmd: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: {name}
spec:
  schedule: "*/1 * * * *"
{extra_spec}  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 1
          containers:
          - name: main
            image: {IMAGE}
            imagePullPolicy: IfNotPresent
            command: ["sh", "-c", "{cmd}"]
"#
    )
}

/// The pods of Job `job` in a PodList.
fn job_pods<'a>(list: &'a Value, job: &str) -> Vec<&'a Value> {
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["labels"]["job-name"] == job)
        .collect()
}

fn phases(list: &Value, job: &str) -> Vec<String> {
    job_pods(list, job)
        .iter()
        .map(|p| p["status"]["phase"].as_str().unwrap_or("").to_string())
        .collect()
}

fn count(list: &Value, job: &str, phase: &str) -> usize {
    phases(list, job).iter().filter(|p| *p == phase).count()
}

fn job_path(name: &str) -> String {
    format!("/apis/batch/v1/namespaces/default/jobs/{name}")
}

/// The condition of `type_` that is True, with its reason.
fn condition(job: &Value, type_: &str) -> Option<String> {
    job["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_ && c["status"] == "True")
        .map(|c| c["reason"].as_str().unwrap_or("").to_string())
}

/// Poll GET `path` until `f` accepts it.
fn wait_obj<T>(
    a: &Agent,
    what: &str,
    path: &str,
    timeout: Duration,
    f: impl Fn(&Value) -> Option<T>,
) -> Result<T> {
    let t0 = Instant::now();
    loop {
        let last = match a.get(path) {
            Ok((200, body)) => {
                if let Ok(v) = serde_json::from_str::<Value>(&body)
                    && let Some(t) = f(&v)
                {
                    return Ok(t);
                }
                body
            }
            Ok((code, body)) => format!("{code}: {body}"),
            Err(e) => e.to_string(),
        };
        if t0.elapsed() > timeout {
            bail!(
                "timed out after {timeout:?} waiting for {what}; last {path}:\n{last}\nagent log tail:\n{}",
                tail(&a.log(), 40)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// kubectl against the agent (no kubeconfig of the host); stdout, or the error.
fn kubectl(a: &Agent, args: &[&str]) -> Result<String> {
    let dir = a.dir.join("kubectl");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("config"), "apiVersion: v1\nkind: Config\n")?;
    let out = Command::new("timeout")
        .arg("60")
        .arg(KUBECTL)
        .arg(format!("--server=http://127.0.0.1:{}", a.port))
        .arg(format!("--kubeconfig={}", dir.join("config").display()))
        .arg(format!("--cache-dir={}", dir.join("cache").display()))
        .args(args)
        .output()
        .with_context(|| format!("running kubectl {args:?}"))?;
    if !out.status.success() {
        bail!(
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn have_kubectl() -> Result<()> {
    if std::path::Path::new(KUBECTL).exists() {
        return Ok(());
    }
    bail!("{KUBECTL} not installed (these tests read Jobs with kubectl)")
}

#[test]
fn job_completes_in_parallel_and_is_not_run_again() -> Result<()> {
    if !preconditions("job_completes_in_parallel_and_is_not_run_again") {
        return Ok(());
    }
    have_kubectl()?;
    let mut a = Agent::new(AgentOpts {
        instance: "btjb1",
        net: 13,
        port: 17310,
        with_image: true,
    })?;
    a.write_manifest(
        "job.yaml",
        &job_yaml(
            "work",
            "  completions: 3\n  parallelism: 2\n",
            "Never",
            "echo done-$JOB_COMPLETION_INDEX-$(hostname); sleep 2",
        ),
    )?;
    a.write_manifest(
        "ttl.yaml",
        &job_yaml(
            "short",
            "  ttlSecondsAfterFinished: 10\n",
            "OnFailure",
            "echo short",
        ),
    )?;
    a.start()?;
    // never more than `parallelism` pods at a time, until 3 succeeded
    let t0 = Instant::now();
    let mut saw_short = false;
    loop {
        let v = a.get_json("/api/v1/pods")?;
        saw_short |= count(&v, "short", "Succeeded") == 1;
        let active = count(&v, "work", "Running") + count(&v, "work", "Pending");
        assert!(
            active <= 2,
            "at most 2 pods at a time: {:?}",
            phases(&v, "work")
        );
        if count(&v, "work", "Succeeded") == 3 {
            break;
        }
        if t0.elapsed() > Duration::from_secs(90) {
            bail!(
                "3 pods did not succeed: {:?}\n{}",
                phases(&v, "work"),
                tail(&a.log(), 40)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let job = wait_obj(
        &a,
        "work Complete",
        &job_path("work"),
        Duration::from_secs(30),
        |j| condition(j, "Complete").map(|_| j.clone()),
    )?;
    assert_eq!(job["status"]["succeeded"], 3, "{job}");
    assert!(job["status"]["completionTime"].is_string(), "{job}");
    let uid = job["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let v = a.get_json("/api/v1/pods")?;
    let pods = job_pods(&v, "work");
    assert_eq!(pods.len(), 3, "exactly 3 pods ran");
    let names: BTreeSet<String> = pods
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    for p in &pods {
        let m = &p["metadata"];
        let name = m["name"].as_str().unwrap_or("");
        let suffix = name.strip_prefix("work-").unwrap_or("");
        assert!(
            suffix.len() == 5 && suffix.chars().all(|c| c.is_ascii_alphanumeric()),
            "name {name}"
        );
        assert_eq!(m["labels"]["batch.kubernetes.io/job-name"], "work");
        assert_eq!(m["labels"]["controller-uid"], uid.as_str());
        assert_eq!(
            m["labels"]["batch.kubernetes.io/controller-uid"],
            uid.as_str()
        );
        assert_eq!(m["ownerReferences"][0]["kind"], "Job");
    }
    // kubectl prints what a cluster prints
    let get = kubectl(&a, &["get", "jobs"])?;
    let line = get
        .lines()
        .find(|l| l.starts_with("work "))
        .unwrap_or_default();
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cols.get(1..3),
        Some(&["Complete", "3/3"][..]),
        "kubectl get jobs:\n{get}"
    );
    assert!(get.starts_with("NAME"), "{get}");
    assert!(
        get.lines().next().unwrap_or("").contains("COMPLETIONS"),
        "{get}"
    );
    let yaml = kubectl(&a, &["get", "job", "work", "-o", "yaml"])?;
    assert!(
        yaml.contains("type: Complete") && yaml.contains("succeeded: 3"),
        "{yaml}"
    );
    let describe = kubectl(&a, &["describe", "job", "work"])?;
    assert!(
        describe.contains("Pods Statuses:")
            && describe.contains("0 Active")
            && describe.contains("3 Succeeded"),
        "kubectl describe job:\n{describe}"
    );
    assert!(
        describe.contains("Completed"),
        "the Completed event:\n{describe}"
    );
    let logs = kubectl(&a, &["logs", "job/work"])?;
    assert!(logs.contains("done-"), "kubectl logs job/work: {logs}");
    // ttlSecondsAfterFinished: the Job and its pods go
    let t0 = Instant::now();
    while !saw_short {
        let v = a.get_json("/api/v1/pods")?;
        saw_short |= count(&v, "short", "Succeeded") == 1;
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("short never succeeded\n{}", tail(&a.log(), 40));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let t0 = Instant::now();
    while a.get(&job_path("short"))?.0 != 404 {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("short still shown after its TTL\n{}", tail(&a.log(), 40));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    a.wait_for(
        "short's pods removed after its TTL",
        Duration::from_secs(60),
        |v| job_pods(v, "short").is_empty().then_some(()),
    )?;
    // kill -9 and restart: nothing runs again
    a.kill9();
    a.start()?;
    a.wait_ready(Duration::from_secs(60))?;
    std::thread::sleep(Duration::from_secs(5));
    let v = a.get_json("/api/v1/pods")?;
    let after: BTreeSet<String> = job_pods(&v, "work")
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        after, names,
        "the finished Job's pods are kept and none is added"
    );
    assert!(
        job_pods(&v, "short").is_empty(),
        "the expired Job is not run again"
    );
    let job = a.get_json(&job_path("work"))?;
    assert!(
        condition(&job, "Complete").is_some(),
        "still Complete: {job}"
    );
    assert_eq!(job["metadata"]["uid"], uid.as_str());
    let (code, _) = a.get(&job_path("short"))?;
    assert_eq!(code, 404);
    // a changed template is a new Job (documented; Kubernetes refuses the change)
    a.write_manifest(
        "job.yaml",
        &job_yaml(
            "work",
            "  completions: 1\n",
            "Never",
            "echo second; sleep 1",
        ),
    )?;
    wait_obj(
        &a,
        "the new work Job",
        &job_path("work"),
        Duration::from_secs(60),
        |j| {
            (j["metadata"]["uid"] != uid.as_str() && condition(j, "Complete").is_some())
                .then_some(())
        },
    )?;
    // pruning: a running Job's pods stop when its manifest goes
    a.write_manifest(
        "long.yaml",
        &job_yaml("long", "", "Never", "exec sleep 7310"),
    )?;
    a.wait_for("long running", Duration::from_secs(60), |v| {
        (count(v, "long", "Running") == 1).then_some(())
    })?;
    a.remove_manifest("long.yaml")?;
    a.wait_for("long's pod removed", Duration::from_secs(30), |v| {
        job_pods(v, "long").is_empty().then_some(())
    })?;
    assert!(
        berth_e2e::pgrep("sleep 7310").is_empty(),
        "the container process is gone"
    );
    a.shutdown_clean()
}

#[test]
fn failing_jobs_stop_at_backoff_limit_and_deadline() -> Result<()> {
    if !preconditions("failing_jobs_stop_at_backoff_limit_and_deadline") {
        return Ok(());
    }
    have_kubectl()?;
    let mut a = Agent::new(AgentOpts {
        instance: "btjb2",
        net: 14,
        port: 17311,
        with_image: true,
    })?;
    a.write_manifest(
        "fail.yaml",
        &job_yaml(
            "fail",
            "  backoffLimit: 1\n",
            "Never",
            "echo failing; exit 3",
        ),
    )?;
    a.write_manifest(
        "slow.yaml",
        &job_yaml(
            "slow",
            "  activeDeadlineSeconds: 4\n",
            "Never",
            "exec sleep 7311",
        ),
    )?;
    a.start()?;
    let job = wait_obj(
        &a,
        "fail Failed",
        &job_path("fail"),
        Duration::from_secs(90),
        |j| condition(j, "Failed").map(|r| (r, j.clone())),
    )?;
    assert_eq!(job.0, "BackoffLimitExceeded", "{}", job.1);
    assert_eq!(
        job.1["status"]["failed"], 2,
        "backoffLimit 1: two pods failed: {}",
        job.1
    );
    let v = a.get_json("/api/v1/pods")?;
    assert_eq!(count(&v, "fail", "Failed"), 2, "{:?}", phases(&v, "fail"));
    assert_eq!(job_pods(&v, "fail").len(), 2, "no third pod");
    let slow = wait_obj(
        &a,
        "slow Failed",
        &job_path("slow"),
        Duration::from_secs(60),
        |j| condition(j, "Failed"),
    )?;
    assert_eq!(slow, "DeadlineExceeded");
    a.wait_for("slow's pod stopped", Duration::from_secs(30), |v| {
        (count(v, "slow", "Running") == 0).then_some(())
    })?;
    let t0 = Instant::now();
    while !berth_e2e::pgrep("sleep 7311").is_empty() {
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("the deadline-exceeded Job's container still runs");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let get = kubectl(&a, &["get", "jobs"])?;
    let line = get
        .lines()
        .find(|l| l.starts_with("fail "))
        .unwrap_or_default();
    assert_eq!(line.split_whitespace().nth(1), Some("Failed"), "{get}");
    a.shutdown_clean()
}

#[test]
fn cronjobs_run_on_schedule_with_history_and_forbid() -> Result<()> {
    if !preconditions("cronjobs_run_on_schedule_with_history_and_forbid") {
        return Ok(());
    }
    have_kubectl()?;
    let mut a = Agent::new(AgentOpts {
        instance: "btjb3",
        net: 15,
        port: 17312,
        with_image: true,
    })?;
    a.write_manifest(
        "tick.yaml",
        &cronjob_yaml("tick", "  successfulJobsHistoryLimit: 1\n", "echo tick"),
    )?;
    a.write_manifest(
        "hold.yaml",
        &cronjob_yaml("hold", "  concurrencyPolicy: Forbid\n", "exec sleep 7312"),
    )?;
    a.start()?;
    let jobs = |a: &Agent| -> Result<Vec<(String, bool)>> {
        let v = a.get_json("/apis/batch/v1/namespaces/default/jobs")?;
        Ok(v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|j| {
                (
                    j["metadata"]["name"].as_str().unwrap_or("").to_string(),
                    condition(j, "Complete").is_some(),
                )
            })
            .collect())
    };
    // the first minute boundary: one Job each, named <cronjob>-<minutes>
    let t0 = Instant::now();
    let first = loop {
        let js = jobs(&a)?;
        if let Some((n, _)) = js.iter().find(|(n, done)| n.starts_with("tick-") && *done) {
            break n.clone();
        }
        if t0.elapsed() > Duration::from_secs(75) {
            bail!("no tick Job completed: {js:?}\n{}", tail(&a.log(), 40));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let minutes: u64 = first.trim_start_matches("tick-").parse()?;
    let now_min = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        / 60;
    assert!(
        minutes <= now_min && minutes + 2 >= now_min,
        "{first} is a recent minute ({now_min})"
    );
    let cj = a.get_json("/apis/batch/v1/namespaces/default/cronjobs/tick")?;
    assert!(cj["status"]["lastScheduleTime"].is_string(), "{cj}");
    let get = kubectl(&a, &["get", "cronjobs"])?;
    assert!(
        get.lines().next().unwrap_or("").contains("LAST SCHEDULE"),
        "{get}"
    );
    assert!(
        get.lines()
            .any(|l| l.starts_with("tick ") && l.contains("*/1 * * * *")),
        "{get}"
    );
    // kill -9 and restart: the scheduled time is neither re-run nor lost
    a.kill9();
    a.start()?;
    a.wait_ready(Duration::from_secs(60))?;
    // the next boundary: a second tick Job; history limit 1 keeps only it
    let t0 = Instant::now();
    let second = loop {
        let js = jobs(&a)?;
        let ticks: Vec<&(String, bool)> =
            js.iter().filter(|(n, _)| n.starts_with("tick-")).collect();
        if let Some((n, _)) = ticks.iter().find(|(n, done)| *n != first && *done) {
            break n.clone();
        }
        if t0.elapsed() > Duration::from_secs(80) {
            bail!("no second tick Job: {js:?}\n{}", tail(&a.log(), 40));
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let t0 = Instant::now();
    loop {
        let js = jobs(&a)?;
        let ticks: Vec<&String> = js
            .iter()
            .map(|(n, _)| n)
            .filter(|n| n.starts_with("tick-"))
            .collect();
        if ticks == [&second] {
            break;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            bail!("history limit 1 not kept: {ticks:?}");
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let v = a.get_json("/api/v1/pods")?;
    assert!(
        job_pods(&v, &first).is_empty(),
        "the removed Job's pods went too"
    );
    // Forbid: the long Job of the first boundary still runs, no second one
    let holds: Vec<(String, bool)> = jobs(&a)?
        .into_iter()
        .filter(|(n, _)| n.starts_with("hold-"))
        .collect();
    assert_eq!(holds.len(), 1, "Forbid: one hold Job at a time: {holds:?}");
    assert!(!holds[0].1, "it still runs");
    let cj = a.get_json("/apis/batch/v1/namespaces/default/cronjobs/hold")?;
    assert_eq!(
        cj["status"]["active"].as_array().map(Vec::len),
        Some(1),
        "{cj}"
    );
    assert_eq!(
        berth_e2e::pgrep("sleep 7312").len(),
        1,
        "one long container"
    );
    // the CronJob goes: its Jobs and their pods too
    a.remove_manifest("hold.yaml")?;
    a.wait_for("hold's pods removed", Duration::from_secs(30), |v| {
        v["items"]
            .as_array()
            .is_some_and(|ps| {
                !ps.iter().any(|p| {
                    p["metadata"]["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("hold-"))
                })
            })
            .then_some(())
    })?;
    a.shutdown_clean()
}
