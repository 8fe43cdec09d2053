//! A pod whose init containers are done, adopted after an agent restart:
//! its init containers are not run again, also when the runtime identified
//! them without their labels (their spec file damaged, issue 17).

use std::sync::Arc;
use std::time::Duration;

use berth_spec::Object;
use berth_spec::k8s_openapi::api::core::v1::Pod;
use serde_json::json;

use crate::controller::tests::{phase, start, state, tmp};
use crate::testing::{FakeNetwork, FakeRuntime, until};
use crate::traits::{LABEL_CONTAINER, LABEL_RESTARTS};

fn pod_with_init() -> Object {
    let p: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "inits", "namespace": "default"},
        "spec": {
            "initContainers": [
                {"name": "prep", "image": "busybox"},
                {"name": "migrate", "image": "busybox"}
            ],
            "containers": [{"name": "main", "image": "busybox"}]
        }
    }))
    .unwrap();
    Object::Pod(Box::new(p))
}

async fn adopt_after_inits_done(tag: &str, names_only: bool) {
    let dir = tmp(tag);
    let rt = Arc::new(FakeRuntime::default());
    let net = Arc::new(FakeNetwork::default());
    let desired = || state(vec![pod_with_init()], true);
    let mut h = start(&dir, Default::default(), rt.clone(), net.clone(), desired());
    // each init container exits 0 in turn, then main runs
    for init in ["prep", "migrate"] {
        let id = loop {
            let found = rt
                .running()
                .into_iter()
                .find(|c| c.name == init)
                .map(|c| c.id);
            if let Some(id) = found {
                break id;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        rt.exit(&id, 0);
    }
    until(&mut h.status, "inits Running", |s| {
        phase(s, "inits").as_deref() == Some("Running")
    })
    .await;
    let runs_before = rt.runs.lock().unwrap().len();
    assert_eq!(runs_before, 3);
    let _ = h.stop.send(true);
    h.task.await.unwrap();
    if names_only {
        for c in rt.all() {
            rt.keep_labels(&c.id, &[LABEL_CONTAINER, LABEL_RESTARTS]);
        }
    }
    let mut h2 = start(&dir, Default::default(), rt.clone(), net.clone(), desired());
    until(&mut h2.status, "inits Running again", |s| {
        phase(s, "inits").as_deref() == Some("Running")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    let runs: Vec<String> = rt
        .runs
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.id.clone())
        .collect();
    assert_eq!(runs.len(), runs_before, "run again: {runs:?}");
    assert!(
        rt.removed.lock().unwrap().is_empty(),
        "removed: {:?}",
        rt.removed.lock().unwrap()
    );
    let snap = h2.status.borrow().clone();
    let p = snap
        .pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("inits"))
        .unwrap();
    let inits = p
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.clone())
        .unwrap_or_default();
    assert_eq!(inits.len(), 2);
    for s in &inits {
        let t = s.state.as_ref().and_then(|st| st.terminated.as_ref());
        assert_eq!(t.map(|t| t.exit_code), Some(0), "{s:?}");
        assert_eq!(s.restart_count, 0, "{s:?}");
    }
    let _ = h2.stop.send(true);
    h2.task.await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn init_containers_done_are_not_run_again_after_a_restart() {
    adopt_after_inits_done("inits-done", false).await;
}

// regression (issue 17): an init container the runtime identified by its
// names only (no `berth.dev/init` label) was taken for a main container of
// an unknown name and removed
#[tokio::test(start_paused = true)]
async fn init_containers_identified_by_name_only_are_kept() {
    adopt_after_inits_done("inits-names", true).await;
}
