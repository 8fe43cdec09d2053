//! [`HostNetwork`]: the real [`Network`] implementation, wiring the modules.
//!
//! # Guarantees
//! * `new` never deletes the bridge, veths or netns of running pods: it adopts
//!   them and re-renders the nft table from persisted state in one atomic
//!   transaction, so established connections are not disturbed.
//! * An address is persisted before any interface is configured with it.
//! * `ensure_pod` and `remove_pod` are idempotent; a half-done `ensure_pod`
//!   (crash in the middle) is finished by the next call.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use berth_contract::{Network, PodNetRequest, PodNetwork, PodRef, ServiceAssigned, ServiceEntry};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tracing::{debug, info, warn};

use crate::cidr::Ipv4Net;
use crate::dns::{self, DnsServer, DnsState, Names};
use crate::error::NetError;
use crate::ipam::{self, Ipam};
use crate::nft::{self, RenderInput};
use crate::persist;
use crate::services::Services;
use crate::sysctl::Sysctl;
use crate::{bridge, netlink, netns, ports, veth};

/// Configuration of one berth network instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Names everything: bridge `<instance>0`, nft table `inet <instance>`.
    pub instance: String,
    pub pod_cidr: Ipv4Net,
    pub service_cidr: Ipv4Net,
    /// Netns bind mounts go under `<run_dir>/netns/`.
    pub run_dir: PathBuf,
    /// IPAM and Service allocations go under `<state_dir>/net/`.
    pub state_dir: PathBuf,
    /// Inclusive NodePort range.
    pub node_port_range: (u16, u16),
    /// Run the embedded DNS responder on the bridge address.
    pub dns: bool,
    /// Port of the DNS responder (53; pods' resolv.conf cannot name another).
    pub dns_port: u16,
    pub cluster_domain: String,
    /// Where non-cluster names are forwarded; `None` = nameservers of `resolv_conf`.
    pub dns_upstreams: Option<Vec<SocketAddr>>,
    pub resolv_conf: PathBuf,
    /// `/proc/sys` (a fixture dir in tests).
    pub sysctl_root: PathBuf,
}

impl NetConfig {
    /// The defaults of DESIGN.md for `instance`.
    pub fn new(instance: &str) -> Self {
        Self {
            instance: instance.to_string(),
            pod_cidr: "10.44.0.0/16".parse().expect("valid"),
            service_cidr: "10.45.0.0/16".parse().expect("valid"),
            run_dir: PathBuf::from(format!("/run/{instance}")),
            state_dir: PathBuf::from(format!("/var/lib/{instance}")),
            node_port_range: (30000, 32767),
            dns: true,
            dns_port: 53,
            cluster_domain: "cluster.local".into(),
            dns_upstreams: None,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            sysctl_root: PathBuf::from("/proc/sys"),
        }
    }

    fn validate(&self) -> Result<(), NetError> {
        let n = &self.instance;
        if n.is_empty()
            || n.len() > 14
            || !n
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(NetError::InstanceName { name: n.clone() });
        }
        if self.pod_cidr.overlaps(&self.service_cidr) {
            return Err(NetError::CidrOverlap {
                pod: self.pod_cidr.to_string(),
                service: self.service_cidr.to_string(),
            });
        }
        let (lo, hi) = self.node_port_range;
        if lo > hi {
            return Err(NetError::NodePortRange { lo, hi });
        }
        Ok(())
    }

    pub fn bridge(&self) -> String {
        format!("{}0", self.instance)
    }

    fn netns_dir(&self) -> PathBuf {
        self.run_dir.join("netns")
    }

    fn net_state_dir(&self) -> PathBuf {
        self.state_dir.join("net")
    }
}

/// Host facts recorded once, so an operator can restore them.
#[derive(Debug, Serialize, Deserialize)]
struct HostFile {
    /// `net.ipv4.ip_forward` before the first berth start.
    ip_forward_before: String,
}

impl berth_state::Versioned for HostFile {
    const WHAT: &'static str = "host settings";
    const CURRENT: u32 = 1;
    const MAX_BYTES: u64 = 64 << 10;

    fn decode(version: u32, doc: serde_json::Value) -> Result<Self, berth_state::DecodeError> {
        match version {
            1 => serde_json::from_value(doc)
                .map_err(|source| berth_state::DecodeError::Invalid { version, source }),
            found => Err(berth_state::DecodeError::UnknownVersion { found, newest: 1 }),
        }
    }
}

struct State {
    ipam: Ipam,
    services: Services,
}

/// berth's network on this host.
pub struct HostNetwork {
    cfg: NetConfig,
    handle: rtnetlink::Handle,
    bridge_index: u32,
    gateway: Ipv4Addr,
    mtu: u32,
    host_ip: Option<Ipv4Addr>,
    state: Mutex<State>,
    /// Held from rendering an nft batch (under `state`) until `nft` applied
    /// it, so batches reach the kernel in the order they were rendered even
    /// when `state` is released during the apply (lock order: `state`, then
    /// this).
    nft_order: Mutex<()>,
    dns_state: Option<Arc<DnsState>>,
    _dns: Option<DnsServer>,
}

impl HostNetwork {
    /// Create or adopt the instance's bridge, sysctls, nft table and DNS
    /// responder, and adopt pods from persisted state.
    ///
    /// # Errors
    /// Invalid configuration, state written for other CIDRs, missing `nft`
    /// binary, netlink or sysctl failures, port 53 on the bridge address taken.
    pub async fn new(cfg: NetConfig) -> Result<Self, NetError> {
        cfg.validate()?;
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetError::Netlink)?;
        tokio::spawn(conn);
        let uplink = netlink::default_uplink(&handle)
            .await
            .map_err(NetError::Uplink)?;
        let mtu = uplink.as_ref().map_or(1500, |u| u.mtu);
        let host_ip = uplink.as_ref().and_then(|u| u.address);
        let sd = cfg.net_state_dir();
        let mut ipam = Ipam::load(&sd, cfg.pod_cidr)?;
        if ipam.take_quarantined().is_some() {
            recover_addresses(&cfg, &mut ipam).await;
        }
        let services = Services::load(&sd, cfg.service_cidr, cfg.node_port_range)?;
        let gateway = ipam::gateway(cfg.pod_cidr);
        let bridge = cfg.bridge();
        let bridge_index =
            bridge::ensure(&handle, &bridge, gateway, cfg.pod_cidr.prefix_len(), mtu).await?;
        bridge::route_services(
            &handle,
            bridge_index,
            cfg.service_cidr.network(),
            cfg.service_cidr.prefix_len(),
            gateway,
        )
        .await?;

        let sysctl = Sysctl::new(&cfg.sysctl_root);
        let prev = sysctl.set("net.ipv4.ip_forward", "1")?;
        let host_file = sd.join("host.json");
        let recorded = match persist::read::<HostFile>(&host_file)? {
            berth_state::Loaded::Found { .. } => true,
            berth_state::Loaded::Missing => false,
            berth_state::Loaded::Quarantined(q) => {
                persist::report(&q);
                false
            }
        };
        if !recorded {
            let body = HostFile {
                ip_forward_before: prev.clone(),
            };
            persist::write(&host_file, 1, &body)?;
        }
        if prev != "1" {
            info!(previous = %prev, "set net.ipv4.ip_forward=1 (previous value recorded in {})", host_file.display());
        }
        sysctl.set(&format!("net.ipv4.conf.{bridge}.route_localnet"), "1")?;

        let state = State { ipam, services };
        for a in state.ipam.all() {
            let p = cfg.netns_dir().join(a.pod.key());
            if !netns::is_netns(&p) {
                warn!(pod = %a.pod.key(), ip = %a.ip, "adopted address has no netns; listed for removal");
            }
        }
        apply_nft(&cfg, &state).await?;

        let (dns_state, dns) = if cfg.dns {
            let upstreams = match &cfg.dns_upstreams {
                Some(u) => u.clone(),
                None => dns::upstreams_from(&cfg.resolv_conf)?,
            };
            let st = Arc::new(DnsState {
                names: RwLock::new(Names::new(&cfg.cluster_domain)),
                upstreams,
            });
            update_names(&st, &state);
            let server =
                dns::start(SocketAddr::new(gateway.into(), cfg.dns_port), st.clone()).await?;
            (Some(st), Some(server))
        } else {
            (None, None)
        };
        info!(instance = %cfg.instance, %bridge, %gateway, mtu, pods = state.ipam.all().count(), "network ready");
        Ok(Self {
            cfg,
            handle,
            bridge_index,
            gateway,
            mtu,
            host_ip,
            state: Mutex::new(state),
            nft_order: Mutex::new(()),
            dns_state,
            _dns: dns,
        })
    }

    pub fn config(&self) -> &NetConfig {
        &self.cfg
    }

    /// The bridge address (pods' gateway and DNS server).
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    pub fn mtu(&self) -> u32 {
        self.mtu
    }

    /// The host's primary address (of the default-route interface), when it has one.
    pub fn host_ip(&self) -> Option<Ipv4Addr> {
        self.host_ip
    }

    /// Remove every pod's netns and veth, the bridge, the nft table and the
    /// state directory of this instance (tests, uninstall).
    pub async fn teardown_instance(&self) -> Result<(), NetError> {
        let st = self.state.lock().await;
        for a in st.ipam.all() {
            veth::delete(
                &self.handle,
                &veth::host_ifname(&self.cfg.instance, &a.pod.key()),
            )
            .await?;
        }
        drop(st);
        cleanup_instance(&self.cfg.instance, &self.cfg.run_dir).await?;
        let sd = self.cfg.net_state_dir();
        match std::fs::remove_dir_all(&sd) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(NetError::RemoveState { path: sd, source }),
        }
    }

    async fn ensure_locked(
        &self,
        st: &mut State,
        req: &PodNetRequest,
    ) -> Result<PodNetwork, NetError> {
        let pod = &req.pod;
        let key = pod.key();
        if let Some((m, holder)) = ports::conflict(pod, &req.host_ports, st.ipam.all()) {
            return Err(NetError::HostPortConflict {
                pod: key,
                holder: holder.key(),
                host_port: m.host_port,
                protocol: m.protocol,
            });
        }
        let ports_before = st.ipam.get(&key).map(|a| a.host_ports.clone());
        // persisted before any interface uses it
        let ip = st.ipam.allocate(pod, &req.host_ports)?;
        let path = self.cfg.netns_dir().join(&key);
        let fresh = !netns::is_netns(&path);
        let ns = netns::handle(&path, fresh).await?;
        let host_if = veth::host_ifname(&self.cfg.instance, &key);
        if fresh {
            // a veth left from an older namespace of the same key points nowhere useful
            veth::delete(&self.handle, &host_if).await?;
        }
        if !veth::exists(&self.handle, &host_if).await? {
            veth::create(&self.handle, &host_if, &path, self.bridge_index, self.mtu).await?;
            veth::set_hairpin(&self.handle, &host_if).await?;
        }
        veth::configure_inside(&ns, ip, self.cfg.pod_cidr.prefix_len(), self.gateway).await?;
        if ports_before.as_deref() != Some(&req.host_ports[..])
            && !(ports_before.is_none() && req.host_ports.is_empty())
        {
            self.apply_nft_locked(st).await?;
        }
        if let Some(d) = &self.dns_state {
            update_names(d, st);
        }
        debug!(pod = %key, %ip, %host_if, "pod network ready");
        Ok(PodNetwork {
            netns: Some(path),
            ip: Some(ip),
            dns_servers: if self.cfg.dns {
                vec![self.gateway]
            } else {
                Vec::new()
            },
            dns_search: if self.cfg.dns {
                self.search(&pod.namespace)
            } else {
                Vec::new()
            },
        })
    }

    fn search(&self, ns: &str) -> Vec<String> {
        let d = &self.cfg.cluster_domain;
        vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()]
    }
}

async fn apply_nft(cfg: &NetConfig, st: &State) -> Result<(), NetError> {
    let bridge = cfg.bridge();
    nft::apply(&cfg.instance, &nft::render(&render_input(cfg, &bridge, st))).await?;
    Ok(())
}

fn render_input<'a>(cfg: &'a NetConfig, bridge: &'a str, st: &'a State) -> RenderInput<'a> {
    RenderInput {
        table: &cfg.instance,
        bridge,
        pod_cidr: cfg.pod_cidr,
        pods: st.ipam.all().collect(),
        services: st.services.programmed().collect(),
    }
}

impl HostNetwork {
    /// Apply the table for `st` (whose lock the caller holds), after any
    /// batch rendered before it.
    async fn apply_nft_locked(&self, st: &State) -> Result<(), NetError> {
        let _order = self.nft_order.lock().await;
        apply_nft(&self.cfg, st).await
    }
}

fn update_names(d: &DnsState, st: &State) {
    let mut n = d.names.write().expect("dns names lock");
    n.set_service_names(st.services.programmed().map(|s| {
        dns::ServiceNames {
            namespace: s.entry.namespace.clone(),
            name: s.entry.name.clone(),
            ips: if s.entry.headless {
                s.entry.endpoints.clone()
            } else {
                vec![s.cluster_ip]
            },
            headless: s.entry.headless,
            ports: s
                .entry
                .ports
                .iter()
                .filter_map(|p| {
                    let proto = match p.protocol {
                        berth_contract::Protocol::Tcp => "tcp",
                        berth_contract::Protocol::Udp => "udp",
                    };
                    Some((p.name.clone().filter(|n| !n.is_empty())?, proto, p.port))
                })
                .collect(),
            hosts: s.entry.endpoint_hosts.clone(),
        }
    }));
    n.set_pods(st.ipam.all().map(|a| (a.ip, a.pod.namespace.clone())));
}

/// Remove an instance's netns mounts, veths, bridge and nft table by name,
/// without any state (test harness cleanup). Missing pieces are fine.
pub async fn cleanup_instance(instance: &str, run_dir: &Path) -> Result<(), NetError> {
    let (conn, handle, _) = rtnetlink::new_connection().map_err(NetError::Netlink)?;
    let task = tokio::spawn(conn);
    let dir = run_dir.join("netns");
    for key in netns::list(&dir)? {
        veth::delete(&handle, &veth::host_ifname(instance, &key)).await?;
        netns::remove(&dir.join(&key))?;
    }
    bridge::delete(&handle, &format!("{instance}0")).await?;
    nft::delete_table(instance).await?;
    drop(handle);
    task.abort();
    Ok(())
}

/// After the IPAM file was found unreadable (and moved aside): take back
/// the address of every pod whose network namespace still exists, from its
/// `eth0`, so a running pod keeps its address and none is handed out twice.
/// A namespace whose address cannot be read is left for the reconciler to
/// list and remove (see `list_pods`).
async fn recover_addresses(cfg: &NetConfig, ipam: &mut Ipam) {
    let dir = cfg.netns_dir();
    let keys = match netns::list(&dir) {
        Ok(k) => k,
        Err(e) => {
            warn!(err = %berth_contract::error_chain(&e), "listing pod namespaces to recover addresses");
            return;
        }
    };
    for key in keys {
        let Some(pod) = parse_key(&key) else { continue };
        let path = dir.join(&key);
        if !netns::is_netns(&path) {
            continue;
        }
        let ip = match netns::handle(&path, false).await {
            Ok(h) => netlink::first_ipv4(&h, "eth0").await.ok().flatten(),
            Err(_) => None,
        };
        match ip.map(|ip| (ip, ipam.adopt(&pod, ip))) {
            Some((ip, Ok(true))) => info!(pod = %key, %ip, "recovered pod address"),
            Some((ip, Ok(false))) => {
                warn!(pod = %key, %ip, "pod address outside the CIDR or taken; not recovered")
            }
            Some((_, Err(e))) => {
                warn!(pod = %key, err = %berth_contract::error_chain(&e), "recording a recovered address")
            }
            None => warn!(pod = %key, "no address found in the pod's namespace"),
        }
    }
}

fn parse_key(key: &str) -> Option<PodRef> {
    let mut it = key.split('_');
    let (ns, name, uid) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    Some(PodRef {
        namespace: ns.into(),
        name: name.into(),
        uid: uid.into(),
    })
}

impl Network for HostNetwork {
    type Error = NetError;

    async fn ensure_pod(&self, req: &PodNetRequest) -> Result<PodNetwork, NetError> {
        if req.host_network {
            return Ok(PodNetwork {
                netns: None,
                ip: self.host_ip,
                dns_servers: Vec::new(),
                dns_search: Vec::new(),
            });
        }
        let mut st = self.state.lock().await;
        self.ensure_locked(&mut st, req)
            .await
            .map_err(|e| NetError::Pod {
                pod: req.pod.clone(),
                source: Box::new(e),
            })
    }

    async fn remove_pod(&self, pod: &PodRef) -> Result<(), NetError> {
        let key = pod.key();
        let mut st = self.state.lock().await;
        let path = self.cfg.netns_dir().join(&key);
        if !netns::is_netns(&path) {
            // no namespace holds the pair any more: a veth left by a failed
            // setup is deleted here
            veth::delete(&self.handle, &veth::host_ifname(&self.cfg.instance, &key)).await?;
        }
        // Unmounting the last reference destroys the namespace, and with it
        // eth0 and its host peer: the kernel's netns cleanup takes many pods'
        // veths in one batch (one RCU grace period), where a delete per veth
        // waits for a grace period each under RTNL (~33 ms here, serial).
        // A re-created pod of the same key deletes a leftover pair first
        // (ensure_locked, fresh namespace).
        netns::remove(&path)?;
        if let Some(a) = st.ipam.release(&key)?
            && !a.host_ports.is_empty()
        {
            self.apply_nft_locked(&st).await?;
        }
        if let Some(d) = &self.dns_state {
            update_names(d, &st);
        }
        Ok(())
    }

    async fn list_pods(&self) -> Result<Vec<PodRef>, NetError> {
        let st = self.state.lock().await;
        let mut out: Vec<PodRef> = st.ipam.all().map(|a| a.pod.clone()).collect();
        for key in netns::list(&self.cfg.netns_dir())? {
            match parse_key(&key) {
                Some(p) if !out.contains(&p) => out.push(p),
                Some(_) => {}
                None => warn!(entry = %key, "ignoring foreign file in netns directory"),
            }
        }
        out.sort();
        Ok(out)
    }

    async fn sync_services(
        &self,
        services: &[ServiceEntry],
    ) -> Result<Vec<ServiceAssigned>, NetError> {
        let mut st = self.state.lock().await;
        let assigned = st.services.sync(services)?;
        // rendered under the state lock, applied under the order lock only:
        // a pod's set-up (netns, veth) goes on while `nft` runs
        let bridge = self.cfg.bridge();
        let batch = nft::render(&render_input(&self.cfg, &bridge, &st));
        let order = self.nft_order.lock().await;
        if let Some(d) = &self.dns_state {
            update_names(d, &st);
        }
        drop(st);
        nft::apply(&self.cfg.instance, &batch).await?;
        drop(order);
        Ok(assigned)
    }
}
