//! The pod and Service fields no other rule looks at (issue 15's audit of
//! PodSpec, Container, PodSecurityContext and ServiceSpec in k8s-openapi):
//! each is honoured (and checked for form here), or a warning naming the
//! field says berth ignores it, or an error says it needs a cluster. Fields
//! that only steer a multi-node scheduler and cannot change the outcome on
//! one node (tolerations, priorities, topology spread, scheduler name) are
//! honoured by being trivially satisfied and stay silent.

use k8s_openapi::api::core::v1::{Container, PodSpec, ServiceSpec};

use super::{Out, is_dns1123_label};

fn ignored(o: &mut Out, path: String, why: &str) {
    o.warn(path, format!("ignored by berth: {why}"));
}

/// PodSpec fields: hostname, subdomain, shareProcessNamespace,
/// supplementalGroupsPolicy (honoured), and those berth ignores.
pub(crate) fn pod_spec(o: &mut Out, base: &str, s: &PodSpec) {
    for (field, v) in [
        ("hostname", &s.hostname),
        ("subdomain", &s.subdomain),
        ("hostnameOverride", &s.hostname_override),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty())
            && !is_dns1123_label(v)
        {
            o.err(
                format!("{base}.{field}"),
                format!(
                    "{v:?} is not a DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)"
                ),
            );
        }
    }
    if s.hostname_override
        .as_deref()
        .is_some_and(|h| !h.is_empty())
        && s.set_hostname_as_fqdn == Some(true)
    {
        o.err(
            format!("{base}.hostnameOverride"),
            "may not be set together with setHostnameAsFQDN",
        );
    }
    if s.share_process_namespace == Some(true) && s.host_pid == Some(true) {
        o.err(
            format!("{base}.shareProcessNamespace"),
            "shareProcessNamespace and hostPID cannot both be enabled",
        );
    }
    if let Some(sc) = &s.security_context {
        let p = format!("{base}.securityContext");
        match sc.supplemental_groups_policy.as_deref() {
            None | Some("Merge") | Some("Strict") => {}
            Some(x) => o.err(
                format!("{p}.supplementalGroupsPolicy"),
                format!("{x:?} is not valid (Merge or Strict)"),
            ),
        }
        if sc.se_linux_change_policy.is_some() {
            ignored(
                o,
                format!("{p}.seLinuxChangePolicy"),
                "berth applies no SELinux labels",
            );
        }
    }
    if s.automount_service_account_token == Some(true) {
        ignored(
            o,
            format!("{base}.automountServiceAccountToken"),
            "there is no cluster API and no service account token to mount",
        );
    }
    if s.host_users == Some(false) {
        ignored(
            o,
            format!("{base}.hostUsers"),
            "berth runs pods in the host's user namespace (no user namespaces)",
        );
    }
    if s.image_pull_secrets.as_ref().is_some_and(|v| !v.is_empty()) {
        ignored(
            o,
            format!("{base}.imagePullSecrets"),
            "registry credentials are not read from Secrets",
        );
    }
    if s.overhead.as_ref().is_some_and(|v| !v.is_empty()) {
        ignored(
            o,
            format!("{base}.overhead"),
            "no RuntimeClass overhead is added to the pod's cgroup",
        );
    }
    if s.resource_claims.as_ref().is_some_and(|v| !v.is_empty()) {
        o.err(
            format!("{base}.resourceClaims"),
            "dynamic resource allocation needs a cluster (ResourceClaims are allocated by the scheduler and drivers); berth has none",
        );
    }
    for (p, c) in super::containers_at(base, s) {
        container(o, &p, c);
    }
}

fn container(o: &mut Out, p: &str, c: &Container) {
    if c.volume_devices.as_ref().is_some_and(|v| !v.is_empty()) {
        o.err(
            format!("{p}.volumeDevices"),
            "raw block volumes are not supported by berth (Volumes are directories)",
        );
    }
    if c.resize_policy.as_ref().is_some_and(|v| !v.is_empty()) {
        ignored(
            o,
            format!("{p}.resizePolicy"),
            "a change of resources replaces the pod (no in-place resize)",
        );
    }
    if c.restart_policy_rules
        .as_ref()
        .is_some_and(|v| !v.is_empty())
    {
        ignored(
            o,
            format!("{p}.restartPolicyRules"),
            "restarts follow the container's and the pod's restartPolicy only",
        );
    }
    if c.stdin_once == Some(true) {
        ignored(o, format!("{p}.stdinOnce"), "berth attaches no stdin");
    }
    if c.resources
        .as_ref()
        .and_then(|r| r.claims.as_ref())
        .is_some_and(|v| !v.is_empty())
    {
        o.err(
            format!("{p}.resources.claims"),
            "dynamic resource allocation needs a cluster; berth has none",
        );
    }
}

/// ServiceSpec fields the Service rules do not cover.
pub(crate) fn service(o: &mut Out, s: &ServiceSpec) {
    if s.external_ips.as_ref().is_some_and(|v| !v.is_empty()) {
        ignored(
            o,
            "spec.externalIPs".into(),
            "the Service is reachable on its ClusterIP (and node ports), not on external IPs",
        );
    }
    if s.publish_not_ready_addresses == Some(true) {
        ignored(
            o,
            "spec.publishNotReadyAddresses".into(),
            "only ready pods are endpoints and DNS answers",
        );
    }
    if s.session_affinity.as_deref() == Some("ClientIP") {
        ignored(
            o,
            "spec.sessionAffinity".into(),
            "connections are spread over the ready pods without client affinity",
        );
    }
    if s.external_traffic_policy.as_deref() == Some("Local") {
        ignored(
            o,
            "spec.externalTrafficPolicy".into(),
            "one node: every endpoint is local, but the client's source address is not kept",
        );
    }
    let v6 = s.ip_families.iter().flatten().any(|f| f == "IPv6")
        || s.ip_family_policy.as_deref() == Some("RequireDualStack");
    if v6 {
        o.err(
            "spec.ipFamilies",
            "IPv6 Services are not supported by berth (IPv4 only)",
        );
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::PodSecurityContext;

    use super::*;

    fn paths(o: &Out) -> Vec<(bool, String)> {
        o.0.iter()
            .map(|p| {
                (
                    p.severity == crate::diag::Severity::Error,
                    p.path.clone().unwrap_or_default(),
                )
            })
            .collect()
    }

    #[test]
    fn hostname_subdomain_and_groups_policy_are_checked_for_form() {
        let mut s = PodSpec {
            hostname: Some("Web_0".into()),
            subdomain: Some("nginx".into()),
            share_process_namespace: Some(true),
            security_context: Some(PodSecurityContext {
                supplemental_groups_policy: Some("Strict".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut o = Out(Vec::new());
        pod_spec(&mut o, "spec", &s);
        assert_eq!(paths(&o), [(true, "spec.hostname".to_string())]);
        s.hostname = Some("web-0".into());
        s.host_pid = Some(true);
        s.security_context
            .as_mut()
            .unwrap()
            .supplemental_groups_policy = Some("Loose".into());
        let mut o = Out(Vec::new());
        pod_spec(&mut o, "spec", &s);
        assert_eq!(
            paths(&o),
            [
                (true, "spec.shareProcessNamespace".to_string()),
                (
                    true,
                    "spec.securityContext.supplementalGroupsPolicy".to_string()
                )
            ]
        );
    }

    #[test]
    fn ignored_fields_are_named_in_a_warning() {
        let s = PodSpec {
            automount_service_account_token: Some(true),
            host_users: Some(false),
            containers: vec![Container {
                name: "c".into(),
                stdin_once: Some(true),
                ..Default::default()
            }],
            ..Default::default()
        };
        let mut o = Out(Vec::new());
        pod_spec(&mut o, "spec", &s);
        assert_eq!(
            paths(&o),
            [
                (false, "spec.automountServiceAccountToken".to_string()),
                (false, "spec.hostUsers".to_string()),
                (false, "spec.containers[0].stdinOnce".to_string()),
            ]
        );
        // the defaults say nothing
        let mut o = Out(Vec::new());
        pod_spec(&mut o, "spec", &PodSpec::default());
        assert!(o.0.is_empty());
        let svc = ServiceSpec {
            session_affinity: Some("ClientIP".into()),
            ip_families: Some(vec!["IPv6".into()]),
            ..Default::default()
        };
        let mut o = Out(Vec::new());
        service(&mut o, &svc);
        assert_eq!(
            paths(&o),
            [
                (false, "spec.sessionAffinity".to_string()),
                (true, "spec.ipFamilies".to_string())
            ]
        );
    }
}
