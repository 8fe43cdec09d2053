//! The AppArmor profile of a container, resolved as kubelet resolves it:
//! the container's `securityContext.appArmorProfile`, else the (deprecated)
//! annotation `container.apparmor.security.beta.kubernetes.io/<name>`, else
//! the pod's `securityContext.appArmorProfile`. Only a `Localhost` profile
//! is applied (by name, to the container's process); validation accepts one
//! only where the kernel has AppArmor and refuses `RuntimeDefault` (berth
//! loads no default profile), as kubelet refuses both on a node without it.

use std::collections::BTreeMap;

use berth_spec::k8s_openapi::api::core::v1::{AppArmorProfile, Container, PodSecurityContext};

const ANNOTATION: &str = "container.apparmor.security.beta.kubernetes.io/";

fn from_annotation(v: &str) -> Option<AppArmorProfile> {
    let (type_, name) = match v {
        "runtime/default" => ("RuntimeDefault", None),
        "unconfined" => ("Unconfined", None),
        _ => ("Localhost", Some(v.strip_prefix("localhost/")?.to_string())),
    };
    Some(AppArmorProfile {
        type_: type_.into(),
        localhost_profile: name,
    })
}

/// The name of the `Localhost` profile the container runs under, if any.
pub fn localhost_profile(
    c: &Container,
    pod: Option<&PodSecurityContext>,
    annotations: &BTreeMap<String, String>,
) -> Option<String> {
    let p = c
        .security_context
        .as_ref()
        .and_then(|s| s.app_armor_profile.clone())
        .or_else(|| {
            annotations
                .get(&format!("{ANNOTATION}{}", c.name))
                .and_then(|v| from_annotation(v))
        })
        .or_else(|| pod.and_then(|p| p.app_armor_profile.clone()))?;
    (p.type_ == "Localhost")
        .then_some(p.localhost_profile)
        .flatten()
        .filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use berth_spec::k8s_openapi::api::core::v1::SecurityContext;

    use super::*;

    fn profile(t: &str, name: Option<&str>) -> Option<AppArmorProfile> {
        Some(AppArmorProfile {
            type_: t.into(),
            localhost_profile: name.map(str::to_string),
        })
    }

    #[test]
    fn container_then_annotation_then_pod() {
        let mut c = Container {
            name: "web".into(),
            ..Default::default()
        };
        let pod = PodSecurityContext {
            app_armor_profile: profile("Localhost", Some("pod-wide")),
            ..Default::default()
        };
        let mut ann = BTreeMap::new();
        assert_eq!(
            localhost_profile(&c, Some(&pod), &ann).as_deref(),
            Some("pod-wide")
        );
        ann.insert(
            format!("{ANNOTATION}web"),
            "localhost/from-annotation".into(),
        );
        ann.insert(format!("{ANNOTATION}other"), "localhost/not-mine".into());
        assert_eq!(
            localhost_profile(&c, Some(&pod), &ann).as_deref(),
            Some("from-annotation")
        );
        c.security_context = Some(SecurityContext {
            app_armor_profile: profile("Unconfined", None),
            ..Default::default()
        });
        assert_eq!(localhost_profile(&c, Some(&pod), &ann), None);
        c.security_context = Some(SecurityContext {
            app_armor_profile: profile("Localhost", Some("own")),
            ..Default::default()
        });
        assert_eq!(localhost_profile(&c, None, &ann).as_deref(), Some("own"));
        // runtime/default is not a Localhost profile
        c.security_context = None;
        ann.insert(format!("{ANNOTATION}web"), "runtime/default".into());
        assert_eq!(localhost_profile(&c, None, &ann), None);
    }
}
