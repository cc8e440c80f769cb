//! The address the agent advertises in its callback URL (spec §2.1).
//!
//! `ipa-advertise-host` if set; else the first IPv4 address of `ipa-network-interface`; else
//! the local address the kernel would use to reach an Ironic API host (as `ip route get`
//! reports it), ignoring link-local sources, tried `ip_lookup_attempts` times
//! `ip_lookup_sleep` apart. Before that, as IPA does, each API URL is probed with a `GET`
//! (without TLS verification) and only the hosts that answered are used, unless none did.

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

use crate::net::http::{build_client, HttpTls};
use crate::net::interfaces::NetInfo;
use crate::pace::Pacer;
use crate::settings::{Protocol, Settings, TlsVersion};

/// The advertised host: an IP address, or a name given as `ipa-advertise-host`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdvertiseHost {
    Ip(IpAddr),
    Name(String),
}

impl AdvertiseHost {
    /// An IP address (IPv6 possibly in brackets) or else a name.
    pub fn parse(text: &str) -> Self {
        let trimmed = text.trim();
        let bare = trimmed
            .strip_prefix('[')
            .and_then(|inner| inner.strip_suffix(']'))
            .unwrap_or(trimmed);
        match bare.parse::<IpAddr>() {
            Ok(ip) => AdvertiseHost::Ip(ip),
            Err(_) => AdvertiseHost::Name(trimmed.to_string()),
        }
    }

    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            AdvertiseHost::Ip(ip) => Some(*ip),
            AdvertiseHost::Name(_) => None,
        }
    }
}

impl fmt::Display for AdvertiseHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdvertiseHost::Ip(ip) => write!(f, "{ip}"),
            AdvertiseHost::Name(name) => f.write_str(name),
        }
    }
}

/// Finding the advertise address failed.
#[derive(Debug, thiserror::Error)]
pub enum AdvertiseError {
    #[error("ipa-network-interface {interface} has no IPv4 address")]
    NoInterfaceAddress { interface: String },
    #[error("listing the addresses of ipa-network-interface {interface}: {detail}")]
    InterfaceAddresses { interface: String, detail: String },
    #[error("no Ironic API URL to find the advertise address from (ipa-api-url)")]
    NoApiUrl,
    #[error(
        "the agent could not find a valid IP address to advertise: no route from this host to \
         {hosts} after {attempts} attempts; set ipa-advertise-host to choose one (last problem: \
         {last_problem})"
    )]
    NoRoute {
        hosts: String,
        attempts: u32,
        last_problem: String,
    },
}

/// `<protocol>://<host>:<port>`, IPv6 in brackets, no trailing slash.
pub fn callback_url(protocol: Protocol, host: &AdvertiseHost, port: u16) -> String {
    let scheme = match protocol {
        Protocol::Http => "http",
        Protocol::Https => "https",
    };
    match host {
        AdvertiseHost::Ip(IpAddr::V6(v6)) => format!("{scheme}://[{v6}]:{port}"),
        other => format!("{scheme}://{other}:{port}"),
    }
}

/// The address to advertise, as IPA chooses it (see the module documentation).
pub async fn find_advertise_host(
    settings: &Settings,
    net: &dyn NetInfo,
    pacer: &Pacer,
) -> Result<AdvertiseHost, AdvertiseError> {
    if let Some(host) = &settings.advertise_host {
        return Ok(AdvertiseHost::parse(host));
    }
    if let Some(interface) = &settings.network_interface {
        let addresses = net
            .ip_addresses()
            .map_err(|err| AdvertiseError::InterfaceAddresses {
                interface: interface.clone(),
                detail: err.to_string(),
            })?;
        return addresses
            .into_iter()
            .find_map(|(name, ip)| (name == *interface && ip.is_ipv4()).then_some(ip))
            .map(AdvertiseHost::Ip)
            .ok_or_else(|| AdvertiseError::NoInterfaceAddress {
                interface: interface.clone(),
            });
    }
    if settings.api_urls.is_empty() {
        return Err(AdvertiseError::NoApiUrl);
    }
    let urls = reachable_urls(settings).await;
    let destinations = resolve_hosts(&urls).await;
    let hosts = urls
        .iter()
        .filter_map(|url| url.host_str())
        .collect::<Vec<_>>()
        .join(", ");
    let attempts = settings.ip_lookup_attempts.max(1);
    let mut last_problem = String::from("no address found for the API hosts");
    for attempt in 1..=attempts {
        for destination in &destinations {
            match net.route_source(*destination) {
                Ok(source) if is_link_local(source) => {
                    tracing::info!("ignoring link-local source {source} to {destination}");
                    last_problem = format!("only link-local source {source} to {destination}");
                }
                Ok(source) => return Ok(AdvertiseHost::Ip(source)),
                Err(err) => {
                    tracing::warn!("{err}");
                    last_problem = err.to_string();
                }
            }
        }
        if attempt < attempts {
            pacer.sleep(settings.ip_lookup_sleep).await;
        }
    }
    Err(AdvertiseError::NoRoute {
        hosts,
        attempts,
        last_problem,
    })
}

/// The API URLs that answer a plain `GET` (any HTTP status), or all of them if none does.
async fn reachable_urls(settings: &Settings) -> Vec<Url> {
    let probe_tls = HttpTls {
        insecure: true,
        cafile: None,
        certfile: None,
        keyfile: None,
        min_version: TlsVersion::Tls12,
    };
    let client = match build_client(&probe_tls, settings.http_request_timeout) {
        Ok(client) => client,
        Err(err) => {
            tracing::warn!("cannot probe the API URLs, using all of them: {err}");
            return settings.api_urls.clone();
        }
    };
    let mut reachable = Vec::new();
    for url in &settings.api_urls {
        match client.get(url.clone()).send().await {
            Ok(response) => {
                tracing::debug!(%url, status = %response.status(), "API URL is reachable");
                reachable.push(url.clone());
            }
            Err(err) => tracing::debug!(%url, "API URL is not reachable: {err}"),
        }
    }
    if reachable.is_empty() {
        tracing::warn!("no Ironic API URL answered; finding a route to all of them");
        settings.api_urls.clone()
    } else {
        reachable
    }
}

/// The IP addresses of the URLs' hosts, in order, without repeats.
async fn resolve_hosts(urls: &[Url]) -> Vec<IpAddr> {
    let mut ips: Vec<IpAddr> = Vec::new();
    for url in urls {
        let found: Vec<IpAddr> = match url.host() {
            Some(Host::Ipv4(v4)) => vec![v4.into()],
            Some(Host::Ipv6(v6)) => vec![v6.into()],
            Some(Host::Domain(name)) => match tokio::net::lookup_host((name, 0)).await {
                Ok(addresses) => addresses.map(|address| address.ip()).collect(),
                Err(err) => {
                    tracing::warn!("resolving {name}: {err}");
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        for ip in found {
            if !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    ips
}

/// 169.254.0.0/16 and fe80::/10.
pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls() {
        let v4 = AdvertiseHost::parse("192.0.2.10");
        assert_eq!(
            callback_url(Protocol::Https, &v4, 9999),
            "https://192.0.2.10:9999"
        );
        let v6 = AdvertiseHost::parse("fd00::5");
        assert_eq!(
            callback_url(Protocol::Http, &v6, 9999),
            "http://[fd00::5]:9999"
        );
        let bracketed = AdvertiseHost::parse("[fd00::5]");
        assert_eq!(bracketed, v6);
        let name = AdvertiseHost::parse("agent.example.org");
        assert_eq!(name.ip(), None);
        assert_eq!(
            callback_url(Protocol::Https, &name, 443),
            "https://agent.example.org:443"
        );
    }

    #[test]
    fn link_local_addresses() {
        assert!(is_link_local("169.254.3.4".parse().expect("an IP")));
        assert!(is_link_local("fe80::1".parse().expect("an IP")));
        assert!(is_link_local("febf::1".parse().expect("an IP")));
        assert!(!is_link_local("fec0::1".parse().expect("an IP")));
        assert!(!is_link_local("192.0.2.1".parse().expect("an IP")));
    }
}
