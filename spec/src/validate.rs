//! Validation rules. Each finding names the field path; the parser turns the
//! path into a file:line. Rules across objects are in [`set`].

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, PodSpec, Probe, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::diag::{Diagnostic, Severity};
use crate::object::{Object, ObjectKey, Sourced};
use crate::quantity;

/// A finding about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub path: Option<String>,
    pub message: String,
}

struct Out(Vec<Problem>);

impl Out {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            severity: Severity::Error,
            path: Some(path.into()).filter(|p: &String| !p.is_empty()),
            message: message.into(),
        });
    }
    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            severity: Severity::Warning,
            path: Some(path.into()).filter(|p: &String| !p.is_empty()),
            message: message.into(),
        });
    }
}

/// DNS-1123 label: lowercase alphanumerics and '-', start and end alphanumeric, at most 63.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// DNS-1123 subdomain: labels joined by '.', at most 253.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

fn check_name(o: &mut Out, name: Option<&str>, label: bool) {
    match name {
        None | Some("") => o.err("metadata.name", "name is required"),
        Some(n) => {
            let ok = if label {
                is_dns1123_label(n)
            } else {
                is_dns1123_subdomain(n)
            };
            if !ok {
                let what = if label {
                    "a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters)"
                } else {
                    "a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)"
                };
                o.err(
                    "metadata.name",
                    format!("{n:?} is not a valid name: must be {what}"),
                );
            }
        }
    }
}

/// Per-object rules.
pub fn object(obj: &Object) -> Vec<Problem> {
    let mut o = Out(Vec::new());
    let m = obj.metadata();
    if let Some(ns) = m.namespace.as_deref() {
        if !is_dns1123_label(ns) {
            o.err(
                "metadata.namespace",
                format!("{ns:?} is not a valid namespace (DNS-1123 label)"),
            );
        }
    }
    for (k, v) in m.labels.iter().flatten() {
        if !valid_label_key(k) {
            o.err(
                format!("metadata.labels.{k}"),
                format!("{k:?} is not a valid label key"),
            );
        }
        if !valid_label_value(v) {
            o.err(format!("metadata.labels.{k}"), format!("{v:?} is not a valid label value (at most 63 characters: alphanumerics, '-', '_', '.')"));
        }
    }
    match obj {
        Object::Pod(p) => {
            check_name(&mut o, m.name.as_deref(), false);
            match &p.spec {
                Some(s) => pod_spec(&mut o, "spec", s),
                None => o.err("spec", "a Pod needs a spec"),
            }
        }
        Object::Deployment(d) => {
            check_name(&mut o, m.name.as_deref(), false);
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
                    pod_spec(&mut o, "spec.template.spec", ps);
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
        Object::Service(svc) => {
            check_name(&mut o, m.name.as_deref(), true);
            let Some(s) = &svc.spec else {
                o.err("spec", "a Service needs a spec");
                return o.0;
            };
            let ty = s.type_.as_deref().unwrap_or("ClusterIP");
            if ty != "ClusterIP" && ty != "NodePort" {
                o.err(
                    "spec.type",
                    format!("{ty:?} is not supported by berth (ClusterIP or NodePort)"),
                );
            }
            if s.selector.as_ref().is_none_or(BTreeMap::is_empty) {
                o.warn("spec.selector", "no selector: berth does not manage Endpoints by hand, so this Service has no backends");
            }
            if let Some(ip) = s.cluster_ip.as_deref() {
                if ip == "None" {
                    o.err(
                        "spec.clusterIP",
                        "headless Services (clusterIP: None) are not supported by berth yet",
                    );
                } else if !ip.is_empty() && ip.parse::<std::net::Ipv4Addr>().is_err() {
                    o.err(
                        "spec.clusterIP",
                        format!("{ip:?} is not a valid IPv4 address"),
                    );
                }
            }
            let ports = s.ports.clone().unwrap_or_default();
            if ports.is_empty() {
                o.err("spec.ports", "a Service needs at least one port");
            }
            let mut seen = BTreeSet::new();
            for (i, p) in ports.iter().enumerate() {
                let base = format!("spec.ports[{i}]");
                port(&mut o, &format!("{base}.port"), p.port);
                if let Some(IntOrString::Int(t)) = &p.target_port {
                    port(&mut o, &format!("{base}.targetPort"), *t);
                }
                if let Some(np) = p.node_port {
                    if ty != "NodePort" {
                        o.err(
                            format!("{base}.nodePort"),
                            "may only be set when type is NodePort",
                        );
                    } else if !(30000..=32767).contains(&np) {
                        o.err(
                            format!("{base}.nodePort"),
                            format!("{np} is not in the NodePort range 30000-32767"),
                        );
                    }
                }
                protocol(&mut o, &format!("{base}.protocol"), p.protocol.as_deref());
                if ports.len() > 1 && p.name.as_deref().is_none_or(str::is_empty) {
                    o.err(
                        format!("{base}.name"),
                        "ports must be named when a Service has more than one",
                    );
                }
                if !seen.insert((p.port, p.protocol.clone())) {
                    o.err(format!("{base}.port"), format!("duplicate port {}", p.port));
                }
            }
        }
        Object::ConfigMap(c) => {
            check_name(&mut o, m.name.as_deref(), false);
            for k in c
                .data
                .iter()
                .flatten()
                .map(|(k, _)| k)
                .chain(c.binary_data.iter().flatten().map(|(k, _)| k))
            {
                if !valid_config_key(k) {
                    o.err(
                        format!("data.{k}"),
                        format!("{k:?} is not a valid key (alphanumerics, '-', '_', '.')"),
                    );
                }
            }
        }
        Object::Secret(s) => {
            check_name(&mut o, m.name.as_deref(), false);
            for k in s.data.iter().flatten().map(|(k, _)| k) {
                if !valid_config_key(k) {
                    o.err(
                        format!("data.{k}"),
                        format!("{k:?} is not a valid key (alphanumerics, '-', '_', '.')"),
                    );
                }
            }
        }
        Object::Volume(v) => {
            check_name(&mut o, m.name.as_deref(), false);
            if let Some(sz) = &v.spec.size {
                if !quantity::is_valid(sz) {
                    o.err(
                        "spec.size",
                        format!("{sz:?} is not a valid quantity (e.g. 1Gi)"),
                    );
                }
            }
        }
    }
    o.0
}

fn valid_config_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 253
        && k != "."
        && k != ".."
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn valid_label_value(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && v.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && v.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric()))
}

fn valid_label_key(k: &str) -> bool {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    prefix.is_none_or(is_dns1123_subdomain) && !name.is_empty() && valid_label_value(name)
}

fn port(o: &mut Out, path: &str, p: i32) {
    if !(1..=65535).contains(&p) {
        o.err(path, format!("{p} is not a valid port (1-65535)"));
    }
}

fn protocol(o: &mut Out, path: &str, p: Option<&str>) {
    match p {
        None | Some("TCP") | Some("UDP") => {}
        Some("SCTP") => o.err(path, "SCTP is not supported by berth (TCP or UDP)"),
        Some(x) => o.err(path, format!("{x:?} is not a valid protocol (TCP or UDP)")),
    }
}

fn pod_spec(o: &mut Out, base: &str, s: &PodSpec) {
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
                    ]
                    .contains(&k.as_str())
                })
                .cloned()
                .collect();
            if other.is_empty() {
                o.err(&p, "a volume needs a source (emptyDir, hostPath, configMap, secret or persistentVolumeClaim)");
            } else {
                o.err(&p, format!("volume type {} is not supported by berth (emptyDir, hostPath, configMap, secret, persistentVolumeClaim)", other.join(", ")));
            }
        } else if sources > 1 {
            o.err(&p, "a volume may have only one source");
        }
        if let Some(ed) = &v.empty_dir {
            if let Some(q) = &ed.size_limit {
                if !quantity::is_valid(&q.0) {
                    o.err(
                        format!("{p}.emptyDir.sizeLimit"),
                        format!("{:?} is not a valid quantity", q.0),
                    );
                }
            }
            if let Some(m) = ed.medium.as_deref() {
                if !m.is_empty() && m != "Memory" {
                    o.err(
                        format!("{p}.emptyDir.medium"),
                        format!("{m:?} is not supported (\"\" or Memory)"),
                    );
                }
            }
        }
        if let Some(hp) = &v.host_path {
            if !hp.path.starts_with('/') {
                o.err(format!("{p}.hostPath.path"), "must be an absolute path");
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
        if let Some(pvc) = &v.persistent_volume_claim {
            if pvc.claim_name.is_empty() {
                o.err(
                    format!("{p}.persistentVolumeClaim.claimName"),
                    "claimName is required",
                );
            }
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

fn container(o: &mut Out, p: &str, c: &Container, is_init: bool, vols: &BTreeSet<String>) {
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
        if let Some(n) = cp.name.as_deref() {
            if n.is_empty() || n.len() > 15 || !is_dns1123_label(n) {
                o.err(format!("{p}.ports[{j}].name"), format!("{n:?} is not a valid port name (at most 15 lowercase alphanumerics and '-')"));
            }
        }
    }
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
        if is_init {
            o.err(format!("{p}.{name}"), "init containers may not have probes");
            continue;
        }
        probe(o, &format!("{p}.{name}"), pr, name);
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
        if let Some(sp) = m.sub_path.as_deref() {
            if sp.starts_with('/') || sp.split('/').any(|s| s == "..") {
                o.err(
                    format!("{mp}.subPath"),
                    "must be a relative path without '..'",
                );
            }
        }
    }
    if c.stdin == Some(true) || c.tty == Some(true) {
        o.warn(
            format!("{p}.tty"),
            "stdin/tty are not supported by berth and are ignored",
        );
    }
}

fn resources(o: &mut Out, p: &str, r: &ResourceRequirements) {
    let mut parsed: BTreeMap<(&str, String), u64> = BTreeMap::new();
    for (which, map) in [("limits", &r.limits), ("requests", &r.requests)] {
        for (k, q) in map.iter().flatten() {
            let path = format!("{p}.{which}.{k}");
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
        ) {
            if rq > l {
                o.err(
                    format!("{p}.requests.{k}"),
                    format!("request must be less than or equal to the {k} limit"),
                );
            }
        }
    }
}

fn probe(o: &mut Out, p: &str, pr: &Probe, name: &str) {
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
            "a probe needs exactly one handler (exec, httpGet or tcpSocket)",
        );
    }
    if pr.grpc.is_some() {
        o.err(
            format!("{p}.grpc"),
            "gRPC probes are not supported by berth",
        );
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
    if let Some(t) = &pr.tcp_socket {
        if let IntOrString::Int(n) = t.port {
            port(o, &format!("{p}.tcpSocket.port"), n);
        }
    }
    if let Some(e) = &pr.exec {
        if e.command.as_ref().is_none_or(Vec::is_empty) {
            o.err(format!("{p}.exec.command"), "command is required");
        }
    }
    for (f, v, min) in [
        ("periodSeconds", pr.period_seconds, 1),
        ("timeoutSeconds", pr.timeout_seconds, 1),
        ("successThreshold", pr.success_threshold, 1),
        ("failureThreshold", pr.failure_threshold, 1),
        ("initialDelaySeconds", pr.initial_delay_seconds, 0),
    ] {
        if let Some(v) = v {
            if v < min {
                o.err(format!("{p}.{f}"), format!("must be >= {min}"));
            }
        }
    }
    if name != "readinessProbe" && pr.success_threshold.is_some_and(|s| s != 1) {
        o.err(
            format!("{p}.successThreshold"),
            "must be 1 for liveness and startup probes",
        );
    }
}

/// Rules across objects (files): the same object defined twice, duplicate ClusterIPs,
/// references to ConfigMaps/Secrets/Volumes not in the set (warnings).
pub fn set(objects: &[Sourced]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut by_key: BTreeMap<ObjectKey, Vec<&Sourced>> = BTreeMap::new();
    for s in objects {
        by_key.entry(s.object.key()).or_default().push(s);
    }
    for (key, defs) in &by_key {
        if defs.len() > 1 {
            let places: Vec<String> = defs.iter().map(|d| d.location.to_string()).collect();
            for d in defs {
                out.push(Diagnostic {
                    severity: Severity::Error,
                    location: d.location.clone(),
                    object: Some((key.kind, key.name.clone())),
                    path: None,
                    message: format!("{key} is defined more than once: {}", places.join(", ")),
                });
            }
        }
    }
    let mut ips: BTreeMap<String, &Sourced> = BTreeMap::new();
    for s in objects {
        if let Object::Service(svc) = &s.object {
            if let Some(ip) = svc
                .spec
                .as_ref()
                .and_then(|s| s.cluster_ip.clone())
                .filter(|i| !i.is_empty() && i != "None")
            {
                if let Some(other) = ips.insert(ip.clone(), s) {
                    if other.object.key() != s.object.key() {
                        out.push(Diagnostic {
                            severity: Severity::Error,
                            location: s.location.clone(),
                            object: Some((s.object.kind(), s.object.key().name)),
                            path: Some("spec.clusterIP".into()),
                            message: format!(
                                "clusterIP {ip} is also used by {}",
                                other.object.key()
                            ),
                        });
                    }
                }
            }
        }
    }
    // references that can be checked statically: warnings, the object may arrive later
    let present = |kind: crate::Kind, ns: &str, name: &str| {
        by_key.contains_key(&ObjectKey::new(kind, ns, name))
    };
    for s in objects {
        let key = s.object.key();
        let spec = match &s.object {
            Object::Pod(p) => p.spec.as_ref(),
            Object::Deployment(d) => d.spec.template.spec.as_ref(),
            _ => None,
        };
        let Some(spec) = spec else { continue };
        for v in spec.volumes.iter().flatten() {
            let missing = if let Some(c) = &v.config_map {
                (c.optional != Some(true)
                    && !present(crate::Kind::ConfigMap, &key.namespace, &c.name))
                .then(|| format!("ConfigMap {:?}", c.name))
            } else if let Some(sec) = &v.secret {
                let n = sec.secret_name.clone().unwrap_or_default();
                (sec.optional != Some(true) && !present(crate::Kind::Secret, &key.namespace, &n))
                    .then(|| format!("Secret {n:?}"))
            } else if let Some(c) = &v.persistent_volume_claim {
                (!present(crate::Kind::Volume, &key.namespace, &c.claim_name))
                    .then(|| format!("Volume {:?}", c.claim_name))
            } else {
                None
            };
            if let Some(m) = missing {
                out.push(Diagnostic {
                    severity: Severity::Warning,
                    location: s.location.clone(),
                    object: Some((key.kind, key.name.clone())),
                    path: None,
                    message: format!(
                        "volume {:?} refers to {m}, which is not defined in these manifests",
                        v.name
                    ),
                });
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        assert!(is_dns1123_label("web-1"));
        assert!(!is_dns1123_label("Web"));
        assert!(!is_dns1123_label("-a"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
        assert!(is_dns1123_subdomain("a.b-c"));
        assert!(!is_dns1123_subdomain("a..b"));
    }

    #[test]
    fn label_keys_and_values() {
        assert!(valid_label_key("app"));
        assert!(valid_label_key("kubernetes.io/arch"));
        assert!(!valid_label_key("bad key"));
        assert!(valid_label_value(""));
        assert!(!valid_label_value("-x"));
    }
}
