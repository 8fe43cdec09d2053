//! Where a container's files live, and the small JSON files the agent and the
//! shim exchange. Everything is written atomically (temp + fsync + rename)
//! and root-only: files 0600, the dirs berth creates 0700.
//!
//! ```text
//! <run>/containers/<id>/spec.json     ShimSpec: what to run (agent -> shim)
//!                      /identity.json who the container is, a copy of spec.json's
//!                                    identity fields (agent; berth_runtime::identity)
//!                      /shim.pid      the shim's pid
//!                      /state.json    Started { pid, started_at } (shim -> agent)
//!                      /error.json    SetupError { reason, message } (shim -> agent)
//!                      /status.json   Exit { code, signal, oom, ... } (shim -> agent, final)
//!                      /bundle/config.json, /rootfs (overlay mount point)
//! <run>/youki/<id>/                   libcontainer's state
//! <state>/containers/<id>/{upper,work} overlayfs upper and work dirs
//! <state>/logs/<pod key>/<container>/<restarts>.log   CRI-format logs (this run's and the previous one's)
//! ```

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Everything the shim needs, written by the agent before it starts the shim.
/// berth-runtime's `ShimSpec` has the container's whole configuration as `C`;
/// the supervisor reads the same file as `ShimSpec<ContainerId>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimSpec<C> {
    pub config: C,
    pub run_dir: PathBuf,
    pub state_dir: PathBuf,
    pub log_path: PathBuf,
    pub log_max_bytes: u64,
    pub log_max_files: u32,
    /// Absolute cgroup path, e.g. `/berth/<pod key>/<id>`.
    pub cgroup_path: String,
    pub default_pids_limit: i64,
}

/// The part of a `ContainerConfig` the supervisor needs (other fields are ignored).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerId {
    pub id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Started {
    pub pid: i32,
    pub started_at_ns: u128,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exit {
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub started_at_ns: Option<u128>,
    pub finished_at_ns: u128,
}

pub fn ns_of(t: SystemTime) -> u128 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

pub fn time_of(ns: u128) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_nanos(ns as u64)
}

#[derive(Debug, Clone)]
pub struct Layout {
    pub run_dir: PathBuf,
    pub state_dir: PathBuf,
}

impl Layout {
    pub fn containers(&self) -> PathBuf {
        self.run_dir.join("containers")
    }
    pub fn dir(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }
    pub fn youki_root(&self) -> PathBuf {
        self.run_dir.join("youki")
    }
    pub fn upper(&self, id: &str) -> PathBuf {
        self.state_dir.join("containers").join(id)
    }
    pub fn pod_dir(&self, pod_key: &str) -> PathBuf {
        self.run_dir.join("pods").join(pod_key)
    }
}

pub fn write_json<T: Serialize>(path: &Path, v: &T) -> std::io::Result<()> {
    let data = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    write_atomic(path, &data)
}

pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let data = fs::read(path).ok()?;
    serde_json::from_slice(&data).ok()
}

pub use berth_state::{write_atomic, write_atomic_in};

/// Create `dir` and its missing parents with mode 0700 (parents that exist
/// keep their mode).
pub fn create_private_dirs(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// `dir` exists and is root-only (0700), whatever its mode was.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    create_private_dirs(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// Start time of a process (field 22 of `/proc/<pid>/stat`, clock ticks since
/// boot). Unlike the pid it is never shared by two processes at once, and
/// exec does not change it.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    // after the comm: state is field 3, starttime field 22
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// `shim.pid`: `"<pid> <start time>"`, so a reused pid is never taken for the shim.
pub fn write_shim_pid(dir: &Path, pid: i32) -> std::io::Result<()> {
    let st = start_time(pid).map(|t| format!(" {t}")).unwrap_or_default();
    write_atomic(&dir.join("shim.pid"), format!("{pid}{st}").as_bytes())
}

/// The shim's pid if that process still is the one `shim.pid` names.
pub fn live_shim_pid(dir: &Path) -> Option<i32> {
    let s = fs::read_to_string(dir.join("shim.pid")).ok()?;
    let mut it = s.split_whitespace();
    let pid: i32 = it.next()?.parse().ok()?;
    let recorded: Option<u64> = it.next().and_then(|t| t.parse().ok());
    let now = start_time(pid)?;
    recorded.is_none_or(|r| r == now).then_some(pid)
}
