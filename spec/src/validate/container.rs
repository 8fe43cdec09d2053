//! Containers: name, image, ports, resources, probes, volume mounts.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Probe, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Out, is_dns1123_label, port, protocol};
use crate::quantity;

pub(crate) fn container(
    o: &mut Out,
    p: &str,
    c: &Container,
    is_init: bool,
    vols: &BTreeSet<String>,
) {
    if !is_dns1123_label(&c.name) {
        o.err(
            format!("{p}.name"),
            format!(
                "{:?} is not a valid container name (DNS-1123 label)",
                c.name
            ),
        );
    }
    if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
        o.err(format!("{p}.image"), "image is required");
    }
    match c.image_pull_policy.as_deref() {
        None | Some("Always") | Some("IfNotPresent") | Some("Never") => {}
        Some(x) => o.err(
            format!("{p}.imagePullPolicy"),
            format!("{x:?} is not valid (Always, IfNotPresent or Never)"),
        ),
    }
    for (j, cp) in c.ports.iter().flatten().enumerate() {
        port(
            o,
            &format!("{p}.ports[{j}].containerPort"),
            cp.container_port,
        );
        if let Some(hp) = cp.host_port.filter(|h| *h != 0) {
            port(o, &format!("{p}.ports[{j}].hostPort"), hp);
        }
        protocol(
            o,
            &format!("{p}.ports[{j}].protocol"),
            cp.protocol.as_deref(),
        );
        if let Some(n) = cp.name.as_deref()
            && !super::is_port_name(n)
        {
            o.err(
                format!("{p}.ports[{j}].name"),
                format!("{n:?} is not a valid port name ({})", super::PORT_NAME_RULE),
            );
        }
    }
    env(o, p, c);
    if let Some(r) = &c.resources {
        resources(o, &format!("{p}.resources"), r);
    }
    let probes = [
        ("livenessProbe", &c.liveness_probe),
        ("readinessProbe", &c.readiness_probe),
        ("startupProbe", &c.startup_probe),
    ];
    for (name, pr) in probes {
        let Some(pr) = pr else { continue };
        if is_init && !super::lifecycle::is_sidecar(c) {
            o.err(
                format!("{p}.{name}"),
                "init containers may not have probes (only sidecars: restartPolicy Always)",
            );
            continue;
        }
        probe(o, &format!("{p}.{name}"), pr, name, c);
    }
    let mut mounts = BTreeSet::new();
    for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
        let mp = format!("{p}.volumeMounts[{j}]");
        if !vols.contains(&m.name) {
            o.err(
                format!("{mp}.name"),
                format!("volume {:?} is not defined in the pod's volumes", m.name),
            );
        }
        if !m.mount_path.starts_with('/') {
            o.err(format!("{mp}.mountPath"), "must be an absolute path");
        }
        if !mounts.insert(m.mount_path.clone()) {
            o.err(
                format!("{mp}.mountPath"),
                format!("duplicate mountPath {:?}", m.mount_path),
            );
        }
        if let Some(sp) = m.sub_path.as_deref()
            && (sp.starts_with('/') || sp.split('/').any(|s| s == ".."))
        {
            o.err(
                format!("{mp}.subPath"),
                "must be a relative path without '..'",
            );
        }
    }
    if c.stdin == Some(true) || c.tty == Some(true) {
        o.warn(
            format!(
                "{p}.{}",
                if c.stdin == Some(true) {
                    "stdin"
                } else {
                    "tty"
                }
            ),
            "stdin/tty are not supported by berth and are ignored",
        );
    }
}

pub(crate) fn resources(o: &mut Out, p: &str, r: &ResourceRequirements) {
    let mut parsed: BTreeMap<(&str, String), u64> = BTreeMap::new();
    for (which, map) in [("limits", &r.limits), ("requests", &r.requests)] {
        for (k, q) in map.iter().flatten() {
            let path = super::key_path(&format!("{p}.{which}"), k);
            let v = match k.as_str() {
                "cpu" => quantity::parse_millicores(&q.0),
                "memory" | "ephemeral-storage" => quantity::parse_bytes(&q.0),
                _ => {
                    o.warn(&path, format!("resource {k:?} is not enforced by berth"));
                    continue;
                }
            };
            match v {
                Ok(v) => {
                    parsed.insert((which, k.clone()), v);
                }
                Err(e) => o.err(path, e.to_string()),
            }
        }
    }
    for k in ["cpu", "memory"] {
        if let (Some(l), Some(rq)) = (
            parsed.get(&("limits", k.to_string())),
            parsed.get(&("requests", k.to_string())),
        ) && rq > l
        {
            o.err(
                format!("{p}.requests.{k}"),
                format!("request must be less than or equal to the {k} limit"),
            );
        }
    }
}

fn probe(o: &mut Out, p: &str, pr: &Probe, name: &str, c: &Container) {
    // a named port must be one of the container's ports
    let named = |o: &mut Out, path: String, port: &IntOrString| {
        if let IntOrString::String(n) = port {
            let known = c
                .ports
                .iter()
                .flatten()
                .any(|cp| cp.name.as_deref() == Some(n.as_str()));
            if !known {
                o.err(
                    path,
                    format!("port {n:?} is not the name of a port of this container"),
                );
            }
        }
    };
    if let Some(h) = &pr.http_get {
        named(o, format!("{p}.httpGet.port"), &h.port);
    }
    if let Some(t) = &pr.tcp_socket {
        named(o, format!("{p}.tcpSocket.port"), &t.port);
    }
    let handlers = [
        pr.exec.is_some(),
        pr.http_get.is_some(),
        pr.tcp_socket.is_some(),
        pr.grpc.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if handlers != 1 {
        o.err(
            p,
            "a probe needs exactly one handler (exec, httpGet, tcpSocket or grpc)",
        );
    }
    if let Some(g) = &pr.grpc {
        port(o, &format!("{p}.grpc.port"), g.port);
    }
    if let Some(h) = &pr.http_get {
        if let IntOrString::Int(n) = h.port {
            port(o, &format!("{p}.httpGet.port"), n);
        }
        if h.scheme.as_deref().is_some_and(|s| s != "HTTP") {
            o.err(
                format!("{p}.httpGet.scheme"),
                "only HTTP probes are supported by berth",
            );
        }
    }
    if let Some(t) = &pr.tcp_socket
        && let IntOrString::Int(n) = t.port
    {
        port(o, &format!("{p}.tcpSocket.port"), n);
    }
    if let Some(e) = &pr.exec
        && e.command.as_ref().is_none_or(Vec::is_empty)
    {
        o.err(format!("{p}.exec.command"), "command is required");
    }
    for (f, v, min) in [
        ("periodSeconds", pr.period_seconds, 1),
        ("timeoutSeconds", pr.timeout_seconds, 1),
        ("successThreshold", pr.success_threshold, 1),
        ("failureThreshold", pr.failure_threshold, 1),
        ("initialDelaySeconds", pr.initial_delay_seconds, 0),
    ] {
        if let Some(v) = v
            && v < min
        {
            o.err(format!("{p}.{f}"), format!("must be >= {min}"));
        }
    }
    if name != "readinessProbe" && pr.success_threshold.is_some_and(|s| s != 1) {
        o.err(
            format!("{p}.successThreshold"),
            "must be 1 for liveness and startup probes",
        );
    }
}

/// The `fieldRef` paths berth fills in (the reconciler's list).
const FIELD_PATHS: &str = "metadata.name, metadata.namespace, metadata.uid, metadata.labels['KEY'], metadata.annotations['KEY'], spec.nodeName, spec.serviceAccountName, status.podIP, status.podIPs, status.hostIP, status.hostIPs";

/// `f` is `<prefix>['<non-empty key>']` (one label or annotation).
pub(super) fn keyed_field(f: &str, prefix: &str) -> bool {
    f.strip_prefix(prefix)
        .and_then(|r| r.strip_prefix("['"))
        .and_then(|r| r.strip_suffix("']"))
        .is_some_and(|k| !k.is_empty())
}

fn field_path_supported(f: &str) -> bool {
    let keyed = |prefix: &str| keyed_field(f, prefix);
    matches!(
        f,
        "metadata.name"
            | "metadata.namespace"
            | "metadata.uid"
            | "spec.nodeName"
            | "spec.serviceAccountName"
            | "status.podIP"
            | "status.podIPs"
            | "status.hostIP"
            | "status.hostIPs"
    ) || keyed("metadata.labels")
        || keyed("metadata.annotations")
}

fn env(o: &mut Out, p: &str, c: &Container) {
    for (j, e) in c.env.iter().flatten().enumerate() {
        let ep = format!("{p}.env[{j}]");
        if e.name.is_empty() || e.name.contains('=') || e.name.chars().any(|ch| ch.is_control()) {
            o.err(
                format!("{ep}.name"),
                format!(
                    "{:?} is not a valid environment variable name (printable, without '=')",
                    e.name
                ),
            );
        }
        let Some(vf) = &e.value_from else { continue };
        if e.value.as_deref().is_some_and(|v| !v.is_empty()) {
            o.err(
                format!("{ep}.valueFrom"),
                "may not be set together with a non-empty value",
            );
        }
        let sources = [
            vf.config_map_key_ref.is_some(),
            vf.secret_key_ref.is_some(),
            vf.field_ref.is_some(),
            vf.resource_field_ref.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources != 1 {
            o.err(
                format!("{ep}.valueFrom"),
                "needs exactly one of configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef",
            );
        }
        if let Some(r) = &vf.resource_field_ref {
            super::projected::resource_field(
                o,
                &format!("{ep}.valueFrom.resourceFieldRef"),
                r,
                Some(&c.name),
                None,
            );
        }
        if let Some(f) = &vf.field_ref
            && !field_path_supported(&f.field_path)
        {
            o.err(
                format!("{ep}.valueFrom.fieldRef.fieldPath"),
                format!("{:?} is not supported (one of {FIELD_PATHS})", f.field_path),
            );
        }
        for (what, name, key) in [
            (
                "configMapKeyRef",
                vf.config_map_key_ref.as_ref().map(|r| r.name.as_str()),
                vf.config_map_key_ref.as_ref().map(|r| r.key.as_str()),
            ),
            (
                "secretKeyRef",
                vf.secret_key_ref.as_ref().map(|r| r.name.as_str()),
                vf.secret_key_ref.as_ref().map(|r| r.key.as_str()),
            ),
        ] {
            if name == Some("") {
                o.err(format!("{ep}.valueFrom.{what}.name"), "name is required");
            }
            if key == Some("") {
                o.err(format!("{ep}.valueFrom.{what}.key"), "key is required");
            }
        }
    }
    for (j, e) in c.env_from.iter().flatten().enumerate() {
        let n = usize::from(e.config_map_ref.is_some()) + usize::from(e.secret_ref.is_some());
        if n != 1 {
            o.err(
                format!("{p}.envFrom[{j}]"),
                "needs exactly one of configMapRef or secretRef",
            );
        }
    }
}
