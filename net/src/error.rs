//! The crate error and its classification (G3, G4).

use berth_contract::{Classify, ErrorKind, PodRef, Protocol};

use crate::bridge::BridgeError;
use crate::cidr::CidrError;
use crate::dns::DnsError;
use crate::ipam::IpamError;
use crate::netlink::errno;
use crate::netns::NetnsError;
use crate::nft::NftError;
use crate::persist::PersistError;
use crate::services::ServiceError;
use crate::sysctl::SysctlError;
use crate::veth::VethError;

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(
        "instance name `{name}` must be 1-14 characters of a-z, 0-9 and `-` (the bridge is `<instance>0`)"
    )]
    InstanceName { name: String },
    #[error("pod CIDR {pod} and service CIDR {service} overlap")]
    CidrOverlap { pod: String, service: String },
    #[error("node port range {lo}-{hi} is empty")]
    NodePortRange { lo: u16, hi: u16 },
    #[error("invalid CIDR")]
    Cidr(#[from] CidrError),
    #[error("open rtnetlink connection")]
    Netlink(#[source] std::io::Error),
    #[error("find the host's default route interface")]
    Uplink(#[source] rtnetlink::Error),
    #[error(
        "hostPort {host_port}/{protocol:?} wanted by pod {pod} is already used by pod {holder}"
    )]
    HostPortConflict {
        pod: String,
        holder: String,
        host_port: u16,
        protocol: Protocol,
    },
    #[error("set up network of pod {}", pod.key())]
    Pod {
        pod: PodRef,
        #[source]
        source: Box<NetError>,
    },
    #[error(transparent)]
    Bridge(#[from] BridgeError),
    #[error(transparent)]
    Veth(#[from] VethError),
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Services(#[from] ServiceError),
    #[error(transparent)]
    Nft(#[from] NftError),
    #[error(transparent)]
    Dns(#[from] DnsError),
    #[error(transparent)]
    Sysctl(#[from] SysctlError),
    #[error(transparent)]
    Persist(#[from] PersistError),
    #[error("remove state directory {path}")]
    RemoveState {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn netlink_kind(e: &rtnetlink::Error) -> ErrorKind {
    match errno(e) {
        Some(libc::EBUSY | libc::EAGAIN | libc::ENOBUFS | libc::EINTR) => ErrorKind::Transient,
        Some(libc::EPERM | libc::EACCES | libc::EOPNOTSUPP) => ErrorKind::Unsupported,
        Some(libc::EEXIST) => ErrorKind::AlreadyExists,
        _ => ErrorKind::Internal,
    }
}

impl Classify for NetError {
    fn kind(&self) -> ErrorKind {
        use NetError::*;
        match self {
            InstanceName { .. } | CidrOverlap { .. } | NodePortRange { .. } | Cidr(_) => {
                ErrorKind::Invalid
            }
            HostPortConflict { .. } => ErrorKind::Invalid,
            Netlink(_) => ErrorKind::Unsupported,
            Uplink(e) => netlink_kind(e),
            Pod { source, .. } => source.kind(),
            Bridge(e) => match e {
                BridgeError::Lookup { source, .. }
                | BridgeError::Create { source, .. }
                | BridgeError::Up { source, .. }
                | BridgeError::Address { source, .. }
                | BridgeError::ServiceRoute { source, .. }
                | BridgeError::Delete { source, .. } => netlink_kind(source),
                BridgeError::Vanished { .. } => ErrorKind::Transient,
            },
            Veth(e) => match e {
                VethError::Lookup { source, .. }
                | VethError::Create { source, .. }
                | VethError::Delete { source, .. }
                | VethError::PodLinkUp { source, .. }
                | VethError::PodAddress { source, .. }
                | VethError::PodRoute { source, .. }
                | VethError::Hairpin { source, .. } => netlink_kind(source),
                VethError::OpenNetns { .. }
                | VethError::PodLinkMissing { .. }
                | VethError::Vanished { .. } => ErrorKind::Transient,
            },
            Netns(e) => match e {
                NetnsError::Unshare { .. }
                | NetnsError::BindMount { .. }
                | NetnsError::Setns { .. } => ErrorKind::Unsupported,
                NetnsError::Thread(_) | NetnsError::ThreadDied { .. } => ErrorKind::Transient,
                _ => ErrorKind::Internal,
            },
            Ipam(IpamError::Exhausted { .. }) => ErrorKind::Transient,
            Ipam(IpamError::CidrChanged { .. }) => ErrorKind::Invalid,
            Ipam(_) => ErrorKind::Internal,
            Services(ServiceError::CidrChanged { .. }) => ErrorKind::Invalid,
            Services(_) => ErrorKind::Internal,
            Nft(NftError::Spawn(_)) => ErrorKind::Unsupported,
            Nft(_) => ErrorKind::Internal,
            Dns(DnsError::BindUdp { .. } | DnsError::BindTcp { .. }) => ErrorKind::Transient,
            Dns(_) => ErrorKind::Internal,
            Sysctl(_) => ErrorKind::Unsupported,
            Persist(_) | RemoveState { .. } => ErrorKind::Internal,
        }
    }
}
