//! Privileged: a container's life (exit codes, signals, stop, OOM, pids limit,
//! logs, exec, usage, agent restarts) and what remove leaves behind.

mod common;

use std::time::{Duration, Instant};

use berth_contract::{ContainerState, Runtime};
use common::{Harness, require_root};

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_signals_and_stop_grace() {
    require_root!();
    let h = Harness::new("btrt5");
    let pod = h.pod("exits");
    let sb = h.sandbox(&pod, None).await;

    let c = h.container(&sb, "seven", &["/bin/sh", "-c", "exit 7"]);
    match h.run_to_end(&c).await {
        ContainerState::Exited {
            exit_code: 7,
            signal: None,
            oom_killed: false,
            started_at: Some(s),
            finished_at,
        } => {
            assert!(finished_at >= s)
        }
        s => panic!("{s:?}"),
    }

    // init ignores SIGTERM (pid 1 without a handler): stop escalates to SIGKILL after the grace
    let c = h.container(&sb, "stubborn", &["/bin/sleep", "300"]);
    let info = h.rt().run(&c).await.unwrap();
    assert!(
        matches!(info.state, ContainerState::Running { .. }),
        "{:?}",
        info.state
    );
    // the resident supervisor is the small berth-supervise, on one thread
    // (built by `cargo build --workspace --bins`, as scripts/test.sh does;
    // without it berth-shim supervises from its own image, same code)
    let small =
        std::path::Path::new(env!("CARGO_BIN_EXE_berth-shim")).with_file_name("berth-supervise");
    let want = if small.exists() {
        "berth-supervise"
    } else {
        "berth-shim"
    };
    let dir = h.cfg.run_dir.join("containers").join(&c.id);
    let shim = std::fs::read_to_string(dir.join("shim.pid")).unwrap();
    let shim = shim.split_whitespace().next().unwrap().to_string();
    let t0 = Instant::now();
    let exe = loop {
        let exe = std::fs::read_link(format!("/proc/{shim}/exe")).unwrap();
        let cmdline = std::fs::read_to_string(format!("/proc/{shim}/cmdline")).unwrap();
        let execd = exe.ends_with("berth-supervise") || cmdline.contains("\0supervise\0");
        if execd || t0.elapsed() > Duration::from_secs(5) {
            break exe;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exe.ends_with(want), "{} (wanted {want})", exe.display());
    let status = std::fs::read_to_string(format!("/proc/{shim}/status")).unwrap();
    assert!(status.contains("\nThreads:\t1\n"), "{status}");
    let t0 = Instant::now();
    h.rt()
        .stop(&c.id, Duration::from_millis(800))
        .await
        .unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(700),
        "grace honoured: {took:?}"
    );
    match h.wait(&c.id).await {
        ContainerState::Exited {
            exit_code: 137,
            signal: Some(9),
            ..
        } => {}
        s => panic!("{s:?}"),
    }

    // a TERM handler: stop returns soon, with the handler's exit code
    let c = h.container(
        &sb,
        "polite",
        &["/bin/sh", "-c", "trap 'exit 3' TERM; sleep 300 & wait"],
    );
    h.rt().run(&c).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t0 = Instant::now();
    h.rt().stop(&c.id, Duration::from_secs(20)).await.unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "stop waited for the whole grace: {:?}",
        t0.elapsed()
    );
    match h.wait(&c.id).await {
        ContainerState::Exited {
            exit_code: 3,
            signal: None,
            ..
        } => {}
        s => panic!("{s:?}"),
    }

    // stop kills every process of the cgroup, not only the init: a daemonised
    // child (setsid, own session) dies too
    let c = h.container(
        &sb,
        "forks",
        &["/bin/sh", "-c", "setsid sleep 300 & sleep 300"],
    );
    h.rt().run(&c).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let procs = h.cgroup_dir("pids", &format!("{}/{}/cgroup.procs", pod.key(), c.id));
    let before = std::fs::read_to_string(&procs).unwrap_or_default();
    assert!(
        before.lines().count() >= 2,
        "init and the daemon in the cgroup: {before:?}"
    );
    h.rt()
        .stop(&c.id, Duration::from_millis(100))
        .await
        .unwrap();
    h.wait(&c.id).await;
    let pids: Vec<i32> = before
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for p in pids {
        let alive = std::fs::read_to_string(format!("/proc/{p}/stat"))
            .map(|s| !s.contains(") Z"))
            .unwrap_or(false);
        assert!(!alive, "process {p} of the stopped container still runs");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_limit_oom_kill_is_reported() {
    require_root!();
    let h = Harness::new("btrt6");
    let pod = h.pod("oom");
    let sb = h.sandbox(&pod, None).await;
    // dd allocates and fills one 200 MiB buffer
    let mut c = h.container(
        &sb,
        "hog",
        &[
            "/bin/sh",
            "-c",
            "echo start; exec dd if=/dev/zero of=/dev/null bs=200M count=1",
        ],
    );
    c.resources.memory_limit_bytes = Some(32 << 20);
    h.rt().run(&c).await.unwrap();
    // the limit is in the container's cgroup
    let lim = h.cgroup_dir(
        "memory",
        &format!("{}/{}/memory.limit_in_bytes", pod.key(), c.id),
    );
    if let Ok(v) = std::fs::read_to_string(&lim) {
        assert_eq!(v.trim(), (32u64 << 20).to_string());
    }
    let s = h.wait(&c.id).await;
    let out = h.log_lines(&c.id, "stdout").await;

    match s {
        ContainerState::Exited {
            oom_killed: true, ..
        } => {}
        s => panic!("expected an OOM kill, got {s:?}, stdout {out:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pids_limit_stops_a_fork_loop() {
    require_root!();
    let h = Harness::new("btrt7");
    let pod = h.pod("forkbomb");
    let sb = h.sandbox(&pod, None).await;
    let mut c = h.container(
        &sb,
        "bomb",
        &[
            "/bin/sh",
            "-c",
            "(i=0; while [ $i -lt 200 ]; do sleep 60 & i=$((i+1)); done) 2>/dev/null; exec sleep 60",
        ],
    );
    c.resources.pids_limit = Some(16);
    h.rt().run(&c).await.unwrap();
    let cur = h.cgroup_dir("pids", &format!("{}/{}/pids.current", pod.key(), c.id));
    let max = h.cgroup_dir("pids", &format!("{}/{}/pids.max", pod.key(), c.id));
    let t0 = Instant::now();
    let mut seen = 0;
    while t0.elapsed() < Duration::from_secs(3) {
        seen = seen.max(
            std::fs::read_to_string(&cur)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(std::fs::read_to_string(&max).unwrap().trim(), "16");
    assert!((10..=16).contains(&seen), "pids.current peaked at {seen}");
    // the host can still fork
    assert!(
        std::process::Command::new("/bin/true")
            .status()
            .unwrap()
            .success()
    );
    h.rt()
        .stop(&c.id, Duration::from_millis(100))
        .await
        .unwrap();
    assert!(matches!(h.wait(&c.id).await, ContainerState::Exited { .. }));
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_both_streams_partial_lines_and_rotation() {
    require_root!();
    let h = Harness::with("btrt8", |c| {
        c.log_max_bytes = 4096;
        c.log_max_files = 3;
    });
    let pod = h.pod("logs");
    let sb = h.sandbox(&pod, None).await;
    let c = h.container(
        &sb,
        "talk",
        &[
            "/bin/sh",
            "-c",
            "echo out1; echo err1 >&2; echo out2; printf no-newline",
        ],
    );
    h.run_to_end(&c).await;
    assert_eq!(
        h.log_lines(&c.id, "stdout").await,
        vec!["out1", "out2", "no-newline"]
    );
    assert_eq!(h.log_lines(&c.id, "stderr").await, vec!["err1"]);
    let info = h.rt().status(&c.id).await.unwrap();
    let raw = std::fs::read_to_string(&info.log_path).unwrap();
    let first = raw.lines().next().unwrap();
    let ts = first.split(' ').next().unwrap();
    assert!(
        ts.parse::<jiff::Timestamp>().is_ok() && ts.ends_with('Z'),
        "RFC 3339 timestamp: {first}"
    );
    assert!(
        ts.split('.').nth(1).is_some_and(|f| f.len() == 10),
        "nanoseconds: {first}"
    );
    assert!(raw.contains(" stdout P no-newline"), "{raw}");
    // the log dir survives reboots (state dir), keyed by pod and container
    assert!(
        info.log_path.starts_with(h.tmp.path().join("state")),
        "{}",
        info.log_path.display()
    );
    assert!(info.log_path.to_string_lossy().contains(&pod.key()));

    // 2000 lines of ~20 bytes = ~80 KB through a 4 KiB x 3 rotation
    let c = h.container(
        &sb,
        "chatty",
        &["/bin/sh", "-c", "seq 1 2000 | sed 's/^/line-number-/'"],
    );
    h.run_to_end(&c).await;
    let info = h.rt().status(&c.id).await.unwrap();
    let p = info.log_path.clone();
    let r1 = std::path::PathBuf::from(format!("{}.1", p.display()));
    let r3 = std::path::PathBuf::from(format!("{}.3", p.display()));
    assert!(r1.exists(), "rotated file {}", r1.display());
    assert!(!r3.exists(), "only 3 files kept");
    for f in [&p, &r1] {
        let len = std::fs::metadata(f).unwrap().len();
        assert!(len <= 4096 + 200, "{} is {len} bytes", f.display());
    }
    let lines = h.log_lines(&c.id, "stdout").await;
    assert_eq!(lines.last().map(String::as_str), Some("line-number-2000"));
    // consecutive: nothing lost inside the kept window
    let nums: Vec<u32> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("line-number-")?.parse().ok())
        .collect();
    assert!(
        nums.windows(2).all(|w| w[1] == w[0] + 1),
        "gap in kept logs"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agent_restart_while_running_and_while_exiting() {
    require_root!();
    let mut h = Harness::new("btrt9");
    let pod = h.pod("survivor");
    let sb = h.sandbox(&pod, None).await;
    let long = h.container(&sb, "long", &["/bin/sh", "-c", "echo up; sleep 300"]);
    let short = h.container(
        &sb,
        "short",
        &["/bin/sh", "-c", "sleep 1; echo bye; exit 5"],
    );
    let pid = match h.rt().run(&long).await.unwrap().state {
        ContainerState::Running { pid, .. } => pid,
        s => panic!("{s:?}"),
    };
    h.rt().run(&short).await.unwrap();
    // the shim is detached: not the agent's child, a session of its own, and
    // the container's init is the shim's child (CLONE_PARENT)
    let shim: i32 = std::fs::read_to_string(
        h.tmp
            .path()
            .join("run/containers")
            .join(&long.id)
            .join("shim.pid"),
    )
    .unwrap()
    .split_whitespace()
    .next()
    .unwrap()
    .parse()
    .unwrap();
    let stat = |pid: i32| -> Vec<i32> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let rest = s.rsplit_once(')').unwrap().1;
        rest.split_whitespace()
            .skip(1)
            .take(5)
            .map(|f| f.parse().unwrap())
            .collect() // ppid pgrp session tty tpgid
    };
    let sh = stat(shim);
    assert_ne!(
        sh[0],
        std::process::id() as i32,
        "shim is a child of the agent"
    );
    assert_eq!(sh[2], shim, "shim leads its own session");
    assert_eq!(
        stat(pid as i32)[0],
        shim,
        "container init is the shim's child"
    );
    // its control socket answers
    let sock =
        berth_runtime::control::sock_path(&h.tmp.path().join("run/containers").join(&long.id))
            .expect("shim.sock");
    let reply = berth_runtime::control::call(
        &sock,
        &berth_runtime::control::Request::Status,
        Some(Duration::from_secs(5)),
    )
    .await
    .expect("status reply");
    let reply: berth_runtime::control::Reply = serde_json::from_str(&reply).unwrap();
    assert!(reply.running && reply.pid == Some(pid as i32), "{reply:?}");
    // the agent goes away (its runtime object with it) while both run ...
    h.rt = None;
    // ... the short one exits meanwhile
    tokio::time::sleep(Duration::from_millis(2500)).await;
    h.restart();
    let list = h.rt().list().await.unwrap();
    let by_id = |id: &str| {
        list.iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("{id} not listed: {list:?}"))
    };
    assert!(
        matches!(by_id(&long.id).state, ContainerState::Running { pid: p, .. } if p == pid),
        "{:?}",
        by_id(&long.id).state
    );
    assert!(
        matches!(
            by_id(&short.id).state,
            ContainerState::Exited { exit_code: 5, .. }
        ),
        "{:?}",
        by_id(&short.id).state
    );
    assert_eq!(
        by_id(&long.id).labels.get("test").map(String::as_str),
        Some("btrt9")
    );
    assert!(matches!(
        h.wait(&short.id).await,
        ContainerState::Exited { exit_code: 5, .. }
    ));
    assert_eq!(h.log_lines(&short.id, "stdout").await, vec!["bye"]);
    // the new runtime controls the old container, and wait resolves on its end
    let rt = h.rt();
    let (w, s) = tokio::join!(h.wait(&long.id), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        rt.stop(&long.id, Duration::from_millis(200)).await
    });
    s.unwrap();
    assert!(
        matches!(
            w,
            ContainerState::Exited {
                signal: Some(9),
                ..
            }
        ),
        "{w:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn exec_output_exit_code_timeout_and_usage() {
    require_root!();
    let h = Harness::new("btrt10");
    let pod = h.pod("exec");
    let sb = h.sandbox(&pod, None).await;
    let mut c = h.container(
        &sb,
        "target",
        &["/bin/sh", "-c", "echo marker > /dev/shm/m; sleep 300"],
    );
    c.image_user = Some("app".into());
    c.env.push("FOO=bar".into());
    h.rt().run(&c).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let argv: Vec<String> = [
        "/bin/sh",
        "-c",
        "cat /dev/shm/m; echo $FOO; id -u; hostname; echo err >&2; exit 3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let r = h
        .rt()
        .exec(&c.id, &argv, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(r.exit_code, 3, "{r:?}");
    assert!(!r.timed_out);
    for want in ["marker", "bar", "1000", "exec", "err"] {
        assert!(
            r.output.lines().any(|l| l == want),
            "{want} missing in {:?}",
            r.output
        );
    }
    let t0 = Instant::now();
    let argv: Vec<String> = ["/bin/sleep", "31"].iter().map(|s| s.to_string()).collect();
    let r = h
        .rt()
        .exec(&c.id, &argv, Duration::from_millis(500))
        .await
        .unwrap();
    assert!(r.timed_out, "{r:?}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "timeout honoured: {:?}",
        t0.elapsed()
    );
    // the killed exec process is gone from the container
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ps = h
        .rt()
        .exec(&c.id, &["/bin/ps".to_string()], Duration::from_secs(5))
        .await
        .unwrap();
    assert!(
        !ps.output.contains("sleep 31") && ps.output.contains("sleep 300"),
        "{}",
        ps.output
    );

    let u = h.rt().usage(&c.id).await.unwrap();
    assert!(
        u.cpu_usage_nanos > 0 && u.memory_working_set_bytes > 0,
        "{u:?}"
    );
    h.rt().stop(&c.id, Duration::ZERO).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn remove_leaves_no_mounts_cgroups_or_dirs() {
    require_root!();
    let h = Harness::new("btrt11");
    let pod = h.pod("clean");
    let sb = h.sandbox(&pod, None).await;
    let a = h.container(&sb, "a", &["/bin/sleep", "300"]);
    let b = h.container(&sb, "b", &["/bin/true"]);
    h.rt().run(&a).await.unwrap();
    h.run_to_end(&b).await;
    assert!(
        !common::mounts_below(h.tmp.path()).is_empty(),
        "overlay and namespace mounts exist while running"
    );
    h.rt().remove(&a.id).await.unwrap();
    h.rt().remove(&b.id).await.unwrap();
    assert!(h.rt().list().await.unwrap().is_empty());
    assert!(
        h.rt().wait(&a.id).await.is_err(),
        "removed container is unknown"
    );
    h.rt().remove_sandbox(&pod).await.unwrap();
    h.rt().remove_sandbox(&pod).await.unwrap(); // idempotent
    let left = common::mounts_below(h.tmp.path());
    assert!(left.is_empty(), "mounts left: {left:?}");
    for ctl in [
        "memory", "pids", "cpu", "freezer", "cpuset", "devices", "blkio", "cpuacct",
    ] {
        let d = h.cgroup_dir(ctl, &pod.key());
        assert!(!d.exists(), "{} left", d.display());
    }
    h.rt().cleanup_instance();
    assert!(
        common::leftover_cgroups("btrt11").is_empty(),
        "{:?}",
        common::leftover_cgroups("btrt11")
    );
    // logs stay
    let logs = h.tmp.path().join("state/logs");
    assert!(logs.exists());
    // container run dirs and upper dirs are gone
    let run = h.tmp.path().join("run/containers");
    assert_eq!(std::fs::read_dir(&run).map(|r| r.count()).unwrap_or(0), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn pod_cgroup_carries_pod_limits() {
    require_root!();
    let h = Harness::new("btrt14");
    let pod = h.pod("limited");
    let res = berth_contract::Resources {
        cpu_request_millis: Some(500),
        cpu_limit_millis: Some(1500),
        memory_request_bytes: None,
        memory_limit_bytes: Some(96 << 20),
        pids_limit: Some(64),
    };
    let sb = h.sandbox_with(&pod, None, res).await;
    let rd = |ctl: &str, f: &str| {
        std::fs::read_to_string(h.cgroup_dir(ctl, &format!("{}/{f}", pod.key()))).unwrap()
    };
    assert_eq!(
        rd("memory", "memory.limit_in_bytes").trim(),
        (96u64 << 20).to_string()
    );
    assert_eq!(rd("cpu", "cpu.cfs_quota_us").trim(), "150000");
    assert_eq!(rd("cpu", "cpu.shares").trim(), "512");
    assert_eq!(rd("pids", "pids.max").trim(), "64");
    // a container is placed below the pod
    let c = h.container(&sb, "inside", &["/bin/sh", "-c", "cat /proc/self/cgroup"]);
    h.run_to_end(&c).await;
    let out = h.log_lines(&c.id, "stdout").await.join("\n");
    // own cgroup namespace: the container sees itself at its root
    assert!(out.contains("memory:/"), "{out}");
    h.rt().remove(&c.id).await.unwrap();
    h.rt().remove_sandbox(&pod).await.unwrap();
    assert!(!h.cgroup_dir("memory", &pod.key()).exists());
}

/// Without `berth-supervise` next to it, `berth-shim` supervises from its own
/// image (`berth-shim supervise`), with the same results, and says so in its log.
#[tokio::test(flavor = "multi_thread")]
async fn shim_without_berth_supervise_falls_back_to_itself() {
    require_root!();
    let alone = tempfile::Builder::new()
        .prefix("btrt-shim-")
        .tempdir()
        .unwrap();
    let shim = alone.path().join("berth-shim");
    let built = std::path::Path::new(env!("CARGO_BIN_EXE_berth-shim"));
    if std::fs::hard_link(built, &shim).is_err() {
        std::fs::copy(built, &shim).unwrap();
    }
    let h = Harness::with("btrt18", |c| c.shim_path = shim.clone());
    let pod = h.pod("alone");
    let sb = h.sandbox(&pod, None).await;
    let c = h.container(
        &sb,
        "both",
        &["/bin/sh", "-c", "echo out; echo err >&2; sleep 300"],
    );
    h.rt().run(&c).await.unwrap();
    let dir = h.cfg.run_dir.join("containers").join(&c.id);
    let t0 = Instant::now();
    while h.log_lines(&c.id, "stderr").await.is_empty() && t0.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = std::fs::read_to_string(dir.join("shim.pid")).unwrap();
    let pid = pid.split_whitespace().next().unwrap().to_string();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(exe, shim);
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap();
    assert!(cmdline.contains("\0supervise\0"), "{cmdline:?}");
    let log = std::fs::read_to_string(dir.join("shim.log")).unwrap();
    assert!(log.contains("no berth-supervise"), "{log}");
    h.rt()
        .stop(&c.id, Duration::from_millis(100))
        .await
        .unwrap();
    let end = h.wait(&c.id).await;
    let killed = matches!(
        end,
        ContainerState::Exited {
            signal: Some(9),
            ..
        }
    );
    assert!(killed, "{end:?}");
    assert_eq!(h.log_lines(&c.id, "stdout").await, vec!["out"]);
    assert_eq!(h.log_lines(&c.id, "stderr").await, vec!["err"]);
}
