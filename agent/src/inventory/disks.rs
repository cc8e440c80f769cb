//! `inventory.disks`: the block devices of [`crate::disks`] that IPA's lsblk-based listing
//! keeps (spec §7.1), in its field shapes; and `root_disk`, IPA's guess without hints.

use rivet_protocol::inventory::BlockDevice as InventoryDisk;
use rivet_protocol::JsonObject;

use crate::disks::{BlockDevice, DeviceKind};

/// IPA's minimum size for a root disk without hints (4 GiB).
pub const ROOT_DISK_MIN_SIZE: u64 = 4 << 30;

/// Whole disks and RAID devices; not partitions, optical drives, loop/dm/other virtual
/// devices, RAM disks (`ram*`, `zram*`), floppies (`fd*`) or empty devices.
pub fn inventory_disks(devices: &[BlockDevice]) -> Vec<InventoryDisk> {
    devices
        .iter()
        .filter(|d| matches!(d.kind, DeviceKind::Disk | DeviceKind::Raid))
        .filter(|d| !["ram", "zram", "fd"].iter().any(|p| d.name.starts_with(p)))
        .filter(|d| d.size_bytes > 0)
        .map(to_inventory)
        .collect()
}

fn to_inventory(device: &BlockDevice) -> InventoryDisk {
    InventoryDisk {
        name: device.path.display().to_string(),
        model: device.model.clone(),
        size: device.size_bytes,
        rotational: device.rotational,
        wwn: device.wwn.clone(),
        serial: device.serial.clone(),
        vendor: device.vendor.clone(),
        wwn_with_extension: device.wwn_with_extension.clone(),
        wwn_vendor_extension: device.wwn_vendor_extension.clone(),
        hctl: device.hctl.clone(),
        by_path: device.by_path.clone(),
        logical_sectors: Some(device.logical_sector_size),
        physical_sectors: Some(device.physical_sector_size),
        tran: device.tran.clone(),
        extra: JsonObject::new(),
    }
}

/// IPA's `guess_root_disk`: the smallest disk of at least 4 GiB (ties by name).
pub fn guess_root_disk(disks: &[InventoryDisk]) -> Option<InventoryDisk> {
    disks
        .iter()
        .filter(|d| d.size >= ROOT_DISK_MIN_SIZE)
        .min_by(|a, b| a.size.cmp(&b.size).then_with(|| a.name.cmp(&b.name)))
        .cloned()
}

#[cfg(test)]
pub(crate) mod tests {
    use std::path::PathBuf;

    use super::*;

    pub(crate) fn device(name: &str, kind: DeviceKind, size: u64) -> BlockDevice {
        BlockDevice {
            name: name.to_string(),
            path: PathBuf::from(format!("/dev/{name}")),
            kind,
            parent: None,
            partitions: Vec::new(),
            holders: Vec::new(),
            size_bytes: size,
            logical_sector_size: 512,
            physical_sector_size: 4096,
            rotational: false,
            read_only: false,
            removable: false,
            model: Some("QEMU HARDDISK".to_string()),
            vendor: Some("ATA".to_string()),
            serial: Some(format!("SN-{name}")),
            wwn: None,
            wwn_with_extension: None,
            wwn_vendor_extension: None,
            hctl: Some("0:0:0:0".to_string()),
            by_path: Some(format!("/dev/disk/by-path/pci-0000:00:1f.2-ata-1-{name}")),
            tran: Some("sata".to_string()),
            is_boot_medium: false,
        }
    }

    #[test]
    fn only_real_non_empty_disks_are_listed() {
        let devices = [
            device("sda", DeviceKind::Disk, 10 << 30),
            device("sda1", DeviceKind::Partition, 1 << 30),
            device("md0", DeviceKind::Raid, 20 << 30),
            device("sr0", DeviceKind::Rom, 1 << 20),
            device("loop0", DeviceKind::Virtual, 1 << 20),
            device("ram0", DeviceKind::Disk, 1 << 20),
            device("zram0", DeviceKind::Disk, 1 << 20),
            device("fd0", DeviceKind::Disk, 1440 << 10),
            device("sdb", DeviceKind::Disk, 0),
        ];
        let names: Vec<String> = inventory_disks(&devices)
            .into_iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, vec!["/dev/sda", "/dev/md0"]);
        let sda = &inventory_disks(&devices)[0];
        assert_eq!(sda.logical_sectors, Some(512));
        assert_eq!(sda.physical_sectors, Some(4096));
        assert_eq!(sda.serial.as_deref(), Some("SN-sda"));
    }

    #[test]
    fn root_disk_is_the_smallest_of_at_least_4_gib() {
        let disks = inventory_disks(&[
            device("sdc", DeviceKind::Disk, 8 << 30),
            device("sda", DeviceKind::Disk, 2 << 30),
            device("sdb", DeviceKind::Disk, 8 << 30),
            device("nvme0n1", DeviceKind::Disk, 100 << 30),
        ]);
        assert_eq!(guess_root_disk(&disks).unwrap().name, "/dev/sdb");
        let small = inventory_disks(&[device("sda", DeviceKind::Disk, 2 << 30)]);
        assert!(guess_root_disk(&small).is_none());
    }
}
