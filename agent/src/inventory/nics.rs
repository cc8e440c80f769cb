//! `inventory.interfaces`: the interfaces lookup uses ([`crate::net::interfaces`]), each
//! described from sysfs: carrier, PCI vendor/device ids, PCI address, driver and speed.

use std::collections::BTreeMap;

use rivet_protocol::inventory::{LldpTlv, NetworkInterface};
use rivet_protocol::JsonObject;

use super::hostfs::HostFs;
use super::InventoryError;
use crate::net::interfaces::{list_interfaces, NetInfo, NetInterface};

/// Every interface with a MAC. `lldp` is the per-interface raw LLDP (`ipa-collect-lldp`):
/// `None` leaves `interfaces[].lldp` null, as IPA does when the option is off.
pub fn collect(
    fs: &HostFs,
    net: &dyn NetInfo,
    lldp: Option<&BTreeMap<String, Vec<LldpTlv>>>,
) -> Result<Vec<NetworkInterface>, InventoryError> {
    let interfaces = list_interfaces(net)?;
    Ok(interfaces
        .iter()
        .map(|interface| describe(fs, interface, lldp))
        .collect())
}

fn describe(
    fs: &HostFs,
    interface: &NetInterface,
    lldp: Option<&BTreeMap<String, Vec<LldpTlv>>>,
) -> NetworkInterface {
    let dir = format!("sys/class/net/{}", interface.name);
    let attribute = |name: &str| fs.attribute(&format!("{dir}/{name}"));
    NetworkInterface {
        name: interface.name.clone(),
        mac_address: interface.mac_address.clone(),
        ipv4_address: interface.ipv4_addresses.first().map(|a| a.to_string()),
        ipv6_address: interface.ipv6_addresses.first().map(|a| a.to_string()),
        has_carrier: attribute("carrier").as_deref() == Some("1"),
        lldp: lldp.map(|all| all.get(&interface.name).cloned().unwrap_or_default()),
        vendor: attribute("device/vendor"),
        product: attribute("device/device"),
        client_id: None,
        biosdevname: None,
        speed_mbps: attribute("speed")
            .and_then(|s| s.parse::<i64>().ok())
            .filter(|s| *s > 0)
            .and_then(|s| u32::try_from(s).ok()),
        pci_address: pci_address(fs, &dir),
        driver: fs.link_name(&format!("{dir}/device/driver")),
        extra: JsonObject::new(),
    }
}

/// The PCI address of the NIC: the `device` link's own name when it is one (`0000:3b:00.0`),
/// else the nearest PCI device above it (a virtio NIC's `device` is `virtio0`, on a PCI
/// function). IPA reports the `device` link's name whatever it is.
fn pci_address(fs: &HostFs, dir: &str) -> Option<String> {
    let device = format!("{dir}/device");
    let own = fs.link_name(&device)?;
    if is_pci_address(&own) {
        return Some(own);
    }
    let resolved = fs.resolve(&device)?;
    resolved
        .iter()
        .rev()
        .find(|component| is_pci_address(component))
        .cloned()
        .or(Some(own))
}

/// `dddd:bb:dd.f` in hex.
pub fn is_pci_address(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 12
        && bytes[4] == b':'
        && bytes[7] == b':'
        && bytes[10] == b'.'
        && bytes
            .iter()
            .enumerate()
            .all(|(i, b)| matches!(i, 4 | 7 | 10) || b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:3b:00.0"));
        assert!(is_pci_address("0001:af:1f.7"));
        assert!(!is_pci_address("virtio0"));
        assert!(!is_pci_address("0000:3b:00"));
        assert!(!is_pci_address("pci0000:00"));
    }
}
