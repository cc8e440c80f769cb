//! Static network configuration from OpenStack `network_data.json` (spec §9.4): a pure
//! planner that turns the document and the machine's NICs into ordered link actions, and
//! tells which links stay for DHCP. [`super::static_apply`] carries the plan out over
//! rtnetlink. docs/network.md describes what is applied and in which order.
//!
//! Physical links are found by MAC (the permanent MAC when the kernel reports one, so a NIC
//! still matches after a bond changed its address). A link whose NIC is absent is a problem
//! for that link and whatever sits on it, never for the rest of the document.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;

use rivet_protocol::network_data::{Link, LinkKind, NetworkData, NetworkKind};

use super::static_bond::bond_options;
pub use super::static_bond::{bond_mode, BondOption};
use super::static_l3::{address_of, dns_of, routes_of};

/// Routes from network_data get metric `STATIC_METRIC + n` (n: the network's position), so
/// they win over DHCP routes (`100 + ifindex`) and each network keeps its own default route.
pub const STATIC_METRIC: u32 = 10;

/// One NIC of the machine, as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineLink {
    pub name: String,
    /// The permanent MAC when known, else the current one.
    pub mac: Vec<u8>,
}

/// One step of the plan, on links named by their kernel names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    SetMtu {
        link: String,
        mtu: u32,
    },
    /// A bond with its mode and driver options (set at creation, before any slave).
    CreateBond {
        name: String,
        mac: Option<[u8; 6]>,
        mode: u8,
        options: Vec<BondOption>,
    },
    /// Sets `slave` down and makes it a port of `bond`.
    Enslave {
        slave: String,
        bond: String,
    },
    CreateVlan {
        name: String,
        parent: String,
        id: u16,
        mac: Option<[u8; 6]>,
    },
    SetUp {
        link: String,
    },
    /// `accept_ra` and `autoconf` of the link's IPv6 configuration.
    Ipv6Autoconf {
        link: String,
        accept_ra: u8,
        autoconf: bool,
    },
    AddAddress {
        link: String,
        address: IpAddr,
        prefix: u8,
    },
    /// A route; `prefix` 0 is the default route.
    AddRoute {
        link: String,
        destination: IpAddr,
        prefix: u8,
        gateway: IpAddr,
        on_link: bool,
        metric: u32,
    },
}

impl Action {
    /// The link the action is about (the bond, for `Enslave`).
    pub fn link(&self) -> &str {
        match self {
            Action::SetMtu { link, .. }
            | Action::SetUp { link }
            | Action::Ipv6Autoconf { link, .. }
            | Action::AddAddress { link, .. }
            | Action::AddRoute { link, .. } => link,
            Action::CreateBond { name, .. } | Action::CreateVlan { name, .. } => name,
            Action::Enslave { bond, .. } => bond,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::SetMtu { link, mtu } => write!(f, "set MTU {mtu} on {link}"),
            Action::CreateBond {
                name,
                mode,
                options,
                ..
            } => {
                write!(
                    f,
                    "create bond {name} mode {}",
                    super::static_bond::mode_name(*mode)
                )?;
                for option in options {
                    write!(f, " {option}")?;
                }
                Ok(())
            }
            Action::Enslave { slave, bond } => write!(f, "enslave {slave} to {bond}"),
            Action::CreateVlan {
                name, parent, id, ..
            } => write!(f, "create VLAN {name} (id {id} on {parent})"),
            Action::SetUp { link } => write!(f, "set {link} up"),
            Action::Ipv6Autoconf {
                link,
                accept_ra,
                autoconf,
            } => write!(
                f,
                "IPv6 on {link}: accept_ra={accept_ra} autoconf={}",
                u8::from(*autoconf)
            ),
            Action::AddAddress {
                link,
                address,
                prefix,
            } => write!(f, "add {address}/{prefix} to {link}"),
            Action::AddRoute {
                link,
                destination,
                prefix,
                gateway,
                metric,
                ..
            } if *prefix == 0 => write!(
                f,
                "add default route via {gateway} dev {link} metric {metric} ({destination})"
            ),
            Action::AddRoute {
                link,
                destination,
                prefix,
                gateway,
                metric,
                ..
            } => write!(
                f,
                "add route {destination}/{prefix} via {gateway} dev {link} metric {metric}"
            ),
        }
    }
}

/// What a planned link is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Physical,
    Bond,
    /// A port of this bond.
    BondPort(String),
    Vlan,
}

/// A link the plan configures (one row of the console report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedLink {
    pub name: String,
    /// The link's `id` in network_data.
    pub id: String,
    pub role: Role,
    /// An `ipv4_dhcp` network is on it: bring-up runs DHCP here.
    pub dhcp: bool,
    /// Static addresses with prefix lengths.
    pub addresses: Vec<(IpAddr, u8)>,
    /// Gateways of its default routes.
    pub gateways: Vec<IpAddr>,
}

/// The planner's result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub links: Vec<PlannedLink>,
    /// DNS servers, document-wide ones first, without duplicates.
    pub dns: Vec<IpAddr>,
    /// What could not be planned, each naming the link or network; the rest still applies.
    pub problems: Vec<String>,
}

impl Plan {
    /// Links bring-up must leave alone: every planned link without an `ipv4_dhcp` network.
    pub fn exclude_from_dhcp(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .links
            .iter()
            .filter(|link| !link.dhcp)
            .map(|link| link.name.clone())
            .collect();
        names.dedup();
        names
    }

    /// Kernel modules the actions need (`bonding`, `8021q`).
    pub fn modules(&self) -> Vec<&'static str> {
        let mut modules = Vec::new();
        if self.links.iter().any(|l| l.role == Role::Bond) {
            modules.push("bonding");
        }
        if self.links.iter().any(|l| l.role == Role::Vlan) {
            modules.push("8021q");
        }
        modules
    }
}

/// Parses `aa:bb:cc:dd:ee:ff` (or with `-`), any case.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split([':', '-']);
    for byte in &mut mac {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// A name the kernel accepts for a new link: 1 to 15 bytes, no `/`, `:` or whitespace.
fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 15
        && name != "."
        && name != ".."
        && !name.contains(|c: char| c == '/' || c == ':' || c.is_whitespace())
}

struct Planner<'a> {
    data: &'a NetworkData,
    plan: Plan,
    /// network_data link id -> kernel name, for links that can be configured.
    names: BTreeMap<&'a str, String>,
    /// Names taken (machine NICs and links created by the plan).
    taken: BTreeSet<String>,
}

/// Plans `data` against the machine's NICs.
pub fn plan(data: &NetworkData, machine: &[MachineLink]) -> Plan {
    let mut planner = Planner {
        data,
        plan: Plan::default(),
        names: BTreeMap::new(),
        taken: machine.iter().map(|m| m.name.clone()).collect(),
    };
    planner.physical(machine);
    planner.bonds();
    planner.vlans();
    for name in planner
        .plan
        .links
        .iter()
        .map(|l| l.name.clone())
        .collect::<Vec<_>>()
    {
        planner.plan.actions.push(Action::SetUp { link: name });
    }
    planner.networks();
    planner.plan.dns = dns_of(data, &planner.names, &mut planner.plan.problems);
    planner.plan
}

impl<'a> Planner<'a> {
    fn problem(&mut self, text: String) {
        self.plan.problems.push(text);
    }

    fn add_link(&mut self, link: &'a Link, name: String, role: Role) {
        self.names.insert(&link.id, name.clone());
        self.plan.links.push(PlannedLink {
            name,
            id: link.id.clone(),
            role,
            dhcp: false,
            addresses: Vec::new(),
            gateways: Vec::new(),
        });
    }

    fn physical(&mut self, machine: &[MachineLink]) {
        let mut claimed: BTreeMap<String, &str> = BTreeMap::new();
        for link in self.data.links() {
            if link.kind() != LinkKind::Physical {
                continue;
            }
            let Some(text) = link.mac() else {
                self.problem(format!(
                    "link {}: no ethernet_mac_address to find the NIC by; not configured",
                    link.id
                ));
                continue;
            };
            let Some(mac) = parse_mac(text) else {
                self.problem(format!(
                    "link {}: ethernet_mac_address {text:?} is not a MAC; not configured",
                    link.id
                ));
                continue;
            };
            let Some(nic) = machine.iter().find(|m| m.mac == mac) else {
                self.problem(format!(
                    "link {}: no NIC with MAC {text} on this machine; it and what is on it are \
                     not configured",
                    link.id
                ));
                continue;
            };
            if let Some(first) = claimed.get(&nic.name) {
                self.problem(format!(
                    "link {}: MAC {text} is link {first}'s too; only {first} is configured",
                    link.id
                ));
                continue;
            }
            claimed.insert(nic.name.clone(), &link.id);
            if let Some(mtu) = link.mtu() {
                self.plan.actions.push(Action::SetMtu {
                    link: nic.name.clone(),
                    mtu,
                });
            }
            self.add_link(link, nic.name.clone(), Role::Physical);
        }
    }

    fn new_name(&mut self, wanted: &str, fallback: impl Fn(usize) -> String) -> String {
        let name = if valid_ifname(wanted) && !self.taken.contains(wanted) {
            wanted.to_string()
        } else {
            (0..)
                .map(fallback)
                .find(|n| !self.taken.contains(n))
                .unwrap_or_default()
        };
        self.taken.insert(name.clone());
        name
    }

    fn bonds(&mut self) {
        for link in self.data.links() {
            if link.kind() != LinkKind::Bond {
                continue;
            }
            let mode_text = link.bond_mode_text();
            let mode = match mode_text.as_deref().map(bond_mode) {
                Some(Ok(mode)) => mode,
                Some(Err(e)) => {
                    self.problem(format!("bond {}: {e}; not created", link.id));
                    continue;
                }
                None => {
                    self.problem(format!("bond {}: no bond_mode; not created", link.id));
                    continue;
                }
            };
            if mode_text.as_deref() == Some("802.1ad") {
                self.problem(format!(
                    "bond {}: bond_mode 802.1ad is read as 802.3ad (the nova spec's typo)",
                    link.id
                ));
            }
            let mut slaves = Vec::new();
            for id in link.bond_links() {
                match self.names.get(id.as_str()) {
                    Some(name) if self.is_free_physical(name) => slaves.push(name.clone()),
                    Some(name) => self.problem(format!(
                        "bond {}: port {id} ({name}) is already used elsewhere; left out",
                        link.id
                    )),
                    None => self.problem(format!(
                        "bond {}: port {id} is not a configured physical link; left out",
                        link.id
                    )),
                }
            }
            if slaves.is_empty() {
                self.problem(format!(
                    "bond {}: none of its ports is here; not created",
                    link.id
                ));
                continue;
            }
            let name = self.new_name(&link.id, |n| format!("bond{n}"));
            let options = bond_options(link, &self.names, &mut self.plan.problems);
            let mac = link.mac().and_then(parse_mac);
            self.plan.actions.push(Action::CreateBond {
                name: name.clone(),
                mac,
                mode,
                options,
            });
            for slave in &slaves {
                self.plan.actions.push(Action::Enslave {
                    slave: slave.clone(),
                    bond: name.clone(),
                });
                if let Some(row) = self.plan.links.iter_mut().find(|l| &l.name == slave) {
                    row.role = Role::BondPort(name.clone());
                }
            }
            if let Some(mtu) = link.mtu() {
                self.plan.actions.push(Action::SetMtu {
                    link: name.clone(),
                    mtu,
                });
            }
            self.add_link(link, name, Role::Bond);
        }
    }

    fn is_free_physical(&self, name: &str) -> bool {
        self.plan
            .links
            .iter()
            .any(|l| l.name == name && l.role == Role::Physical)
    }

    /// VLANs in dependency order: a VLAN on another VLAN comes after its parent.
    fn vlans(&mut self) {
        let mut pending: Vec<&'a Link> = self
            .data
            .links()
            .iter()
            .filter(|l| l.kind() == LinkKind::Vlan)
            .collect();
        loop {
            let before = pending.len();
            pending.retain(|link| {
                let Some(parent) = link.vlan_link.as_deref() else {
                    return true;
                };
                let Some(parent_name) = self.names.get(parent).cloned() else {
                    return true;
                };
                self.vlan(link, parent_name);
                false
            });
            if pending.len() == before {
                break;
            }
        }
        for link in pending {
            let problem = match (&link.vlan_link, link.vlan_id) {
                (None, _) => "no vlan_link".to_string(),
                (Some(parent), _) => format!("its vlan_link {parent} is not configured"),
            };
            self.problem(format!("VLAN {}: {problem}; not created", link.id));
        }
    }

    fn vlan(&mut self, link: &'a Link, parent: String) {
        let Some(id) = link.vlan_id.filter(|id| (1..=4094).contains(id)) else {
            self.problem(format!(
                "VLAN {}: vlan_id {:?} is not 1-4094; not created",
                link.id, link.vlan_id
            ));
            return;
        };
        if let Some(row) = self.plan.links.iter().find(|l| l.name == parent) {
            if let Role::BondPort(bond) = &row.role {
                self.problem(format!(
                    "VLAN {}: {parent} is a port of {bond}; not created",
                    link.id
                ));
                return;
            }
        }
        let wanted = format!("{parent}.{id}");
        let name = self.new_name(&wanted, |n| match n {
            0 => format!("vlan{id}"),
            n => format!("vlan{id}-{n}"),
        });
        let mac = link.vlan_mac().or(link.mac()).and_then(parse_mac);
        self.plan.actions.push(Action::CreateVlan {
            name: name.clone(),
            parent,
            id,
            mac,
        });
        if let Some(mtu) = link.mtu() {
            self.plan.actions.push(Action::SetMtu {
                link: name.clone(),
                mtu,
            });
        }
        self.add_link(link, name, Role::Vlan);
    }

    fn networks(&mut self) {
        for (position, network) in self.data.networks().iter().enumerate() {
            let label = network.id.clone().unwrap_or_else(|| format!("#{position}"));
            let Some(name) = self.names.get(network.link.as_str()).cloned() else {
                let why = match self.data.link(&network.link) {
                    Some(_) => "is not configured",
                    None => "is not in links",
                };
                self.problem(format!(
                    "network {label}: its link {} {why}; not configured",
                    network.link
                ));
                continue;
            };
            if let Some(Role::BondPort(bond)) = self.role_of(&name) {
                self.problem(format!(
                    "network {label}: {name} is a port of {bond}; not configured"
                ));
                continue;
            }
            match network.kind() {
                NetworkKind::Ipv4Dhcp => {
                    if let Some(row) = self.row(&name) {
                        row.dhcp = true;
                    }
                }
                NetworkKind::Ipv6Slaac => self.autoconf(&name, 2, true),
                NetworkKind::Ipv6Dhcp => {
                    self.problem(format!(
                        "network {label}: DHCPv6 is not supported by rivet; {name} accepts \
                         router advertisements (SLAAC) instead"
                    ));
                    self.autoconf(&name, 2, true);
                }
                NetworkKind::Ipv4 | NetworkKind::Ipv6 => {
                    self.static_network(network, &label, &name, position)
                }
                NetworkKind::Unknown => self.problem(format!(
                    "network {label}: type {:?} is not one of ipv4, ipv6, ipv4_dhcp, \
                     ipv6_dhcp, ipv6_slaac; not configured",
                    network.network_type
                )),
            }
        }
    }

    fn static_network(
        &mut self,
        network: &rivet_protocol::network_data::Network,
        label: &str,
        name: &str,
        position: usize,
    ) {
        let ipv6 = network.kind() == NetworkKind::Ipv6;
        let (address, prefix) = match address_of(network, ipv6) {
            Ok(found) => found,
            Err(e) => {
                self.problem(format!("network {label}: {e}; not configured"));
                return;
            }
        };
        if ipv6 {
            // Routes come from the document, not from router advertisements.
            self.autoconf(name, 0, false);
        }
        self.plan.actions.push(Action::AddAddress {
            link: name.to_string(),
            address,
            prefix,
        });
        if let Some(row) = self.row(name) {
            row.addresses.push((address, prefix));
        }
        let metric = STATIC_METRIC + u32::try_from(position).unwrap_or(u32::MAX - STATIC_METRIC);
        for route in routes_of(network, label, (address, prefix), &mut self.plan.problems) {
            if route.prefix == 0 {
                if let Some(row) = self.row(name) {
                    row.gateways.push(route.gateway);
                }
            }
            self.plan.actions.push(Action::AddRoute {
                link: name.to_string(),
                destination: route.destination,
                prefix: route.prefix,
                gateway: route.gateway,
                on_link: route.on_link,
                metric,
            });
        }
    }

    fn role_of(&self, name: &str) -> Option<&Role> {
        self.plan
            .links
            .iter()
            .find(|l| l.name == name)
            .map(|l| &l.role)
    }

    fn row(&mut self, name: &str) -> Option<&mut PlannedLink> {
        self.plan.links.iter_mut().find(|l| l.name == name)
    }

    fn autoconf(&mut self, name: &str, accept_ra: u8, autoconf: bool) {
        let action = Action::Ipv6Autoconf {
            link: name.to_string(),
            accept_ra,
            autoconf,
        };
        if !self.plan.actions.contains(&action) {
            self.plan.actions.push(action);
        }
    }
}

#[cfg(test)]
#[path = "static_config_tests.rs"]
mod tests;
