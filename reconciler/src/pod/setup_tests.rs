//! A pod whose setup fails holds no IP (issue 14: a pod that could never
//! start — "File name too long" — kept its address for good). Fakes, paused
//! time.

use std::sync::Arc;
use std::time::Duration;

use berth_spec::Object;
use berth_spec::k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use tokio::sync::watch;

use crate::controller::{Reconciler, ReconcilerConfig};
use crate::desired::{DesiredState, desired_channel};
use crate::status::{Snapshot, status_channel};
use crate::testing::{FakeImages, FakeNetwork, FakeRuntime, until};

fn desired(names: &[&str]) -> Arc<DesiredState> {
    let objs = names
        .iter()
        .map(|name| {
            let p: Pod = serde_json::from_value(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"containers": [{"name": "main", "image": "busybox"}]}
            }))
            .unwrap();
            Object::Pod(Box::new(p))
        })
        .collect();
    Arc::new(crate::testing::desired_state(objs, true))
}

fn failed_setups(s: &Snapshot) -> u32 {
    s.events
        .iter()
        .filter(|e| e.reason == "FailedCreatePodSandBox")
        .map(|e| e.count)
        .sum()
}

fn running(s: &Snapshot, name: &str) -> bool {
    s.pods.iter().any(|p| {
        p.metadata.name.as_deref() == Some(name)
            && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
    })
}

#[tokio::test(start_paused = true)]
async fn a_failed_pod_setup_releases_its_ip() {
    let dir = std::env::temp_dir().join(format!("berth-setup-ip-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = Arc::new(FakeRuntime::default());
    let net = Arc::new(FakeNetwork::default());
    *rt.fail_sandbox.lock().unwrap() = Some("File name too long (os error 36)".into());
    let (desired_tx, desired_rx) = desired_channel();
    desired_tx.send_replace(desired(&["a"]));
    let (status_tx, mut status) = status_channel();
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
        net.clone(),
        cfg,
        status_tx,
    );
    let task = tokio::spawn(r.run(desired_rx, stop_rx));

    // every failed attempt gives the address back before it reports
    until(&mut status, "first failed setup", |s| failed_setups(s) >= 1).await;
    assert_eq!(
        net.pod_count(),
        0,
        "IP still allocated after a failed setup"
    );
    until(&mut status, "a retried failed setup", |s| {
        failed_setups(s) >= 3
    })
    .await;
    assert_eq!(net.pod_count(), 0, "IP still allocated after a retry");
    assert!(rt.sandboxes.lock().unwrap().is_empty());

    // once setup works, the pod gets its address and runs
    *rt.fail_sandbox.lock().unwrap() = None;
    until(&mut status, "pod a running", |s| running(s, "a")).await;
    assert_eq!(net.pod_count(), 1);

    // and its deletion gives it back
    desired_tx.send_replace(desired(&[]));
    until(&mut status, "pod a gone", |s| s.pods.is_empty()).await;
    assert_eq!(net.pod_count(), 0);

    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn a_pod_deleted_while_its_setup_fails_leaves_no_ip() {
    let dir = std::env::temp_dir().join(format!("berth-setup-del-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let rt = Arc::new(FakeRuntime::default());
    let net = Arc::new(FakeNetwork::default());
    *rt.fail_sandbox.lock().unwrap() = Some("File name too long (os error 36)".into());
    let (desired_tx, desired_rx) = desired_channel();
    desired_tx.send_replace(desired(&["a", "b"]));
    let (status_tx, mut status) = status_channel();
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
        net.clone(),
        cfg,
        status_tx,
    );
    let task = tokio::spawn(r.run(desired_rx, stop_rx));
    until(&mut status, "failed setups of both", |s| {
        failed_setups(s) >= 2
    })
    .await;
    desired_tx.send_replace(desired(&[]));
    until(&mut status, "pods gone", |s| s.pods.is_empty()).await;
    assert_eq!(net.pod_count(), 0);
    assert!(rt.sandboxes.lock().unwrap().is_empty());
    let _ = stop.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(60), task).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The longest Pod name validation accepts gives a pod key that fits in a
/// file name (the key format and the spec's limit must agree).
#[test]
fn the_longest_valid_pod_name_fits_a_file_name() {
    use berth_spec::validate::names::{NAME_MAX, max_pod_name_len};
    for ns in ["default", &"n".repeat(63)] {
        let pod = crate::traits::PodRef {
            namespace: ns.to_string(),
            name: "a".repeat(max_pod_name_len(ns)),
            uid: crate::hash::spec_hash(&"x"),
        };
        assert_eq!(pod.key().len(), NAME_MAX, "{ns}");
    }
}
