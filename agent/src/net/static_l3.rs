//! Layer 3 of network_data: addresses with their prefix length, routes and DNS servers,
//! checked and parsed for the planner.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use rivet_protocol::network_data::{Network, NetworkData};

/// A route of a static network, checked against the network's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRoute {
    /// The destination with host bits cleared.
    pub destination: IpAddr,
    pub prefix: u8,
    pub gateway: IpAddr,
    /// The gateway is outside the link's subnet (and not link-local).
    pub on_link: bool,
}

/// Prefix length of a contiguous mask.
fn mask_prefix(bits: u128, width: u32) -> Option<u8> {
    let ones = bits.leading_ones();
    let rest = bits.checked_shl(ones).unwrap_or(0);
    (rest == 0 && ones <= width).then_some(ones as u8)
}

/// A netmask as dotted IPv4, IPv6 mask or prefix length, for the given family.
pub fn prefix_of(text: &str, ipv6: bool) -> Result<u8, String> {
    let text = text.trim();
    let width: u8 = if ipv6 { 128 } else { 32 };
    if let Ok(prefix) = text.trim_start_matches('/').parse::<u8>() {
        return (prefix <= width)
            .then_some(prefix)
            .ok_or(format!("prefix length {prefix} is more than {width}"));
    }
    let prefix = match text.parse::<IpAddr>() {
        Ok(IpAddr::V4(mask)) if !ipv6 => mask_prefix(u128::from(mask.to_bits()) << 96, 32),
        Ok(IpAddr::V6(mask)) if ipv6 => mask_prefix(mask.to_bits(), 128),
        _ => None,
    };
    prefix.ok_or(format!(
        "netmask {text:?} is not an {} mask or prefix length",
        if ipv6 { "IPv6" } else { "IPv4" }
    ))
}

fn parse_ip(text: &str, ipv6: bool) -> Result<IpAddr, String> {
    let address: IpAddr = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not an IP address"))?;
    if address.is_ipv6() != ipv6 {
        return Err(format!(
            "{address} is not an {} address",
            if ipv6 { "IPv6" } else { "IPv4" }
        ));
    }
    Ok(address)
}

/// The address and prefix of a static network: `ip_address` (which may end in `/prefix`) and
/// `netmask`. IPv6 without either prefix gets /64.
pub fn address_of(network: &Network, ipv6: bool) -> Result<(IpAddr, u8), String> {
    let text = network.ip_address().ok_or("no ip_address")?;
    let (address, inline) = match text.split_once('/') {
        Some((address, prefix)) => (address, Some(prefix)),
        None => (text, None),
    };
    let address = parse_ip(address, ipv6)?;
    let prefix = match (inline, network.netmask_text()) {
        (Some(prefix), _) => prefix_of(prefix, ipv6)?,
        (None, Some(mask)) => prefix_of(&mask, ipv6)?,
        (None, None) if ipv6 => 64,
        (None, None) => return Err(format!("{address} has no netmask")),
    };
    Ok((address, prefix))
}

fn masked(address: IpAddr, prefix: u8) -> IpAddr {
    match address {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from_bits(a.to_bits() & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from_bits(a.to_bits() & mask))
        }
    }
}

fn is_link_local(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => a.segments()[0] & 0xffc0 == 0xfe80,
    }
}

/// The network's routes; bad ones are reported in `problems` and left out.
pub fn routes_of(
    network: &Network,
    label: &str,
    (address, prefix): (IpAddr, u8),
    problems: &mut Vec<String>,
) -> Vec<PlannedRoute> {
    let ipv6 = address.is_ipv6();
    let mut routes = Vec::new();
    for route in network.routes() {
        let parsed = (|| {
            let destination = parse_ip(&route.network, ipv6)?;
            let mask = route.netmask_text().ok_or("netmask is not text")?;
            let route_prefix = prefix_of(&mask, ipv6)?;
            let gateway = parse_ip(&route.gateway, ipv6)?;
            let on_link =
                !is_link_local(gateway) && masked(gateway, prefix) != masked(address, prefix);
            Ok::<_, String>(PlannedRoute {
                destination: masked(destination, route_prefix),
                prefix: route_prefix,
                gateway,
                on_link,
            })
        })();
        match parsed {
            Ok(planned) => routes.push(planned),
            Err(e) => problems.push(format!(
                "network {label}: route to {} via {}: {e}; left out",
                route.network, route.gateway
            )),
        }
    }
    routes
}

/// DNS servers: document-wide `services` first, then those of networks whose link is
/// configured, without duplicates.
pub fn dns_of(
    data: &NetworkData,
    names: &BTreeMap<&str, String>,
    problems: &mut Vec<String>,
) -> Vec<IpAddr> {
    let global = data
        .services()
        .iter()
        .filter(|s| s.is_dns())
        .map(|s| s.address.as_str());
    let per_network = data
        .networks()
        .iter()
        .filter(|n| names.contains_key(n.link.as_str()))
        .flat_map(|n| n.dns_servers());
    let mut servers = Vec::new();
    for text in global.chain(per_network) {
        match text.trim().parse::<IpAddr>() {
            Ok(server) if !servers.contains(&server) => servers.push(server),
            Ok(_) => {}
            Err(_) => problems.push(format!(
                "DNS server {text:?} is not an IP address; left out"
            )),
        }
    }
    servers
}
