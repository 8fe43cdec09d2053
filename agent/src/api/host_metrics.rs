//! Host metrics: the host checks probed at start (degraded mode) and each
//! pod's pressure stall figures (PSI, cgroup v2 kernels that have it).

use std::fmt::Write;
use std::path::Path;

use berth_reconciler::Snapshot;
use berth_runtime::cgroups::{Cgroups, pressure};

use crate::host::HostReport;

fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `berth_host_feature{check,level} 1` per check.
pub fn features(o: &mut String, host: &HostReport) {
    let _ = writeln!(
        o,
        "# HELP berth_host_feature A host check made at agent start, with the level found (ok, info, degraded, MISSING); see berth doctor.\n# TYPE berth_host_feature gauge"
    );
    for c in &host.checks {
        let _ = writeln!(
            o,
            "berth_host_feature{{check=\"{}\",level=\"{}\"}} 1",
            esc(&c.name),
            c.level.word()
        );
    }
}

/// `berth_pod_pressure_seconds_total` (counter) and
/// `berth_pod_pressure_avg10_ratio` (gauge) per pod, resource and kind.
pub fn pod_pressure(o: &mut String, snap: &Snapshot, instance: &str, cgroup_root: &Path) {
    let cg = Cgroups::detect(cgroup_root);
    let mut rows = Vec::new();
    for p in &snap.pods {
        let m = &p.metadata;
        let (Some(ns), Some(name), Some(uid)) = (&m.namespace, &m.name, &m.uid) else {
            continue;
        };
        let path = format!("/{instance}/{ns}_{name}_{uid}");
        for (res, pr) in pressure::of(&cg, &path) {
            let labels = format!(
                "namespace=\"{}\",pod=\"{}\",resource=\"{res}\"",
                esc(ns),
                esc(name)
            );
            rows.push((labels.clone(), "some", pr.some));
            if let Some(full) = pr.full {
                rows.push((labels, "full", full));
            }
        }
    }
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        o,
        "# HELP berth_pod_pressure_seconds_total Time some (or all) tasks of the pod stalled on the resource (PSI).\n# TYPE berth_pod_pressure_seconds_total counter"
    );
    for (l, kind, s) in &rows {
        let _ = writeln!(
            o,
            "berth_pod_pressure_seconds_total{{{l},kind=\"{kind}\"}} {}",
            s.total_us as f64 / 1e6
        );
    }
    let _ = writeln!(
        o,
        "# HELP berth_pod_pressure_avg10_ratio Share of the last 10 s some (or all) tasks of the pod stalled on the resource (PSI).\n# TYPE berth_pod_pressure_avg10_ratio gauge"
    );
    for (l, kind, s) in &rows {
        let _ = writeln!(
            o,
            "berth_pod_pressure_avg10_ratio{{{l},kind=\"{kind}\"}} {}",
            s.avg10 / 100.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_spec::k8s_openapi::api::core::v1::Pod;
    use std::fs;

    #[test]
    fn pressure_rows_for_pods_with_cgroups() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("cgroup.controllers"), "cpu memory").unwrap();
        let d = t.path().join("bt/default_web_u1");
        fs::create_dir_all(&d).unwrap();
        fs::write(
            d.join("cpu.pressure"),
            "some avg10=12.50 avg60=0.00 avg300=0.00 total=2500000\n",
        )
        .unwrap();
        let mut pod = Pod::default();
        pod.metadata.namespace = Some("default".into());
        pod.metadata.name = Some("web".into());
        pod.metadata.uid = Some("u1".into());
        let snap = Snapshot {
            pods: vec![pod],
            ..Default::default()
        };
        let mut o = String::new();
        pod_pressure(&mut o, &snap, "bt", t.path());
        assert!(
            o.contains("berth_pod_pressure_seconds_total{namespace=\"default\",pod=\"web\",resource=\"cpu\",kind=\"some\"} 2.5"),
            "{o}"
        );
        assert!(o.contains("berth_pod_pressure_avg10_ratio{namespace=\"default\",pod=\"web\",resource=\"cpu\",kind=\"some\"} 0.125"), "{o}");
        let mut none = String::new();
        pod_pressure(&mut none, &Snapshot::default(), "bt", t.path());
        assert!(none.is_empty());
    }
}
