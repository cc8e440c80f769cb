//! Network bring-up: every Ethernet link up, DHCPv4 on each link with carrier (all links in
//! parallel), IPv6 SLAAC by the kernel, and a return as soon as the caller's readiness check
//! passes (typically "the control server answers a TCP connect") or every link has had its
//! first attempt. Links without carrier never delay the boot: they are watched in the
//! background and get DHCP when a cable appears; leases are renewed in the background too.

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::dhcp::{self, DhcpConfig, DhcpError, DhcpTransport, Lease, UdpTransport};
use super::link::{Link, LinkControl, NetlinkLinks};

/// A caller-supplied check, e.g. "the control server accepts a TCP connection".
pub type ReadinessCheck = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

/// Bring-up parameters.
#[derive(Clone)]
pub struct BringupOptions {
    /// How long a link may take to report carrier after being set up before it is left to
    /// the background watcher.
    pub carrier_timeout: Duration,
    /// How long one DHCP attempt may take on a link.
    pub dhcp_timeout: Duration,
    /// Return as soon as this passes; without it, return when every link had its first try.
    pub ready: Option<ReadinessCheck>,
    /// How often the readiness check runs while links are being configured.
    pub ready_interval: Duration,
    /// Links configured by someone else (static configuration): left alone.
    pub exclude: Vec<String>,
    /// Where DNS servers from DHCP are written.
    pub resolv_conf: PathBuf,
    /// DNS servers configured statically (network_data.json): written first, before those
    /// from DHCP leases.
    pub static_dns: Vec<IpAddr>,
    /// How often uncabled links are checked again in the background.
    pub carrier_recheck: Duration,
    /// Pause before a link whose DHCP attempt failed tries again in the background.
    pub dhcp_retry: Duration,
}

impl Default for BringupOptions {
    fn default() -> Self {
        BringupOptions {
            carrier_timeout: Duration::from_secs(5),
            dhcp_timeout: Duration::from_secs(30),
            ready: None,
            ready_interval: Duration::from_millis(500),
            exclude: Vec::new(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            static_dns: Vec::new(),
            carrier_recheck: Duration::from_secs(2),
            dhcp_retry: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for BringupOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BringupOptions")
            .field("carrier_timeout", &self.carrier_timeout)
            .field("dhcp_timeout", &self.dhcp_timeout)
            .field("ready", &self.ready.as_ref().map(|_| "<check>"))
            .field("exclude", &self.exclude)
            .field("resolv_conf", &self.resolv_conf)
            .finish()
    }
}

/// A readiness check that passes when a TCP connection to any of `targets` (host, port)
/// succeeds within `timeout`.
pub fn tcp_reachable(targets: Vec<(String, u16)>, timeout: Duration) -> ReadinessCheck {
    let targets = Arc::new(targets);
    Arc::new(move || {
        let targets = targets.clone();
        Box::pin(async move {
            for (host, port) in targets.iter() {
                let connect = tokio::net::TcpStream::connect((host.as_str(), *port));
                if let Ok(Ok(_)) = tokio::time::timeout(timeout, connect).await {
                    return true;
                }
            }
            false
        })
    })
}

/// Where one link stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkResult {
    /// Waiting for carrier or for DHCP.
    Pending,
    Configured,
    /// No carrier within the bound; watched in the background.
    NoCarrier,
    /// Setting up the link or DHCP failed; retried in the background.
    Failed(String),
    /// Left alone (`exclude`).
    Excluded,
}

impl LinkResult {
    fn is_final(&self) -> bool {
        !matches!(self, LinkResult::Pending)
    }
}

/// One row of the bring-up table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkReport {
    pub name: String,
    pub carrier: bool,
    pub address: Option<(Ipv4Addr, u8)>,
    pub gateway: Option<Ipv4Addr>,
    pub result: LinkResult,
}

/// The state of every link when bring-up returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BringupReport {
    pub links: Vec<LinkReport>,
    /// The readiness check passed.
    pub ready: bool,
    pub elapsed: Duration,
    /// Bring-up could not start (no netlink).
    pub error: Option<String>,
}

impl fmt::Display for BringupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<16} {:<8} {:<20} result",
            "link", "carrier", "address"
        )?;
        for link in &self.links {
            let address = link
                .address
                .map(|(a, p)| format!("{a}/{p}"))
                .unwrap_or_else(|| "-".to_string());
            let result = match &link.result {
                LinkResult::Pending => "DHCP still running".to_string(),
                LinkResult::Configured => match link.gateway {
                    Some(gw) => format!("configured, gateway {gw}"),
                    None => "configured".to_string(),
                },
                LinkResult::NoCarrier => "no carrier (DHCP starts when cabled)".to_string(),
                LinkResult::Failed(e) => format!("failed: {e}"),
                LinkResult::Excluded => "left alone".to_string(),
            };
            let carrier = if link.carrier { "yes" } else { "no" };
            writeln!(f, "{:<16} {carrier:<8} {address:<20} {result}", link.name)?;
        }
        if let Some(e) = &self.error {
            writeln!(f, "network bring-up failed: {e}")?;
        }
        write!(
            f,
            "network {} after {:.1} s",
            if self.ready {
                "ready"
            } else {
                "not confirmed ready"
            },
            self.elapsed.as_secs_f64()
        )
    }
}

/// Opens a DHCP transport on a link.
pub trait TransportFactory: Send + Sync + 'static {
    type Transport: DhcpTransport + 'static;
    fn open(&self, link: &Link) -> Result<Self::Transport, DhcpError>;
}

/// Real UDP sockets.
#[derive(Debug, Clone, Copy, Default)]
pub struct UdpTransports;

impl TransportFactory for UdpTransports {
    type Transport = UdpTransport;
    fn open(&self, link: &Link) -> Result<UdpTransport, DhcpError> {
        UdpTransport::bind(&link.name)
    }
}

/// Brings the network up on this machine (rtnetlink, real sockets) and logs the table.
pub async fn bring_up_network(options: BringupOptions) -> BringupReport {
    let report = match NetlinkLinks::new() {
        Ok(links) => bring_up(Arc::new(links), Arc::new(UdpTransports), options).await,
        Err(e) => BringupReport {
            error: Some(e.to_string()),
            ..BringupReport::default()
        },
    };
    for line in report.to_string().lines() {
        tracing::info!("{line}");
    }
    report
}

/// DNS servers and search domain learned on each link, by link name.
pub(crate) type DnsByLink = BTreeMap<String, (Vec<Ipv4Addr>, Option<String>)>;

/// Shared between the per-link tasks and the caller.
struct Shared {
    rows: Mutex<BTreeMap<u32, LinkReport>>,
    dns: Mutex<DnsByLink>,
    changed: Notify,
    options: BringupOptions,
}

impl Shared {
    fn update(&self, index: u32, change: impl FnOnce(&mut LinkReport)) {
        let mut rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(row) = rows.get_mut(&index) {
            change(row);
        }
        drop(rows);
        self.changed.notify_one();
    }

    fn snapshot(&self) -> Vec<LinkReport> {
        let rows = self.rows.lock().unwrap_or_else(|p| p.into_inner());
        rows.values().cloned().collect()
    }
}

/// [`bring_up_network`] over any link control and DHCP transport (tests use fakes).
pub async fn bring_up<L: LinkControl, F: TransportFactory>(
    links: Arc<L>,
    transports: Arc<F>,
    options: BringupOptions,
) -> BringupReport {
    let started = Instant::now();
    let all = match links.links().await {
        Ok(all) => all,
        Err(e) => {
            return BringupReport {
                error: Some(e.to_string()),
                elapsed: started.elapsed(),
                ..BringupReport::default()
            }
        }
    };
    let shared = Arc::new(Shared {
        rows: Mutex::new(BTreeMap::new()),
        dns: Mutex::new(BTreeMap::new()),
        changed: Notify::new(),
        options: options.clone(),
    });
    for link in all {
        if link.loopback {
            if !link.up {
                if let Err(e) = links.set_up(&link).await {
                    tracing::warn!("{e}");
                }
            }
            continue;
        }
        if !link.ethernet {
            continue;
        }
        let excluded = options.exclude.contains(&link.name);
        shared
            .rows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                link.index,
                LinkReport {
                    name: link.name.clone(),
                    carrier: link.carrier,
                    address: None,
                    gateway: None,
                    result: if excluded {
                        LinkResult::Excluded
                    } else {
                        LinkResult::Pending
                    },
                },
            );
        if !excluded {
            tokio::spawn(run_link(
                links.clone(),
                transports.clone(),
                link,
                shared.clone(),
            ));
        }
    }

    let bound = started + options.carrier_timeout + options.dhcp_timeout + Duration::from_secs(5);
    let mut ready = false;
    loop {
        if let Some(check) = &options.ready {
            if check().await {
                ready = true;
                break;
            }
        }
        if shared.snapshot().iter().all(|row| row.result.is_final()) || Instant::now() >= bound {
            break;
        }
        let tick = (Instant::now() + options.ready_interval).min(bound);
        // Either a link changed state or it is time to check readiness again.
        let _ = tokio::time::timeout_at(tick, shared.changed.notified()).await;
    }
    BringupReport {
        links: shared.snapshot(),
        ready,
        elapsed: started.elapsed(),
        error: None,
    }
}

/// Everything one link goes through, for as long as the agent runs.
async fn run_link<L: LinkControl, F: TransportFactory>(
    links: Arc<L>,
    transports: Arc<F>,
    link: Link,
    shared: Arc<Shared>,
) {
    let options = &shared.options;
    if let Err(e) = links.enable_ipv6_autoconf(&link) {
        tracing::warn!("IPv6 autoconf on {}: {e}", link.name);
    }
    if let Err(e) = links.set_up(&link).await {
        shared.update(link.index, |row| {
            row.result = LinkResult::Failed(e.to_string())
        });
        return;
    }
    // Carrier: bounded wait first, then (after reporting NoCarrier) a slow background poll.
    let carrier_deadline = Instant::now() + options.carrier_timeout;
    let mut reported_missing = false;
    while !has_carrier(&*links, &link).await {
        let now = Instant::now();
        if now >= carrier_deadline && !reported_missing {
            reported_missing = true;
            shared.update(link.index, |row| row.result = LinkResult::NoCarrier);
        }
        let pause = if reported_missing {
            options.carrier_recheck
        } else {
            Duration::from_millis(100)
        };
        tokio::time::sleep(pause).await;
    }
    shared.update(link.index, |row| {
        row.carrier = true;
        row.result = LinkResult::Pending;
    });
    if reported_missing {
        tracing::info!("{}: carrier appeared, starting DHCP", link.name);
    }
    let mut transport = match transports.open(&link) {
        Ok(transport) => transport,
        Err(e) => {
            shared.update(link.index, |row| {
                row.result = LinkResult::Failed(e.to_string())
            });
            return;
        }
    };
    let mut config = DhcpConfig::new(link.mac.clone());
    config.timeout = options.dhcp_timeout;
    loop {
        match dhcp::acquire(&mut transport, &config).await {
            Ok(lease) => {
                apply_and_renew(&*links, &link, &mut transport, &config, lease, &shared).await
            }
            Err(e) => {
                tracing::info!(
                    "{}: {e}; trying again in {:?}",
                    link.name,
                    options.dhcp_retry
                );
                shared.update(link.index, |row| {
                    row.result = LinkResult::Failed(e.to_string())
                });
                tokio::time::sleep(options.dhcp_retry).await;
            }
        }
    }
}

async fn has_carrier<L: LinkControl>(links: &L, link: &Link) -> bool {
    match links.links().await {
        Ok(all) => all.iter().any(|l| l.index == link.index && l.carrier),
        Err(e) => {
            tracing::debug!("checking carrier on {}: {e}", link.name);
            false
        }
    }
}

/// Applies a lease, then keeps it renewed; returns when the lease is lost (NAK or expiry),
/// so the caller starts over.
async fn apply_and_renew<L: LinkControl, T: DhcpTransport>(
    links: &L,
    link: &Link,
    transport: &mut T,
    config: &DhcpConfig,
    mut lease: Lease,
    shared: &Shared,
) {
    loop {
        let obtained = Instant::now();
        match apply(links, link, &lease, shared).await {
            Ok(()) => shared.update(link.index, |row| {
                row.address = Some((lease.address, lease.prefix_len));
                row.gateway = lease.routers.first().copied();
                row.result = LinkResult::Configured;
            }),
            Err(e) => {
                shared.update(link.index, |row| row.result = LinkResult::Failed(e.clone()));
                tracing::warn!("{}: applying the DHCP lease: {e}", link.name);
            }
        }
        let (Some(t1), Some(t2), Some(expiry)) =
            (lease.renew_after, lease.rebind_after, lease.lease_time)
        else {
            // Infinite lease: nothing more to do, ever.
            std::future::pending::<()>().await;
            return;
        };
        tokio::time::sleep_until(obtained + t1).await;
        let renewed = match dhcp::renew(transport, config, &lease, false, obtained + t2).await {
            Ok(answer) => answer,
            Err(e) => {
                tracing::info!("{}: renewing the lease: {e}; rebinding", link.name);
                dhcp::renew(transport, config, &lease, true, obtained + expiry)
                    .await
                    .unwrap_or_else(|e| {
                        tracing::warn!("{}: rebinding the lease: {e}", link.name);
                        None
                    })
            }
        };
        match renewed {
            Some(new) => lease = new,
            None => {
                tracing::warn!(
                    "{}: lease on {} lost; asking for a new one",
                    link.name,
                    lease.address
                );
                return;
            }
        }
    }
}

/// MTU, address, default route (metric 100 + ifindex, so every link keeps its own) and DNS.
async fn apply<L: LinkControl>(
    links: &L,
    link: &Link,
    lease: &Lease,
    shared: &Shared,
) -> Result<(), String> {
    if let Some(mtu) = lease.mtu {
        if u32::from(mtu) != link.mtu {
            if let Err(e) = links.set_mtu(link, mtu.into()).await {
                tracing::warn!("{e}");
            }
        }
    }
    links
        .add_address(link, lease.address, lease.prefix_len)
        .await
        .map_err(|e| e.to_string())?;
    if let Some(&gateway) = lease.routers.first() {
        let on_link = !same_subnet(lease.address, gateway, lease.prefix_len);
        links
            .add_default_route(link, gateway, on_link, 100 + link.index)
            .await
            .map_err(|e| e.to_string())?;
    }
    tracing::info!(
        "{}: {}/{} from DHCP server {}",
        link.name,
        lease.address,
        lease.prefix_len,
        lease.server_id
    );
    if !lease.dns_servers.is_empty() {
        let mut dns = shared.dns.lock().unwrap_or_else(|p| p.into_inner());
        dns.insert(
            link.name.clone(),
            (lease.dns_servers.clone(), lease.domain.clone()),
        );
        let text = resolv_conf_text(&shared.options.static_dns, &dns);
        drop(dns);
        write_resolv_conf(&shared.options.resolv_conf, &text)?;
    }
    Ok(())
}

fn same_subnet(a: Ipv4Addr, b: Ipv4Addr, prefix_len: u8) -> bool {
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len.min(32)))
        .unwrap_or(0);
    a.to_bits() & mask == b.to_bits() & mask
}

/// resolv.conf: static servers first, then every link's DHCP servers in link-name order, at
/// most 3 (the libc limit).
pub(crate) fn resolv_conf_text(static_dns: &[IpAddr], dns: &DnsByLink) -> String {
    let mut text = match (static_dns.is_empty(), dns.is_empty()) {
        (true, _) => String::from("# Written by rivet-agent from DHCP leases.\n"),
        (false, true) => String::from("# Written by rivet-agent from network_data.json.\n"),
        (false, false) => {
            String::from("# Written by rivet-agent from network_data.json and DHCP leases.\n")
        }
    };
    let mut domains: Vec<&str> = Vec::new();
    for (_, domain) in dns.values() {
        if let Some(d) = domain.as_deref().filter(|d| !domains.contains(d)) {
            domains.push(d);
        }
    }
    if !domains.is_empty() {
        text.push_str(&format!("search {}\n", domains.join(" ")));
    }
    let mut servers: Vec<IpAddr> = static_dns.to_vec();
    for (list, _) in dns.values() {
        for server in list {
            if !servers.contains(&IpAddr::V4(*server)) {
                servers.push(IpAddr::V4(*server));
            }
        }
    }
    for server in servers.iter().take(3) {
        text.push_str(&format!("nameserver {server}\n"));
    }
    text
}

pub(crate) fn write_resolv_conf(path: &std::path::Path, text: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    }
    let tmp = path.with_extension("rivet-tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("writing {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("renaming to {}: {e}", path.display()))
}

#[cfg(test)]
#[path = "bringup_tests.rs"]
mod tests;
