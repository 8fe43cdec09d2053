//! Table tests of every transition of the pod planner.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::*;
use crate::pod::error::{PodError, Reason};

const T0: SystemTime = SystemTime::UNIX_EPOCH;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn waiting() -> CtrState {
    CtrState::initial(false)
}

fn waiting_until(t: Instant) -> CtrState {
    CtrState::Waiting {
        reason: Reason::ErrImagePull,
        message: "m".into(),
        retry_at: Some(t),
    }
}

fn running() -> CtrState {
    CtrState::Running {
        since: T0,
        ready: true,
        started: true,
    }
}

fn term(code: i32) -> Terminated {
    Terminated {
        exit_code: code,
        signal: None,
        reason: status::exit_reason(code, false).into(),
        message: String::new(),
        started_at: Some(T0),
        finished_at: T0 + secs(1),
        container_id: "c".into(),
    }
}

fn done(code: i32) -> CtrState {
    CtrState::Terminated(term(code))
}

fn backing_off(until: Instant) -> CtrState {
    CtrState::BackingOff {
        until,
        delay: secs(10),
        last_exit: term(1),
    }
}

fn exit(code: i32, ran: u64) -> Exit {
    Exit {
        exit_code: code,
        signal: None,
        oom_killed: false,
        started_at: Some(T0),
        finished_at: T0 + secs(ran),
        message: String::new(),
        reason: None,
        resumed_wait: None,
    }
}

#[test]
fn restart_policies() {
    use RestartPolicy::*;
    // (policy, init, exit code, restarted)
    let table = [
        (Always, false, 0, true),
        (Always, false, 1, true),
        (Always, true, 0, false),
        (Always, true, 1, true),
        (OnFailure, false, 0, false),
        (OnFailure, false, 1, true),
        (OnFailure, true, 0, false),
        (OnFailure, true, 1, true),
        (Never, false, 0, false),
        (Never, false, 1, false),
        (Never, true, 0, false),
        (Never, true, 1, false),
    ];
    for (policy, init, code, want) in table {
        assert_eq!(
            policy.restarts(init, code),
            want,
            "{policy:?} init={init} code={code}"
        );
    }
    assert_eq!(RestartPolicy::from_spec(None), Always);
    assert_eq!(RestartPolicy::from_spec(Some("Always")), Always);
    assert_eq!(RestartPolicy::from_spec(Some("OnFailure")), OnFailure);
    assert_eq!(RestartPolicy::from_spec(Some("Never")), Never);
}

#[test]
fn init_phases() {
    let table: Vec<(Vec<CtrState>, InitPhase)> = vec![
        (vec![], InitPhase::Done),
        (vec![done(0), done(0)], InitPhase::Done),
        (vec![waiting()], InitPhase::Running),
        (vec![done(0), running()], InitPhase::Running),
        (
            vec![done(0), backing_off(Instant::now())],
            InitPhase::Running,
        ),
        (vec![done(0), done(1)], InitPhase::Failed),
        (vec![done(2), waiting()], InitPhase::Failed),
    ];
    for (init, want) in table {
        assert_eq!(init_phase(&init), want, "{init:?}");
    }
}

#[test]
fn plan_starts_init_containers_one_at_a_time_in_order() {
    let now = Instant::now();
    let later = now + secs(5);
    let main = vec![waiting(), waiting()];
    // (init states, expected starts)
    let table: Vec<(Vec<CtrState>, Vec<PodAction>)> = vec![
        (
            vec![waiting(), waiting()],
            vec![PodAction::Start(CtrRef::init(0))],
        ),
        (vec![running(), waiting()], vec![]),
        (vec![CtrState::Starting, waiting()], vec![]),
        (
            vec![done(0), waiting()],
            vec![PodAction::Start(CtrRef::init(1))],
        ),
        // a failed init container waiting out its back-off holds the rest
        (vec![backing_off(later), waiting()], vec![]),
        (
            vec![backing_off(now), waiting()],
            vec![PodAction::Start(CtrRef::init(0))],
        ),
        (vec![waiting_until(later), waiting()], vec![]),
        (
            vec![waiting_until(now), waiting()],
            vec![PodAction::Start(CtrRef::init(0))],
        ),
        // failed for good: nothing starts, main containers neither
        (vec![done(1), waiting()], vec![]),
        // all succeeded: the main containers start, together
        (
            vec![done(0), done(0)],
            vec![
                PodAction::Start(CtrRef::main(0)),
                PodAction::Start(CtrRef::main(1)),
            ],
        ),
    ];
    for (init, want) in table {
        assert_eq!(plan_pod(&init, &main, now), want, "{init:?}");
    }
}

#[test]
fn plan_starts_every_startable_main_container() {
    let now = Instant::now();
    let later = now + secs(5);
    let none: Vec<CtrState> = vec![];
    // (state, started now)
    let table = [
        (waiting(), true),
        (CtrState::Starting, false),
        (running(), false),
        (done(0), false),
        (done(1), false),
        (backing_off(later), false),
        (backing_off(now), true),
        (waiting_until(later), false),
        (waiting_until(now), true),
    ];
    for (state, want) in table {
        let main = vec![running(), state.clone()];
        let got = plan_pod(&none, &main, now);
        let expect = if want {
            vec![PodAction::Start(CtrRef::main(1))]
        } else {
            vec![]
        };
        assert_eq!(got, expect, "{state:?}");
    }
}

#[test]
fn next_wake_is_the_earliest_wait() {
    let now = Instant::now();
    let none: Vec<CtrState> = vec![];
    assert_eq!(next_wake(&none, &[running(), done(0), waiting()]), None);
    assert_eq!(
        next_wake(
            &[backing_off(now + secs(30))],
            &[waiting_until(now + secs(20)), backing_off(now + secs(10))]
        ),
        Some(now + secs(10))
    );
}

#[test]
fn exits_follow_the_restart_policy() {
    use RestartPolicy::*;
    let now = Instant::now();
    // (policy, init, code, restarted, lastState replaced)
    let table = [
        (Always, false, 0, true, true),
        (Always, false, 1, true, true),
        (Always, true, 0, false, false),
        (Always, true, 3, true, true),
        (OnFailure, false, 0, false, false),
        (OnFailure, false, 1, true, true),
        (Never, false, 1, false, false),
        (Never, true, 1, false, false),
    ];
    for (policy, init, code, restart, last) in table {
        let mut b = ResetAfter::kubernetes();
        let out = on_exit(&running(), init, policy, exit(code, 1), "c-0", &mut b, now);
        assert_eq!(out.restart, restart, "{policy:?} init={init} code={code}");
        assert_eq!(
            out.last.is_some(),
            last,
            "{policy:?} init={init} code={code}"
        );
        match out.state {
            CtrState::BackingOff {
                until,
                delay,
                last_exit,
            } => {
                assert!(restart);
                // the first restart is at once
                assert_eq!(delay, Duration::ZERO);
                assert_eq!(until, now);
                assert_eq!(last_exit.exit_code, code);
                assert_eq!(last_exit.container_id, "c-0");
            }
            CtrState::Terminated(t) => {
                assert!(!restart);
                assert_eq!(t.exit_code, code);
                assert_eq!(t.reason, status::exit_reason(code, false));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn crash_loop_backs_off_and_resets_after_a_long_run() {
    let now = Instant::now();
    let mut b = ResetAfter::kubernetes();
    let mut delays = Vec::new();
    for ran in [1, 1, 1, 1, 600, 1] {
        let out = on_exit(
            &running(),
            false,
            RestartPolicy::Always,
            exit(1, ran),
            "c",
            &mut b,
            now,
        );
        let CtrState::BackingOff { until, delay, .. } = out.state else {
            panic!("not backing off")
        };
        assert_eq!(until, now + delay);
        delays.push(delay.as_secs());
    }
    assert_eq!(delays, vec![0, 10, 20, 40, 0, 10]);
}

#[test]
fn exit_without_a_start_time_uses_the_running_since() {
    let now = Instant::now();
    let mut b = ResetAfter::kubernetes();
    b.delay_after_run(Duration::ZERO);
    let current = CtrState::Running {
        since: T0,
        ready: false,
        started: true,
    };
    let mut e = exit(1, 700);
    e.started_at = None;
    let out = on_exit(&current, false, RestartPolicy::Always, e, "c", &mut b, now);
    let CtrState::BackingOff {
        delay, last_exit, ..
    } = out.state
    else {
        panic!("not backing off")
    };
    assert_eq!(last_exit.started_at, Some(T0));
    // ran 700 s: the back-off was reset
    assert_eq!(delay, Duration::ZERO);
}

#[test]
fn backing_off_shows_as_crash_loop_unless_restarting_at_once() {
    let now = Instant::now();
    let at_once = CtrState::BackingOff {
        until: now,
        delay: Duration::ZERO,
        last_exit: term(1),
    };
    assert_eq!(at_once.view(false, "c", "p"), CState::Terminated(term(1)));
    let waiting = CtrState::BackingOff {
        until: now + secs(20),
        delay: secs(20),
        last_exit: term(1),
    };
    assert_eq!(
        waiting.view(false, "app", "web"),
        CState::waiting(
            "CrashLoopBackOff",
            "back-off 20s restarting failed container=app pod=web"
        )
    );
    assert_eq!(
        CtrState::initial(true).view(true, "c", "p"),
        CState::waiting("PodInitializing", "")
    );
    assert_eq!(
        CtrState::Starting.view(false, "c", "p"),
        CState::waiting("ContainerCreating", "")
    );
    assert_eq!(
        running().view(false, "c", "p"),
        CState::Running { started_at: T0 }
    );
}

#[test]
fn exits_from_runtime_states() {
    let now = T0 + secs(9);
    assert_eq!(
        Exit::from_state(
            Some(ContainerState::Running {
                pid: 1,
                started_at: T0
            }),
            now
        ),
        None
    );
    assert_eq!(Exit::from_state(Some(ContainerState::Created), now), None);
    let e = Exit::from_state(
        Some(ContainerState::Exited {
            exit_code: 137,
            signal: Some(9),
            oom_killed: true,
            started_at: Some(T0),
            finished_at: T0 + secs(3),
        }),
        now,
    )
    .unwrap();
    assert_eq!(
        (e.exit_code, e.signal, e.oom_killed, e.finished_at),
        (137, Some(9), true, T0 + secs(3))
    );
    let e = Exit::from_state(
        Some(ContainerState::Failed {
            reason: "RunContainerError".into(),
            message: "no such file".into(),
        }),
        now,
    )
    .unwrap();
    assert_eq!(
        (e.exit_code, e.message.as_str(), e.finished_at),
        (128, "RunContainerError: no such file", now)
    );
    // nothing the runtime could tell: what kubelet reports, not a made-up 255
    let e = Exit::from_state(None, now).unwrap();
    assert_eq!(
        (e.exit_code, e.reason.as_deref()),
        (137, Some("ContainerStatusUnknown"))
    );
}

// regression (issue 17): a container whose end was not recorded (its
// status.json missing or unreadable, the supervisor gone) read as exit 255;
// it is kubelet's ContainerStatusUnknown/137, and a failure: OnFailure and
// Always restart it after a back-off, Never leaves it failed
#[test]
fn an_unrecorded_end_is_a_failure_named_status_unknown() {
    use RestartPolicy::*;
    let now = Instant::now();
    let st = ContainerState::Failed {
        reason: crate::traits::REASON_STATUS_UNKNOWN.into(),
        message: "its status.json cannot be read".into(),
    };
    let e = Exit::from_state(Some(st), T0 + secs(9)).unwrap();
    assert_eq!(e.exit_code, 137);
    assert_eq!(e.reason.as_deref(), Some("ContainerStatusUnknown"));
    assert!(e.message.contains("status.json"), "{}", e.message);
    for (policy, init, restart) in [
        (Always, false, true),
        (OnFailure, false, true),
        (OnFailure, true, true),
        (Never, false, false),
        (Never, true, false),
    ] {
        let mut b = ResetAfter::kubernetes();
        // a first failure restarts at once (kubernetes' schedule): fail once before
        let _ = b.delay_after_run(Duration::ZERO);
        let out = on_exit(&running(), init, policy, e.clone(), "p-c-0", &mut b, now);
        assert_eq!(out.restart, restart, "{policy:?} init={init}");
        let t = match &out.state {
            CtrState::BackingOff {
                delay, last_exit, ..
            } => {
                assert!(!delay.is_zero(), "{policy:?}: no back-off");
                last_exit.clone()
            }
            CtrState::Terminated(t) => t.clone(),
            other => panic!("{policy:?}: {other:?}"),
        };
        assert_eq!(
            (t.exit_code, t.reason.as_str()),
            (137, "ContainerStatusUnknown"),
            "{policy:?}"
        );
        // an init container that ended so failed: the pod does not go on
        assert_eq!(
            init_phase(&[CtrState::Terminated(t)]),
            InitPhase::Failed,
            "{policy:?}"
        );
    }
}

#[test]
fn failed_runs_count_as_failed_attempts() {
    use RestartPolicy::*;
    let now = Instant::now();
    let err = PodError::new(Reason::RunContainerError, "exec: not found", None);
    // (policy, init, restarted)
    for (policy, init, restart) in [
        (Always, false, true),
        (Always, true, true),
        (OnFailure, false, true),
        (Never, false, false),
        (Never, true, false),
    ] {
        let mut b = ResetAfter::kubernetes();
        let out = on_run_failed(init, policy, &err, "p-c-0", &mut b, T0, now);
        assert_eq!(out.restart, restart, "{policy:?} init={init}");
        let t = if restart {
            out.last.clone().expect("lastState")
        } else {
            match &out.state {
                CtrState::Terminated(t) => t.clone(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            (t.exit_code, t.reason.as_str(), t.container_id.as_str()),
            (128, "ContainerCannotRun", "p-c-0")
        );
        if restart {
            // never sooner than a second, then the crash back-off
            assert_eq!(out.state.not_before(), Some(now + secs(1)));
            let again = on_run_failed(init, policy, &err, "p-c-0", &mut b, T0, now);
            assert_eq!(again.state.not_before(), Some(now + secs(10)));
            assert!(matches!(
                out.state,
                CtrState::Waiting {
                    reason: Reason::RunContainerError,
                    ..
                }
            ));
        }
    }
}

#[test]
fn retried_steps_wait_with_their_reason() {
    let now = Instant::now();
    let pull = PodError::new(Reason::ErrImagePull, "registry down", None);
    // (error, delay, had an image before, shown reason)
    let table = [
        (&pull, secs(1), false, Reason::ErrImagePull),
        (&pull, secs(10), false, Reason::ImagePullBackOff),
        (&pull, secs(10), true, Reason::ErrImagePull),
        (
            &PodError::new(Reason::InvalidImageName, "bad", None),
            secs(10),
            false,
            Reason::InvalidImageName,
        ),
        (
            &PodError::new(Reason::CreateContainerConfigError, "no key", None),
            secs(10),
            false,
            Reason::CreateContainerConfigError,
        ),
    ];
    for (err, after, had_image, want) in table {
        let st = on_retry(err, after, had_image, now);
        assert_eq!(
            st,
            CtrState::Waiting {
                reason: want,
                message: err.message.clone(),
                retry_at: Some(now + after)
            }
        );
    }
}

#[test]
fn started_containers_wait_for_their_probes() {
    // (init, startup probe, readiness probe, started, ready)
    let table = [
        (false, false, false, true, true),
        (false, false, true, true, false),
        (false, true, false, false, false),
        (false, true, true, false, false),
        (true, false, false, false, false),
    ];
    for (init, startup, readiness, started, ready) in table {
        let st = on_started(init, T0, startup, readiness);
        assert_eq!(
            st,
            CtrState::Running {
                since: T0,
                started,
                ready
            },
            "init={init} startup={startup} readiness={readiness}"
        );
    }
}

#[test]
fn probe_results() {
    let ctr = CtrRef::main(0);
    let grace = secs(30);
    let fresh = || CtrState::Running {
        since: T0,
        ready: false,
        started: false,
    };
    // startup passes: started, ready only without a readiness probe, other probes start
    for (readiness, ready) in [(false, true), (true, false)] {
        let mut st = fresh();
        let a = on_probe(
            &mut st,
            ctr,
            "app",
            ProbeKind::Startup,
            true,
            "",
            false,
            readiness,
            grace,
        );
        assert_eq!(a, vec![PodAction::StartProbes(ctr)]);
        assert!(st.started());
        assert_eq!(st.ready(), ready);
    }
    // readiness flips ready, a failure is reported
    let mut st = running();
    let a = on_probe(
        &mut st,
        ctr,
        "app",
        ProbeKind::Readiness,
        false,
        "503",
        false,
        true,
        grace,
    );
    assert!(!st.ready());
    assert_eq!(
        a,
        vec![PodAction::Event {
            warning: true,
            reason: "Unhealthy",
            message: "Readiness probe failed: 503".into()
        }]
    );
    let a = on_probe(
        &mut st,
        ctr,
        "app",
        ProbeKind::Readiness,
        true,
        "",
        false,
        true,
        grace,
    );
    assert!(st.ready() && a.is_empty());
    // liveness passing changes nothing
    let before = st.clone();
    assert!(
        on_probe(
            &mut st,
            ctr,
            "app",
            ProbeKind::Liveness,
            true,
            "",
            false,
            true,
            grace
        )
        .is_empty()
    );
    assert_eq!(st, before);
    // liveness or startup failing: stopped with the pod's grace, to be restarted
    for kind in [ProbeKind::Liveness, ProbeKind::Startup] {
        let mut st = running();
        let a = on_probe(
            &mut st, ctr, "app", kind, false, "timeout", false, true, grace,
        );
        assert_eq!(
            a,
            vec![
                PodAction::Event {
                    warning: true,
                    reason: "Unhealthy",
                    message: format!("{} probe failed: timeout", kind.as_str()),
                },
                PodAction::Event {
                    warning: false,
                    reason: "Killing",
                    message: format!(
                        "Container app failed {} probe, will be restarted",
                        kind.as_str().to_lowercase()
                    ),
                },
                PodAction::Stop { ctr, grace },
            ]
        );
    }
    // an attempt that could not run (a refused exec) is only reported as
    // errored (kubelet throws the result away): no state change, no restart
    for kind in [
        ProbeKind::Startup,
        ProbeKind::Liveness,
        ProbeKind::Readiness,
    ] {
        let mut st = running();
        let before = st.clone();
        let a = on_probe(
            &mut st,
            ctr,
            "app",
            kind,
            false,
            "exec refused",
            true,
            true,
            grace,
        );
        assert_eq!(
            a,
            vec![PodAction::Event {
                warning: true,
                reason: "Unhealthy",
                message: format!("{} probe errored: exec refused", kind.as_str()),
            }]
        );
        assert_eq!(st, before);
    }
    // a late result for a container that is no longer running changes nothing
    for mut st in [done(1), backing_off(Instant::now()), waiting()] {
        let before = st.clone();
        for kind in [
            ProbeKind::Startup,
            ProbeKind::Liveness,
            ProbeKind::Readiness,
        ] {
            for ok in [true, false] {
                assert!(on_probe(&mut st, ctr, "app", kind, ok, "", false, true, grace).is_empty());
            }
        }
        assert_eq!(st, before);
    }
}

#[test]
fn termination_stops_everything_with_the_grace() {
    let grace = secs(7);
    let main = vec![running(), done(0), waiting(), running()];
    let names = ["a", "b", "c", "d"];
    assert_eq!(
        plan_termination(&main, &names, grace),
        vec![
            PodAction::Event {
                warning: false,
                reason: "Killing",
                message: "Stopping container a".into()
            },
            PodAction::Event {
                warning: false,
                reason: "Killing",
                message: "Stopping container d".into()
            },
            PodAction::StopAll { grace },
        ]
    );
    let none: Vec<CtrState> = vec![];
    assert_eq!(
        plan_termination(&none, &[], Duration::ZERO),
        vec![PodAction::StopAll {
            grace: Duration::ZERO
        }]
    );
}

#[test]
fn a_resumed_wait_is_waited_out_and_leaves_the_back_off_alone() {
    let now = Instant::now();
    let mut b = ResetAfter::resume_kubernetes(secs(40));
    let mut e = exit(1, 1);
    e.resumed_wait = Some(secs(7));
    let out = on_exit(
        &running(),
        false,
        RestartPolicy::Always,
        e,
        "c-3",
        &mut b,
        now,
    );
    let CtrState::BackingOff { until, delay, .. } = out.state else {
        panic!("not backing off")
    };
    assert_eq!((until, delay), (now + secs(7), secs(7)));
    assert_eq!(b.peek(), secs(40));
    // the next exit takes the next step of the back-off
    let out = on_exit(
        &running(),
        false,
        RestartPolicy::Always,
        exit(1, 1),
        "c-4",
        &mut b,
        now,
    );
    assert!(matches!(out.state, CtrState::BackingOff { delay, .. } if delay == secs(40)));
}
