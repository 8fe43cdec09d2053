//! The OCI runtime spec (config.json) of one container, from its
//! `ContainerConfig`: namespaces (pid/mount/cgroup new; network/ipc/uts joined
//! from the pod sandbox), mounts, Docker's default capabilities and masked
//! paths, a default seccomp filter, user, resources. Pure: no I/O.

use std::path::{Component, Path, PathBuf};

use berth_contract::{ContainerConfig, MountKind};
use serde_json::{Value, json};

/// Docker's default capability set.
pub const DEFAULT_CAPS: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability (privileged containers).
pub const ALL_CAPS: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Docker's masked paths.
pub const MASKED: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

fn cap_name(c: &str) -> String {
    let u = c.to_ascii_uppercase();
    if u.starts_with("CAP_") {
        u
    } else {
        format!("CAP_{u}")
    }
}

/// The effective capability set after privileged / add / drop (`ALL` allowed in both).
pub fn capabilities(cfg: &ContainerConfig) -> Vec<String> {
    let s = &cfg.security;
    if s.privileged {
        return ALL_CAPS.iter().map(|c| c.to_string()).collect();
    }
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|c| c.to_string()).collect();
    if s.cap_drop.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
        caps.clear();
    }
    caps.retain(|c| !s.cap_drop.iter().any(|d| cap_name(d) == *c));
    if s.cap_add.iter().any(|c| c.eq_ignore_ascii_case("ALL")) {
        caps = ALL_CAPS.iter().map(|c| c.to_string()).collect();
    }
    for a in &s.cap_add {
        let n = cap_name(a);
        if n != "CAP_ALL" && !caps.contains(&n) {
            caps.push(n);
        }
    }
    caps
}

/// Resolve `sub` inside `base` refusing `..` and any symlink on the way, so a
/// volume's content can never redirect a mount outside it.
pub fn resolve_sub_path(base: &Path, sub: &str) -> Result<PathBuf, String> {
    let mut p = base.to_path_buf();
    for c in Path::new(sub).components() {
        match c {
            Component::Normal(n) => {
                p.push(n);
                if let Ok(md) = std::fs::symlink_metadata(&p)
                    && md.file_type().is_symlink()
                {
                    return Err(format!(
                        "subPath {sub:?}: {} is a symlink; berth does not follow symlinks in subPath",
                        p.display()
                    ));
                }
            }
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "subPath {sub:?} must be relative and may not contain '..'"
                ));
            }
        }
    }
    Ok(p)
}

/// Resolved user of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
}

/// Look `name` up in passwd-format text; numeric names are taken as they are.
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<(u32, u32), String> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, mut gid) = match u.parse::<u32>() {
        Ok(n) => (
            n,
            passwd
                .lines()
                .find_map(|l| {
                    let f: Vec<&str> = l.split(':').collect();
                    (f.len() > 3 && f[2] == u)
                        .then(|| f[3].parse().ok())
                        .flatten()
                })
                .unwrap_or(0),
        ),
        Err(_) => {
            let entry = passwd
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 3 && f[0] == u)
                .ok_or_else(|| {
                    format!("unable to find user {u}: no matching entries in passwd file")
                })?;
            (
                entry[2]
                    .parse()
                    .map_err(|_| format!("bad uid for user {u} in passwd"))?,
                entry[3]
                    .parse()
                    .map_err(|_| format!("bad gid for user {u} in passwd"))?,
            )
        }
    };
    if let Some(g) = g {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => group
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() > 2 && f[0] == g)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?,
        };
    }
    Ok((uid, gid))
}

/// Groups whose member list in group-format text names the user of `uid`
/// (looked up in passwd-format text), at most 64 of them.
pub fn member_groups(uid: u32, passwd: &str, group: &str) -> Vec<u32> {
    let uid_s = uid.to_string();
    let Some(name) = passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() > 3 && f[2] == uid_s).then(|| f[0].to_string())
    }) else {
        return Vec::new();
    };
    group
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let member = f.len() > 3 && f[3].split(',').any(|m| m.trim() == name);
            member.then(|| f[2].parse().ok()).flatten()
        })
        .take(64)
        .collect()
}

/// The config.json value.
pub fn spec(
    cfg: &ContainerConfig,
    rootfs: &Path,
    cgroup_path: &str,
    user: &User,
    pids_default: i64,
    nofile: (u64, u64),
) -> Result<Value, String> {
    let sec = &cfg.security;
    let caps = capabilities(cfg);
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
    ];
    if cfg.sandbox.netns.is_some() {
        mounts.push(json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}));
    } else {
        // sysfs can't be mounted without a network namespace of our own
        mounts.push(json!({"destination": "/sys", "type": "bind", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}));
    }
    mounts.push(json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}));
    for (dest, src) in [
        ("/etc/hosts", &cfg.sandbox.hosts_file),
        ("/etc/hostname", &cfg.sandbox.hostname_file),
        ("/etc/resolv.conf", &cfg.sandbox.resolv_conf),
    ] {
        mounts.push(json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
    }
    for m in &cfg.mounts {
        match &m.kind {
            MountKind::Bind => {
                let src = match &m.sub_path {
                    Some(sp) => resolve_sub_path(&m.source, sp)?,
                    None => m.source.clone(),
                };
                let mut opts = vec!["rbind", "rprivate"];
                if m.read_only {
                    opts.push("ro");
                }
                mounts.push(json!({"destination": m.destination, "type": "bind", "source": src, "options": opts}));
            }
            MountKind::Tmpfs { size_bytes } => {
                let mut opts = vec![
                    "nosuid".to_string(),
                    "nodev".to_string(),
                    "mode=1777".to_string(),
                ];
                if let Some(s) = size_bytes {
                    opts.push(format!("size={s}"));
                }
                if m.read_only {
                    opts.push("ro".into());
                }
                mounts.push(json!({"destination": m.destination, "type": "tmpfs", "source": "tmpfs", "options": opts}));
            }
        }
    }
    let mut namespaces = vec![json!({"type": "mount"}), json!({"type": "cgroup"})];
    // hostPID / hostIPC: no namespace of that type, so the host's
    // shareProcessNamespace: the pod's PID namespace, held by its init
    match &cfg.sandbox.pid_ns {
        _ if sec.host_pid => {}
        Some(p) => namespaces.insert(0, json!({"type": "pid", "path": p})),
        None => namespaces.insert(0, json!({"type": "pid"})),
    }
    match &cfg.sandbox.ipc_ns {
        _ if sec.host_ipc => {}
        Some(p) => namespaces.push(json!({"type": "ipc", "path": p})),
        None => namespaces.push(json!({"type": "ipc"})),
    }
    match &cfg.sandbox.uts_ns {
        Some(p) => namespaces.push(json!({"type": "uts", "path": p})),
        None => namespaces.push(json!({"type": "uts"})),
    }
    if let Some(p) = &cfg.sandbox.netns {
        namespaces.push(json!({"type": "network", "path": p}));
    }
    let r = &cfg.resources;
    let mut resources = json!({
        "devices": [
            {"allow": false, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 7, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 8, "access": "rwm"},
            {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 0, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 1, "access": "rwm"},
            {"allow": true, "type": "c", "major": 5, "minor": 2, "access": "rwm"},
            {"allow": true, "type": "c", "major": 136, "access": "rwm"},
            {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rwm"}
        ],
        "pids": {"limit": r.pids_limit.unwrap_or(pids_default)},
    });
    if let Some(m) = r.memory_limit_bytes {
        resources["memory"] = json!({"limit": m as i64, "swap": m as i64});
    }
    let mut cpu = serde_json::Map::new();
    if let Some(l) = r.cpu_limit_millis {
        cpu.insert("quota".into(), json!((l * 100) as i64));
        cpu.insert("period".into(), json!(100_000u64));
    }
    if let Some(q) = r.cpu_request_millis {
        cpu.insert("shares".into(), json!((q * 1024 / 1000).max(2)));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": cgroup_path,
        "resources": resources,
        "rootfsPropagation": "private",
    });
    if !sec.privileged {
        linux["maskedPaths"] = json!(MASKED.to_vec());
        linux["readonlyPaths"] = json!(READONLY.to_vec());
        match &sec.seccomp_localhost {
            _ if sec.seccomp_unconfined => {}
            Some(text) => {
                linux["seccomp"] = serde_json::from_str(text)
                    .map_err(|e| format!("the Localhost seccomp profile is not valid JSON: {e}"))?;
            }
            None => linux["seccomp"] = crate::seccomp::profile(&caps),
        }
    }
    let process = json!({
        "terminal": false,
        "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
        "args": cfg.args,
        "env": cfg.env,
        "cwd": if cfg.working_dir.is_empty() { "/" } else { cfg.working_dir.as_str() },
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": nofile.0, "hard": nofile.1}],
    });
    // Only set when true: libcontainer loads the seccomp filter after dropping
    // capabilities whenever the field is present (even `false`), which fails
    // without no_new_privs; absent, it loads the filter while still privileged.
    let mut process = process;
    if !sec.allow_privilege_escalation {
        process["noNewPrivileges"] = json!(true);
    }
    // a Localhost AppArmor profile (accepted only where the kernel has AppArmor)
    if let Some(p) = sec.apparmor_profile.as_deref().filter(|_| !sec.privileged) {
        process["apparmorProfile"] = json!(p);
    }
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": rootfs, "readonly": sec.read_only_root_fs},
        "mounts": mounts,
        "linux": linux,
    }))
}

#[cfg(test)]
mod tests;
