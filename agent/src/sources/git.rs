//! The Git source (issue 8): a bare clone in the state dir, fetched on an
//! interval and on demand (webhook), manifests read straight from the commit.
//!
//! A commit is applied **whole or not at all**: if any file under the paths
//! fails to parse or validate (per object or across the set), nothing of it
//! is applied; status shows the refused commit with its file:line errors and
//! the commit still applied. The branch head is the truth (force-pushes are
//! followed). An unreachable remote keeps the applied commit and retries with
//! exponential back-off (2 s doubling, capped at the interval). The applied
//! commit id is persisted, and applied from the local clone at start before
//! any fetch, so a host restarted while offline keeps running its workloads.
//!
//! Not done: commit signature verification, shallow fetches.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use berth_spec::{Diagnostic, Location, Severity, Sourced};
use git2::Oid;
use serde::Serialize;
use tokio::sync::{Notify, watch};

use super::git_repo::{self, Auth, CommitInfo, GitError, TreeFile};
use super::{DiagView, SourceHandle, SourceReport, SourceStatus, rfc3339};
use crate::config::GitConfig;

/// Git-specific status.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GitStatus {
    pub url: String,
    pub branch: String,
    pub paths: Vec<String>,
    pub last_fetched_commit: Option<String>,
    pub last_fetch_time: Option<String>,
    pub applied: Option<CommitInfo>,
    pub refused: Option<Refused>,
    pub consecutive_failures: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refused {
    pub commit: CommitInfo,
    pub diagnostics: Vec<DiagView>,
}

/// The outcome of reading and validating one commit.
#[derive(Debug)]
pub enum Evaluation {
    Accepted {
        objects: Vec<Sourced>,
        warnings: Vec<Diagnostic>,
        /// Objects of kinds berth does not run (each with a warning).
        skipped: Vec<berth_spec::Skipped>,
    },
    Refused {
        diagnostics: Vec<Diagnostic>,
    },
}

/// Whole-revision validation: any error refuses the revision.
pub fn evaluate(files: &[TreeFile], missing_paths: &[String], commit: &str) -> Evaluation {
    let mut objects = Vec::new();
    let mut diags = Vec::new();
    let mut skipped = Vec::new();
    for (path, text) in files {
        match text {
            Ok(text) => {
                let p = berth_spec::parse_str(path, text);
                objects.extend(p.objects);
                diags.extend(p.diagnostics);
                skipped.extend(p.skipped);
            }
            Err(e) => diags.push(diag(path, Severity::Error, format!("cannot read: {e}"))),
        }
    }
    for p in missing_paths {
        diags.push(diag(
            p,
            Severity::Warning,
            format!(
                "path not found in commit {}",
                &commit[..commit.len().min(12)]
            ),
        ));
    }
    if files.is_empty() {
        diags.push(diag(
            "(repository)",
            Severity::Error,
            "no manifest files (*.yaml, *.yml) under the configured paths; an empty revision is refused, not applied as \"delete everything\"".into(),
        ));
    }
    diags.extend(berth_spec::validate_set(&objects));
    if diags.iter().any(|d| d.severity == Severity::Error) {
        Evaluation::Refused { diagnostics: diags }
    } else {
        Evaluation::Accepted {
            objects,
            warnings: diags,
            skipped,
        }
    }
}

fn diag(file: &str, severity: Severity, message: String) -> Diagnostic {
    Diagnostic {
        severity,
        location: Location {
            file: file.into(),
            line: 1,
            column: 1,
        },
        object: None,
        path: None,
        message,
    }
}

/// What a blocking sync step found.
struct Step {
    head: Option<Oid>,
    /// Read and evaluated only when the head is new (not applied, not already refused).
    evaluated: Option<(CommitInfo, Evaluation)>,
}

fn read_and_evaluate(
    repo: &git2::Repository,
    oid: Oid,
    paths: &[String],
) -> Result<(CommitInfo, Evaluation), GitError> {
    let info = git_repo::commit_info(repo, oid)?;
    let (files, missing) = git_repo::read_tree(repo, oid, paths)?;
    let ev = evaluate(&files, &missing, &info.id);
    Ok((info, ev))
}

/// The live state of the source.
struct GitState {
    cfg: GitConfig,
    dir: PathBuf,
    applied: Option<(Oid, CommitInfo, Vec<Sourced>, Vec<Diagnostic>)>,
    /// The applied commit's objects of kinds berth does not run.
    skipped: Vec<berth_spec::Skipped>,
    refused: Option<(Oid, Refused)>,
    last_fetched: Option<Oid>,
    last_fetch_time: Option<SystemTime>,
    last_error: Option<String>,
    failures: u32,
}

impl GitState {
    fn report(&self) -> SourceReport {
        let (objects, warnings) = self
            .applied
            .as_ref()
            .map(|a| (a.2.clone(), a.3.clone()))
            .unwrap_or_default();
        let mut diagnostics: Vec<DiagView> = warnings.iter().map(DiagView::from).collect();
        let mut files_with_errors = Vec::new();
        if let Some((_, r)) = &self.refused {
            diagnostics.extend(r.diagnostics.iter().cloned());
            for d in r
                .diagnostics
                .iter()
                .filter(|d| d.diag.severity == Severity::Error)
            {
                if !files_with_errors.contains(&d.diag.location.file) {
                    files_with_errors.push(d.diag.location.file.clone());
                }
            }
        }
        let complete = self.applied.is_some();
        let git = GitStatus {
            url: git_repo::redact_url(&self.cfg.url),
            branch: self.cfg.branch.clone(),
            paths: self.cfg.paths.iter().map(|p| format!("/{p}")).collect(),
            last_fetched_commit: self.last_fetched.map(|o| o.to_string()),
            last_fetch_time: self.last_fetch_time.map(rfc3339),
            applied: self.applied.as_ref().map(|a| a.1.clone()),
            refused: self.refused.as_ref().map(|r| r.1.clone()),
            consecutive_failures: self.failures,
        };
        let last_error = self.last_error.clone().or_else(|| {
            self.refused.as_ref().map(|(o, _)| {
                format!(
                    "commit {o} refused (see diagnostics); still applied: {}",
                    self.applied
                        .as_ref()
                        .map(|a| a.0.to_string())
                        .unwrap_or_else(|| "nothing".into())
                )
            })
        });
        SourceReport {
            complete,
            status: SourceStatus {
                kind: "git",
                location: git.url.clone(),
                revision: self.applied.as_ref().map(|a| a.0.to_string()),
                complete,
                last_sync: self.last_fetch_time.map(rfc3339),
                last_error,
                files: 0,
                objects: objects.len(),
                diagnostics,
                files_with_errors,
                skipped_count: self.skipped.len(),
                skipped: self.skipped.clone(),
                git: Some(git),
                rollout: None,
            },
            objects,
        }
    }

    /// Take in a newly evaluated commit.
    fn take(&mut self, oid: Oid, info: CommitInfo, ev: Evaluation) {
        match ev {
            Evaluation::Accepted {
                objects,
                warnings,
                skipped,
            } => {
                tracing::info!(commit = %oid, subject = %info.subject, objects = objects.len(), "git commit applied");
                if let Err(e) = git_repo::save_applied(&self.dir, oid) {
                    tracing::warn!(error = %error_chain(&e), "cannot persist the applied commit");
                }
                self.applied = Some((oid, info, objects, warnings));
                self.skipped = skipped;
                self.refused = None;
            }
            Evaluation::Refused { diagnostics } => {
                for d in diagnostics.iter().filter(|d| d.severity == Severity::Error) {
                    tracing::warn!(commit = %oid, diagnostic = %d, "git commit refused");
                }
                self.refused = Some((
                    oid,
                    Refused {
                        commit: info,
                        diagnostics: diagnostics.iter().map(DiagView::from).collect(),
                    },
                ));
            }
        }
    }
}

/// `a: b: c` for an error and its sources (the one in berth-contract).
pub use berth_reconciler::traits::error_chain;

/// Back-off after `failures` consecutive failed fetches: 2 s doubling, capped at `interval`.
pub fn backoff(failures: u32, interval: Duration) -> Duration {
    if failures == 0 {
        return interval;
    }
    Duration::from_secs(2u64.saturating_mul(1u64 << (failures - 1).min(20))).min(interval)
}

/// Run the Git source until `shutdown` turns true; `sync` triggers an immediate fetch.
pub async fn run(
    cfg: GitConfig,
    state_dir: PathBuf,
    handle: SourceHandle,
    sync: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    let dir = git_repo::clone_dir(&state_dir, &cfg.url);
    let mut st = GitState {
        cfg,
        dir,
        applied: None,
        skipped: Vec::new(),
        refused: None,
        last_fetched: None,
        last_fetch_time: None,
        last_error: None,
        failures: 0,
    };
    // 1. the last applied commit, from the local clone, before any network access
    let (dir, paths) = (st.dir.clone(), st.cfg.paths.clone());
    let start = tokio::task::spawn_blocking(
        move || -> Result<Option<(Oid, CommitInfo, Evaluation)>, GitError> {
            if !dir.join("HEAD").exists() {
                return Ok(None);
            }
            let repo = git2::Repository::open_bare(&dir).map_err(|source| GitError::Open {
                path: dir.clone(),
                source,
            })?;
            let Some(oid) = git_repo::load_applied(&repo, &dir) else {
                return Ok(None);
            };
            let (info, ev) = read_and_evaluate(&repo, oid, &paths)?;
            Ok(Some((oid, info, ev)))
        },
    )
    .await;
    match start {
        Ok(Ok(Some((oid, info, ev)))) => {
            tracing::info!(commit = %oid, "re-applying the last applied git commit from the local clone");
            st.take(oid, info, ev)
        }
        Ok(Ok(None)) => {}
        Ok(Err(e)) => st.last_error = Some(error_chain(&e)),
        Err(e) => st.last_error = Some(e.to_string()),
    }
    handle.publish(st.report());
    // 2. fetch loop
    loop {
        let step = sync_step(&st).await;
        st.last_fetch_time = Some(SystemTime::now());
        match step {
            Ok(step) => {
                st.failures = 0;
                st.last_error = None;
                st.last_fetched = step.head;
                if let (Some(oid), Some((info, ev))) = (step.head, step.evaluated) {
                    st.take(oid, info, ev);
                } else if step.head.is_some() && step.head == st.applied.as_ref().map(|a| a.0) {
                    st.refused = None; // e.g. a force-push back to the applied commit
                }
            }
            Err(e) => {
                st.failures += 1;
                let msg = error_chain(&e);
                tracing::warn!(error = %msg, failures = st.failures, "git sync failed; the applied commit keeps running");
                st.last_error = Some(msg);
            }
        }
        handle.publish(st.report());
        let wait = backoff(st.failures, st.cfg.interval);
        tokio::select! {
            _ = super::stopped(&mut shutdown) => break,
            _ = tokio::time::sleep(wait) => {}
            _ = sync.notified() => tracing::info!("git sync requested"),
        }
    }
    tracing::debug!("git source stopped");
}

async fn sync_step(st: &GitState) -> Result<Step, GitError> {
    let dir = st.dir.clone();
    let auth = Auth {
        url: st.cfg.url.clone(),
        ssh_key: st.cfg.ssh_key.clone(),
        known_hosts: st.cfg.known_hosts.clone(),
    };
    let target = st.cfg.branch.clone();
    let paths = st.cfg.paths.clone();
    let known: Vec<Oid> = st
        .applied
        .iter()
        .map(|a| a.0)
        .chain(st.refused.iter().map(|r| r.0))
        .collect();
    tokio::task::spawn_blocking(move || {
        let repo = git_repo::open(&dir, &auth.url)?;
        git_repo::fetch(&repo, &auth)?;
        let head = git_repo::resolve(&repo, &target)?;
        let evaluated = if known.contains(&head) {
            None
        } else {
            Some(read_and_evaluate(&repo, head, &paths)?)
        };
        Ok(Step {
            head: Some(head),
            evaluated,
        })
    })
    .await
    .unwrap_or_else(|e| {
        Err(GitError::Fetch {
            url: String::new(),
            source: git2::Error::from_str(&e.to_string()),
        })
    })
}

#[cfg(test)]
#[path = "git_tests.rs"]
mod tests;
