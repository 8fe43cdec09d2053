//! Per-pod veth pairs: host end on the bridge, peer `eth0` inside the pod netns.
//!
//! The pair is created in one request with the peer already placed in the
//! pod's namespace under its final name (`IFLA_NET_NS_FD` in the peer info),
//! so there is no temporary name that could collide and no window where the
//! peer sits in the host namespace.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth};
use rtnetlink::{
    Handle, LinkBridgePort, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use sha2::{Digest, Sha256};

use crate::netlink::{is_errno, link_index};

#[derive(Debug, thiserror::Error)]
pub enum VethError {
    #[error("look up link {name}")]
    Lookup {
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("open netns {path} to place the veth peer")]
    OpenNetns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("create veth {name} with peer eth0 in {netns}")]
    Create {
        name: String,
        netns: PathBuf,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("delete veth {name}")]
    Delete {
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("set hairpin mode on bridge port {name}")]
    Hairpin {
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("host end {name} vanished")]
    Vanished { name: String },
    #[error("bring up {name} inside the pod netns")]
    PodLinkUp {
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("link {name} missing inside the pod netns")]
    PodLinkMissing { name: String },
    #[error("add address {addr}/{prefix} to eth0 inside the pod netns")]
    PodAddress {
        addr: Ipv4Addr,
        prefix: u8,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("add default route via {gateway} inside the pod netns")]
    PodRoute {
        gateway: Ipv4Addr,
        #[source]
        source: rtnetlink::Error,
    },
}

/// Host-side interface name: `<first 2 chars of instance>v<11 hex of sha256(instance/key)>`
/// (at most 14 bytes, under IFNAMSIZ-1 = 15).
pub fn host_ifname(instance: &str, pod_key: &str) -> String {
    let mut h = Sha256::new();
    h.update(instance.as_bytes());
    h.update(b"/");
    h.update(pod_key.as_bytes());
    let hex = hex::encode(h.finalize());
    let prefix: String = instance.chars().take(2).collect();
    format!("{prefix}v{}", &hex[..11])
}

/// Create the pair (host end `name` on `bridge`, up; peer `eth0` in `netns`).
pub async fn create(
    handle: &Handle,
    name: &str,
    netns: &Path,
    bridge: u32,
    mtu: u32,
) -> Result<(), VethError> {
    let ns = std::fs::File::open(netns).map_err(|source| VethError::OpenNetns {
        path: netns.to_path_buf(),
        source,
    })?;
    let peer = LinkMessageBuilder::<LinkUnspec>::new()
        .name("eth0")
        .mtu(mtu)
        .setns_by_fd(ns.as_raw_fd())
        .build();
    let msg = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(name.to_string())
        .mtu(mtu)
        .controller(bridge)
        .up()
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .build();
    let r = handle.link().add(msg).execute().await;
    drop(ns);
    r.map_err(|source| VethError::Create {
        name: name.to_string(),
        netns: netns.to_path_buf(),
        source,
    })
}

/// Hairpin mode on the host end's bridge port: with `br_netfilter` loaded
/// (Docker/podman load it; `bridge-nf-call-iptables=1`), a pod reaching itself
/// through a VIP or hostPort is DNATed inside the bridge and sent back out of
/// the port it came in on, which the bridge only allows in hairpin mode.
pub async fn set_hairpin(handle: &Handle, name: &str) -> Result<(), VethError> {
    let index = link_index(handle, name)
        .await
        .map_err(|source| VethError::Lookup {
            name: name.to_string(),
            source,
        })?
        .ok_or_else(|| VethError::Vanished {
            name: name.to_string(),
        })?;
    handle
        .link()
        .set_port(LinkBridgePort::new(index).hairpin(true).build())
        .execute()
        .await
        .map_err(|source| VethError::Hairpin {
            name: name.to_string(),
            source,
        })
}

/// Delete the host end (the peer goes with it); missing is fine.
pub async fn delete(handle: &Handle, name: &str) -> Result<(), VethError> {
    let Some(index) = link_index(handle, name)
        .await
        .map_err(|source| VethError::Lookup {
            name: name.to_string(),
            source,
        })?
    else {
        return Ok(());
    };
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
        Err(source) => Err(VethError::Delete {
            name: name.to_string(),
            source,
        }),
    }
}

/// Inside the pod (`ns` is a handle bound to its netns): lo up, eth0 address and
/// up, default route via the bridge. Every step is idempotent.
pub async fn configure_inside(
    ns: &Handle,
    addr: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<(), VethError> {
    for name in ["lo", "eth0"] {
        let idx = link_index(ns, name)
            .await
            .map_err(|source| VethError::Lookup {
                name: name.to_string(),
                source,
            })?
            .ok_or_else(|| VethError::PodLinkMissing {
                name: name.to_string(),
            })?;
        if name == "eth0" {
            ns.address()
                .add(idx, IpAddr::V4(addr), prefix)
                .replace()
                .execute()
                .await
                .map_err(|source| VethError::PodAddress {
                    addr,
                    prefix,
                    source,
                })?;
        }
        ns.link()
            .set(LinkUnspec::new_with_index(idx).up().build())
            .execute()
            .await
            .map_err(|source| VethError::PodLinkUp {
                name: name.to_string(),
                source,
            })?;
    }
    let route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .build();
    match ns.route().add(route).replace().execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
        Err(source) => Err(VethError::PodRoute { gateway, source }),
    }
}

/// True if the host end exists.
pub async fn exists(handle: &Handle, name: &str) -> Result<bool, VethError> {
    link_index(handle, name)
        .await
        .map(|i| i.is_some())
        .map_err(|source| VethError::Lookup {
            name: name.to_string(),
            source,
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_ifname_fits_and_is_stable() {
        let a = super::host_ifname("btnet1", "default_web_0123abcd");
        assert_eq!(a, super::host_ifname("btnet1", "default_web_0123abcd"));
        assert_ne!(a, super::host_ifname("btnet2", "default_web_0123abcd"));
        assert!(a.len() <= 15 && a.starts_with("btv"), "{a}");
    }
}
