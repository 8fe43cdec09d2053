//! Adoption after an agent restart, recovered per entry from what the runtime
//! observes.
//!
//! ```text
//! records (pods.json) ──┐
//!                       ├─> recorded pod: a worker adopts its containers (none removed here)
//! runtime.list() ───────┤
//! net.list_pods() ──────┴─> a pod with no readable record: an Orphan, kept running;
//!                           each pass plans it (plan_orphan) against the desired set
//! ```
//!
//! The rule: nothing is removed because a file could not be read. An orphan
//! (a pod whose containers or network exist but whose record is missing,
//! quarantined or unreadable) is adopted when the desired objects still name
//! it with the spec it runs. It is removed only when the desired set is
//! complete and does not name it: its containers' own `spec.json` (read by
//! the runtime to list them) proves they belong to this instance, and that is
//! what pruning would have removed with the record intact. Until the set is
//! complete it waits, running. A container whose `spec.json` cannot be read
//! is still listed, identified from its `identity.json` or its names (the
//! runtime's `identity` module), so it is adopted like the others and never
//! started again beside itself; one that cannot be identified at all is not
//! listed, so it is never touched.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use berth_spec::Object;
use berth_spec::k8s_openapi::api::apps::v1::Deployment;

use super::{PodEntry, Reconciler, desired_from_pod};
use crate::desired::DesiredState;
use crate::events::EventInput;
use crate::pod::DesiredPod;
use crate::pod::error::{Policy, Step, error_policy, schedule};
use crate::pod::worker::LABEL_SPEC_HASH;
use crate::record::{PodRecord, RecordProblem};
use crate::traits::{Classify, ContainerInfo, Images, Network, PodRef, Runtime, error_chain};

/// How long adoption keeps trying to list the containers before it goes on
/// (workers of recorded pods then find their containers by their ids).
const LIST_ATTEMPTS: u32 = 8;

/// A pod on the host that no readable record names.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Orphan {
    pub pod: PodRef,
    pub containers: Vec<ContainerInfo>,
    /// Reported as waiting (once).
    pub reported: bool,
}

/// What to do with an orphan in this pass.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OrphanPlan {
    /// The desired set names it with the spec it runs: adopt it as this pod.
    Adopt(Box<DesiredPod>),
    /// The complete desired set does not name it: remove it, saying why.
    Remove(String),
    /// The desired set is not complete: keep it running, decide later.
    Wait,
}

/// Decide an orphan's fate from the desired set (pure).
///
/// `name_taken`: a recorded pod of the same namespace/name exists (another
/// instance serves the name).
pub(crate) fn plan_orphan(o: &Orphan, desired: &DesiredState, name_taken: bool) -> OrphanPlan {
    let hash = orphan_spec_hash(&o.containers);
    let (ns, name) = (&o.pod.namespace, &o.pod.name);
    let mut named_otherwise = false;
    for s in desired.objects.values() {
        let candidate = match &s.object {
            Object::Pod(p) => {
                let d = desired_from_pod(p);
                (&d.namespace == ns && &d.name == name).then_some(d)
            }
            Object::Deployment(d) => deployment_pod_named(d, ns, name),
            o => super::replicated::pod_named(o, ns, name),
        };
        let Some(d) = candidate else { continue };
        match &hash {
            Some(h) if *h != d.spec_hash => named_otherwise = true,
            // no hash label (containers of no known spec): the name decides
            _ if name_taken => named_otherwise = true,
            _ => return OrphanPlan::Adopt(Box::new(d)),
        }
    }
    if !desired.complete {
        return OrphanPlan::Wait;
    }
    OrphanPlan::Remove(if name_taken {
        "another instance of this pod is recorded and runs".into()
    } else if named_otherwise {
        "the manifests name this pod with another spec".into()
    } else {
        "no manifest names this pod".into()
    })
}

/// The spec hash every container of the orphan carries, if they agree.
fn orphan_spec_hash(cs: &[ContainerInfo]) -> Option<String> {
    let hashes: BTreeSet<&String> = cs
        .iter()
        .filter_map(|c| c.labels.get(LABEL_SPEC_HASH))
        .collect();
    match hashes.len() {
        1 => hashes.into_iter().next().cloned(),
        _ => None,
    }
}

/// The desired pod of Deployment `d` if `name` is one of its current
/// template's pods (`<deployment>-<template hash>-<suffix>`).
fn deployment_pod_named(d: &Deployment, ns: &str, name: &str) -> Option<DesiredPod> {
    let dns = berth_spec::namespace_of(&d.metadata);
    let dname = d.metadata.name.as_deref()?;
    let hash = crate::deployment::template_hash(&d.spec.template);
    let prefix = format!("{dname}-{hash}-");
    (dns == ns && name.starts_with(&prefix))
        .then(|| deployment_pod(d, dns, dname, &hash, name.to_string()))
}

/// A pod of Deployment `d`'s current template.
pub(crate) fn deployment_pod(
    d: &Deployment,
    ns: &str,
    dname: &str,
    hash: &str,
    name: String,
) -> DesiredPod {
    let template = &d.spec.template;
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.clone().unwrap_or_default();
    labels.insert(super::LABEL_TEMPLATE_HASH.to_string(), hash.to_string());
    DesiredPod {
        namespace: ns.to_string(),
        name,
        owner: Some(dname.to_string()),
        owner_kind: None,
        template_hash: Some(hash.to_string()),
        labels,
        annotations: meta.annotations.clone().unwrap_or_default(),
        spec: template.spec.clone().unwrap_or_default(),
        spec_hash: hash.to_string(),
    }
}

// === impl Reconciler ===

impl<I: Images, R: Runtime, N: Network> Reconciler<I, R, N> {
    /// Adopt what runs, per entry: recorded pods get workers with their
    /// containers; everything else becomes an orphan for the passes to plan.
    pub(super) async fn adopt(&mut self) {
        let loaded = self.records.load();
        if loaded.version != 0 && loaded.version < crate::record::FORMAT_VERSION {
            tracing::info!(
                from = loaded.version,
                to = crate::record::FORMAT_VERSION,
                "migrating pod records"
            );
        }
        for p in &loaded.problems {
            self.report_record_problem(p);
        }
        let containers = self.list_containers().await;
        let mut by_uid: BTreeMap<String, Vec<ContainerInfo>> = BTreeMap::new();
        for c in containers {
            by_uid.entry(c.pod.uid.clone()).or_default().push(c);
        }
        let known: BTreeSet<String> = loaded.records.iter().map(|r| r.pod.uid.clone()).collect();
        for rec in loaded.records {
            let adopted = by_uid.remove(&rec.pod.uid).unwrap_or_default();
            tracing::info!(pod = %rec.pod.key(), containers = adopted.len(), "adopting pod");
            let key = (rec.pod.namespace.clone(), rec.pod.name.clone());
            // its worker starts after the first pass (`start_adopted`)
            self.pods.insert(
                key,
                PodEntry {
                    record: rec,
                    annotations: BTreeMap::new(),
                    handle: None,
                    status: None,
                    logs: Vec::new(),
                    terminating: None,
                    crash: None,
                    adopting: Some(adopted),
                },
            );
        }
        for (uid, list) in by_uid {
            let pod = list[0].pod.clone();
            tracing::warn!(pod = %pod.key(), containers = list.len(), "containers without a pod record: kept running until the manifests decide");
            self.orphans.insert(
                uid,
                Orphan {
                    pod,
                    containers: list,
                    reported: false,
                },
            );
        }
        match self.deps.net.list_pods().await {
            Ok(net_pods) => {
                for p in net_pods {
                    if known.contains(&p.uid) || self.orphans.contains_key(&p.uid) {
                        continue;
                    }
                    tracing::warn!(pod = %p.key(), "pod network without a pod record: kept until the manifests decide");
                    self.orphans.insert(
                        p.uid.clone(),
                        Orphan {
                            pod: p,
                            containers: Vec::new(),
                            reported: false,
                        },
                    );
                }
            }
            Err(e) => tracing::warn!(err = %error_chain(&e), "listing pod networks"),
        }
    }

    async fn list_containers(&mut self) -> Vec<ContainerInfo> {
        let mut retry = schedule::list();
        for attempt in 1..=LIST_ATTEMPTS {
            match self.deps.runtime.list().await {
                Ok(c) => return c,
                Err(e) if attempt == LIST_ATTEMPTS => {
                    let msg = format!(
                        "listing containers failed {attempt} times ({}); recorded pods adopt their containers as their workers find them, unrecorded ones are not seen",
                        error_chain(&e)
                    );
                    tracing::error!(%msg, "adoption");
                    self.node_event(true, "AdoptionIncomplete", &msg);
                }
                Err(e) => {
                    tracing::warn!(attempt, err = %error_chain(&e), "listing containers");
                    match error_policy(Step::Setup, Some(e.kind()), &mut retry) {
                        Policy::Retry(delay) => tokio::time::sleep(delay).await,
                        Policy::Fail(_) | Policy::Done => break,
                    }
                }
            }
        }
        Vec::new()
    }

    fn report_record_problem(&mut self, p: &RecordProblem) {
        let reason = match p {
            // a file moved aside or left unreadable is reported as every
            // other state file is ([`super::file_problems`])
            RecordProblem::Quarantined { .. } | RecordProblem::Unreadable { .. } => return,
            RecordProblem::EntriesDropped { .. } => "RecordsEntriesDropped",
        };
        let msg = p.message();
        tracing::error!(%msg, "pod records");
        self.node_event(true, reason, &msg);
        self.record_problems.push((reason.to_string(), msg));
    }

    pub(super) fn node_event(&mut self, warning: bool, reason: &str, message: &str) {
        let node = self.cfg.node_name.clone();
        self.events.record(
            EventInput {
                warning,
                kind: "Node",
                namespace: "",
                name: &node,
                reason,
                message,
            },
            SystemTime::now(),
        );
    }

    fn pod_event(&mut self, pod: &PodRef, warning: bool, reason: &str, message: &str) {
        self.events.record(
            EventInput {
                warning,
                kind: "Pod",
                namespace: &pod.namespace,
                name: &pod.name,
                reason,
                message,
            },
            SystemTime::now(),
        );
    }

    /// Plan every orphan against the desired set and act on the plan.
    pub(super) fn resolve_orphans(&mut self, desired: &DesiredState) {
        if self.orphans.is_empty() {
            return;
        }
        let mut adopted_any = false;
        for (uid, mut o) in std::mem::take(&mut self.orphans) {
            let key = (o.pod.namespace.clone(), o.pod.name.clone());
            let name_taken = self.pods.contains_key(&key);
            match plan_orphan(&o, desired, name_taken) {
                OrphanPlan::Adopt(d) => {
                    let msg = format!(
                        "pod recovered without a record from {} running container(s)",
                        o.containers.len()
                    );
                    tracing::info!(pod = %o.pod.key(), "adopting unrecorded pod");
                    self.pod_event(&o.pod, false, "Adopted", &msg);
                    let record = PodRecord {
                        pod: o.pod.clone(),
                        owner: d.owner.clone(),
                        owner_kind: d.owner_kind,
                        template_hash: d.template_hash.clone(),
                        spec_hash: d.spec_hash.clone(),
                        labels: d.labels.clone(),
                        spec: d.spec.clone(),
                        created: SystemTime::now(),
                        backoff: BTreeMap::new(),
                    };
                    let annotations = d.annotations.clone();
                    let handle =
                        self.spawn_worker(o.pod.clone(), *d, o.containers, &BTreeMap::new());
                    self.pods.insert(
                        key,
                        PodEntry {
                            record,
                            annotations,
                            handle: Some(handle),
                            status: None,
                            logs: Vec::new(),
                            terminating: None,
                            crash: None,
                            adopting: None,
                        },
                    );
                    adopted_any = true;
                }
                OrphanPlan::Remove(why) => {
                    tracing::info!(pod = %o.pod.key(), %why, "removing unrecorded pod");
                    self.pod_event(
                        &o.pod,
                        false,
                        "Killing",
                        &format!("removing pod without a record: {why}"),
                    );
                    let d = DesiredPod {
                        namespace: o.pod.namespace.clone(),
                        name: o.pod.name.clone(),
                        owner: None,
                        owner_kind: None,
                        template_hash: None,
                        labels: BTreeMap::new(),
                        annotations: BTreeMap::new(),
                        spec: Default::default(),
                        spec_hash: String::new(),
                    };
                    let handle =
                        self.spawn_worker(o.pod.clone(), d, o.containers, &BTreeMap::new());
                    let _ = handle.stop.send(Some(ORPHAN_GRACE));
                    self.reaping.insert(uid, (o.pod, handle));
                }
                OrphanPlan::Wait => {
                    if !o.reported {
                        o.reported = true;
                        self.pod_event(
                            &o.pod,
                            true,
                            "Unrecorded",
                            "pod runs without a record; kept running until every source has been read",
                        );
                    }
                    self.orphans.insert(uid, o);
                }
            }
        }
        if adopted_any {
            self.save_records();
        }
    }

    /// An orphan or a pod being reaped holds its name: no new instance starts
    /// beside it (their hostPorts and names would collide).
    pub(super) fn name_held_by_orphan(&self, ns: &str, name: &str) -> bool {
        self.orphans
            .values()
            .map(|o| &o.pod)
            .chain(self.reaping.values().map(|(p, _)| p))
            .any(|p| p.namespace == ns && p.name == name)
    }
}

/// Grace for the containers of a pod removed without a record: its spec
/// (and so its terminationGracePeriodSeconds) is unknown; Kubernetes' default.
const ORPHAN_GRACE: Duration = Duration::from_secs(30);

#[cfg(test)]
mod init_tests;
#[cfg(test)]
mod tests;
