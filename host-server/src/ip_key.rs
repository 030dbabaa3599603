//! The unit per-address limits count in.

use std::net::{IpAddr, Ipv4Addr};

/// The unit the per-address limit counts: an IPv4 address, or an IPv6 /64
/// (one host or site usually holds a whole /64, so counting single IPv6
/// addresses would limit nothing). IPv4-mapped IPv6 counts as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IpKey {
    /// An IPv4 address.
    V4(Ipv4Addr),
    /// The first 64 bits of an IPv6 address.
    V6Prefix(u64),
}

impl IpKey {
    /// The unit `ip` counts in.
    pub fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(v4) => IpKey::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(v4),
                None => IpKey::V6Prefix((v6.to_bits() >> 64) as u64),
            },
        }
    }
}
