//! Pod sandboxes: the files and namespaces a pod's containers share.
//!
//! `<run>/pods/<pod key>/{hosts,hostname,resolv.conf}` and the IPC and UTS
//! namespaces, held by bind mounts of `/proc/thread-self/ns/{ipc,uts}` made
//! from a short-lived thread that unshared them (so no process has to live
//! for them to stay). A shared PID namespace needs a process: see
//! [`crate::pid_ns`].

use std::fs;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use berth_contract::{PodNetwork, Sandbox, SandboxConfig};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};

use crate::RuntimeError;

pub use berth_supervise::mounts::unmount_below;

/// True if `p` is a namespace bound to a file (`nsfs`). One `statfs`: the
/// host's mount table, which grows with every pod, is not read (three reads
/// of it per pod made starting n pods cost O(n^2) in the agent).
fn holds_namespace(p: &Path) -> bool {
    nix::sys::statfs::statfs(p).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// Create the pod's IPC+UTS namespaces bound at `ipc` and `uts` (idempotent).
fn hold_namespaces(ipc: &Path, uts: &Path, hostname: &str) -> Result<(), String> {
    if holds_namespace(ipc) && holds_namespace(uts) {
        return Ok(());
    }
    for p in [ipc, uts] {
        if !p.exists() {
            // a mount point for the namespace; root-only like the rest
            fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(p)
                .map_err(|e| format!("creating {}: {e}", p.display()))?;
        }
    }
    let (ipc, uts, hostname) = (ipc.to_path_buf(), uts.to_path_buf(), hostname.to_string());
    std::thread::spawn(move || -> Result<(), String> {
        unshare(CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)
            .map_err(|e| format!("unshare ipc/uts: {e}"))?;
        nix::unistd::sethostname(&hostname).map_err(|e| format!("sethostname: {e}"))?;
        for (ns, target) in [("ipc", &ipc), ("uts", &uts)] {
            let src = PathBuf::from(format!("/proc/thread-self/ns/{ns}"));
            if !holds_namespace(target) {
                mount(
                    Some(&src),
                    target.as_path(),
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| format!("binding {ns} namespace to {}: {e}", target.display()))?;
            }
        }
        Ok(())
    })
    .join()
    .map_err(|_| "namespace thread panicked".to_string())?
}

fn resolv_conf(net: &PodNetwork) -> String {
    if net.dns_servers.is_empty() {
        return fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    }
    let mut s = String::new();
    for n in &net.dns_servers {
        s.push_str(&format!("nameserver {n}\n"));
    }
    if !net.dns_search.is_empty() {
        s.push_str(&format!("search {}\n", net.dns_search.join(" ")));
    }
    s.push_str("options ndots:5\n");
    s
}

pub fn ensure(
    dir: &Path,
    cfg: &SandboxConfig,
    cgroup_parent: String,
    shim: &Path,
) -> Result<Sandbox, RuntimeError> {
    let err = |step: &'static str| {
        let pod = cfg.pod.key();
        move |message: String| RuntimeError::Sandbox { pod, step, message }
    };
    // root-only: the pod's files and volumes below are for its containers only
    if let Some(pods) = dir.parent() {
        crate::layout::private_dir(pods).map_err(|e| err("creating the pod dir")(e.to_string()))?;
    }
    crate::layout::private_dir(dir).map_err(|e| err("creating the pod dir")(e.to_string()))?;
    // the pod's own files when its spec asks for them, else the defaults
    let hosts = cfg.hosts.clone().unwrap_or_else(|| {
        let mut hosts = String::from(berth_contract::HOSTS_LOCALHOST);
        if let Some(ip) = cfg.network.ip {
            hosts.push_str(&format!("{ip}\t{}\n", cfg.hostname));
        }
        hosts
    });
    let resolv = cfg
        .resolv_conf
        .clone()
        .unwrap_or_else(|| resolv_conf(&cfg.network));
    let files = [
        ("hosts", hosts),
        ("hostname", format!("{}\n", cfg.hostname)),
        ("resolv.conf", resolv),
    ];
    for (name, content) in files {
        // readable by any user inside the container (bind-mounted as /etc/...);
        // the pod dir above keeps other host users out
        berth_state::write_atomic_mode(&dir.join(name), content.as_bytes(), 0o644)
            .map_err(|e| err("writing pod files")(e.to_string()))?;
    }
    let ipc = dir.join("ipc");
    let uts = dir.join("uts");
    hold_namespaces(&ipc, &uts, &cfg.hostname).map_err(err("creating IPC and UTS namespaces"))?;
    let pid_ns = if cfg.share_process_namespace {
        Some(crate::pid_ns::ensure(dir, shim).map_err(err("creating the shared PID namespace"))?)
    } else {
        None
    };
    Ok(Sandbox {
        pod: cfg.pod.clone(),
        netns: cfg.network.netns.clone(),
        ipc_ns: Some(ipc),
        uts_ns: Some(uts),
        pid_ns,
        hosts_file: dir.join("hosts"),
        hostname_file: dir.join("hostname"),
        resolv_conf: dir.join("resolv.conf"),
        cgroup_parent,
    })
}

/// Unmount the namespace files and remove the pod dir. Idempotent.
pub fn remove(dir: &Path) -> std::io::Result<()> {
    crate::pid_ns::remove(dir);
    for ns in ["ipc", "uts"] {
        let p = dir.join(ns);
        if holds_namespace(&p) {
            let _ = umount2(&p, MntFlags::MNT_DETACH);
        }
    }
    // anything else mounted below (a leftover) goes too
    unmount_below(dir);
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
