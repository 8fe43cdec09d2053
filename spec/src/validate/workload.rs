//! Deployments and pod specs (pods and pod templates): volumes, containers'
//! names and ports.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{KeyToPath, PodSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::container::container;
use super::{Out, check_name, is_dns1123_label};
use crate::quantity;

pub(crate) fn deployment(o: &mut Out, name: Option<&str>, d: &Deployment) {
    check_name(o, name, super::NameRule::Subdomain);
    let s = &d.spec;
    if s.replicas.is_some_and(|r| r < 0) {
        o.err("spec.replicas", "must be >= 0");
    }
    let sel = s.selector.match_labels.clone().unwrap_or_default();
    if sel.is_empty()
        && s.selector
            .match_expressions
            .as_ref()
            .is_none_or(Vec::is_empty)
    {
        o.err(
            "spec.selector",
            "a Deployment needs a selector (matchLabels)",
        );
    }
    if s.selector
        .match_expressions
        .as_ref()
        .is_some_and(|e| !e.is_empty())
    {
        o.err(
            "spec.selector.matchExpressions",
            "matchExpressions are not supported by berth; use matchLabels",
        );
    }
    let tl = s
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    for (k, v) in &sel {
        if tl.get(k) != Some(v) {
            o.err(
                "spec.template.metadata.labels",
                format!("selector {k}={v} does not match the template labels (selector must match template)"),
            );
        }
    }
    if let Some(st) = &s.strategy {
        match st.type_.as_deref() {
            Some("RollingUpdate") | Some("Recreate") | None => {}
            Some(other) => o.err(
                "spec.strategy.type",
                format!("{other:?} is not supported (RollingUpdate or Recreate)"),
            ),
        }
        if st.type_.as_deref() == Some("Recreate") && st.rolling_update.is_some() {
            o.err(
                "spec.strategy.rollingUpdate",
                "may not be set when strategy type is Recreate",
            );
        }
        if let Some(ru) = &st.rolling_update {
            let zero = |v: &Option<IntOrString>| {
                matches!(v, Some(IntOrString::Int(0)))
                    || matches!(v, Some(IntOrString::String(s)) if s == "0%")
            };
            if zero(&ru.max_surge) && zero(&ru.max_unavailable) {
                o.err(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    "may not be 0 when maxSurge is 0",
                );
            }
            for (f, v) in [
                ("maxSurge", &ru.max_surge),
                ("maxUnavailable", &ru.max_unavailable),
            ] {
                if let Some(IntOrString::String(s)) = v {
                    let ok = s
                        .strip_suffix('%')
                        .and_then(|n| n.parse::<u32>().ok())
                        .is_some_and(|n| n <= 100);
                    if !ok {
                        o.err(
                            format!("spec.strategy.rollingUpdate.{f}"),
                            format!("{s:?} must be an integer or a percentage (0%-100%)"),
                        );
                    }
                }
            }
        }
    }
    match &s.template.spec {
        Some(ps) => {
            pod_spec(o, "spec.template.spec", ps);
            super::security_profiles::annotations(
                o,
                "spec.template.metadata.annotations",
                s.template
                    .metadata
                    .as_ref()
                    .and_then(|m| m.annotations.as_ref()),
            );
            if ps.restart_policy.as_deref().is_some_and(|r| r != "Always") {
                o.err(
                    "spec.template.spec.restartPolicy",
                    "Deployment pods must use restartPolicy Always",
                );
            }
        }
        None => o.err(
            "spec.template.spec",
            "a Deployment needs a pod template spec",
        ),
    }
}

pub(crate) fn pod_spec(o: &mut Out, base: &str, s: &PodSpec) {
    super::unsupported::pod_spec(o, base, s);
    match s.restart_policy.as_deref() {
        None | Some("Always") | Some("OnFailure") | Some("Never") => {}
        Some(x) => o.err(
            format!("{base}.restartPolicy"),
            format!("{x:?} is not valid (Always, OnFailure or Never)"),
        ),
    }
    if s.containers.is_empty() {
        o.err(
            format!("{base}.containers"),
            "a pod needs at least one container",
        );
    }
    if s.termination_grace_period_seconds.is_some_and(|g| g < 0) {
        o.err(
            format!("{base}.terminationGracePeriodSeconds"),
            "must be >= 0",
        );
    }
    // volumes
    let mut vols = BTreeSet::new();
    for (i, v) in s.volumes.iter().flatten().enumerate() {
        let p = format!("{base}.volumes[{i}]");
        if !is_dns1123_label(&v.name) {
            o.err(
                format!("{p}.name"),
                format!("{:?} is not a valid volume name (DNS-1123 label)", v.name),
            );
        }
        if !vols.insert(v.name.clone()) {
            o.err(
                format!("{p}.name"),
                format!("duplicate volume name {:?}", v.name),
            );
        }
        let sources = [
            v.empty_dir.is_some(),
            v.host_path.is_some(),
            v.config_map.is_some(),
            v.secret.is_some(),
            v.persistent_volume_claim.is_some(),
            v.downward_api.is_some(),
            v.projected.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        let json = serde_json::to_value(v).unwrap_or_default();
        let declared = json
            .as_object()
            .map(|m| m.len().saturating_sub(1))
            .unwrap_or(0);
        if declared > sources || sources == 0 {
            let other: Vec<String> = json
                .as_object()
                .into_iter()
                .flat_map(|m| m.keys())
                .filter(|k| {
                    ![
                        "name",
                        "emptyDir",
                        "hostPath",
                        "configMap",
                        "secret",
                        "persistentVolumeClaim",
                        "downwardAPI",
                        "projected",
                    ]
                    .contains(&k.as_str())
                })
                .cloned()
                .collect();
            if other.is_empty() {
                o.err(&p, "a volume needs a source (emptyDir, hostPath, configMap, secret, downwardAPI, projected or persistentVolumeClaim)");
            } else {
                o.err(&p, format!("volume type {} is not supported by berth (emptyDir, hostPath, configMap, secret, downwardAPI, projected, persistentVolumeClaim)", other.join(", ")));
            }
        } else if sources > 1 {
            o.err(&p, "a volume may have only one source");
        }
        if let Some(ed) = &v.empty_dir {
            if let Some(Err(e)) = ed.size_limit.as_ref().map(|q| quantity::parse_bytes(&q.0)) {
                o.err(format!("{p}.emptyDir.sizeLimit"), e.to_string());
            }
            if let Some(m) = ed.medium.as_deref()
                && !m.is_empty()
                && m != "Memory"
            {
                o.err(
                    format!("{p}.emptyDir.medium"),
                    format!("{m:?} is not supported (\"\" or Memory)"),
                );
            }
        }
        if let Some(hp) = &v.host_path {
            if !hp.path.starts_with('/') {
                o.err(format!("{p}.hostPath.path"), "must be an absolute path");
            } else if hp.path.split('/').any(|c| c == "..") {
                // as kube-apiserver: no back-steps in a host path
                o.err(format!("{p}.hostPath.path"), "must not contain '..'");
            }
            match hp.type_.as_deref() {
                None
                | Some("")
                | Some("DirectoryOrCreate")
                | Some("Directory")
                | Some("FileOrCreate")
                | Some("File")
                | Some("Socket")
                | Some("CharDevice")
                | Some("BlockDevice") => {}
                Some(t) => o.err(
                    format!("{p}.hostPath.type"),
                    format!("{t:?} is not a valid hostPath type"),
                ),
            }
        }
        if let Some(d) = &v.downward_api {
            super::projected::downward_api(
                o,
                &format!("{p}.downwardAPI"),
                d.default_mode,
                d.items.as_deref(),
                s,
            );
        }
        if let Some(pv) = &v.projected {
            super::projected::projected(o, &format!("{p}.projected"), pv, s);
        }
        if let Some(pvc) = &v.persistent_volume_claim
            && pvc.claim_name.is_empty()
        {
            o.err(
                format!("{p}.persistentVolumeClaim.claimName"),
                "claimName is required",
            );
        }
        if let Some(c) = &v.config_map {
            if c.name.is_empty() {
                o.err(format!("{p}.configMap.name"), "name is required");
            }
            projection(
                o,
                &format!("{p}.configMap"),
                c.default_mode,
                c.items.as_deref(),
            );
        }
        if let Some(sec) = &v.secret {
            if sec.secret_name.as_deref().is_none_or(str::is_empty) {
                o.err(format!("{p}.secret.secretName"), "secretName is required");
            }
            projection(
                o,
                &format!("{p}.secret"),
                sec.default_mode,
                sec.items.as_deref(),
            );
        }
    }
    // containers
    let mut names = BTreeSet::new();
    let mut ports = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    let init = s
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| (format!("{base}.initContainers[{i}]"), c, true));
    let main = s
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("{base}.containers[{i}]"), c, false));
    for (p, c, is_init) in init.chain(main) {
        container(o, &p, c, is_init, &vols);
        if !names.insert(c.name.clone()) {
            o.err(
                format!("{p}.name"),
                format!("duplicate container name {:?}", c.name),
            );
        }
        for (j, cp) in c.ports.iter().flatten().enumerate() {
            let pp = format!("{p}.ports[{j}]");
            let proto = cp.protocol.clone().unwrap_or_else(|| "TCP".into());
            if !is_init && !ports.insert((cp.container_port, proto.clone())) {
                o.err(
                    format!("{pp}.containerPort"),
                    format!("duplicate containerPort {}/{proto}", cp.container_port),
                );
            }
            if let Some(hp) = cp.host_port.filter(|h| *h != 0) {
                if s.host_network == Some(true) && hp != cp.container_port {
                    o.err(
                        format!("{pp}.hostPort"),
                        "must equal containerPort with hostNetwork",
                    );
                }
                if !host_ports.insert((hp, proto.clone())) {
                    o.err(
                        format!("{pp}.hostPort"),
                        format!("duplicate hostPort {hp}/{proto}"),
                    );
                }
            }
        }
    }
}

/// `defaultMode` and `items` of a configMap or secret volume.
fn projection(o: &mut Out, p: &str, default_mode: Option<i32>, items: Option<&[KeyToPath]>) {
    let mode = |o: &mut Out, path: String, m: Option<i32>| {
        if let Some(m) = m.filter(|m| !(0..=0o777).contains(m)) {
            o.err(
                path,
                format!("{m} is not a valid file mode (0-0777, i.e. 0-511 in decimal)"),
            );
        }
    };
    mode(o, format!("{p}.defaultMode"), default_mode);
    let mut paths = BTreeSet::new();
    for (i, it) in items.unwrap_or_default().iter().enumerate() {
        let ip = format!("{p}.items[{i}]");
        if it.key.is_empty() {
            o.err(format!("{ip}.key"), "key is required");
        }
        if it.path.is_empty() || it.path.starts_with('/') || it.path.split('/').any(|s| s == "..") {
            o.err(format!("{ip}.path"), "must be a relative path without '..'");
        } else if !paths.insert(it.path.as_str()) {
            o.err(
                format!("{ip}.path"),
                format!("duplicate path {:?}", it.path),
            );
        }
        mode(o, format!("{ip}.mode"), it.mode);
    }
}
