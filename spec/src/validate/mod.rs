//! Validation rules. Each finding names the field path; the parser turns the
//! path into a file:line. Rules across objects are in [`set`].
//!
//! One file per concern: `workload` (Deployment and pod specs), `container`
//! (containers, resources, probes), `service`, `set` (across objects),
//! [`unsupported`] (valid Kubernetes berth cannot honour), [`names`] (names
//! the host can hold), [`policy`] (the operator's policy, applied by the
//! agent on top of these rules).

use crate::diag::{Diagnostic, Severity};
use crate::object::{Object, Sourced};
use crate::quantity;

mod batch;
mod container;
pub mod dns;
pub mod lifecycle;
pub mod names;
mod pod_fields;
pub mod policy;
mod projected;
mod replicated;
mod security_profiles;
mod service;
mod set;
pub mod unsupported;
mod workload;

/// Rules across objects (files): the same object defined twice, ClusterIP and
/// NodePort conflicts, references to ConfigMaps/Secrets/Volumes not in the set
/// (warnings: they may arrive later).
pub fn set(objects: &[Sourced]) -> Vec<Diagnostic> {
    set::set(objects)
}
/// A finding about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub severity: Severity,
    pub path: Option<String>,
    pub message: String,
}

pub(crate) struct Out(Vec<Problem>);

impl Out {
    pub(crate) fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            severity: Severity::Error,
            path: Some(path.into()).filter(|p: &String| !p.is_empty()),
            message: message.into(),
        });
    }
    pub(crate) fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            severity: Severity::Warning,
            path: Some(path.into()).filter(|p: &String| !p.is_empty()),
            message: message.into(),
        });
    }
}

/// The path of a map entry: `base.key`, or `base["key"]` when the key has
/// characters other than alphanumerics, `-` and `_` (dots, slashes, spaces).
/// A pod spec's init containers, then its containers, each with its path
/// (`<base>.initContainers[i]`, `<base>.containers[i]`).
pub(crate) fn containers_at<'a>(
    base: &'a str,
    s: &'a k8s_openapi::api::core::v1::PodSpec,
) -> impl Iterator<Item = (String, &'a k8s_openapi::api::core::v1::Container)> + 'a {
    let init = s
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(move |(i, c)| (format!("{base}.initContainers[{i}]"), c));
    let main = s
        .containers
        .iter()
        .enumerate()
        .map(move |(i, c)| (format!("{base}.containers[{i}]"), c));
    init.chain(main)
}

pub(crate) fn key_path(base: &str, key: &str) -> String {
    if !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        format!("{base}.{key}")
    } else {
        format!("{base}[{key:?}]")
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

/// How a kind's `metadata.name` is checked.
#[derive(Clone, Copy)]
pub(crate) enum NameRule {
    /// Most kinds.
    Subdomain,
    /// Services: a DNS-1035 label (starts with a letter), as kube-apiserver requires.
    Dns1035,
}

/// DNS-1035 label: a DNS-1123 label that starts with a letter.
pub fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())
}

/// IANA service name, as Kubernetes requires for named ports: at most 15
/// lowercase alphanumerics and '-', at least one letter, no "--".
pub fn is_port_name(n: &str) -> bool {
    n.len() <= 15
        && is_dns1123_label(n)
        && n.bytes().any(|b| b.is_ascii_lowercase())
        && !n.contains("--")
}

pub(crate) const PORT_NAME_RULE: &str =
    "at most 15 lowercase letters, digits and '-', with at least one letter and no \"--\"";

pub(crate) fn check_name(o: &mut Out, name: Option<&str>, rule: NameRule) {
    match name {
        None | Some("") => o.err("metadata.name", "name is required"),
        Some(n) => {
            let (ok, what) = match rule {
                NameRule::Subdomain => (
                    is_dns1123_subdomain(n),
                    "a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', at most 253 characters)",
                ),
                NameRule::Dns1035 => (
                    is_dns1035_label(n),
                    "a DNS-1035 label (lowercase letters, digits and '-', starting with a letter and ending with a letter or digit, at most 63 characters)",
                ),
            };
            if !ok {
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
    if let Some(ns) = m.namespace.as_deref()
        && !is_dns1123_label(ns)
    {
        o.err(
            "metadata.namespace",
            format!("{ns:?} is not a valid namespace (DNS-1123 label)"),
        );
    }
    for (k, v) in m.labels.iter().flatten() {
        if !valid_label_key(k) {
            o.err(
                key_path("metadata.labels", k),
                format!("{k:?} is not a valid label key"),
            );
        }
        if !valid_label_value(v) {
            o.err(key_path("metadata.labels", k), format!("{v:?} is not a valid label value (at most 63 characters: alphanumerics, '-', '_', '.')"));
        }
    }
    for k in m.annotations.iter().flatten().map(|(k, _)| k) {
        if !valid_label_key(k) {
            o.err(
                key_path("metadata.annotations", k),
                format!("{k:?} is not a valid annotation key"),
            );
        }
    }
    match obj {
        Object::Pod(p) => {
            check_name(&mut o, m.name.as_deref(), NameRule::Subdomain);
            security_profiles::annotations(&mut o, "metadata.annotations", m.annotations.as_ref());
            match &p.spec {
                Some(s) => workload::pod_spec(&mut o, "spec", s),
                None => o.err("spec", "a Pod needs a spec"),
            }
        }
        Object::Deployment(d) => workload::deployment(&mut o, m.name.as_deref(), d),
        Object::StatefulSet(_)
        | Object::DaemonSet(_)
        | Object::ReplicaSet(_)
        | Object::ReplicationController(_) => replicated::check(&mut o, m.name.as_deref(), obj),
        Object::Service(svc) => service::service(&mut o, m.name.as_deref(), svc),
        Object::Job(j) => batch::job(&mut o, m.name.as_deref(), j),
        Object::CronJob(c) => batch::cron_job(&mut o, m.name.as_deref(), c),
        Object::ConfigMap(c) => {
            check_name(&mut o, m.name.as_deref(), NameRule::Subdomain);
            for k in c
                .data
                .iter()
                .flatten()
                .map(|(k, _)| k)
                .chain(c.binary_data.iter().flatten().map(|(k, _)| k))
            {
                if !valid_config_key(k) {
                    o.err(
                        key_path("data", k),
                        format!("{k:?} is not a valid key (alphanumerics, '-', '_', '.')"),
                    );
                }
            }
        }
        Object::Secret(s) => {
            check_name(&mut o, m.name.as_deref(), NameRule::Subdomain);
            for k in s.data.iter().flatten().map(|(k, _)| k) {
                if !valid_config_key(k) {
                    o.err(
                        key_path("data", k),
                        format!("{k:?} is not a valid key (alphanumerics, '-', '_', '.')"),
                    );
                }
            }
        }
        Object::Volume(v) => {
            check_name(&mut o, m.name.as_deref(), NameRule::Subdomain);
            if let Some(Err(e)) = v.spec.size.as_deref().map(quantity::parse_bytes) {
                o.err("spec.size", e.to_string());
            }
        }
    }
    names::check(&mut o, obj);
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

pub(crate) fn port(o: &mut Out, path: &str, p: i32) {
    if !(1..=65535).contains(&p) {
        o.err(path, format!("{p} is not a valid port (1-65535)"));
    }
}

pub(crate) fn protocol(o: &mut Out, path: &str, p: Option<&str>) {
    match p {
        None | Some("TCP") | Some("UDP") => {}
        Some("SCTP") => o.err(path, "SCTP is not supported by berth (TCP or UDP)"),
        Some(x) => o.err(path, format!("{x:?} is not a valid protocol (TCP or UDP)")),
    }
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
        assert!(is_dns1035_label("web-1"));
        assert!(!is_dns1035_label("1web"));
        assert!(is_port_name("http"));
        assert!(is_port_name("h2c-80"));
        assert!(!is_port_name("8080"));
        assert!(!is_port_name("a--b"));
        assert!(!is_port_name("abcdefghijklmnop"));
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
