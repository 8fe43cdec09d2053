//! IPv4 prefixes (`10.44.0.0/16`): parsing, membership and host enumeration.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IPv4 network: the address is always the network address (host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CidrError {
    #[error("`{text}` is not of the form A.B.C.D/N")]
    Syntax { text: String },
    #[error("prefix length {prefix} in `{text}` is not between 8 and 30")]
    PrefixLen { text: String, prefix: u8 },
    #[error("`{text}` has host bits set (network address is {network})")]
    HostBits { text: String, network: Ipv4Addr },
}

impl Ipv4Net {
    /// A network from its address and prefix length (8..=30; smaller networks
    /// have no room for a gateway plus pods).
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self, CidrError> {
        let text = format!("{addr}/{prefix}");
        if !(8..=30).contains(&prefix) {
            return Err(CidrError::PrefixLen { text, prefix });
        }
        let net = Self {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        };
        if net.addr != addr {
            return Err(CidrError::HostBits {
                text,
                network: net.addr,
            });
        }
        Ok(net)
    }

    pub fn network(&self) -> Ipv4Addr {
        self.addr
    }

    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !mask(self.prefix))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == u32::from(self.addr)
    }

    /// The `n`th address of the network (0 = network address).
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        let size = 1u64 << (32 - self.prefix);
        (u64::from(n) < size).then(|| Ipv4Addr::from(u32::from(self.addr) + n))
    }

    /// Offset of `ip` inside the network.
    pub fn offset(&self, ip: Ipv4Addr) -> Option<u32> {
        self.contains(ip)
            .then(|| u32::from(ip) - u32::from(self.addr))
    }

    /// Number of addresses, network and broadcast included.
    pub fn size(&self) -> u32 {
        1u32 << (32 - self.prefix)
    }

    /// True if the two networks share any address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = CidrError;

    /// ```
    /// let n: berth_net::Ipv4Net = "10.44.0.0/16".parse().unwrap();
    /// assert_eq!(n.broadcast().to_string(), "10.44.255.255");
    /// ```
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let syntax = || CidrError::Syntax {
            text: s.to_string(),
        };
        let (a, p) = s.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = a.parse().map_err(|_| syntax())?;
        let prefix: u8 = p.parse().map_err(|_| syntax())?;
        Ipv4Net::new(addr, prefix)
    }
}

impl Serialize for Ipv4Net {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Ipv4Net {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_enumerates() {
        let n: Ipv4Net = "10.123.4.0/24".parse().unwrap();
        assert_eq!(n.nth(1), Some(Ipv4Addr::new(10, 123, 4, 1)));
        assert_eq!(n.nth(256), None);
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 123, 4, 255));
        assert!(n.contains(Ipv4Addr::new(10, 123, 4, 77)));
        assert!(!n.contains(Ipv4Addr::new(10, 123, 5, 1)));
        assert_eq!(n.offset(Ipv4Addr::new(10, 123, 4, 9)), Some(9));
        assert!("10.123.4.1/24".parse::<Ipv4Net>().is_err());
        assert!("10.123.4.0/31".parse::<Ipv4Net>().is_err());
        assert!("10.123.4.0".parse::<Ipv4Net>().is_err());
        assert!(n.overlaps(&"10.123.0.0/16".parse().unwrap()));
        assert!(!n.overlaps(&"10.123.5.0/24".parse().unwrap()));
    }
}
