//! The `pci-devices` collector: every device of `/sys/bus/pci/devices` with its ids, class,
//! revision and NUMA node, in IPA's shape (ids without the `0x`).

use rivet_protocol::inspection::PciDevice;
use rivet_protocol::JsonObject;

use super::hostfs::HostFs;
use super::InventoryError;

const DIR: &str = "sys/bus/pci/devices";

pub fn collect(fs: &HostFs) -> Result<Vec<PciDevice>, InventoryError> {
    let mut devices = Vec::new();
    for bus in fs.list(DIR)? {
        let attribute = |name: &str| fs.attribute(&format!("{DIR}/{bus}/{name}"));
        let hex =
            |name: &str| attribute(name).and_then(|v| v.strip_prefix("0x").map(str::to_string));
        let (Some(vendor_id), Some(product_id), Some(class)) =
            (hex("vendor"), hex("device"), hex("class"))
        else {
            tracing::warn!(device = %bus, "PCI device without readable vendor, device or class");
            continue;
        };
        let revision = hex("revision").unwrap_or_default();
        let numa_node_id = attribute("numa_node").and_then(|n| n.parse().ok());
        devices.push(PciDevice {
            vendor_id,
            product_id,
            class,
            revision,
            bus,
            numa_node_id,
            extra: JsonObject::new(),
        });
    }
    Ok(devices)
}
