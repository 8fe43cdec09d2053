//! `/metrics` in the Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use super::ApiState;

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

pub async fn metrics(State(st): State<ApiState>) -> impl IntoResponse {
    let (view, snap) = (st.view.borrow().clone(), st.status.borrow().clone());
    let mut o = String::new();
    let _ = writeln!(
        o,
        "# HELP berth_api_streams_open Watch and log-follow streams open now.\n# TYPE berth_api_streams_open gauge\nberth_api_streams_open {}",
        st.streams.open()
    );
    let _ = writeln!(
        o,
        "# HELP berth_agent_condition An agent-level problem (e.g. ImageImportsSucceeded False: an image archive failed to import).\n# TYPE berth_agent_condition gauge"
    );
    let host_condition = st.page.host.condition();
    for c in snap.conditions.iter().chain(host_condition.iter()) {
        let _ = writeln!(
            o,
            "berth_agent_condition{{type=\"{}\",status=\"{}\",reason=\"{}\"}} 1",
            esc(&c.type_),
            esc(&c.status),
            esc(&c.reason)
        );
    }
    let _ = writeln!(
        o,
        "# HELP berth_source_info A configured manifest source and its applied revision.\n# TYPE berth_source_info gauge"
    );
    for s in &view.sources {
        let _ = writeln!(
            o,
            "berth_source_info{{type=\"{}\",location=\"{}\",revision=\"{}\"}} 1",
            s.kind,
            esc(&s.location),
            esc(s.revision.as_deref().unwrap_or(""))
        );
    }
    let _ = writeln!(
        o,
        "# HELP berth_source_complete 1 when the source produced a complete set.\n# TYPE berth_source_complete gauge"
    );
    for s in &view.sources {
        let _ = writeln!(
            o,
            "berth_source_complete{{type=\"{}\",location=\"{}\"}} {}",
            s.kind,
            esc(&s.location),
            u8::from(s.complete)
        );
    }
    let _ = writeln!(
        o,
        "# HELP berth_source_error 1 when the source's last read or fetch failed.\n# TYPE berth_source_error gauge"
    );
    for s in &view.sources {
        let _ = writeln!(
            o,
            "berth_source_error{{type=\"{}\",location=\"{}\"}} {}",
            s.kind,
            esc(&s.location),
            u8::from(s.last_error.is_some())
        );
    }
    let _ = writeln!(
        o,
        "# HELP berth_source_last_sync_timestamp_seconds Time of the last successful read or fetch.\n# TYPE berth_source_last_sync_timestamp_seconds gauge"
    );
    for s in &view.sources {
        if let Some(t) = s
            .last_sync
            .as_deref()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        {
            let _ = writeln!(
                o,
                "berth_source_last_sync_timestamp_seconds{{type=\"{}\",location=\"{}\"}} {}",
                s.kind,
                esc(&s.location),
                t.as_second()
            );
        }
    }
    rollout_metrics(&mut o, &view);
    let _ = writeln!(
        o,
        "# HELP berth_objects Desired objects by kind.\n# TYPE berth_objects gauge"
    );
    let mut counts: BTreeMap<&str, usize> = berth_spec::Kind::ALL
        .iter()
        .map(|k| (k.as_str(), 0))
        .collect();
    for k in view.desired.objects.keys() {
        *counts.entry(k.kind.as_str()).or_default() += 1;
    }
    for (k, n) in counts {
        let _ = writeln!(o, "berth_objects{{kind=\"{k}\"}} {n}");
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
    let _ = writeln!(
        o,
        "# HELP berth_parse_errors Manifest errors currently reported.\n# TYPE berth_parse_errors gauge\nberth_parse_errors {errors}"
    );
    let _ = writeln!(
        o,
        "# HELP berth_objects_not_scheduled Objects whose nodeSelector does not match this node.\n# TYPE berth_objects_not_scheduled gauge\nberth_objects_not_scheduled {}",
        view.unscheduled.len()
    );
    let _ = writeln!(
        o,
        "# HELP berth_reconcile_passes_total Reconcile passes since start.\n# TYPE berth_reconcile_passes_total counter\nberth_reconcile_passes_total {}",
        snap.reconcile_passes
    );
    let _ = writeln!(
        o,
        "# HELP berth_pods Observed pods by phase.\n# TYPE berth_pods gauge"
    );
    let mut phases: BTreeMap<String, usize> =
        ["Pending", "Running", "Succeeded", "Failed", "Unknown"]
            .iter()
            .map(|p| (p.to_string(), 0))
            .collect();
    for p in &snap.pods {
        let ph = p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Pending".into());
        *phases.entry(ph).or_default() += 1;
    }
    for (p, n) in phases {
        let _ = writeln!(o, "berth_pods{{phase=\"{p}\"}} {n}");
    }
    super::host_metrics::features(&mut o, &st.page.host);
    super::host_metrics::pod_pressure(
        &mut o,
        &snap,
        &st.instance,
        std::path::Path::new("/sys/fs/cgroup"),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        o,
    )
}

/// `berth_rollouts_total{result}` and `berth_revision_healthy{type,location}`.
fn rollout_metrics(o: &mut String, view: &crate::sources::View) {
    let _ = writeln!(
        o,
        "# HELP berth_rollouts_total Rollouts decided since the agent started, by result (healthy, failed, rolled-back).\n# TYPE berth_rollouts_total counter"
    );
    for result in ["healthy", "failed", "rolled-back"] {
        let _ = writeln!(
            o,
            "berth_rollouts_total{{result=\"{result}\"}} {}",
            view.rollouts_total.get(result).copied().unwrap_or(0)
        );
    }
    let _ = writeln!(
        o,
        "# HELP berth_revision_healthy 1 when the source's applied revision is healthy (0: in progress, failed or rolled back).\n# TYPE berth_revision_healthy gauge"
    );
    for s in &view.sources {
        if let Some(r) = &s.rollout {
            let _ = writeln!(
                o,
                "berth_revision_healthy{{type=\"{}\",location=\"{}\"}} {}",
                s.kind,
                esc(&s.location),
                u8::from(r.state == "healthy")
            );
        }
    }
}
