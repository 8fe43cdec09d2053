//! What this host offers berth, probed from files (`/proc`, `/sys`, the
//! cgroup root, the state dir): kernel, cgroups and their controllers,
//! overlayfs, nftables, namespaces, seccomp, PSI, IP forwarding, the state
//! dir, free disk and the CA bundle. `berth doctor` prints it; the agent
//! probes it once at start and reports what is missing in `/api/v1/status`,
//! a `HostFeaturesComplete` condition and metrics (degraded mode) instead of
//! stopping: a missing optional feature costs what it costs (no memory
//! controller: memory limits are not enforced) and nothing else.
//!
//! Every probe reads below the roots in [`Roots`], so tests run on fake trees.

pub mod doctor;
mod probes;

use std::path::PathBuf;

use serde::Serialize;

pub use probes::probe;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Level {
    /// Present and as berth wants it.
    Ok,
    /// Not used by berth, or nothing to do; shown for the record.
    Info,
    /// An optional feature is missing: berth runs, with less.
    Degraded,
    /// berth cannot run pods without it.
    Missing,
}

impl Level {
    pub fn word(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Info => "info",
            Level::Degraded => "degraded",
            Level::Missing => "MISSING",
        }
    }
}

/// One check: what was found, and what it means when it is not `Ok`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    pub name: String,
    pub level: Level,
    /// What was found (e.g. `v2; controllers: cpu io memory pids`).
    pub found: String,
    /// What a missing or degraded feature means for the pods; empty when ok.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub meaning: String,
}

impl Check {
    pub fn new(name: &str, level: Level, found: impl Into<String>, meaning: &str) -> Self {
        Check {
            name: name.into(),
            level,
            found: found.into(),
            meaning: meaning.into(),
        }
    }
}

/// Where the probes look (the real host: [`Roots::real`]).
#[derive(Debug, Clone)]
pub struct Roots {
    pub proc: PathBuf,
    pub sys: PathBuf,
    pub cgroup: PathBuf,
    pub state_dir: PathBuf,
    /// Kernel release (`/proc/sys/kernel/osrelease`), e.g. `6.1.0-28-amd64`.
    pub kernel_release: String,
}

impl Roots {
    pub fn real(state_dir: PathBuf) -> Self {
        Roots {
            proc: "/proc".into(),
            sys: "/sys".into(),
            cgroup: "/sys/fs/cgroup".into(),
            state_dir,
            kernel_release: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_default(),
        }
    }
}

/// All checks, in a fixed order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HostReport {
    pub checks: Vec<Check>,
}

/// The agent's host report, filled in once the probes are done: they run
/// beside start-up (they read many files and run `nft --version`, and the
/// registry client loads the CA bundle), not before the API answers. Reads
/// as an empty report (no checks, no condition) until then.
#[derive(Debug, Default)]
pub struct HostCell(std::sync::OnceLock<HostReport>);

static NO_CHECKS: HostReport = HostReport { checks: Vec::new() };

impl HostCell {
    /// A cell holding `report` already.
    pub fn with(report: HostReport) -> Self {
        let c = Self::default();
        c.set(report);
        c
    }

    /// Fill the cell; a second report is ignored.
    pub fn set(&self, report: HostReport) {
        let _ = self.0.set(report);
    }

    /// The probes are done (the report is filled in).
    pub fn probed(&self) -> bool {
        self.0.get().is_some()
    }
}

impl std::ops::Deref for HostCell {
    type Target = HostReport;
    fn deref(&self) -> &HostReport {
        self.0.get().unwrap_or(&NO_CHECKS)
    }
}

impl HostReport {
    /// The worst level found (`Ok` for an empty report).
    pub fn worst(&self) -> Level {
        self.checks
            .iter()
            .map(|c| c.level)
            .filter(|l| *l != Level::Info)
            .max()
            .unwrap_or(Level::Ok)
    }

    /// The checks that are degraded or missing.
    pub fn problems(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| matches!(c.level, Level::Degraded | Level::Missing))
    }

    /// The agent condition for `/api/v1/status` and metrics: present only
    /// when something is degraded or missing (conditions list problems).
    pub fn condition(&self) -> Option<berth_reconciler::AgentCondition> {
        let problems: Vec<String> = self
            .problems()
            .map(|c| format!("{}: {} ({})", c.name, c.found, c.meaning))
            .collect();
        if problems.is_empty() {
            return None;
        }
        Some(berth_reconciler::AgentCondition {
            type_: "HostFeaturesComplete".into(),
            status: "False".into(),
            reason: if self.worst() == Level::Missing {
                "FeatureMissing".into()
            } else {
                "Degraded".into()
            },
            message: problems.join("; "),
            blocks_ready: false,
        })
    }

    /// Log every problem once (agent start).
    pub fn log(&self) {
        for c in self.problems() {
            tracing::warn!(check = %c.name, found = %c.found, meaning = %c.meaning, "host feature {}", c.level.word());
        }
        if self.problems().next().is_none() {
            tracing::info!(checks = self.checks.len(), "host features complete");
        }
    }
}
