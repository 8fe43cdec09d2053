//! Native sidecars in the planner: started in order, kept running,
//! restarted, before the main containers.

use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::*;

fn running(started: bool) -> CtrState {
    CtrState::Running {
        since: SystemTime::UNIX_EPOCH,
        ready: started,
        started,
    }
}

fn exited(code: i32) -> Terminated {
    Terminated {
        exit_code: code,
        signal: None,
        reason: String::new(),
        message: String::new(),
        started_at: None,
        finished_at: SystemTime::UNIX_EPOCH,
        container_id: String::new(),
    }
}

#[test]
fn a_sidecar_lets_the_next_init_container_start_once_it_runs() {
    let now = Instant::now();
    let sidecar = [true, false];
    let mut init = vec![CtrState::initial(true), CtrState::initial(true)];
    let main = vec![CtrState::initial(false)];
    assert_eq!(
        plan_pod_with(&init, &sidecar, &main, now),
        [PodAction::Start(CtrRef::init(0))]
    );
    // running but its startup probe has not passed yet: nothing else starts
    init[0] = running(false);
    assert!(plan_pod_with(&init, &sidecar, &main, now).is_empty());
    init[0] = running(true);
    assert_eq!(
        plan_pod_with(&init, &sidecar, &main, now),
        [PodAction::Start(CtrRef::init(1))]
    );
    init[1] = CtrState::Terminated(exited(0));
    assert_eq!(init_phase_with(&init, &sidecar), InitPhase::Done);
    assert_eq!(
        plan_pod_with(&init, &sidecar, &main, now),
        [PodAction::Start(CtrRef::main(0))]
    );
    // without the sidecar flag the running init container would block
    assert_eq!(init_phase(&init), InitPhase::Running);
}

#[test]
fn a_sidecar_is_restarted_after_its_back_off() {
    let now = Instant::now();
    let sidecar = [true];
    let backing = CtrState::BackingOff {
        until: now + Duration::from_secs(10),
        delay: Duration::from_secs(10),
        last_exit: exited(0),
    };
    let init = vec![backing];
    let main = vec![running(true)];
    // still initialized while it waits; nothing to start yet
    assert_eq!(init_phase_with(&init, &sidecar), InitPhase::Done);
    assert!(plan_pod_with(&init, &sidecar, &main, now).is_empty());
    assert_eq!(
        plan_pod_with(&init, &sidecar, &main, now + Duration::from_secs(10)),
        [PodAction::Start(CtrRef::init(0))]
    );
    assert_eq!(next_wake(&init, &main), Some(now + Duration::from_secs(10)));
}

#[test]
fn a_sidecar_exit_restarts_whatever_the_pod_policy() {
    let now = Instant::now();
    let mut b = ResetAfter::kubernetes();
    let exit = Exit {
        exit_code: 0,
        signal: None,
        oom_killed: false,
        started_at: Some(SystemTime::UNIX_EPOCH),
        finished_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1),
        message: String::new(),
        reason: None,
        resumed_wait: None,
    };
    // the worker treats a sidecar as a main container with policy Always
    let out = on_exit(
        &running(true),
        false,
        RestartPolicy::Always,
        exit,
        "id",
        &mut b,
        now,
    );
    assert!(out.restart);
    assert!(matches!(out.state, CtrState::BackingOff { .. }));
}

#[test]
fn main_done_needs_every_main_container_ended() {
    assert!(!main_done::<CtrState>(&[]));
    assert!(!main_done(&[
        CtrState::Terminated(exited(0)),
        running(true)
    ]));
    assert!(main_done(&[
        CtrState::Terminated(exited(0)),
        CtrState::Terminated(exited(1))
    ]));
}
