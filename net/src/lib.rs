//! berth's pod network (issue 7): a Linux bridge `<instance>0`, one network
//! namespace and veth pair per pod, IPAM from the pod CIDR, and one nftables
//! table `inet <instance>` holding NAT (masquerade, hostPorts), Service
//! virtual IPs and NodePorts; plus an embedded DNS responder for Service names.
//!
//! What it deliberately does not do: IPv6, NetworkPolicy, touching any nft
//! table, interface or route it did not create (the one global knob it sets is
//! `net.ipv4.ip_forward=1`, like Docker; the previous value is recorded in
//! `<state>/net/host.json` and not restored, because other instances may rely on it).
//!
//! Entry point: [`HostNetwork`], which implements
//! [`berth_contract::Network`].

mod bridge;
mod cidr;
mod dns;
mod error;
mod host;
mod ipam;
mod libnft;
pub use libnft::prepare as prepare_nft;
mod netlink;
mod netns;
mod nft;
mod persist;
mod ports;
mod services;
mod sysctl;
mod veth;

pub use cidr::{CidrError, Ipv4Net};
pub use error::NetError;
pub use host::{HostNetwork, NetConfig, cleanup_instance};
pub use veth::host_ifname;
