//! Partition images (`image_type: partition`, spec §5): the disk is laid out as IPA's
//! `work_on_disk`/`make_partitions` lays it out ([`layout`]), the image is streamed into
//! the root partition through the same pipeline as a whole-disk image (same formats, same
//! verification), and only after it verified is the partition table written ([`table`]),
//! then the config drive, swap, ESP and ephemeral file systems ([`fs`], [`ephemeral`]). A
//! failure clears the disk's first and last MiB, so a half-done deploy never boots.

pub mod deploy;
pub mod ephemeral;
pub mod fs;
pub mod layout;
pub mod table;

use std::sync::Arc;

use serde_json::{Map, Value};

use super::target::{DiskFile, Target};
use layout::Label;

/// A byte range of a disk (the root partition before its table exists) as a write target.
pub struct Slice {
    disk: Arc<DiskFile>,
    offset: u64,
    len: u64,
    name: String,
}

impl Slice {
    pub fn new(disk: Arc<DiskFile>, offset: u64, len: u64, name: String) -> Slice {
        Slice {
            disk,
            offset,
            len,
            name,
        }
    }

    fn check(&self, offset: u64, len: u64) -> std::io::Result<u64> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len => Ok(self.offset + offset),
            _ => Err(std::io::Error::other(format!(
                "{}: {len} bytes at {offset} lie outside the partition of {} bytes",
                self.name, self.len
            ))),
        }
    }
}

impl Target for Slice {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn size(&self) -> u64 {
        self.len
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        let at = self.check(offset, data.len() as u64)?;
        self.disk.write_at(at, data)
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
        let at = self.check(offset, buf.len() as u64)?;
        self.disk.read_at(at, buf)
    }

    fn zero(&self, offset: u64, len: u64) -> std::io::Result<()> {
        let at = self.check(offset, len)?;
        self.disk.zero(at, len)
    }

    fn sync(&self) -> std::io::Result<()> {
        self.disk.sync()
    }

    fn reread_partitions(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `capabilities` of `instance_info` or `properties`: a dict, a JSON string, or
/// `key:value,key:value` (as IPA's `parse_capabilities`).
fn capabilities(root: Option<&Value>) -> Map<String, Value> {
    match root.and_then(|r| r.get("capabilities")) {
        Some(Value::Object(map)) => map.clone(),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => map,
            _ => text
                .split(',')
                .filter_map(|pair| pair.split_once(':'))
                .map(|(k, v)| (k.trim().to_string(), Value::String(v.trim().to_string())))
                .collect(),
        },
        _ => Map::new(),
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.to_ascii_lowercase()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The boot mode to deploy for, as IPA's `get_node_boot_mode`: UEFI when secure boot is
/// requested; else `instance_info.deploy_boot_mode`, the node's `boot_mode` capability,
/// `driver_internal_info.deploy_boot_mode`, and the ramdisk's own mode (`firmware_uefi`:
/// `/sys/firmware/efi` exists), the first that is set; anything but `uefi`/`bios` means the
/// ramdisk's mode. Returns whether it is UEFI.
pub fn deploy_uefi(node: &Value, firmware_uefi: bool) -> bool {
    let instance = capabilities(node.get("instance_info"));
    let properties = capabilities(node.get("properties"));
    let secure = text(instance.get("secure_boot")).or_else(|| text(properties.get("secure_boot")));
    if secure.as_deref() == Some("true") {
        return true;
    }
    let mode = text(node.pointer("/instance_info/deploy_boot_mode"))
        .or_else(|| text(properties.get("boot_mode")))
        .or_else(|| text(node.pointer("/driver_internal_info/deploy_boot_mode")));
    match mode.as_deref() {
        Some("uefi") => true,
        Some("bios") => false,
        _ => firmware_uefi,
    }
}

/// The partition table type, as IPA's `get_partition_table_type_from_specs`: GPT in UEFI;
/// else the `disk_label` capability (instance_info before properties), msdos by default.
pub fn disk_label(node: &Value, uefi: bool) -> Label {
    if uefi {
        return Label::Gpt;
    }
    let instance = capabilities(node.get("instance_info"));
    let properties = capabilities(node.get("properties"));
    let label = text(instance.get("disk_label")).or_else(|| text(properties.get("disk_label")));
    if label.as_deref() == Some("gpt") {
        Label::Gpt
    } else {
        Label::Msdos
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn boot_mode_follows_ipa_priorities() {
        assert!(deploy_uefi(&json!({}), true));
        assert!(!deploy_uefi(&json!({}), false));
        let node = json!({"instance_info": {"deploy_boot_mode": "bios"},
                          "properties": {"capabilities": "boot_mode:uefi"}});
        assert!(!deploy_uefi(&node, true));
        let node = json!({"properties": {"capabilities": "boot_mode:uefi,disk_label:gpt"}});
        assert!(deploy_uefi(&node, false));
        let node = json!({"instance_info": {"capabilities": {"secure_boot": "true"},
                                            "deploy_boot_mode": "bios"}});
        assert!(deploy_uefi(&node, false));
        let node = json!({"driver_internal_info": {"deploy_boot_mode": "weird"}});
        assert!(!deploy_uefi(&node, false));
    }

    #[test]
    fn disk_label_is_gpt_in_uefi_else_the_capability() {
        assert_eq!(disk_label(&json!({}), true), Label::Gpt);
        assert_eq!(disk_label(&json!({}), false), Label::Msdos);
        let node = json!({"properties": {"capabilities": "{\"disk_label\": \"gpt\"}"}});
        assert_eq!(disk_label(&node, false), Label::Gpt);
        let node = json!({"instance_info": {"capabilities": {"disk_label": "msdos"}},
                          "properties": {"capabilities": "disk_label:gpt"}});
        assert_eq!(disk_label(&node, false), Label::Msdos);
    }
}
