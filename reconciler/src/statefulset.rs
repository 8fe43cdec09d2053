//! StatefulSets on one node, planned purely (like [`crate::deployment`]).
//!
//! Pods are named `<set>-<ordinal>` (stable), with `spec.hostname` = the
//! pod's name and `spec.subdomain` = `serviceName` (optional, as since
//! Kubernetes 1.29: no subdomain without it), so a headless Service of that
//! name answers `web-0.<service>`; each `volumeClaimTemplates` entry
//! becomes the pod's own berth Volume `<template>-<set>-<ordinal>` (kept
//! when the set scales down, as Kubernetes keeps the claims).
//!
//! `OrderedReady` (the default): pods are created one at a time in ordinal
//! order, each once every lower one is Running and Ready, and removed one at
//! a time from the highest ordinal; nothing proceeds while a pod of the set
//! is terminating. `Parallel`: all missing pods are created and all condemned
//! pods deleted at once. Updates: `RollingUpdate` replaces, from the highest
//! ordinal down to `partition`, one pod at a time, the pods not at the
//! current revision, once every pod is ready; `OnDelete` replaces nothing (a
//! pod is recreated at the current revision after it was deleted).

use std::collections::BTreeMap;

use berth_spec::k8s_openapi::api::apps::v1::StatefulSetSpec;
use berth_spec::k8s_openapi::api::core::v1::{
    PersistentVolumeClaimVolumeSource, PodTemplateSpec, Volume,
};

/// The revision (hash) of a template.
pub fn revision(t: &PodTemplateSpec) -> String {
    crate::hash::spec_hash(t)
}

/// A pod of the set as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodObs {
    pub ordinal: u32,
    pub revision: String,
    /// Running and Ready.
    pub ready: bool,
    pub terminating: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Ordinals to create (at the current revision).
    pub create: Vec<u32>,
    /// Ordinals to delete (gracefully).
    pub delete: Vec<u32>,
}

/// The ordinal of pod `pod` of set `set` (`web-3` → 3).
pub fn ordinal(set: &str, pod: &str) -> Option<u32> {
    let n = pod.strip_prefix(set)?.strip_prefix('-')?;
    if n.is_empty() || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    n.parse().ok()
}

/// The name of the berth Volume of template `claim` for pod `ordinal`
/// (Kubernetes names the claim the same way).
pub fn claim_name(claim: &str, set: &str, ordinal: u32) -> String {
    format!("{claim}-{set}-{ordinal}")
}

/// The pod template of ordinal `ordinal`: hostname, subdomain, the
/// `statefulset.kubernetes.io/pod-name` label and the per-replica volumes.
pub fn pod_template(set: &str, spec: &StatefulSetSpec, ordinal: u32) -> PodTemplateSpec {
    let mut t = spec.template.clone();
    let name = format!("{set}-{ordinal}");
    let labels = t.metadata.get_or_insert_with(Default::default);
    let labels = labels.labels.get_or_insert_with(BTreeMap::new);
    labels.insert("statefulset.kubernetes.io/pod-name".into(), name.clone());
    labels.insert("apps.kubernetes.io/pod-index".into(), ordinal.to_string());
    let ps = t.spec.get_or_insert_with(Default::default);
    ps.hostname = Some(name);
    if let Some(svc) = spec.service_name.as_deref().filter(|s| !s.is_empty()) {
        ps.subdomain = Some(svc.to_string());
    }
    let vols = ps.volumes.get_or_insert_with(Vec::new);
    for c in spec.volume_claim_templates.iter().flatten() {
        let Some(claim) = c.metadata.name.as_deref() else {
            continue;
        };
        // a template named like a pod volume replaces it, as in Kubernetes
        vols.retain(|v| v.name != claim);
        vols.push(Volume {
            name: claim.to_string(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim_name(claim, set, ordinal),
                read_only: None,
            }),
            ..Default::default()
        });
    }
    t
}

/// Plan one step. `revision` is the current template's revision.
pub fn plan(spec: &StatefulSetSpec, revision: &str, pods: &[PodObs]) -> Plan {
    let replicas = spec.replicas.unwrap_or(1).max(0) as u32;
    let parallel = spec.pod_management_policy.as_deref() == Some("Parallel");
    let strategy = spec.update_strategy.as_ref();
    let on_delete = strategy.and_then(|s| s.type_.as_deref()) == Some("OnDelete");
    let partition = strategy
        .and_then(|s| s.rolling_update.as_ref())
        .and_then(|r| r.partition)
        .unwrap_or(0)
        .max(0) as u32;
    let by_ordinal: BTreeMap<u32, &PodObs> = pods.iter().map(|p| (p.ordinal, p)).collect();
    let mut out = Plan::default();
    let terminating = pods.iter().any(|p| p.terminating);

    // condemned: ordinals beyond replicas, highest first
    let condemned: Vec<u32> = by_ordinal
        .keys()
        .rev()
        .copied()
        .filter(|o| *o >= replicas && !by_ordinal[o].terminating)
        .collect();
    if parallel {
        out.delete.extend(&condemned);
    }

    // create missing ordinals
    for o in 0..replicas {
        match by_ordinal.get(&o) {
            None => {
                if parallel {
                    out.create.push(o);
                } else {
                    if !terminating {
                        out.create.push(o);
                    }
                    return out;
                }
            }
            Some(p) if !parallel && (!p.ready || p.terminating) => return out,
            Some(_) => {}
        }
    }
    if !parallel && !condemned.is_empty() {
        if !terminating {
            out.delete.push(condemned[0]);
        }
        return out;
    }
    if !out.create.is_empty() || !out.delete.is_empty() || terminating || on_delete {
        return out;
    }
    // rolling update: every pod is there and ready; replace the highest
    // outdated one at or above the partition
    let all_ready = (0..replicas).all(|o| by_ordinal.get(&o).is_some_and(|p| p.ready));
    if all_ready
        && let Some(o) = (partition..replicas)
            .rev()
            .find(|o| by_ordinal.get(o).is_some_and(|p| p.revision != revision))
    {
        out.delete.push(o);
    }
    out
}

#[cfg(test)]
mod tests {
    use berth_spec::k8s_openapi::api::apps::v1::{
        RollingUpdateStatefulSetStrategy, StatefulSetUpdateStrategy,
    };
    use berth_spec::k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use berth_spec::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn spec(replicas: i32, policy: &str, update: &str, partition: i32) -> StatefulSetSpec {
        StatefulSetSpec {
            replicas: Some(replicas),
            pod_management_policy: Some(policy.into()),
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some(update.into()),
                rolling_update: (update == "RollingUpdate").then_some(
                    RollingUpdateStatefulSetStrategy {
                        partition: Some(partition),
                        max_unavailable: None,
                    },
                ),
            }),
            service_name: Some("nginx".into()),
            ..Default::default()
        }
    }

    fn pod(ordinal: u32, rev: &str, ready: bool) -> PodObs {
        PodObs {
            ordinal,
            revision: rev.into(),
            ready,
            terminating: false,
        }
    }

    fn dying(ordinal: u32) -> PodObs {
        PodObs {
            terminating: true,
            ..pod(ordinal, "r1", true)
        }
    }

    fn plan_of(create: &[u32], delete: &[u32]) -> Plan {
        Plan {
            create: create.to_vec(),
            delete: delete.to_vec(),
        }
    }

    #[test]
    fn ordered_ready_table() {
        let ordered = spec(3, "OrderedReady", "RollingUpdate", 0);
        let cases: Vec<(&str, StatefulSetSpec, Vec<PodObs>, Plan)> = vec![
            (
                "fresh: only web-0",
                ordered.clone(),
                vec![],
                plan_of(&[0], &[]),
            ),
            (
                "web-0 not ready: wait",
                ordered.clone(),
                vec![pod(0, "r1", false)],
                plan_of(&[], &[]),
            ),
            (
                "web-0 ready: web-1",
                ordered.clone(),
                vec![pod(0, "r1", true)],
                plan_of(&[1], &[]),
            ),
            (
                "a gap is filled first",
                ordered.clone(),
                vec![pod(0, "r1", true), pod(2, "r1", true)],
                plan_of(&[1], &[]),
            ),
            (
                "steady",
                ordered.clone(),
                vec![pod(0, "r1", true), pod(1, "r1", true), pod(2, "r1", true)],
                plan_of(&[], &[]),
            ),
            (
                "scale down: highest first, one at a time",
                spec(1, "OrderedReady", "RollingUpdate", 0),
                vec![pod(0, "r1", true), pod(1, "r1", true), pod(2, "r1", true)],
                plan_of(&[], &[2]),
            ),
            (
                "scale down waits for the terminating one",
                spec(1, "OrderedReady", "RollingUpdate", 0),
                vec![pod(0, "r1", true), pod(1, "r1", true), dying(2)],
                plan_of(&[], &[]),
            ),
            (
                "a recreated pod waits for its terminating predecessor",
                ordered.clone(),
                vec![dying(0)],
                plan_of(&[], &[]),
            ),
        ];
        for (what, s, pods, want) in cases {
            assert_eq!(plan(&s, "r1", &pods), want, "{what}");
        }
    }

    #[test]
    fn parallel_creates_and_deletes_at_once() {
        let s = spec(3, "Parallel", "RollingUpdate", 0);
        assert_eq!(plan(&s, "r1", &[]), plan_of(&[0, 1, 2], &[]));
        let s = spec(1, "Parallel", "RollingUpdate", 0);
        let pods = [pod(0, "r1", true), pod(1, "r1", false), pod(2, "r1", true)];
        assert_eq!(plan(&s, "r1", &pods), plan_of(&[], &[2, 1]));
    }

    #[test]
    fn rolling_update_with_partition_and_on_delete() {
        let all_old = [pod(0, "r1", true), pod(1, "r1", true), pod(2, "r1", true)];
        let s = spec(3, "OrderedReady", "RollingUpdate", 0);
        assert_eq!(
            plan(&s, "r2", &all_old),
            plan_of(&[], &[2]),
            "highest first"
        );
        let some_new = [pod(0, "r1", true), pod(1, "r1", true), pod(2, "r2", true)];
        assert_eq!(plan(&s, "r2", &some_new), plan_of(&[], &[1]));
        let unready = [pod(0, "r1", true), pod(1, "r1", true), pod(2, "r2", false)];
        assert_eq!(
            plan(&s, "r2", &unready),
            plan_of(&[], &[]),
            "waits for the updated pod to be ready"
        );
        // partition 2: only ordinals >= 2 are updated
        let s = spec(3, "OrderedReady", "RollingUpdate", 2);
        assert_eq!(plan(&s, "r2", &all_old), plan_of(&[], &[2]));
        assert_eq!(plan(&s, "r2", &some_new), plan_of(&[], &[]));
        // OnDelete: nothing is replaced, a deleted pod comes back
        let s = spec(3, "OrderedReady", "OnDelete", 0);
        assert_eq!(plan(&s, "r2", &all_old), plan_of(&[], &[]));
        assert_eq!(
            plan(&s, "r2", &[pod(0, "r1", true), pod(2, "r1", true)]),
            plan_of(&[1], &[])
        );
    }

    #[test]
    fn names_ordinals_and_claims() {
        assert_eq!(ordinal("web", "web-0"), Some(0));
        assert_eq!(ordinal("web", "web-12"), Some(12));
        assert_eq!(ordinal("web", "web-01"), None);
        assert_eq!(ordinal("web", "webx-1"), None);
        assert_eq!(ordinal("web", "web-"), None);
        assert_eq!(ordinal("web-a", "web-a-3"), Some(3));
        let mut s = spec(2, "OrderedReady", "RollingUpdate", 0);
        s.volume_claim_templates = Some(vec![PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("www".into()),
                ..Default::default()
            },
            ..Default::default()
        }]);
        let t = pod_template("web", &s, 1);
        let ps = t.spec.unwrap();
        assert_eq!(ps.hostname.as_deref(), Some("web-1"));
        assert_eq!(ps.subdomain.as_deref(), Some("nginx"));
        let v = &ps.volumes.unwrap()[0];
        assert_eq!(
            v.persistent_volume_claim.as_ref().unwrap().claim_name,
            "www-web-1"
        );
        assert_eq!(
            t.metadata.unwrap().labels.unwrap()["statefulset.kubernetes.io/pod-name"],
            "web-1"
        );
        // serviceName is optional (Kubernetes >= 1.29): no subdomain then
        s.service_name = None;
        let ps = pod_template("web", &s, 0).spec.unwrap();
        assert_eq!(
            (ps.hostname.as_deref(), ps.subdomain.as_deref()),
            (Some("web-0"), None)
        );
    }
}
