//! The seccomp filter of a process started by `berth-shim exec` (exec
//! probes, lifecycle hooks): exactly the container's filter, or no process.
//!
//! libcontainer 0.7's tenant builder drops `linux.seccomp`, so every exec'd
//! process loads the container's program itself, in berth's executor
//! ([`SeccompExecutor`]), at the point where the container's init loaded it:
//!
//! - the supervisor precompiled the profile (`bundle/seccomp.json`): that
//!   program, and without no_new_privs the drop to the container's own
//!   capabilities (`bundle/capabilities.json`, [`seccomp_handoff`]);
//! - the container's init loaded the profile through libcontainer (the
//!   bundle's `linux.seccomp`: a `Localhost` profile with filter flags or a
//!   notify action, a process the hand-off could not take at start):
//!   the same program compiled by berth and loaded with the profile's flags
//!   ([`seccomp_bpf::load_flags`]); without no_new_privs handed off here,
//!   for this process only, when berth holds what that needs;
//! - otherwise the exec is refused ([`Refused`]) before any process starts:
//!   a notify action (its listener fd belongs to the container's init and
//!   its supervisor), or a process without no_new_privs that berth cannot
//!   hand off (berth lacks CAP_SYS_ADMIN or CAP_SETPCAP, a user namespace).
//!
//! A container without `linux.seccomp` (Unconfined, privileged) runs its
//! exec'd processes without a filter, as its init.

use std::io::Read;
use std::path::Path;

use oci_spec::runtime::{LinuxCapabilities, LinuxSeccomp};
use serde_json::Value;

use crate::layout::Layout;
use crate::seccomp_bpf::{self, SeccompExecutor};
use crate::seccomp_handoff;

/// Where the supervisor keeps the profile of a container whose filter it
/// precompiled, for `berth-shim exec` (the bundle's config.json has none).
pub const SECCOMP_FILE: &str = "seccomp.json";
const FILE_MAX: u64 = 1 << 20;

/// Why an exec was refused before it started a process.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(
        "the container's seccomp profile has a notify action (SCMP_ACT_NOTIFY): berth cannot apply it to an exec'd process, so it does not run one"
    )]
    Notify,
    #[error(
        "the container's seccomp filter cannot be loaded in an exec'd process without no_new_privs (allowPrivilegeEscalation: false) unless berth holds CAP_SYS_ADMIN and CAP_SETPCAP and the container has no user namespace of its own: it does not run one unfiltered"
    )]
    NoHandoff,
    #[error("{} without {SECCOMP_FILE}: the bundle was damaged", .0.display())]
    Damaged(std::path::PathBuf),
    #[error("the container's seccomp profile needs no_new_privileges or {}", .0.display())]
    NoCapabilities(std::path::PathBuf),
    #[error("{what} of the container's bundle: {message}")]
    Bundle { what: String, message: String },
    #[error("the container's seccomp program")]
    Program(#[source] seccomp_bpf::BpfError),
    #[error("handing the exec'd process off to berth's seccomp loader")]
    Handoff(#[source] seccomp_handoff::HandoffError),
}

fn bundle_err(what: impl std::fmt::Display, e: impl std::fmt::Display) -> Refused {
    Refused::Bundle {
        what: what.to_string(),
        message: e.to_string(),
    }
}

/// A file of the bundle, at most [`FILE_MAX`] bytes (a profile is tens of
/// KiB; the bound keeps a damaged file from costing more); None when it
/// does not exist.
fn read_bounded(path: &Path) -> Result<Option<Vec<u8>>, Refused> {
    let mut text = Vec::new();
    match std::fs::File::open(path).and_then(|f| f.take(FILE_MAX + 1).read_to_end(&mut text)) {
        Ok(n) if n as u64 > FILE_MAX => Err(bundle_err(
            path.display(),
            format!("larger than {FILE_MAX} bytes"),
        )),
        Ok(_) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(bundle_err(path.display(), e)),
    }
}

fn nnp(process: &Value) -> bool {
    process["noNewPrivileges"] == Value::Bool(true)
}

/// The executor for an exec in the container of `dir`, whose bundle
/// config is `bundle`; `process` is the exec'd process (the bundle's with
/// the exec's argv), whose capabilities are widened when the process is
/// handed off here.
pub fn executor(
    dir: &Path,
    layout: &Layout,
    bundle: &Value,
    process: &mut Value,
) -> Result<SeccompExecutor, Refused> {
    let cache = layout.run_dir.join("seccomp");
    let caps_path = dir.join("bundle").join(seccomp_handoff::FILE);
    let Some(text) = read_bounded(&dir.join("bundle").join(SECCOMP_FILE))? else {
        // widened capabilities without their filter: never run that
        if caps_path.exists() {
            return Err(Refused::Damaged(caps_path));
        }
        let seccomp = &bundle["linux"]["seccomp"];
        if seccomp.is_null() {
            return Ok(SeccompExecutor::new(None));
        }
        let profile: LinuxSeccomp =
            serde_json::from_value(seccomp.clone()).map_err(|e| bundle_err("linux.seccomp", e))?;
        let own_bounding = crate::caps::own_bounding_set(
            &std::fs::read_to_string("/proc/self/status").unwrap_or_default(),
        );
        return loaded_by_libcontainer(&cache, &profile, bundle, process, own_bounding);
    };
    let profile: LinuxSeccomp =
        serde_json::from_slice(&text).map_err(|e| bundle_err(SECCOMP_FILE, e))?;
    let program = seccomp_bpf::cached(&cache, &profile).map_err(Refused::Program)?;
    if nnp(process) {
        return Ok(SeccompExecutor::new(Some(program)));
    }
    // without no_new_privs, only with the capabilities to drop to: never
    // the bundle's widened ones
    let Some(caps) = read_bounded(&caps_path)? else {
        return Err(Refused::NoCapabilities(caps_path));
    };
    let caps: LinuxCapabilities =
        serde_json::from_slice(&caps).map_err(|e| bundle_err(seccomp_handoff::FILE, e))?;
    SeccompExecutor::dropping(program, caps).map_err(Refused::Handoff)
}

/// A profile the container's init loaded through libcontainer: the same
/// program with the profile's flags, or a refusal. `own_bounding` is the
/// shim's own bounding set (what a hand-off can grant).
fn loaded_by_libcontainer(
    cache: &Path,
    profile: &LinuxSeccomp,
    bundle: &Value,
    process: &mut Value,
    own_bounding: u64,
) -> Result<SeccompExecutor, Refused> {
    if seccomp_bpf::has_notify(profile) {
        return Err(Refused::Notify);
    }
    let flags = seccomp_bpf::load_flags(profile);
    let mut spec = serde_json::json!({
        "process": process.take(),
        "linux": {"namespaces": bundle["linux"]["namespaces"].clone()},
    });
    let handoff = !nnp(&spec["process"]);
    let possible = seccomp_handoff::possible(&spec, own_bounding);
    let own = if handoff && possible {
        Some(seccomp_handoff::widen(&mut spec).map_err(Refused::Handoff))
    } else {
        None
    };
    *process = spec["process"].take();
    if handoff && !possible {
        return Err(Refused::NoHandoff);
    }
    let program = seccomp_bpf::cached(cache, profile).map_err(Refused::Program)?;
    let executor = match own {
        Some(own) => SeccompExecutor::dropping(program, own?).map_err(Refused::Handoff)?,
        None => SeccompExecutor::new(Some(program)),
    };
    Ok(executor.with_flags(flags))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn profile(v: Value) -> LinuxSeccomp {
        serde_json::from_value(v).unwrap()
    }

    fn flagged() -> LinuxSeccomp {
        profile(json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "flags": ["SECCOMP_FILTER_FLAG_LOG"],
            "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO"}]
        }))
    }

    fn bundle(userns: bool) -> Value {
        let mut ns = vec![json!({"type": "pid"}), json!({"type": "mount"})];
        if userns {
            ns.push(json!({"type": "user"}));
        }
        json!({"linux": {"namespaces": ns}})
    }

    fn process(nnp: bool) -> Value {
        let caps = ["CAP_CHOWN"];
        let mut p = json!({"args": ["/bin/true"],
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps}});
        if nnp {
            p["noNewPrivileges"] = true.into();
        }
        p
    }

    const SYS_ADMIN: u64 = 1 << 21;
    const SETPCAP: u64 = 1 << 8;

    #[test]
    fn a_notify_action_is_refused_whatever_else_holds() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = serde_json::to_value(flagged()).unwrap();
        v["syscalls"][0]["action"] = "SCMP_ACT_NOTIFY".into();
        let mut p = process(true);
        let r = loaded_by_libcontainer(dir.path(), &profile(v), &bundle(false), &mut p, u64::MAX);
        let e = r.err().expect("refused");
        assert!(matches!(e, Refused::Notify), "{e}");
        assert!(e.to_string().contains("SCMP_ACT_NOTIFY"), "{e}");
        // nothing compiled or cached for it
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn flags_with_no_new_privs_load_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = process(true);
        let before = p.clone();
        // no hand-off needed: berth's own capabilities do not matter
        loaded_by_libcontainer(dir.path(), &flagged(), &bundle(false), &mut p, 0).unwrap();
        assert_eq!(p, before, "the process is left as it is");
    }

    #[test]
    fn without_no_new_privs_handed_off_here_or_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = process(false);
        loaded_by_libcontainer(dir.path(), &flagged(), &bundle(false), &mut p, u64::MAX).unwrap();
        assert_eq!(
            p["capabilities"]["effective"],
            json!(["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_SETPCAP"]),
            "widened for the load, dropped after it by the executor"
        );
        assert_eq!(p["args"], json!(["/bin/true"]));
        for (own, userns) in [(!SYS_ADMIN, false), (!SETPCAP, false), (u64::MAX, true)] {
            let mut p = process(false);
            let before = p.clone();
            let r = loaded_by_libcontainer(dir.path(), &flagged(), &bundle(userns), &mut p, own);
            let e = r.err().expect("refused");
            assert!(matches!(e, Refused::NoHandoff), "{own:x} {userns}: {e}");
            assert_eq!(p, before, "the process is given back unchanged");
        }
    }

    #[test]
    fn a_bundle_without_a_filter_runs_exec_without_one_and_damage_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout {
            run_dir: dir.path().to_path_buf(),
            state_dir: dir.path().to_path_buf(),
        };
        let c = dir.path().join("c");
        std::fs::create_dir_all(c.join("bundle")).unwrap();
        let mut p = process(false);
        executor(&c, &layout, &bundle(false), &mut p).unwrap();
        // a bundle's profile that is not a profile: refused, not unfiltered
        let mut b = bundle(false);
        b["linux"]["seccomp"] = json!({"defaultAction": 7});
        let e = executor(&c, &layout, &b, &mut p).err().expect("refused");
        assert!(matches!(e, Refused::Bundle { .. }), "{e}");
        // widened capabilities without the precompiled profile
        std::fs::write(c.join("bundle").join(seccomp_handoff::FILE), b"{}").unwrap();
        let e = executor(&c, &layout, &bundle(false), &mut p)
            .err()
            .expect("refused");
        assert!(matches!(e, Refused::Damaged(_)), "{e}");
    }
}
