//! The shim's control socket, `<run>/containers/<id>/shim.sock`: one JSON
//! request line, one JSON reply line.
//!
//! ```text
//! {"op":"status"}                          -> {"running":true,"pid":N,"started_at_ns":T} | {"exit":{...}}
//! {"op":"wait"}                            -> {"exit":{...}}            (when the container has ended)
//! {"op":"stop","grace_ms":N}               -> {"exit":{...}}            (SIGTERM, SIGKILL to the cgroup after N ms)
//! ```
//!
//! Exec is not an op: the agent runs a fresh single-threaded `berth-shim exec`
//! itself. Served from the shim, the helper would be the shim's child, and
//! the shim's reaper (`waitpid(-1)`, it is a subreaper) races any thread
//! waiting for it.
//!
//! The socket is served by threads the shim starts *after* libcontainer has
//! created the container (libcontainer must run while the process is single
//! threaded). Files stay the source of truth: `status.json` is written before
//! any waiter is woken, so an agent that finds no socket (the shim is gone,
//! or the path is too long for `sun_path`) reads the files instead.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroups;
use crate::layout::Exit;

/// Longest socket path the kernel accepts (sun_path is 108 bytes with the NUL).
pub const MAX_SOCK_PATH: usize = 107;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Request {
    Status,
    Wait,
    Stop { grace_ms: u64 },
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<Exit>,
    #[serde(default)]
    pub running: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The end of the container, shared between the shim's main thread and the socket threads.
#[derive(Default)]
pub struct ExitCell {
    exit: Mutex<Option<Exit>>,
    cv: Condvar,
}

impl ExitCell {
    pub fn set(&self, e: Exit) {
        *self.exit.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
        self.cv.notify_all();
    }

    pub fn get(&self) -> Option<Exit> {
        self.exit.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The exit, waiting up to `timeout` (forever with None).
    pub fn wait(&self, timeout: Option<Duration>) -> Option<Exit> {
        let g = self.exit.lock().unwrap_or_else(|p| p.into_inner());
        match timeout {
            None => self
                .cv
                .wait_while(g, |e| e.is_none())
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            Some(t) => self
                .cv
                .wait_timeout_while(g, t, |e| e.is_none())
                .unwrap_or_else(|p| p.into_inner())
                .0
                .clone(),
        }
    }
}

/// The container's init, signalled only while it is certainly ours: until the
/// shim reaps it, its pid cannot be reused (a zombie keeps it), and reaping
/// happens under this lock (see `shim::wait_for`).
#[derive(Default)]
pub struct InitGuard {
    reaped: Mutex<bool>,
}

impl InitGuard {
    /// Signal `pid` unless it has been reaped already.
    pub fn signal(&self, pid: Pid, sig: Signal) {
        let reaped = self.reaped.lock().unwrap_or_else(|p| p.into_inner());
        if !*reaped {
            let _ = kill(pid, sig);
        }
    }

    /// Reap with the lock held: `reap` must collect the exited init.
    pub fn reap<T>(&self, reap: impl FnOnce() -> T) -> T {
        let mut reaped = self.reaped.lock().unwrap_or_else(|p| p.into_inner());
        let r = reap();
        *reaped = true;
        r
    }
}

/// What the shim's socket threads act on.
#[derive(Clone)]
pub struct Server {
    pub dir: PathBuf,
    pub pid: Pid,
    pub cgroup: String,
    pub cg: Cgroups,
    pub exit: Arc<ExitCell>,
    pub init: Arc<InitGuard>,
}

impl Server {
    /// Bind `<dir>/shim.sock` and serve it from a thread (one more per connection).
    pub fn spawn(self) -> std::io::Result<()> {
        let sock = self.dir.join("shim.sock");
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock)?;
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = self.clone();
                std::thread::spawn(move || s.handle(conn));
            }
        });
        Ok(())
    }

    fn handle(&self, conn: UnixStream) {
        let mut line = String::new();
        let mut r = BufReader::new(&conn);
        if r.read_line(&mut line).is_err() {
            return;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Ok(Request::Status) => match self.exit.get() {
                Some(e) => Reply {
                    exit: Some(e),
                    ..Default::default()
                },
                None => Reply {
                    running: true,
                    pid: Some(self.pid.as_raw()),
                    ..Default::default()
                },
            },
            Ok(Request::Wait) => Reply {
                exit: self.exit.wait(None),
                ..Default::default()
            },
            Ok(Request::Stop { grace_ms }) => Reply {
                exit: Some(self.stop(Duration::from_millis(grace_ms))),
                ..Default::default()
            },
            Err(e) => Reply {
                error: Some(format!("bad request: {e}")),
                ..Default::default()
            },
        };
        let mut w = &conn;
        let _ = serde_json::to_writer(&mut w, &reply);
        let _ = w.write_all(b"\n");
    }

    /// SIGTERM to the init, then after `grace` SIGKILL to every process of the cgroup.
    fn stop(&self, grace: Duration) -> Exit {
        if let Some(e) = self.exit.get() {
            return e;
        }
        self.init.signal(self.pid, Signal::SIGTERM);
        if let Some(e) = self.exit.wait(Some(grace)) {
            return e;
        }
        loop {
            for p in self.cg.pids(&self.cgroup) {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            self.init.signal(self.pid, Signal::SIGKILL);
            if let Some(e) = self.exit.wait(Some(Duration::from_millis(500))) {
                return e;
            }
        }
    }
}

/// The socket of a container dir, when its path fits in `sun_path`.
pub fn sock_path(dir: &Path) -> Option<PathBuf> {
    let p = dir.join("shim.sock");
    (p.as_os_str().len() <= MAX_SOCK_PATH && p.exists()).then_some(p)
}

/// Agent side: one request, one reply line (`None` on any failure: the
/// caller falls back to the files).
pub async fn call(sock: &Path, req: &Request, timeout: Option<Duration>) -> Option<String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let fut = async {
        let mut s = tokio::net::UnixStream::connect(sock).await.ok()?;
        let mut line = serde_json::to_vec(req).ok()?;
        line.push(b'\n');
        s.write_all(&line).await.ok()?;
        let mut r = tokio::io::BufReader::new(s);
        let mut out = String::new();
        r.read_line(&mut out).await.ok()?;
        (!out.is_empty()).then_some(out)
    };
    match timeout {
        Some(t) => tokio::time::timeout(t, fut).await.ok().flatten(),
        None => fut.await,
    }
}
