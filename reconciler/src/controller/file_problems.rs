//! Files of this agent that could not be read, as every reader reports them
//! through `berth_state` (pod records, IPAM, Services and the rollout state
//! when quarantined; a container's `spec.json` or the supervisor's files
//! when kept in place): one `Quarantined` or `FileUnreadable` event each,
//! and the `StateFilesReadable` condition naming every file and where it
//! went, for as long as the agent runs.

use berth_state::FileProblem;

use super::Reconciler;
use crate::status::AgentCondition;
use crate::traits::{Images, Network, Runtime};

/// Problems named in the condition; later ones only get their event.
const MAX_SHOWN: usize = 32;

impl<I: Images, R: Runtime, N: Network> Reconciler<I, R, N> {
    /// Take the reports of files below this agent's state and run dirs.
    pub(super) fn collect_file_problems(&mut self) {
        let roots = [self.cfg.state_dir.as_path(), self.cfg.run_dir.as_path()];
        for p in berth_state::take_reports(&roots) {
            let msg = p.message();
            tracing::error!(%msg, "state file");
            let reason = if p.moved_to.is_some() {
                "Quarantined"
            } else {
                "FileUnreadable"
            };
            self.node_event(true, reason, &msg);
            if self.file_problems.len() < MAX_SHOWN {
                self.file_problems.push(p);
            }
        }
    }
}

/// `StateFilesReadable=False` while any file could not be read.
pub(super) fn condition(problems: &[FileProblem]) -> Option<AgentCondition> {
    let first = problems.first()?;
    Some(AgentCondition {
        type_: "StateFilesReadable".into(),
        status: "False".into(),
        reason: if first.moved_to.is_some() {
            "Quarantined"
        } else {
            "FileUnreadable"
        }
        .into(),
        message: problems
            .iter()
            .map(FileProblem::message)
            .collect::<Vec<_>>()
            .join("; "),
        blocks_ready: false,
    })
}
