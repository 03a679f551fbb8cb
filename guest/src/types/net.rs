//! IP networks: a CIDR and whether an address is inside it, and which addresses are local.

use std::net::IpAddr;

/// An IP network `addr/prefix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network address as written.
    pub addr: IpAddr,
    /// The prefix length, at most 32 (IPv4) or 128 (IPv6).
    pub prefix: u8,
}

impl Cidr {
    /// Parse `192.0.2.0/24` or `2001:db8::/32`. The address is parsed by `std::net`; the prefix
    /// is one integer bounded by the address family, which needs no library.
    pub fn parse(text: &str) -> Option<Cidr> {
        let (addr, prefix) = text.trim().split_once('/')?;
        let addr: IpAddr = addr.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` is inside this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Whether `ip` is a local address that is never routed through the tunnel: loopback
/// (`127.0.0.0/8`, `::1`), unspecified (`0.0.0.0`, `::`) or link-local (`169.254.0.0/16`,
/// `fe80::/10`; RFC 3927, RFC 4291 §2.5.6), an IPv4-mapped IPv6 address by its IPv4 address.
/// Such an address never leaves this machine or its link, so a route into the tunnel would be
/// wrong (a test endpoint on loopback must keep working). `krypton-host doctor` applies the same
/// rule (`host/cli/src/doctor.rs`, `is_local_address`); an end-to-end test runs both commands on
/// the same addresses and compares their verdicts.
pub fn is_local_address(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unspecified() || v6.is_unicast_link_local(),
    }
}
