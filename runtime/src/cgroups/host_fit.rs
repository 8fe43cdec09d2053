//! Fit a container's OCI `linux.resources` to the controllers this host
//! offers, the way Kubernetes runs on it:
//! - cgroup v2 with the memory controller: `memory.oom.group=1`, so an OOM
//!   kill takes the whole container (its init and every child) together, as
//!   the kubelet sets it on v2;
//! - a controller the kernel does not offer (the memory controller is off by
//!   default on some Raspberry Pi kernels): its limits are left out instead of
//!   failing every container; the agent's node status and `berth doctor`
//!   report the missing controller (degraded mode).

use serde_json::{Value, json};

use super::{Cgroups, Version};

/// What [`fit_resources`] left out, for the shim's log.
pub fn fit_resources(spec: &mut Value, cg: &Cgroups) -> Vec<&'static str> {
    let offered = cg.controllers();
    let has = |c: &str| offered.iter().any(|o| o == c);
    let mut dropped = Vec::new();
    let Some(res) = spec
        .get_mut("linux")
        .and_then(|l| l.get_mut("resources"))
        .and_then(Value::as_object_mut)
    else {
        return dropped;
    };
    for (key, ctl) in [("memory", "memory"), ("cpu", "cpu"), ("pids", "pids")] {
        if res.contains_key(key) && !has(ctl) {
            res.remove(key);
            dropped.push(ctl);
        }
    }
    if cg.version == Version::V2 && has("memory") {
        let unified = res.entry("unified").or_insert_with(|| json!({}));
        if let Some(u) = unified.as_object_mut() {
            u.insert("memory.oom.group".into(), json!("1"));
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn spec() -> Value {
        json!({"linux": {"resources": {
            "memory": {"limit": 1000, "swap": 1000},
            "cpu": {"shares": 512},
            "pids": {"limit": 100},
        }}})
    }

    #[test]
    fn v2_sets_oom_group_like_kubernetes() {
        let t = tempfile::tempdir().unwrap();
        fs::write(
            t.path().join("cgroup.controllers"),
            "cpuset cpu io memory pids",
        )
        .unwrap();
        let mut s = spec();
        assert!(fit_resources(&mut s, &Cgroups::detect(t.path())).is_empty());
        assert_eq!(s["linux"]["resources"]["unified"]["memory.oom.group"], "1");
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 1000);
    }

    #[test]
    fn a_missing_controller_drops_its_limits_only() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("cgroup.controllers"), "cpu pids").unwrap();
        let mut s = spec();
        assert_eq!(
            fit_resources(&mut s, &Cgroups::detect(t.path())),
            ["memory"]
        );
        let r = &s["linux"]["resources"];
        assert!(r.get("memory").is_none());
        assert!(
            r.get("unified").is_none(),
            "no memory controller: no oom.group"
        );
        assert_eq!(r["cpu"]["shares"], 512);
        assert_eq!(r["pids"]["limit"], 100);
    }

    #[test]
    fn v1_never_gets_unified_keys() {
        let t = tempfile::tempdir().unwrap();
        for c in ["memory", "cpu,cpuacct", "pids"] {
            fs::create_dir_all(t.path().join(c)).unwrap();
            fs::write(t.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        let mut s = spec();
        assert!(fit_resources(&mut s, &Cgroups::detect(t.path())).is_empty());
        assert!(s["linux"]["resources"].get("unified").is_none());
        // v1 without a memory hierarchy (its mount point left as a plain
        // directory): the memory limit goes
        fs::remove_file(t.path().join("memory/cgroup.procs")).unwrap();
        let mut s = spec();
        assert_eq!(
            fit_resources(&mut s, &Cgroups::detect(t.path())),
            ["memory"]
        );
    }
}
