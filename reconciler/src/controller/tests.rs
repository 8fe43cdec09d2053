//! The control loop against in-memory fakes: convergence, restarts with
//! back-off, pruning, rollouts and adoption. Time is paused (auto-advancing).

use std::sync::Arc;
use std::time::Duration;

use berth_spec::Object;
use berth_spec::k8s_openapi::api::apps::v1::Deployment;
use berth_spec::k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::json;
use tokio::sync::watch;

use super::*;
use crate::desired::{DesiredState, desired_channel};
use crate::status::{Snapshot, status_channel};
use crate::testing::{FakeImages, FakeNetwork, FakeRuntime, until};

pub(super) struct Harness {
    pub(super) images: Arc<FakeImages>,
    pub(super) rt: Arc<FakeRuntime>,
    pub(super) net: Arc<FakeNetwork>,
    pub(super) state: std::path::PathBuf,
    pub(super) desired_tx: crate::desired::DesiredTx,
    pub(super) status: crate::status::StatusReader,
    pub(super) stop: watch::Sender<bool>,
    pub(super) task: tokio::task::JoinHandle<()>,
}

pub(super) fn state(objs: Vec<Object>, complete: bool) -> DesiredState {
    crate::testing::desired_state(objs, complete)
}

pub(super) fn pod(name: &str, restart: &str) -> Object {
    let p: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
        "spec": {"restartPolicy": restart, "containers": [{"name": "main", "image": "busybox"}]}
    }))
    .unwrap();
    Object::Pod(Box::new(p))
}

pub(super) fn deployment(name: &str, replicas: i32, image: &str) -> Object {
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "web", "image": image}]}
            }
        }
    }))
    .unwrap();
    Object::Deployment(Box::new(d))
}

pub(super) fn service(name: &str, app: &str) -> Object {
    let s: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"selector": {"app": app}, "ports": [{"port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    Object::Service(Box::new(s))
}

pub(super) fn start(
    dir: &std::path::Path,
    images: Arc<FakeImages>,
    rt: Arc<FakeRuntime>,
    net: Arc<FakeNetwork>,
    initial: DesiredState,
) -> Harness {
    let (desired_tx, desired_rx) = desired_channel();
    desired_tx.send_replace(Arc::new(initial));
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
    let r = Reconciler::new(images.clone(), rt.clone(), net.clone(), cfg, status_tx);
    let task = tokio::spawn(r.run(desired_rx, stop_rx));
    Harness {
        images,
        rt,
        net,
        state: dir.to_path_buf(),
        desired_tx,
        status,
        stop,
        task,
    }
}

pub(super) fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("berth-ctl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub(super) fn phase(s: &Snapshot, name: &str) -> Option<String> {
    s.pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .and_then(|p| p.status.as_ref()?.phase.clone())
}

pub(super) fn restarts(s: &Snapshot, name: &str) -> i32 {
    s.pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .and_then(|p| {
            p.status
                .as_ref()?
                .container_statuses
                .as_ref()?
                .first()
                .map(|c| c.restart_count)
        })
        .unwrap_or(-1)
}

pub(super) fn waiting_reason(s: &Snapshot, name: &str) -> Option<String> {
    s.pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))?
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

#[tokio::test(start_paused = true)]
async fn pod_runs_restarts_with_backoff_and_is_pruned() {
    let dir = tmp("pod");
    let mut h = start(
        &dir,
        Default::default(),
        Default::default(),
        Default::default(),
        state(vec![pod("a", "Always")], true),
    );
    until(&mut h.status, "pod a running", |s| {
        phase(s, "a").as_deref() == Some("Running")
    })
    .await;
    assert_eq!(h.rt.running().len(), 1);
    let id = h.rt.running()[0].id.clone();
    // first crash: restarted at once
    h.rt.exit(&id, 1);
    until(&mut h.status, "restart 1", |s| {
        restarts(s, "a") == 1 && phase(s, "a").as_deref() == Some("Running")
    })
    .await;
    let t0 = tokio::time::Instant::now();
    let id = h.rt.running()[0].id.clone();
    h.rt.exit(&id, 1);
    until(&mut h.status, "crash loop back-off", |s| {
        waiting_reason(s, "a").as_deref() == Some("CrashLoopBackOff")
    })
    .await;
    until(&mut h.status, "restart 2", |s| {
        restarts(s, "a") == 2 && h.rt.running().len() == 1
    })
    .await;
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(10) && waited < Duration::from_secs(15),
        "back-off took {waited:?}"
    );
    // old containers are removed, one remains
    assert_eq!(h.rt.all().len(), 1);
    // prune: the pod leaves the manifests
    h.desired_tx.send_replace(Arc::new(state(vec![], true)));
    until(&mut h.status, "pod gone", |s| s.pods.is_empty()).await;
    assert!(h.rt.all().is_empty());
    assert_eq!(h.net.pod_count(), 0);
    let _ = h.stop.send(true);
    h.task.await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn never_policy_completes_and_incomplete_source_prunes_nothing() {
    let dir = tmp("never");
    let mut h = start(
        &dir,
        Default::default(),
        Default::default(),
        Default::default(),
        state(vec![pod("job", "Never")], true),
    );
    until(&mut h.status, "running", |s| {
        phase(s, "job").as_deref() == Some("Running")
    })
    .await;
    let id = h.rt.running()[0].id.clone();
    h.rt.exit(&id, 0);
    until(&mut h.status, "succeeded", |s| {
        phase(s, "job").as_deref() == Some("Succeeded")
    })
    .await;
    assert_eq!(h.rt.runs.lock().unwrap().len(), 1, "Never: no restart");
    // an incomplete desired set (a source not read yet) never prunes
    h.desired_tx.send_replace(Arc::new(state(vec![], false)));
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(phase(&h.status.borrow(), "job").is_some());
    let _ = h.stop.send(true);
    h.task.await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn image_pull_failure_is_reported_then_recovers() {
    let dir = tmp("pull");
    let images = Arc::new(FakeImages::default());
    images.fail.lock().unwrap().push("busybox".into());
    let mut h = start(
        &dir,
        images,
        Default::default(),
        Default::default(),
        state(vec![pod("a", "Always")], true),
    );
    until(&mut h.status, "ErrImagePull", |s| {
        matches!(
            waiting_reason(s, "a").as_deref(),
            Some("ErrImagePull") | Some("ImagePullBackOff")
        )
    })
    .await;
    assert!(
        h.status
            .borrow()
            .events
            .iter()
            .any(|e| e.reason == "Failed")
    );
    h.images.fail.lock().unwrap().clear();
    until(&mut h.status, "running after pull", |s| {
        phase(s, "a").as_deref() == Some("Running")
    })
    .await;
    let _ = h.stop.send(true);
    h.task.await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn deployment_rolls_without_losing_ready_pods_and_services_follow() {
    let dir = tmp("deploy");
    let mut h = start(
        &dir,
        Default::default(),
        Default::default(),
        Default::default(),
        state(
            vec![deployment("web", 2, "img:1"), service("web", "web")],
            true,
        ),
    );
    let running = |s: &Snapshot, img: &str| {
        s.pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| p.spec.as_ref().unwrap().containers[0].image.as_deref() == Some(img))
            .filter(|p| crate::controller::pod_ready(p.status.as_ref().unwrap()))
            .count()
    };
    until(&mut h.status, "2 ready pods of img:1", |s| {
        running(s, "img:1") == 2
    })
    .await;
    until(&mut h.status, "service has 2 endpoints", |_| {
        h.net
            .services
            .lock()
            .unwrap()
            .first()
            .is_some_and(|e| e.endpoints.len() == 2)
    })
    .await;
    let dep = h.status.borrow().deployments[0].clone();
    assert_eq!(dep.status.as_ref().unwrap().ready_replicas, Some(2));
    // roll to img:2; ready pods must never drop below 2
    h.desired_tx.send_replace(Arc::new(state(
        vec![deployment("web", 2, "img:2"), service("web", "web")],
        true,
    )));
    let mut rx = h.status.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(300);
    loop {
        let s = rx.borrow_and_update().clone();
        let ready: usize = running(&s, "img:1") + running(&s, "img:2");
        assert!(ready >= 2, "ready pods dropped to {ready}");
        if running(&s, "img:2") == 2 && s.pods.len() == 2 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "rollout did not finish"
        );
        tokio::select! {
            _ = rx.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
    // pods carry the template hash and deployment-style names
    let s = h.status.borrow().clone();
    for p in &s.pods {
        let hash = p
            .metadata
            .labels
            .as_ref()
            .unwrap()
            .get("pod-template-hash")
            .unwrap();
        assert!(
            p.metadata
                .name
                .as_ref()
                .unwrap()
                .starts_with(&format!("web-{hash}-"))
        );
    }
    // scale down to 1
    h.desired_tx.send_replace(Arc::new(state(
        vec![deployment("web", 1, "img:2"), service("web", "web")],
        true,
    )));
    until(&mut h.status, "scaled to 1", |s| s.pods.len() == 1).await;
    let _ = h.stop.send(true);
    h.task.await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn restarted_reconciler_adopts_without_restarting() {
    let dir = tmp("adopt");
    let rt = Arc::new(FakeRuntime::default());
    let net = Arc::new(FakeNetwork::default());
    let desired = || {
        state(
            vec![pod("a", "Always"), deployment("web", 2, "img:1")],
            true,
        )
    };
    let mut h = start(&dir, Default::default(), rt.clone(), net.clone(), desired());
    until(&mut h.status, "3 running", |s| {
        s.pods
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count()
            == 3
    })
    .await;
    let before: Vec<String> = rt.running().iter().map(|c| c.id.clone()).collect();
    let runs_before = rt.runs.lock().unwrap().len();
    // the agent dies: the loop stops, containers keep running
    let _ = h.stop.send(true);
    h.task.await.unwrap();
    assert_eq!(rt.running().len(), 3);
    // a container exits while the agent is down
    rt.exit(&before[0], 3);
    let mut h2 = start(&dir, Default::default(), rt.clone(), net.clone(), desired());
    until(&mut h2.status, "3 running again", |s| {
        s.pods
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count()
            == 3
            && rt.running().len() == 3
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    // only the exited one was started again; the others kept their ids
    assert_eq!(rt.runs.lock().unwrap().len(), runs_before + 1);
    let after: Vec<String> = rt.running().iter().map(|c| c.id.clone()).collect();
    for id in &before[1..] {
        assert!(after.contains(id), "{id} was restarted");
    }
    assert_eq!(h2.status.borrow().pods.len(), 3);
    let _ = h2.stop.send(true);
    h2.task.await.unwrap();
    let _ = (&h.images, &h.state);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn host_port_conflict_is_reported_not_overridden() {
    let dir = tmp("hostport");
    let mk = |name: &str| {
        let p: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "main", "image": "busybox",
                "ports": [{"containerPort": 80, "hostPort": 18080}]}]}
        }))
        .unwrap();
        Object::Pod(Box::new(p))
    };
    let mut h = start(
        &dir,
        Default::default(),
        Default::default(),
        Default::default(),
        state(vec![mk("a"), mk("b")], true),
    );
    until(&mut h.status, "a running, b blocked", |s| {
        phase(s, "a").as_deref() == Some("Running")
            && s.pods.iter().any(|p| {
                p.metadata.name.as_deref() == Some("b")
                    && p.status
                        .as_ref()
                        .unwrap()
                        .conditions
                        .iter()
                        .flatten()
                        .any(|c| c.reason.as_deref() == Some("Unschedulable"))
            })
    })
    .await;
    assert_eq!(h.rt.running().len(), 1);
    let _ = h.stop.send(true);
    h.task.await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

// issue 18: image GC keeps the images of the last healthy revisions (a
// rollback must not need a registry), beside those of running pods
#[tokio::test(start_paused = true)]
async fn image_gc_keeps_the_last_healthy_revisions_images() {
    let dir = tmp("gckeep");
    let mut desired = state(vec![pod("a", "Always")], true);
    desired.keep_images.insert("registry.example/old:1".into());
    let mut h = start(
        &dir,
        Default::default(),
        Default::default(),
        Default::default(),
        desired,
    );
    until(&mut h.status, "pod a running", |s| {
        phase(s, "a").as_deref() == Some("Running")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3601)).await;
    for _ in 0..100 {
        if !h.images.gc_calls.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls = h.images.gc_calls.lock().unwrap().clone();
    let last = calls.last().expect("a gc pass ran");
    assert!(
        last.iter().any(|i| i == "registry.example/old:1"),
        "{last:?}"
    );
    assert!(last.len() >= 2, "the running pod's image too: {last:?}");
    let _ = h.stop.send(true);
    h.task.await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
