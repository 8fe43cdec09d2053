//! Jobs through the control loop against the in-memory fakes: parallel
//! completions, status, pruning, and a finished Job not run again by a
//! restarted reconciler (state in `jobs.json`).

use std::sync::Arc;
use std::time::Duration;

use berth_spec::Object;
use berth_spec::k8s_openapi::api::batch::v1::Job;
use serde_json::json;

use crate::controller::tests::{start, state, tmp};
use crate::status::Snapshot;
use crate::testing::{FakeNetwork, FakeRuntime, until};

fn job(name: &str, completions: i32, parallelism: i32) -> Object {
    let j: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "completions": completions, "parallelism": parallelism, "backoffLimit": 6,
            "template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox"}]}}
        }
    }))
    .unwrap();
    Object::Job(Box::new(j))
}

fn job_status(s: &Snapshot, name: &str) -> Option<(i32, i32, bool)> {
    let j = s
        .jobs
        .iter()
        .find(|j| j.metadata.name.as_deref() == Some(name))?;
    let st = j.status.as_ref()?;
    let complete = st
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Complete" && c.status == "True");
    Some((st.active.unwrap_or(0), st.succeeded.unwrap_or(0), complete))
}

#[tokio::test(start_paused = true)]
async fn job_runs_in_parallel_completes_and_is_not_rerun_after_restart() {
    let dir = tmp("job");
    let rt = Arc::new(FakeRuntime::default());
    let net = Arc::new(FakeNetwork::default());
    let desired = || state(vec![job("work", 3, 2)], true);
    let mut h = start(&dir, Default::default(), rt.clone(), net.clone(), desired());
    until(&mut h.status, "2 active", |s| {
        job_status(s, "work").is_some_and(|j| j.0 == 2) && rt.running().len() == 2
    })
    .await;
    for c in rt.running() {
        rt.exit(&c.id, 0);
    }
    until(&mut h.status, "third pod", |_| rt.running().len() == 1).await;
    let last = rt.running()[0].id.clone();
    rt.exit(&last, 0);
    until(&mut h.status, "complete", |s| {
        job_status(s, "work") == Some((0, 3, true))
    })
    .await;
    let snap = h.status.borrow().clone();
    let pods: Vec<_> = snap
        .pods
        .iter()
        .filter(|p| p.metadata.labels.as_ref().unwrap()["job-name"] == "work")
        .collect();
    assert_eq!(pods.len(), 3);
    let uid = snap.jobs[0].metadata.uid.clone().unwrap();
    for p in &pods {
        let l = p.metadata.labels.as_ref().unwrap();
        assert_eq!(l["controller-uid"], uid);
        assert_eq!(l["batch.kubernetes.io/job-name"], "work");
        assert_eq!(p.metadata.owner_references.as_ref().unwrap()[0].kind, "Job");
        let name = p.metadata.name.as_deref().unwrap();
        assert_eq!(name.len(), "work-".len() + 5, "{name}");
    }
    let runs = rt.runs.lock().unwrap().len();
    assert_eq!(runs, 3);
    // a new reconciler on the same state: the Job stays complete, nothing runs
    let _ = h.stop.send(true);
    h.task.await.unwrap();
    let mut h2 = start(&dir, Default::default(), rt.clone(), net.clone(), desired());
    until(&mut h2.status, "complete again", |s| {
        job_status(s, "work").is_some_and(|j| j.2)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(rt.runs.lock().unwrap().len(), runs, "not run again");
    assert_eq!(
        h2.status.borrow().jobs[0].metadata.uid.as_deref(),
        Some(uid.as_str())
    );
    // the manifest goes: the Job and its pods go
    h2.desired_tx.send_replace(Arc::new(state(vec![], true)));
    until(&mut h2.status, "pruned", |s| {
        s.jobs.is_empty() && s.pods.is_empty()
    })
    .await;
    let _ = h2.stop.send(true);
    h2.task.await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn running_job_pods_are_adopted_not_rerun() {
    let dir = tmp("jobadopt");
    let rt = Arc::new(FakeRuntime::default());
    let net = Arc::new(FakeNetwork::default());
    let desired = || state(vec![job("long", 1, 1)], true);
    let mut h = start(&dir, Default::default(), rt.clone(), net.clone(), desired());
    until(&mut h.status, "running", |_| rt.running().len() == 1).await;
    let id = rt.running()[0].id.clone();
    let _ = h.stop.send(true);
    h.task.await.unwrap();
    let mut h2 = start(&dir, Default::default(), rt.clone(), net.clone(), desired());
    until(&mut h2.status, "adopted", |s| {
        job_status(s, "long").is_some_and(|j| j.0 == 1)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(rt.runs.lock().unwrap().len(), 1, "kept, not run again");
    rt.exit(&id, 0);
    until(&mut h2.status, "complete", |s| {
        job_status(s, "long") == Some((0, 1, true))
    })
    .await;
    let _ = h2.stop.send(true);
    h2.task.await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
