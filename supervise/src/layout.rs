//! Where a container's files live, and the small JSON files the agent and the
//! shim exchange. Everything is written atomically (temp + rename; the run
//! dir's files without fsync, see [`write_volatile`]) and root-only: files
//! 0600, the dirs berth creates 0700.
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

/// One of the small JSON files of a container's run dir, written with
/// [`write_volatile`].
pub fn write_json<T: Serialize>(path: &Path, v: &T) -> std::io::Result<()> {
    let data = serde_json::to_vec(v).map_err(std::io::Error::other)?;
    write_volatile(path, &data)
}

/// Replace `path`, a file in the run dir, with `data`: a temp file (0600, a
/// name unique to this process and call, same dir) renamed over it, so a
/// reader sees the old or the new content, never a part. Unlike
/// [`write_atomic`] nothing is fsynced: the run dir describes processes,
/// which a reboot ends (it is a tmpfs on a standard host, where fsync costs
/// nothing anyway), and a crash of the agent or the supervisor alone loses
/// nothing the kernel has accepted. On a host whose /run is on disk that is
/// 6 fsyncs less per container start (shim.pid, state.json, status.json:
/// file and dir each), 0.3 to 2 ms each under load on the test host.
///
/// The directory must exist: a container dir removed meanwhile (its
/// teardown) is not brought back by a late writer, which would leave it
/// behind as a dir of one file.
pub fn write_volatile(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let res = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(data))
        .and_then(|()| fs::rename(&tmp, path));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res
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
    write_volatile(&dir.join("shim.pid"), format!("{pid}{st}").as_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn write_volatile_replaces_whole_root_only_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        write_volatile(&p, b"{\"pid\":1}").unwrap();
        write_volatile(&p, b"{\"pid\":22}").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"{\"pid\":22}");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        let names: Vec<String> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["state.json"]);
        // a dir that is gone is an error, and not made again
        assert!(write_volatile(&d.path().join("gone/z.json"), b"{}").is_err());
        assert!(!d.path().join("gone").exists());
        let gone = d.path().join("x/y/z.json");
        fs::create_dir_all(d.path().join("x")).unwrap();
        fs::write(d.path().join("x/y"), b"a file, not a dir").unwrap();
        assert!(write_volatile(&gone, b"{}").is_err());
    }
}
