//! Privileged: containers whose RuntimeDefault filter berth precompiled
//! (no_new_privs set) are confined as before: filter mode 2 with one
//! filter, namespace creation refused unless CAP_SYS_ADMIN is added, the
//! same in `exec`; a filter the kernel refuses fails the start.

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

    // allowPrivilegeEscalation (no no_new_privs): libcontainer's own path,
    // still filtered
    let c = h.container(&sb, "escalation", &probe);
    exited_ok(&h.run_to_end(&c).await);
    let out = h.log_lines(&c.id, "stdout").await;
    assert!(out.iter().any(|l| l == "Seccomp:\t2"), "{out:?}");
    assert!(out.contains(&"refused".into()), "{out:?}");
    assert!(!precompiled(&h, &c.id), "left to libcontainer");

    // exec in a running container gets the same filter (libcontainer's
    // tenant builder drops `linux.seccomp`: on its path exec is unfiltered)
    let c = nnp(&h, &sb, "running", &["/bin/sleep", "60"]);
    h.rt().run(&c).await.expect("run");
    let argv: Vec<String> = probe.iter().map(|s| s.to_string()).collect();
    let r = h
        .rt()
        .exec(&c.id, &argv, Duration::from_secs(10))
        .await
        .expect("exec");
    let out: Vec<String> = r.output.lines().map(str::to_string).collect();
    assert_eq!(r.exit_code, 0, "{r:?}");
    confined(&out, "exec");
    assert!(out.contains(&"refused".into()), "exec: {out:?}");
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
