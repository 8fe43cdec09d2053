//! `/api/v1/status`: the agent and its sources at a glance.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::ApiState;

pub async fn agent_status(State(st): State<ApiState>) -> Json<Value> {
    let (view, snap) = (st.view.borrow().clone(), st.status.borrow().clone());
    let mut counts: BTreeMap<&str, usize> = berth_spec::Kind::ALL
        .iter()
        .map(|k| (k.as_str(), 0))
        .collect();
    for k in view.desired.objects.keys() {
        *counts.entry(k.kind.as_str()).or_default() += 1;
    }
    let errors: usize = view
        .sources
        .iter()
        .map(|s| {
            s.diagnostics
                .iter()
                .filter(|d| d.diag.severity == berth_spec::Severity::Error)
                .count()
        })
        .sum();
    let mut conditions = snap.conditions.clone();
    conditions.extend(st.page.host.condition());
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "instance": &*st.instance,
        "node": &*st.node,
        "revision": view.desired.revision,
        "complete": view.desired.complete,
        "ready": snap.ready,
        "conditions": conditions,
        "host": &**st.page.host,
        "sources": view.sources,
        "objects": counts,
        "observed": {"pods": snap.pods.len(), "deployments": snap.deployments.len(), "services": snap.services.len(), "volumes": snap.volumes.len()},
        "reconcilePasses": snap.reconcile_passes,
        "errors": errors,
        "conflicts": view.conflicts,
        "notScheduled": view.unscheduled,
        "refused": view.refused,
        "skipped": view.sources.iter().map(|s| s.skipped_count).sum::<usize>(),
    }))
}
