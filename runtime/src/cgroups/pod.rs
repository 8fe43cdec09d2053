//! The pod-level cgroup `<instance>/<pod key>`: created by `ensure_sandbox`
//! with the pod's limits (when the pod has any), so the containers
//! libcontainer creates below it are bounded together. v1 writes the memory,
//! cpu and pids hierarchies (libcontainer creates the others for its
//! containers); v2 also enables the controllers for the children in each
//! ancestor's `cgroup.subtree_control`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use berth_contract::Resources;

use super::{Cgroups, Version};

/// A failed cgroup write, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("writing {value:?} to {}", file.display())]
pub struct CgroupWriteError {
    pub file: PathBuf,
    pub value: String,
    #[source]
    pub source: io::Error,
}

fn write(file: PathBuf, value: String) -> Result<(), CgroupWriteError> {
    fs::write(&file, &value).map_err(|source| CgroupWriteError {
        file,
        value,
        source,
    })
}

fn mkdir(d: &Path) -> Result<(), CgroupWriteError> {
    fs::create_dir_all(d).map_err(|source| CgroupWriteError {
        file: d.to_path_buf(),
        value: "(mkdir)".into(),
        source,
    })
}

/// cgroup v1 cpu.shares from a CPU request (Kubernetes' formula, min 2).
pub fn shares(millis: u64) -> u64 {
    (millis * 1024 / 1000).max(2)
}

/// cgroup v2 cpu.weight from v1 shares: the conversion Kubernetes uses
/// today (runc 1.3.2+, and libcontainer for berth's containers), a quadratic
/// in log2(shares) that keeps 2 -> 1, 1024 -> 100 and 262144 -> 10000
/// (500m -> 512 shares -> 59). Pods and containers share it, so a pod with
/// one container weighs what its container does.
pub fn weight(shares: u64) -> u64 {
    const MAX_WEIGHT: u64 = 10_000;
    match shares {
        0..=2 => 1,
        262_144.. => MAX_WEIGHT,
        s => {
            let l = (s as f64).log2();
            let exp = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            (10f64.powf(exp).ceil() as u64).clamp(1, MAX_WEIGHT)
        }
    }
}

/// The pod-level cgroup, on top of the shared [`Cgroups`].
pub trait PodCgroup {
    /// Create the pod's cgroup `path` (absolute from the hierarchy roots) and
    /// write its limits. Idempotent.
    fn ensure_pod(&self, path: &str, r: &Resources) -> Result<(), CgroupWriteError>;
}

impl PodCgroup for Cgroups {
    fn ensure_pod(&self, path: &str, r: &Resources) -> Result<(), CgroupWriteError> {
        let rel = path.trim_start_matches('/');
        match self.version {
            Version::V1 => {
                for ctl in ["memory", "cpu", "pids"] {
                    if self.v1_mounted(ctl) {
                        mkdir(&self.root.join(ctl).join(rel))?;
                    }
                }
                let mem = self.root.join("memory").join(rel);
                let has = |ctl: &str| self.v1_mounted(ctl);
                if let Some(m) = r.memory_limit_bytes.filter(|_| has("memory")) {
                    // memsw must stay >= the memory limit: raise it first when it exists
                    let memsw = mem.join("memory.memsw.limit_in_bytes");
                    if memsw.exists() {
                        let _ = write(memsw.clone(), m.to_string());
                    }
                    write(mem.join("memory.limit_in_bytes"), m.to_string())?;
                    if memsw.exists() {
                        write(memsw, m.to_string())?;
                    }
                }
                let cpu = self.root.join("cpu").join(rel);
                if let Some(l) = r.cpu_limit_millis.filter(|_| has("cpu")) {
                    write(cpu.join("cpu.cfs_period_us"), "100000".into())?;
                    write(cpu.join("cpu.cfs_quota_us"), (l * 100).to_string())?;
                }
                if let Some(q) = r.cpu_request_millis.filter(|_| has("cpu")) {
                    write(cpu.join("cpu.shares"), shares(q).to_string())?;
                }
                if let Some(p) = r.pids_limit.filter(|_| has("pids")) {
                    write(
                        self.root.join("pids").join(rel).join("pids.max"),
                        p.to_string(),
                    )?;
                }
            }
            Version::V2 => {
                // enable the controllers for children all the way down; only
                // those the kernel offers (a missing one is degraded mode:
                // its limits are not enforced, and `berth doctor` and the
                // node status say so)
                let offered = self.controllers();
                let has = |c: &str| offered.iter().any(|o| o == c);
                let enable = ["cpu", "memory", "pids"]
                    .into_iter()
                    .filter(|c| has(c))
                    .map(|c| format!("+{c}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                let mut cur = self.root.clone();
                for part in Path::new(rel).components() {
                    if !enable.is_empty() {
                        let _ = write(cur.join("cgroup.subtree_control"), enable.clone());
                    }
                    cur.push(part);
                    mkdir(&cur)?;
                }
                if !enable.is_empty() {
                    let _ = write(cur.join("cgroup.subtree_control"), enable);
                }
                if let Some(m) = r.memory_limit_bytes.filter(|_| has("memory")) {
                    write(cur.join("memory.max"), m.to_string())?;
                    if cur.join("memory.swap.max").exists() {
                        write(cur.join("memory.swap.max"), "0".into())?;
                    }
                }
                if let Some(l) = r.cpu_limit_millis.filter(|_| has("cpu")) {
                    write(cur.join("cpu.max"), format!("{} 100000", l * 100))?;
                }
                if let Some(q) = r.cpu_request_millis.filter(|_| has("cpu")) {
                    write(cur.join("cpu.weight"), weight(shares(q)).to_string())?;
                }
                if let Some(p) = r.pids_limit.filter(|_| has("pids")) {
                    write(cur.join("pids.max"), p.to_string())?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res() -> Resources {
        Resources {
            cpu_request_millis: Some(250),
            cpu_limit_millis: Some(500),
            memory_request_bytes: None,
            memory_limit_bytes: Some(64 << 20),
            pids_limit: Some(100),
        }
    }

    #[test]
    fn v2_pod_cgroup_on_a_fake_tree() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("cgroup.controllers"), "cpu memory pids").unwrap();
        let cg = Cgroups::detect(t.path());
        cg.ensure_pod("/btx/default_web_1", &res()).unwrap();
        let d = t.path().join("btx/default_web_1");
        let rd = |f: &str| fs::read_to_string(d.join(f)).unwrap();
        assert_eq!(rd("memory.max"), (64u64 << 20).to_string());
        assert_eq!(rd("cpu.max"), "50000 100000");
        assert_eq!(rd("cpu.weight"), weight(256).to_string());
        assert_eq!(rd("pids.max"), "100");
        assert_eq!(
            fs::read_to_string(t.path().join("cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids"
        );
        assert_eq!(
            fs::read_to_string(t.path().join("btx/cgroup.subtree_control")).unwrap(),
            "+cpu +memory +pids"
        );
        // idempotent
        cg.ensure_pod("/btx/default_web_1", &res()).unwrap();
    }

    #[test]
    fn v2_without_the_memory_controller_is_degraded_not_an_error() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("cgroup.controllers"), "cpu pids").unwrap();
        let cg = Cgroups::detect(t.path());
        cg.ensure_pod("/btx/p", &res()).unwrap();
        let d = t.path().join("btx/p");
        assert!(
            !d.join("memory.max").exists(),
            "no memory controller: no limit"
        );
        assert_eq!(fs::read_to_string(d.join("pids.max")).unwrap(), "100");
        assert_eq!(
            fs::read_to_string(t.path().join("cgroup.subtree_control")).unwrap(),
            "+cpu +pids"
        );
    }

    #[test]
    fn v1_pod_cgroup_on_a_fake_tree() {
        let t = tempfile::tempdir().unwrap();
        for c in ["memory", "cpu", "pids", "cpuset"] {
            fs::create_dir_all(t.path().join(c)).unwrap();
            fs::write(t.path().join(c).join("cgroup.procs"), "").unwrap();
        }
        let cg = Cgroups::detect(t.path());
        cg.ensure_pod("/btx/p", &res()).unwrap();
        assert_eq!(
            fs::read_to_string(t.path().join("memory/btx/p/memory.limit_in_bytes")).unwrap(),
            (64u64 << 20).to_string()
        );
        assert_eq!(
            fs::read_to_string(t.path().join("cpu/btx/p/cpu.cfs_quota_us")).unwrap(),
            "50000"
        );
        assert_eq!(
            fs::read_to_string(t.path().join("cpu/btx/p/cpu.shares")).unwrap(),
            "256"
        );
        assert_eq!(
            fs::read_to_string(t.path().join("pids/btx/p/pids.max")).unwrap(),
            "100"
        );
        assert!(
            !t.path().join("cpuset/btx").exists(),
            "libcontainer creates the others"
        );
        // no limits: only the dirs
        cg.ensure_pod("/btx/q", &Resources::default()).unwrap();
        assert!(t.path().join("memory/btx/q").is_dir());
        // a plain directory where no hierarchy is mounted gets nothing
        let t = tempfile::tempdir().unwrap();
        fs::create_dir_all(t.path().join("memory")).unwrap();
        fs::write(t.path().join("memory/cgroup.procs"), "").unwrap();
        fs::create_dir_all(t.path().join("pids")).unwrap();
        let cg = Cgroups::detect(t.path());
        cg.ensure_pod("/btx/p", &res()).unwrap();
        assert!(t.path().join("memory/btx/p").is_dir());
        assert!(!t.path().join("pids/btx").exists());
    }

    #[test]
    fn weights() {
        assert_eq!(weight(2), 1);
        assert_eq!(weight(0), 1);
        assert_eq!(weight(262_144), 10000);
        assert_eq!(weight(u64::MAX), 10000);
        // the Kubernetes figures: 500m -> 59, 1 CPU -> 100 (the default), 250m -> 35
        assert_eq!(weight(shares(500)), 59);
        assert_eq!(weight(shares(1000)), 100);
        assert_eq!(weight(shares(250)), 35);
        assert_eq!(weight(shares(100)), 17);
        // monotonic over the whole range
        let mut last = 0;
        for s in 2..=262_144u64 {
            let w = weight(s);
            assert!(w >= last, "weight({s}) = {w} < {last}");
            last = w;
        }
        assert_eq!(shares(1000), 1024);
        assert_eq!(shares(1), 2);
    }
}
