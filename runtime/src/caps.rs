//! Capabilities the host lets berth hand out, and the final security settings
//! of a spec. A container can only get capabilities in the shim's own bounding
//! set: on hosts (or sandboxes like this VM) where berth itself lacks one, say
//! CAP_SYS_RESOURCE, asking the kernel for it makes the container's start fail
//! with a bare "failed syscall". Privileged containers and `add: [ALL]` get
//! what is available; an explicitly added capability that is not available is
//! a configuration error naming it.

use berth_contract::Security;
use serde_json::Value;

use crate::oci::ALL_CAPS;

/// The bounding set of this process (`CapBnd` of /proc/self/status) as a bit mask.
pub fn own_bounding_set(proc_status: &str) -> u64 {
    proc_status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(u64::MAX)
}

fn bit(name: &str) -> Option<u32> {
    ALL_CAPS.iter().position(|c| *c == name).map(|i| i as u32)
}

/// Limit the process capabilities of `spec` to `bounding`, then put the
/// RuntimeDefault seccomp profile for the final set in place (when the spec
/// has berth's profile; a Localhost profile is the operator's and stays as
/// written). Err names an explicitly added capability the host lacks.
pub fn finish(spec: &mut Value, sec: &Security, bounding: u64) -> Result<(), String> {
    let wide = sec.privileged || sec.cap_add.iter().any(|c| c.eq_ignore_ascii_case("ALL"));
    let caps = &mut spec["process"]["capabilities"];
    let mut kept: Vec<String> = Vec::new();
    if let Some(list) = caps["bounding"].as_array() {
        for c in list.iter().filter_map(Value::as_str) {
            let ok = bit(c).is_none_or(|b| b < 64 && bounding & (1u64 << b) != 0);
            if ok {
                kept.push(c.to_string());
            } else if !wide {
                return Err(format!(
                    "capability {c} is not available to berth on this host (not in its bounding set)"
                ));
            }
        }
        for set in ["bounding", "effective", "permitted"] {
            caps[set] = serde_json::json!(kept);
        }
    }
    if spec["linux"]["seccomp"].is_object() && sec.seccomp_localhost.is_none() {
        spec["linux"]["seccomp"] = crate::seccomp::profile(&kept);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(caps: &[&str]) -> Value {
        json!({"process": {"capabilities": {"bounding": caps, "effective": caps, "permitted": caps}},
               "linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}})
    }

    #[test]
    fn reads_cap_bnd() {
        let s = "Name:\tx\nCapInh:\t0000000000000000\nCapBnd:\t000001fffeffffff\n";
        assert_eq!(own_bounding_set(s), 0x1fffeffffff);
    }

    #[test]
    fn privileged_gets_what_is_available() {
        let mut v = spec(&ALL_CAPS);
        let sec = Security {
            privileged: true,
            ..Default::default()
        };
        finish(&mut v, &sec, 0x1fffeffffff).unwrap();
        let eff = v["process"]["capabilities"]["effective"]
            .as_array()
            .unwrap();
        assert_eq!(eff.len(), ALL_CAPS.len() - 1);
        assert!(!eff.iter().any(|c| c == "CAP_SYS_RESOURCE"));
        // the RuntimeDefault filter became the allow-list for these caps
        assert_eq!(v["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
    }

    #[test]
    fn explicit_unavailable_cap_is_an_error() {
        let mut v = spec(&["CAP_CHOWN", "CAP_SYS_RESOURCE"]);
        let sec = Security {
            cap_add: vec!["SYS_RESOURCE".into()],
            ..Default::default()
        };
        let e = finish(&mut v, &sec, 0x1fffeffffff).unwrap_err();
        assert!(e.contains("CAP_SYS_RESOURCE"), "{e}");
    }

    // regression: the operator's Localhost profile was replaced by
    // RuntimeDefault here, so a stricter profile was silently not applied
    #[test]
    fn a_localhost_profile_stays_as_written() {
        let mut v = spec(&["CAP_CHOWN"]);
        let sec = Security {
            seccomp_localhost: Some("{}".into()),
            ..Default::default()
        };
        finish(&mut v, &sec, u64::MAX).unwrap();
        assert_eq!(
            v["linux"]["seccomp"],
            json!({"defaultAction": "SCMP_ACT_ALLOW"})
        );
    }

    #[test]
    fn unconfined_stays_unconfined() {
        let mut v = json!({"process": {"capabilities": {"bounding": ["CAP_CHOWN"]}}, "linux": {}});
        finish(&mut v, &Security::default(), u64::MAX).unwrap();
        assert!(v["linux"]["seccomp"].is_null());
    }
}
