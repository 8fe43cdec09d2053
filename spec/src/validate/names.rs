//! Names the host can hold.
//!
//! Kubernetes allows Pod and Deployment names of up to 253 characters, but
//! berth puts a pod's name into host file names: its run and state
//! directories, its log directory, its network namespace file and its cgroup
//! are all named by the pod key `<namespace>_<name>_<uid>` (the reconciler's
//! `PodRef::key`, uid = 10 hex characters), and a file name has at most 255
//! bytes (`NAME_MAX`). A longer name passed validation, then failed at every
//! start with "File name too long". So a Pod name may have at most
//! `255 - len(namespace) - 12` characters (236 in `default`), and a
//! Deployment, whose pods are named `<name>-<10 hex>-<5 chars>`, 17 fewer.
//!
//! The pod's hostname (UTS namespace, `/etc/hostname`) may have at most 64
//! bytes; like kubelet, berth uses the pod name cut to 63 ([`pod_hostname`]).

use super::Out;
use crate::object::Object;

/// Longest file name Linux accepts (bytes).
pub const NAME_MAX: usize = 255;
/// Length of the uid in a pod key (see the reconciler's `PodRef::key`).
pub const POD_UID_LEN: usize = 10;
/// What a Deployment adds to its name for its pods: `-<10 hex>-<5 chars>`.
pub const DEPLOYMENT_POD_SUFFIX_LEN: usize = 17;
/// Longest hostname the pod gets (kubelet's limit; the kernel's is 64).
pub const HOSTNAME_MAX: usize = 63;

/// The longest Pod name whose pod key fits in a file name, in `namespace`.
pub fn max_pod_name_len(namespace: &str) -> usize {
    NAME_MAX
        .saturating_sub(namespace.len() + 2 + POD_UID_LEN)
        .min(253)
}

/// The longest Deployment name whose pods' names fit, in `namespace`.
pub fn max_deployment_name_len(namespace: &str) -> usize {
    max_pod_name_len(namespace).saturating_sub(DEPLOYMENT_POD_SUFFIX_LEN)
}

/// The hostname of a pod named `name`: at most [`HOSTNAME_MAX`] bytes, with
/// trailing `-` and `.` left out (as kubelet does), never empty for a valid name.
///
/// ```
/// use berth_spec::validate::names::pod_hostname;
/// assert_eq!(pod_hostname("web-0"), "web-0");
/// let long = format!("{}-x", "a".repeat(62));
/// assert_eq!(pod_hostname(&long), "a".repeat(62));
/// ```
pub fn pod_hostname(name: &str) -> &str {
    let mut end = name.len().min(HOSTNAME_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    let cut = name[..end].trim_end_matches(['-', '.']);
    if cut.is_empty() { &name[..end] } else { cut }
}

/// Length rules for the kinds whose names reach host file names.
pub(crate) fn check(o: &mut Out, obj: &Object) {
    let m = obj.metadata();
    let (Some(name), ns) = (
        m.name.as_deref(),
        m.namespace.as_deref().unwrap_or("default"),
    ) else {
        return;
    };
    let (max, why) = match obj {
        Object::Pod(_) => (
            max_pod_name_len(ns),
            "berth names the pod's host files and cgroup <namespace>_<name>_<uid>, which must fit in 255 bytes",
        ),
        Object::Deployment(_) => (
            max_deployment_name_len(ns),
            "its pods are named <name>-<hash>-<suffix> and berth names their host files and cgroups <namespace>_<pod>_<uid>, which must fit in 255 bytes",
        ),
        Object::StatefulSet(_) | Object::DaemonSet(_) => (
            max_deployment_name_len(ns),
            "its pods are named after it and berth names their host files and cgroups <namespace>_<pod>_<uid>, which must fit in 255 bytes",
        ),
        Object::ReplicaSet(_) | Object::ReplicationController(_) => (
            max_deployment_name_len(ns),
            "its pods are named <name>-<suffix> and berth names their host files and cgroups <namespace>_<pod>_<uid>, which must fit in 255 bytes",
        ),
        // Jobs: at most 63 characters (validate::batch), pods `<job>-<5 chars>`
        Object::Service(_)
        | Object::Volume(_)
        | Object::ConfigMap(_)
        | Object::Secret(_)
        | Object::Job(_)
        | Object::CronJob(_) => {
            return;
        }
    };
    // an invalid name already has its own error
    if name.len() > max && super::is_dns1123_subdomain(name) {
        o.err(
            "metadata.name",
            format!(
                "name is too long for this host ({} characters): {why}, so in namespace {ns:?} it may have at most {max}",
                name.len()
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits() {
        assert_eq!(max_pod_name_len("default"), 236);
        assert_eq!(max_deployment_name_len("default"), 219);
        let ns = "n".repeat(63);
        assert_eq!(max_pod_name_len(&ns), 180);
        // the key of the longest allowed name is exactly NAME_MAX
        let key = format!("{ns}_{}_{}", "a".repeat(180), "0".repeat(POD_UID_LEN));
        assert_eq!(key.len(), NAME_MAX);
        assert_eq!(max_pod_name_len(""), 243);
    }

    #[test]
    fn hostnames() {
        assert_eq!(pod_hostname("a"), "a");
        let n63 = "b".repeat(63);
        assert_eq!(pod_hostname(&n63), n63);
        assert_eq!(pod_hostname(&format!("{n63}c")), n63);
        let dotted = format!("{}.-x", "c".repeat(61));
        assert_eq!(pod_hostname(&dotted), "c".repeat(61));
        assert!(pod_hostname(&"d".repeat(253)).len() <= HOSTNAME_MAX);
    }
}
