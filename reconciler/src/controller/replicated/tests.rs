//! StatefulSets, DaemonSets, ReplicaSets and ReplicationControllers in the
//! control loop against the in-memory fakes.

use std::sync::Arc;
use std::time::Duration;

use berth_spec::Object;
use serde_json::json;

use super::super::tests::{start, state, tmp};
use crate::status::Snapshot;
use crate::testing::{FakeNetwork, FakeRuntime, until};

fn object(v: serde_json::Value) -> Object {
    let kind = v["kind"].as_str().unwrap().to_string();
    match kind.as_str() {
        "StatefulSet" => Object::StatefulSet(Box::new(serde_json::from_value(v).unwrap())),
        "DaemonSet" => Object::DaemonSet(Box::new(serde_json::from_value(v).unwrap())),
        "ReplicaSet" => Object::ReplicaSet(Box::new(serde_json::from_value(v).unwrap())),
        "ReplicationController" => {
            Object::ReplicationController(Box::new(serde_json::from_value(v).unwrap()))
        }
        k => panic!("{k}"),
    }
}

fn template(app: &str, image: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": app}},
        "spec": {"containers": [{"name": "c", "image": image}]}
    })
}

fn sts(replicas: i32, image: &str) -> Object {
    object(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": replicas, "serviceName": "nginx",
            "selector": {"matchLabels": {"app": "web"}},
            "template": template("web", image),
            "volumeClaimTemplates": [{"metadata": {"name": "data"}}]
        }
    }))
}

fn rs(kind: &str, name: &str, replicas: i32, image: &str) -> Object {
    let selector = if kind == "ReplicaSet" {
        json!({"matchLabels": {"app": name}})
    } else {
        json!({"app": name})
    };
    object(json!({
        "apiVersion": if kind == "ReplicaSet" { "apps/v1" } else { "v1" }, "kind": kind,
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": selector, "template": template(name, image)}
    }))
}

fn ds(image: &str) -> Object {
    object(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "agent", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": template("agent", image)}
    }))
}

fn live(s: &Snapshot, prefix: &str) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = s
        .pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| {
            p.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with(prefix))
        })
        .filter(|p| p.status.as_ref().is_some_and(crate::controller::pod_ready))
        .map(|p| {
            (
                p.metadata.name.clone().unwrap(),
                p.spec.as_ref().unwrap().containers[0]
                    .image
                    .clone()
                    .unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[tokio::test(start_paused = true)]
async fn statefulset_orders_rolls_and_scales_keeping_claims() {
    let dir = tmp("sts");
    let rt = Arc::new(FakeRuntime::default());
    let mut h = start(
        &dir,
        Default::default(),
        rt.clone(),
        Default::default(),
        state(vec![sts(3, "img:1")], true),
    );
    // ordered: no pod exists before every lower ordinal is Ready
    let early = std::cell::RefCell::new(Vec::new());
    until(&mut h.status, "3 ready", |s| {
        let ready: Vec<String> = live(s, "web-").into_iter().map(|(n, _)| n).collect();
        for p in &s.pods {
            let n = p.metadata.name.clone().unwrap_or_default();
            let o: u32 = n.trim_start_matches("web-").parse().unwrap_or(0);
            if (0..o).any(|lower| !ready.contains(&format!("web-{lower}"))) {
                early.borrow_mut().push(n);
            }
        }
        ready.len() == 3
    })
    .await;
    assert!(
        early.borrow().is_empty(),
        "created before a lower ordinal was Ready: {early:?}"
    );
    let snap = h.status.borrow().clone();
    let p0 = snap
        .pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("web-0"))
        .unwrap();
    let owner = &p0.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("StatefulSet", "web")
    );
    let spec = p0.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-0"));
    assert_eq!(spec.subdomain.as_deref(), Some("nginx"));
    let claim = ("default".to_string(), "data-web-2".to_string());
    let has_claim = || rt.claims.lock().unwrap().contains_key(&claim);
    assert!(has_claim(), "{claim:?} made");
    let vol = spec.volumes.iter().flatten().find(|v| v.name == "data");
    assert_eq!(
        vol.and_then(|v| v.persistent_volume_claim.as_ref())
            .map(|c| c.claim_name.as_str()),
        Some("data-web-0")
    );
    let st = snap.stateful_sets[0].status.clone().unwrap();
    assert_eq!((st.replicas, st.ready_replicas), (3, Some(3)));
    assert_eq!(st.current_revision, st.update_revision);
    // rolling update: highest ordinal first, all end at the new image
    h.desired_tx
        .send_replace(Arc::new(state(vec![sts(3, "img:2")], true)));
    until(&mut h.status, "rolled", |s| {
        live(s, "web-").iter().filter(|(_, i)| i == "img:2").count() == 3
    })
    .await;
    let st = h.status.borrow().stateful_sets[0].status.clone().unwrap();
    assert_eq!(st.current_revision, st.update_revision);
    assert_eq!(st.updated_replicas, Some(3));
    // scale down: web-2 goes, its claim stays
    h.desired_tx
        .send_replace(Arc::new(state(vec![sts(1, "img:2")], true)));
    until(&mut h.status, "scaled", |s| {
        live(s, "web-").len() == 1 && s.pods.len() == 1
    })
    .await;
    assert!(has_claim(), "scale-down keeps {claim:?}");
    // pruned with the manifest
    h.desired_tx.send_replace(Arc::new(state(vec![], true)));
    until(&mut h.status, "pruned", |s| s.pods.is_empty()).await;
    let _ = h.stop.send(true);
    h.task.await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn replica_sets_daemon_sets_scale_and_are_adopted() {
    let dir = tmp("rs");
    let rt = Arc::new(FakeRuntime::default());
    let net = Arc::new(FakeNetwork::default());
    let objs = |n: i32, image: &str| {
        vec![
            rs("ReplicaSet", "fe", n, image),
            rs("ReplicationController", "rc", 1, "img:1"),
            ds("img:1"),
        ]
    };
    let mut h = start(
        &dir,
        Default::default(),
        rt.clone(),
        net.clone(),
        state(objs(3, "img:1"), true),
    );
    until(&mut h.status, "5 ready", |s| {
        live(s, "fe-").len() == 3 && live(s, "rc-").len() == 1 && live(s, "agent-").len() == 1
    })
    .await;
    let before: Vec<String> = rt.running().iter().map(|c| c.id.clone()).collect();
    let runs = rt.runs.lock().unwrap().len();
    let _ = h.stop.send(true);
    h.task.await.unwrap();
    // a restarted reconciler adopts every pod without starting anything
    let mut h = start(
        &dir,
        Default::default(),
        rt.clone(),
        net.clone(),
        state(objs(3, "img:1"), true),
    );
    until(&mut h.status, "5 ready again", |s| {
        live(s, "fe-").len() == 3 && live(s, "rc-").len() == 1 && live(s, "agent-").len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(rt.runs.lock().unwrap().len(), runs, "nothing restarted");
    let after: Vec<String> = rt.running().iter().map(|c| c.id.clone()).collect();
    assert_eq!(before, after);
    // a new template and fewer replicas: scaled down, nothing replaced
    h.desired_tx
        .send_replace(Arc::new(state(objs(1, "img:9"), true)));
    until(&mut h.status, "fe at 1", |s| {
        s.pods
            .iter()
            .filter(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("fe-"))
            })
            .count()
            == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        live(&h.status.borrow(), "fe-")[0].1,
        "img:1",
        "no rollout of an RS template"
    );
    let st = h.status.borrow().replica_sets[0].status.clone().unwrap();
    assert_eq!((st.replicas, st.ready_replicas), (1, Some(1)));
    // the DaemonSet rolls to a new template
    h.desired_tx.send_replace(Arc::new(state(
        vec![rs("ReplicaSet", "fe", 1, "img:9"), ds("img:2")],
        true,
    )));
    until(&mut h.status, "ds rolled, rc pruned", |s| {
        live(s, "agent-")
            .iter()
            .map(|(_, i)| i.as_str())
            .collect::<Vec<_>>()
            == ["img:2"]
            && !s.pods.iter().any(|p| {
                p.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| n.starts_with("rc-"))
            })
    })
    .await;
    let d = h.status.borrow().daemon_sets[0].status.clone().unwrap();
    assert_eq!((d.desired_number_scheduled, d.number_ready), (1, 1));
    let _ = h.stop.send(true);
    h.task.await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
