//! Service environment variables, as kubelet sets them: for every Service
//! with a cluster IP in the pod's namespace that exists when a container
//! starts, `FOO_SERVICE_HOST`, `FOO_SERVICE_PORT[_NAME]` and the Docker-link
//! style `FOO_PORT`, `FOO_PORT_80_TCP[_PROTO|_PORT|_ADDR]`. A pod with
//! `enableServiceLinks: false` gets none. Pure.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use berth_spec::k8s_openapi::api::core::v1::Service;

use crate::traits::Protocol;

/// A Service as containers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEnv {
    pub namespace: String,
    pub name: String,
    pub cluster_ip: Ipv4Addr,
    /// (port name, protocol, port)
    pub ports: Vec<(Option<String>, Protocol, u16)>,
}

impl ServiceEnv {
    /// From a Service and the cluster IP it was given (`assigned`), or the
    /// one its spec asks for; `None` for a headless Service or one not yet
    /// given an address.
    pub fn from_service(s: &Service, assigned: Option<Ipv4Addr>) -> Option<Self> {
        let spec = s.spec.as_ref()?;
        if spec.cluster_ip.as_deref() == Some("None") {
            return None;
        }
        let cluster_ip = assigned.or_else(|| spec.cluster_ip.as_deref()?.parse().ok())?;
        Some(Self {
            namespace: s
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| "default".into()),
            name: s.metadata.name.clone()?,
            cluster_ip,
            ports: spec
                .ports
                .iter()
                .flatten()
                .filter_map(|p| {
                    Some((
                        p.name.clone().filter(|n| !n.is_empty()),
                        crate::service::protocol(p.protocol.as_deref()),
                        u16::try_from(p.port).ok()?,
                    ))
                })
                .collect(),
        })
    }
}

fn env_name(s: &str) -> String {
    s.to_ascii_uppercase().replace('-', "_")
}

fn proto(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// The variables for a container of a pod in `namespace`.
pub fn variables(
    services: &[ServiceEnv],
    namespace: &str,
    links: bool,
) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if !links {
        return env;
    }
    for s in services.iter().filter(|s| s.namespace == namespace) {
        let n = env_name(&s.name);
        let ip = s.cluster_ip.to_string();
        env.insert(format!("{n}_SERVICE_HOST"), ip.clone());
        let Some((_, p0, port0)) = s.ports.first() else {
            continue;
        };
        env.insert(format!("{n}_SERVICE_PORT"), port0.to_string());
        env.insert(
            format!("{n}_PORT"),
            format!("{}://{ip}:{port0}", proto(*p0)),
        );
        for (name, p, port) in &s.ports {
            if let Some(name) = name {
                env.insert(
                    format!("{n}_SERVICE_PORT_{}", env_name(name)),
                    port.to_string(),
                );
            }
            let pre = format!("{n}_PORT_{port}_{}", proto(*p).to_ascii_uppercase());
            env.insert(pre.clone(), format!("{}://{ip}:{port}", proto(*p)));
            env.insert(format!("{pre}_PROTO"), proto(*p).to_string());
            env.insert(format!("{pre}_PORT"), port.to_string());
            env.insert(format!("{pre}_ADDR"), ip.clone());
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis() -> ServiceEnv {
        ServiceEnv {
            namespace: "default".into(),
            name: "redis-primary".into(),
            cluster_ip: Ipv4Addr::new(10, 0, 0, 11),
            ports: vec![
                (Some("db".into()), Protocol::Tcp, 6379),
                (None, Protocol::Udp, 53),
            ],
        }
    }

    #[test]
    fn kubelet_names() {
        let env = variables(&[redis()], "default", true);
        let want = [
            ("REDIS_PRIMARY_SERVICE_HOST", "10.0.0.11"),
            ("REDIS_PRIMARY_SERVICE_PORT", "6379"),
            ("REDIS_PRIMARY_SERVICE_PORT_DB", "6379"),
            ("REDIS_PRIMARY_PORT", "tcp://10.0.0.11:6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP", "tcp://10.0.0.11:6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP_PROTO", "tcp"),
            ("REDIS_PRIMARY_PORT_6379_TCP_PORT", "6379"),
            ("REDIS_PRIMARY_PORT_6379_TCP_ADDR", "10.0.0.11"),
            ("REDIS_PRIMARY_PORT_53_UDP", "udp://10.0.0.11:53"),
            ("REDIS_PRIMARY_PORT_53_UDP_PROTO", "udp"),
            ("REDIS_PRIMARY_PORT_53_UDP_PORT", "53"),
            ("REDIS_PRIMARY_PORT_53_UDP_ADDR", "10.0.0.11"),
        ];
        assert_eq!(
            env,
            want.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        );
    }

    #[test]
    fn other_namespaces_and_disabled_links_give_nothing() {
        assert!(variables(&[redis()], "prod", true).is_empty());
        assert!(variables(&[redis()], "default", false).is_empty());
    }

    #[test]
    fn headless_services_have_no_variables() {
        let s: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}
        }))
        .unwrap();
        assert_eq!(ServiceEnv::from_service(&s, None), None);
        assert_eq!(
            ServiceEnv::from_service(&s, Some(Ipv4Addr::new(10, 1, 0, 1))),
            None
        );
        let s: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db"},
            "spec": {"ports": [{"port": 5432}]}
        }))
        .unwrap();
        assert_eq!(ServiceEnv::from_service(&s, None), None);
        let e = ServiceEnv::from_service(&s, Some(Ipv4Addr::new(10, 1, 0, 1)));
        assert_eq!(e.map(|e| e.cluster_ip), Some(Ipv4Addr::new(10, 1, 0, 1)));
    }
}
