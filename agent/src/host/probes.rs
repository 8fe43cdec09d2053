//! The individual checks of [`super::probe`]; each reads files below
//! [`Roots`] and never changes anything.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use berth_runtime::cgroups::{Cgroups, Version, pressure};

use super::{Check, HostReport, Level, Roots};

/// Free space below which the state dir's file system is degraded (image
/// pulls and logs fail first) and below which it counts as missing.
const DISK_LOW: u64 = 1 << 30;
const DISK_CRITICAL: u64 = 100 << 20;

/// Probe everything. `https_roots`: whether an HTTPS registry client could
/// be built (the host has CA certificates); passed in so tests need no
/// real TLS stack.
pub fn probe(r: &Roots, https_roots: bool) -> HostReport {
    let cg = Cgroups::detect(&r.cgroup);
    let mut checks = vec![kernel(&r.kernel_release), cgroup_version(r, &cg)];
    checks.extend(controllers(&cg));
    checks.extend([
        psi(r, &cg),
        overlayfs(r),
        nftables(),
        namespaces(r),
        seccomp(r),
        ip_forward(r),
        ipv6(r),
        apparmor(r),
        state_dir(&r.state_dir),
        disk(&r.state_dir),
        ca_bundle(https_roots),
    ]);
    HostReport { checks }
}

fn read(p: &Path) -> Option<String> {
    fs::read_to_string(p).ok()
}

/// `6.1.0-28-amd64` -> (6, 1)
fn major_minor(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(['.', '-']);
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

fn kernel(release: &str) -> Check {
    match major_minor(release) {
        Some(v) if v >= (5, 4) => Check::new("kernel", Level::Ok, release, ""),
        Some(_) => Check::new(
            "kernel",
            Level::Degraded,
            release,
            "older than 5.4: cgroup v2 features (memory.events, cgroup.kill, PSI) may be missing; berth is tested on 5.10 and later",
        ),
        None => Check::new(
            "kernel",
            Level::Info,
            format!("unknown release {release:?}"),
            "",
        ),
    }
}

fn cgroup_version(r: &Roots, cg: &Cgroups) -> Check {
    if !r.cgroup.is_dir() {
        return Check::new(
            "cgroups",
            Level::Missing,
            format!("{} is not mounted", r.cgroup.display()),
            "no cgroups: berth cannot bound, account or kill containers",
        );
    }
    match cg.version {
        Version::V2 => Check::new("cgroups", Level::Ok, "v2 (unified)", ""),
        Version::V1 => Check::new(
            "cgroups",
            Level::Ok,
            "v1 (legacy or hybrid): supported; v2 gives memory.oom.group, PSI and cgroup.kill",
            "",
        ),
    }
}

/// The controllers berth's limits need: one check each.
fn controllers(cg: &Cgroups) -> Vec<Check> {
    let offered = cg.controllers();
    let wants: [(&str, &str, Level); 4] = [
        (
            "memory",
            "memory limits are not enforced and OOM kills are not reported (on Raspberry Pi OS: add cgroup_enable=memory to cmdline.txt)",
            Level::Degraded,
        ),
        (
            "cpu",
            "CPU limits and requests (quota, weight) are not enforced",
            Level::Degraded,
        ),
        (
            "pids",
            "process-count limits are not enforced: a fork bomb in a container reaches the host's limit",
            Level::Degraded,
        ),
        (
            "io",
            "not used for limits; only I/O accounting is missing",
            Level::Info,
        ),
    ];
    wants
        .into_iter()
        .map(|(c, meaning, missing)| {
            let name = format!("cgroup controller {c}");
            // v1 calls the io controller blkio
            if offered
                .iter()
                .any(|o| o == c || (c == "io" && o == "blkio"))
            {
                Check::new(&name, Level::Ok, "present", "")
            } else {
                Check::new(&name, missing, "absent", meaning)
            }
        })
        .collect()
}

fn psi(r: &Roots, cg: &Cgroups) -> Check {
    if cg.version != Version::V2 {
        return Check::new(
            "pressure (PSI)",
            Level::Info,
            "per-pod pressure needs cgroup v2",
            "",
        );
    }
    if pressure::kernel_has_psi(&r.proc) {
        Check::new(
            "pressure (PSI)",
            Level::Ok,
            "cpu, memory and io pressure per pod",
            "",
        )
    } else {
        Check::new(
            "pressure (PSI)",
            Level::Degraded,
            "absent (kernel without CONFIG_PSI, or booted with psi=0)",
            "no cpu/memory/io pressure figures in metrics; nothing else changes",
        )
    }
}

fn overlayfs(r: &Roots) -> Check {
    let listed = read(&r.proc.join("filesystems")).is_some_and(|s| {
        s.lines()
            .any(|l| l.split_whitespace().last() == Some("overlay"))
    });
    let module = r.sys.join("module/overlay").exists()
        || Path::new("/lib/modules")
            .join(&r.kernel_release)
            .join("kernel/fs/overlayfs")
            .exists();
    if listed {
        Check::new("overlayfs", Level::Ok, "in /proc/filesystems", "")
    } else if module {
        Check::new(
            "overlayfs",
            Level::Ok,
            "module, loaded on the first mount",
            "",
        )
    } else {
        Check::new(
            "overlayfs",
            Level::Missing,
            "not in /proc/filesystems and no module",
            "container root filesystems cannot be mounted: no pod starts",
        )
    }
}

fn nftables() -> Check {
    let version = std::process::Command::new("nft")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match (berth_net::prepare_nft(), version) {
        (true, v) => Check::new(
            "nftables",
            Level::Ok,
            format!(
                "batches applied in-process by libnftables{}",
                v.map(|v| format!(" ({v})")).unwrap_or_default()
            ),
            "",
        ),
        (false, Some(v)) => Check::new(
            "nftables",
            Level::Ok,
            format!("{v}; batches applied by the nft binary (libnftables.so.1 not loaded)"),
            "",
        ),
        (false, None) => Check::new(
            "nftables",
            Level::Missing,
            "neither libnftables.so.1 nor a working `nft` binary",
            "no NAT, Service VIPs or hostPorts: pod networking does not start (install nftables)",
        ),
    }
}

fn namespaces(r: &Roots) -> Check {
    let ns = r.proc.join("self/ns");
    let missing: Vec<&str> = ["net", "mnt", "pid", "ipc", "uts"]
        .into_iter()
        .filter(|n| !ns.join(n).exists())
        .collect();
    if missing.is_empty() {
        let userns = read(&r.proc.join("sys/user/max_user_namespaces"))
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        Check::new(
            "namespaces",
            Level::Ok,
            format!(
                "net mnt pid ipc uts (user namespaces: not used by berth; max_user_namespaces {userns})"
            ),
            "",
        )
    } else {
        Check::new(
            "namespaces",
            Level::Missing,
            format!("absent: {}", missing.join(" ")),
            "containers cannot be isolated: no pod starts",
        )
    }
}

fn seccomp(r: &Roots) -> Check {
    let status = read(&r.proc.join("self/status")).unwrap_or_default();
    let has = status.lines().any(|l| l.starts_with("Seccomp:"));
    let actions = read(&r.proc.join("sys/kernel/seccomp/actions_avail")).unwrap_or_default();
    if has {
        Check::new(
            "seccomp",
            Level::Ok,
            format!("filters available ({})", actions.trim()),
            "",
        )
    } else {
        Check::new(
            "seccomp",
            Level::Missing,
            "kernel without seccomp",
            "the default seccomp profile cannot be loaded: containers fail to start unless their pods are seccomp Unconfined",
        )
    }
}

fn ip_forward(r: &Roots) -> Check {
    match read(&r.proc.join("sys/net/ipv4/ip_forward"))
        .as_deref()
        .map(str::trim)
    {
        Some("1") => Check::new("ip forwarding", Level::Ok, "net.ipv4.ip_forward=1", ""),
        Some(v) => Check::new(
            "ip forwarding",
            Level::Info,
            format!(
                "net.ipv4.ip_forward={v}: berth sets 1 when it starts (the old value is recorded)"
            ),
            "",
        ),
        None => Check::new(
            "ip forwarding",
            Level::Missing,
            "no net.ipv4.ip_forward",
            "pods cannot reach anything beyond the host",
        ),
    }
}

fn ipv6(r: &Roots) -> Check {
    if r.proc.join("net/if_inet6").exists() {
        Check::new("ipv6", Level::Info, "available; pods get IPv4 only", "")
    } else {
        Check::new(
            "ipv6",
            Level::Info,
            "disabled; berth's pod network is IPv4 only",
            "",
        )
    }
}

fn apparmor(r: &Roots) -> Check {
    let on =
        read(&r.sys.join("module/apparmor/parameters/enabled")).is_some_and(|s| s.trim() == "Y");
    Check::new(
        "apparmor",
        Level::Info,
        if on {
            "enabled; berth loads no profile (seccomp, capabilities and masked paths confine containers)"
        } else {
            "not enabled; not needed by berth"
        },
        "",
    )
}

fn state_dir(d: &Path) -> Check {
    let name = "state dir";
    match fs::symlink_metadata(d) {
        Err(_) => Check::new(
            name,
            Level::Info,
            format!(
                "{} does not exist yet: the agent creates it (0700)",
                d.display()
            ),
            "",
        ),
        Ok(m) if !m.is_dir() => Check::new(
            name,
            Level::Missing,
            format!("{} is not a directory", d.display()),
            "the agent cannot keep pod records, images or volumes",
        ),
        Ok(m) if m.permissions().mode() & 0o077 != 0 || m.uid() != 0 => Check::new(
            name,
            Level::Degraded,
            format!(
                "{} has mode {:04o}, owner uid {}",
                d.display(),
                m.permissions().mode() & 0o7777,
                m.uid()
            ),
            "pod records, secrets in volumes and image layers may be readable by other users; the agent makes it 0700 root at start",
        ),
        Ok(_) => Check::new(name, Level::Ok, format!("{} (0700, root)", d.display()), ""),
    }
}

/// The nearest existing ancestor (the state dir may not exist yet).
fn existing(d: &Path) -> Option<&Path> {
    d.ancestors().find(|a| a.exists())
}

fn disk(d: &Path) -> Check {
    let Some(at) = existing(d) else {
        return Check::new("free disk", Level::Info, "no existing ancestor", "");
    };
    match nix::sys::statvfs::statvfs(at) {
        Ok(s) => {
            // the casts matter on 32-bit targets (armhf), where these are narrower
            #[allow(clippy::unnecessary_cast)]
            let free = s.blocks_available() as u64 * s.fragment_size() as u64;
            let found = format!("{} MiB free at {}", free >> 20, at.display());
            if free < DISK_CRITICAL {
                Check::new(
                    "free disk",
                    Level::Missing,
                    found,
                    "image pulls, logs and state writes fail",
                )
            } else if free < DISK_LOW {
                Check::new(
                    "free disk",
                    Level::Degraded,
                    found,
                    "less than 1 GiB: image pulls and logs may fill it",
                )
            } else {
                Check::new("free disk", Level::Ok, found, "")
            }
        }
        Err(e) => Check::new("free disk", Level::Info, format!("statvfs: {e}"), ""),
    }
}

fn ca_bundle(https_roots: bool) -> Check {
    if https_roots {
        Check::new(
            "CA certificates",
            Level::Ok,
            "HTTPS registry client ready",
            "",
        )
    } else {
        Check::new(
            "CA certificates",
            Level::Degraded,
            "no usable CA bundle (install ca-certificates, or set SSL_CERT_FILE)",
            "registry pulls fail with a clear error (the registry client cannot start without CA certificates); image archives work",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(controllers: &str, psi: bool) -> (tempfile::TempDir, Roots) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path();
        let cg = p.join("cgroup");
        fs::create_dir_all(&cg).unwrap();
        fs::write(cg.join("cgroup.controllers"), controllers).unwrap();
        fs::create_dir_all(p.join("proc/self/ns")).unwrap();
        for n in ["net", "mnt", "pid", "ipc", "uts"] {
            fs::write(p.join("proc/self/ns").join(n), "").unwrap();
        }
        fs::write(p.join("proc/self/status"), "Name:\tberth\nSeccomp:\t0\n").unwrap();
        fs::write(p.join("proc/filesystems"), "nodev\tproc\nnodev\toverlay\n").unwrap();
        fs::create_dir_all(p.join("proc/sys/net/ipv4")).unwrap();
        fs::write(p.join("proc/sys/net/ipv4/ip_forward"), "0\n").unwrap();
        if psi {
            fs::create_dir_all(p.join("proc/pressure")).unwrap();
            fs::write(
                p.join("proc/pressure/cpu"),
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=5\n",
            )
            .unwrap();
        }
        let state = p.join("state");
        fs::create_dir_all(&state).unwrap();
        fs::set_permissions(&state, fs::Permissions::from_mode(0o700)).unwrap();
        let r = Roots {
            proc: p.join("proc"),
            sys: p.join("sys"),
            cgroup: cg,
            state_dir: state,
            kernel_release: "6.1.0-28-amd64".into(),
        };
        (t, r)
    }

    fn level(rep: &HostReport, name: &str) -> Level {
        rep.checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}"))
            .level
    }

    #[test]
    fn a_complete_v2_host_has_no_condition() {
        let (_t, r) = fake("cpuset cpu io memory pids", true);
        let rep = probe(&r, true);
        for c in &rep.checks {
            // nftables depends on the machine running the test
            if c.name != "nftables" {
                assert!(
                    matches!(c.level, Level::Ok | Level::Info),
                    "{c:?} on a complete fake host"
                );
            }
        }
        assert_eq!(level(&rep, "pressure (PSI)"), Level::Ok);
        if level(&rep, "nftables") == Level::Ok {
            assert!(rep.condition().is_none());
        }
    }

    #[test]
    fn no_memory_controller_and_no_psi_degrade_and_say_what_it_means() {
        let (_t, r) = fake("cpu pids", false);
        let rep = probe(&r, false);
        assert_eq!(level(&rep, "cgroup controller memory"), Level::Degraded);
        assert_eq!(level(&rep, "cgroup controller io"), Level::Info);
        assert_eq!(level(&rep, "pressure (PSI)"), Level::Degraded);
        assert_eq!(level(&rep, "CA certificates"), Level::Degraded);
        let c = rep.condition().unwrap();
        assert_eq!(c.type_, "HostFeaturesComplete");
        assert_eq!(c.status, "False");
        assert!(!c.blocks_ready, "degraded is not unready");
        assert!(
            c.message.contains("memory limits are not enforced"),
            "{}",
            c.message
        );
        assert!(c.message.contains("pressure"), "{}", c.message);
    }

    #[test]
    fn required_features_missing() {
        let (t, mut r) = fake("cpu memory pids", true);
        fs::write(t.path().join("proc/filesystems"), "nodev\tproc\n").unwrap();
        fs::remove_file(t.path().join("proc/self/ns/net")).unwrap();
        r.kernel_release = "4.19.0-1-rpi".into();
        r.cgroup = t.path().join("no-cgroup");
        let rep = probe(&r, true);
        assert_eq!(level(&rep, "namespaces"), Level::Missing);
        assert_eq!(level(&rep, "cgroups"), Level::Missing);
        assert_eq!(level(&rep, "kernel"), Level::Degraded);
        assert_eq!(rep.worst(), Level::Missing);
        assert_eq!(rep.condition().unwrap().reason, "FeatureMissing");
    }

    #[test]
    fn state_dir_open_to_others_is_degraded() {
        let (_t, r) = fake("cpu memory pids", true);
        fs::set_permissions(&r.state_dir, fs::Permissions::from_mode(0o755)).unwrap();
        let rep = probe(&r, true);
        assert_eq!(level(&rep, "state dir"), Level::Degraded);
        let (_t, mut r) = fake("cpu memory pids", true);
        r.state_dir = r.state_dir.join("not-yet");
        assert_eq!(level(&probe(&r, true), "state dir"), Level::Info);
    }

    #[test]
    fn versions_parse() {
        assert_eq!(major_minor("6.1.0-28-amd64"), Some((6, 1)));
        assert_eq!(major_minor("5.15.0-v8+"), Some((5, 15)));
        assert_eq!(major_minor("x"), None);
    }
}
