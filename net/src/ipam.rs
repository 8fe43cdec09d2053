//! Pod address management.
//!
//! Lifecycle of one address (G18):
//!
//! ```text
//! allocate(pod)  -> persisted to <state>/net/ipam.json BEFORE any interface gets it
//! allocate(pod)  -> same address again (idempotent, also after a restart)
//! release(pod)   -> persisted; the address becomes free, but is handed out again
//!                   only after every other free address (next-fit cursor)
//! ```
//!
//! On-disk format (version 1):
//!
//! ```json
//! { "version": 1, "cidr": "10.44.0.0/16", "last": "10.44.0.7",
//!   "pods": { "<ns>_<name>_<uid>": { "pod": {..PodRef..}, "ip": "10.44.0.7",
//!                                     "host_ports": [..] } } }
//! ```
//!
//! The network address, the gateway (first host, the bridge) and the broadcast
//! address are never handed out. Because the file is written before the
//! address is configured, a crash can at worst leak an address (the pod shows
//! up in `list_pods` and is removed by the reconciler), never hand it out twice.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use berth_contract::{HostPortMapping, PodRef};
use serde::{Deserialize, Serialize};

use crate::cidr::Ipv4Net;
use crate::persist::{self, PersistError};

const VERSION: u32 = 1;
/// Far above what a /16 of pods writes.
const MAX_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("pod CIDR {cidr} has no free address left")]
    Exhausted { cidr: Ipv4Net },
    #[error(
        "persisted IPAM state in {path} is for {found}, but the configured pod CIDR is {configured}"
    )]
    CidrChanged {
        path: PathBuf,
        found: Ipv4Net,
        configured: Ipv4Net,
    },
    #[error("persisted IPAM state in {path} gives {ip} to both {first} and {second}")]
    Duplicate {
        path: PathBuf,
        ip: Ipv4Addr,
        first: String,
        second: String,
    },
    #[error("persist IPAM state")]
    Persist(#[source] PersistError),
}

/// What berth remembers about one pod's network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodAlloc {
    pub pod: PodRef,
    pub ip: Ipv4Addr,
    #[serde(default)]
    pub host_ports: Vec<HostPortMapping>,
}

#[derive(Debug, Serialize, Deserialize)]
struct IpamFile {
    cidr: Ipv4Net,
    last: Option<Ipv4Addr>,
    pods: BTreeMap<String, PodAlloc>,
}

impl berth_state::Versioned for IpamFile {
    const WHAT: &'static str = "IPAM state";
    const CURRENT: u32 = VERSION;
    const MAX_BYTES: u64 = MAX_BYTES;

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

/// Allocations from the pod CIDR, persisted in one file.
#[derive(Debug)]
pub struct Ipam {
    path: PathBuf,
    cidr: Ipv4Net,
    last: Option<Ipv4Addr>,
    pods: BTreeMap<String, PodAlloc>,
    /// The file found at load that could not be read (moved aside).
    quarantined: Option<berth_state::Quarantine>,
}

impl Ipam {
    /// Load `<dir>/ipam.json` (or start empty).
    pub fn load(dir: &Path, cidr: Ipv4Net) -> Result<Self, IpamError> {
        let path = dir.join("ipam.json");
        let empty = |path, quarantined| Self {
            path,
            cidr,
            last: None,
            pods: BTreeMap::new(),
            quarantined,
        };
        let file = match persist::read::<IpamFile>(&path).map_err(IpamError::Persist)? {
            berth_state::Loaded::Missing => return Ok(empty(path, None)),
            berth_state::Loaded::Quarantined(q) => {
                persist::report(&q);
                return Ok(empty(path, Some(q)));
            }
            berth_state::Loaded::Found { value, .. } => value,
        };
        if file.cidr != cidr {
            return Err(IpamError::CidrChanged {
                path,
                found: file.cidr,
                configured: cidr,
            });
        }
        let mut seen: BTreeMap<Ipv4Addr, &String> = BTreeMap::new();
        for (key, a) in &file.pods {
            if let Some(first) = seen.insert(a.ip, key) {
                return Err(IpamError::Duplicate {
                    path,
                    ip: a.ip,
                    first: first.clone(),
                    second: key.clone(),
                });
            }
        }
        Ok(Self {
            path,
            cidr,
            last: file.last,
            pods: file.pods,
            quarantined: None,
        })
    }

    /// The state file found unreadable at load (moved aside), once: the
    /// caller then recovers the allocations from the pods' namespaces
    /// ([`Ipam::adopt`]).
    pub fn take_quarantined(&mut self) -> Option<berth_state::Quarantine> {
        self.quarantined.take()
    }

    /// Record an address found in use on the host (recovery after the state
    /// file was lost). Refused, returning false, if it is not a pod address
    /// of the CIDR or another pod holds it. Persisted.
    pub fn adopt(&mut self, pod: &PodRef, ip: Ipv4Addr) -> Result<bool, IpamError> {
        let usable = self
            .cidr
            .offset(ip)
            .is_some_and(|o| o >= 2 && o <= self.cidr.size() - 2);
        if !usable || self.pods.values().any(|a| a.ip == ip) {
            return Ok(false);
        }
        let key = pod.key();
        let alloc = PodAlloc {
            pod: pod.clone(),
            ip,
            host_ports: Vec::new(),
        };
        let before = self.pods.insert(key.clone(), alloc);
        if let Err(e) = self.save() {
            match before {
                Some(b) => self.pods.insert(key, b),
                None => self.pods.remove(&key),
            };
            return Err(e);
        }
        Ok(true)
    }

    pub fn get(&self, key: &str) -> Option<&PodAlloc> {
        self.pods.get(key)
    }

    pub fn all(&self) -> impl Iterator<Item = &PodAlloc> {
        self.pods.values()
    }

    /// The address of `pod` (allocating and persisting one if it has none) and
    /// its host ports. Persisted before returning.
    pub fn allocate(
        &mut self,
        pod: &PodRef,
        host_ports: &[HostPortMapping],
    ) -> Result<Ipv4Addr, IpamError> {
        let key = pod.key();
        if let Some(a) = self.pods.get_mut(&key) {
            if a.host_ports != host_ports {
                a.host_ports = host_ports.to_vec();
                let ip = a.ip;
                self.save()?;
                return Ok(ip);
            }
            return Ok(a.ip);
        }
        let ip = self
            .next_free()
            .ok_or(IpamError::Exhausted { cidr: self.cidr })?;
        self.pods.insert(
            key,
            PodAlloc {
                pod: pod.clone(),
                ip,
                host_ports: host_ports.to_vec(),
            },
        );
        self.last = Some(ip);
        if let Err(e) = self.save() {
            self.pods.remove(&pod.key());
            return Err(e);
        }
        Ok(ip)
    }

    /// Forget `key`'s address (persisted). Returns what was released.
    pub fn release(&mut self, key: &str) -> Result<Option<PodAlloc>, IpamError> {
        let Some(a) = self.pods.remove(key) else {
            return Ok(None);
        };
        if let Err(e) = self.save() {
            self.pods.insert(key.to_string(), a);
            return Err(e);
        }
        Ok(Some(a))
    }

    /// Next free host address after the cursor, wrapping around once.
    fn next_free(&self) -> Option<Ipv4Addr> {
        let used: std::collections::BTreeSet<Ipv4Addr> = self.pods.values().map(|a| a.ip).collect();
        let first = 2u32; // 0 = network, 1 = gateway
        let last = self.cidr.size() - 2; // size-1 = broadcast
        let start = self
            .last
            .and_then(|l| self.cidr.offset(l))
            .map_or(first, |o| o + 1);
        let start = if (first..=last).contains(&start) {
            start
        } else {
            first
        };
        (start..=last)
            .chain(first..start)
            .filter_map(|o| self.cidr.nth(o))
            .find(|ip| !used.contains(ip))
    }

    fn save(&self) -> Result<(), IpamError> {
        let file = IpamFile {
            cidr: self.cidr,
            last: self.last,
            pods: self.pods.clone(),
        };
        persist::write(&self.path, VERSION, &file).map_err(IpamError::Persist)
    }
}

/// The gateway (bridge) address of a pod CIDR: its first host.
pub fn gateway(cidr: Ipv4Net) -> Ipv4Addr {
    cidr.nth(1).expect("prefix <= 30 has a first host")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(n: &str) -> PodRef {
        PodRef {
            namespace: "default".into(),
            name: n.into(),
            uid: "abc".into(),
        }
    }

    fn cidr() -> Ipv4Net {
        "10.123.0.0/29".parse().unwrap()
    }

    #[test]
    fn skips_network_gateway_broadcast_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::load(dir.path(), cidr()).unwrap();
        let a = ipam.allocate(&pod("a"), &[]).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 123, 0, 2));
        assert_eq!(ipam.allocate(&pod("a"), &[]).unwrap(), a);
        let all: Vec<_> = (0..5)
            .map(|i| ipam.allocate(&pod(&format!("p{i}")), &[]))
            .collect();
        // /29: .2 .. .6 usable = 5 addresses; "a" has one, so 4 more then exhaustion.
        assert_eq!(all.iter().filter(|r| r.is_ok()).count(), 4);
        assert!(matches!(all[4], Err(IpamError::Exhausted { .. })));
        let ips: std::collections::BTreeSet<_> = ipam.all().map(|a| a.ip).collect();
        assert_eq!(ips.len(), 5);
        assert!(!ips.contains(&Ipv4Addr::new(10, 123, 0, 7)));
        assert!(!ips.contains(&Ipv4Addr::new(10, 123, 0, 1)));
    }

    #[test]
    fn released_address_is_reused_last_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::load(dir.path(), cidr()).unwrap();
        let a = ipam.allocate(&pod("a"), &[]).unwrap();
        let b = ipam.allocate(&pod("b"), &[]).unwrap();
        ipam.release(&pod("a").key()).unwrap();
        let c = ipam.allocate(&pod("c"), &[]).unwrap();
        assert_ne!(
            c, a,
            "next-fit must not hand the just-released address out first"
        );
        assert_ne!(c, b);
        // A new instance (agent restart or crash) sees exactly the same thing.
        let mut again = Ipam::load(dir.path(), cidr()).unwrap();
        assert_eq!(again.get(&pod("b").key()).unwrap().ip, b);
        assert_eq!(again.get(&pod("c").key()).unwrap().ip, c);
        assert!(again.get(&pod("a").key()).is_none());
        let d = again.allocate(&pod("d"), &[]).unwrap();
        assert!(d != b && d != c);
    }

    #[test]
    fn crash_after_persist_never_hands_out_twice() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let mut ipam = Ipam::load(dir.path(), cidr()).unwrap();
            ipam.allocate(&pod("a"), &[]).unwrap()
            // dropped without any cleanup: simulated kill -9 after persisting
        };
        // a leftover temp file from a crash in the middle of a write is ignored
        std::fs::write(dir.path().join("ipam.json.tmp"), b"{garbage").unwrap();
        let mut ipam = Ipam::load(dir.path(), cidr()).unwrap();
        let second = ipam.allocate(&pod("b"), &[]).unwrap();
        assert_ne!(first, second);
    }

    #[test]
    fn garbage_is_moved_aside_and_addresses_are_adopted_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ipam.json");
        std::fs::write(&path, b"{\"version\": 1, \"cidr\": ").unwrap();
        let mut ipam = Ipam::load(dir.path(), cidr()).unwrap();
        let q = ipam.take_quarantined().expect("quarantined");
        assert_eq!(
            std::fs::read(&q.moved_to).unwrap(),
            b"{\"version\": 1, \"cidr\": "
        );
        assert!(ipam.take_quarantined().is_none(), "reported once");
        // recovery: the address a running pod has is taken back, once
        let ip: Ipv4Addr = "10.123.0.5".parse().unwrap();
        assert!(ipam.adopt(&pod("a"), ip).unwrap());
        assert!(!ipam.adopt(&pod("b"), ip).unwrap(), "taken");
        assert!(
            !ipam.adopt(&pod("c"), gateway(cidr())).unwrap(),
            "the gateway"
        );
        assert!(
            !ipam.adopt(&pod("c"), "10.9.9.9".parse().unwrap()).unwrap(),
            "outside"
        );
        let again = Ipam::load(dir.path(), cidr()).unwrap();
        assert_eq!(again.get(&pod("a").key()).map(|a| a.ip), Some(ip));
        let mut again = again;
        assert_ne!(again.allocate(&pod("d"), &[]).unwrap(), ip);
    }

    #[test]
    fn rejects_changed_cidr_duplicates_and_unknown_version() {
        let dir = tempfile::tempdir().unwrap();
        Ipam::load(dir.path(), cidr())
            .unwrap()
            .allocate(&pod("a"), &[])
            .unwrap();
        let other: Ipv4Net = "10.123.8.0/29".parse().unwrap();
        assert!(matches!(
            Ipam::load(dir.path(), other),
            Err(IpamError::CidrChanged { .. })
        ));
        let path = dir.path().join("ipam.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        doc["version"] = 9.into();
        std::fs::write(&path, doc.to_string()).unwrap();
        // a file of a newer berth is moved aside, never read as empty and overwritten
        let mut ipam = Ipam::load(dir.path(), cidr()).unwrap();
        let q = ipam.take_quarantined().expect("quarantined");
        assert!(!path.exists());
        assert_eq!(
            std::fs::read_to_string(&q.moved_to).unwrap(),
            doc.to_string()
        );
        assert_eq!(ipam.all().count(), 0);
        let dup = serde_json::json!({"version":1,"cidr":"10.123.0.0/29","last":null,"pods":{
            "x": {"pod":{"namespace":"d","name":"x","uid":"1"},"ip":"10.123.0.2"},
            "y": {"pod":{"namespace":"d","name":"y","uid":"1"},"ip":"10.123.0.2"}}});
        std::fs::write(&path, dup.to_string()).unwrap();
        assert!(matches!(
            Ipam::load(dir.path(), cidr()),
            Err(IpamError::Duplicate { .. })
        ));
    }
}
