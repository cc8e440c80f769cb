//! Link control for network bring-up: list links, set them up, addresses, routes, MTU and the
//! IPv6 autoconf sysctls. [`NetlinkLinks`] does it over rtnetlink; [`LinkControl`] is the seam
//! the bring-up logic is tested through.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage};
use rtnetlink::packet_route::route::RouteProtocol;
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

/// Errors of link operations; each names the link and the operation.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("opening a netlink socket: {0}")]
    Connect(std::io::Error),
    #[error("netlink: {op}: {source}")]
    Netlink {
        op: String,
        source: rtnetlink::Error,
    },
    #[error("no link named {0}")]
    NoSuchLink(String),
    #[error("{0}")]
    Invalid(String),
    #[error("writing {path}: {source}")]
    Sysctl {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One network link as bring-up sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: Vec<u8>,
    pub loopback: bool,
    /// Ethernet (ARPHRD_ETHER): the links DHCP runs on.
    pub ethernet: bool,
    pub up: bool,
    pub carrier: bool,
    pub mtu: u32,
    /// The permanent MAC (`IFLA_PERM_ADDRESS`) when the kernel reports one; empty otherwise.
    /// A bond port's current MAC is the bond's.
    pub perm_mac: Vec<u8>,
}

/// The operations bring-up needs.
pub trait LinkControl: Send + Sync + 'static {
    fn links(&self) -> impl Future<Output = Result<Vec<Link>, LinkError>> + Send;
    fn set_up(&self, link: &Link) -> impl Future<Output = Result<(), LinkError>> + Send;
    fn set_mtu(&self, link: &Link, mtu: u32) -> impl Future<Output = Result<(), LinkError>> + Send;
    /// Adds (or replaces) an IPv4 address with its prefix length.
    fn add_address(
        &self,
        link: &Link,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> impl Future<Output = Result<(), LinkError>> + Send;
    /// Adds (or replaces) a default route via `gateway` on `link` with `metric`.
    fn add_default_route(
        &self,
        link: &Link,
        gateway: Ipv4Addr,
        on_link: bool,
        metric: u32,
    ) -> impl Future<Output = Result<(), LinkError>> + Send;
    /// Lets the kernel do SLAAC on the link (`accept_ra=2`, `autoconf=1`); a kernel without
    /// IPv6 is not an error.
    fn enable_ipv6_autoconf(&self, link: &Link) -> Result<(), LinkError>;
}

/// rtnetlink-backed [`LinkControl`]. The socket belongs to the network namespace of the
/// thread that creates it.
#[derive(Debug, Clone)]
pub struct NetlinkLinks {
    handle: Handle,
    /// `/proc/sys/net` (a test may point elsewhere).
    sysctl_root: PathBuf,
}

impl NetlinkLinks {
    /// Opens the netlink socket and spawns its connection task; needs a tokio runtime.
    pub fn new() -> Result<Self, LinkError> {
        let (connection, handle, _) = rtnetlink::new_connection().map_err(LinkError::Connect)?;
        tokio::spawn(connection);
        Ok(NetlinkLinks {
            handle,
            sysctl_root: PathBuf::from("/proc/sys/net"),
        })
    }
}

fn netlink(op: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> LinkError {
    let op = op.into();
    move |source| LinkError::Netlink { op, source }
}

fn link_from_message(message: &LinkMessage) -> Link {
    let header = &message.header;
    let mut link = Link {
        index: header.index,
        name: String::new(),
        mac: Vec::new(),
        loopback: header.flags.contains(LinkFlags::Loopback),
        ethernet: header.link_layer_type == LinkLayerType::Ether,
        up: header.flags.contains(LinkFlags::Up),
        carrier: header.flags.contains(LinkFlags::LowerUp),
        mtu: 0,
        perm_mac: Vec::new(),
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name.clone(),
            LinkAttribute::Address(mac) => link.mac = mac.clone(),
            LinkAttribute::Carrier(carrier) => link.carrier = *carrier != 0,
            LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
            LinkAttribute::PermAddress(mac) => link.perm_mac = mac.clone(),
            _ => {}
        }
    }
    link
}

impl NetlinkLinks {
    /// Sets every non-loopback link down (`system.lockdown`); failures are logged, not fatal,
    /// so one stubborn link does not keep the others up.
    pub async fn set_all_down(&self) -> Result<(), LinkError> {
        for link in self.links().await? {
            if link.loopback {
                continue;
            }
            let result = self
                .handle
                .link()
                .set(LinkUnspec::new_with_index(link.index).down().build())
                .execute()
                .await;
            match result {
                Ok(()) => tracing::info!(link = %link.name, "link set down (lockdown)"),
                Err(err) => tracing::error!(link = %link.name, "setting the link down: {err}"),
            }
        }
        Ok(())
    }
}

impl LinkControl for NetlinkLinks {
    async fn links(&self) -> Result<Vec<Link>, LinkError> {
        let mut stream = self.handle.link().get().execute();
        let mut links = Vec::new();
        while let Some(message) = stream.try_next().await.map_err(netlink("listing links"))? {
            links.push(link_from_message(&message));
        }
        Ok(links)
    }

    async fn set_up(&self, link: &Link) -> Result<(), LinkError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(link.index).up().build())
            .execute()
            .await
            .map_err(netlink(format!("setting {} up", link.name)))
    }

    async fn set_mtu(&self, link: &Link, mtu: u32) -> Result<(), LinkError> {
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(link.index).mtu(mtu).build())
            .execute()
            .await
            .map_err(netlink(format!("setting MTU {mtu} on {}", link.name)))
    }

    async fn add_address(
        &self,
        link: &Link,
        address: Ipv4Addr,
        prefix_len: u8,
    ) -> Result<(), LinkError> {
        self.handle
            .address()
            .add(link.index, IpAddr::V4(address), prefix_len)
            .replace()
            .execute()
            .await
            .map_err(netlink(format!(
                "adding {address}/{prefix_len} to {}",
                link.name
            )))
    }

    async fn add_default_route(
        &self,
        link: &Link,
        gateway: Ipv4Addr,
        on_link: bool,
        metric: u32,
    ) -> Result<(), LinkError> {
        let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
            .gateway(gateway)
            .output_interface(link.index)
            .priority(metric)
            .protocol(RouteProtocol::Dhcp);
        if on_link {
            builder = builder.onlink();
        }
        self.handle
            .route()
            .add(builder.build())
            .replace()
            .execute()
            .await
            .map_err(netlink(format!(
                "adding default route via {gateway} dev {} metric {metric}",
                link.name
            )))
    }

    fn enable_ipv6_autoconf(&self, link: &Link) -> Result<(), LinkError> {
        let dir = self.sysctl_root.join("ipv6/conf").join(&link.name);
        if !dir.exists() {
            tracing::debug!("no IPv6 on {} ({} missing)", link.name, dir.display());
            return Ok(());
        }
        for (name, value) in [("accept_ra", "2"), ("autoconf", "1")] {
            let path = dir.join(name);
            std::fs::write(&path, value).map_err(|source| LinkError::Sysctl { path, source })?;
        }
        Ok(())
    }
}

#[path = "link_static.rs"]
mod link_static;

#[cfg(test)]
mod tests {
    use rtnetlink::packet_route::link::LinkHeader;

    use super::*;

    #[test]
    fn link_messages_become_links() {
        let mut message = LinkMessage::default();
        message.header = LinkHeader {
            index: 3,
            link_layer_type: LinkLayerType::Ether,
            flags: LinkFlags::Up | LinkFlags::Broadcast,
            ..LinkHeader::default()
        };
        message.attributes = vec![
            LinkAttribute::IfName("eno1".into()),
            LinkAttribute::Address(vec![0x52, 0x54, 0, 0, 0, 1]),
            LinkAttribute::Carrier(1),
            LinkAttribute::Mtu(1500),
            LinkAttribute::PermAddress(vec![0x52, 0x54, 0, 0, 0, 9]),
        ];
        let link = link_from_message(&message);
        assert_eq!(
            link,
            Link {
                index: 3,
                name: "eno1".into(),
                mac: vec![0x52, 0x54, 0, 0, 0, 1],
                loopback: false,
                ethernet: true,
                up: true,
                carrier: true,
                mtu: 1500,
                perm_mac: vec![0x52, 0x54, 0, 0, 0, 9],
            }
        );
        message.header.flags = LinkFlags::Loopback | LinkFlags::Up | LinkFlags::LowerUp;
        message.header.link_layer_type = LinkLayerType::Loopback;
        message.attributes = vec![LinkAttribute::IfName("lo".into())];
        let lo = link_from_message(&message);
        assert!(lo.loopback && lo.carrier && !lo.ethernet);
    }
}
