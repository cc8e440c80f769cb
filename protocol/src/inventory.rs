//! The hardware inventory (spec §7.1, §7.2): `data.inventory` of the inspection payload.
//!
//! Field types follow IPA 13's output as recorded against Ironic 39: keys IPA always writes
//! are always serialized (as null when unknown); only `bmc_mac` is left out when unknown.

use serde::{Deserialize, Serialize};

use crate::JsonObject;

/// The inventory IPA's `list_hardware_info` produces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inventory {
    pub interfaces: Vec<NetworkInterface>,
    pub cpu: Cpu,
    pub disks: Vec<BlockDevice>,
    pub memory: Memory,
    /// IPv4 BMC address: `"0.0.0.0"` when IPMI reports none, null when not detected (also
    /// when Ironic says `agent_skip_bmc_detect`).
    pub bmc_address: Option<String>,
    /// IPv6 BMC address: `"::/0"` when IPMI reports none, null when not detected.
    pub bmc_v6address: Option<String>,
    /// Omitted when unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bmc_mac: Option<String>,
    pub system_vendor: SystemVendor,
    pub boot: BootInfo,
    pub hostname: String,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// One network interface (`/sys/class/net` entries with a device, VLANs and bonds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub name: String,
    pub mac_address: String,
    pub ipv4_address: Option<String>,
    pub ipv6_address: Option<String>,
    pub has_carrier: bool,
    /// Raw LLDP TLVs, only when `ipa-collect-lldp` is set; null otherwise. An interface that
    /// saw no frame gets an empty list.
    pub lldp: Option<Vec<LldpTlv>>,
    /// PCI vendor id as sysfs writes it (`"0x8086"`).
    pub vendor: Option<String>,
    /// PCI device id as sysfs writes it (`"0x1572"`).
    pub product: Option<String>,
    /// DHCP client identifier, InfiniBand only.
    pub client_id: Option<String>,
    pub biosdevname: Option<String>,
    /// Link speed; null when the driver does not know it.
    pub speed_mbps: Option<u32>,
    /// `"0000:3b:00.0"`.
    pub pci_address: Option<String>,
    /// Kernel driver name (`"i40e"`).
    pub driver: Option<String>,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// One raw LLDP TLV: the 7-bit type and the value bytes as lowercase hex. On the wire a
/// 2-element array `[type, "hex"]` (spec §7.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LldpTlv(pub u8, pub String);

impl LldpTlv {
    /// The TLV type (7 bits in the frame).
    pub fn tlv_type(&self) -> u8 {
        self.0
    }

    /// The value, hex-encoded.
    pub fn hex_value(&self) -> &str {
        &self.1
    }
}

/// CPU summary; per-core data is not serialized.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cpu {
    pub model_name: Option<String>,
    /// MHz as a decimal string (`"2400.000"`), the maximum frequency when known.
    pub frequency: Option<String>,
    /// Logical CPUs.
    pub count: u32,
    /// `uname -m` (`"x86_64"`); Ironic's `architecture` hook reads it.
    pub architecture: String,
    #[serde(default)]
    pub flags: Vec<String>,
    pub socket_count: u32,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// One block device, as `lsblk` and udev describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockDevice {
    /// `/dev/sda`.
    pub name: String,
    pub model: Option<String>,
    /// Bytes.
    pub size: u64,
    pub rotational: bool,
    pub wwn: Option<String>,
    pub serial: Option<String>,
    pub vendor: Option<String>,
    pub wwn_with_extension: Option<String>,
    pub wwn_vendor_extension: Option<String>,
    /// SCSI address `"1:0:0:0"`.
    pub hctl: Option<String>,
    /// `/dev/disk/by-path/...`.
    pub by_path: Option<String>,
    pub logical_sectors: Option<u32>,
    pub physical_sectors: Option<u32>,
    /// Transport (`"sata"`, `"nvme"`, ...).
    pub tran: Option<String>,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// Memory sizes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    /// Bytes usable by the kernel.
    pub total: u64,
    /// Installed memory in MiB (Ironic's `memory` hook reads it); null when unknown.
    pub physical_mb: Option<u64>,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// DMI system identification; IPA writes empty strings for unknown values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemVendor {
    pub product_name: String,
    pub serial_number: String,
    pub manufacturer: String,
    pub firmware: Firmware,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// BIOS/UEFI firmware identification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Firmware {
    pub vendor: String,
    pub version: String,
    /// As DMI writes it (`"01/01/2025"`).
    pub build_date: String,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// How the machine booted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootInfo {
    pub current_boot_mode: BootMode,
    /// The raw `BOOTIF` value (`01-aa-bb-...` or a MAC), null when none was given.
    pub pxe_interface: Option<String>,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// Firmware boot mode, as IPA and Ironic spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BootMode {
    Uefi,
    Bios,
}

impl BootMode {
    pub fn as_str(self) -> &'static str {
        match self {
            BootMode::Uefi => "uefi",
            BootMode::Bios => "bios",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lldp_tlv_is_a_two_element_array() -> Result<(), serde_json::Error> {
        let tlvs: Vec<LldpTlv> = serde_json::from_str(r#"[[1, "04aabbcc"], [127, ""]]"#)?;
        assert_eq!(tlvs[0], LldpTlv(1, "04aabbcc".to_string()));
        assert_eq!(tlvs[1].tlv_type(), 127);
        assert_eq!(tlvs[1].hex_value(), "");
        assert_eq!(
            serde_json::to_string(&tlvs)?,
            r#"[[1,"04aabbcc"],[127,""]]"#
        );
        assert!(serde_json::from_str::<LldpTlv>(r#"[256, "00"]"#).is_err());
        assert!(serde_json::from_str::<LldpTlv>(r#"["1", "00"]"#).is_err());
        Ok(())
    }

    #[test]
    fn bmc_mac_is_omitted_when_unknown_but_bmc_addresses_are_null() -> Result<(), serde_json::Error>
    {
        let inventory = Inventory {
            interfaces: Vec::new(),
            cpu: Cpu {
                model_name: None,
                frequency: None,
                count: 1,
                architecture: "aarch64".to_string(),
                flags: Vec::new(),
                socket_count: 1,
                extra: JsonObject::new(),
            },
            disks: Vec::new(),
            memory: Memory {
                total: 1 << 30,
                physical_mb: None,
                extra: JsonObject::new(),
            },
            bmc_address: None,
            bmc_v6address: None,
            bmc_mac: None,
            system_vendor: SystemVendor {
                product_name: String::new(),
                serial_number: String::new(),
                manufacturer: String::new(),
                firmware: Firmware {
                    vendor: String::new(),
                    version: String::new(),
                    build_date: String::new(),
                    extra: JsonObject::new(),
                },
                extra: JsonObject::new(),
            },
            boot: BootInfo {
                current_boot_mode: BootMode::Bios,
                pxe_interface: None,
                extra: JsonObject::new(),
            },
            hostname: "node".to_string(),
            extra: JsonObject::new(),
        };
        let wire = serde_json::to_value(&inventory)?;
        assert!(wire.get("bmc_mac").is_none());
        assert_eq!(wire["bmc_address"], serde_json::Value::Null);
        assert_eq!(wire["bmc_v6address"], serde_json::Value::Null);
        assert_eq!(wire["boot"]["current_boot_mode"], "bios");
        assert_eq!(wire["memory"]["physical_mb"], serde_json::Value::Null);
        Ok(())
    }
}
