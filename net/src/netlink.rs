//! rtnetlink plumbing shared by bridge, veth and netns code.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::RouteAttribute;
use rtnetlink::{Handle, RouteMessageBuilder};

/// True if a netlink request failed with `errno`.
pub fn is_errno(e: &rtnetlink::Error, errno: i32) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.code.map(|c| c.get()) == Some(-errno))
}

/// The errno of a failed netlink request, if it carried one.
pub fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// Index of the link called `name` in the handle's namespace, if any.
pub async fn link_index(handle: &Handle, name: &str) -> Result<Option<u32>, rtnetlink::Error> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(Some(l)) => Ok(Some(l.header.index)),
        Ok(None) => Ok(None),
        Err(e) if is_errno(&e, libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The interface behind the host's IPv4 default route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uplink {
    pub index: u32,
    pub name: String,
    pub mtu: u32,
    /// Its first IPv4 address.
    pub address: Option<Ipv4Addr>,
}

/// The first IPv4 address of interface `name`, if it exists and has one.
pub async fn first_ipv4(handle: &Handle, name: &str) -> Result<Option<Ipv4Addr>, rtnetlink::Error> {
    let Some(index) = link_index(handle, name).await? else {
        return Ok(None);
    };
    let mut addrs = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    while let Some(a) = addrs.try_next().await? {
        if let Some(ip) = a.attributes.iter().find_map(|at| match at {
            AddressAttribute::Address(IpAddr::V4(v4)) => Some(*v4),
            _ => None,
        }) {
            return Ok(Some(ip));
        }
    }
    Ok(None)
}

/// Find the default route's interface (main table, prefix length 0).
pub async fn default_uplink(handle: &Handle) -> Result<Option<Uplink>, rtnetlink::Error> {
    let mut routes = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute();
    let mut oif = None;
    while let Some(r) = routes.try_next().await? {
        if r.header.destination_prefix_length != 0 || r.header.table != 254 {
            continue;
        }
        if let Some(i) = r.attributes.iter().find_map(|a| match a {
            RouteAttribute::Oif(i) => Some(*i),
            _ => None,
        }) {
            oif = Some(i);
            break;
        }
    }
    let Some(index) = oif else { return Ok(None) };
    let mut links = handle.link().get().match_index(index).execute();
    let Some(link) = links.try_next().await? else {
        return Ok(None);
    };
    let mut mtu = 1500;
    let mut name = String::new();
    for a in &link.attributes {
        match a {
            LinkAttribute::Mtu(m) => mtu = *m,
            LinkAttribute::IfName(n) => name = n.clone(),
            _ => {}
        }
    }
    let mut addrs = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute();
    let mut address = None;
    while let Some(a) = addrs.try_next().await? {
        if let Some(ip) = a.attributes.iter().find_map(|at| match at {
            AddressAttribute::Address(IpAddr::V4(v4)) => Some(*v4),
            _ => None,
        }) {
            address = Some(ip);
            break;
        }
    }
    Ok(Some(Uplink {
        index,
        name,
        mtu,
        address,
    }))
}
