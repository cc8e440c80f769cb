//! What an LLDPDU says about the switch port at the other end of the cable, decoded from
//! its TLVs: chassis and port ids with their subtypes, names and descriptions, capabilities,
//! management addresses, and the IEEE 802.1 (VLANs, link aggregation) and 802.3 (MAC/PHY,
//! aggregation, MTU) organizational TLVs.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde::Serialize;

use super::frame::{
    Tlv, TLV_CAPABILITIES, TLV_CHASSIS_ID, TLV_MANAGEMENT_ADDRESS, TLV_ORGANIZATIONAL,
    TLV_PORT_DESCRIPTION, TLV_PORT_ID, TLV_SYSTEM_DESCRIPTION, TLV_SYSTEM_NAME, TLV_TTL,
};
use crate::net::interfaces::format_mac;

const OUI_8021: [u8; 3] = [0x00, 0x80, 0xc2];
const OUI_8023: [u8; 3] = [0x00, 0x12, 0x0f];

/// The switch port a NIC is cabled to, as its LLDPDU describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Neighbor {
    pub chassis_id: Option<String>,
    /// `mac_address`, `network_address`, `interface_name`, `local`, ...
    pub chassis_id_subtype: Option<String>,
    pub port_id: Option<String>,
    pub port_id_subtype: Option<String>,
    /// Seconds the information stays valid.
    pub ttl: Option<u16>,
    pub port_description: Option<String>,
    pub system_name: Option<String>,
    pub system_description: Option<String>,
    /// Capabilities the system has (`bridge`, `router`, ...).
    pub capabilities: Vec<String>,
    /// Capabilities enabled.
    pub enabled_capabilities: Vec<String>,
    pub management_addresses: Vec<String>,
    /// 802.1 port VLAN id: the untagged VLAN of the port.
    pub port_vlan_id: Option<u16>,
    /// 802.1 VLAN names: the VLANs configured on the port.
    pub vlans: Vec<Vlan>,
    pub link_aggregation: Option<LinkAggregation>,
    /// 802.3 maximum frame size.
    pub mtu: Option<u16>,
    pub autonegotiation: Option<Autonegotiation>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vlan {
    pub id: u16,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkAggregation {
    pub capable: bool,
    pub enabled: bool,
    /// The aggregated port id (0 when not aggregated).
    pub port_id: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Autonegotiation {
    pub supported: bool,
    pub enabled: bool,
    /// IEEE 802.3 MAU type of the link (e.g. 30 = 10GBASE-SR... as numbered by RFC 4836).
    pub mau_type: u16,
}

impl Neighbor {
    /// Decodes what it understands; malformed TLVs are skipped.
    pub fn from_tlvs(tlvs: &[Tlv]) -> Neighbor {
        let mut n = Neighbor::default();
        for tlv in tlvs {
            let v = tlv.value.as_slice();
            match tlv.kind {
                TLV_CHASSIS_ID if !v.is_empty() => {
                    n.chassis_id_subtype = Some(chassis_subtype(v[0]).to_string());
                    n.chassis_id = Some(id_text(v[0], 4, 5, &v[1..]));
                }
                TLV_PORT_ID if !v.is_empty() => {
                    n.port_id_subtype = Some(port_subtype(v[0]).to_string());
                    n.port_id = Some(id_text(v[0], 3, 4, &v[1..]));
                }
                TLV_TTL if v.len() >= 2 => n.ttl = Some(u16::from_be_bytes([v[0], v[1]])),
                TLV_PORT_DESCRIPTION => n.port_description = Some(text(v)),
                TLV_SYSTEM_NAME => n.system_name = Some(text(v)),
                TLV_SYSTEM_DESCRIPTION => n.system_description = Some(text(v)),
                TLV_CAPABILITIES if v.len() >= 4 => {
                    n.capabilities = capability_names(u16::from_be_bytes([v[0], v[1]]));
                    n.enabled_capabilities = capability_names(u16::from_be_bytes([v[2], v[3]]));
                }
                TLV_MANAGEMENT_ADDRESS => {
                    if let Some(address) = management_address(v) {
                        n.management_addresses.push(address);
                    }
                }
                TLV_ORGANIZATIONAL if v.len() >= 4 => n.organizational(&v[..3], v[3], &v[4..]),
                _ => {}
            }
        }
        n
    }

    fn organizational(&mut self, oui: &[u8], subtype: u8, v: &[u8]) {
        match (oui, subtype) {
            (o, 1) if o == OUI_8021 && v.len() >= 2 => {
                self.port_vlan_id = Some(u16::from_be_bytes([v[0], v[1]]));
            }
            (o, 3) if o == OUI_8021 && v.len() >= 3 => {
                let id = u16::from_be_bytes([v[0], v[1]]);
                let len = v[2] as usize;
                let name = v.get(3..3 + len).map(text).unwrap_or_default();
                self.vlans.push(Vlan { id, name });
            }
            // 802.1AX (802.1 subtype 7) and the older 802.3 subtype 3 share one layout.
            (o, 7) | (o, 3) if (o == OUI_8021 || o == OUI_8023) && v.len() >= 5 => {
                self.link_aggregation = Some(LinkAggregation {
                    capable: v[0] & 0x01 != 0,
                    enabled: v[0] & 0x02 != 0,
                    port_id: u32::from_be_bytes([v[1], v[2], v[3], v[4]]),
                });
            }
            (o, 1) if o == OUI_8023 && v.len() >= 5 => {
                self.autonegotiation = Some(Autonegotiation {
                    supported: v[0] & 0x01 != 0,
                    enabled: v[0] & 0x02 != 0,
                    mau_type: u16::from_be_bytes([v[3], v[4]]),
                });
            }
            (o, 4) if o == OUI_8023 && v.len() >= 2 => {
                self.mtu = Some(u16::from_be_bytes([v[0], v[1]]));
            }
            _ => {}
        }
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .trim_end_matches('\0')
        .trim()
        .to_string()
}

/// A chassis or port id: a MAC for the MAC subtype, an address for the network-address
/// subtype, text otherwise.
fn id_text(subtype: u8, mac_subtype: u8, network_subtype: u8, v: &[u8]) -> String {
    if subtype == mac_subtype && v.len() == 6 {
        return format_mac(v);
    }
    if subtype == network_subtype {
        if let Some(address) = network_address(v) {
            return address;
        }
    }
    if v.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        text(v)
    } else {
        hex::encode(v)
    }
}

/// IANA address family (1 = IPv4, 2 = IPv6, 6 = 802 MAC) followed by the address.
fn network_address(v: &[u8]) -> Option<String> {
    match (v.first()?, v.len() - 1) {
        (1, 4) => Some(Ipv4Addr::new(v[1], v[2], v[3], v[4]).to_string()),
        (2, 16) => {
            let octets: [u8; 16] = v[1..17].try_into().ok()?;
            Some(Ipv6Addr::from(octets).to_string())
        }
        (6, 6) => Some(format_mac(&v[1..7])),
        _ => None,
    }
}

/// [length of subtype + address][subtype][address]...
fn management_address(v: &[u8]) -> Option<String> {
    let len = *v.first()? as usize;
    network_address(v.get(1..1 + len)?)
}

fn chassis_subtype(code: u8) -> &'static str {
    match code {
        1 => "chassis_component",
        2 => "interface_alias",
        3 => "port_component",
        4 => "mac_address",
        5 => "network_address",
        6 => "interface_name",
        7 => "local",
        _ => "reserved",
    }
}

fn port_subtype(code: u8) -> &'static str {
    match code {
        1 => "interface_alias",
        2 => "port_component",
        3 => "mac_address",
        4 => "network_address",
        5 => "interface_name",
        6 => "agent_circuit_id",
        7 => "local",
        _ => "reserved",
    }
}

fn capability_names(bits: u16) -> Vec<String> {
    const NAMES: [&str; 11] = [
        "other",
        "repeater",
        "bridge",
        "wlan_access_point",
        "router",
        "telephone",
        "docsis_cable_device",
        "station",
        "c_vlan",
        "s_vlan",
        "tpmr",
    ];
    NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| bits & (1 << bit) != 0)
        .map(|(_, name)| name.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn org(oui: [u8; 3], subtype: u8, data: &[u8]) -> Tlv {
        let mut v = oui.to_vec();
        v.push(subtype);
        v.extend_from_slice(data);
        Tlv::new(TLV_ORGANIZATIONAL, v)
    }

    #[test]
    fn every_tlv_the_issue_lists() {
        let tlvs = vec![
            Tlv::new(TLV_CHASSIS_ID, vec![4, 0x00, 0x1c, 0x73, 0xaa, 0xbb, 0xcc]),
            Tlv::new(TLV_PORT_ID, b"\x05Ethernet12".to_vec()),
            Tlv::new(TLV_TTL, vec![0, 120]),
            Tlv::new(TLV_PORT_DESCRIPTION, b"server42 eno1".to_vec()),
            Tlv::new(TLV_SYSTEM_NAME, b"leaf-1.rack7".to_vec()),
            Tlv::new(TLV_SYSTEM_DESCRIPTION, b"Arista Networks EOS".to_vec()),
            Tlv::new(TLV_CAPABILITIES, vec![0x00, 0x14, 0x00, 0x04]),
            Tlv::new(
                TLV_MANAGEMENT_ADDRESS,
                vec![5, 1, 192, 0, 2, 7, 2, 0, 0, 0, 1, 0],
            ),
            org(OUI_8021, 1, &[0x00, 0x64]),
            org(OUI_8021, 3, &[0x00, 0x64, 4, b'p', b'r', b'o', b'v']),
            org(
                OUI_8021,
                3,
                &[0x00, 0xc8, 7, b's', b't', b'o', b'r', b'a', b'g', b'e'],
            ),
            org(OUI_8021, 7, &[0x03, 0, 0, 0, 12]),
            org(OUI_8023, 1, &[0x03, 0x6c, 0x00, 0x00, 0x1e]),
            org(OUI_8023, 4, &[0x23, 0x9b]),
        ];
        let n = Neighbor::from_tlvs(&tlvs);
        assert_eq!(n.chassis_id.as_deref(), Some("00:1c:73:aa:bb:cc"));
        assert_eq!(n.chassis_id_subtype.as_deref(), Some("mac_address"));
        assert_eq!(n.port_id.as_deref(), Some("Ethernet12"));
        assert_eq!(n.port_id_subtype.as_deref(), Some("interface_name"));
        assert_eq!(n.ttl, Some(120));
        assert_eq!(n.port_description.as_deref(), Some("server42 eno1"));
        assert_eq!(n.system_name.as_deref(), Some("leaf-1.rack7"));
        assert_eq!(n.system_description.as_deref(), Some("Arista Networks EOS"));
        assert_eq!(n.capabilities, vec!["bridge", "router"]);
        assert_eq!(n.enabled_capabilities, vec!["bridge"]);
        assert_eq!(n.management_addresses, vec!["192.0.2.7"]);
        assert_eq!(n.port_vlan_id, Some(100));
        assert_eq!(
            n.vlans,
            vec![
                Vlan {
                    id: 100,
                    name: "prov".into()
                },
                Vlan {
                    id: 200,
                    name: "storage".into()
                }
            ]
        );
        assert_eq!(
            n.link_aggregation,
            Some(LinkAggregation {
                capable: true,
                enabled: true,
                port_id: 12
            })
        );
        assert_eq!(
            n.autonegotiation,
            Some(Autonegotiation {
                supported: true,
                enabled: true,
                mau_type: 30
            })
        );
        assert_eq!(n.mtu, Some(9115));
    }

    #[test]
    fn ids_by_subtype() {
        assert_eq!(
            id_text(4, 3, 4, &[1, 10, 0, 0, 1]),
            "10.0.0.1",
            "port: network"
        );
        assert_eq!(id_text(7, 4, 5, b"local-42"), "local-42");
        assert_eq!(id_text(1, 4, 5, &[0xff, 0x01]), "ff01", "binary ids as hex");
        let mut v6 = vec![17, 2];
        v6.extend_from_slice(&"2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
        assert_eq!(management_address(&v6).as_deref(), Some("2001:db8::1"));
    }

    #[test]
    fn short_tlvs_are_skipped() {
        let n = Neighbor::from_tlvs(&[
            Tlv::new(TLV_TTL, vec![1]),
            Tlv::new(TLV_CAPABILITIES, vec![0]),
            Tlv::new(TLV_ORGANIZATIONAL, vec![0x00, 0x80]),
            Tlv::new(TLV_CHASSIS_ID, vec![]),
        ]);
        assert_eq!(n, Neighbor::default());
    }
}
