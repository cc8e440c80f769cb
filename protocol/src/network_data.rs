//! OpenStack `network_data.json` (nova's config-drive network metadata; spec §9.4), as Ironic
//! writes it to `openstack/latest/network_data.json` of the virtual-media ISO.
//!
//! Three lists: `links` (layer 2: physical NICs by MAC, bonds, VLANs), `networks` (layer 3 on a
//! link: static IPv4/IPv6 with routes, or DHCP/SLAAC) and `services` (DNS servers). The types
//! follow nova's schema (`doc/api_schemas/network_data.json`) but accept what real producers
//! write outside it: `"type": null` links, `"mtu": null`, numeric bond modes, IPv6 addresses
//! with a `/prefix`, per-network `dns_nameservers`. Keys that may be null keep "null" and
//! "absent" apart, and unknown keys are kept in `extra`, so a document re-serializes to the
//! same JSON value.
//!
//! Bond driver options (`bond_miimon`, `bond_xmit_hash_policy`, `bond_lacp_rate`, ...) are the
//! kernel bonding options prefixed with `bond_`; Ironic copies port-group properties there
//! verbatim (strings or numbers). They stay in [`Link::extra`] and are read with
//! [`Link::bond_options`].

use serde::{Deserialize, Serialize};

use crate::JsonObject;

/// The whole document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Vec<Link>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<Vec<Network>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<Service>>,
    #[serde(flatten)]
    pub extra: JsonObject,
}

impl NetworkData {
    /// Parses the file's text.
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    pub fn links(&self) -> &[Link] {
        self.links.as_deref().unwrap_or_default()
    }

    pub fn networks(&self) -> &[Network] {
        self.networks.as_deref().unwrap_or_default()
    }

    pub fn services(&self) -> &[Service] {
        self.services.as_deref().unwrap_or_default()
    }

    /// The link with this `id`.
    pub fn link(&self, id: &str) -> Option<&Link> {
        self.links().iter().find(|link| link.id == id)
    }
}

/// What a link is, from its `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// A NIC found by its MAC: `phy`, and every other type nova lists for ports (`vif`,
    /// `ovs`, `tap`, `bridge`, `hw_veb`, ...), unknown types and null.
    Physical,
    Bond,
    Vlan,
}

/// One entry of `links`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// Referenced by `bond_links`, `vlan_link` and networks' `link`.
    pub id: String,
    /// `phy`, `bond`, `vlan`, `vif`, ...; null in some producers' data. `None`: absent.
    #[serde(
        rename = "type",
        default,
        deserialize_with = "crate::serde_util::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub link_type: Option<Option<String>>,
    /// The NIC's MAC (physical links), or the MAC to give a bond.
    #[serde(
        default,
        deserialize_with = "crate::serde_util::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ethernet_mac_address: Option<Option<String>>,
    #[serde(
        default,
        deserialize_with = "crate::serde_util::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub mtu: Option<Option<u32>>,
    #[serde(
        default,
        deserialize_with = "crate::serde_util::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub vif_id: Option<Option<String>>,
    /// Bonds: the `id`s of the links enslaved to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bond_links: Option<Vec<String>>,
    /// Bonds: `802.3ad`, `balance-rr`, `active-backup`, ... or the mode's number, as a
    /// string or a number.
    #[serde(
        default,
        deserialize_with = "crate::serde_util::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub bond_mode: Option<serde_json::Value>,
    /// VLANs: the `id` of the link the VLAN sits on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan_id: Option<u16>,
    #[serde(
        default,
        deserialize_with = "crate::serde_util::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub vlan_mac_address: Option<Option<String>>,
    /// Everything else, bond driver options included.
    #[serde(flatten)]
    pub extra: JsonObject,
}

impl Link {
    pub fn kind(&self) -> LinkKind {
        match self.type_name() {
            Some("bond") => LinkKind::Bond,
            Some("vlan") => LinkKind::Vlan,
            _ => LinkKind::Physical,
        }
    }

    /// The `type` string, if one was given.
    pub fn type_name(&self) -> Option<&str> {
        self.link_type.as_ref()?.as_deref()
    }

    pub fn mac(&self) -> Option<&str> {
        self.ethernet_mac_address.as_ref()?.as_deref()
    }

    pub fn mtu(&self) -> Option<u32> {
        self.mtu.flatten()
    }

    pub fn vlan_mac(&self) -> Option<&str> {
        self.vlan_mac_address.as_ref()?.as_deref()
    }

    pub fn bond_links(&self) -> &[String] {
        self.bond_links.as_deref().unwrap_or_default()
    }

    /// The bond mode as text (`"802.3ad"`, `"4"`), whether given as a string or a number.
    pub fn bond_mode_text(&self) -> Option<String> {
        scalar_text(self.bond_mode.as_ref()?)
    }

    /// Bond driver options other than the mode: every `bond_<option>` key of [`Self::extra`]
    /// with the prefix removed (`bond_miimon` -> `miimon`), in key order, values as text
    /// (numbers and booleans written out, null and nested values skipped).
    pub fn bond_options(&self) -> Vec<(String, String)> {
        self.extra
            .iter()
            .filter_map(|(key, value)| {
                let option = key.strip_prefix("bond_")?;
                Some((option.to_string(), scalar_text(value)?))
            })
            .collect()
    }
}

fn scalar_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) => Some(text.clone()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        serde_json::Value::Bool(flag) => Some(flag.to_string()),
        _ => None,
    }
}

/// What a network asks for, from its `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkKind {
    /// Static IPv4 (`ipv4`).
    Ipv4,
    /// Static IPv6 (`ipv6`).
    Ipv6,
    Ipv4Dhcp,
    /// DHCPv6 (`ipv6_dhcp`, `ipv6_dhcpv6-stateful`).
    Ipv6Dhcp,
    /// Router advertisements (`ipv6_slaac`, `ipv6_dhcpv6-stateless`).
    Ipv6Slaac,
    /// A type nova does not define.
    Unknown,
}

/// One entry of `networks`: layer-3 configuration of one link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The `id` of the link this network is on.
    pub link: String,
    #[serde(rename = "type")]
    pub network_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_id: Option<String>,
    /// The address; IPv6 may carry its prefix (`2001:db8::5/64`) instead of a netmask.
    #[serde(
        default,
        deserialize_with = "crate::serde_util::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub ip_address: Option<Option<String>>,
    /// Dotted IPv4 mask, IPv6 mask (`ffff:ffff:ffff:ffff::`) or a prefix length.
    #[serde(
        default,
        deserialize_with = "crate::serde_util::present",
        skip_serializing_if = "Option::is_none"
    )]
    pub netmask: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<Route>>,
    /// DNS servers of this network (nova's schema).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub services: Option<Vec<Service>>,
    /// DNS servers of this network (the nova spec's example).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_nameservers: Option<Vec<String>>,
    #[serde(flatten)]
    pub extra: JsonObject,
}

impl Network {
    pub fn kind(&self) -> NetworkKind {
        match self.network_type.as_str() {
            "ipv4" => NetworkKind::Ipv4,
            "ipv6" => NetworkKind::Ipv6,
            "ipv4_dhcp" => NetworkKind::Ipv4Dhcp,
            "ipv6_dhcp" | "ipv6_dhcpv6-stateful" => NetworkKind::Ipv6Dhcp,
            "ipv6_slaac" | "ipv6_dhcpv6-stateless" => NetworkKind::Ipv6Slaac,
            _ => NetworkKind::Unknown,
        }
    }

    pub fn ip_address(&self) -> Option<&str> {
        self.ip_address.as_ref()?.as_deref()
    }

    /// The netmask as text (a number is a prefix length).
    pub fn netmask_text(&self) -> Option<String> {
        scalar_text(self.netmask.as_ref()?)
    }

    pub fn routes(&self) -> &[Route] {
        self.routes.as_deref().unwrap_or_default()
    }

    /// DNS server addresses of this network: `services` of type `dns`, then
    /// `dns_nameservers`.
    pub fn dns_servers(&self) -> Vec<&str> {
        let services = self.services.as_deref().unwrap_or_default();
        services
            .iter()
            .filter(|service| service.is_dns())
            .map(|service| service.address.as_str())
            .chain(
                self.dns_nameservers
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .map(String::as_str),
            )
            .collect()
    }
}

/// One entry of a network's `routes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    /// Destination network address (`0.0.0.0` / `::` with an all-zero mask: default route).
    pub network: String,
    /// Destination mask, dotted or IPv6 or a prefix length.
    pub netmask: serde_json::Value,
    pub gateway: String,
    #[serde(flatten)]
    pub extra: JsonObject,
}

impl Route {
    pub fn netmask_text(&self) -> Option<String> {
        scalar_text(&self.netmask)
    }
}

/// One entry of `services` (document-wide or per network).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// `dns` is the only type nova defines.
    #[serde(rename = "type")]
    pub service_type: String,
    pub address: String,
    #[serde(flatten)]
    pub extra: JsonObject,
}

impl Service {
    pub fn is_dns(&self) -> bool {
        self.service_type == "dns"
    }
}
