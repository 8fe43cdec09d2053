//! Privileged: the supervisor is accountable (it lives in its pod's cgroup,
//! and its death is noticed: the orphaned container is killed and its end
//! recorded), logs are bounded per container, and what the runtime writes
//! is root-only.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_contract::{ContainerState, Resources, Runtime};
use berth_runtime::orphan::SUPERVISOR_LOST;
use common::{Harness, require_root};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn shim_pid(dir: &Path) -> i32 {
    std::fs::read_to_string(dir.join("shim.pid"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z'))
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_supervisor_is_noticed_and_its_container_replaced() {
    require_root!();
    let h = Harness::new("btrt30");
    let pod = h.pod("lost");
    let limits = Resources {
        cpu_limit_millis: Some(500),
        memory_limit_bytes: Some(256 << 20),
        ..Default::default()
    };
    let sb = h.sandbox_with(&pod, None, limits).await;
    let c = h.container(&sb, "app", &["/bin/sh", "-c", "echo up; sleep 300"]);
    let init = match h.rt().run(&c).await.unwrap().state {
        ContainerState::Running { pid, .. } => pid as i32,
        s => panic!("{s:?}"),
    };
    let dir = h.cfg.run_dir.join("containers").join(&c.id);
    let sup = shim_pid(&dir);
    // the supervisor runs in the pod's cgroup, in the leaf beside the containers
    let want = format!("/{}/{}/supervisor", h.instance, pod.key());
    // (it joins one hierarchy after the other, a moment after it starts)
    let missing = |cgroups: &str| -> Vec<&'static str> {
        ["memory", "cpu", "pids"]
            .into_iter()
            .filter(|ctl| {
                let v1 = Path::new("/sys/fs/cgroup").join(ctl).is_dir();
                !cgroups.lines().any(|l| {
                    let mut it = l.splitn(3, ':');
                    let (_, ctls, path) =
                        (it.next(), it.next().unwrap_or(""), it.next().unwrap_or(""));
                    path == want && (!v1 || ctls.split(',').any(|c| c == *ctl))
                })
            })
            .collect()
    };
    let t0 = Instant::now();
    let cgroups = loop {
        let text = std::fs::read_to_string(format!("/proc/{sup}/cgroup")).unwrap();
        if missing(&text).is_empty() || t0.elapsed() > Duration::from_secs(5) {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        missing(&cgroups),
        Vec::<&str>::new(),
        "supervisor not in {want}:\n{cgroups}"
    );
    // root-only files and dirs
    while !dir.join("shim.sock").exists() && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let info = h.rt().status(&c.id).await.unwrap();
    for d in [
        h.cfg.run_dir.join("containers"),
        dir.clone(),
        dir.join("bundle"),
        h.cfg.run_dir.join("youki"),
        h.cfg.run_dir.join("pods"),
        h.cfg.run_dir.join("pods").join(pod.key()),
        h.cfg.log_dir.clone(),
        h.cfg.log_dir.join(pod.key()),
        info.log_path.parent().unwrap().to_path_buf(),
        h.cfg.state_dir.join("containers").join(&c.id),
    ] {
        assert_eq!(mode(&d), 0o700, "{}", d.display());
    }
    for f in [
        "spec.json",
        "state.json",
        "shim.pid",
        "shim.log",
        "shim.sock",
        "bundle/config.json",
    ] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    assert_eq!(mode(&info.log_path), 0o600);
    // what containers read as /etc/hosts etc. stays readable inside them
    let pod_dir = h.cfg.run_dir.join("pods").join(pod.key());
    for f in ["hosts", "hostname", "resolv.conf"] {
        assert_eq!(mode(&pod_dir.join(f)), 0o644, "{f}");
    }

    // kill the supervisor: the waiting agent learns it at once
    let waiter = {
        let rt_dir = h.cfg.clone();
        let id = c.id.clone();
        tokio::spawn(async move {
            let rt = berth_runtime::ShimRuntime::new(rt_dir).unwrap();
            rt.wait(&id).await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(sup),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let t0 = Instant::now();
    let st = tokio::time::timeout(Duration::from_secs(15), waiter)
        .await
        .expect("wait did not notice the dead supervisor within 15s")
        .unwrap()
        .unwrap();
    match &st {
        ContainerState::Failed { reason, message } => {
            assert_eq!(reason, SUPERVISOR_LOST, "{message}");
            assert!(message.contains(&init.to_string()), "{message}");
        }
        s => panic!("{s:?}"),
    }
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    // no orphan keeps running; the container's cgroup is gone
    let t0 = Instant::now();
    while alive(init) && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        !alive(init),
        "the orphaned container init {init} still runs"
    );
    assert!(
        !h.cgroup_dir("memory", &format!("{}/{}", pod.key(), c.id))
            .exists()
    );
    // its end is recorded: killed by the agent
    match h.rt().status(&c.id).await.unwrap().state {
        ContainerState::Exited {
            exit_code: 137,
            signal: Some(9),
            started_at: Some(_),
            ..
        } => {}
        s => panic!("{s:?}"),
    }
    assert_eq!(h.log_lines(&c.id, "stdout").await, vec!["up"]);
    // a replacement starts as usual
    h.rt().remove(&c.id).await.unwrap();
    let mut next = h.container(&sb, "app", &["/bin/sh", "-c", "echo again; sleep 300"]);
    next.id = format!("{}_app_1", sb.pod.key());
    next.labels.insert("berth.dev/restarts".into(), "1".into());
    let st = h.rt().run(&next).await.unwrap().state;
    assert!(matches!(st, ContainerState::Running { .. }), "{st:?}");
    h.rt().stop(&next.id, Duration::ZERO).await.unwrap();
    assert!(matches!(
        h.wait(&next.id).await,
        ContainerState::Exited { .. }
    ));
    h.rt().remove(&next.id).await.unwrap();
    h.rt().remove_sandbox(&pod).await.unwrap();
    assert!(
        !h.cgroup_dir("memory", &pod.key()).exists(),
        "pod cgroup (with its supervisor leaf) left behind"
    );
}

/// A supervisor that died after its container had already ended unobserved:
/// no end is made up (`status` reports kubelet's ContainerStatusUnknown,
/// not an exit code), nothing is killed by mistake.
#[tokio::test(flavor = "multi_thread")]
async fn supervisor_lost_after_its_container_ended() {
    require_root!();
    let h = Harness::new("btrt31");
    let pod = h.pod("late");
    let sb = h.sandbox(&pod, None).await;
    let c = h.container(&sb, "app", &["/bin/sleep", "300"]);
    let init = match h.rt().run(&c).await.unwrap().state {
        ContainerState::Running { pid, .. } => pid as i32,
        s => panic!("{s:?}"),
    };
    let dir = h.cfg.run_dir.join("containers").join(&c.id);
    let sup = shim_pid(&dir);
    // stop the supervisor, end the container, then kill the supervisor: it
    // never sees the end
    let pid = |p: i32| nix::unistd::Pid::from_raw(p);
    use nix::sys::signal::{Signal, kill};
    kill(pid(sup), Signal::SIGSTOP).unwrap();
    kill(pid(init), Signal::SIGKILL).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    kill(pid(sup), Signal::SIGKILL).unwrap();
    let st = tokio::time::timeout(Duration::from_secs(15), h.rt().wait(&c.id))
        .await
        .expect("wait")
        .unwrap();
    assert!(
        matches!(&st, ContainerState::Failed { reason, .. } if reason == SUPERVISOR_LOST),
        "{st:?}"
    );
    match h.rt().status(&c.id).await.unwrap().state {
        ContainerState::Failed { reason, .. }
            if reason == berth_contract::REASON_STATUS_UNKNOWN => {}
        s => panic!("{s:?}"),
    }
}

/// A crash-looping container restarted several times keeps the logs of two
/// runs at most, within the per-container cap; removing the pod removes them.
#[tokio::test(flavor = "multi_thread")]
async fn crash_loop_keeps_two_runs_of_logs_and_pod_removal_drops_them() {
    require_root!();
    let h = Harness::with("btrt32", |c| {
        c.log_max_bytes = 8 * 1024;
        c.log_max_files = 2;
    });
    let pod = h.pod("crashy");
    let sb = h.sandbox(&pod, None).await;
    // each run: a marker, then ~40 KB of output, then a crash
    let script = "echo run $RUN; i=0; while [ $i -lt 400 ]; do \
                  echo \"$RUN xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx $i\"; \
                  i=$((i+1)); done; exit 1";
    let mut log_dir = None;
    for n in 0..5u32 {
        let mut c = h.container(&sb, "crashy", &["/bin/sh", "-c", script]);
        c.id = format!("{}_crashy_{n}", sb.pod.key());
        c.labels.insert("berth.dev/restarts".into(), n.to_string());
        c.env.push(format!("RUN={n}"));
        match h.run_to_end(&c).await {
            ContainerState::Exited { exit_code: 1, .. } => {}
            s => panic!("run {n}: {s:?}"),
        }
        let info = h.rt().status(&c.id).await.unwrap();
        assert!(info.log_path.ends_with(format!("crashy/{n}.log")));
        log_dir = info.log_path.parent().map(Path::to_path_buf);
        // as the pod worker does before the next attempt
        h.rt().remove(&c.id).await.unwrap();
    }
    let log_dir = log_dir.unwrap();
    let mut runs: BTreeMap<String, u64> = BTreeMap::new();
    let mut total = 0;
    for e in std::fs::read_dir(&log_dir).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let run = name.split('.').next().unwrap().to_string();
        let len = e.metadata().unwrap().len();
        total += len;
        *runs.entry(run).or_default() += len;
        assert_eq!(e.metadata().unwrap().permissions().mode() & 0o777, 0o600);
    }
    let kept: Vec<&String> = runs.keys().collect();
    assert_eq!(kept, vec!["3", "4"], "log files: {runs:?}");
    // the cap (8 KiB x 2) for both runs together, plus a line's slack per file
    assert!(total <= 16 * 1024 + 4 * 200, "{total} bytes: {runs:?}");
    let last = common::read_all_logs(&log_dir.join("4.log"));
    assert!(last.contains(" stdout F 4 xxx"), "{last:.200}");
    let prev = common::read_all_logs(&log_dir.join("3.log"));
    assert!(prev.contains(" stdout F 3 xxx"), "{prev:.200}");
    h.rt().remove_sandbox(&pod).await.unwrap();
    assert!(
        !h.cfg.log_dir.join(pod.key()).exists(),
        "the removed pod's logs stay"
    );
}

/// CPU time (user + system, in clock ticks) of a process so far.
fn cpu_ticks(pid: i32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = s.rsplit_once(')').unwrap().1;
    // after the comm: utime is field 14, stime 15 (1-based over the whole line)
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// A container limited to 100m that floods stdout: the supervisor copying
/// it runs inside the pod's limit, so it cannot burn a host core.
#[tokio::test(flavor = "multi_thread")]
async fn log_copying_counts_against_the_pod_cpu_limit() {
    require_root!();
    let h = Harness::with("btrt33", |c| {
        c.log_max_bytes = 256 * 1024;
        c.log_max_files = 2;
    });
    let pod = h.pod("flood");
    let limit = Resources {
        cpu_limit_millis: Some(100),
        ..Default::default()
    };
    let sb = h.sandbox_with(&pod, None, limit.clone()).await;
    let mut c = h.container(&sb, "yes", &["/bin/yes", "flooding the log"]);
    c.resources = limit;
    h.rt().run(&c).await.unwrap();
    let sup = shim_pid(&h.cfg.run_dir.join("containers").join(&c.id));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .unwrap()
        .unwrap_or(100) as u64;
    let before = cpu_ticks(sup);
    let t0 = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let used = (cpu_ticks(sup) - before) as f64 / ticks as f64;
    let share = used / t0.elapsed().as_secs_f64();
    // the pod may use 10% of a core, container and supervisor together
    assert!(
        share < 0.2,
        "supervisor used {:.0}% of a core",
        share * 100.0
    );
    assert!(
        !h.log_lines(&c.id, "stdout").await.is_empty(),
        "the flood was not logged"
    );
    h.rt().stop(&c.id, Duration::ZERO).await.unwrap();
}
