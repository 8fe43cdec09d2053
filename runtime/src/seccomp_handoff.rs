//! The RuntimeDefault filter for a process WITHOUT no_new_privs (the
//! Kubernetes default, allowPrivilegeEscalation unset), loaded by berth.
//!
//! Without no_new_privs the kernel loads a filter only for a caller with
//! CAP_SYS_ADMIN, and libcontainer's init has dropped the spec's
//! capabilities before berth's executor runs. libcontainer therefore loads
//! such a profile itself, before its capability drop, compiling it with
//! libseccomp in every init; and its tenant builder (`berth-shim exec`)
//! drops `linux.seccomp`, so an exec'd process ran unfiltered.
//!
//! The hand-off: libcontainer gets the spec without `linux.seccomp` and
//! with [`NEEDED`] added to the bounding, effective and permitted sets
//! ([`widen`]). Its init does everything as before (setresuid with
//! keepcaps, reset_effective, drop_privileges to the widened sets), then
//! calls the executor, which loads the precompiled program (CAP_SYS_ADMIN
//! still effective) and drops the capabilities to exactly the spec's own
//! sets with libcontainer's own `drop_privileges` (bounding, effective,
//! permitted, inheritable, ambient). The filter allows capget, capset and
//! prctl (every RuntimeDefault profile does: libcontainer's own path makes
//! the same calls under the filter), and a filter stays loaded when the
//! capability that loaded it is dropped. A failure fails the start.
//!
//! Not handed off (left to libcontainer): a process in a user namespace of
//! its own, a shim whose own bounding set lacks one of [`NEEDED`], and a
//! spec whose capability sets are not all three lists. An exec'd process
//! of such a container is handed off at exec time where [`possible`], and
//! refused otherwise ([`crate::exec_seccomp`]).

use oci_spec::runtime::LinuxCapabilities;
use serde_json::Value;

/// What the executor needs beyond the spec's capabilities: CAP_SYS_ADMIN
/// to load a filter without no_new_privs, CAP_SETPCAP to drop the
/// bounding set afterwards.
pub const NEEDED: [&str; 2] = ["CAP_SYS_ADMIN", "CAP_SETPCAP"];
const NEEDED_BITS: [u32; 2] = [21, 8];

/// The sets berth hands libcontainer (and widens).
const SETS: [&str; 3] = ["bounding", "effective", "permitted"];

/// Where the supervisor keeps the spec's own capabilities for
/// `berth-shim exec` (the bundle's config.json has the widened ones).
pub const FILE: &str = "capabilities.json";

/// Whether the process of `spec` can be handed off: no user namespace of
/// its own, [`NEEDED`] in the shim's bounding set `own_bounding`, and the
/// three capability sets present as lists.
pub fn possible(spec: &Value, own_bounding: u64) -> bool {
    let userns = spec["linux"]["namespaces"]
        .as_array()
        .is_some_and(|ns| ns.iter().any(|n| n["type"] == "user"));
    let grantable = NEEDED_BITS.iter().all(|b| own_bounding & (1u64 << b) != 0);
    let caps = &spec["process"]["capabilities"];
    let lists = SETS.iter().all(|s| caps[*s].is_array());
    !userns && grantable && lists
}

#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    #[error("the process's capabilities: {0}")]
    Capabilities(#[source] serde_json::Error),
    #[error("the process has no {0} capability set")]
    Missing(&'static str),
}

/// The spec's own capabilities (what the executor drops to), after adding
/// [`NEEDED`] to the bounding, effective and permitted sets of `spec`.
/// Call only when [`possible`].
pub fn widen(spec: &mut Value) -> Result<LinuxCapabilities, HandoffError> {
    let caps = &mut spec["process"]["capabilities"];
    let own: LinuxCapabilities =
        serde_json::from_value(caps.clone()).map_err(HandoffError::Capabilities)?;
    check(&own)?;
    for set in SETS {
        let Some(list) = caps[set].as_array_mut() else {
            return Err(HandoffError::Missing(set));
        };
        for n in NEEDED {
            if !list.iter().any(|c| c == n) {
                list.push(n.into());
            }
        }
    }
    Ok(own)
}

/// The sets `drop_privileges` leaves alone when absent must be present:
/// otherwise the widened ones would stay.
pub fn check(caps: &LinuxCapabilities) -> Result<(), HandoffError> {
    if caps.bounding().is_none() {
        return Err(HandoffError::Missing("bounding"));
    }
    if caps.effective().is_none() {
        return Err(HandoffError::Missing("effective"));
    }
    if caps.permitted().is_none() {
        return Err(HandoffError::Missing("permitted"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(caps: &[&str]) -> Value {
        json!({"process": {"capabilities": {"bounding": caps, "effective": caps, "permitted": caps}},
               "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]}})
    }

    #[test]
    fn widens_three_sets_and_returns_the_own_ones() {
        let mut v = spec(&["CAP_CHOWN", "CAP_SETPCAP"]);
        let own = widen(&mut v).unwrap();
        for s in SETS {
            let l: Vec<&str> = v["process"]["capabilities"][s]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            assert_eq!(l, ["CAP_CHOWN", "CAP_SETPCAP", "CAP_SYS_ADMIN"], "{s}");
        }
        assert_eq!(own.bounding().as_ref().unwrap().len(), 2);
        assert!(own.inheritable().is_none() && own.ambient().is_none());
        assert!(v["process"]["capabilities"]["inheritable"].is_null());
    }

    #[test]
    fn drop_all_is_widened_from_empty_and_dropped_to_empty() {
        let mut v = spec(&[]);
        let own = widen(&mut v).unwrap();
        assert_eq!(v["process"]["capabilities"]["effective"], json!(NEEDED));
        assert!(own.effective().as_ref().unwrap().is_empty());
    }

    #[test]
    fn not_possible_without_the_needed_bits_a_set_or_with_a_user_namespace() {
        let v = spec(&["CAP_CHOWN"]);
        assert!(possible(&v, u64::MAX));
        assert!(!possible(&v, !(1u64 << 21)));
        assert!(!possible(&v, !(1u64 << 8)));
        let mut u = v.clone();
        u["linux"]["namespaces"] = json!([{"type": "user"}]);
        assert!(!possible(&u, u64::MAX));
        let mut p = v.clone();
        p["process"]["capabilities"]
            .as_object_mut()
            .unwrap()
            .remove("permitted");
        assert!(!possible(&p, u64::MAX));
    }
}
