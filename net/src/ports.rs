//! hostPort mappings: DNAT from the host's addresses to a pod.
//!
//! A mapping without `hostIP` matches every local address (`fib daddr type
//! local`), so it answers on the host's external addresses (traffic from other
//! hosts, via `nat_prerouting`) and on 127.0.0.1 (locally generated traffic, via
//! `nat_output`). DNAT from 127.0.0.1 to a pod needs
//! `net.ipv4.conf.<bridge>.route_localnet=1` (set on berth's own bridge only; the
//! kernel ORs it with `conf.all`) plus the `ip saddr 127.0.0.0/8 oifname <bridge>
//! masquerade` rule of [`crate::nft`], so the pod answers the bridge address.
//!
//! Two pods asking for the same host port and protocol on overlapping host
//! addresses are refused by [`conflict`] before anything is programmed.

use berth_contract::{HostPortMapping, PodRef};

use crate::ipam::PodAlloc;
use crate::nft::{S, daddr_local, dnat, dport, eq, ip, payload};

/// The nft rules for one pod's hostPorts (chain `hostports`).
pub fn rules(pod: &PodAlloc) -> Vec<(&'static str, Vec<S>)> {
    pod.host_ports
        .iter()
        .map(|m| {
            let dst = match m.host_ip {
                Some(h) => eq(payload("ip", "daddr"), ip(h)),
                None => daddr_local(),
            };
            (
                "hostports",
                vec![
                    dst,
                    dport(m.protocol, m.host_port),
                    dnat(pod.ip, m.container_port),
                ],
            )
        })
        .collect()
}

/// The first mapping of `wanted` that another pod already holds, with that pod.
pub fn conflict<'a>(
    pod: &PodRef,
    wanted: &[HostPortMapping],
    others: impl Iterator<Item = &'a PodAlloc>,
) -> Option<(HostPortMapping, PodRef)> {
    let others: Vec<&PodAlloc> = others.filter(|o| o.pod != *pod).collect();
    for w in wanted {
        for o in &others {
            for h in &o.host_ports {
                let same_ip = match (w.host_ip, h.host_ip) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                };
                if h.host_port == w.host_port && h.protocol == w.protocol && same_ip {
                    return Some((w.clone(), o.pod.clone()));
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_contract::Protocol;
    use std::net::Ipv4Addr;

    fn alloc(name: &str, ports: Vec<HostPortMapping>) -> PodAlloc {
        PodAlloc {
            pod: PodRef {
                namespace: "d".into(),
                name: name.into(),
                uid: "1".into(),
            },
            ip: Ipv4Addr::new(10, 123, 0, 2),
            host_ports: ports,
        }
    }

    fn hp(port: u16, proto: Protocol, host_ip: Option<Ipv4Addr>) -> HostPortMapping {
        HostPortMapping {
            host_port: port,
            container_port: 80,
            protocol: proto,
            host_ip,
        }
    }

    #[test]
    fn detects_conflicts_by_port_protocol_and_address() {
        let a = alloc("a", vec![hp(8080, Protocol::Tcp, None)]);
        let b = alloc("b", vec![]);
        let others = [a.clone()];
        assert!(conflict(&b.pod, &[hp(8080, Protocol::Tcp, None)], others.iter()).is_some());
        assert!(conflict(&b.pod, &[hp(8080, Protocol::Udp, None)], others.iter()).is_none());
        assert!(conflict(&b.pod, &[hp(8081, Protocol::Tcp, None)], others.iter()).is_none());
        // the pod itself never conflicts with its own earlier allocation
        assert!(conflict(&a.pod, &[hp(8080, Protocol::Tcp, None)], others.iter()).is_none());
        let c = alloc(
            "c",
            vec![hp(9000, Protocol::Tcp, Some(Ipv4Addr::new(192, 0, 2, 2)))],
        );
        let others = [c];
        let other_ip = Some(Ipv4Addr::new(192, 0, 2, 3));
        assert!(conflict(&b.pod, &[hp(9000, Protocol::Tcp, other_ip)], others.iter()).is_none());
        assert!(conflict(&b.pod, &[hp(9000, Protocol::Tcp, None)], others.iter()).is_some());
    }
}
