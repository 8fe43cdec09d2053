//! cgroups as files: detect v1 (or hybrid) vs v2, read OOM kills and usage,
//! list and kill a cgroup's processes, remove dirs. Limits themselves are
//! written by libcontainer from the OCI spec (pod cgroups: berth-runtime). The cgroupfs root is a
//! parameter so v2 is unit-tested on a fake tree (this host is v1 hybrid).

use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

#[derive(Debug, Clone)]
pub struct Cgroups {
    pub root: PathBuf,
    pub version: Version,
}

impl Cgroups {
    /// v2 when `<root>/cgroup.controllers` exists (unified), else v1 (legacy or hybrid).
    pub fn detect(root: &Path) -> Self {
        let version = if root.join("cgroup.controllers").exists() {
            Version::V2
        } else {
            Version::V1
        };
        Self {
            root: root.to_path_buf(),
            version,
        }
    }

    /// The controllers this host offers: v2 the root's `cgroup.controllers`,
    /// v1 the mounted hierarchies (`cpu,cpuacct` counts as both).
    pub fn controllers(&self) -> Vec<String> {
        let mut out: Vec<String> = match self.version {
            Version::V2 => fs::read_to_string(self.root.join("cgroup.controllers"))
                .unwrap_or_default()
                .split_whitespace()
                .map(String::from)
                .collect(),
            Version::V1 => self
                .v1_hierarchies(true)
                .iter()
                .flat_map(|p| {
                    let n = p
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    n.split(',').map(String::from).collect::<Vec<_>>()
                })
                .collect(),
        };
        out.sort();
        out.dedup();
        out
    }

    /// v1: the mounted hierarchies under the root, each once (symlinks such
    /// as `cpu -> cpu,cpuacct` only with `with_links`). A directory counts
    /// only when it is a cgroup filesystem's root (it has `cgroup.procs`):
    /// a plain directory left behind by an unmounted hierarchy is not one,
    /// so no pod cgroup is looked for, created or removed in it.
    pub fn v1_hierarchies(&self, with_links: bool) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = fs::read_dir(&self.root)
            .map(|rd| {
                rd.flatten()
                    .map(|e| e.path())
                    .filter(|p| with_links || !p.is_symlink())
                    .filter(|p| p.join("cgroup.procs").is_file())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// v1: whether `controller` names a mounted hierarchy (see [`Self::v1_hierarchies`]).
    pub fn v1_mounted(&self, controller: &str) -> bool {
        self.root.join(controller).join("cgroup.procs").is_file()
    }

    fn dir(&self, controller: &str, path: &str) -> PathBuf {
        let rel = path.trim_start_matches('/');
        match self.version {
            Version::V2 => self.root.join(rel),
            Version::V1 => self.root.join(controller).join(rel),
        }
    }

    /// Count of OOM kills in the cgroup (v1 `memory.oom_control` `oom_kill`, v2 `memory.events` `oom_kill`).
    pub fn oom_kills(&self, path: &str) -> u64 {
        let (file, key) = match self.version {
            Version::V1 => (
                self.dir("memory", path).join("memory.oom_control"),
                "oom_kill",
            ),
            Version::V2 => (self.dir("", path).join("memory.events"), "oom_kill"),
        };
        read_key(&file, key).unwrap_or(0)
    }

    /// PIDs in the cgroup (and below it).
    pub fn pids(&self, path: &str) -> Vec<i32> {
        let base = match self.version {
            Version::V1 => self.dir("pids", path),
            Version::V2 => self.dir("", path),
        };
        let mut out = Vec::new();
        let mut stack = vec![base];
        while let Some(d) = stack.pop() {
            if let Ok(s) = fs::read_to_string(d.join("cgroup.procs")) {
                out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
            if let Ok(rd) = fs::read_dir(&d) {
                stack.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
            }
        }
        out
    }

    /// (cpu nanoseconds, working set bytes)
    pub fn usage(&self, path: &str) -> (u64, u64) {
        match self.version {
            Version::V1 => {
                let cpu = fs::read_to_string(self.dir("cpuacct", path).join("cpuacct.usage"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                let mem_dir = self.dir("memory", path);
                let usage: u64 = fs::read_to_string(mem_dir.join("memory.usage_in_bytes"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                let inactive =
                    read_key(&mem_dir.join("memory.stat"), "total_inactive_file").unwrap_or(0);
                (cpu, usage.saturating_sub(inactive))
            }
            Version::V2 => {
                let d = self.dir("", path);
                let cpu = read_key(&d.join("cpu.stat"), "usage_usec").unwrap_or(0) * 1000;
                let usage: u64 = fs::read_to_string(d.join("memory.current"))
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .unwrap_or(0);
                let inactive = read_key(&d.join("memory.stat"), "inactive_file").unwrap_or(0);
                (cpu, usage.saturating_sub(inactive))
            }
        }
    }

    /// Remove the cgroup dir (deepest first) in every hierarchy; missing is fine.
    pub fn remove(&self, path: &str) {
        let rel = path.trim_start_matches('/');
        let bases: Vec<PathBuf> = match self.version {
            Version::V2 => vec![self.root.clone()],
            Version::V1 => self.v1_hierarchies(false),
        };
        for b in bases {
            let d = b.join(rel);
            remove_tree(&d);
        }
    }
}

impl Cgroups {
    /// After the container's init has ended: SIGKILL whatever is left in its
    /// cgroup and remove the cgroup, retrying while the killed processes
    /// exit (as libcontainer's delete does), for about a second at most.
    /// Returns whether the cgroup is gone from every hierarchy: on a loaded
    /// host a killed process can take longer than that to leave, and the
    /// caller then retries later rather than leak the cgroup.
    pub fn kill_and_remove(&self, path: &str) -> bool {
        if path.trim_matches('/').is_empty() {
            return false;
        }
        let deadline = std::time::Instant::now() + KILL_AND_REMOVE_WAIT;
        let mut delay = std::time::Duration::from_millis(5);
        loop {
            self.kill_all(path);
            self.remove(path);
            if !self.exists_anywhere(path) {
                return true;
            }
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(std::time::Duration::from_millis(100));
        }
    }

    /// SIGKILL every process in the cgroup and below it; never the root's.
    /// On v2 through `cgroup.kill` (kernel 5.14+: atomic, no fork races),
    /// then by pid for what a kernel without it leaves.
    pub fn kill_all(&self, path: &str) {
        if path.trim_matches('/').is_empty() {
            return;
        }
        if self.version == Version::V2 {
            let kill = self.dir("", path).join("cgroup.kill");
            if kill.exists() {
                let _ = fs::write(kill, "1");
            }
        }
        for p in self.pids(path) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(p),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }

    /// Whether the cgroup dir is still there in any hierarchy. On v1 each
    /// hierarchy's rmdir is separate: a process that leaves between two of
    /// them lets the later ones succeed and leaves the earlier ones behind.
    pub fn exists_anywhere(&self, path: &str) -> bool {
        let rel = path.trim_start_matches('/');
        match self.version {
            Version::V2 => self.root.join(rel).is_dir(),
            Version::V1 => self
                .v1_hierarchies(false)
                .iter()
                .any(|b| b.join(rel).is_dir()),
        }
    }
}

/// The cgroup beside a pod's containers where their supervisors live
/// (`<instance>/<pod key>/supervisor`): a leaf, as v2 allows processes only
/// in leaves once the pod enables controllers for its children.
pub const SUPERVISOR_LEAF: &str = "supervisor";

/// How long [`Cgroups::kill_and_remove`] waits for killed processes to leave.
const KILL_AND_REMOVE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// The v1 hierarchies a supervisor joins: what its log copying costs
/// (memory, CPU time) and its one pid count against the pod.
const SUPERVISOR_V1: [&str; 4] = ["memory", "cpu", "cpuacct", "pids"];

impl Cgroups {
    /// The pod cgroup of a container cgroup path (`/<instance>/<pod>/<id>`
    /// -> `/<instance>/<pod>`); `None` when that would be the root or the
    /// instance's own cgroup.
    pub fn pod_of(container: &str) -> Option<&str> {
        let (pod, id) = container.trim_end_matches('/').rsplit_once('/')?;
        (!id.is_empty() && pod.trim_matches('/').contains('/')).then_some(pod)
    }

    /// Move process `pid` into the pod's [`SUPERVISOR_LEAF`], in every
    /// hierarchy where the pod's cgroup exists (v1: memory, cpu, cpuacct,
    /// pids). Returns how many hierarchies it joined; an error when none.
    pub fn join_supervisor_leaf(&self, pod: &str, pid: u32) -> std::io::Result<usize> {
        let rel = pod.trim_matches('/');
        if rel.is_empty()
            || rel
                .split('/')
                .any(|c| c == ".." || c == "." || c.is_empty())
        {
            return Err(std::io::Error::other(format!("bad pod cgroup {pod:?}")));
        }
        let bases: Vec<PathBuf> = match self.version {
            Version::V2 => vec![self.root.clone()],
            Version::V1 => {
                let mut seen = Vec::new();
                for c in SUPERVISOR_V1 {
                    // cpu and cpuacct are often one hierarchy under two names
                    if let Ok(real) = fs::canonicalize(self.root.join(c))
                        && !seen.contains(&real)
                    {
                        seen.push(real);
                    }
                }
                seen
            }
        };
        let mut joined = 0;
        let mut last = None;
        for b in bases {
            let pod_dir = b.join(rel);
            if !pod_dir.is_dir() {
                continue;
            }
            let leaf = pod_dir.join(SUPERVISOR_LEAF);
            let r = match fs::create_dir(&leaf) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(e),
                _ => fs::write(leaf.join("cgroup.procs"), pid.to_string()),
            };
            match r {
                Ok(()) => joined += 1,
                Err(e) => {
                    last = Some(std::io::Error::new(
                        e.kind(),
                        format!("joining {}: {e}", leaf.display()),
                    ))
                }
            }
        }
        match (joined, last) {
            (0, Some(e)) => Err(e),
            (0, None) => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("pod cgroup {pod} not found"),
            )),
            (n, _) => Ok(n),
        }
    }
}

fn remove_tree(d: &Path) {
    if let Ok(rd) = fs::read_dir(d) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                remove_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(d);
}

fn read_key(file: &Path, key: &str) -> Option<u64> {
    let s = fs::read_to_string(file).ok()?;
    s.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next()? == key).then(|| it.next()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_fake_tree() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::write(r.join("cgroup.controllers"), "cpu memory pids").unwrap();
        let d = r.join("berth/pod/c1");
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(
            d.join("memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        fs::write(d.join("cgroup.procs"), "10\n11\n").unwrap();
        fs::write(d.join("sub/cgroup.procs"), "12\n").unwrap();
        fs::write(d.join("cpu.stat"), "usage_usec 1500\nuser_usec 1000\n").unwrap();
        fs::write(d.join("memory.current"), "1000\n").unwrap();
        fs::write(d.join("memory.stat"), "anon 500\ninactive_file 200\n").unwrap();
        let cg = Cgroups::detect(r);
        assert_eq!(cg.version, Version::V2);
        assert_eq!(cg.oom_kills("/berth/pod/c1"), 1);
        let mut p = cg.pids("/berth/pod/c1");
        p.sort();
        assert_eq!(p, vec![10, 11, 12]);
        assert_eq!(cg.usage("/berth/pod/c1"), (1_500_000, 800));
        // files prevent rmdir on a real cgroupfs only; here remove the files first
        for f in [
            "memory.events",
            "cgroup.procs",
            "cpu.stat",
            "memory.current",
            "memory.stat",
            "sub/cgroup.procs",
        ] {
            fs::remove_file(d.join(f)).unwrap();
        }
        cg.remove("/berth/pod/c1");
        assert!(!d.exists());
    }

    // regression: on v1 the cgroup counted as gone once the memory
    // hierarchy's dir was; a process that left between two rmdirs kept the
    // earlier hierarchies' dirs, and nothing ever removed them
    #[test]
    fn v1_cgroup_exists_while_any_hierarchy_has_it() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for h in ["memory", "pids", "cpu,cpuacct"] {
            fs::create_dir_all(r.join(h).join("berth/pod/c")).unwrap();
            fs::write(r.join(h).join("cgroup.procs"), "").unwrap();
        }
        std::os::unix::fs::symlink(r.join("cpu,cpuacct"), r.join("cpu")).unwrap();
        // a plain directory (an unmounted hierarchy's mount point) is not one
        fs::create_dir_all(r.join("hugetlb/berth/pod/c")).unwrap();
        let cg = Cgroups::detect(r);
        assert_eq!(cg.version, Version::V1);
        assert_eq!(cg.controllers(), ["cpu", "cpuacct", "memory", "pids"]);
        assert!(r.join("hugetlb/berth/pod/c").is_dir());
        fs::remove_dir(r.join("memory/berth/pod/c")).unwrap();
        assert!(cg.exists_anywhere("/berth/pod/c"), "pids still has it");
        assert!(cg.kill_and_remove("/berth/pod"));
        assert!(!cg.exists_anywhere("/berth/pod"));
        assert!(!r.join("pids/berth/pod").exists());
        assert!(r.join("pids/berth").is_dir(), "the parent stays");
        assert!(
            r.join("hugetlb/berth/pod/c").is_dir(),
            "not a hierarchy: left alone"
        );
    }

    #[test]
    fn v1_layout() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let m = r.join("memory/berth/c");
        fs::create_dir_all(&m).unwrap();
        fs::write(
            m.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        let cg = Cgroups::detect(r);
        assert_eq!(cg.version, Version::V1);
        assert_eq!(cg.oom_kills("/berth/c"), 2);
    }

    #[test]
    fn supervisor_leaf_on_fake_trees() {
        assert_eq!(
            Cgroups::pod_of("/btx/default_p_1/c1"),
            Some("/btx/default_p_1")
        );
        assert_eq!(Cgroups::pod_of("/btx/c1"), None);
        assert_eq!(Cgroups::pod_of("c1"), None);
        // v2: the leaf is made below the pod and the pid written into it
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::write(r.join("cgroup.controllers"), "cpu memory pids").unwrap();
        fs::create_dir_all(r.join("btx/pod")).unwrap();
        let cg = Cgroups::detect(r);
        assert_eq!(cg.join_supervisor_leaf("/btx/pod", 42).unwrap(), 1);
        assert_eq!(
            fs::read_to_string(r.join("btx/pod/supervisor/cgroup.procs")).unwrap(),
            "42"
        );
        assert!(cg.join_supervisor_leaf("/btx/gone", 42).is_err());
        assert!(cg.join_supervisor_leaf("/btx/../x", 42).is_err());
        // v1: memory, cpu (= cpuacct through a symlink) and pids; not cpuset
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        for c in ["memory", "cpu,cpuacct", "pids", "cpuset"] {
            fs::create_dir_all(r.join(c).join("btx/pod")).unwrap();
            fs::write(r.join(c).join("cgroup.procs"), "").unwrap();
        }
        std::os::unix::fs::symlink("cpu,cpuacct", r.join("cpu")).unwrap();
        std::os::unix::fs::symlink("cpu,cpuacct", r.join("cpuacct")).unwrap();
        let cg = Cgroups::detect(r);
        assert_eq!(cg.join_supervisor_leaf("/btx/pod", 7).unwrap(), 3);
        for c in ["memory", "cpu,cpuacct", "pids"] {
            let f = r.join(c).join("btx/pod/supervisor/cgroup.procs");
            assert_eq!(fs::read_to_string(f).unwrap(), "7");
        }
        assert!(!r.join("cpuset/btx/pod/supervisor").exists());
    }

    #[test]
    fn never_kills_the_root_cgroup() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        fs::write(r.join("cgroup.controllers"), "pids").unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        fs::write(r.join("cgroup.procs"), format!("{}\n", child.id())).unwrap();
        let cg = Cgroups::detect(r);
        for path in ["", "/", "//"] {
            cg.kill_all(path);
            assert!(!cg.kill_and_remove(path));
        }
        assert!(child.try_wait().unwrap().is_none(), "killed from the root");
        assert!(r.join("cgroup.procs").exists());
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
