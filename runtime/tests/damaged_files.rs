//! Privileged: a container whose files are damaged is still found and read
//! from its processes (issue 17). A garbage or truncated `spec.json` keeps a
//! running container listed (from `identity.json`, else from its names), a
//! garbage `state.json` keeps it Running with its init's pid, and a missing
//! or unreadable `status.json` after its supervisor is gone reads as
//! kubelet's `ContainerStatusUnknown`, never as an exit code; every damaged
//! file is reported (and kept in place).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_contract::{ContainerInfo, ContainerState, REASON_STATUS_UNKNOWN, Runtime};
use common::{Harness, require_root};

fn dir_of(h: &Harness, id: &str) -> PathBuf {
    h.cfg.run_dir.join("containers").join(id)
}

fn running_pid(st: &ContainerState) -> i32 {
    match st {
        ContainerState::Running { pid, .. } => *pid as i32,
        s => panic!("not running: {s:?}"),
    }
}

async fn listed(h: &Harness, id: &str) -> Option<ContainerInfo> {
    h.rt()
        .list()
        .await
        .expect("list")
        .into_iter()
        .find(|c| c.id == id)
}

fn reported(path: &Path) -> bool {
    let root = path.parent().unwrap();
    berth_state::take_reports(&[root])
        .iter()
        .any(|p| p.path == path)
}

/// The supervisor has read spec.json (it does once, after it re-executed)
/// and serves its control socket.
async fn supervisor_ready(dir: &Path) {
    let t0 = std::time::Instant::now();
    while dir.join("shim.sock").symlink_metadata().is_err() {
        assert!(t0.elapsed() < Duration::from_secs(10), "no control socket");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn supervisor(dir: &Path) -> i32 {
    std::fs::read_to_string(dir.join("shim.pid"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

// regression (issue 17): a truncated or garbage spec.json made a running
// container invisible (not listed: the reconciler would start a duplicate)
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_spec_keeps_a_running_container_listed() {
    require_root!();
    let mut h = Harness::new("btq4r1");
    let pod = h.pod("spec");
    let sb = h.sandbox(&pod, None).await;
    let mut c = h.container(&sb, "app", &["/bin/sleep", "300"]);
    // the reconciler's naming: <pod uid>-<name>-<restarts>
    c.id = format!("{}-app-0", pod.uid);
    c.labels
        .insert(berth_contract::LABEL_CONTAINER.into(), "app".into());
    c.labels
        .insert(berth_contract::LABEL_RESTARTS.into(), "0".into());
    c.labels
        .insert(berth_contract::LABEL_INIT.into(), "false".into());
    let pid = running_pid(&h.rt().run(&c).await.unwrap().state);
    let dir = dir_of(&h, &c.id);
    supervisor_ready(&dir).await;
    let spec = dir.join("spec.json");
    let good = std::fs::read(&spec).unwrap();
    for (how, bad) in [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("garbage", b"\x00\x7fgarbage{{".to_vec()),
    ] {
        std::fs::write(&spec, &bad).unwrap();
        h.restart();
        let info = listed(&h, &c.id)
            .await
            .unwrap_or_else(|| panic!("{how}: the running container is not listed"));
        assert_eq!(info.pod, pod, "{how}");
        assert_eq!(info.name, "app", "{how}");
        assert_eq!(
            info.labels.get("berth.dev/init").map(String::as_str),
            Some("false")
        );
        assert_eq!(running_pid(&info.state), pid, "{how}");
        // reported once per path, however often it is read
        if how == "truncated" {
            assert!(reported(&spec), "{how}: spec.json not reported");
        }
        // its usage (the cgroup comes from the identity) and probes still work
        assert!(h.rt().usage(&c.id).await.is_ok(), "{how}: usage");
        let ex = h
            .rt()
            .exec(&c.id, &["/bin/true".into()], Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(ex.exit_code, 0, "{how}: exec {ex:?}");
    }
    // identity.json gone too (a container of a berth before it): the names
    std::fs::remove_file(dir.join("identity.json")).expect("no identity.json");
    h.restart();
    let info = listed(&h, &c.id)
        .await
        .expect("identified from its names: not listed");
    assert_eq!(info.pod, pod);
    assert_eq!(info.name, "app");
    assert_eq!(
        info.labels.get("berth.dev/restarts").map(String::as_str),
        Some("0")
    );
    assert_eq!(running_pid(&info.state), pid);
    assert!(
        std::fs::read(&spec).unwrap().starts_with(b"\x00"),
        "spec.json rewritten or moved"
    );
    // it can still be stopped and removed, processes and cgroup included
    h.rt().stop(&c.id, Duration::from_secs(2)).await.unwrap();
    assert!(!alive(pid), "init survived stop");
    h.rt().remove(&c.id).await.unwrap();
    assert!(!dir.exists());
}

// regression (issue 17): a garbage state.json made a running container read
// as Created (its supervisor alive) or Failed (its supervisor gone)
#[tokio::test(flavor = "multi_thread")]
async fn a_garbage_start_record_is_read_from_the_cgroup() {
    require_root!();
    let mut h = Harness::new("btq4r2");
    let pod = h.pod("state");
    let sb = h.sandbox(&pod, None).await;
    let c = h.container(&sb, "app", &["/bin/sh", "-c", "sleep 300 & exec sleep 301"]);
    let pid = running_pid(&h.rt().run(&c).await.unwrap().state);
    let dir = dir_of(&h, &c.id);
    supervisor_ready(&dir).await;
    // its child is up before the record is damaged
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(dir.join("state.json"), b"{\"pid\": garb").unwrap();
    h.restart();
    let info = h.rt().status(&c.id).await.unwrap();
    assert_eq!(running_pid(&info.state), pid, "{:?}", info.state);
    assert!(reported(&dir.join("state.json")), "state.json not reported");
    // the supervisor gone as well: still running (its processes decide),
    // and `wait` then treats it as an orphan (killed, end recorded)
    let sup = supervisor(&dir);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sup),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    while alive(sup) && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let info = h.rt().status(&c.id).await.unwrap();
    assert_eq!(running_pid(&info.state), pid, "{:?}", info.state);
    let st = h.wait(&c.id).await;
    assert!(
        matches!(&st, ContainerState::Failed { reason, .. } if reason == berth_contract::REASON_SUPERVISOR_LOST),
        "{st:?}"
    );
    assert!(!alive(pid), "the orphaned init was not killed");
    assert!(matches!(
        h.rt().status(&c.id).await.unwrap().state,
        ContainerState::Exited { exit_code: 137, .. }
    ));
}

// regression (issue 17): a status.json missing or unreadable after the
// supervisor was gone read as exit code 255
#[tokio::test(flavor = "multi_thread")]
async fn an_unrecorded_end_is_status_unknown() {
    require_root!();
    let mut h = Harness::new("btq4r3");
    let pod = h.pod("status");
    let sb = h.sandbox(&pod, None).await;
    let c = h.container(&sb, "app", &["/bin/sh", "-c", "exit 0"]);
    assert!(matches!(
        h.run_to_end(&c).await,
        ContainerState::Exited { exit_code: 0, .. }
    ));
    let dir = dir_of(&h, &c.id);
    // the supervisor writes status.json, then exits
    let sup = supervisor(&dir);
    let t0 = std::time::Instant::now();
    while alive(sup) && t0.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!alive(sup), "the supervisor did not exit");
    let status = dir.join("status.json");
    let good = std::fs::read(&status).unwrap();
    for (how, bad) in [("removed", None), ("garbage", Some(b"{\"exit_co".to_vec()))] {
        match &bad {
            None => std::fs::remove_file(&status).unwrap(),
            Some(b) => std::fs::write(&status, b).unwrap(),
        }
        h.restart();
        for st in [
            h.rt().status(&c.id).await.unwrap().state,
            listed(&h, &c.id).await.expect("listed").state,
        ] {
            match st {
                ContainerState::Failed { reason, message } => {
                    assert_eq!(reason, REASON_STATUS_UNKNOWN, "{how}");
                    assert!(
                        message.contains("could not be determined"),
                        "{how}: {message}"
                    );
                }
                s => panic!("{how}: {s:?}"),
            }
        }
        // `wait` answers at once (nothing runs), with the same end
        let st = h.wait(&c.id).await;
        assert!(matches!(st, ContainerState::Failed { .. }), "{how}: {st:?}");
        if how == "removed" {
            assert!(reported(&status), "{how}: status.json not reported");
        }
        std::fs::write(&status, &good).unwrap();
        assert!(matches!(
            h.rt().status(&c.id).await.unwrap().state,
            ContainerState::Exited { exit_code: 0, .. }
        ));
    }
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z'))
}
