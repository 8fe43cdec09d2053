//! Privileged: containers whose RuntimeDefault filter berth precompiled
//! (no_new_privs set) are confined as before: filter mode 2 with one
//! filter, namespace creation refused unless CAP_SYS_ADMIN is added, the
//! same in `exec`; a filter the kernel refuses fails the start. Without
//! no_new_privs (the hand-off, `seccomp_handoff`) the container and an
//! exec'd process end with exactly the capabilities, no_new_privs and
//! filter of libcontainer's own path, and the exec'd process is filtered
//! too (libcontainer's own exec is not: berth loads the filter there as
//! well). A profile libcontainer loads for the init (filter flags) is the
//! exec'd process's filter too; one berth cannot apply (a notify action)
//! refuses the exec before any process starts.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_contract::{ContainerConfig, ContainerState, Runtime};
use common::{Harness, require_root};

const PROBE: &str = "grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs):' /proc/self/status; \
     unshare -U true && echo UNSHARED || echo refused; echo > /tmp/allowed && echo write-ok";

fn exited_ok(s: &ContainerState) {
    assert!(
        matches!(s, ContainerState::Exited { exit_code: 0, .. }),
        "{s:?}"
    );
}

fn bundle(h: &Harness, id: &str) -> PathBuf {
    h.cfg.run_dir.join("containers").join(id).join("bundle")
}

/// The container was started through the precompiled path: its bundle has
/// no `linux.seccomp` for libcontainer, the profile is kept beside it.
fn precompiled(h: &Harness, id: &str) -> bool {
    let b = bundle(h, id);
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
    config["linux"]["seccomp"].is_null() && b.join("seccomp.json").is_file()
}

fn cache_files(h: &Harness) -> Vec<PathBuf> {
    let dir = h.cfg.run_dir.join("seccomp");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn confined(out: &[String], what: &str) {
    for want in [
        "Seccomp:\t2",
        "Seccomp_filters:\t1",
        "NoNewPrivs:\t1",
        "write-ok",
    ] {
        assert!(
            out.iter().any(|l| l == want),
            "{what}: no {want:?} in {out:?}"
        );
    }
}

fn nnp(h: &Harness, sb: &berth_contract::Sandbox, name: &str, args: &[&str]) -> ContainerConfig {
    let mut c = h.container(sb, name, args);
    c.security.allow_privilege_escalation = false;
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn precompiled_filter_confines_like_libcontainers() {
    require_root!();
    let h = Harness::new("btsc1");
    let pod = h.pod("sc");
    let sb = h.sandbox(&pod, None).await;
    let probe = ["/bin/sh", "-c", PROBE];

    // default capabilities: user namespaces refused by the filter (they
    // need no capability, so only seccomp refuses them)
    let c = nnp(&h, &sb, "default", &probe);
    exited_ok(&h.run_to_end(&c).await);
    let out = h.log_lines(&c.id, "stdout").await;
    confined(&out, "default caps");
    assert!(out.contains(&"refused".into()), "{out:?}");
    assert!(
        precompiled(&h, &c.id),
        "default caps took the precompiled path"
    );
    let cached = cache_files(&h);
    assert_eq!(cached.len(), 1, "{cached:?}");
    assert_eq!(mode(&h.cfg.run_dir.join("seccomp")), 0o700);
    assert_eq!(mode(&cached[0]), 0o600);
    assert_eq!(mode(&bundle(&h, &c.id).join("seccomp.json")), 0o600);

    // CAP_SYS_ADMIN added: its profile allows namespaces (another program)
    let mut c = nnp(&h, &sb, "sysadmin", &probe);
    c.security.cap_add = vec!["SYS_ADMIN".into()];
    exited_ok(&h.run_to_end(&c).await);
    let out = h.log_lines(&c.id, "stdout").await;
    confined(&out, "CAP_SYS_ADMIN");
    assert!(out.contains(&"UNSHARED".into()), "{out:?}");
    assert!(precompiled(&h, &c.id));
    assert_eq!(cache_files(&h).len(), 2);

    // allowPrivilegeEscalation (no no_new_privs): handed off, filtered
    let c = h.container(&sb, "escalation", &probe);
    exited_ok(&h.run_to_end(&c).await);
    let out = h.log_lines(&c.id, "stdout").await;
    assert!(out.iter().any(|l| l == "Seccomp:\t2"), "{out:?}");
    assert!(out.contains(&"refused".into()), "{out:?}");
    assert!(handed_off(&h, &c.id), "handed off");
    assert_eq!(mode(&bundle(&h, &c.id).join("capabilities.json")), 0o600);

    // exec in a running container gets the same filter (libcontainer's
    // tenant builder drops `linux.seccomp`: on its path exec is unfiltered)
    let c = nnp(&h, &sb, "running", &["/bin/sleep", "60"]);
    h.rt().run(&c).await.expect("run");
    let argv: Vec<String> = probe.iter().map(|s| s.to_string()).collect();
    let r = h.exec(&c.id, &argv).await;
    let out: Vec<String> = r.output.lines().map(str::to_string).collect();
    assert_eq!(r.exit_code, 0, "{r:?}");
    confined(&out, "exec");
    assert!(out.contains(&"refused".into()), "exec: {out:?}");
    h.rt()
        .stop(&c.id, Duration::from_secs(5))
        .await
        .expect("stop");

    // a Localhost profile (allow all but user namespaces), without
    // no_new_privs: precompiled and handed off too, so an exec'd process is
    // filtered by it (on libcontainer's path it ran unfiltered)
    let mut c = h.container(&sb, "localhost", &["/bin/sleep", "60"]);
    c.security.seccomp_localhost = Some(
        serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        })
        .to_string(),
    );
    h.rt().run(&c).await.expect("run");
    assert!(
        precompiled(&h, &c.id),
        "the Localhost profile was precompiled"
    );
    // ... and it is the operator's profile, not RuntimeDefault (an earlier
    // version replaced it; RuntimeDefault refuses unshare -U too)
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle(&h, &c.id).join("seccomp.json")).unwrap())
            .unwrap();
    assert_eq!(kept["defaultAction"], "SCMP_ACT_ALLOW", "{kept}");
    let r = h.exec(&c.id, &argv).await;
    let out: Vec<String> = r.output.lines().map(str::to_string).collect();
    assert!(
        out.iter().any(|l| l == "Seccomp:\t2"),
        "Localhost exec: {out:?}"
    );
    assert!(out.contains(&"refused".into()), "Localhost exec: {out:?}");
    assert!(out.contains(&"write-ok".into()), "Localhost exec: {out:?}");
    h.rt()
        .stop(&c.id, Duration::from_secs(5))
        .await
        .expect("stop");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_filter_the_kernel_refuses_fails_the_start() {
    require_root!();
    let h = Harness::new("btsc2");
    let pod = h.pod("bad");
    let sb = h.sandbox(&pod, None).await;
    let c = nnp(&h, &sb, "first", &["/bin/true"]);
    exited_ok(&h.run_to_end(&c).await);
    let cached = cache_files(&h);
    assert_eq!(cached.len(), 1, "{cached:?}");

    // a cache entry that passes every check berth makes (length, checksum)
    // but that the kernel refuses (no final RET): the start must fail,
    // never run the payload without its filter
    use sha2::Digest;
    let mut data = vec![0u8; 16];
    let sum = sha2::Sha256::digest(&data);
    data.extend_from_slice(&sum);
    std::fs::write(&cached[0], &data).unwrap();
    let c = nnp(&h, &sb, "second", &["/bin/true"]);
    let err = h
        .rt()
        .run(&c)
        .await
        .expect_err("a refused filter must fail the start");
    let msg = berth_contract::error_chain(&err);
    eprintln!("the start failed as it must: {msg}");
    assert!(msg.contains("seccomp"), "{msg}");

    // without the damaged entry, the program is compiled again
    std::fs::remove_file(&cached[0]).unwrap();
    let c = nnp(&h, &sb, "third", &["/bin/true"]);
    exited_ok(&h.run_to_end(&c).await);
    assert_eq!(cache_files(&h).len(), 1);
}

/// What the hand-off must leave exactly as libcontainer does.
const STATUS: &str = "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status; \
     unshare -U true && echo UNSHARED || echo refused";

/// A harness whose shim runs with `BERTH_SHIM_SECCOMP=libcontainer` (a
/// wrapper script: the knob is read by the shim, for init and exec).
fn libcontainers_harness(instance: &str, wrapper_dir: &Path) -> Harness {
    use std::os::unix::fs::PermissionsExt;
    let wrapper = wrapper_dir.join("berth-shim");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nBERTH_SHIM_SECCOMP=libcontainer exec '{}' \"$@\"\n",
            env!("CARGO_BIN_EXE_berth-shim")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o700)).unwrap();
    Harness::with(instance, |cfg| cfg.shim_path = wrapper)
}

fn handed_off(h: &Harness, id: &str) -> bool {
    precompiled(h, id) && bundle(h, id).join("capabilities.json").is_file()
}

fn the_pid(h: &Harness, id: &str) -> i32 {
    let p = h.cfg.run_dir.join("containers").join(id).join("state.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
    v["pid"].as_i64().unwrap() as i32
}

const PTRACE_SECCOMP_GET_FILTER: libc::c_uint = 0x420c;

/// The seccomp programs of a running process, read with ptrace (seize,
/// interrupt, read, detach) on this one thread.
fn filters_of(pid: i32) -> Vec<Vec<u8>> {
    // SAFETY: ptrace requests on a container process of this test, which
    // is only stopped and resumed; buffers are sized to what the kernel
    // reported.
    unsafe {
        assert_eq!(
            libc::ptrace(libc::PTRACE_SEIZE, pid, 0, 0),
            0,
            "seize {pid}: {}",
            std::io::Error::last_os_error()
        );
        assert_eq!(libc::ptrace(libc::PTRACE_INTERRUPT, pid, 0, 0), 0);
        let mut status = 0;
        assert_eq!(libc::waitpid(pid, &mut status, libc::__WALL), pid);
        let mut out = Vec::new();
        for index in 0usize.. {
            let n = libc::ptrace(
                PTRACE_SECCOMP_GET_FILTER,
                pid,
                index,
                std::ptr::null_mut::<u8>(),
            );
            if n < 0 {
                break;
            }
            let mut buf = vec![0u8; n as usize * 8];
            let m = libc::ptrace(PTRACE_SECCOMP_GET_FILTER, pid, index, buf.as_mut_ptr());
            assert_eq!(m, n);
            out.push(buf);
        }
        libc::ptrace(libc::PTRACE_DETACH, pid, 0, 0);
        out
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn without_no_new_privs_caps_and_filter_are_libcontainers_and_exec_is_filtered() {
    require_root!();
    let wrappers = tempfile::tempdir().unwrap();
    let ours = Harness::new("btsc2a");
    let theirs = libcontainers_harness("btsc2b", wrappers.path());
    let pods = [ours.pod("ho"), theirs.pod("lc")];
    let sbs = [
        ours.sandbox(&pods[0], None).await,
        theirs.sandbox(&pods[1], None).await,
    ];
    let hs = [&ours, &theirs];
    let probe = ["/bin/sh", "-c", STATUS];
    let argv: Vec<String> = probe.iter().map(|s| s.to_string()).collect();
    type Tweak = fn(&mut ContainerConfig);
    let cases: [(&str, Tweak); 6] = [
        ("root-default", |_| {}),
        ("root-add", |c| {
            c.security.cap_add = vec!["NET_ADMIN".into(), "SYS_ADMIN".into()]
        }),
        ("root-dropall", |c| c.security.cap_drop = vec!["ALL".into()]),
        ("user-default", |c| c.security.run_as_user = Some(1000)),
        ("user-add", |c| {
            c.security.run_as_user = Some(1000);
            c.security.cap_add = vec!["NET_ADMIN".into(), "SYS_ADMIN".into()]
        }),
        ("user-dropall", |c| {
            c.security.run_as_user = Some(1000);
            c.security.cap_drop = vec!["ALL".into()]
        }),
    ];
    let mut programs = Vec::new();
    for (name, tweak) in cases {
        // the container itself, both paths
        let mut outs = Vec::new();
        for (h, sb) in hs.iter().zip(&sbs) {
            let mut c = h.container(sb, name, &probe);
            tweak(&mut c);
            exited_ok(&h.run_to_end(&c).await);
            outs.push(h.log_lines(&c.id, "stdout").await);
        }
        eprintln!("{name}: {:?}", outs[0]);
        assert_eq!(outs[0], outs[1], "{name}: hand-off vs libcontainer");
        assert!(outs[0].iter().any(|l| l == "Seccomp:\t2"), "{name}");
        assert!(outs[0].iter().any(|l| l == "Seccomp_filters:\t1"), "{name}");
        assert!(outs[0].iter().any(|l| l == "NoNewPrivs:\t0"), "{name}");
        assert_eq!(outs[0].len(), 9, "{name}: {:?}", outs[0]);

        // an exec in a running container, both paths; and the programs
        let mut execs = Vec::new();
        let mut progs = Vec::new();
        let mut inits = Vec::new();
        for (h, sb) in hs.iter().zip(&sbs) {
            let mut c = h.container(sb, &format!("{name}-run"), &["/bin/sleep", "60"]);
            tweak(&mut c);
            h.rt().run(&c).await.expect("run");
            let r = h.exec(&c.id, &argv).await;
            assert_eq!(r.exit_code, 0, "{name}: {r:?}");
            execs.push(r.output.lines().map(str::to_string).collect::<Vec<_>>());
            let pid = the_pid(h, &c.id);
            progs.push(
                tokio::task::spawn_blocking(move || filters_of(pid))
                    .await
                    .unwrap(),
            );
            let init = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            inits.push(
                init.lines()
                    .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs"))
                    .map(str::to_string)
                    .collect::<Vec<_>>(),
            );
            if std::ptr::eq(*h, &ours) {
                assert!(handed_off(h, &c.id), "{name}: the hand-off path");
            } else {
                assert!(!precompiled(h, &c.id), "{name}: libcontainer's path");
            }
            h.rt()
                .stop(&c.id, Duration::from_secs(1))
                .await
                .expect("stop");
        }
        eprintln!("{name} exec: {:?}", execs[0]);
        assert_eq!(inits[0], inits[1], "{name}: running init's caps");
        assert_eq!(progs[0].len(), 1, "{name}: one filter");
        assert_eq!(progs[0], progs[1], "{name}: the same program");
        programs.push(progs[0][0].clone());
        // capabilities and no_new_privs as on libcontainer's path
        let caps = |o: &[String]| -> Vec<String> {
            o.iter()
                .filter(|l| l.starts_with("Cap") || l.starts_with("NoNewPrivs"))
                .cloned()
                .collect()
        };
        assert_eq!(caps(&execs[0]), caps(&execs[1]), "{name}: exec caps");
        assert_eq!(caps(&execs[0]).len(), 6, "{name}: {:?}", execs[0]);
        // filtered like the container, on both paths (libcontainer's own
        // exec is not: berth loads the filter there too, handing the
        // process off at exec time)
        let filt = |o: &[String]| -> Vec<String> {
            o.iter()
                .filter(|l| l.starts_with("Seccomp") || *l == "refused" || *l == "UNSHARED")
                .cloned()
                .collect()
        };
        assert_eq!(filt(&execs[0]), filt(&outs[0]), "{name}: exec filtered");
        assert_eq!(filt(&execs[1]), filt(&outs[1]), "{name}: libcontainer's");
        assert!(execs[0].iter().any(|l| l == "Seccomp:\t2"), "{name}");
    }
    // the comparison can fail: SYS_ADMIN's program differs from the default's
    assert_ne!(programs[0], programs[1]);
}

/// A handed-off bundle missing its profile or its own capabilities: exec
/// refuses (never the widened capabilities, never unfiltered).
#[tokio::test(flavor = "multi_thread")]
async fn exec_refuses_a_handed_off_bundle_missing_a_file() {
    require_root!();
    let h = Harness::new("btsc2c");
    let pod = h.pod("dmg");
    let sb = h.sandbox(&pod, None).await;
    let argv: Vec<String> = ["/bin/sh", "-c", STATUS]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for file in ["seccomp.json", "capabilities.json"] {
        let c = h.container(&sb, &file.replace('.', "-"), &["/bin/sleep", "60"]);
        h.rt().run(&c).await.expect("run");
        assert!(handed_off(&h, &c.id));
        let ok = h.exec(&c.id, &argv).await;
        assert_eq!(ok.exit_code, 0, "{ok:?}");
        std::fs::remove_file(bundle(&h, &c.id).join(file)).unwrap();
        let r = h.rt().exec(&c.id, &argv, Duration::from_secs(10)).await;
        eprintln!("without {file}: {r:?}");
        let err = r.expect_err("refused, not run");
        assert!(
            berth_contract::error_chain(&err).contains(file),
            "without {file}: {err}"
        );
        h.rt()
            .stop(&c.id, Duration::from_secs(1))
            .await
            .expect("stop");
    }
}

/// A Localhost profile with filter flags: the container's init loads it
/// through libcontainer (libseccomp, with the flags), an exec'd process
/// through berth's loader with the same flags: the same Seccomp,
/// Seccomp_filters, NoNewPrivs and capabilities as the init, and the
/// kernel holds the program berth compiles, with and without no_new_privs.
#[tokio::test(flavor = "multi_thread")]
async fn exec_with_filter_flags_is_filtered_like_the_init() {
    require_root!();
    let h = Harness::new("btxs1");
    let pod = h.pod("flags");
    let sb = h.sandbox(&pod, None).await;
    let text = serde_json::json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
        "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    })
    .to_string();
    let profile: oci_spec::runtime::LinuxSeccomp = serde_json::from_str(&text).unwrap();
    let program = berth_runtime::seccomp_bpf::compile(&profile).unwrap();
    let probe = ["/bin/sh", "-c", STATUS];
    let argv: Vec<String> = probe.iter().map(|s| s.to_string()).collect();
    for nnp in [true, false] {
        let name = if nnp { "nnp" } else { "escalation" };
        let tweak = |c: &mut ContainerConfig| {
            c.security.seccomp_localhost = Some(text.clone());
            c.security.allow_privilege_escalation = !nnp;
        };
        let mut c = h.container(&sb, name, &probe);
        tweak(&mut c);
        exited_ok(&h.run_to_end(&c).await);
        let init = h.log_lines(&c.id, "stdout").await;
        eprintln!("{name} init: {init:?}");
        assert!(init.iter().any(|l| l == "Seccomp:\t2"), "{name}: {init:?}");
        assert!(init.iter().any(|l| l == "Seccomp_filters:\t1"), "{name}");
        assert!(init.contains(&"refused".into()), "{name}: {init:?}");

        let mut c = h.container(&sb, &format!("{name}-run"), &["/bin/sleep", "60"]);
        tweak(&mut c);
        h.rt().run(&c).await.expect("run");
        assert!(
            !precompiled(&h, &c.id),
            "{name}: the init loads a flagged profile through libcontainer"
        );
        let r = h.exec(&c.id, &argv).await;
        eprintln!("{name} exec: {r:?}");
        assert_eq!(r.exit_code, 0, "{name}: {r:?}");
        // stdout and stderr are one stream in exec: unshare's complaint
        // is left out
        let exec: Vec<String> = r
            .output
            .lines()
            .filter(|l| !l.starts_with("unshare:"))
            .map(str::to_string)
            .collect();
        assert_eq!(exec, init, "{name}: exec vs init");
        let pid = the_pid(&h, &c.id);
        let progs = tokio::task::spawn_blocking(move || filters_of(pid))
            .await
            .unwrap();
        assert_eq!(
            progs,
            vec![program.to_bytes()],
            "{name}: the init's program"
        );
        h.rt()
            .stop(&c.id, Duration::from_secs(1))
            .await
            .expect("stop");
    }
}

/// A Localhost profile with a notify action: the init runs (libcontainer
/// hands the listener fd to the profile's listenerPath), an exec is
/// refused with an error that says why, and no process starts.
#[tokio::test(flavor = "multi_thread")]
async fn exec_with_a_notify_action_is_refused_and_starts_nothing() {
    require_root!();
    let h = Harness::new("btxs2");
    let pod = h.pod("notify");
    let sb = h.sandbox(&pod, None).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("listener.sock");
    // the listener: libcontainer's start connects and sends the fd; the
    // connection waits in the backlog (nothing here answers notifications,
    // and the payload never makes the notified call)
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let mut c = h.container(&sb, "notified", &["/bin/sleep", "60"]);
    c.security.allow_privilege_escalation = false;
    c.security.seccomp_localhost = Some(
        serde_json::json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": socket,
            "syscalls": [{"names": ["acct"], "action": "SCMP_ACT_NOTIFY"}]
        })
        .to_string(),
    );
    h.rt().run(&c).await.expect("run");
    let pid = the_pid(&h, &c.id);
    let init = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(init.lines().any(|l| l == "Seccomp:\t2"), "{init}");
    // the check can fail: the container's /tmp is there to write to
    assert!(Path::new(&format!("/proc/{pid}/root/tmp")).is_dir());
    let marker = format!("/proc/{pid}/root/tmp/exec-ran");
    let argv: Vec<String> = ["/bin/sh", "-c", "echo > /tmp/exec-ran"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let r = h.rt().exec(&c.id, &argv, Duration::from_secs(10)).await;
    eprintln!("notify exec: {r:?}");
    let err = r.expect_err("an exec with a notify action must be refused");
    let msg = berth_contract::error_chain(&err);
    assert!(msg.contains("SCMP_ACT_NOTIFY"), "{msg}");
    assert!(msg.contains(&c.id), "names the container: {msg}");
    assert!(
        !Path::new(&marker).exists(),
        "no process ran: {marker} exists"
    );
    h.rt()
        .stop(&c.id, Duration::from_secs(1))
        .await
        .expect("stop");
    drop(listener);
}
