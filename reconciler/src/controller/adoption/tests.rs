//! Adoption per entry (issue 17): planning of unrecorded pods, and the
//! control loop restarted on unreadable records, pods deleted while the
//! agent was down, back-off across restarts and failed workers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::controller::tests::{Harness, deployment, phase, pod, start, state, tmp};
use crate::testing::{FakeImages, FakeNetwork, FakeRuntime, until};
use crate::traits::ContainerState;

use super::*;

// === plan_orphan ===

fn orphan_of(name: &str, hash: Option<&str>) -> Orphan {
    let pod = PodRef {
        namespace: "default".into(),
        name: name.into(),
        uid: "u1".into(),
    };
    let mut labels = BTreeMap::new();
    if let Some(h) = hash {
        labels.insert(LABEL_SPEC_HASH.to_string(), h.to_string());
    }
    Orphan {
        containers: vec![ContainerInfo {
            id: "u1-main-0".into(),
            pod: pod.clone(),
            name: "main".into(),
            labels,
            state: ContainerState::Running {
                pid: 1,
                started_at: SystemTime::now(),
            },
            log_path: "/l".into(),
        }],
        pod,
        reported: false,
    }
}

fn pod_hash(o: &Object) -> String {
    match o {
        Object::Pod(p) => desired_from_pod(p).spec_hash,
        _ => unreachable!(),
    }
}

#[test]
fn orphan_named_with_its_spec_is_adopted() {
    let p = pod("a", "Always");
    let h = pod_hash(&p);
    for complete in [true, false] {
        let plan = plan_orphan(
            &orphan_of("a", Some(&h)),
            &state(vec![p.clone()], complete),
            false,
        );
        let OrphanPlan::Adopt(d) = plan else {
            panic!("{plan:?}")
        };
        assert_eq!(d.name, "a");
        assert_eq!(d.spec_hash, h);
    }
}

#[test]
fn orphan_waits_while_the_desired_set_is_incomplete() {
    let o = orphan_of("gone", Some("h"));
    assert_eq!(
        plan_orphan(&o, &state(vec![], false), false),
        OrphanPlan::Wait
    );
    // named with another spec: still waits (the source may not be read yet)
    let p = pod("gone", "Always");
    assert_eq!(
        plan_orphan(&o, &state(vec![p], false), false),
        OrphanPlan::Wait
    );
}

#[test]
fn orphan_not_named_by_a_complete_set_is_removed() {
    let o = orphan_of("gone", Some("h"));
    let OrphanPlan::Remove(why) = plan_orphan(&o, &state(vec![pod("a", "Always")], true), false)
    else {
        panic!()
    };
    assert!(why.contains("no manifest"), "{why}");
    let OrphanPlan::Remove(why) = plan_orphan(&o, &state(vec![pod("gone", "Always")], true), false)
    else {
        panic!()
    };
    assert!(why.contains("another spec"), "{why}");
}

#[test]
fn orphan_whose_name_another_instance_holds_is_removed() {
    let p = pod("a", "Always");
    let h = pod_hash(&p);
    let OrphanPlan::Remove(why) =
        plan_orphan(&orphan_of("a", Some(&h)), &state(vec![p], true), true)
    else {
        panic!()
    };
    assert!(why.contains("another instance"), "{why}");
}

#[test]
fn orphan_without_a_hash_label_is_adopted_by_name() {
    let plan = plan_orphan(
        &orphan_of("a", None),
        &state(vec![pod("a", "Always")], true),
        false,
    );
    assert!(matches!(plan, OrphanPlan::Adopt(_)), "{plan:?}");
}

#[test]
fn deployment_pod_of_the_current_template_is_adopted() {
    let d = deployment("web", 2, "img:1");
    let Object::Deployment(dep) = &d else {
        unreachable!()
    };
    let hash = crate::deployment::template_hash(&dep.spec.template);
    let name = format!("web-{hash}-abcde");
    let plan = plan_orphan(
        &orphan_of(&name, Some(&hash)),
        &state(vec![d.clone()], true),
        false,
    );
    let OrphanPlan::Adopt(p) = plan else {
        panic!("{plan:?}")
    };
    assert_eq!(p.owner.as_deref(), Some("web"));
    assert_eq!(p.template_hash.as_deref(), Some(hash.as_str()));
    assert_eq!(p.labels["pod-template-hash"], hash);
    // a pod of an older template (its spec unknown): removed, the rollout makes new ones
    let old = plan_orphan(
        &orphan_of("web-0123456789-abcde", Some("0123456789")),
        &state(vec![d], true),
        false,
    );
    assert!(matches!(old, OrphanPlan::Remove(_)), "{old:?}");
}

// === the control loop ===

fn running(s: &crate::status::Snapshot) -> usize {
    s.pods
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .count()
}

fn condition<'a>(s: &'a crate::status::Snapshot, t: &str) -> Option<&'a AgentCondition> {
    s.conditions.iter().find(|c| c.type_ == t)
}

async fn stop(h: Harness) {
    let _ = h.stop.send(true);
    h.task.await.unwrap();
}

use crate::status::AgentCondition;

fn three_pods() -> crate::desired::DesiredState {
    state(
        vec![pod("a", "Always"), deployment("web", 2, "img:1")],
        true,
    )
}

// regression (issue 17): with the records truncated, adoption removed every
// container and started all three again
#[tokio::test(start_paused = true)]
async fn corrupt_records_replace_nothing() {
    for (tag, body) in [
        ("trunc", &b"{\"version\": 2, \"pods\": [{\"pod\""[..]),
        ("garbage", &b"\x00\x01\x02garbage"[..]),
        ("future", &b"{\"version\": 99, \"pods\": []}"[..]),
    ] {
        let dir = tmp(&format!("corrupt-{tag}"));
        let rt = Arc::new(FakeRuntime::default());
        let net = Arc::new(FakeNetwork::default());
        let mut h = start(
            &dir,
            Default::default(),
            rt.clone(),
            net.clone(),
            three_pods(),
        );
        until(&mut h.status, "3 running", |s| running(s) == 3).await;
        let before: Vec<String> = rt.running().iter().map(|c| c.id.clone()).collect();
        let runs = rt.runs.lock().unwrap().len();
        stop(h).await;
        let records = dir.join("state/reconciler/pods.json");
        std::fs::write(&records, body).unwrap();

        let mut h = start(
            &dir,
            Default::default(),
            rt.clone(),
            net.clone(),
            three_pods(),
        );
        until(&mut h.status, "3 running again", |s| {
            running(s) == 3 && condition(s, "StateFilesReadable").is_some()
        })
        .await;
        tokio::time::sleep(Duration::from_secs(30)).await;
        let after: Vec<String> = rt.running().iter().map(|c| c.id.clone()).collect();
        assert_eq!(before, after, "{tag}: containers replaced");
        assert_eq!(
            rt.runs.lock().unwrap().len(),
            runs,
            "{tag}: containers started"
        );
        assert!(rt.removed.lock().unwrap().is_empty(), "{tag}");
        let s = h.status.borrow().clone();
        assert_eq!(s.pods.len(), 3, "{tag}");
        let c = condition(&s, "StateFilesReadable").unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "Quarantined")
        );
        assert!(
            c.message.starts_with(&format!(
                "pod records {} could not be read (",
                records.display()
            )) && c.message.contains(&format!(
                "moved aside to {}.quarantined-",
                records.display()
            )),
            "{}",
            c.message
        );
        assert!(condition(&s, "PodRecordsReadable").is_none());
        assert!(
            s.events
                .iter()
                .any(|e| e.reason == "Quarantined" && e.message.contains("pods.json"))
        );
        assert!(s.events.iter().filter(|e| e.reason == "Adopted").count() == 3);
        // the quarantined file is kept; new records were written
        let kept = std::fs::read_dir(dir.join("state/reconciler"))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("pods.json.quarantined-")
            })
            .count();
        assert_eq!(kept, 1, "{tag}");
        assert_eq!(
            crate::record::RecordStore::new(&dir.join("state"))
                .load()
                .records
                .len(),
            3
        );
        stop(h).await;
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn unrecorded_pods_wait_for_a_complete_set_then_go() {
    let dir = tmp("orphan-wait");
    let rt = Arc::new(FakeRuntime::default());
    let net = Arc::new(FakeNetwork::default());
    let mut h = start(
        &dir,
        Default::default(),
        rt.clone(),
        net.clone(),
        three_pods(),
    );
    until(&mut h.status, "3 running", |s| running(s) == 3).await;
    stop(h).await;
    std::fs::write(dir.join("state/reconciler/pods.json"), b"garbage").unwrap();
    // the sources have not been read: nothing is removed
    let mut h = start(
        &dir,
        Default::default(),
        rt.clone(),
        net.clone(),
        state(vec![], false),
    );
    until(&mut h.status, "orphans reported", |s| {
        condition(s, "UnrecordedPods").is_some()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(rt.running().len(), 3);
    assert!(rt.removed.lock().unwrap().is_empty());
    // the set is complete and names none of them: removed, network and all
    h.desired_tx
        .send_replace(Arc::new(state(vec![pod("other", "Always")], true)));
    until(&mut h.status, "only 'other'", |s| {
        running(s) == 1 && rt.running().len() == 1 && net.pod_count() == 1
    })
    .await;
    assert_eq!(rt.all().len(), 1);
    assert_eq!(rt.removed.lock().unwrap().len(), 3);
    stop(h).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

// regression (issue 17): a pod adopted and deleted in the same pass kept
// running, unmanaged (the worker tried to set it up, then removed nothing)
#[tokio::test(start_paused = true)]
async fn pod_deleted_while_the_agent_was_down_is_removed_completely() {
    let dir = tmp("adopt-delete");
    let rt = Arc::new(FakeRuntime::default());
    let net = Arc::new(FakeNetwork::default());
    // as in the example: one pod mounts a ConfigMap that goes with the manifests
    let cm: berth_spec::k8s_openapi::api::core::v1::ConfigMap =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "conf", "namespace": "default"},
            "data": {"k": "v"}
        }))
        .unwrap();
    let with_cm: berth_spec::k8s_openapi::api::core::v1::Pod =
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "c", "namespace": "default"},
            "spec": {
                "volumes": [{"name": "conf", "configMap": {"name": "conf"}}],
                "containers": [{"name": "main", "image": "busybox",
                    "volumeMounts": [{"name": "conf", "mountPath": "/etc/conf"}]}]
            }
        }))
        .unwrap();
    let mut first = three_pods();
    for o in [
        Object::ConfigMap(Box::new(cm)),
        Object::Pod(Box::new(with_cm)),
    ] {
        first.objects.insert(
            o.key(),
            berth_spec::Sourced {
                object: o,
                location: berth_spec::Location {
                    file: "t.yaml".into(),
                    line: 1,
                    column: 1,
                },
            },
        );
    }
    let mut h = start(&dir, Default::default(), rt.clone(), net.clone(), first);
    until(&mut h.status, "4 running", |s| running(s) == 4).await;
    stop(h).await;
    assert_eq!(rt.running().len(), 4);
    let mut h = start(
        &dir,
        Default::default(),
        rt.clone(),
        net.clone(),
        state(vec![], true),
    );
    until(&mut h.status, "all gone", |s| {
        s.ready && s.pods.is_empty() && rt.all().is_empty() && net.pod_count() == 0
    })
    .await;
    assert!(rt.all().is_empty(), "containers left: {:?}", rt.all());
    assert_eq!(net.pod_count(), 0);
    assert!(rt.sandboxes.lock().unwrap().is_empty());
    assert_eq!(rt.removed.lock().unwrap().len(), 4);
    // no set-up was attempted for pods being deleted
    let s = h.status.borrow().clone();
    assert!(
        !s.events
            .iter()
            .any(|e| e.reason == "FailedMount" || e.reason == "FailedCreatePodSandBox"),
        "{:?}",
        s.events
    );
    stop(h).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn back_off_survives_an_agent_restart() {
    let dir = tmp("backoff");
    let rt = Arc::new(FakeRuntime::default());
    let net = Arc::new(FakeNetwork::default());
    let desired = || state(vec![pod("a", "Always")], true);
    let mut h = start(&dir, Default::default(), rt.clone(), net.clone(), desired());
    // crash three times: back-offs 0, 10 s, then 20 s
    for n in 0..3 {
        until(&mut h.status, "running", |_| rt.running().len() == 1).await;
        let id = rt.running()[0].id.clone();
        rt.exit(&id, 1);
        if n < 2 {
            until(&mut h.status, "restarted", |_| {
                rt.running().first().is_some_and(|c| c.id != id)
            })
            .await;
        }
    }
    until(&mut h.status, "back-off saved", |_| {
        crate::record::RecordStore::new(&dir.join("state"))
            .load()
            .records
            .first()
            .and_then(|r| r.backoff.get("main"))
            .is_some_and(|b| {
                b.waiting.as_ref().is_some_and(|w| w.exit_code == 1) && b.next_delay_ms == 40_000
            })
    })
    .await;
    let runs = rt.runs.lock().unwrap().len();
    stop(h).await;
    let t0 = tokio::time::Instant::now();
    let mut h = start(&dir, Default::default(), rt.clone(), net.clone(), desired());
    until(&mut h.status, "waiting in back-off", |s| {
        s.pods.iter().any(|p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .is_some_and(|cs| {
                    cs[0]
                        .state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.as_deref())
                        == Some("CrashLoopBackOff")
                })
        })
    })
    .await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(
        rt.runs.lock().unwrap().len(),
        runs,
        "restarted at once after the agent restart"
    );
    until(&mut h.status, "restarted after the back-off", |_| {
        rt.running().len() == 1
    })
    .await;
    let waited = t0.elapsed();
    assert!(waited >= Duration::from_secs(19), "{waited:?}");
    assert!(waited < Duration::from_secs(40), "{waited:?}");
    // the next crash waits the following step (40 s), not 10 s
    let id = rt.running()[0].id.clone();
    rt.exit(&id, 1);
    let t1 = tokio::time::Instant::now();
    until(&mut h.status, "restarted again", |_| {
        rt.running().len() == 1
    })
    .await;
    assert!(
        t1.elapsed() >= Duration::from_secs(39),
        "{:?}",
        t1.elapsed()
    );
    stop(h).await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_panicking_worker_is_reported_and_retried() {
    let dir = tmp("panic");
    let images = Arc::new(FakeImages::default());
    images.panic.lock().unwrap().push("busybox".into());
    let rt = Arc::new(FakeRuntime::default());
    let mut h = start(
        &dir,
        images.clone(),
        rt.clone(),
        Default::default(),
        state(vec![pod("a", "Always")], true),
    );
    until(&mut h.status, "worker failure reported", |s| {
        condition(s, "PodWorkersHealthy").is_some_and(|c| c.blocks_ready && c.status == "False")
            && s.events.iter().any(|e| e.reason == "WorkerFailed")
    })
    .await;
    assert!(!h.status.borrow().not_ready_reasons().is_empty());
    // retried with back-off: more than one attempt, not a tight loop
    tokio::time::sleep(Duration::from_secs(10)).await;
    let attempts = images.pulls.lock().unwrap().len();
    assert!((2..=6).contains(&attempts), "{attempts} attempts in 10 s");
    // the bug goes away: the next worker starts the pod, readiness comes back
    images.panic.lock().unwrap().clear();
    until(&mut h.status, "running", |s| {
        phase(s, "a").as_deref() == Some("Running")
    })
    .await;
    until(&mut h.status, "healthy again", |s| {
        condition(s, "PodWorkersHealthy").is_none()
    })
    .await;
    assert!(h.status.borrow().not_ready_reasons().is_empty());
    assert_eq!(rt.running().len(), 1);
    stop(h).await;
    std::fs::remove_dir_all(&dir).unwrap();
}
