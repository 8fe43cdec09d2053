//! The downward API: pod fields and container resources as files
//! (`downwardAPI` volumes and `projected` sources) and as `resourceFieldRef`
//! environment values, with kubelet's formats. Pure but for
//! [`NodeCapacity::of_host`].

use std::collections::BTreeMap;

use berth_spec::k8s_openapi::api::core::v1::{
    Container, DownwardAPIVolumeFile, ResourceFieldSelector,
};

use crate::container::{BuildError, PodFields};

/// What an unset limit stands for (kubelet: the node's allocatable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeCapacity {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

impl NodeCapacity {
    /// This host's CPUs and memory (`/proc/meminfo`).
    pub fn of_host() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
        let mem_kib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find(|l| l.starts_with("MemTotal:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(0);
        Self {
            cpu_millis: cpus * 1000,
            memory_bytes: mem_kib * 1024,
        }
    }
}

/// `key="value"` lines, sorted, as kubelet writes label and annotation files.
pub fn format_map(m: &BTreeMap<String, String>) -> String {
    m.iter().map(|(k, v)| format!("{k}={v:?}\n")).collect()
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b.max(1))
}

/// A `resourceFieldRef` value: the named container's request or limit (a
/// limit not set is the node's capacity) divided by the divisor, rounded up.
pub fn resource_value(
    containers: &[Container],
    own: &str,
    r: &ResourceFieldSelector,
    node: NodeCapacity,
) -> Result<String, BuildError> {
    let name = r
        .container_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .unwrap_or(own);
    let bad = |what: &str| BuildError::FieldRef {
        path: format!("resourceFieldRef {what}"),
    };
    let c = containers
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| bad(&format!("containerName {name:?}")))?;
    let res = crate::container::resources(c)?;
    let divisor = r.divisor.as_ref().map(|q| q.0.as_str());
    let (value, per) = match r.resource.as_str() {
        "limits.cpu" => (
            res.cpu_limit_millis.unwrap_or(node.cpu_millis),
            cpu(divisor)?,
        ),
        "requests.cpu" => (res.cpu_request_millis.unwrap_or(0), cpu(divisor)?),
        "limits.memory" => (
            res.memory_limit_bytes.unwrap_or(node.memory_bytes),
            bytes(divisor)?,
        ),
        "requests.memory" => (res.memory_request_bytes.unwrap_or(0), bytes(divisor)?),
        "limits.ephemeral-storage" | "requests.ephemeral-storage" => {
            let q = c.resources.as_ref().and_then(|rr| {
                let m = if r.resource.starts_with("limits") {
                    rr.limits.as_ref()
                } else {
                    rr.requests.as_ref()
                };
                m?.get("ephemeral-storage").cloned()
            });
            let v = match q {
                Some(q) => {
                    berth_spec::quantity::parse_bytes(&q.0).map_err(|_| bad("ephemeral-storage"))?
                }
                None => 0,
            };
            (v, bytes(divisor)?)
        }
        other => return Err(bad(other)),
    };
    Ok(ceil_div(value, per).to_string())
}

fn cpu(divisor: Option<&str>) -> Result<u64, BuildError> {
    match divisor {
        None => Ok(1000),
        Some(d) => berth_spec::quantity::parse_millicores(d)
            .ok()
            .filter(|m| *m > 0)
            .ok_or_else(|| BuildError::Quantity {
                what: "resourceFieldRef.divisor".into(),
                value: d.into(),
            }),
    }
}

fn bytes(divisor: Option<&str>) -> Result<u64, BuildError> {
    match divisor {
        None => Ok(1),
        Some(d) => berth_spec::quantity::parse_bytes(d)
            .ok()
            .filter(|b| *b > 0)
            .ok_or_else(|| BuildError::Quantity {
                what: "resourceFieldRef.divisor".into(),
                value: d.into(),
            }),
    }
}

/// The content of one downwardAPI file.
pub fn file_content(
    f: &DownwardAPIVolumeFile,
    pod: &PodFields<'_>,
    node: NodeCapacity,
) -> Result<String, BuildError> {
    if let Some(r) = &f.resource_field_ref {
        // a volume file names its container (validated)
        return resource_value(pod.containers, "", r, node);
    }
    let Some(fr) = &f.field_ref else {
        return Err(BuildError::FieldRef {
            path: format!("{} (no fieldRef or resourceFieldRef)", f.path),
        });
    };
    Ok(match fr.field_path.as_str() {
        "metadata.labels" => format_map(pod.labels),
        "metadata.annotations" => format_map(pod.annotations),
        p => crate::container::field_ref(p, pod)?,
    })
}

#[cfg(test)]
mod tests {
    use berth_spec::k8s_openapi::api::core::v1::{ObjectFieldSelector, ResourceRequirements};
    use berth_spec::k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    use super::*;

    const NODE: NodeCapacity = NodeCapacity {
        cpu_millis: 2000,
        memory_bytes: 4 << 30,
    };

    fn app() -> Container {
        Container {
            name: "app".into(),
            resources: Some(ResourceRequirements {
                limits: Some(
                    [
                        ("cpu".to_string(), Quantity("250m".into())),
                        ("memory".to_string(), Quantity("64Mi".into())),
                    ]
                    .into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn sel(resource: &str, divisor: Option<&str>) -> ResourceFieldSelector {
        ResourceFieldSelector {
            container_name: None,
            resource: resource.into(),
            divisor: divisor.map(|d| Quantity(d.into())),
        }
    }

    #[test]
    fn resources_round_up_by_divisor() {
        let c = [app()];
        let v = |r, d| resource_value(&c, "app", &sel(r, d), NODE).unwrap();
        assert_eq!(v("limits.cpu", None), "1");
        assert_eq!(v("limits.cpu", Some("1m")), "250");
        assert_eq!(v("requests.cpu", Some("1m")), "250");
        assert_eq!(v("limits.memory", None), (64u64 << 20).to_string());
        assert_eq!(v("limits.memory", Some("1Mi")), "64");
        let bare = [Container {
            name: "bare".into(),
            ..Default::default()
        }];
        assert_eq!(
            resource_value(&bare, "bare", &sel("limits.cpu", Some("1m")), NODE).unwrap(),
            "2000"
        );
        assert_eq!(
            resource_value(&bare, "bare", &sel("requests.memory", None), NODE).unwrap(),
            "0"
        );
        assert!(resource_value(&bare, "nope", &sel("limits.cpu", None), NODE).is_err());
    }

    #[test]
    fn label_files_are_quoted_and_sorted() {
        let m: BTreeMap<String, String> = [
            ("zone".to_string(), "us-est-coast".to_string()),
            ("app".to_string(), "a \"b\"".to_string()),
        ]
        .into();
        assert_eq!(
            format_map(&m),
            "app=\"a \\\"b\\\"\"\nzone=\"us-est-coast\"\n"
        );
        let containers = [app()];
        let f = PodFields {
            namespace: "ns",
            name: "p",
            uid: "u1",
            node_name: "n",
            labels: &m,
            annotations: &m,
            pod_ip: None,
            host_ip: None,
            service_account: "default",
            containers: &containers,
        };
        let file = |path: &str| DownwardAPIVolumeFile {
            path: "x".into(),
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            file_content(&file("metadata.labels"), &f, NODE).unwrap(),
            format_map(&m)
        );
        assert_eq!(file_content(&file("metadata.uid"), &f, NODE).unwrap(), "u1");
        assert_eq!(
            file_content(&file("metadata.labels['zone']"), &f, NODE).unwrap(),
            "us-est-coast"
        );
    }
}
