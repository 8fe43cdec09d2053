//! Lifecycle hooks and sidecars through the worker, with fakes and paused
//! time: preStop runs before the stop, sidecars stop after the main
//! containers, a failing postStart kills the container.

use std::sync::Arc;
use std::time::Duration;

use berth_spec::Object;
use berth_spec::k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::controller::{Reconciler, ReconcilerConfig};
use crate::desired::{DesiredState, desired_channel};
use crate::status::{Snapshot, status_channel};
use crate::testing::{FakeImages, FakeNetwork, FakeRuntime, until};

fn desired(pods: &[Value]) -> Arc<DesiredState> {
    let objs = pods
        .iter()
        .map(|p| Object::Pod(Box::new(serde_json::from_value::<Pod>(p.clone()).unwrap())))
        .collect();
    Arc::new(crate::testing::desired_state(objs, true))
}

fn phase(s: &Snapshot, name: &str) -> Option<String> {
    s.pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .and_then(|p| p.status.as_ref()?.phase.clone())
}

fn events(s: &Snapshot, reason: &str) -> u32 {
    s.events
        .iter()
        .filter(|e| e.reason == reason)
        .map(|e| e.count)
        .sum()
}

struct Env {
    rt: Arc<FakeRuntime>,
    desired_tx: watch::Sender<Arc<DesiredState>>,
    status: watch::Receiver<Arc<Snapshot>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    dir: std::path::PathBuf,
}

fn start(name: &str, pods: &[Value]) -> Env {
    let dir = std::env::temp_dir().join(format!("berth-hooks-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = Arc::new(FakeRuntime::default());
    let (desired_tx, desired_rx) = desired_channel();
    desired_tx.send_replace(desired(pods));
    let (status_tx, status) = status_channel();
    let (stop, stop_rx) = watch::channel(false);
    let cfg = ReconcilerConfig {
        state_dir: dir.join("state"),
        run_dir: dir.join("run"),
        node_name: "node1".into(),
        host_ip: None,
        resync: Duration::from_secs(2),
        image_gc_interval: Duration::from_secs(3600),
    };
    let r = Reconciler::new(
        Arc::new(FakeImages::default()),
        rt.clone(),
        Arc::new(FakeNetwork::default()),
        cfg,
        status_tx,
    );
    let task = tokio::spawn(r.run(desired_rx, stop_rx));
    Env {
        rt,
        desired_tx,
        status,
        stop,
        task,
        dir,
    }
}

impl Env {
    async fn end(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(60), self.task).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    fn calls(&self) -> Vec<String> {
        self.rt.calls.lock().unwrap().clone()
    }
}

fn pos(calls: &[String], prefix: &str) -> usize {
    calls
        .iter()
        .position(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("no call {prefix:?} in {calls:#?}"))
}

#[tokio::test(start_paused = true)]
async fn pre_stop_runs_before_the_stop_and_sidecars_stop_last() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {
            "terminationGracePeriodSeconds": 10,
            "initContainers": [{"name": "side", "image": "busybox", "restartPolicy": "Always",
                "lifecycle": {"preStop": {"exec": {"command": ["side-pre-stop"]}}}}],
            "containers": [{"name": "main", "image": "busybox",
                "lifecycle": {"preStop": {"exec": {"command": ["main-pre-stop"]}}}}]
        }
    });
    let mut e = start("prestop", &[pod]);
    until(&mut e.status, "p running", |s| {
        phase(s, "p").as_deref() == Some("Running")
    })
    .await;
    // the sidecar started first
    let runs: Vec<String> =
        e.rt.runs
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.name.clone())
            .collect();
    assert_eq!(runs, ["side", "main"]);
    e.desired_tx.send_replace(desired(&[]));
    until(&mut e.status, "p gone", |s| s.pods.is_empty()).await;
    let calls = e.calls();
    let main_hook = pos(&calls, "exec ");
    assert!(calls[main_hook].ends_with("main-pre-stop"), "{calls:#?}");
    let main_stop = calls
        .iter()
        .position(|c| c.starts_with("stop ") && c.contains("-main-"))
        .unwrap();
    let side_hook = pos(&calls, "exec ") + 1 + pos(&calls[main_hook + 1..], "exec ");
    assert!(calls[side_hook].ends_with("side-pre-stop"), "{calls:#?}");
    let side_stop = calls
        .iter()
        .position(|c| c.starts_with("stop ") && c.contains("-side-"))
        .unwrap();
    assert!(
        main_hook < main_stop && main_stop < side_hook && side_hook < side_stop,
        "{calls:#?}"
    );
    e.end().await;
}

#[tokio::test(start_paused = true)]
async fn a_failing_post_start_hook_kills_the_container() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {
            "containers": [{"name": "main", "image": "busybox",
                "lifecycle": {"postStart": {"exec": {"command": ["fail"]}}}}]
        }
    });
    let mut e = start("poststart", &[pod]);
    until(&mut e.status, "FailedPostStartHook", |s| {
        events(s, "FailedPostStartHook") >= 1
    })
    .await;
    // killed and restarted by the pod's policy (Always)
    until(&mut e.status, "a second run", |_| {
        e.rt.runs.lock().unwrap().len() >= 2
    })
    .await;
    let calls = e.calls();
    let hook = pos(&calls, "exec ");
    let stop = pos(&calls, "stop ");
    assert!(hook < stop, "{calls:#?}");
    e.end().await;
}

#[tokio::test(start_paused = true)]
async fn sidecars_stop_once_the_main_containers_are_done() {
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "job", "namespace": "default"},
        "spec": {
            "restartPolicy": "Never",
            "initContainers": [{"name": "side", "image": "busybox", "restartPolicy": "Always"}],
            "containers": [{"name": "main", "image": "busybox"}]
        }
    });
    let mut e = start("done", &[pod]);
    until(&mut e.status, "job running", |s| {
        phase(s, "job").as_deref() == Some("Running")
    })
    .await;
    let main_id =
        e.rt.running()
            .into_iter()
            .find(|c| c.name == "main")
            .unwrap()
            .id;
    e.rt.exit(&main_id, 0);
    until(&mut e.status, "job succeeded", |s| {
        phase(s, "job").as_deref() == Some("Succeeded")
    })
    .await;
    until(&mut e.status, "sidecar stopped", |_| {
        e.rt.running().is_empty()
    })
    .await;
    // and not started again
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert!(e.rt.running().is_empty());
    assert_eq!(e.rt.runs.lock().unwrap().len(), 2);
    e.end().await;
}
