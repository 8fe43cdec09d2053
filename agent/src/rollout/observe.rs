//! From objects and the reconciler's snapshot to the planner's inputs: what
//! a revision changed, and how the changed workloads' pods stand.

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, SystemTime};

use berth_reconciler::desired::DesiredState;
use berth_reconciler::rollout::{
    ANNOTATION_AUTO_ROLLBACK, Changed, ContainerObs, PodObs, WorkloadObs, WorkloadRef,
};
use berth_reconciler::{Snapshot, deployment, hash};
use berth_spec::k8s_openapi::api::core::v1::{Pod, PodSpec};
use berth_spec::{Object, ObjectKey, Sourced};

/// Log lines of a failing container kept with its failure.
pub const LOG_LINES: usize = 20;
/// Bytes read from the end of a log file for them.
const LOG_TAIL_BYTES: u64 = 64 * 1024;

fn pod_hash(spec: &Option<PodSpec>) -> String {
    hash::spec_hash(&spec.clone().unwrap_or_default())
}

/// The workload `s` runs, as the reconciler names its pods.
pub fn workload_of(s: &Sourced) -> Option<WorkloadRef> {
    let key = s.object.key();
    match &s.object {
        Object::Pod(p) => Some(WorkloadRef::Pod {
            namespace: key.namespace,
            name: key.name,
            spec_hash: pod_hash(&p.spec),
        }),
        Object::Deployment(d) => Some(WorkloadRef::Deployment {
            namespace: key.namespace,
            name: key.name,
            template_hash: deployment::template_hash(&d.spec.template),
            replicas: d.spec.replicas.unwrap_or(1).max(0) as u32,
        }),
        Object::StatefulSet(st) => {
            let spec = &st.spec;
            let strategy = spec.update_strategy.as_ref();
            let replicas = spec.replicas.unwrap_or(1).max(0) as u32;
            let replaced = match strategy.and_then(|s| s.type_.as_deref()) {
                Some("OnDelete") => 0,
                _ => {
                    let partition = strategy
                        .and_then(|s| s.rolling_update.as_ref())
                        .and_then(|r| r.partition)
                        .unwrap_or(0)
                        .max(0) as u32;
                    replicas.saturating_sub(partition)
                }
            };
            Some(WorkloadRef::Set {
                controller: berth_spec::Kind::StatefulSet,
                namespace: key.namespace,
                name: key.name,
                revision: berth_reconciler::statefulset::revision(&spec.template),
                replicas: replaced,
            })
        }
        Object::DaemonSet(d) => {
            let on_delete = d
                .spec
                .update_strategy
                .as_ref()
                .and_then(|s| s.type_.as_deref())
                == Some("OnDelete");
            Some(WorkloadRef::Set {
                controller: berth_spec::Kind::DaemonSet,
                namespace: key.namespace,
                name: key.name,
                revision: berth_reconciler::controller::replicated::revision(&d.spec.template),
                replicas: u32::from(!on_delete),
            })
        }
        _ => None,
    }
}

/// The Pods and Deployments of `new` that are not in `old` with the same
/// pod spec / template (created or replaced); others are unchanged and not watched.
pub fn changed(old: &[Sourced], new: &[Sourced]) -> Changed {
    let before: BTreeMap<ObjectKey, WorkloadRef> = old
        .iter()
        .filter_map(|s| Some((s.object.key(), workload_of(s)?)))
        .collect();
    let mut out = Changed {
        auto_rollback: true,
        ..Default::default()
    };
    for s in new {
        let Some(w) = workload_of(s) else { continue };
        let same = match (before.get(&s.object.key()), &w) {
            (
                Some(WorkloadRef::Pod { spec_hash: a, .. }),
                WorkloadRef::Pod { spec_hash: b, .. },
            ) => a == b,
            (
                Some(WorkloadRef::Deployment {
                    template_hash: a, ..
                }),
                WorkloadRef::Deployment {
                    template_hash: b, ..
                },
            ) => a == b,
            (
                Some(WorkloadRef::Set {
                    controller: ka,
                    revision: a,
                    ..
                }),
                WorkloadRef::Set {
                    controller: kb,
                    revision: b,
                    ..
                },
            ) => ka == kb && a == b,
            _ => false,
        };
        if same {
            continue;
        }
        let m = s.object.metadata();
        if m.annotations
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_AUTO_ROLLBACK))
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("false"))
        {
            out.auto_rollback = false;
        }
        if let Object::Deployment(d) = &s.object
            && let Some(secs) = d.spec.progress_deadline_seconds
        {
            let secs = Duration::from_secs(secs.max(0) as u64);
            out.progress_deadline = Some(out.progress_deadline.map_or(secs, |c| c.max(secs)));
        }
        out.workloads.push(w);
    }
    out
}

/// How `wl` stands in `snap`. A workload whose definition is not the desired
/// one (not scheduled on this node, refused by policy) is [`WorkloadObs::NotHere`].
pub fn observe(
    wl: &WorkloadRef,
    desired: &DesiredState,
    snap: &Snapshot,
    since: SystemTime,
) -> WorkloadObs {
    let (kind, ns, name) = match wl {
        WorkloadRef::Pod {
            namespace, name, ..
        } => (berth_spec::Kind::Pod, namespace, name),
        WorkloadRef::Deployment {
            namespace, name, ..
        } => (berth_spec::Kind::Deployment, namespace, name),
        WorkloadRef::Set {
            controller,
            namespace,
            name,
            ..
        } => (*controller, namespace, name),
    };
    let key = ObjectKey::new(kind, ns.clone(), name.clone());
    let desired_pod_spec = match desired.objects.get(&key).map(workload_of) {
        Some(Some(w)) if w == *wl => match &desired.objects[&key].object {
            Object::Pod(p) => p.spec.clone(),
            _ => None,
        },
        _ => return WorkloadObs::NotHere,
    };
    let mine = |p: &&Pod| -> bool {
        if p.metadata.namespace.as_deref() != Some(ns) || p.metadata.deletion_timestamp.is_some() {
            return false;
        }
        match wl {
            WorkloadRef::Pod { spec_hash, .. } => {
                if p.metadata.name.as_deref() != Some(name) || p.metadata.owner_references.is_some()
                {
                    return false;
                }
                // the snapshot fills nodeName in: compare as the manifest has it
                let mut spec = p.spec.clone().unwrap_or_default();
                spec.node_name = desired_pod_spec.as_ref().and_then(|s| s.node_name.clone());
                hash::spec_hash(&spec) == *spec_hash
            }
            WorkloadRef::Deployment { template_hash, .. } => {
                p.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == "Deployment" && o.name == *name)
                    && p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(berth_reconciler::controller::LABEL_TEMPLATE_HASH))
                        == Some(template_hash)
            }
            WorkloadRef::Set {
                controller,
                revision,
                ..
            } => {
                p.metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .any(|o| o.kind == controller.as_str() && o.name == *name)
                    && p.metadata.labels.as_ref().and_then(|l| {
                        l.get(berth_reconciler::controller::replicated::LABEL_REVISION)
                    }) == Some(&format!("{name}-{revision}"))
            }
        }
    };
    WorkloadObs::Pods(
        snap.pods
            .iter()
            .filter(mine)
            .map(|p| pod_obs(p, snap, since))
            .collect(),
    )
}

fn pod_obs(p: &Pod, snap: &Snapshot, since: SystemTime) -> PodObs {
    let name = p.metadata.name.clone().unwrap_or_default();
    let ns = p.metadata.namespace.clone().unwrap_or_default();
    let st = p.status.clone().unwrap_or_default();
    let ready = st
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let containers = st
        .container_statuses
        .iter()
        .flatten()
        .map(|c| {
            let state = c.state.clone().unwrap_or_default();
            let exit_code = state.terminated.as_ref().map(|t| t.exit_code).or_else(|| {
                c.last_state
                    .as_ref()
                    .and_then(|l| l.terminated.as_ref())
                    .map(|t| t.exit_code)
            });
            ContainerObs {
                name: c.name.clone(),
                ready: c.ready,
                restarts: c.restart_count.max(0) as u32,
                waiting_reason: state.waiting.and_then(|w| w.reason),
                exit_code,
            }
        })
        .collect();
    let liveness_failed = snap.events.iter().any(|e| {
        e.name == name
            && e.namespace == ns
            && e.reason == "Unhealthy"
            && e.message.starts_with("Liveness")
            && e.last_time >= since
    });
    PodObs {
        name,
        ready,
        phase: st.phase,
        containers,
        liveness_failed,
    }
}

/// The last [`LOG_LINES`] lines of a container's log (this run's, or the
/// previous run's when this one has written nothing yet).
pub fn log_tail(snap: &Snapshot, ns: &str, pod: &str, container: &str) -> Vec<String> {
    let Some((_, _, _, path)) = snap
        .logs
        .iter()
        .find(|l| l.0 == ns && l.1 == pod && l.2 == container)
    else {
        return Vec::new();
    };
    let mut lines = tail_file(path);
    if lines.is_empty()
        && let Some(prev) = previous_run(path)
    {
        lines = tail_file(&prev);
    }
    lines
}

/// `<n-1>.log` beside `<n>.log`, if any.
fn previous_run(path: &Path) -> Option<std::path::PathBuf> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".log")?;
    let n: u32 = stem.parse().ok()?;
    let prev = path.with_file_name(format!("{}.log", n.checked_sub(1)?));
    prev.exists().then_some(prev)
}

fn tail_file(path: &Path) -> Vec<String> {
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(LOG_TAIL_BYTES);
    if f.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    if f.take(LOG_TAIL_BYTES).read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let mut text = String::from_utf8_lossy(&buf).into_owned();
    if start > 0 {
        // drop the first, probably cut, line
        text = text
            .split_once('\n')
            .map(|x| x.1.to_string())
            .unwrap_or_default();
    }
    let mut partial = String::new();
    let lines: Vec<String> = crate::api::logs_query::parse(&text, &mut partial)
        .into_iter()
        .map(|e| e.msg)
        .collect();
    let skip = lines.len().saturating_sub(LOG_LINES);
    lines.into_iter().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Vec<Sourced> {
        let p = berth_spec::parse_str("m.yaml", yaml);
        assert!(!p.has_errors(), "{:?}", p.diagnostics);
        p.objects
    }

    fn pod(name: &str, cmd: &str, extra: &str) -> String {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}{extra}}}\nspec: {{containers: [{{name: c, image: 'busybox:1.36', command: [sh, -c, '{cmd}']}}]}}\n"
        )
    }

    #[test]
    fn only_created_or_replaced_workloads_are_changed() {
        let old = parse(&(pod("a", "sleep 1", "") + &pod("b", "sleep 1", "")));
        let new = parse(
            &(pod("a", "sleep 1", ", labels: {x: y}")
                + &pod("b", "exit 1", "")
                + &pod("c", "sleep 1", "")
                + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm}\ndata: {k: v}\n"),
        );
        let c = changed(&old, &new);
        let names: Vec<String> = c.workloads.iter().map(|w| w.object()).collect();
        assert_eq!(names, ["Pod/default/b", "Pod/default/c"]);
        assert!(c.auto_rollback);
        assert_eq!(c.progress_deadline, None);
        assert!(changed(&new, &new).workloads.is_empty());
    }

    #[test]
    fn annotation_turns_auto_rollback_off_and_deadline_is_the_largest() {
        let new = parse(&pod(
            "a",
            "exit 1",
            ", annotations: {berth.dev/auto-rollback: 'false'}",
        ));
        assert!(!changed(&[], &new).auto_rollback);
        let d = |n: &str, secs: u32| {
            format!(
                "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {n}}}\nspec:\n  progressDeadlineSeconds: {secs}\n  selector: {{matchLabels: {{app: {n}}}}}\n  template:\n    metadata: {{labels: {{app: {n}}}}}\n    spec: {{containers: [{{name: c, image: 'busybox:1.36'}}]}}\n"
            )
        };
        let new = parse(&(d("x", 50) + &d("y", 90)));
        let c = changed(&[], &new);
        assert_eq!(c.progress_deadline, Some(Duration::from_secs(90)));
        assert_eq!(c.workloads.len(), 2);
    }

    #[test]
    fn log_tail_keeps_the_last_lines_of_this_or_the_previous_run() {
        let tmp = tempfile::tempdir().unwrap();
        let mut text = String::new();
        for i in 0..30 {
            text.push_str(&format!("2026-01-01T00:00:00Z stdout F line {i}\n"));
        }
        std::fs::write(tmp.path().join("0.log"), &text).unwrap();
        std::fs::write(tmp.path().join("1.log"), "").unwrap();
        let snap = Snapshot {
            logs: vec![(
                "default".into(),
                "p".into(),
                "c".into(),
                tmp.path().join("1.log"),
            )],
            ..Default::default()
        };
        let lines = log_tail(&snap, "default", "p", "c");
        assert_eq!(lines.len(), LOG_LINES);
        assert_eq!(lines[0], "line 10");
        assert_eq!(lines[19], "line 29");
        assert!(log_tail(&snap, "default", "p", "other").is_empty());
    }
}
