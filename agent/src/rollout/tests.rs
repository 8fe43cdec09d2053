//! The rollout gate over a fake snapshot: record, watch, roll back, restart.

use std::time::Duration;

use berth_reconciler::Snapshot;
use berth_spec::k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodStatus,
};
use berth_spec::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::sources::SourceStatus;

fn settings() -> Settings {
    Settings {
        soak: Duration::ZERO,
        deadline: Some(Duration::from_secs(60)),
        crash_loop_restarts: 2,
        auto_rollback: true,
    }
}

fn report(rev: &str, cmd: &str) -> SourceReport {
    let yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web}}\nspec: {{containers: [{{name: c, image: 'busybox:1.36', command: [sh, -c, '{cmd}']}}]}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm}}\ndata: {{rev: '{rev}'}}\n"
    );
    let p = berth_spec::parse_str("m.yaml", &yaml);
    assert!(!p.has_errors());
    SourceReport {
        complete: true,
        objects: p.objects,
        status: SourceStatus {
            kind: "git",
            location: "file:///repo".into(),
            revision: Some(rev.into()),
            complete: true,
            ..Default::default()
        },
    }
}

/// The snapshot the reconciler would publish with `objs`' pod running.
fn snapshot(objs: &[Sourced], ready: bool, restarts: i32) -> (Snapshot, DesiredState) {
    let mut desired = DesiredState {
        complete: true,
        ..Default::default()
    };
    let mut pods = Vec::new();
    for s in objs {
        desired.objects.insert(s.object.key(), s.clone());
        if let Object::Pod(p) = &s.object {
            let mut spec = p.spec.clone().unwrap();
            spec.node_name = Some("node".into());
            pods.push(Pod {
                metadata: ObjectMeta {
                    name: p.metadata.name.clone(),
                    namespace: Some("default".into()),
                    ..Default::default()
                },
                spec: Some(spec),
                status: Some(PodStatus {
                    phase: Some("Running".into()),
                    conditions: Some(vec![PodCondition {
                        type_: "Ready".into(),
                        status: if ready { "True" } else { "False" }.into(),
                        ..Default::default()
                    }]),
                    container_statuses: Some(vec![ContainerStatus {
                        name: "c".into(),
                        ready,
                        restart_count: restarts,
                        state: (!ready).then(|| ContainerState {
                            waiting: Some(ContainerStateWaiting {
                                reason: Some("CrashLoopBackOff".into()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            });
        }
    }
    (
        Snapshot {
            pods,
            ready: true,
            ..Default::default()
        },
        desired,
    )
}

fn cmd_of(r: &SourceReport) -> String {
    r.objects
        .iter()
        .find_map(|s| match &s.object {
            Object::Pod(p) => Some(
                p.spec.as_ref().unwrap().containers[0]
                    .command
                    .clone()
                    .unwrap()[2]
                    .clone(),
            ),
            _ => None,
        })
        .unwrap()
}

#[test]
fn a_crashing_revision_is_replaced_by_the_recorded_healthy_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Rollouts::new(tmp.path(), settings());
    let good = r.admit(0, report("c1", "sleep 1000"));
    let (snap, desired) = snapshot(&good.objects, true, 0);
    assert_eq!(r.tick(&snap, &desired, SystemTime::now()), [0]);
    let st = r.effective(0).unwrap().status.rollout.unwrap();
    assert_eq!(st.state, "healthy");
    assert_eq!(st.last_healthy_revision.as_deref(), Some("c1"));
    assert!(r.keep_images().contains("busybox:1.36"));

    let bad = r.admit(0, report("c2", "exit 1"));
    assert_eq!(cmd_of(&bad), "exit 1");
    // the old pod still shows in the snapshot: it is not c2's, so c2 waits
    let (_, desired_bad) = snapshot(&bad.objects, false, 0);
    assert!(r.tick(&snap, &desired_bad, SystemTime::now()).is_empty());
    let (snap2, desired2) = snapshot(&bad.objects, false, 2);
    assert_eq!(r.tick(&snap2, &desired2, SystemTime::now()), [0]);
    let served = r.effective(0).unwrap();
    assert_eq!(cmd_of(&served), "sleep 1000", "c1's objects run again");
    assert!(r.rollback_images().contains("busybox:1.36"), "never pulled");
    assert_eq!(served.status.revision.as_deref(), Some("c2"));
    let st = served.status.rollout.unwrap();
    assert_eq!(st.state, "rolling-back");
    assert_eq!(st.applied_revision.as_deref(), Some("c2"));
    assert_eq!(st.running_revision.as_deref(), Some("c1"));
    let failed = &st.history[st.history.len() - 2];
    assert_eq!(failed.result, "rolled-back");
    assert_eq!(failed.reason.as_ref().unwrap().reason, "CrashLoopBackOff");
    let reasons: Vec<String> = r.events().iter().map(|e| e.reason.clone()).collect();
    assert_eq!(
        reasons,
        [
            "RolloutStarted",
            "RolloutHealthy",
            "RolloutStarted",
            "RolloutFailed",
            "RolledBack",
            "RolloutStarted"
        ]
    );

    // c1's pod comes back: the rollback is healthy
    assert_eq!(r.tick(&snap, &desired, SystemTime::now()), [0]);
    assert_eq!(
        r.effective(0).unwrap().status.rollout.unwrap().state,
        "rolled-back"
    );
    assert_eq!(r.totals().get("rolled-back"), Some(&1));

    // the source publishes c2 again (a poll): still c1's objects
    assert_eq!(cmd_of(&r.admit(0, report("c2", "exit 1"))), "sleep 1000");

    // an agent restart (a new gate over the same state dir) keeps the decision
    let again = Rollouts::new(tmp.path(), settings());
    let served = again.admit(0, report("c2", "exit 1"));
    assert_eq!(cmd_of(&served), "sleep 1000");
    assert_eq!(served.status.rollout.unwrap().state, "rolled-back");

    // c3 fixes it
    let fixed = again.admit(0, report("c3", "sleep 2000"));
    assert_eq!(cmd_of(&fixed), "sleep 2000");
    let (snap3, desired3) = snapshot(&fixed.objects, true, 0);
    assert_eq!(again.tick(&snap3, &desired3, SystemTime::now()), [0]);
    let st = again.effective(0).unwrap().status.rollout.unwrap();
    assert_eq!(st.state, "healthy");
    assert!(again.rollback_images().is_empty());
    assert_eq!(st.last_healthy_revision.as_deref(), Some("c3"));
}

#[test]
fn only_a_changed_config_map_is_healthy_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let r = Rollouts::new(tmp.path(), settings());
    let first = r.admit(0, report("c1", "sleep 1000"));
    let (snap, desired) = snapshot(&first.objects, true, 0);
    r.tick(&snap, &desired, SystemTime::now());
    // same pod, another ConfigMap value: nothing to watch
    let st = r
        .admit(0, report("c2", "sleep 1000"))
        .status
        .rollout
        .unwrap();
    assert_eq!(st.state, "healthy");
    assert_eq!(st.last_healthy_revision.as_deref(), Some("c2"));
}

#[test]
fn a_rollback_keeps_volumes_only_the_failed_revision_names() {
    let parse = |y: &str| berth_spec::parse_str("m.yaml", y).objects;
    let healthy = parse("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\n");
    let failed = parse(
        "apiVersion: berth.dev/v1alpha1\nkind: Volume\nmetadata: {name: data}\nspec: {reclaimPolicy: Delete}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: other}\n",
    );
    let served = with_volumes_of(&healthy, &failed);
    let keys: Vec<String> = served.iter().map(|s| s.object.key().to_string()).collect();
    assert_eq!(keys, ["ConfigMap/default/cm", "Volume/default/data"]);
}
