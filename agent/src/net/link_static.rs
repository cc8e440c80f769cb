//! [`StaticControl`] over rtnetlink: bonds and VLANs are created with `RTM_NEWLINK`, the
//! bond's mode and driver options as `IFLA_BOND_*` attributes of that same message (netlink,
//! not `/sys/class/net/<bond>/bonding/*`: it needs no sysfs mount of the right network
//! namespace and sets everything before the first port joins, which some options require).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{
    BondAdSelect, BondAllPortActive, BondArpAllTargets, BondArpValidate, BondFailOverMac,
    BondLacpRate, BondMode, BondPrimaryReselect, BondXmitHashPolicy, InfoBond,
};
use rtnetlink::packet_route::route::RouteProtocol;
use rtnetlink::{LinkBond, LinkUnspec, LinkVlan, RouteMessageBuilder};

use super::{netlink, Link, LinkControl, LinkError, NetlinkLinks};
use crate::net::static_apply::StaticControl;
use crate::net::static_config::{Action, BondOption};

fn already_exists(error: &rtnetlink::Error) -> bool {
    matches!(error, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::EEXIST)
}

impl NetlinkLinks {
    async fn index_of(&self, name: &str) -> Result<u32, LinkError> {
        let mut stream = self
            .handle
            .link()
            .get()
            .match_name(name.to_string())
            .execute();
        match stream.try_next().await {
            Ok(Some(message)) => Ok(message.header.index),
            Ok(None) => Err(LinkError::NoSuchLink(name.to_string())),
            Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENODEV => {
                Err(LinkError::NoSuchLink(name.to_string()))
            }
            Err(e) => Err(LinkError::Netlink {
                op: format!("looking up {name}"),
                source: e,
            }),
        }
    }

    async fn bond_info(&self, option: &BondOption) -> Result<InfoBond, LinkError> {
        Ok(match option {
            BondOption::MiiMon(v) => InfoBond::MiiMon(*v),
            BondOption::UpDelay(v) => InfoBond::UpDelay(*v),
            BondOption::DownDelay(v) => InfoBond::DownDelay(*v),
            BondOption::UseCarrier(v) => InfoBond::UseCarrier(*v),
            BondOption::ArpInterval(v) => InfoBond::ArpInterval(*v),
            BondOption::ArpIpTarget(v) => InfoBond::ArpIpTarget(v.clone()),
            BondOption::ArpValidate(v) => InfoBond::ArpValidate(BondArpValidate::from(*v)),
            BondOption::ArpAllTargets(v) => InfoBond::ArpAllTargets(BondArpAllTargets::from(*v)),
            BondOption::Primary(name) => InfoBond::Primary(self.index_of(name).await?),
            BondOption::PrimaryReselect(v) => {
                InfoBond::PrimaryReselect(BondPrimaryReselect::from(*v))
            }
            BondOption::FailOverMac(v) => InfoBond::FailOverMac(BondFailOverMac::from(*v)),
            BondOption::XmitHashPolicy(v) => InfoBond::XmitHashPolicy(BondXmitHashPolicy::from(*v)),
            BondOption::ResendIgmp(v) => InfoBond::ResendIgmp(*v),
            BondOption::NumPeerNotif(v) => InfoBond::NumPeerNotif(*v),
            BondOption::AllSlavesActive(v) => InfoBond::AllPortsActive(BondAllPortActive::from(*v)),
            BondOption::MinLinks(v) => InfoBond::MinLinks(*v),
            BondOption::LpInterval(v) => InfoBond::LpInterval(*v),
            BondOption::PacketsPerSlave(v) => InfoBond::PacketsPerPort(*v),
            BondOption::LacpRate(v) => InfoBond::AdLacpRate(BondLacpRate::from(*v)),
            BondOption::AdSelect(v) => InfoBond::AdSelect(BondAdSelect::from(*v)),
            BondOption::AdActorSysPrio(v) => InfoBond::AdActorSysPrio(*v),
            BondOption::AdUserPortKey(v) => InfoBond::AdUserPortKey(*v),
            BondOption::AdActorSystem(v) => InfoBond::AdActorSystem(*v),
            BondOption::TlbDynamicLb(v) => InfoBond::TlbDynamicLb(*v),
        })
    }

    async fn create_bond(
        &self,
        name: &str,
        mac: Option<[u8; 6]>,
        mode: u8,
        options: &[BondOption],
    ) -> Result<(), LinkError> {
        let mut builder = LinkBond::new(name).mode(BondMode::from(mode));
        for option in options {
            builder = builder.append_info_data(self.bond_info(option).await?);
        }
        if let Some(mac) = mac {
            builder = builder.address(mac.to_vec());
        }
        match self.handle.link().add(builder.build()).execute().await {
            Err(e) if already_exists(&e) => {
                tracing::info!("bond {name} already exists (the agent restarted); kept");
                Ok(())
            }
            result => result.map_err(netlink(format!("creating bond {name}"))),
        }
    }

    async fn enslave(&self, slave: &str, bond: &str) -> Result<(), LinkError> {
        let slave_index = self.index_of(slave).await?;
        let bond_index = self.index_of(bond).await?;
        // The bonding driver refuses ports that are up.
        self.handle
            .link()
            .set(LinkUnspec::new_with_index(slave_index).down().build())
            .execute()
            .await
            .map_err(netlink(format!("setting {slave} down")))?;
        self.handle
            .link()
            .set(
                LinkUnspec::new_with_index(slave_index)
                    .controller(bond_index)
                    .build(),
            )
            .execute()
            .await
            .map_err(netlink(format!("enslaving {slave} to {bond}")))
    }

    async fn create_vlan(
        &self,
        name: &str,
        parent: &str,
        id: u16,
        mac: Option<[u8; 6]>,
    ) -> Result<(), LinkError> {
        let parent_index = self.index_of(parent).await?;
        let mut builder = LinkVlan::new(name, parent_index, id);
        if let Some(mac) = mac {
            builder = builder.address(mac.to_vec());
        }
        match self.handle.link().add(builder.build()).execute().await {
            Err(e) if already_exists(&e) => {
                tracing::info!("VLAN {name} already exists (the agent restarted); kept");
                Ok(())
            }
            result => result.map_err(netlink(format!("creating VLAN {name}"))),
        }
    }

    fn ipv6_sysctls(&self, name: &str, accept_ra: u8, autoconf: bool) -> Result<(), LinkError> {
        let dir = self.sysctl_root.join("ipv6/conf").join(name);
        if !dir.exists() {
            tracing::debug!("no IPv6 on {name} ({} missing)", dir.display());
            return Ok(());
        }
        for (file, value) in [
            ("accept_ra", accept_ra.to_string()),
            ("autoconf", u8::from(autoconf).to_string()),
        ] {
            let path = dir.join(file);
            std::fs::write(&path, value).map_err(|source| LinkError::Sysctl { path, source })?;
        }
        Ok(())
    }

    async fn add_ip(&self, name: &str, address: IpAddr, prefix: u8) -> Result<(), LinkError> {
        let index = self.index_of(name).await?;
        self.handle
            .address()
            .add(index, address, prefix)
            .replace()
            .execute()
            .await
            .map_err(netlink(format!("adding {address}/{prefix} to {name}")))
    }

    async fn add_route(
        &self,
        name: &str,
        (destination, prefix): (IpAddr, u8),
        gateway: IpAddr,
        on_link: bool,
        metric: u32,
    ) -> Result<(), LinkError> {
        let index = self.index_of(name).await?;
        let op = format!("adding route {destination}/{prefix} via {gateway} dev {name}");
        let message = match (destination, gateway) {
            (IpAddr::V4(destination), IpAddr::V4(gateway)) => {
                let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(destination, prefix)
                    .gateway(gateway)
                    .output_interface(index)
                    .priority(metric)
                    .protocol(RouteProtocol::Static);
                if on_link {
                    builder = builder.onlink();
                }
                builder.build()
            }
            (IpAddr::V6(destination), IpAddr::V6(gateway)) => {
                let mut builder = RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(destination, prefix)
                    .gateway(gateway)
                    .output_interface(index)
                    .priority(metric)
                    .protocol(RouteProtocol::Static);
                if on_link {
                    builder = builder.onlink();
                }
                builder.build()
            }
            _ => return Err(LinkError::Invalid(format!("{op}: mixed address families"))),
        };
        self.handle
            .route()
            .add(message)
            .replace()
            .execute()
            .await
            .map_err(netlink(op))
    }

    async fn set_by_name(
        &self,
        name: &str,
        what: &str,
        change: impl FnOnce(
            rtnetlink::LinkMessageBuilder<LinkUnspec>,
        ) -> rtnetlink::LinkMessageBuilder<LinkUnspec>,
    ) -> Result<(), LinkError> {
        let index = self.index_of(name).await?;
        self.handle
            .link()
            .set(change(LinkUnspec::new_with_index(index)).build())
            .execute()
            .await
            .map_err(netlink(format!("{what} {name}")))
    }
}

impl StaticControl for NetlinkLinks {
    async fn links(&self) -> Result<Vec<Link>, LinkError> {
        LinkControl::links(self).await
    }

    async fn apply(&self, action: &Action) -> Result<(), LinkError> {
        match action {
            Action::SetMtu { link, mtu } => {
                self.set_by_name(link, &format!("setting MTU {mtu} on"), |b| b.mtu(*mtu))
                    .await
            }
            Action::CreateBond {
                name,
                mac,
                mode,
                options,
            } => self.create_bond(name, *mac, *mode, options).await,
            Action::Enslave { slave, bond } => self.enslave(slave, bond).await,
            Action::CreateVlan {
                name,
                parent,
                id,
                mac,
            } => self.create_vlan(name, parent, *id, *mac).await,
            Action::SetUp { link } => self.set_by_name(link, "setting up", |b| b.up()).await,
            Action::Ipv6Autoconf {
                link,
                accept_ra,
                autoconf,
            } => self.ipv6_sysctls(link, *accept_ra, *autoconf),
            Action::AddAddress {
                link,
                address,
                prefix,
            } => self.add_ip(link, *address, *prefix).await,
            Action::AddRoute {
                link,
                destination,
                prefix,
                gateway,
                on_link,
                metric,
            } => {
                self.add_route(link, (*destination, *prefix), *gateway, *on_link, *metric)
                    .await
            }
        }
    }
}
