//! Privileged: what a container can see and do (namespaces, /proc, mounts,
//! capabilities, users, read-only rootfs, the pod's files).

mod common;

use berth_contract::{Classify, ContainerState, ErrorKind, Runtime};
use common::{Harness, require_root};

fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn exited_ok(s: &ContainerState) {
    assert!(
        matches!(s, ContainerState::Exited { exit_code: 0, .. }),
        "{s:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn namespaces_proc_hostname_and_pod_files() {
    require_root!();
    let h = Harness::new("btrt1");
    let netns = h.tmp.path().join("netns");
    common::make_netns(&netns);
    let pod = h.pod("web");
    let sb = h.sandbox(&pod, Some(netns.clone())).await;
    let script = "for n in pid mnt net ipc uts cgroup; do echo ns $n $(readlink /proc/self/ns/$n); done; \
                  echo procs $(ls -d /proc/[0-9]* | wc -l); echo host $(hostname); \
                  cat /etc/hosts /etc/resolv.conf /etc/hostname; \
                  mount -t tmpfs none /tmp && echo MOUNTED || echo mount-refused; \
                  echo \"pid1 $(cat /proc/1/cmdline | tr '\\0' ' ')\"";
    let c = h.container(&sb, "iso", &["/bin/sh", "-c", script]);
    exited_ok(&h.run_to_end(&c).await);
    let out = h.log_lines(&c.id, "stdout").await;
    let text = out.join("\n");
    for n in ["pid", "mnt", "net", "ipc", "uts", "cgroup"] {
        let line = out
            .iter()
            .find(|l| l.starts_with(&format!("ns {n} ")))
            .unwrap_or_else(|| panic!("no ns {n}: {text}"));
        let inside = line.split(' ').nth(2).unwrap();
        assert_ne!(inside, host_ns(n), "{n} namespace shared with the host");
    }
    // the net namespace is the pod's one, the ipc/uts the sandbox's
    let net_ino = std::fs::metadata(&netns)
        .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
        .unwrap();
    assert!(text.contains(&format!("net:[{net_ino}]")), "{text}");
    let uts_ino = std::os::unix::fs::MetadataExt::ino(
        &std::fs::metadata(sb.uts_ns.as_ref().unwrap()).unwrap(),
    );
    assert!(text.contains(&format!("uts:[{uts_ino}]")), "{text}");
    // /proc shows sh and ls at most (ls, the subshell's wc, etc.)
    let procs: usize = out
        .iter()
        .find_map(|l| l.strip_prefix("procs "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(procs <= 4, "container sees {procs} processes: {text}");
    assert!(text.contains("pid1 /bin/sh -c"), "{text}");
    assert!(text.contains("host web"), "{text}");
    assert!(
        text.contains("10.250.0.2\tweb") || text.contains("10.250.0.2 web"),
        "{text}"
    );
    assert!(text.contains("nameserver 10.250.0.1"), "{text}");
    assert!(text.contains("ndots:5"), "{text}");
    assert!(
        out.iter().any(|l| l == "mount-refused") && !out.iter().any(|l| l == "MOUNTED"),
        "{text}"
    );
}

fn cap_bits(out: &[String], field: &str) -> u64 {
    let l = out
        .iter()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in {out:?}"));
    u64::from_str_radix(l.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

const NET_RAW: u64 = 1 << 13;
const SYS_ADMIN: u64 = 1 << 21;
const SYS_MODULE: u64 = 1 << 16;
const CHOWN: u64 = 1;

#[tokio::test(flavor = "multi_thread")]
async fn capabilities_default_drop_add_privileged() {
    require_root!();
    let h = Harness::new("btrt2");
    let pod = h.pod("caps");
    let sb = h.sandbox(&pod, None).await;
    let args = [
        "/bin/sh",
        "-c",
        "grep -E '^Cap(Eff|Bnd)' /proc/self/status; grep NoNewPrivs /proc/self/status",
    ];

    let c = h.container(&sb, "default", &args);
    exited_ok(&h.run_to_end(&c).await);
    let out = h.log_lines(&c.id, "stdout").await;
    let eff = cap_bits(&out, "CapEff:");
    assert_eq!(
        eff.count_ones(),
        14,
        "Docker's 14 default caps, got {eff:#x}"
    );
    assert!(eff & NET_RAW != 0 && eff & CHOWN != 0, "{eff:#x}");
    assert!(eff & SYS_ADMIN == 0 && eff & SYS_MODULE == 0, "{eff:#x}");
    assert_eq!(
        cap_bits(&out, "CapBnd:"),
        eff,
        "bounding set = effective set"
    );

    let mut c = h.container(&sb, "dropped", &args);
    c.security.cap_drop = vec!["NET_RAW".into(), "chown".into()];
    c.security.cap_add = vec!["SYS_TIME".into()];
    c.security.allow_privilege_escalation = false;
    exited_ok(&h.run_to_end(&c).await);
    let out = h.log_lines(&c.id, "stdout").await;
    let eff = cap_bits(&out, "CapEff:");
    assert!(eff & NET_RAW == 0 && eff & CHOWN == 0, "{eff:#x}");
    assert!(eff & (1 << 25) != 0, "SYS_TIME added: {eff:#x}");
    assert!(
        out.iter()
            .any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')),
        "{out:?}"
    );

    let mut c = h.container(&sb, "none", &args);
    c.security.cap_drop = vec!["ALL".into()];
    exited_ok(&h.run_to_end(&c).await);
    assert_eq!(cap_bits(&h.log_lines(&c.id, "stdout").await, "CapEff:"), 0);

    let mut c = h.container(&sb, "priv", &args);
    c.security.privileged = true;
    exited_ok(&h.run_to_end(&c).await);
    let eff = cap_bits(&h.log_lines(&c.id, "stdout").await, "CapEff:");
    assert!(
        eff & SYS_ADMIN != 0 && eff & SYS_MODULE != 0,
        "privileged gets all caps: {eff:#x}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn users_readonly_rootfs_workdir_and_seccomp() {
    require_root!();
    let h = Harness::new("btrt3");
    let pod = h.pod("users");
    let sb = h.sandbox(&pod, None).await;

    // image user by name, supplemental groups
    let mut c = h.container(
        &sb,
        "byname",
        &["/bin/sh", "-c", "id -u; id -g; id -G; pwd"],
    );
    c.image_user = Some("app".into());
    c.security.supplemental_groups = vec![2000];
    c.working_dir = "/home/app/work".into();
    exited_ok(&h.run_to_end(&c).await);
    let out = h.log_lines(&c.id, "stdout").await;
    assert_eq!(out[0], "1000", "{out:?}");
    assert_eq!(out[1], "1000", "{out:?}");
    assert!(out[2].split(' ').any(|g| g == "2000"), "{out:?}");
    assert_eq!(out[3], "/home/app/work", "working dir created: {out:?}");

    // runAsUser/runAsGroup win over the image user
    let mut c = h.container(&sb, "byid", &["/bin/sh", "-c", "echo $(id -u):$(id -g)"]);
    c.image_user = Some("app".into());
    c.security.run_as_user = Some(4242);
    c.security.run_as_group = Some(4343);
    exited_ok(&h.run_to_end(&c).await);
    assert_eq!(h.log_lines(&c.id, "stdout").await, vec!["4242:4343"]);

    // runAsNonRoot with a root image: refused with a clear error
    let mut c = h.container(&sb, "nonroot", &["/bin/true"]);
    c.security.run_as_non_root = true;
    let err = h
        .rt()
        .run(&c)
        .await
        .expect_err("runAsNonRoot with root must fail");
    let msg = berth_contract::error_chain(&err);
    assert!(msg.contains("runAsNonRoot") && msg.contains(&c.id), "{msg}");
    assert_eq!(err.kind(), ErrorKind::Invalid, "{msg}");

    // unknown image user
    let mut c = h.container(&sb, "nouser", &["/bin/true"]);
    c.image_user = Some("ghost".into());
    let err = h.rt().run(&c).await.expect_err("unknown user must fail");
    assert!(berth_contract::error_chain(&err).contains("ghost"));

    // read-only root filesystem; /tmp-like writes fail, /dev/shm still works
    let mut c = h.container(
        &sb,
        "ro",
        &[
            "/bin/sh",
            "-c",
            "touch /x && echo WROTE; touch /dev/shm/ok && echo shm-ok",
        ],
    );
    c.security.read_only_root_fs = true;
    exited_ok(&h.run_to_end(&c).await);
    let out = h.log_lines(&c.id, "stdout").await;
    assert!(
        !out.contains(&"WROTE".to_string()) && out.contains(&"shm-ok".to_string()),
        "{out:?}"
    );

    // the default seccomp profile (like Docker's) refuses namespace creation
    // without CAP_SYS_ADMIN; Unconfined lets the kernel decide (user
    // namespaces need no capability on this kernel)
    let args = [
        "/bin/sh",
        "-c",
        "unshare -U true && echo UNSHARED || echo refused",
    ];
    let c = h.container(&sb, "seccomp", &args);
    exited_ok(&h.run_to_end(&c).await);
    let out = h.log_lines(&c.id, "stdout").await;
    assert!(
        out.contains(&"refused".to_string()),
        "RuntimeDefault seccomp: {out:?}"
    );
    let mut c = h.container(&sb, "unconfined", &args);
    c.security.seccomp_unconfined = true;
    exited_ok(&h.run_to_end(&c).await);
    let out = h.log_lines(&c.id, "stdout").await;
    assert!(out.contains(&"UNSHARED".to_string()), "Unconfined: {out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn binary_missing_and_bad_workdir_are_clear_errors() {
    require_root!();
    let h = Harness::new("btrt4");
    let pod = h.pod("errs");
    let sb = h.sandbox(&pod, None).await;
    let c = h.container(&sb, "nobin", &["/bin/does-not-exist"]);
    let err = h.rt().run(&c).await.expect_err("missing binary must fail");
    let msg = berth_contract::error_chain(&err);
    assert!(msg.contains(&c.id), "names the container: {msg}");
    assert!(msg.contains("does-not-exist"), "names the binary: {msg}");
    assert_eq!(err.kind(), ErrorKind::Invalid, "{msg}");
    // status of the failed container says why
    if let Ok(info) = h.rt().status(&c.id).await {
        assert!(
            matches!(info.state, ContainerState::Failed { .. }),
            "{:?}",
            info.state
        );
    }

    // a working dir that is a file
    let mut c = h.container(&sb, "badcwd", &["/bin/true"]);
    c.working_dir = "/etc/passwd".into();
    let err = h.rt().run(&c).await.expect_err("a file as cwd must fail");
    let msg = berth_contract::error_chain(&err);
    assert!(
        msg.contains(&c.id) && msg.contains("not a directory"),
        "{msg}"
    );
    assert_eq!(err.kind(), ErrorKind::Invalid, "{msg}");

    // a command looked up in the image's PATH, not the host's
    let c = h.container(&sb, "nopath", &["definitely-not-here"]);
    let err = h.rt().run(&c).await.expect_err("missing command must fail");
    let msg = berth_contract::error_chain(&err);
    assert!(
        msg.contains("$PATH") && msg.contains("CreateContainerError"),
        "{msg}"
    );
    assert_eq!(err.kind(), ErrorKind::Invalid, "{msg}");
}
