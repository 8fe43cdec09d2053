//! A pod's shared PID namespace (`shareProcessNamespace`).
//!
//! A PID namespace lives only as long as its PID 1: when that process ends,
//! the kernel kills every other process in it and no new one can join. So,
//! as kubelet's pause container does, a small init holds it: `berth-shim
//! pidns DIR` (short-lived, in a session of its own) unshares a PID
//! namespace and starts `berth-shim pid1`, which becomes PID 1 of the pod,
//! reaps the orphans of the pod's containers and otherwise sleeps. Its host
//! PID is in `DIR/pidns.pid` (0600); the containers join
//! `/proc/<pid>/ns/pid`. The init is not the agent's child and survives the
//! agent being restarted; removing the pod's sandbox kills it (after
//! checking, through its command line and namespace, that the PID is still
//! that init).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::errno::Errno;
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

const PID_FILE: &str = "pidns.pid";
/// The word in the init's command line that identifies it.
const INIT_ARG: &str = "pid1";

fn pid_file(dir: &Path) -> PathBuf {
    dir.join(PID_FILE)
}

/// The init of the pod's PID namespace, if it still runs: its PID.
pub fn running(dir: &Path) -> Option<i32> {
    let pid: i32 = fs::read_to_string(pid_file(dir))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if pid <= 1 {
        return None;
    }
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let is_init = args.get(1) == Some(&INIT_ARG.as_bytes())
        && args
            .first()
            .is_some_and(|a| a.ends_with(b"berth-shim") || a.ends_with(b"berth-shim (deleted)"));
    // a process in a PID namespace of its own (not ours): the init we started
    let own = fs::read_link("/proc/self/ns/pid").ok()?;
    let its = fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
    (is_init && own != its).then_some(pid)
}

/// The path containers join: the running init's namespace, started first
/// when there is none (idempotent).
pub fn ensure(dir: &Path, shim: &Path) -> Result<PathBuf, String> {
    if let Some(pid) = running(dir) {
        return Ok(PathBuf::from(format!("/proc/{pid}/ns/pid")));
    }
    let _ = fs::remove_file(pid_file(dir));
    let out = Command::new(shim)
        .arg("pidns")
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("starting {} pidns: {e}", shim.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} pidns failed ({}): {}",
            shim.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // the file is written before `pidns` exits; the init may take a moment
    // to exec (its command line is the shim's until then)
    for _ in 0..100 {
        if let Some(pid) = running(dir) {
            return Ok(PathBuf::from(format!("/proc/{pid}/ns/pid")));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Err("the pod's PID namespace init did not come up in 1s".into())
}

/// Kill the init (and with it anything left in the namespace). Idempotent.
pub fn remove(dir: &Path) {
    if let Some(pid) = running(dir) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let _ = fs::remove_file(pid_file(dir));
}

/// `berth-shim pidns DIR`: unshare a PID namespace, start its init, write
/// the init's PID to `DIR/pidns.pid` and exit (the init is re-parented).
pub fn holder_main(dir: &Path) -> i32 {
    let _ = nix::unistd::setsid();
    if let Err(e) = unshare(CloneFlags::CLONE_NEWPID) {
        eprintln!("berth-shim pidns: unshare: {e}");
        return 1;
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("berth-shim pidns: finding its own executable: {e}");
            return 1;
        }
    };
    // the first child after unshare is PID 1 of the new namespace
    let child = match Command::new(exe)
        .arg(INIT_ARG)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth-shim pidns: starting the init: {e}");
            return 1;
        }
    };
    match berth_state::write_atomic_mode(
        &pid_file(dir),
        format!("{}\n", child.id()).as_bytes(),
        0o600,
    ) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("berth-shim pidns: writing {PID_FILE}: {e}");
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            1
        }
    }
}

/// `berth-shim pid1`: PID 1 of a pod's namespace: reap, otherwise sleep.
/// Signals sent from inside the namespace without a handler do not reach
/// it (the kernel protects a namespace's init), so only the agent ends it.
pub fn init_main() -> i32 {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}
