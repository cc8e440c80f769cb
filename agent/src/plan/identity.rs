//! What a plan's machine matchers are compared with: the NICs' MAC addresses and the SMBIOS
//! system UUID and serial number (`/sys/class/dmi/id/product_uuid`, `product_serial`).

use std::path::Path;

use rivet_protocol::plan::Identity;

use crate::net::interfaces::{list_interfaces, NetInfo};

/// Where the kernel shows the SMBIOS system fields.
pub const DMI_DIR: &str = "/sys/class/dmi/id";

/// Values firmware writes when it has none.
const PLACEHOLDERS: [&str; 6] = [
    "",
    "none",
    "not specified",
    "to be filled by o.e.m.",
    "default string",
    "03000200-0400-0500-0006-000700080009",
];

fn dmi_value(dir: &Path, name: &str) -> Option<String> {
    let value = std::fs::read_to_string(dir.join(name)).ok()?;
    let value = value.trim();
    let placeholder = PLACEHOLDERS.iter().any(|p| p.eq_ignore_ascii_case(value))
        || value
            .chars()
            .all(|c| c == '0' || c == '-' || c == 'f' || c == 'F');
    (!placeholder).then(|| value.to_string())
}

/// This machine's identity; what cannot be read is left out (and logged).
pub fn read_identity(net: &dyn NetInfo, dmi_dir: &Path) -> Identity {
    let macs = match list_interfaces(net) {
        Ok(interfaces) => interfaces
            .into_iter()
            .map(|i| i.mac_address.to_ascii_lowercase())
            .collect(),
        Err(e) => {
            tracing::warn!("plan: listing network interfaces for the machine matchers: {e}");
            Vec::new()
        }
    };
    Identity {
        macs,
        system_uuid: dmi_value(dmi_dir, "product_uuid").map(|u| u.to_ascii_lowercase()),
        serial: dmi_value(dmi_dir, "product_serial"),
    }
}
