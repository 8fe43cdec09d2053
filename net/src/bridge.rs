//! The instance's bridge `<instance>0`, holding the pod CIDR's gateway address.

use std::net::{IpAddr, Ipv4Addr};

use rtnetlink::{Handle, LinkBridge, LinkUnspec};

use crate::netlink::{is_errno, link_index};

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("look up link {name}")]
    Lookup {
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("create bridge {name}")]
    Create {
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("bridge {name} vanished right after creation")]
    Vanished { name: String },
    #[error("set mtu {mtu} and up on bridge {name}")]
    Up {
        name: String,
        mtu: u32,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("add address {addr}/{prefix} to bridge {name}")]
    Address {
        name: String,
        addr: Ipv4Addr,
        prefix: u8,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("add route for the service range {cidr}/{prefix} onto the bridge")]
    ServiceRoute {
        cidr: Ipv4Addr,
        prefix: u8,
        #[source]
        source: rtnetlink::Error,
    },
    #[error("delete bridge {name}")]
    Delete {
        name: String,
        #[source]
        source: rtnetlink::Error,
    },
}

/// Create or adopt the bridge: up, MTU, gateway address. Returns its index.
/// An existing bridge (agent restart) is left as it is apart from those three.
pub async fn ensure(
    handle: &Handle,
    name: &str,
    gateway: Ipv4Addr,
    prefix: u8,
    mtu: u32,
) -> Result<u32, BridgeError> {
    let lookup = |source| BridgeError::Lookup {
        name: name.to_string(),
        source,
    };
    let index = match link_index(handle, name).await.map_err(lookup)? {
        Some(i) => i,
        None => {
            match handle
                .link()
                .add(LinkBridge::new(name).mtu(mtu).up().build())
                .execute()
                .await
            {
                Ok(()) => {}
                Err(e) if is_errno(&e, libc::EEXIST) => {}
                Err(source) => {
                    return Err(BridgeError::Create {
                        name: name.to_string(),
                        source,
                    });
                }
            }
            link_index(handle, name)
                .await
                .map_err(lookup)?
                .ok_or_else(|| BridgeError::Vanished {
                    name: name.to_string(),
                })?
        }
    };
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).mtu(mtu).up().build())
        .execute()
        .await
        .map_err(|source| BridgeError::Up {
            name: name.to_string(),
            mtu,
            source,
        })?;
    handle
        .address()
        .add(index, IpAddr::V4(gateway), prefix)
        .replace()
        .execute()
        .await
        .map_err(|source| BridgeError::Address {
            name: name.to_string(),
            addr: gateway,
            prefix,
            source,
        })?;
    Ok(index)
}

/// Route the service range onto the bridge (`<cidr> dev <bridge> src
/// <gateway>`), so the host reaches Service VIPs even without a default
/// route: the kernel must find a route before the nat output hook rewrites
/// the VIP to a pod address. The route goes with the bridge; an existing
/// route for exactly this prefix (ours after a restart, or the operator's)
/// is left alone.
pub async fn route_services(
    handle: &Handle,
    index: u32,
    cidr: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<(), BridgeError> {
    let route = rtnetlink::RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(cidr, prefix)
        .output_interface(index)
        .pref_source(gateway)
        .scope(rtnetlink::packet_route::route::RouteScope::Link)
        .build();
    match handle.route().add(route).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::EEXIST) => Ok(()),
        Err(source) => Err(BridgeError::ServiceRoute {
            cidr,
            prefix,
            source,
        }),
    }
}

/// Delete the bridge by name; a missing bridge is fine.
pub async fn delete(handle: &Handle, name: &str) -> Result<(), BridgeError> {
    let Some(index) = link_index(handle, name)
        .await
        .map_err(|source| BridgeError::Lookup {
            name: name.to_string(),
            source,
        })?
    else {
        return Ok(());
    };
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(()),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(()),
        Err(source) => Err(BridgeError::Delete {
            name: name.to_string(),
            source,
        }),
    }
}
