//! The act side of StatefulSets, DaemonSets, ReplicaSets and
//! ReplicationControllers: gather each one's pods, run its pure planner
//! ([`crate::statefulset`], [`crate::daemonset`], [`crate::replicaset`]),
//! delete what the plan condemns and add the pods it creates to the pass's
//! wanted pods. Pods carry their controller in their record's `owner`
//! ([`crate::owner`]), so adoption after a restart and pruning work as for
//! Deployments.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use berth_spec::k8s_openapi::api::core::v1::PodTemplateSpec;
use berth_spec::{Kind, Object};

use super::{PodEntry, Reconciler, grace_of, pod_ready};
use crate::desired::DesiredState;
use crate::events::EventInput;
use crate::pod::DesiredPod;
use crate::traits::{Images, Network, Runtime};
use crate::{daemonset, replicaset, statefulset};

/// Label of StatefulSet and DaemonSet pods naming their revision.
pub const LABEL_REVISION: &str = "controller-revision-hash";

/// The revision of a template (StatefulSet, DaemonSet, ReplicaSet pods).
pub fn revision(t: &PodTemplateSpec) -> String {
    statefulset::revision(t)
}

/// A pod of controller `kind`/`set` from `template`.
pub(crate) fn owned_pod(
    ns: &str,
    kind: Kind,
    set: &str,
    name: String,
    template: &PodTemplateSpec,
    rev: &str,
) -> DesiredPod {
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    if matches!(kind, Kind::StatefulSet | Kind::DaemonSet) {
        labels.insert(LABEL_REVISION.into(), format!("{set}-{rev}"));
    }
    let spec = template.spec.clone().unwrap_or_default();
    DesiredPod {
        namespace: ns.to_string(),
        name,
        owner: Some(set.to_string()),
        owner_kind: Some(kind),
        template_hash: Some(rev.to_string()),
        labels,
        annotations: meta.annotations.unwrap_or_default(),
        spec_hash: crate::hash::spec_hash(&spec),
        spec,
    }
}

/// The desired pod of a replicated object named `name`, if `name` is a pod
/// its current template would create (used to adopt unrecorded pods).
pub(crate) fn pod_named(obj: &Object, ns: &str, name: &str) -> Option<DesiredPod> {
    let m = obj.metadata();
    let set = m.name.as_deref()?;
    if berth_spec::namespace_of(m) != ns {
        return None;
    }
    match obj {
        Object::StatefulSet(s) => {
            let o = statefulset::ordinal(set, name)?;
            let t = statefulset::pod_template(set, &s.spec, o);
            let rev = statefulset::revision(&s.spec.template);
            Some(owned_pod(ns, Kind::StatefulSet, set, name.into(), &t, &rev))
        }
        Object::DaemonSet(d) => {
            let rev = revision(&d.spec.template);
            (daemon_pod_name(ns, set, &rev) == name).then(|| {
                owned_pod(
                    ns,
                    Kind::DaemonSet,
                    set,
                    name.into(),
                    &d.spec.template,
                    &rev,
                )
            })
        }
        Object::ReplicaSet(_) | Object::ReplicationController(_) => {
            let t = obj.pod_template()?;
            let suffix = name.strip_prefix(set)?.strip_prefix('-')?;
            (suffix.len() == 5)
                .then(|| owned_pod(ns, obj.kind(), set, name.into(), t, &revision(t)))
        }
        _ => None,
    }
}

fn daemon_pod_name(ns: &str, set: &str, rev: &str) -> String {
    format!(
        "{set}-{}",
        crate::hash::name_suffix(&format!("{ns}/{set}/{rev}"), 5)
    )
}

/// The Volumes (claims) of StatefulSets' replicas: those of the ordinals
/// wanted and of every pod that exists (a scaled-down replica's claim stays).
pub(crate) fn claims(
    desired: &DesiredState,
    pods: &BTreeMap<(String, String), PodEntry>,
) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for s in desired.objects.values() {
        let Object::StatefulSet(set) = &s.object else {
            continue;
        };
        let ns = berth_spec::namespace_of(&set.metadata);
        let Some(name) = set.metadata.name.as_deref() else {
            continue;
        };
        let replicas = set.spec.replicas.unwrap_or(1).max(0) as u32;
        let mut ordinals: BTreeSet<u32> = (0..replicas).collect();
        ordinals.extend(
            pods.values()
                .filter(|e| {
                    e.record.pod.namespace == ns && e.record.owned_by(Kind::StatefulSet, name)
                })
                .filter_map(|e| statefulset::ordinal(name, &e.record.pod.name)),
        );
        for c in set.spec.volume_claim_templates.iter().flatten() {
            let Some(claim) = c.metadata.name.as_deref() else {
                continue;
            };
            for o in &ordinals {
                out.insert((ns.to_string(), statefulset::claim_name(claim, name, *o)));
            }
        }
    }
    out
}

impl<I: Images, R: Runtime, N: Network> Reconciler<I, R, N> {
    fn owned(&self, ns: &str, kind: Kind, set: &str) -> Vec<&PodEntry> {
        self.pods
            .values()
            .filter(|e| e.record.pod.namespace == ns && e.record.owned_by(kind, set))
            .collect()
    }

    /// Plan one StatefulSet, DaemonSet, ReplicaSet or ReplicationController.
    pub(super) fn plan_replicated(
        &mut self,
        obj: &Object,
        key: &(String, String),
        now: SystemTime,
        want: &mut Vec<DesiredPod>,
    ) {
        let (ns, set) = (key.0.as_str(), key.1.as_str());
        let kind = obj.kind();
        let mut delete: Vec<String> = Vec::new();
        let mut create: Vec<DesiredPod> = Vec::new();
        match obj {
            Object::StatefulSet(s) => {
                let rev = statefulset::revision(&s.spec.template);
                let obs: Vec<statefulset::PodObs> = self
                    .owned(ns, kind, set)
                    .into_iter()
                    .filter_map(|e| {
                        Some(statefulset::PodObs {
                            ordinal: statefulset::ordinal(set, &e.record.pod.name)?,
                            revision: e.record.template_hash.clone().unwrap_or_default(),
                            ready: e.status.as_ref().is_some_and(pod_ready),
                            terminating: e.terminating.is_some(),
                        })
                    })
                    .collect();
                let p = statefulset::plan(&s.spec, &rev, &obs);
                delete.extend(p.delete.iter().map(|o| format!("{set}-{o}")));
                for o in p.create {
                    let t = statefulset::pod_template(set, &s.spec, o);
                    create.push(owned_pod(ns, kind, set, format!("{set}-{o}"), &t, &rev));
                }
            }
            Object::DaemonSet(d) => {
                let rev = revision(&d.spec.template);
                let obs: Vec<daemonset::PodObs> = self
                    .owned(ns, kind, set)
                    .into_iter()
                    .map(|e| daemonset::PodObs {
                        name: e.record.pod.name.clone(),
                        revision: e.record.template_hash.clone().unwrap_or_default(),
                        terminating: e.terminating.is_some(),
                    })
                    .collect();
                let p = daemonset::plan(&d.spec, &rev, &obs);
                delete.extend(p.delete);
                if p.create {
                    let name = daemon_pod_name(ns, set, &rev);
                    create.push(owned_pod(ns, kind, set, name, &d.spec.template, &rev));
                }
            }
            Object::ReplicaSet(_) | Object::ReplicationController(_) => {
                let (replicas, selector) = match obj {
                    Object::ReplicaSet(r) => (
                        r.spec.replicas.unwrap_or(1),
                        r.spec.selector.match_labels.clone().unwrap_or_default(),
                    ),
                    Object::ReplicationController(r) => {
                        let s = r.spec.clone().unwrap_or_default();
                        (s.replicas.unwrap_or(1), s.selector.unwrap_or_default())
                    }
                    _ => return,
                };
                let Some(t) = obj.pod_template() else { return };
                let rev = revision(t);
                let obs: Vec<replicaset::PodObs> = self
                    .owned(ns, kind, set)
                    .into_iter()
                    .map(|e| replicaset::PodObs {
                        name: e.record.pod.name.clone(),
                        labels: e.record.labels.clone(),
                        ready: e.status.as_ref().is_some_and(pod_ready),
                        terminating: e.terminating.is_some(),
                        created: e.record.created,
                    })
                    .collect();
                let p = replicaset::plan(replicas, &selector, &obs);
                delete.extend(p.delete);
                let mut n = 0u32;
                while create.len() < p.create && n < 10_000 {
                    let name = format!(
                        "{set}-{}",
                        crate::hash::name_suffix(&format!("{ns}/{kind}/{set}/{n}"), 5)
                    );
                    n += 1;
                    let taken = self.pods.contains_key(&(ns.to_string(), name.clone()))
                        || want.iter().any(|w| w.namespace == ns && w.name == name);
                    if !taken {
                        create.push(owned_pod(ns, kind, set, name, t, &rev));
                    }
                }
            }
            _ => return,
        }
        for name in delete {
            let pk = (ns.to_string(), name.clone());
            if let Some(e) = self.pods.get(&pk) {
                let grace = grace_of(&e.record.spec);
                self.delete_pod(&pk, grace, "Killing");
                self.set_event(
                    kind,
                    key,
                    "SuccessfulDelete",
                    &format!("delete Pod {name} in {kind} {set} successful"),
                    now,
                );
            }
        }
        for d in create {
            if self
                .pods
                .contains_key(&(d.namespace.clone(), d.name.clone()))
            {
                continue;
            }
            self.set_event(
                kind,
                key,
                "SuccessfulCreate",
                &format!("create Pod {} in {kind} {set} successful", d.name),
                now,
            );
            want.push(d);
        }
    }

    fn set_event(
        &mut self,
        kind: Kind,
        key: &(String, String),
        reason: &str,
        message: &str,
        now: SystemTime,
    ) {
        self.events.record(
            EventInput {
                warning: false,
                kind: kind.as_str(),
                namespace: &key.0,
                name: &key.1,
                reason,
                message,
            },
            now,
        );
    }
}

#[cfg(test)]
mod tests;
