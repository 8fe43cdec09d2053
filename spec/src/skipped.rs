//! Kinds berth does not run: a well-formed object of any apiVersion/kind
//! outside berth's set (Ingress, NetworkPolicy, PersistentVolume,
//! HorizontalPodAutoscaler, ServiceAccount, RBAC, custom resources, ...) is
//! skipped with one warning and listed; it never refuses its file, so the
//! other objects of the file and the pruning of the source go on (issue 15).
//!
//! Only what is malformed stays an error: a missing kind, apiVersion or
//! name, an apiVersion that is not `version` or `group/version`, a kind the
//! core (`v1`) or `apps/v1` group does not have, and a kind berth runs
//! written in another apiVersion (`extensions/v1beta1 Deployment`).

use std::fmt;

use serde::Serialize;

use crate::object::Location;

/// An object of a kind berth does not run, with where it was read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    pub api_version: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    pub location: Location,
}

impl fmt::Display for Skipped {
    /// `networking.k8s.io/v1 Ingress "web"` (with `ns/` before the name when set).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        };
        write!(f, "{} {} {name:?}", self.api_version, self.kind)
    }
}

/// The kinds of the core group (`apiVersion: v1`) in Kubernetes 1.31.
const CORE_V1: &[&str] = &[
    "Binding",
    "ComponentStatus",
    "ConfigMap",
    "Endpoints",
    "Event",
    "LimitRange",
    "Namespace",
    "Node",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "Pod",
    "PodTemplate",
    "ReplicationController",
    "ResourceQuota",
    "Secret",
    "Service",
    "ServiceAccount",
];

/// The kinds of `apps/v1`.
const APPS_V1: &[&str] = &[
    "ControllerRevision",
    "DaemonSet",
    "Deployment",
    "ReplicaSet",
    "StatefulSet",
];

/// Whether `api` has the form `version` or `group/version` (`v1`, `v2beta1`,
/// `networking.k8s.io/v1`, `example.com/v1alpha3`).
fn valid_api_version(api: &str) -> bool {
    let (group, version) = match api.split_once('/') {
        Some((g, v)) => (Some(g), v),
        None => (None, api),
    };
    let group_ok = group.is_none_or(crate::validate::is_dns1123_subdomain);
    let version_ok = version.strip_prefix('v').is_some_and(|rest| {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let tail = &rest[digits..];
        digits > 0
            && (tail.is_empty()
                || ["alpha", "beta"].iter().any(|s| {
                    tail.strip_prefix(s)
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                }))
    });
    group_ok && version_ok
}

/// Whether `kind` looks like a Kubernetes kind (CamelCase, starting with a capital).
fn valid_kind(kind: &str) -> bool {
    kind.len() <= 63
        && kind.starts_with(|c: char| c.is_ascii_uppercase())
        && kind.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Decide about an object whose apiVersion/kind berth does not read:
/// `Ok(())` when it is well-formed (skip it with a warning), or the error.
/// `known_in` is the apiVersion berth reads this kind in, when it reads it.
pub(crate) fn check(
    api: &str,
    kind: &str,
    name: &str,
    known_in: Option<&str>,
    supported: &str,
) -> Result<(), String> {
    let what = if name.is_empty() {
        String::new()
    } else {
        format!(" (object {name:?})")
    };
    if kind.is_empty() {
        return Err(format!("missing kind{what} (supported: {supported})"));
    }
    if let Some(want) = known_in {
        return Err(if api.is_empty() {
            format!("missing apiVersion for kind {kind}{what}: berth reads it as {want}")
        } else {
            format!("kind {kind}{what} is read in apiVersion {want}, not {api}")
        });
    }
    if api.is_empty() {
        return Err(format!(
            "missing apiVersion for kind {kind}{what} (supported: {supported})"
        ));
    }
    let unknown =
        || format!("unknown kind {kind} in apiVersion {api}{what} (berth runs: {supported})");
    if !valid_api_version(api) || !valid_kind(kind) {
        return Err(format!(
            "{api:?} {kind:?}{what} is not a valid apiVersion and kind (berth runs: {supported})"
        ));
    }
    if (api == "v1" && !CORE_V1.contains(&kind)) || (api == "apps/v1" && !APPS_V1.contains(&kind)) {
        return Err(unknown());
    }
    if name.is_empty() {
        return Err(format!(
            "{api} {kind}: metadata.name is required (berth would skip this kind, but it is not a valid object)"
        ));
    }
    Ok(())
}

/// The warning for a skipped object.
pub(crate) fn message(api: &str, kind: &str) -> String {
    format!("{kind} ({api}) is not run by berth: skipped (needs a cluster or is not implemented)")
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "(kinds)";

    #[test]
    fn well_formed_foreign_kinds_are_skipped() {
        for (api, kind) in [
            ("networking.k8s.io/v1", "Ingress"),
            ("networking.k8s.io/v1", "NetworkPolicy"),
            ("v1", "PersistentVolume"),
            ("v1", "ServiceAccount"),
            ("autoscaling/v2", "HorizontalPodAutoscaler"),
            ("rbac.authorization.k8s.io/v1", "Role"),
            ("example.com/v1alpha1", "Widget"),
            ("apps/v1", "ControllerRevision"),
        ] {
            assert_eq!(check(api, kind, "x", None, S), Ok(()), "{api} {kind}");
        }
    }

    #[test]
    fn malformed_objects_are_errors() {
        for (api, kind, name, known) in [
            ("v1", "", "x", None),
            ("", "Ingress", "x", None),
            ("v1", "Gadget", "x", None),
            ("apps/v1", "Gadget", "x", None),
            ("v9x", "Thing", "x", None),
            ("Example.com/v1", "Thing", "x", None),
            ("example.com/v1", "thing", "x", None),
            ("networking.k8s.io/v1", "Ingress", "", None),
            ("extensions/v1beta1", "Deployment", "x", Some("apps/v1")),
        ] {
            assert!(
                check(api, kind, name, known, S).is_err(),
                "{api:?} {kind:?} {name:?}"
            );
        }
    }

    #[test]
    fn api_versions() {
        for ok in ["v1", "v2beta1", "v1alpha3", "batch/v1", "a.b-c.io/v10"] {
            assert!(valid_api_version(ok), "{ok}");
        }
        for bad in [
            "", "1", "v", "vbeta1", "v1beta", "v1gamma1", "/v1", "a/b/v1", "A/v1",
        ] {
            assert!(!valid_api_version(bad), "{bad}");
        }
    }
}
