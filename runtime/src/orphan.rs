//! A container whose supervisor died.
//!
//! The supervisor owns its container: it is the init's parent, the only
//! reader of its output and the only one who learns how it ended. If it is
//! killed (by a user, the OOM killer, a bug), the container runs on
//! unsupervised: nobody copies its logs (its next write meets a closed pipe),
//! nobody can reap it, its exit code would be lost. [`ShimRuntime::wait`]
//! notices it (the control socket hangs up, `shim.pid` names no live process,
//! and no `status.json` was written) and hands the container here: every
//! process left in its cgroup is killed by pid, what the supervisor would have
//! removed is removed, and the end is recorded in `status.json` (the same
//! record the supervisor writes: 137/SIGKILL when the container still ran;
//! none when it had already ended unobserved, which `status` then reports as
//! `ContainerStatusUnknown`, see `observe`). The caller learns it as
//! [`ContainerState::Failed`] with reason [`SUPERVISOR_LOST`]; `status` then
//! reports the recorded exit, and the restart policy starts a new container.

use std::path::Path;
use std::time::{Duration, SystemTime};

use berth_contract::ContainerState;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::layout::{Exit, ns_of};
use crate::{ShimRuntime, shim_process};

/// Reason of the [`ContainerState::Failed`] that `wait` returns when the
/// container's supervisor died before the container's end was recorded.
pub const SUPERVISOR_LOST: &str = berth_contract::REASON_SUPERVISOR_LOST;

/// How long the orphaned processes get to die after SIGKILL.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

impl ShimRuntime {
    /// The container in `dir` was started, its supervisor is gone, and the
    /// supervisor recorded no end (it writes `status.json` before it exits,
    /// so checking the process first and the file second is never early).
    pub(crate) fn supervisor_gone(&self, dir: &Path) -> bool {
        dir.join("state.json").exists()
            && shim_process(dir).is_none()
            && !dir.join("status.json").exists()
    }

    /// Kill what is left of a container whose supervisor is gone, clean up
    /// after it and record its end; the `Failed { reason: SupervisorLost }`
    /// state for the caller.
    pub(crate) async fn replace_lost(&self, id: &str) -> ContainerState {
        let dir = self.layout.dir(id);
        let d = dir.clone();
        let (cgroup, started, init) = self
            .blocking(move |rt| {
                let cgroup = rt.identity_at(&d).ok().map(|s| s.cgroup_path);
                let started = crate::spec_file::read_started(&d).ok();
                (cgroup, started, rt.init_pid(&d))
            })
            .await;
        let was_running = init.is_some();
        let mut killed = Vec::new();
        if let Some(cg) = &cgroup {
            let t0 = tokio::time::Instant::now();
            loop {
                let c = cg.clone();
                let pids = self.blocking(move |rt| rt.cg.pids(&c)).await;
                if pids.is_empty() {
                    break;
                }
                if t0.elapsed() > KILL_TIMEOUT {
                    tracing::warn!(container = %id, ?pids, "orphaned processes did not die");
                    break;
                }
                for p in pids {
                    if kill(Pid::from_raw(p), Signal::SIGKILL).is_ok() && !killed.contains(&p) {
                        killed.push(p);
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // what the supervisor removes after its container: cgroup, libcontainer's state, mounts
        let (layout, cg, rootfs, owned_id) = (
            self.layout.clone(),
            self.cg.clone(),
            dir.join("rootfs"),
            id.to_string(),
        );
        let path = cgroup.clone().unwrap_or_default();
        let _ = tokio::task::spawn_blocking(move || {
            crate::supervise::cleanup(&layout, &owned_id, &rootfs, &cg, &path)
        })
        .await;
        // killed here: its end is known. Ended unobserved: no end is made
        // up, `status` reports it as ContainerStatusUnknown (see `observe`)
        let exit = was_running.then(|| Exit {
            exit_code: 137,
            signal: Some(Signal::SIGKILL as i32),
            oom_killed: false,
            started_at_ns: started.as_ref().map(|s| s.started_at_ns),
            finished_at_ns: ns_of(SystemTime::now()),
        });
        // only into the container dir as it is: a removal meanwhile wins
        let (d, owned_id) = (dir.clone(), id.to_string());
        self.blocking(move |_| {
            if let Some(exit) = exit
                && !d.join("status.json").exists()
                && let Ok(data) = serde_json::to_vec(&exit)
                && let Err(e) = crate::layout::write_atomic_in(&d.join("status.json"), &data, 0o600)
            {
                tracing::warn!(container = %owned_id, %e, "recording the end of an orphaned container");
            }
            let _ = std::fs::remove_file(d.join("shim.sock"));
        })
        .await;
        let message = match (was_running, init) {
            (true, Some(pid)) => format!(
                "the container's supervisor died while the container (pid {pid}) ran; \
                 killed it and its processes {killed:?}"
            ),
            _ => "the container's supervisor died; the container had ended unobserved, \
                  its exit code is lost"
                .to_string(),
        };
        tracing::warn!(container = %id, %message, "supervisor lost");
        ContainerState::Failed {
            reason: SUPERVISOR_LOST.into(),
            message,
        }
    }
}
