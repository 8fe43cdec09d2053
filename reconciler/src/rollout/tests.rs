//! Every transition of the rollout tracker and every rule of the decision.

use std::time::{Duration, SystemTime};

use super::*;

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

fn settings() -> Settings {
    Settings {
        soak: Duration::from_secs(30),
        deadline: None,
        crash_loop_restarts: 3,
        auto_rollback: true,
    }
}

fn pod_ref(name: &str) -> WorkloadRef {
    WorkloadRef::Pod {
        namespace: "default".into(),
        name: name.into(),
        spec_hash: format!("h-{name}"),
    }
}

fn changed(names: &[&str]) -> Changed {
    Changed {
        workloads: names.iter().map(|n| pod_ref(n)).collect(),
        progress_deadline: None,
        auto_rollback: true,
    }
}

fn ctr(ready: bool, restarts: u32) -> ContainerObs {
    ContainerObs {
        name: "app".into(),
        ready,
        restarts,
        waiting_reason: None,
        exit_code: None,
    }
}

fn pod(name: &str, ready: bool, restarts: u32) -> PodObs {
    PodObs {
        name: name.into(),
        ready,
        phase: Some(if ready { "Running" } else { "Pending" }.into()),
        containers: vec![ctr(ready, restarts)],
        liveness_failed: false,
    }
}

fn ready(name: &str) -> WorkloadObs {
    WorkloadObs::Pods(vec![pod(name, true, 0)])
}

/// A tracker whose revision `a` is healthy and `b` is being watched.
fn watching_b() -> Tracker {
    let s = settings();
    let (tr, _) = Tracker::default().on_revision("a", changed(&["web"]), t(0), &s);
    let (tr, _) = tr.observe(&[ready("web")], t(1), &s);
    let (tr, _) = tr.observe(&[ready("web")], t(31), &s);
    assert_eq!(tr.last_healthy.as_deref(), Some("a"));
    let (tr, fx) = tr.on_revision("b", changed(&["web"]), t(100), &s);
    assert_eq!(
        fx,
        vec![Effect::Started {
            revision: "b".into(),
            rollback: false
        }]
    );
    tr
}

#[test]
fn healthy_after_ready_for_the_soak_time() {
    let s = settings();
    let (tr, fx) = Tracker::default().on_revision("a", changed(&["web"]), t(0), &s);
    assert_eq!(fx.len(), 1);
    assert_eq!(tr.history.back().unwrap().result, Outcome::InProgress);
    let (tr, fx) = tr.observe(&[WorkloadObs::Pods(vec![])], t(5), &s);
    assert!(fx.is_empty());
    let (tr, fx) = tr.observe(&[ready("web")], t(10), &s);
    assert!(fx.is_empty(), "soak starts");
    let (tr, fx) = tr.observe(&[ready("web")], t(39), &s);
    assert!(fx.is_empty(), "29 s of soak is not enough");
    let (tr, fx) = tr.observe(&[ready("web")], t(40), &s);
    assert_eq!(
        fx,
        vec![Effect::Healthy {
            revision: "a".into(),
            rollback: false
        }]
    );
    assert_eq!(tr.last_healthy.as_deref(), Some("a"));
    assert!(tr.watch.is_none());
    assert_eq!(tr.history.back().unwrap().result, Outcome::Healthy);
}

#[test]
fn a_restart_or_unready_moment_restarts_the_soak() {
    let s = settings();
    let (tr, _) = Tracker::default().on_revision("a", changed(&["web"]), t(0), &s);
    let (tr, _) = tr.observe(&[ready("web")], t(0), &s);
    let restarted = WorkloadObs::Pods(vec![pod("web", true, 1)]);
    let (tr, fx) = tr.observe(std::slice::from_ref(&restarted), t(20), &s);
    assert!(fx.is_empty());
    let (tr, fx) = tr.observe(std::slice::from_ref(&restarted), t(40), &s);
    assert!(fx.is_empty(), "soak restarted at 20 s");
    let (tr, _) = tr.observe(&[WorkloadObs::Pods(vec![pod("web", false, 1)])], t(45), &s);
    let (tr, fx) = tr.observe(std::slice::from_ref(&restarted), t(50), &s);
    assert!(fx.is_empty(), "soak restarted after not ready");
    let (_, fx) = tr.observe(&[restarted], t(80), &s);
    assert!(matches!(fx[0], Effect::Healthy { .. }));
}

#[test]
fn nothing_changed_is_healthy_at_once_and_same_revision_is_a_no_op() {
    let s = settings();
    let (tr, fx) = Tracker::default().on_revision("a", changed(&[]), t(0), &s);
    assert_eq!(
        fx,
        vec![Effect::Healthy {
            revision: "a".into(),
            rollback: false
        }]
    );
    let before = tr.clone();
    let (tr, fx) = tr.on_revision("a", changed(&["web"]), t(5), &s);
    assert!(fx.is_empty());
    assert_eq!(tr, before);
}

#[test]
fn crash_loop_fails_and_rolls_back_to_the_last_healthy() {
    let s = settings();
    let tr = watching_b();
    let mut crashing = pod("web", false, 2);
    crashing.containers[0].waiting_reason = Some("CrashLoopBackOff".into());
    crashing.containers[0].exit_code = Some(1);
    let (tr, fx) = tr.observe(&[WorkloadObs::Pods(vec![crashing.clone()])], t(110), &s);
    assert!(fx.is_empty(), "2 restarts are below the threshold of 3");
    crashing.containers[0].restarts = 3;
    let (tr, fx) = tr.observe(&[WorkloadObs::Pods(vec![crashing])], t(130), &s);
    let Effect::Failed { revision, failure } = &fx[0] else {
        panic!("{fx:?}")
    };
    assert_eq!(revision, "b");
    assert_eq!(failure.reason, "CrashLoopBackOff");
    assert_eq!(failure.object, "Pod/default/web");
    assert_eq!(failure.container.as_deref(), Some("app"));
    assert_eq!(failure.exit_code, Some(1));
    assert_eq!(
        fx[1],
        Effect::RollBack {
            to: "a".into(),
            failed: "b".into()
        }
    );
    assert_eq!(tr.failed, ["b"]);
    assert_eq!(tr.history.back().unwrap().result, Outcome::RolledBack);
    // the agent re-applied a's objects: that is a rollout of its own
    let (tr, fx) = tr
        .begin_rollback("a", "b", changed(&["web"]), t(131), &s)
        .unwrap();
    assert_eq!(
        fx,
        vec![Effect::Started {
            revision: "a".into(),
            rollback: true
        }]
    );
    assert_eq!(tr.running.as_deref(), Some("a"));
    assert_eq!(tr.applied.as_deref(), Some("b"));
    assert_eq!(tr.serve(), Serve::Recorded("a".into()));
    let (tr, _) = tr.observe(&[ready("web")], t(132), &s);
    let (tr, fx) = tr.observe(&[ready("web")], t(162), &s);
    assert_eq!(
        fx,
        vec![Effect::Healthy {
            revision: "a".into(),
            rollback: true
        }]
    );
    let last = tr.history.back().unwrap();
    assert!(last.rollback);
    assert_eq!(last.result, Outcome::Healthy);
}

#[test]
fn a_failed_revision_is_not_applied_again_until_a_newer_one() {
    let s = settings();
    let tr = watching_b();
    let (tr, _) = tr.observe(&[WorkloadObs::Pods(vec![pod("web", false, 5)])], t(110), &s);
    let (tr, _) = tr
        .begin_rollback("a", "b", changed(&["web"]), t(111), &s)
        .unwrap();
    // the source publishes b again (a resync, an agent restart): nothing to do
    let (tr, fx) = tr.on_revision("b", changed(&["web"]), t(120), &s);
    assert!(fx.is_empty());
    assert_eq!(tr.serve(), Serve::Recorded("a".into()));
    // c fixes it: a new rollout of c, the rollback watch is superseded
    let (tr, fx) = tr.on_revision("c", changed(&["web"]), t(130), &s);
    assert!(matches!(&fx[0], Effect::Started { revision, rollback: false } if revision == "c"));
    assert_eq!(tr.serve(), Serve::Source);
    let n = tr.history.len();
    assert_eq!(tr.history[n - 2].result, Outcome::Superseded);
    assert!(tr.history[n - 2].rollback);
    // going back to b after c (a revert of the revert) is still refused
    let (tr, _) = tr.observe(&[ready("web")], t(131), &s);
    let (tr, _) = tr.observe(&[ready("web")], t(161), &s);
    let (tr, fx) = tr.on_revision("b", changed(&["web"]), t(200), &s);
    assert!(fx.is_empty());
    assert_eq!(tr.serve(), Serve::Recorded("c".into()));
}

#[test]
fn deadline_from_flag_else_progress_deadline_else_default() {
    let s = settings();
    let (tr, _) = Tracker::default().on_revision("a", changed(&["web"]), t(0), &s);
    assert_eq!(tr.watch.as_ref().unwrap().deadline_at, t(120));
    let mut c = changed(&["web"]);
    c.progress_deadline = Some(Duration::from_secs(600));
    let (tr, _) = Tracker::default().on_revision("a", c.clone(), t(0), &s);
    assert_eq!(tr.watch.as_ref().unwrap().deadline_at, t(600));
    let flag = Settings {
        deadline: Some(Duration::from_secs(20)),
        ..settings()
    };
    let (tr, _) = Tracker::default().on_revision("a", c, t(0), &flag);
    assert_eq!(tr.watch.as_ref().unwrap().deadline_at, t(20));
}

#[test]
fn readiness_that_never_passes_fails_at_the_deadline() {
    let s = settings();
    let tr = watching_b();
    let unready = WorkloadObs::Pods(vec![pod("web", false, 0)]);
    let (tr, fx) = tr.observe(std::slice::from_ref(&unready), t(219), &s);
    assert!(fx.is_empty());
    let (tr, fx) = tr.observe(&[unready], t(220), &s);
    let Effect::Failed { failure, .. } = &fx[0] else {
        panic!("{fx:?}")
    };
    assert_eq!(failure.reason, "ProgressDeadlineExceeded");
    assert_eq!(failure.pod.as_deref(), Some("web"));
    assert_eq!(failure.container.as_deref(), Some("app"));
    assert!(matches!(fx[1], Effect::RollBack { .. }));
    assert_eq!(tr.failed, ["b"]);
}

#[test]
fn image_failures_fail_when_they_last_but_a_first_pull_error_waits() {
    let s = settings();
    for (reason, fails) in [
        ("ErrImagePull", false),
        ("ImagePullBackOff", true),
        ("ErrImageNeverPull", true),
        ("ContainerCreating", false),
    ] {
        let mut p = pod("web", false, 0);
        p.containers[0].waiting_reason = Some(reason.into());
        let obs = [WorkloadObs::Pods(vec![p])];
        let (tr, fx) = watching_b().observe(&obs, t(101), &s);
        assert!(
            fx.is_empty(),
            "{reason}: not at once (an import may be under way)"
        );
        let (tr, fx) = tr.observe(&obs, t(115), &s);
        assert!(fx.is_empty(), "{reason}: 14 s");
        let (_, fx) = tr.observe(&obs, t(116), &s);
        assert_eq!(!fx.is_empty(), fails, "{reason}");
        if fails {
            assert!(matches!(&fx[0], Effect::Failed { failure, .. } if failure.reason == reason));
        }
    }
}

#[test]
fn an_image_failure_that_ends_restarts_the_grace() {
    let s = settings();
    let mut p = pod("web", false, 0);
    p.containers[0].waiting_reason = Some("ImagePullBackOff".into());
    let failing = [WorkloadObs::Pods(vec![p])];
    let (tr, _) = watching_b().observe(&failing, t(101), &s);
    let (tr, _) = tr.observe(&[WorkloadObs::Pods(vec![pod("web", false, 0)])], t(110), &s);
    let (tr, fx) = tr.observe(&failing, t(120), &s);
    assert!(fx.is_empty(), "{fx:?}");
    let (_, fx) = tr.observe(&failing, t(135), &s);
    assert_eq!(fx.len(), 2, "failed and rolled back: {fx:?}");
}

#[test]
fn liveness_failure_and_failed_pod_fail() {
    let s = settings();
    let mut p = pod("web", true, 0);
    p.liveness_failed = true;
    let (_, fx) = watching_b().observe(&[WorkloadObs::Pods(vec![p])], t(101), &s);
    assert!(matches!(&fx[0], Effect::Failed { failure, .. } if failure.reason == "Unhealthy"));
    let mut p = pod("web", false, 0);
    p.phase = Some("Failed".into());
    p.containers[0].exit_code = Some(2);
    let (_, fx) = watching_b().observe(&[WorkloadObs::Pods(vec![p])], t(101), &s);
    assert!(
        matches!(&fx[0], Effect::Failed { failure, .. } if failure.reason == "PodFailed" && failure.exit_code == Some(2))
    );
}

#[test]
fn completed_pods_count_as_healthy_and_not_here_is_not_watched() {
    let s = Settings {
        soak: Duration::ZERO,
        ..settings()
    };
    let mut done = pod("job", false, 0);
    done.phase = Some("Succeeded".into());
    let (tr, _) = Tracker::default().on_revision("a", changed(&["job", "other"]), t(0), &s);
    let (tr, fx) = tr.observe(
        &[WorkloadObs::Pods(vec![done]), WorkloadObs::NotHere],
        t(1),
        &s,
    );
    assert!(matches!(fx[0], Effect::Healthy { .. }));
    assert_eq!(tr.last_healthy.as_deref(), Some("a"));
}

#[test]
fn deployment_needs_all_replicas_ready() {
    let wl = WorkloadRef::Deployment {
        namespace: "default".into(),
        name: "web".into(),
        template_hash: "x".into(),
        replicas: 2,
    };
    let one = WorkloadObs::Pods(vec![pod("web-x-1", true, 0)]);
    assert!(matches!(
        evaluate(&wl, &one, 3),
        Verdict::Progressing { .. }
    ));
    let two = WorkloadObs::Pods(vec![pod("web-x-1", true, 0), pod("web-x-2", true, 1)]);
    assert_eq!(evaluate(&wl, &two, 3), Verdict::Ready { restarts: 1 });
}

#[test]
fn auto_rollback_off_by_flag_or_annotation_only_reports() {
    let off = Settings {
        auto_rollback: false,
        ..settings()
    };
    let crashing = WorkloadObs::Pods(vec![pod("web", false, 3)]);
    let (tr, fx) = watching_b().observe(std::slice::from_ref(&crashing), t(101), &off);
    assert_eq!(fx.len(), 1, "failed, no rollback: {fx:?}");
    assert_eq!(tr.history.back().unwrap().result, Outcome::Failed);
    assert_eq!(tr.running.as_deref(), Some("b"));
    assert_eq!(tr.serve(), Serve::Source);

    let s = settings();
    let tr = watching_b();
    let mut c = changed(&["web"]);
    c.auto_rollback = false;
    let (tr, _) = tr.on_revision("c", c, t(150), &s);
    let (tr, fx) = tr.observe(&[crashing], t(151), &s);
    assert_eq!(fx.len(), 1, "{fx:?}");
    assert_eq!(tr.failed, ["c"]);
    assert_eq!(tr.serve(), Serve::Source);
}

#[test]
fn the_first_revision_failing_has_nothing_to_roll_back_to() {
    let s = settings();
    let (tr, _) = Tracker::default().on_revision("a", changed(&["web"]), t(0), &s);
    let (tr, fx) = tr.observe(&[WorkloadObs::Pods(vec![pod("web", false, 3)])], t(5), &s);
    assert_eq!(fx.len(), 1);
    assert_eq!(tr.history.back().unwrap().result, Outcome::Failed);
    assert_eq!(tr.failed, ["a"]);
}

#[test]
fn a_failed_rollback_is_reported_and_not_rolled_back_again() {
    let s = settings();
    let tr = watching_b();
    let crashing = WorkloadObs::Pods(vec![pod("web", false, 3)]);
    let (tr, _) = tr.observe(std::slice::from_ref(&crashing), t(101), &s);
    let (tr, _) = tr
        .begin_rollback("a", "b", changed(&["web"]), t(102), &s)
        .unwrap();
    let (tr, fx) = tr.observe(&[crashing], t(103), &s);
    assert_eq!(fx.len(), 1, "{fx:?}");
    assert_eq!(
        tr.failed,
        ["b"],
        "the last healthy revision is not marked failed"
    );
    assert_eq!(tr.history.back().unwrap().result, Outcome::Failed);
}

#[test]
fn rollback_to_anything_but_the_last_healthy_is_an_error() {
    let s = settings();
    let err = watching_b()
        .begin_rollback("zzz", "b", changed(&["web"]), t(101), &s)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot roll back to zzz: it is not the last healthy revision"
    );
}

#[test]
fn an_agent_restart_resumes_the_watch_and_soaks_again() {
    let s = settings();
    let tr = watching_b();
    let (tr, _) = tr.observe(&[ready("web")], t(101), &s);
    // persist and load, as the agent does across a restart (kill -9)
    let json = serde_json::to_string(&tr).unwrap();
    let loaded: Tracker = serde_json::from_str(&json).unwrap();
    assert_eq!(loaded.watch.as_ref().unwrap().soak, Soak::default());
    // 29 s of soak before the restart do not count
    let (tr, fx) = loaded.observe(&[ready("web")], t(131), &s);
    assert!(fx.is_empty(), "{fx:?}");
    let (_, fx) = tr.observe(&[ready("web")], t(161), &s);
    assert!(matches!(fx[0], Effect::Healthy { .. }));
}

#[test]
fn history_and_failed_lists_are_bounded() {
    let s = settings();
    let mut tr = Tracker::default();
    for i in 0..(HISTORY_LIMIT + 5) {
        tr = tr
            .on_revision(&format!("r{i}"), changed(&[]), t(i as u64), &s)
            .0;
    }
    assert_eq!(tr.history.len(), HISTORY_LIMIT);
    let mut tr = Tracker::default();
    for i in 0..(FAILED_LIMIT + 5) {
        tr = tr
            .on_revision(&format!("r{i}"), changed(&["web"]), t(i as u64), &s)
            .0;
        tr = tr
            .observe(
                &[WorkloadObs::Pods(vec![pod("web", false, 9)])],
                t(i as u64),
                &s,
            )
            .0;
    }
    assert_eq!(tr.failed.len(), FAILED_LIMIT);
}
