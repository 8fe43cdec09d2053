//! Services: type, ClusterIP, ports, NodePorts. `LoadBalancer` is a NodePort
//! Service whose ports berth also publishes on the host's addresses (its
//! status names the node's address, as k3s's service load balancer does);
//! a headless Service (`clusterIP: None`) has DNS names and no address.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{Out, check_name, is_dns1123_label, is_port_name, port, protocol};

pub(crate) fn service(o: &mut Out, name: Option<&str>, svc: &Service) {
    check_name(o, name, super::NameRule::Dns1035);
    let Some(s) = &svc.spec else {
        o.err("spec", "a Service needs a spec");
        return;
    };
    let ty = s.type_.as_deref().unwrap_or("ClusterIP");
    match ty {
        "ClusterIP" | "NodePort" | "LoadBalancer" => {}
        "ExternalName" => o.err(
            "spec.type",
            "ExternalName is not supported by berth (ClusterIP, NodePort or LoadBalancer)",
        ),
        _ => o.err(
            "spec.type",
            format!("{ty:?} is not a valid type (ClusterIP, NodePort or LoadBalancer)"),
        ),
    }
    super::pod_fields::service(o, s);
    let node_ports = ty == "NodePort" || ty == "LoadBalancer";
    if ty == "LoadBalancer" {
        for (field, set) in [
            (
                "loadBalancerSourceRanges",
                s.load_balancer_source_ranges
                    .as_ref()
                    .is_some_and(|v| !v.is_empty()),
            ),
            (
                "loadBalancerIP",
                s.load_balancer_ip.as_deref().is_some_and(|v| !v.is_empty()),
            ),
            ("loadBalancerClass", s.load_balancer_class.is_some()),
        ] {
            if set {
                o.warn(
                    format!("spec.{field}"),
                    "ignored by berth: the ports are published on all of this host's addresses",
                );
            }
        }
    }
    if s.selector.as_ref().is_none_or(BTreeMap::is_empty) {
        o.warn(
            "spec.selector",
            "no selector: berth does not manage Endpoints by hand, so this Service has no backends",
        );
    }
    if let Some(ip) = s.cluster_ip.as_deref() {
        if ip == "None" {
            if ty != "ClusterIP" {
                o.err(
                    "spec.clusterIP",
                    format!(
                        "a headless Service (clusterIP: None) must be type ClusterIP, not {ty}"
                    ),
                );
            }
        } else if !ip.is_empty() && ip.parse::<std::net::Ipv4Addr>().is_err() {
            o.err(
                "spec.clusterIP",
                format!("{ip:?} is not a valid IPv4 address"),
            );
        }
    }
    let ports = s.ports.clone().unwrap_or_default();
    if ports.is_empty() {
        o.err("spec.ports", "a Service needs at least one port");
    }
    let mut seen = BTreeSet::new();
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let base = format!("spec.ports[{i}]");
        port(o, &format!("{base}.port"), p.port);
        match &p.target_port {
            // defaulted to `port`, which is checked above
            Some(IntOrString::Int(t)) if *t != p.port => {
                port(o, &format!("{base}.targetPort"), *t);
            }
            Some(IntOrString::String(n)) if !is_port_name(n) => o.err(
                format!("{base}.targetPort"),
                format!("{n:?} is not a valid port name ({})", super::PORT_NAME_RULE),
            ),
            _ => {}
        }
        if let Some(np) = p.node_port {
            if !node_ports {
                o.err(
                    format!("{base}.nodePort"),
                    "may only be set when type is NodePort or LoadBalancer",
                );
            } else if !(30000..=32767).contains(&np) {
                o.err(
                    format!("{base}.nodePort"),
                    format!("{np} is not in the NodePort range 30000-32767"),
                );
            }
        }
        protocol(o, &format!("{base}.protocol"), p.protocol.as_deref());
        if ports.len() > 1 && p.name.as_deref().is_none_or(str::is_empty) {
            o.err(
                format!("{base}.name"),
                "ports must be named when a Service has more than one",
            );
        }
        if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
            if !is_dns1123_label(n) {
                o.err(
                    format!("{base}.name"),
                    format!("{n:?} is not a valid Service port name (DNS-1123 label)"),
                );
            }
            if !names.insert(n) {
                o.err(format!("{base}.name"), format!("duplicate port name {n:?}"));
            }
        }
        if !seen.insert((p.port, p.protocol.clone())) {
            o.err(format!("{base}.port"), format!("duplicate port {}", p.port));
        }
    }
}
