//! A container's state, decided from its files and, where a file cannot be
//! read, from its processes.
//!
//! ```text
//! status.json   the supervisor's record of the end          -> Exited
//! error.json    the shim's record of a failed setup         -> Failed
//! state.json    the init's pid and start (written once the init runs)
//!   readable    shim alive or init in the cgroup            -> Running
//!   unreadable  the container started: its cgroup's init   -> Running
//!               (the oldest process whose parent is not in the cgroup)
//!   either      nothing runs, the supervisor is gone, the end not recorded
//!               -> Failed { ContainerStatusUnknown }: kubelet's exit 137
//!   missing     shim alive -> Created; else the setup died  -> Failed
//! ```
//!
//! A damaged `state.json` never makes a running container look `Created`
//! or gone, and a missing or unreadable `status.json` never reads as an
//! exit code the container did not have: kubelet reports such a container
//! as terminated with `ContainerStatusUnknown` and exit code 137, which the
//! restart policy and the back-off treat as a failure. Every file that could
//! not be read is reported (`StateFilesReadable`), and kept in place.

use std::path::Path;
use std::time::SystemTime;

use berth_contract::{ContainerState, REASON_STATUS_UNKNOWN};

use crate::layout::{Exit, SetupError, Started, read_json, time_of};
use crate::spec_file::{self, Record};
use crate::{ShimRuntime, shim_process};

/// What the files and the processes say about a container.
#[derive(Debug, Clone)]
pub(crate) struct Facts {
    pub exit: Record<Exit>,
    pub setup_error: Option<SetupError>,
    pub shim_alive: bool,
    pub started: Record<Started>,
    /// The init `state.json` names still runs in the container's cgroup.
    pub recorded_init_runs: bool,
    /// The init found among the cgroup's processes (asked only when
    /// `state.json` cannot be read).
    pub cgroup_init: Option<i32>,
    /// When `state.json` was written (its mtime): the start, when the file
    /// cannot be read.
    pub started_file_at: Option<SystemTime>,
    pub now: SystemTime,
}

/// The container's state from `f` (pure).
pub(crate) fn decide(f: &Facts) -> ContainerState {
    if let Record::Read(e) = &f.exit {
        return ContainerState::Exited {
            exit_code: e.exit_code,
            signal: e.signal,
            oom_killed: e.oom_killed,
            started_at: e.started_at_ns.map(time_of),
            finished_at: time_of(e.finished_at_ns),
        };
    }
    if let Some(e) = &f.setup_error {
        return ContainerState::Failed {
            reason: e.reason.clone(),
            message: e.message.clone(),
        };
    }
    match &f.started {
        Record::Read(s) if f.shim_alive || f.recorded_init_runs => ContainerState::Running {
            pid: s.pid as u32,
            started_at: time_of(s.started_at_ns),
        },
        Record::Unreadable if f.cgroup_init.is_some() || f.shim_alive => {
            ContainerState::Running {
                // 0: the supervisor runs on, its container's init already ended
                // (the end is about to be recorded)
                pid: f.cgroup_init.unwrap_or(0) as u32,
                started_at: f.started_file_at.unwrap_or(f.now),
            }
        }
        // it ran (the supervisor wrote state.json), nothing of it runs now,
        // and its end was not recorded
        Record::Read(_) | Record::Unreadable => ContainerState::Failed {
            reason: REASON_STATUS_UNKNOWN.into(),
            message: unknown_message(&f.exit),
        },
        Record::Missing if f.shim_alive => ContainerState::Created,
        Record::Missing => ContainerState::Failed {
            reason: "RunContainerError".into(),
            message: "the container's supervisor exited before the container started".into(),
        },
    }
}

fn unknown_message(exit: &Record<Exit>) -> String {
    let file = match exit {
        Record::Unreadable => "its status.json cannot be read",
        _ => "no status.json was written",
    };
    format!(
        "the container could not be located and its state could not be determined: \
         its supervisor is gone and {file}"
    )
}

/// The init among a cgroup's processes, given as (pid, parent pid, start
/// time): the oldest whose parent is outside the cgroup (an exec'd process
/// joins the cgroup too, but starts later).
pub(crate) fn pick_init(procs: &[(i32, i32, u64)]) -> Option<i32> {
    procs
        .iter()
        .filter(|(_, ppid, _)| !procs.iter().any(|(p, _, _)| p == ppid))
        .min_by_key(|(pid, _, start)| (*start, *pid))
        .map(|(pid, _, _)| *pid)
}

/// Parent pid and start time of `pid` (fields 4 and 22 of its stat).
fn parent_and_start(pid: i32) -> Option<(i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    let ppid = fields.nth(1)?.parse().ok()?;
    let start = fields.nth(17)?.parse().ok()?;
    Some((ppid, start))
}

impl ShimRuntime {
    pub(crate) fn state_of(&self, dir: &Path) -> ContainerState {
        // the supervisor first, its record second: it writes `status.json`
        // before it exits, so a supervisor seen gone left its record (or
        // none) for good; read the other way round, a supervisor that
        // recorded the end and exited between the two reads looked like one
        // that ended unrecorded (ContainerStatusUnknown for a clean exit)
        let shim_alive = shim_process(dir).is_some();
        let exit = spec_file::read_exit(dir);
        let setup_error = match exit {
            Record::Read(_) => None,
            _ => read_json::<SetupError>(&dir.join("error.json")),
        };
        let started = spec_file::read_started(dir);
        let recorded_init_runs = match &started {
            Record::Read(s) => !shim_alive && self.init_in_cgroup(dir, s.pid),
            _ => false,
        };
        let cgroup_init = match started {
            Record::Unreadable => self.cgroup_init(dir),
            _ => None,
        };
        let facts = Facts {
            started_file_at: std::fs::metadata(dir.join("state.json"))
                .and_then(|m| m.modified())
                .ok(),
            exit,
            setup_error,
            shim_alive,
            started,
            recorded_init_runs,
            cgroup_init,
            now: SystemTime::now(),
        };
        let state = decide(&facts);
        if let (ContainerState::Failed { reason, .. }, Record::Missing) = (&state, &facts.exit)
            && reason == REASON_STATUS_UNKNOWN
        {
            let path = dir.join("status.json");
            let why = std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "missing: the supervisor ended without recording the container's end",
            );
            if berth_state::report_unreadable("container exit status", &path, &why) {
                tracing::warn!(path = %path.display(), "container ended unrecorded: status unknown");
            }
        }
        state
    }

    /// The container's init, from its cgroup's processes.
    pub(crate) fn cgroup_init(&self, dir: &Path) -> Option<i32> {
        let cg = self.identity_at(dir).ok()?.cgroup_path;
        let procs: Vec<(i32, i32, u64)> = self
            .cg
            .pids(&cg)
            .into_iter()
            .filter(|p| crate::alive(*p))
            .filter_map(|p| parent_and_start(p).map(|(pp, st)| (p, pp, st)))
            .collect();
        pick_init(&procs)
    }

    /// The init's pid: `state.json`'s while it runs in the container's
    /// cgroup, else (the file unreadable) the cgroup's init.
    pub(crate) fn init_pid(&self, dir: &Path) -> Option<i32> {
        match spec_file::read_started(dir) {
            Record::Read(s) => self.init_in_cgroup(dir, s.pid).then_some(s.pid),
            Record::Unreadable => self.cgroup_init(dir),
            Record::Missing => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const T0: u128 = 1_700_000_000_000_000_000;

    fn facts() -> Facts {
        Facts {
            exit: Record::Missing,
            setup_error: None,
            shim_alive: true,
            started: Record::Read(Started {
                pid: 42,
                started_at_ns: T0,
            }),
            recorded_init_runs: false,
            cgroup_init: None,
            started_file_at: Some(time_of(T0 + 5)),
            now: time_of(T0) + Duration::from_secs(60),
        }
    }

    fn unknown(st: &ContainerState) -> bool {
        matches!(st, ContainerState::Failed { reason, .. } if reason == REASON_STATUS_UNKNOWN)
    }

    #[test]
    fn a_readable_start_record_runs_while_the_shim_or_the_init_does() {
        let f = facts();
        assert_eq!(
            decide(&f),
            ContainerState::Running {
                pid: 42,
                started_at: time_of(T0)
            }
        );
        let f = Facts {
            shim_alive: false,
            recorded_init_runs: true,
            ..facts()
        };
        assert!(matches!(
            decide(&f),
            ContainerState::Running { pid: 42, .. }
        ));
    }

    // regression (issue 17): a garbage state.json read as Created (shim
    // alive) or Failed (shim gone) while the container ran
    #[test]
    fn an_unreadable_start_record_is_decided_from_the_cgroup() {
        for shim_alive in [true, false] {
            let f = Facts {
                started: Record::Unreadable,
                shim_alive,
                cgroup_init: Some(77),
                ..facts()
            };
            assert_eq!(
                decide(&f),
                ContainerState::Running {
                    pid: 77,
                    started_at: time_of(T0 + 5)
                },
                "shim alive: {shim_alive}"
            );
        }
        // the supervisor runs on after its init ended: still running until it records the end
        let f = Facts {
            started: Record::Unreadable,
            ..facts()
        };
        assert!(matches!(decide(&f), ContainerState::Running { pid: 0, .. }));
        // nothing runs and no end recorded: unknown, not "never started"
        let f = Facts {
            started: Record::Unreadable,
            shim_alive: false,
            ..facts()
        };
        assert!(unknown(&decide(&f)), "{:?}", decide(&f));
    }

    // regression (issue 17): a supervisor gone without status.json read as exit 255
    #[test]
    fn an_unrecorded_end_is_unknown_never_an_exit_code() {
        for exit in [Record::Missing, Record::Unreadable] {
            let f = Facts {
                exit: exit.clone(),
                shim_alive: false,
                ..facts()
            };
            let st = decide(&f);
            assert!(unknown(&st), "{st:?}");
            let ContainerState::Failed { message, .. } = st else {
                unreachable!()
            };
            let named = if matches!(exit, Record::Missing) {
                "no status.json was written"
            } else {
                "its status.json cannot be read"
            };
            assert!(message.contains(named), "{message}");
            assert!(message.contains("could not be determined"), "{message}");
        }
    }

    #[test]
    fn recorded_ends_and_setup_errors_win() {
        let f = Facts {
            exit: Record::Read(Exit {
                exit_code: 3,
                signal: None,
                oom_killed: false,
                started_at_ns: Some(T0),
                finished_at_ns: T0 + 1,
            }),
            shim_alive: false,
            ..facts()
        };
        assert!(matches!(
            decide(&f),
            ContainerState::Exited { exit_code: 3, .. }
        ));
        let f = Facts {
            setup_error: Some(SetupError {
                reason: "CreateContainerError".into(),
                message: "m".into(),
                kind: None,
            }),
            started: Record::Missing,
            ..facts()
        };
        assert!(
            matches!(decide(&f), ContainerState::Failed { reason, .. } if reason == "CreateContainerError")
        );
        let f = Facts {
            started: Record::Missing,
            ..facts()
        };
        assert_eq!(decide(&f), ContainerState::Created);
        let f = Facts {
            started: Record::Missing,
            shim_alive: false,
            ..facts()
        };
        assert!(
            matches!(decide(&f), ContainerState::Failed { reason, .. } if reason == "RunContainerError")
        );
    }

    #[test]
    fn the_init_is_the_oldest_process_whose_parent_is_outside() {
        // (pid, ppid, start): 10 the init (parent: the supervisor 5),
        // 11 and 12 its children, 20 an exec'd process (parent outside, later)
        let procs = [(11, 10, 101), (20, 7, 300), (10, 5, 100), (12, 11, 102)];
        assert_eq!(pick_init(&procs), Some(10));
        assert_eq!(pick_init(&[]), None);
        // the init gone: its reparented children are what is left
        assert_eq!(pick_init(&[(12, 1, 102), (11, 1, 101)]), Some(11));
    }
}
