//! Services: selectors over pods to ready endpoints, and hostPort requests. Pure.
//!
//! `type: LoadBalancer` is a NodePort Service whose ports are also published
//! on the host's addresses; a headless Service (`clusterIP: None`) gets no
//! virtual IP, and DNS answers its ready endpoints (by hostname for pods
//! whose `spec.subdomain` names it).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use berth_spec::k8s_openapi::api::core::v1::{PodSpec, Service};
use berth_spec::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::traits::{HostPortMapping, Protocol, ServiceEntry, ServicePort};

pub fn protocol(p: Option<&str>) -> Protocol {
    match p {
        Some("UDP") => Protocol::Udp,
        _ => Protocol::Tcp,
    }
}

/// hostPort mappings requested by a pod spec (none for hostNetwork pods).
pub fn host_ports(spec: &PodSpec) -> Vec<HostPortMapping> {
    if spec.host_network.unwrap_or(false) {
        return Vec::new();
    }
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|p| *p > 0)?;
            Some(HostPortMapping {
                host_port,
                container_port: u16::try_from(p.container_port).ok()?,
                protocol: protocol(p.protocol.as_deref()),
                host_ip: p.host_ip.as_deref().and_then(|i| i.parse().ok()),
            })
        })
        .collect()
}

/// What a Service needs to know about a pod.
#[derive(Debug, Clone)]
pub struct EndpointPod<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub spec: &'a PodSpec,
    pub ip: Option<Ipv4Addr>,
    pub ready: bool,
    pub terminating: bool,
}

pub fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &BTreeMap<String, String>,
) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn target_port(tp: Option<&IntOrString>, port: u16, pod: &PodSpec) -> Option<u16> {
    match tp {
        None => Some(port),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
        Some(IntOrString::String(name)) => pod
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok()),
    }
}

/// One entry per Service with its ready endpoints. Named target ports are
/// resolved on the first ready pod that has the name (as kube-proxy does per
/// endpoint; berth's VIP maps one target port per service port).
pub fn entries(services: &[&Service], pods: &[EndpointPod<'_>]) -> Vec<ServiceEntry> {
    let mut out = Vec::new();
    for s in services {
        let Some(spec) = &s.spec else { continue };
        let ns = berth_spec::namespace_of(&s.metadata).to_string();
        let name = s.metadata.name.clone().unwrap_or_default();
        let selector = spec.selector.clone().unwrap_or_default();
        let members: Vec<&EndpointPod<'_>> = pods
            .iter()
            .filter(|p| {
                p.namespace == ns && !p.terminating && selector_matches(&selector, p.labels)
            })
            .collect();
        let ready: Vec<&&EndpointPod<'_>> = members
            .iter()
            .filter(|p| p.ready && p.ip.is_some())
            .collect();
        let mut ports = Vec::new();
        for p in spec.ports.iter().flatten() {
            let Ok(port) = u16::try_from(p.port) else {
                continue;
            };
            let tp = ready
                .iter()
                .find_map(|m| target_port(p.target_port.as_ref(), port, m.spec))
                .or_else(|| match p.target_port.as_ref() {
                    Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
                    None => Some(port),
                    _ => None,
                });
            let Some(target_port) = tp else { continue };
            ports.push(ServicePort {
                name: p.name.clone(),
                protocol: protocol(p.protocol.as_deref()),
                port,
                target_port,
                node_port: p.node_port.and_then(|n| u16::try_from(n).ok()),
            });
        }
        let mut endpoints: Vec<Ipv4Addr> = ready.iter().filter_map(|p| p.ip).collect();
        endpoints.sort();
        endpoints.dedup();
        let mut endpoint_hosts: Vec<(String, Ipv4Addr)> = ready
            .iter()
            .filter(|p| p.spec.subdomain.as_deref() == Some(name.as_str()))
            .filter_map(|p| Some((p.spec.hostname.clone()?, p.ip?)))
            .filter(|(h, _)| !h.is_empty())
            .collect();
        endpoint_hosts.sort();
        endpoint_hosts.dedup();
        let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
        let load_balancer = ty == "LoadBalancer";
        out.push(ServiceEntry {
            namespace: ns,
            name,
            cluster_ip: spec
                .cluster_ip
                .as_deref()
                .filter(|ip| !ip.is_empty() && *ip != "None")
                .and_then(|ip| ip.parse().ok()),
            node_port_type: ty == "NodePort"
                || (load_balancer && spec.allocate_load_balancer_node_ports != Some(false)),
            ports,
            endpoints,
            load_balancer,
            headless: spec.cluster_ip.as_deref() == Some("None"),
            endpoint_hosts,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_spec::k8s_openapi::api::core::v1::{Container, ContainerPort, ServiceSpec};
    use berth_spec::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(target: IntOrString) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("default".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                selector: Some([("app".to_string(), "web".to_string())].into()),
                ports: Some(vec![berth_spec::k8s_openapi::api::core::v1::ServicePort {
                    port: 80,
                    target_port: Some(target),
                    ..Default::default()
                }]),
                type_: Some("NodePort".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn spec() -> PodSpec {
        PodSpec {
            containers: vec![Container {
                name: "c".into(),
                ports: Some(vec![ContainerPort {
                    name: Some("http".into()),
                    container_port: 8080,
                    host_port: Some(18080),
                    ..Default::default()
                }]),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn only_ready_matching_pods_are_endpoints() {
        let web: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let other: BTreeMap<String, String> = [("app".to_string(), "db".to_string())].into();
        let sp = spec();
        let pods = vec![
            EndpointPod {
                namespace: "default",
                labels: &web,
                spec: &sp,
                ip: Some(Ipv4Addr::new(10, 0, 0, 3)),
                ready: true,
                terminating: false,
            },
            EndpointPod {
                namespace: "default",
                labels: &web,
                spec: &sp,
                ip: Some(Ipv4Addr::new(10, 0, 0, 2)),
                ready: false,
                terminating: false,
            },
            EndpointPod {
                namespace: "default",
                labels: &web,
                spec: &sp,
                ip: Some(Ipv4Addr::new(10, 0, 0, 4)),
                ready: true,
                terminating: true,
            },
            EndpointPod {
                namespace: "default",
                labels: &other,
                spec: &sp,
                ip: Some(Ipv4Addr::new(10, 0, 0, 5)),
                ready: true,
                terminating: false,
            },
            EndpointPod {
                namespace: "other",
                labels: &web,
                spec: &sp,
                ip: Some(Ipv4Addr::new(10, 0, 0, 6)),
                ready: true,
                terminating: false,
            },
        ];
        let s = svc(IntOrString::String("http".into()));
        let e = entries(&[&s], &pods);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].endpoints, vec![Ipv4Addr::new(10, 0, 0, 3)]);
        assert_eq!(e[0].ports[0].target_port, 8080);
        assert!(e[0].node_port_type);
    }

    #[test]
    fn empty_selector_matches_nothing() {
        assert!(!selector_matches(&BTreeMap::new(), &BTreeMap::new()));
    }

    #[test]
    fn host_ports_from_spec() {
        let hp = host_ports(&spec());
        assert_eq!(hp.len(), 1);
        assert_eq!(hp[0].host_port, 18080);
        assert_eq!(hp[0].container_port, 8080);
        let mut s = spec();
        s.host_network = Some(true);
        assert!(host_ports(&s).is_empty());
    }
}

#[cfg(test)]
mod kinds_tests {
    use super::*;
    use berth_spec::k8s_openapi::api::core::v1::{Container, ServiceSpec};
    use berth_spec::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(ty: &str, cluster_ip: Option<&str>) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some("nginx".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                type_: Some(ty.into()),
                cluster_ip: cluster_ip.map(Into::into),
                selector: Some([("app".to_string(), "web".to_string())].into()),
                ports: Some(vec![berth_spec::k8s_openapi::api::core::v1::ServicePort {
                    port: 80,
                    name: Some("web".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod_spec(host: Option<&str>, sub: Option<&str>) -> PodSpec {
        PodSpec {
            hostname: host.map(Into::into),
            subdomain: sub.map(Into::into),
            containers: vec![Container::default()],
            ..Default::default()
        }
    }

    #[test]
    fn load_balancer_gets_node_ports_and_host_publishing() {
        let e = entries(&[&svc("LoadBalancer", None)], &[]);
        assert!(e[0].load_balancer && e[0].node_port_type && !e[0].headless);
        let mut s = svc("LoadBalancer", None);
        s.spec.as_mut().unwrap().allocate_load_balancer_node_ports = Some(false);
        let e = entries(&[&s], &[]);
        assert!(e[0].load_balancer && !e[0].node_port_type);
        let e = entries(&[&svc("ClusterIP", None)], &[]);
        assert!(!e[0].load_balancer && !e[0].node_port_type);
    }

    #[test]
    fn headless_lists_ready_endpoints_and_their_hostnames() {
        let labels: BTreeMap<String, String> = [("app".to_string(), "web".to_string())].into();
        let (s0, s1, s2) = (
            pod_spec(Some("web-0"), Some("nginx")),
            pod_spec(Some("web-1"), Some("nginx")),
            pod_spec(Some("other"), Some("elsewhere")),
        );
        let pod = |spec, last, ready| EndpointPod {
            namespace: "default",
            labels: &labels,
            spec,
            ip: Some(Ipv4Addr::new(10, 0, 0, last)),
            ready,
            terminating: false,
        };
        let pods = vec![pod(&s0, 2, true), pod(&s1, 3, false), pod(&s2, 4, true)];
        let e = entries(&[&svc("ClusterIP", Some("None"))], &pods);
        assert!(e[0].headless);
        assert_eq!(e[0].cluster_ip, None);
        assert_eq!(
            e[0].endpoints,
            [Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 4)]
        );
        assert_eq!(
            e[0].endpoint_hosts,
            [("web-0".to_string(), Ipv4Addr::new(10, 0, 0, 2))],
            "only ready pods whose subdomain is this Service"
        );
    }
}
