//! The operator's policy: what manifest authors may ask of the host.
//!
//! Without a policy berth honours what kubelet honours, so whoever can write
//! manifests is root on the host (a `hostPath` of `/` read-write, a
//! `privileged` container, `capabilities.add: [SYS_ADMIN]`, `hostNetwork`).
//! A policy file (`--policy FILE`) takes that away:
//!
//! ```yaml
//! apiVersion: berth.dev/v1alpha1
//! kind: Policy
//! spec:
//!   privileged: false             # privileged containers
//!   hostNetwork: false            # hostNetwork pods
//!   hostPID: false
//!   hostIPC: false
//!   allowedHostPaths:             # hostPath volumes, by path prefix
//!     - pathPrefix: /srv/data
//!       readOnly: true            # every mount of it must be readOnly
//!   allowedCapabilities: [NET_BIND_SERVICE]   # capabilities.add ("ALL": any)
//!   allowedHostPorts:             # hostPorts (and ports of hostNetwork pods)
//!     - {min: 1024, max: 65535}
//! ```
//!
//! Everything a policy does not allow is refused: a field left out takes the
//! restrictive default shown above (`false`, no host paths, no added
//! capabilities, host ports 1024-65535), so a file with only `apiVersion`,
//! `kind` and `spec: {}` is the strictest policy. A refusal is a per-object
//! error ([`check_objects`]): the object is not applied, the others are.
//!
//! This module is pure: the agent reads and parses the file (its loader
//! calls [`PolicyFile::problems`] and refuses to start on any), and the
//! rules here run on typed, defaulted objects.

use k8s_openapi::api::core::v1::{Container, PodSpec};
use serde::{Deserialize, Serialize};

use super::{Out, Problem};
use crate::diag::{Diagnostic, Severity};
use crate::object::{Object, Sourced};

/// `apiVersion` of the policy file.
pub const API_VERSION: &str = "berth.dev/v1alpha1";
/// `kind` of the policy file.
pub const KIND: &str = "Policy";

/// The policy file as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyFile {
    pub api_version: String,
    pub kind: String,
    /// Free-form (e.g. `name`); not used by berth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    pub spec: Policy,
}

/// What manifests may ask of the host. Every field defaults to "not allowed".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Policy {
    /// `securityContext.privileged: true` in any container.
    pub privileged: bool,
    /// `hostNetwork: true`.
    pub host_network: bool,
    /// `hostPID: true` (berth refuses it anyway today).
    #[serde(rename = "hostPID")]
    pub host_pid: bool,
    /// `hostIPC: true` (berth refuses it anyway today).
    #[serde(rename = "hostIPC")]
    pub host_ipc: bool,
    /// hostPath volumes whose path lies at or below one of these prefixes.
    pub allowed_host_paths: Vec<HostPathRule>,
    /// Capabilities containers may add (`NET_ADMIN` or `CAP_NET_ADMIN`);
    /// `ALL` allows any, including `add: [ALL]`.
    pub allowed_capabilities: Vec<String>,
    /// Host ports a pod may publish (`ports[].hostPort`, and every
    /// `containerPort` of a hostNetwork pod).
    pub allowed_host_ports: Vec<PortRange>,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            privileged: false,
            host_network: false,
            host_pid: false,
            host_ipc: false,
            allowed_host_paths: Vec::new(),
            allowed_capabilities: Vec::new(),
            allowed_host_ports: vec![PortRange {
                min: 1024,
                max: 65535,
            }],
        }
    }
}

/// One allowed hostPath prefix.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HostPathRule {
    /// Absolute; matched by whole path components (`/srv/data` allows
    /// `/srv/data/x`, not `/srv/database`).
    pub path_prefix: String,
    /// Every volumeMount of such a volume must be `readOnly: true`, and
    /// `DirectoryOrCreate`/`FileOrCreate` (which write to the host) are refused.
    #[serde(default)]
    pub read_only: bool,
}

/// An inclusive range of ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PortRange {
    pub min: i32,
    pub max: i32,
}

impl PolicyFile {
    /// What is wrong with the file itself (after it parsed): header, paths,
    /// capability names, port ranges. Each entry is `field: message`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.api_version != API_VERSION {
            out.push(format!(
                "apiVersion: {:?} is not supported (expected {API_VERSION})",
                self.api_version
            ));
        }
        if self.kind != KIND {
            out.push(format!("kind: {:?} is not {KIND}", self.kind));
        }
        let s = &self.spec;
        for (i, r) in s.allowed_host_paths.iter().enumerate() {
            if components(&r.path_prefix).is_none() {
                out.push(format!(
                    "spec.allowedHostPaths[{i}].pathPrefix: {:?} must be an absolute path without '..'",
                    r.path_prefix
                ));
            }
        }
        for (i, c) in s.allowed_capabilities.iter().enumerate() {
            let ok = !c.is_empty()
                && c.len() <= 64
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !ok {
                out.push(format!(
                    "spec.allowedCapabilities[{i}]: {c:?} is not a capability name (e.g. NET_ADMIN, or ALL)"
                ));
            }
        }
        for (i, r) in s.allowed_host_ports.iter().enumerate() {
            if !(1..=65535).contains(&r.min) || !(1..=65535).contains(&r.max) || r.min > r.max {
                out.push(format!(
                    "spec.allowedHostPorts[{i}]: {}-{} is not a port range (1 <= min <= max <= 65535)",
                    r.min, r.max
                ));
            }
        }
        out
    }
}

/// The path's components, or None when it is not absolute or has `..`.
/// Empty and `.` components are dropped, so `/srv//data/.` is `[srv, data]`.
fn components(path: &str) -> Option<Vec<&str>> {
    if !path.starts_with('/') {
        return None;
    }
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") {
        return None;
    }
    Some(parts)
}

/// `CAP_NET_ADMIN`, `net_admin` and `NET_ADMIN` are the same capability.
fn cap_name(c: &str) -> String {
    let u = c.to_ascii_uppercase();
    match u.strip_prefix("CAP_") {
        Some(rest) => rest.to_string(),
        None => u,
    }
}

fn refuse(o: &mut Out, path: String, rule: &str, message: String) {
    o.err(path, format!("refused by policy ({rule}): {message}"));
}

/// The policy's findings for one object (errors; empty when it complies).
/// Paths are relative to the object, as in [`super::object`].
pub fn check(policy: &Policy, obj: &Object) -> Vec<Problem> {
    let mut o = Out(Vec::new());
    // every kind named, so a new workload kind cannot slip past the policy
    match obj {
        Object::Pod(p) => {
            if let Some(s) = &p.spec {
                pod_spec(&mut o, policy, "spec", s);
            }
        }
        Object::Deployment(d) => {
            if let Some(s) = &d.spec.template.spec {
                pod_spec(&mut o, policy, "spec.template.spec", s);
            }
        }
        Object::Job(_)
        | Object::CronJob(_)
        | Object::StatefulSet(_)
        | Object::DaemonSet(_)
        | Object::ReplicaSet(_)
        | Object::ReplicationController(_) => {
            if let Some((path, s)) = obj.pod_spec() {
                pod_spec(&mut o, policy, path, s);
            }
        }
        Object::Service(_) | Object::Volume(_) | Object::ConfigMap(_) | Object::Secret(_) => {}
    }
    o.0
}

/// [`check`] as diagnostics at the object's location (its first line: the
/// field is named by the diagnostic's path).
pub fn check_sourced(policy: &Policy, s: &Sourced) -> Vec<Diagnostic> {
    let name = s.object.metadata().name.clone().unwrap_or_default();
    check(policy, &s.object)
        .into_iter()
        .map(|p| Diagnostic {
            severity: Severity::Error,
            location: s.location.clone(),
            object: Some((s.object.kind(), name.clone())),
            path: p.path,
            message: p.message,
        })
        .collect()
}

/// [`check_sourced`] over a set of objects.
pub fn check_objects(policy: &Policy, objects: &[Sourced]) -> Vec<Diagnostic> {
    objects
        .iter()
        .flat_map(|s| check_sourced(policy, s))
        .collect()
}

fn pod_spec(o: &mut Out, policy: &Policy, base: &str, s: &PodSpec) {
    let host_network = s.host_network == Some(true);
    for (field, on, allowed) in [
        ("hostNetwork", host_network, policy.host_network),
        ("hostPID", s.host_pid == Some(true), policy.host_pid),
        ("hostIPC", s.host_ipc == Some(true), policy.host_ipc),
    ] {
        if on && !allowed {
            refuse(
                o,
                format!("{base}.{field}"),
                field,
                format!("{field} pods are not allowed"),
            );
        }
    }
    let containers: Vec<(String, &Container)> = super::containers_at(base, s).collect();
    host_paths(o, policy, base, s, &containers);
    for (p, c) in &containers {
        container(o, policy, p, c, host_network);
    }
}

fn host_paths(
    o: &mut Out,
    policy: &Policy,
    base: &str,
    s: &PodSpec,
    containers: &[(String, &Container)],
) {
    const RULE: &str = "allowedHostPaths";
    for (i, v) in s.volumes.iter().flatten().enumerate() {
        let Some(hp) = &v.host_path else { continue };
        let at = format!("{base}.volumes[{i}].hostPath");
        let Some(parts) = components(&hp.path) else {
            refuse(
                o,
                format!("{at}.path"),
                RULE,
                format!("{:?} must be an absolute path without '..'", hp.path),
            );
            continue;
        };
        let matching: Vec<&HostPathRule> = policy
            .allowed_host_paths
            .iter()
            .filter(|r| components(&r.path_prefix).is_some_and(|pre| parts.starts_with(&pre)))
            .collect();
        if matching.is_empty() {
            let msg = if policy.allowed_host_paths.is_empty() {
                format!("hostPath {:?}: hostPath volumes are not allowed", hp.path)
            } else {
                let list: Vec<&str> = policy
                    .allowed_host_paths
                    .iter()
                    .map(|r| r.path_prefix.as_str())
                    .collect();
                format!(
                    "hostPath {:?} is not below an allowed prefix ({})",
                    hp.path,
                    list.join(", ")
                )
            };
            refuse(o, format!("{at}.path"), RULE, msg);
            continue;
        }
        if matching.iter().any(|r| !r.read_only) {
            continue;
        }
        // read-only: nothing may write to the host through this volume
        if let Some(t @ ("DirectoryOrCreate" | "FileOrCreate")) = hp.type_.as_deref() {
            refuse(
                o,
                format!("{at}.type"),
                RULE,
                format!(
                    "{t} would create {:?} on the host, which the policy allows read-only",
                    hp.path
                ),
            );
        }
        for (p, c) in containers {
            for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
                if m.name == v.name && m.read_only != Some(true) {
                    refuse(
                        o,
                        format!("{p}.volumeMounts[{j}].readOnly"),
                        RULE,
                        format!(
                            "hostPath {:?} is allowed read-only: the mount must set readOnly: true",
                            hp.path
                        ),
                    );
                }
            }
        }
    }
}

fn container(o: &mut Out, policy: &Policy, p: &str, c: &Container, host_network: bool) {
    if let Some(sc) = &c.security_context {
        if sc.privileged == Some(true) && !policy.privileged {
            refuse(
                o,
                format!("{p}.securityContext.privileged"),
                "privileged",
                "privileged containers are not allowed".into(),
            );
        }
        let allowed: Vec<String> = policy
            .allowed_capabilities
            .iter()
            .map(|c| cap_name(c))
            .collect();
        let any = allowed.iter().any(|c| c == "ALL");
        let add = sc.capabilities.as_ref().and_then(|c| c.add.as_ref());
        for (k, cap) in add.into_iter().flatten().enumerate() {
            let n = cap_name(cap);
            if !any && !allowed.contains(&n) {
                let msg = if allowed.is_empty() {
                    format!("adding capability {cap:?} is not allowed (no capability may be added)")
                } else {
                    format!(
                        "adding capability {cap:?} is not allowed (allowed: {})",
                        allowed.join(", ")
                    )
                };
                refuse(
                    o,
                    format!("{p}.securityContext.capabilities.add[{k}]"),
                    "allowedCapabilities",
                    msg,
                );
            }
        }
    }
    for (j, cp) in c.ports.iter().flatten().enumerate() {
        // with hostNetwork the container binds the host's port itself
        let (field, port) = match cp.host_port.filter(|h| *h != 0) {
            Some(h) => ("hostPort", h),
            None if host_network => ("containerPort", cp.container_port),
            None => continue,
        };
        if !policy
            .allowed_host_ports
            .iter()
            .any(|r| (r.min..=r.max).contains(&port))
        {
            let ranges: Vec<String> = policy
                .allowed_host_ports
                .iter()
                .map(|r| format!("{}-{}", r.min, r.max))
                .collect();
            let allowed = if ranges.is_empty() {
                "no host port is allowed".to_string()
            } else {
                format!("allowed: {}", ranges.join(", "))
            };
            let what = if field == "hostPort" {
                "host port"
            } else {
                "host port (hostNetwork)"
            };
            refuse(
                o,
                format!("{p}.ports[{j}].{field}"),
                "allowedHostPorts",
                format!("{what} {port} is not allowed ({allowed})"),
            );
        }
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
