//! `downwardAPI` and `projected` volumes, and `resourceFieldRef` (env and
//! volume files): what berth fills in, as kube-apiserver validates it.
//! A projected `serviceAccountToken` (or any other cluster-issued source)
//! needs a cluster: a clear refusal.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{
    DownwardAPIVolumeFile, PodSpec, ProjectedVolumeSource, ResourceFieldSelector,
};

use super::Out;

/// `resourceFieldRef.resource` values.
pub const RESOURCES: [&str; 6] = [
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
];

/// fieldRef paths of a downwardAPI volume file (whole label and annotation
/// maps, or one key).
fn volume_field_supported(f: &str) -> bool {
    let keyed = |prefix: &str| super::container::keyed_field(f, prefix);
    matches!(
        f,
        "metadata.name"
            | "metadata.namespace"
            | "metadata.uid"
            | "metadata.labels"
            | "metadata.annotations"
    ) || keyed("metadata.labels")
        || keyed("metadata.annotations")
}

/// A `resourceFieldRef`; `container` is the container it is set in (env),
/// `None` for a volume file, which must name one.
pub(crate) fn resource_field(
    o: &mut Out,
    p: &str,
    r: &ResourceFieldSelector,
    container: Option<&str>,
    spec: Option<&PodSpec>,
) {
    if !RESOURCES.contains(&r.resource.as_str()) {
        o.err(
            format!("{p}.resource"),
            format!(
                "{:?} is not supported (one of {})",
                r.resource,
                RESOURCES.join(", ")
            ),
        );
    }
    let name = r.container_name.as_deref().filter(|n| !n.is_empty());
    match (name, container) {
        (None, None) => o.err(
            format!("{p}.containerName"),
            "containerName is required in a volume",
        ),
        (Some(n), _) => {
            if let Some(s) = spec
                && !s
                    .containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .any(|c| c.name == n)
            {
                o.err(
                    format!("{p}.containerName"),
                    format!("no container named {n:?} in this pod"),
                );
            }
        }
        (None, Some(_)) => {}
    }
    if let Some(d) = &r.divisor
        && crate::quantity::parse_bytes(&d.0).is_err()
        && crate::quantity::parse_millicores(&d.0).is_err()
    {
        o.err(
            format!("{p}.divisor"),
            format!("{:?} is not a valid quantity", d.0),
        );
    }
}

fn files(o: &mut Out, p: &str, items: &[DownwardAPIVolumeFile], spec: &PodSpec) {
    let mut paths = BTreeSet::new();
    for (i, it) in items.iter().enumerate() {
        let ip = format!("{p}.items[{i}]");
        if it.path.is_empty()
            || it.path.starts_with('/')
            || it.path.split('/').any(|s| s == ".." || s.is_empty())
        {
            o.err(format!("{ip}.path"), "must be a relative path without '..'");
        } else if !paths.insert(it.path.as_str()) {
            o.err(
                format!("{ip}.path"),
                format!("duplicate path {:?}", it.path),
            );
        }
        if let Some(m) = it.mode.filter(|m| !(0..=0o777).contains(m)) {
            o.err(
                format!("{ip}.mode"),
                format!("{m} is not a valid file mode (0-0777)"),
            );
        }
        match (&it.field_ref, &it.resource_field_ref) {
            (Some(f), None) => {
                if !volume_field_supported(&f.field_path) {
                    o.err(
                        format!("{ip}.fieldRef.fieldPath"),
                        format!(
                            "{:?} is not supported in a volume (metadata.name, metadata.namespace, metadata.uid, metadata.labels, metadata.annotations)",
                            f.field_path
                        ),
                    );
                }
            }
            (None, Some(r)) => {
                resource_field(o, &format!("{ip}.resourceFieldRef"), r, None, Some(spec))
            }
            _ => o.err(&ip, "needs exactly one of fieldRef or resourceFieldRef"),
        }
    }
}

pub(crate) fn downward_api(
    o: &mut Out,
    p: &str,
    default_mode: Option<i32>,
    items: Option<&[DownwardAPIVolumeFile]>,
    spec: &PodSpec,
) {
    if let Some(m) = default_mode.filter(|m| !(0..=0o777).contains(m)) {
        o.err(
            format!("{p}.defaultMode"),
            format!("{m} is not a valid file mode (0-0777)"),
        );
    }
    files(o, p, items.unwrap_or_default(), spec);
}

pub(crate) fn projected(o: &mut Out, p: &str, v: &ProjectedVolumeSource, spec: &PodSpec) {
    if let Some(m) = v.default_mode.filter(|m| !(0..=0o777).contains(m)) {
        o.err(
            format!("{p}.defaultMode"),
            format!("{m} is not a valid file mode (0-0777)"),
        );
    }
    for (i, s) in v.sources.iter().flatten().enumerate() {
        let sp = format!("{p}.sources[{i}]");
        let n = [
            s.config_map.is_some(),
            s.secret.is_some(),
            s.downward_api.is_some(),
            s.service_account_token.is_some(),
            s.cluster_trust_bundle.is_some(),
            s.pod_certificate.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if n != 1 {
            o.err(
                &sp,
                "a projection needs exactly one source (configMap, secret or downwardAPI)",
            );
        }
        if s.service_account_token.is_some() {
            o.err(
                format!("{sp}.serviceAccountToken"),
                "serviceAccountToken needs a cluster (a token issued by kube-apiserver); berth has none",
            );
        }
        if s.cluster_trust_bundle.is_some() {
            o.err(
                format!("{sp}.clusterTrustBundle"),
                "clusterTrustBundle needs a cluster; berth has none",
            );
        }
        if s.pod_certificate.is_some() {
            o.err(
                format!("{sp}.podCertificate"),
                "podCertificate needs a cluster; berth has none",
            );
        }
        if let Some(c) = &s.config_map
            && c.name.is_empty()
        {
            o.err(format!("{sp}.configMap.name"), "name is required");
        }
        if let Some(c) = &s.secret
            && c.name.is_empty()
        {
            o.err(format!("{sp}.secret.name"), "name is required");
        }
        if let Some(d) = &s.downward_api {
            files(
                o,
                &format!("{sp}.downwardAPI"),
                d.items.as_deref().unwrap_or_default(),
                spec,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        ObjectFieldSelector, ServiceAccountTokenProjection, VolumeProjection,
    };

    use super::*;

    #[test]
    fn service_account_tokens_need_a_cluster() {
        let v = ProjectedVolumeSource {
            sources: Some(vec![VolumeProjection {
                service_account_token: Some(ServiceAccountTokenProjection {
                    path: "token".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let mut o = Out(Vec::new());
        projected(&mut o, "v", &v, &PodSpec::default());
        assert_eq!(o.0.len(), 1);
        assert_eq!(
            o.0[0].path.as_deref(),
            Some("v.sources[0].serviceAccountToken")
        );
    }

    #[test]
    fn downward_files_are_checked() {
        let items = vec![
            DownwardAPIVolumeFile {
                path: "labels".into(),
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.labels".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            DownwardAPIVolumeFile {
                path: "../ip".into(),
                field_ref: Some(ObjectFieldSelector {
                    field_path: "status.podIP".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
            DownwardAPIVolumeFile {
                path: "cpu".into(),
                resource_field_ref: Some(ResourceFieldSelector {
                    resource: "limits.cpu".into(),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ];
        let mut o = Out(Vec::new());
        downward_api(&mut o, "v", None, Some(&items), &PodSpec::default());
        let paths: Vec<_> = o.0.iter().filter_map(|p| p.path.clone()).collect();
        assert_eq!(
            paths,
            [
                "v.items[1].path",
                "v.items[1].fieldRef.fieldPath",
                "v.items[2].resourceFieldRef.containerName"
            ],
        );
    }
}
