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
//! The socket is served by the supervisor's single-threaded poll loop (see
//! [`crate::supervise`]), after libcontainer has created the container; the
//! agent's client is `berth_runtime::control::call`. Files
//! stay the source of truth: `status.json` is written before any waiter is
//! answered, so an agent that finds no socket (the shim is gone, or the path
//! is too long for `sun_path`) reads the files instead.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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

/// The socket of a container dir, when its path fits in `sun_path`.
pub fn sock_path(dir: &Path) -> Option<PathBuf> {
    let p = dir.join("shim.sock");
    (p.as_os_str().len() <= MAX_SOCK_PATH && p.exists()).then_some(p)
}
