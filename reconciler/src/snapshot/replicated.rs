//! Status of StatefulSets, DaemonSets, ReplicaSets and ReplicationControllers,
//! counted from their pods as their Kubernetes controllers count them.

use berth_spec::Kind;
use berth_spec::k8s_openapi::api::apps::v1::{
    DaemonSet, DaemonSetStatus, ReplicaSet, ReplicaSetStatus, StatefulSet, StatefulSetStatus,
};
use berth_spec::k8s_openapi::api::core::v1::{ReplicationController, ReplicationControllerStatus};

use crate::controller::replicated::revision;
use crate::controller::{PodEntry, Reconciler, pod_ready};
use crate::{replicaset, statefulset};

struct Counts {
    /// Pods not terminating.
    live: i32,
    ready: i32,
    /// Live pods at the current template's revision.
    updated: i32,
    /// The revision most live pods that are not updated run, if any.
    older: Option<String>,
}

fn count<I, R, N>(r: &Reconciler<I, R, N>, ns: &str, kind: Kind, set: &str, rev: &str) -> Counts {
    let pods: Vec<&PodEntry> = r
        .pods
        .values()
        .filter(|e| {
            e.record.pod.namespace == ns && e.record.owned_by(kind, set) && e.terminating.is_none()
        })
        .collect();
    let mut older: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in &pods {
        let h = e.record.template_hash.as_deref().unwrap_or("");
        if h != rev {
            *older.entry(h).or_default() += 1;
        }
    }
    Counts {
        live: pods.len() as i32,
        ready: pods
            .iter()
            .filter(|e| e.status.as_ref().is_some_and(pod_ready))
            .count() as i32,
        updated: pods
            .iter()
            .filter(|e| e.record.template_hash.as_deref() == Some(rev))
            .count() as i32,
        older: older
            .into_iter()
            .max_by_key(|(_, n)| *n)
            .map(|(h, _)| h.to_string()),
    }
}

pub(crate) fn stateful_set<I, R, N>(r: &Reconciler<I, R, N>, s: &StatefulSet) -> StatefulSet {
    let mut s = s.clone();
    let ns = berth_spec::namespace_of(&s.metadata).to_string();
    let name = s.metadata.name.clone().unwrap_or_default();
    let rev = statefulset::revision(&s.spec.template);
    let c = count(r, &ns, Kind::StatefulSet, &name, &rev);
    let update = format!("{name}-{rev}");
    let current = match &c.older {
        Some(h) => format!("{name}-{h}"),
        None => update.clone(),
    };
    s.status = Some(StatefulSetStatus {
        observed_generation: Some(1),
        replicas: c.live,
        ready_replicas: Some(c.ready),
        available_replicas: Some(c.ready),
        current_replicas: Some(if c.older.is_some() {
            c.live - c.updated
        } else {
            c.updated
        }),
        updated_replicas: Some(c.updated),
        current_revision: Some(current),
        update_revision: Some(update),
        collision_count: Some(0),
        ..Default::default()
    });
    s
}

pub(crate) fn daemon_set<I, R, N>(r: &Reconciler<I, R, N>, d: &DaemonSet) -> DaemonSet {
    let mut d = d.clone();
    let ns = berth_spec::namespace_of(&d.metadata).to_string();
    let name = d.metadata.name.clone().unwrap_or_default();
    let rev = revision(&d.spec.template);
    let c = count(r, &ns, Kind::DaemonSet, &name, &rev);
    // a DaemonSet the reconciler sees matches this node (see crate::daemonset)
    d.status = Some(DaemonSetStatus {
        observed_generation: Some(1),
        desired_number_scheduled: 1,
        current_number_scheduled: c.live.min(1),
        number_misscheduled: 0,
        number_ready: c.ready.min(1),
        number_available: Some(c.ready.min(1)),
        number_unavailable: Some(1 - c.ready.min(1)),
        updated_number_scheduled: Some(c.updated.min(1)),
        ..Default::default()
    });
    d
}

fn matching<I, R, N>(
    r: &Reconciler<I, R, N>,
    ns: &str,
    kind: Kind,
    set: &str,
    selector: &std::collections::BTreeMap<String, String>,
) -> (i32, i32) {
    let pods: Vec<&PodEntry> = r
        .pods
        .values()
        .filter(|e| {
            e.record.pod.namespace == ns
                && e.record.owned_by(kind, set)
                && e.terminating.is_none()
                && replicaset::selects(selector, &e.record.labels)
        })
        .collect();
    let ready = pods
        .iter()
        .filter(|e| e.status.as_ref().is_some_and(pod_ready))
        .count();
    (pods.len() as i32, ready as i32)
}

pub(crate) fn replica_set<I, R, N>(r: &Reconciler<I, R, N>, rs: &ReplicaSet) -> ReplicaSet {
    let mut rs = rs.clone();
    let ns = berth_spec::namespace_of(&rs.metadata).to_string();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let sel = rs.spec.selector.match_labels.clone().unwrap_or_default();
    let (live, ready) = matching(r, &ns, Kind::ReplicaSet, &name, &sel);
    rs.status = Some(ReplicaSetStatus {
        observed_generation: Some(1),
        replicas: live,
        fully_labeled_replicas: Some(live),
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        ..Default::default()
    });
    rs
}

pub(crate) fn replication_controller<I, R, N>(
    r: &Reconciler<I, R, N>,
    rc: &ReplicationController,
) -> ReplicationController {
    let mut rc = rc.clone();
    let ns = berth_spec::namespace_of(&rc.metadata).to_string();
    let name = rc.metadata.name.clone().unwrap_or_default();
    let sel = rc
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .unwrap_or_default();
    let (live, ready) = matching(r, &ns, Kind::ReplicationController, &name, &sel);
    rc.status = Some(ReplicationControllerStatus {
        observed_generation: Some(1),
        replicas: live,
        fully_labeled_replicas: Some(live),
        ready_replicas: Some(ready),
        available_replicas: Some(ready),
        ..Default::default()
    });
    rc
}
