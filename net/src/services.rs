//! Services: ClusterIP and NodePort allocation (persisted) and their DNAT rules.
//!
//! `sync` replaces the whole set. A Service keeps its ClusterIP for as long as
//! it exists (stable per namespace/name, also across agent restarts);
//! `spec.clusterIP` is honoured when inside the service CIDR and not taken.
//! NodePorts work the same way inside the configured range. A
//! `LoadBalancer` Service also has each `port` DNATed on the host's own
//! addresses (k3s's service load balancer, without its pods); a headless
//! Service (`clusterIP: None`) gets no address and no rules, only DNS
//! names (it is programmed with 0.0.0.0). Per-Service
//! problems are returned in [`ServiceAssigned::error`] and that Service is
//! not programmed; the others are.
//!
//! On-disk format (`<state>/net/services.json`, version 1): the last synced
//! `ServiceEntry` list with the assigned addresses and node ports, so the nft
//! table can be rebuilt on start before the reconciler syncs again.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use berth_contract::{Protocol, ServiceAssigned, ServiceEntry};
use serde::{Deserialize, Serialize};

use crate::cidr::Ipv4Net;
use crate::nft::{S, daddr_local, dnat_spread, dport, eq, ip, payload, reject};
use crate::persist::{self, PersistError};

const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(
        "persisted service state in {path} is for {found}, but the configured service CIDR is {configured}"
    )]
    CidrChanged {
        path: PathBuf,
        found: Ipv4Net,
        configured: Ipv4Net,
    },
    #[error("persist service state")]
    Persist(#[source] PersistError),
}

/// A Service as programmed: its entry plus what was assigned to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgrammedService {
    pub entry: ServiceEntry,
    pub cluster_ip: Ipv4Addr,
    /// (service port, protocol, node port)
    pub node_ports: Vec<(u16, Protocol, u16)>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ServicesFile {
    cidr: Ipv4Net,
    services: BTreeMap<String, ProgrammedService>,
}

impl berth_state::Versioned for ServicesFile {
    const WHAT: &'static str = "Service state";
    const CURRENT: u32 = VERSION;
    const MAX_BYTES: u64 = 64 << 20;

    fn decode(version: u32, doc: serde_json::Value) -> Result<Self, berth_state::DecodeError> {
        match version {
            1 => serde_json::from_value(doc)
                .map_err(|source| berth_state::DecodeError::Invalid { version, source }),
            found => Err(berth_state::DecodeError::UnknownVersion {
                found,
                newest: VERSION,
            }),
        }
    }
}

/// The Service table.
#[derive(Debug)]
pub struct Services {
    path: PathBuf,
    cidr: Ipv4Net,
    node_port_range: (u16, u16),
    programmed: BTreeMap<String, ProgrammedService>,
}

fn key(ns: &str, name: &str) -> String {
    format!("{ns}/{name}")
}

impl Services {
    pub fn load(
        dir: &Path,
        cidr: Ipv4Net,
        node_port_range: (u16, u16),
    ) -> Result<Self, ServiceError> {
        let path = dir.join("services.json");
        // unreadable: moved aside; the reconciler's next sync programs every
        // Service again (a ClusterIP may then change)
        let programmed =
            match persist::read::<ServicesFile>(&path).map_err(ServiceError::Persist)? {
                berth_state::Loaded::Missing => BTreeMap::new(),
                berth_state::Loaded::Quarantined(q) => {
                    persist::report(&q);
                    BTreeMap::new()
                }
                berth_state::Loaded::Found { value: f, .. } => {
                    if f.cidr != cidr {
                        return Err(ServiceError::CidrChanged {
                            path,
                            found: f.cidr,
                            configured: cidr,
                        });
                    }
                    f.services
                }
            };
        Ok(Self {
            path,
            cidr,
            node_port_range,
            programmed,
        })
    }

    pub fn programmed(&self) -> impl Iterator<Item = &ProgrammedService> {
        self.programmed.values()
    }

    /// Replace the set; persisted before returning.
    pub fn sync(&mut self, wanted: &[ServiceEntry]) -> Result<Vec<ServiceAssigned>, ServiceError> {
        let (next, assigned) = self.plan(wanted);
        let file = ServicesFile {
            cidr: self.cidr,
            services: next.clone(),
        };
        persist::write(&self.path, VERSION, &file).map_err(ServiceError::Persist)?;
        self.programmed = next;
        Ok(assigned)
    }

    /// Pure: the next programmed set and the per-service answers, in input order.
    fn plan(
        &self,
        wanted: &[ServiceEntry],
    ) -> (BTreeMap<String, ProgrammedService>, Vec<ServiceAssigned>) {
        let mut ips: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
        let mut errors: BTreeMap<String, String> = BTreeMap::new();
        let mut chosen: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
        let valid = |a: Ipv4Addr| {
            self.cidr.contains(a) && a != self.cidr.network() && a != self.cidr.broadcast()
        };
        // 1. explicit clusterIPs; 2. keep previous; 3. allocate.
        for s in wanted.iter().filter(|s| !s.headless) {
            let k = key(&s.namespace, &s.name);
            if let Some(req) = s.cluster_ip {
                if !valid(req) {
                    errors.insert(
                        k,
                        format!(
                            "clusterIP {req} is not a usable address of the service CIDR {}",
                            self.cidr
                        ),
                    );
                } else if let Some(other) = ips.get(&req) {
                    errors.insert(
                        k,
                        format!("clusterIP {req} is already used by service {other}"),
                    );
                } else {
                    ips.insert(req, k.clone());
                    chosen.insert(k, req);
                }
            }
        }
        for s in wanted
            .iter()
            .filter(|s| s.cluster_ip.is_none() && !s.headless)
        {
            let k = key(&s.namespace, &s.name);
            if let Some(prev) = self.programmed.get(&k).map(|p| p.cluster_ip)
                && !ips.contains_key(&prev)
            {
                ips.insert(prev, k.clone());
                chosen.insert(k, prev);
            }
        }
        for s in wanted
            .iter()
            .filter(|s| s.cluster_ip.is_none() && !s.headless)
        {
            let k = key(&s.namespace, &s.name);
            if chosen.contains_key(&k) {
                continue;
            }
            match (1..self.cidr.size() - 1)
                .filter_map(|o| self.cidr.nth(o))
                .find(|a| !ips.contains_key(a))
            {
                Some(a) => {
                    ips.insert(a, k.clone());
                    chosen.insert(k, a);
                }
                None => {
                    errors.insert(k, format!("service CIDR {} is full", self.cidr));
                }
            }
        }

        // node ports: requested first, then previous, then lowest free
        let (lo, hi) = self.node_port_range;
        let mut taken: BTreeSet<(u16, Protocol)> = BTreeSet::new();
        let mut nps: BTreeMap<(String, u16, Protocol), u16> = BTreeMap::new();
        for s in wanted.iter().filter(|s| s.node_port_type && !s.headless) {
            let k = key(&s.namespace, &s.name);
            for p in &s.ports {
                if let Some(np) = p.node_port {
                    if !(lo..=hi).contains(&np) {
                        errors
                            .entry(k.clone())
                            .or_insert(format!("nodePort {np} is outside the range {lo}-{hi}"));
                    } else if !taken.insert((np, p.protocol)) {
                        errors.entry(k.clone()).or_insert(format!(
                            "nodePort {np}/{:?} is already allocated",
                            p.protocol
                        ));
                    } else {
                        nps.insert((k.clone(), p.port, p.protocol), np);
                    }
                }
            }
        }
        for s in wanted.iter().filter(|s| s.node_port_type && !s.headless) {
            let k = key(&s.namespace, &s.name);
            let prev = self.programmed.get(&k);
            for p in s.ports.iter().filter(|p| p.node_port.is_none()) {
                let old = prev.and_then(|pr| {
                    pr.node_ports
                        .iter()
                        .find(|(sp, pp, _)| *sp == p.port && *pp == p.protocol)
                });
                if let Some(&(_, _, np)) = old
                    && (lo..=hi).contains(&np)
                    && taken.insert((np, p.protocol))
                {
                    nps.insert((k.clone(), p.port, p.protocol), np);
                }
            }
        }
        for s in wanted.iter().filter(|s| s.node_port_type && !s.headless) {
            let k = key(&s.namespace, &s.name);
            for p in s.ports.iter().filter(|p| p.node_port.is_none()) {
                if nps.contains_key(&(k.clone(), p.port, p.protocol)) {
                    continue;
                }
                match (lo..=hi).find(|n| !taken.contains(&(*n, p.protocol))) {
                    Some(n) => {
                        taken.insert((n, p.protocol));
                        nps.insert((k.clone(), p.port, p.protocol), n);
                    }
                    None => {
                        errors
                            .entry(k.clone())
                            .or_insert(format!("no free nodePort in {lo}-{hi}"));
                    }
                }
            }
        }

        let mut next = BTreeMap::new();
        let mut assigned = Vec::new();
        for s in wanted {
            let k = key(&s.namespace, &s.name);
            let node_ports: Vec<(u16, Protocol, u16)> = s
                .ports
                .iter()
                .filter_map(|p| {
                    nps.get(&(k.clone(), p.port, p.protocol))
                        .map(|n| (p.port, p.protocol, *n))
                })
                .collect();
            let error = errors.get(&k).cloned();
            let cluster_ip = if s.headless {
                Some(Ipv4Addr::UNSPECIFIED)
            } else {
                chosen.get(&k).copied()
            };
            if let (Some(ip), None) = (cluster_ip, &error) {
                next.insert(
                    k.clone(),
                    ProgrammedService {
                        entry: s.clone(),
                        cluster_ip: ip,
                        node_ports: node_ports.clone(),
                    },
                );
            }
            assigned.push(ServiceAssigned {
                namespace: s.namespace.clone(),
                name: s.name.clone(),
                // Not programmed when in error; 0.0.0.0 then means "none".
                cluster_ip: if error.is_none() {
                    cluster_ip.unwrap_or(Ipv4Addr::UNSPECIFIED)
                } else {
                    Ipv4Addr::UNSPECIFIED
                },
                node_ports: if error.is_none() {
                    node_ports.iter().map(|(p, _, n)| (*p, *n)).collect()
                } else {
                    Vec::new()
                },
                error,
            });
        }
        (next, assigned)
    }
}

/// nft rules of one Service: DNAT spread over ready endpoints, or a fast reject.
pub fn rules(svc: &ProgrammedService) -> Vec<(&'static str, Vec<S>)> {
    let mut out = Vec::new();
    if svc.entry.headless {
        return out;
    }
    let eps = &svc.entry.endpoints;
    for p in &svc.entry.ports {
        // LoadBalancer: the service port itself on the host's addresses
        let lb = svc.entry.load_balancer.then_some(p.port);
        let vip = eq(payload("ip", "daddr"), ip(svc.cluster_ip));
        let np = svc
            .node_ports
            .iter()
            .find(|(sp, pp, _)| *sp == p.port && *pp == p.protocol)
            .map(|t| t.2);
        if eps.is_empty() {
            out.push((
                "no_endpoints",
                vec![vip, dport(p.protocol, p.port), reject(p.protocol)],
            ));
            for n in np.into_iter().chain(lb) {
                out.push((
                    "no_endpoints",
                    vec![daddr_local(), dport(p.protocol, n), reject(p.protocol)],
                ));
            }
        } else {
            out.push((
                "services",
                vec![
                    vip,
                    dport(p.protocol, p.port),
                    dnat_spread(eps, p.target_port),
                ],
            ));
            for n in np.into_iter().chain(lb) {
                out.push((
                    "services",
                    vec![
                        daddr_local(),
                        dport(p.protocol, n),
                        dnat_spread(eps, p.target_port),
                    ],
                ));
            }
        }
    }
    out
}

#[cfg(test)]
#[path = "services_tests.rs"]
mod tests;
