use super::*;
use berth_contract::*;

fn cfg() -> ContainerConfig {
    ContainerConfig {
        id: "u-c-0".into(),
        pod: PodRef {
            namespace: "default".into(),
            name: "p".into(),
            uid: "u".into(),
        },
        name: "c".into(),
        labels: Default::default(),
        image: ImageInfo {
            reference: "x".into(),
            image_id: "sha256:1".into(),
            repo_digest: None,
            layers: vec!["/l1".into()],
            config: ImageConfig::default(),
        },
        args: vec!["/bin/sh".into()],
        env: vec!["PATH=/bin".into()],
        working_dir: "/".into(),
        image_user: None,
        sandbox: Sandbox {
            pod: PodRef {
                namespace: "default".into(),
                name: "p".into(),
                uid: "u".into(),
            },
            netns: Some("/run/x/netns/p".into()),
            ipc_ns: Some("/run/x/pods/p/ipc".into()),
            uts_ns: Some("/run/x/pods/p/uts".into()),
            pid_ns: None,
            hosts_file: "/run/x/pods/p/hosts".into(),
            hostname_file: "/run/x/pods/p/hostname".into(),
            resolv_conf: "/run/x/pods/p/resolv.conf".into(),
            cgroup_parent: "/x/p".into(),
        },
        mounts: vec![],
        resources: Resources {
            memory_limit_bytes: Some(64 << 20),
            cpu_limit_millis: Some(500),
            cpu_request_millis: Some(250),
            ..Default::default()
        },
        security: Security {
            allow_privilege_escalation: true,
            ..Default::default()
        },
    }
}

fn user() -> User {
    User {
        uid: 0,
        gid: 0,
        additional_gids: vec![],
    }
}

#[test]
fn docker_defaults() {
    let v = spec(
        &cfg(),
        Path::new("/rootfs"),
        "/x/p/u-c-0",
        &user(),
        1024,
        (1024, 4096),
    )
    .unwrap();
    let caps = v["process"]["capabilities"]["effective"]
        .as_array()
        .unwrap();
    assert!(caps.iter().any(|c| c == "CAP_NET_RAW"));
    assert!(!caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
    assert_eq!(
        v["linux"]["maskedPaths"].as_array().unwrap().len(),
        MASKED.len()
    );
    // RuntimeDefault: an allow-list that does not allow mount without CAP_SYS_ADMIN
    assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    assert!(
        !v["linux"]["seccomp"]["syscalls"][0]["names"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "mount")
    );
    assert_eq!(v["linux"]["resources"]["memory"]["limit"], 64 << 20);
    assert_eq!(v["linux"]["resources"]["memory"]["swap"], 64 << 20);
    assert_eq!(v["linux"]["resources"]["cpu"]["quota"], 50000);
    assert_eq!(v["linux"]["resources"]["cpu"]["shares"], 256);
    assert_eq!(v["linux"]["resources"]["pids"]["limit"], 1024);
    let ns: Vec<&str> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert_eq!(ns, vec!["pid", "mount", "cgroup", "ipc", "uts", "network"]);
    assert!(v["process"]["noNewPrivileges"].is_null());
    // it is a valid OCI spec
    let _: oci_spec::runtime::Spec = serde_json::from_value(v).unwrap();
}

#[test]
fn caps_add_drop_privileged_and_host_network() {
    let mut c = cfg();
    c.security.cap_drop = vec!["ALL".into()];
    c.security.cap_add = vec!["NET_ADMIN".into()];
    assert_eq!(capabilities(&c), vec!["CAP_NET_ADMIN".to_string()]);
    c.security.cap_drop = vec!["net_raw".into()];
    c.security.cap_add = vec![];
    assert!(!capabilities(&c).contains(&"CAP_NET_RAW".to_string()));
    c.security.privileged = true;
    c.sandbox.netns = None;
    c.security.read_only_root_fs = true;
    c.security.allow_privilege_escalation = false;
    let v = spec(&c, Path::new("/r"), "/x", &user(), 10, (1, 1)).unwrap();
    assert!(v["linux"]["seccomp"].is_null());
    assert!(v["linux"]["maskedPaths"].is_null());
    assert_eq!(v["root"]["readonly"], true);
    assert_eq!(v["process"]["noNewPrivileges"], true);
    assert!(
        v["process"]["capabilities"]["bounding"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "CAP_SYS_ADMIN")
    );
    assert!(
        !v["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["type"] == "network")
    );
}

#[test]
fn users_from_passwd() {
    let passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n";
    let group = "root:x:0:\nstaff:x:50:\n";
    assert_eq!(resolve_user("app", passwd, group).unwrap(), (1000, 1001));
    assert_eq!(resolve_user("1000", passwd, group).unwrap(), (1000, 1001));
    assert_eq!(
        resolve_user("app:staff", passwd, group).unwrap(),
        (1000, 50)
    );
    assert_eq!(resolve_user("42:7", passwd, group).unwrap(), (42, 7));
    assert!(resolve_user("nobody", passwd, group).is_err());
}

#[test]
fn sub_path_refuses_symlink_escapes() {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("ok")).unwrap();
    std::os::unix::fs::symlink("/etc", d.path().join("evil")).unwrap();
    assert_eq!(
        resolve_sub_path(d.path(), "ok").unwrap(),
        d.path().join("ok")
    );
    assert!(resolve_sub_path(d.path(), "evil").is_err());
    assert!(resolve_sub_path(d.path(), "evil/passwd").is_err());
    assert!(resolve_sub_path(d.path(), "../x").is_err());
    assert!(resolve_sub_path(d.path(), "/abs").is_err());
}

fn ns_types(v: &Value) -> Vec<String> {
    v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn host_pid_and_host_ipc_drop_those_namespaces() {
    let mk = |c: &ContainerConfig| {
        spec(
            c,
            Path::new("/r"),
            "/x/p/u-c-0",
            &user(),
            1024,
            (1024, 4096),
        )
        .unwrap()
    };
    let v = mk(&cfg());
    assert!(ns_types(&v).contains(&"pid".to_string()));
    assert!(ns_types(&v).contains(&"ipc".to_string()));
    let mut c = cfg();
    c.security.host_pid = true;
    c.security.host_ipc = true;
    let v = mk(&c);
    assert!(
        !ns_types(&v).contains(&"pid".to_string()),
        "{:?}",
        ns_types(&v)
    );
    assert!(
        !ns_types(&v).contains(&"ipc".to_string()),
        "{:?}",
        ns_types(&v)
    );
    assert!(ns_types(&v).contains(&"network".to_string()));
}

#[test]
fn localhost_seccomp_profile_replaces_the_default() {
    let mut c = cfg();
    c.security.seccomp_localhost =
        Some(r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}"#.into());
    let v = spec(
        &c,
        Path::new("/r"),
        "/x/p/u-c-0",
        &user(),
        1024,
        (1024, 4096),
    )
    .unwrap();
    assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    c.security.seccomp_localhost = Some("not json".into());
    let e = spec(
        &c,
        Path::new("/r"),
        "/x/p/u-c-0",
        &user(),
        1024,
        (1024, 4096),
    )
    .unwrap_err();
    assert!(e.contains("Localhost seccomp profile"), "{e}");
}

#[test]
fn a_shared_pid_namespace_is_joined_by_path() {
    let mut c = cfg();
    c.sandbox.pid_ns = Some("/proc/4242/ns/pid".into());
    let v = spec(
        &c,
        Path::new("/r"),
        "/x/p/u-c-0",
        &user(),
        1024,
        (1024, 4096),
    )
    .unwrap();
    let pid: Vec<&Value> = v["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["type"] == "pid")
        .collect();
    assert_eq!(pid.len(), 1);
    assert_eq!(pid[0]["path"], "/proc/4242/ns/pid");
    // hostPID wins (validation refuses both together)
    c.security.host_pid = true;
    let v = spec(
        &c,
        Path::new("/r"),
        "/x/p/u-c-0",
        &user(),
        1024,
        (1024, 4096),
    )
    .unwrap();
    assert!(!ns_types(&v).contains(&"pid".to_string()));
}

#[test]
fn member_groups_come_from_the_group_file() {
    let passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    let group =
        "root:x:0:\napp:x:1000:\nvideo:x:44:app,other\naudio:x:29:other\nwheel:x:10: app \n";
    assert_eq!(member_groups(1000, passwd, group), [44, 10]);
    assert!(member_groups(0, passwd, group).is_empty());
    // a uid without a passwd entry has no name, so no memberships
    assert!(member_groups(2000, passwd, group).is_empty());
}

#[test]
fn a_localhost_apparmor_profile_goes_to_the_process() {
    let mut c = cfg();
    let v = spec(
        &c,
        Path::new("/r"),
        "/x/p/u-c-0",
        &user(),
        1024,
        (1024, 4096),
    )
    .unwrap();
    assert!(v["process"].get("apparmorProfile").is_none());
    c.security.apparmor_profile = Some("k8s-deny-write".into());
    let v = spec(
        &c,
        Path::new("/r"),
        "/x/p/u-c-0",
        &user(),
        1024,
        (1024, 4096),
    )
    .unwrap();
    assert_eq!(v["process"]["apparmorProfile"], "k8s-deny-write");
}
