//! StatefulSet, DaemonSet, ReplicaSet and ReplicationController: selector
//! against template labels, the template's pod spec, each kind's strategy,
//! and a warning for each field berth does not honour on one node.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaimVolumeSource, PodTemplateSpec, Volume as PodVolume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::workload::pod_spec;
use super::{Out, check_name, is_dns1123_label};
use crate::object::Object;

pub(crate) fn check(o: &mut Out, name: Option<&str>, obj: &Object) {
    check_name(o, name, super::NameRule::Subdomain);
    let kind = obj.kind().as_str();
    match obj {
        Object::StatefulSet(s) => {
            let s = &s.spec;
            replicas(o, s.replicas);
            selector(o, kind, Some(&s.selector), s.template.metadata.as_ref());
            // optional since Kubernetes 1.29: without it the pods get no
            // subdomain (no `web-0.<service>` name), nothing else changes
            match s.service_name.as_deref() {
                None | Some("") => {}
                Some(n) if !is_dns1123_label(n) => o.err(
                    "spec.serviceName",
                    format!("{n:?} is not a valid Service name (a DNS-1123 label)"),
                ),
                Some(_) => {}
            }
            match s.pod_management_policy.as_deref() {
                None | Some("OrderedReady") | Some("Parallel") => {}
                Some(x) => o.err(
                    "spec.podManagementPolicy",
                    format!("{x:?} is not valid (OrderedReady or Parallel)"),
                ),
            }
            if let Some(st) = &s.update_strategy {
                match st.type_.as_deref() {
                    None | Some("RollingUpdate") | Some("OnDelete") => {}
                    Some(x) => o.err(
                        "spec.updateStrategy.type",
                        format!("{x:?} is not valid (RollingUpdate or OnDelete)"),
                    ),
                }
                if let Some(ru) = &st.rolling_update {
                    if ru.partition.is_some_and(|p| p < 0) {
                        o.err(
                            "spec.updateStrategy.rollingUpdate.partition",
                            "must be >= 0",
                        );
                    }
                    if ru.max_unavailable.is_some() {
                        o.warn(
                            "spec.updateStrategy.rollingUpdate.maxUnavailable",
                            "not honoured: berth replaces one pod at a time",
                        );
                    }
                }
            }
            let mut claims = BTreeSet::new();
            for (i, c) in s.volume_claim_templates.iter().flatten().enumerate() {
                let p = format!("spec.volumeClaimTemplates[{i}].metadata.name");
                match c.metadata.name.as_deref() {
                    Some(n) if is_dns1123_label(n) => {
                        if !claims.insert(n.to_string()) {
                            o.err(p, format!("{n:?} is defined twice"));
                        }
                    }
                    Some(n) => o.err(p, format!("{n:?} is not a valid name (a DNS-1123 label)")),
                    None => o.err(p, "a volume claim template needs a name"),
                }
            }
            if s.min_ready_seconds.is_some_and(|m| m > 0) {
                o.warn(
                    "spec.minReadySeconds",
                    "not honoured: a pod counts once it is Ready",
                );
            }
            if s.ordinals
                .as_ref()
                .and_then(|x| x.start)
                .is_some_and(|n| n != 0)
            {
                o.warn(
                    "spec.ordinals.start",
                    "not honoured: berth numbers pods from 0",
                );
            }
            if let Some(r) = &s.persistent_volume_claim_retention_policy
                && [&r.when_deleted, &r.when_scaled]
                    .into_iter()
                    .any(|w| w.as_deref() == Some("Delete"))
            {
                o.warn(
                    "spec.persistentVolumeClaimRetentionPolicy",
                    "not honoured: berth keeps every replica's Volume (Retain)",
                );
            }
            // the claims join the template's volumes, as the controller adds them
            let mut t = s.template.clone();
            if let Some(ps) = t.spec.as_mut() {
                let vols = ps.volumes.get_or_insert_with(Vec::new);
                for n in &claims {
                    vols.retain(|v| &v.name != n);
                    vols.push(PodVolume {
                        name: n.clone(),
                        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                            claim_name: format!("{n}-{}-0", name.unwrap_or("set")),
                            read_only: None,
                        }),
                        ..Default::default()
                    });
                }
            }
            template(o, kind, Some(&t));
        }
        Object::DaemonSet(d) => {
            let s = &d.spec;
            selector(o, kind, Some(&s.selector), s.template.metadata.as_ref());
            if let Some(st) = &s.update_strategy {
                match st.type_.as_deref() {
                    None | Some("RollingUpdate") | Some("OnDelete") => {}
                    Some(x) => o.err(
                        "spec.updateStrategy.type",
                        format!("{x:?} is not valid (RollingUpdate or OnDelete)"),
                    ),
                }
                let surge = st
                    .rolling_update
                    .as_ref()
                    .and_then(|r| r.max_surge.as_ref());
                if surge.is_some_and(|v| {
                    !matches!(v, IntOrString::Int(0))
                        && !matches!(v, IntOrString::String(s) if s == "0%" || s == "0")
                }) {
                    o.warn(
                        "spec.updateStrategy.rollingUpdate.maxSurge",
                        "not honoured: berth stops the old pod before it starts the new one",
                    );
                }
            }
            if s.min_ready_seconds.is_some_and(|m| m > 0) {
                o.warn(
                    "spec.minReadySeconds",
                    "not honoured: a pod counts once it is Ready",
                );
            }
            template(o, kind, Some(&s.template));
        }
        Object::ReplicaSet(r) => {
            let s = &r.spec;
            replicas(o, s.replicas);
            selector(
                o,
                kind,
                Some(&s.selector),
                s.template.as_ref().and_then(|t| t.metadata.as_ref()),
            );
            if s.min_ready_seconds.is_some_and(|m| m > 0) {
                o.warn(
                    "spec.minReadySeconds",
                    "not honoured: a pod counts once it is Ready",
                );
            }
            template(o, kind, s.template.as_ref());
        }
        Object::ReplicationController(r) => {
            let Some(s) = &r.spec else {
                o.err("spec", "a ReplicationController needs a spec");
                return;
            };
            replicas(o, s.replicas);
            let sel = s.selector.clone().map(|m| LabelSelector {
                match_labels: Some(m),
                match_expressions: None,
            });
            selector(
                o,
                kind,
                sel.as_ref(),
                s.template.as_ref().and_then(|t| t.metadata.as_ref()),
            );
            if s.min_ready_seconds.is_some_and(|m| m > 0) {
                o.warn(
                    "spec.minReadySeconds",
                    "not honoured: a pod counts once it is Ready",
                );
            }
            template(o, kind, s.template.as_ref());
        }
        _ => {}
    }
}

fn replicas(o: &mut Out, r: Option<i32>) {
    if r.is_some_and(|r| r < 0) {
        o.err("spec.replicas", "must be >= 0");
    }
}

/// A selector of matchLabels that the template's labels satisfy.
fn selector(
    o: &mut Out,
    kind: &str,
    sel: Option<&LabelSelector>,
    meta: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>,
) {
    let labels = sel.and_then(|s| s.match_labels.clone()).unwrap_or_default();
    let exprs = sel
        .and_then(|s| s.match_expressions.as_ref())
        .is_some_and(|e| !e.is_empty());
    if exprs {
        o.err(
            "spec.selector.matchExpressions",
            "matchExpressions are not supported by berth; use matchLabels",
        );
    }
    if labels.is_empty() && !exprs {
        o.err(
            "spec.selector",
            format!("a {kind} needs a selector (matchLabels) matching its template's labels"),
        );
    }
    let tl = meta.and_then(|m| m.labels.clone()).unwrap_or_default();
    for (k, v) in &labels {
        if tl.get(k) != Some(v) {
            o.err(
                "spec.template.metadata.labels",
                format!("selector {k}={v} does not match the template labels (selector must match template)"),
            );
        }
    }
}

fn template(o: &mut Out, kind: &str, t: Option<&PodTemplateSpec>) {
    let Some(ps) = t.and_then(|t| t.spec.as_ref()) else {
        o.err(
            "spec.template.spec",
            format!("a {kind} needs a pod template spec"),
        );
        return;
    };
    pod_spec(o, "spec.template.spec", ps);
    super::security_profiles::annotations(
        o,
        "spec.template.metadata.annotations",
        t.and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref()),
    );
    if ps.restart_policy.as_deref().is_some_and(|r| r != "Always") {
        o.err(
            "spec.template.spec.restartPolicy",
            format!("{kind} pods must use restartPolicy Always"),
        );
    }
}
