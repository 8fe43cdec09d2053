//! `v1` Events as a cluster serves them: `involvedObject` with apiVersion,
//! kind, name, namespace and uid (what `kubectl describe` and
//! `kubectl events --for` select on), counts, first/last timestamps.

use std::collections::HashMap;

use berth_reconciler::Snapshot;
use berth_spec::k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use berth_spec::k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::sources::View;

/// (kind, namespace, name) -> uid of the objects the model holds.
pub type Uids = HashMap<(String, String, String), String>;

fn api_version(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => "apps/v1",
        "Job" | "CronJob" => "batch/v1",
        "Volume" => berth_spec::volume::API_VERSION,
        _ => "v1",
    }
}

fn time(t: jiff::Timestamp) -> Time {
    Time(t)
}

#[allow(clippy::too_many_arguments)]
fn event(
    uids: &Uids,
    kind: &str,
    ns: &str,
    name: &str,
    type_: &str,
    reason: &str,
    message: &str,
    first: jiff::Timestamp,
    last: jiff::Timestamp,
    count: u32,
) -> Event {
    // stable per (object, reason, first time), as unique as a cluster's `<name>.<hex>`
    let h = Sha256::digest(format!(
        "{kind}\0{ns}\0{name}\0{reason}\0{}",
        first.as_nanosecond()
    ));
    let ev_name = format!("{name}.{}", hex::encode(&h[..8]));
    let uid = uids
        .get(&(kind.to_string(), ns.to_string(), name.to_string()))
        .cloned();
    let ev_ns = if ns.is_empty() { "default" } else { ns };
    Event {
        metadata: ObjectMeta {
            name: Some(ev_name),
            namespace: Some(ev_ns.to_string()),
            creation_timestamp: Some(time(first)),
            ..Default::default()
        },
        involved_object: ObjectReference {
            api_version: Some(api_version(kind).to_string()),
            kind: Some(kind.to_string()),
            name: Some(name.to_string()),
            namespace: (!ns.is_empty()).then(|| ns.to_string()),
            uid,
            ..Default::default()
        },
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        type_: Some(type_.to_string()),
        first_timestamp: Some(time(first)),
        last_timestamp: Some(time(last)),
        count: Some(count as i32),
        source: Some(EventSource {
            component: Some("berth".into()),
            host: None,
        }),
        reporting_component: Some("berth".into()),
        reporting_instance: Some("berth".into()),
        ..Default::default()
    }
}

fn ts(t: std::time::SystemTime) -> jiff::Timestamp {
    jiff::Timestamp::try_from(t).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

/// The reconciler's events, the rollouts' events and the policy's refusals.
pub fn events(view: &View, snap: &Snapshot, uids: &Uids) -> Vec<Value> {
    // the reconciler's events, then the rollouts of the sources' revisions
    let mut out: Vec<Event> = snap
        .events
        .iter()
        .chain(view.rollout_events.iter())
        .map(|e| {
            let kind = e.kind.split('/').next().unwrap_or("");
            event(
                uids,
                kind,
                &e.namespace,
                &e.name,
                &e.type_,
                &e.reason,
                &e.message,
                ts(e.first_time),
                ts(e.last_time),
                e.count,
            )
        })
        .collect();
    // objects the operator's policy refused (they never reach the reconciler)
    out.extend(view.refused.iter().map(|r| {
        let k = &r.key;
        let since: jiff::Timestamp = r.since.parse().unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        event(
            uids,
            k.kind.as_str(),
            &k.namespace,
            &k.name,
            "Warning",
            "PolicyViolation",
            &r.reasons.join("; "),
            since,
            since,
            1,
        )
    }));
    // objects no node fits: the scheduler's event, on the object itself
    out.extend(view.unscheduled.iter().map(|u| {
        let k = u.sourced.object.key();
        let since = view
            .first_seen
            .get(&k)
            .copied()
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        event(
            uids,
            k.kind.as_str(),
            &k.namespace,
            &k.name,
            "Warning",
            "FailedScheduling",
            &format!("{} ({})", super::objects::UNSCHEDULABLE, u.reason),
            since,
            since,
            1,
        )
    }));
    out.into_iter()
        .map(|e| serde_json::to_value(e).unwrap_or(Value::Null))
        .collect()
}
