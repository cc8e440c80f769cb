use std::path::PathBuf;

use super::*;
use crate::disks::hints::{parse_hints, select_root_device};

fn fixture(machine: &str) -> SysfsBlockDevices {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/sysfs-block")
        .join(machine);
    SysfsBlockDevices::new(&root, root.join("dev"))
}

fn list(machine: &str) -> Vec<BlockDevice> {
    fixture(machine)
        .list()
        .unwrap_or_else(|e| panic!("listing {machine}: {e}"))
}

fn get<'a>(devices: &'a [BlockDevice], name: &str) -> &'a BlockDevice {
    devices
        .iter()
        .find(|d| d.name == name)
        .unwrap_or_else(|| panic!("{name} not listed"))
}

/// A whole disk with every identity field unset, to spell out expectations.
fn bare(machine: &str, name: &str, kind: DeviceKind, size_bytes: u64) -> BlockDevice {
    BlockDevice {
        name: name.into(),
        path: fixture(machine).dev_root.join(name),
        kind,
        parent: None,
        partitions: Vec::new(),
        holders: Vec::new(),
        size_bytes,
        logical_sector_size: 512,
        physical_sector_size: 512,
        rotational: false,
        read_only: false,
        removable: false,
        model: None,
        vendor: None,
        serial: None,
        wwn: None,
        wwn_with_extension: None,
        wwn_vendor_extension: None,
        hctl: None,
        by_path: None,
        tran: None,
        is_boot_medium: false,
    }
}

const GIB: u64 = 1 << 30;

#[test]
fn qemu_listing_order_and_kinds() {
    let devices = list("qemu-q35");
    let got: Vec<(&str, DeviceKind)> = devices.iter().map(|d| (d.name.as_str(), d.kind)).collect();
    assert_eq!(
        got,
        [
            ("loop0", DeviceKind::Virtual),
            ("md0", DeviceKind::Raid),
            ("nvme0n1", DeviceKind::Disk),
            ("sda", DeviceKind::Disk),
            ("sda1", DeviceKind::Partition),
            ("sda2", DeviceKind::Partition),
            ("sdb", DeviceKind::Disk),
            ("sdc", DeviceKind::Disk),
            ("sr0", DeviceKind::Rom),
            ("vda", DeviceKind::Disk),
        ],
        "nvme0c0n1 is hidden and left out"
    );
}

#[test]
fn qemu_nvme_namespace_under_multipath() {
    let devices = list("qemu-q35");
    let want = BlockDevice {
        model: Some("QEMU NVMe Ctrl".into()),
        serial: Some("nvme-serial-1".into()),
        wwn: Some("eui.0025388b91b3ee56".into()),
        by_path: Some("/dev/disk/by-path/pci-0000:00:05.0-nvme-1".into()),
        tran: Some("nvme".into()),
        ..bare("qemu-q35", "nvme0n1", DeviceKind::Disk, 16 * GIB)
    };
    assert_eq!(get(&devices, "nvme0n1"), &want);
}

#[test]
fn qemu_sata_disk_with_partitions() {
    let devices = list("qemu-q35");
    let want = BlockDevice {
        partitions: vec!["sda1".into(), "sda2".into()],
        rotational: true,
        model: Some("QEMU HARDDISK".into()),
        vendor: Some("ATA".into()),
        serial: Some("QM00003".into()),
        wwn: Some("0x5000c500a0b1c2d3".into()),
        wwn_with_extension: Some("0x5000c500a0b1c2d3".into()),
        hctl: Some("1:0:0:0".into()),
        by_path: Some("/dev/disk/by-path/pci-0000:00:1f.2-ata-2".into()),
        tran: Some("sata".into()),
        ..bare("qemu-q35", "sda", DeviceKind::Disk, 64 * GIB)
    };
    assert_eq!(get(&devices, "sda"), &want);
    let want = BlockDevice {
        parent: Some("sda".into()),
        rotational: true,
        by_path: Some("/dev/disk/by-path/pci-0000:00:1f.2-ata-2-part1".into()),
        ..bare("qemu-q35", "sda1", DeviceKind::Partition, 512 << 20)
    };
    assert_eq!(get(&devices, "sda1"), &want);
}

#[test]
fn qemu_virtio_scsi_raid_member() {
    let devices = list("qemu-q35");
    let want = BlockDevice {
        holders: vec!["md0".into()],
        rotational: true,
        model: Some("QEMU HARDDISK".into()),
        vendor: Some("QEMU".into()),
        serial: Some("raid-member-1".into()),
        wwn: Some("0x600a0b8000111155".into()),
        wwn_with_extension: Some("0x600a0b80001111550000e1c34d1b6b92".into()),
        wwn_vendor_extension: Some("0x0000e1c34d1b6b92".into()),
        hctl: Some("2:0:0:0".into()),
        by_path: Some("/dev/disk/by-path/pci-0000:00:06.0-scsi-0:0:0:0".into()),
        tran: None,
        ..bare("qemu-q35", "sdb", DeviceKind::Disk, 10 * GIB)
    };
    assert_eq!(
        get(&devices, "sdb"),
        &want,
        "lsblk has no TRAN for virtio-scsi"
    );
    assert_eq!(get(&devices, "md0").size_bytes, 10 * GIB - (16 << 20));
}

#[test]
fn qemu_virtio_blk() {
    let devices = list("qemu-q35");
    let want = BlockDevice {
        vendor: Some("0x1af4".into()),
        serial: Some("vda-serial-1".into()),
        by_path: Some("/dev/disk/by-path/pci-0000:00:04.0".into()),
        tran: Some("virtio".into()),
        ..bare("qemu-q35", "vda", DeviceKind::Disk, 20 * GIB)
    };
    assert_eq!(get(&devices, "vda"), &want);
}

#[test]
fn qemu_boot_media_by_label() {
    let devices = list("qemu-q35");
    let cd = get(&devices, "sr0");
    assert!(cd.is_boot_medium, "iso9660 label RIVET");
    assert_eq!(
        cd.by_path.as_deref(),
        Some("/dev/disk/by-path/pci-0000:00:1f.2-ata-1")
    );
    assert_eq!(
        (cd.hctl.as_deref(), cd.tran.as_deref(), cd.removable),
        (Some("0:0:0:0"), Some("sata"), true)
    );
    let stick = get(&devices, "sdc");
    assert!(stick.is_boot_medium, "VMEDIA_BOOT_ISO on a 1 GiB USB disk");
    assert_eq!(
        stick.by_path.as_deref(),
        Some("/dev/disk/by-path/pci-0000:00:07.0-usb-0:1:1.0-scsi-0:0:0:0")
    );
    assert_eq!(stick.tran.as_deref(), Some("usb"));
    let marked: Vec<&str> = devices
        .iter()
        .filter(|d| d.is_boot_medium)
        .map(|d| d.name.as_str())
        .collect();
    assert_eq!(marked, ["sdc", "sr0"]);
}

#[test]
fn extra_boot_label_from_settings() {
    let mut devices = fixture("qemu-q35");
    devices.boot_labels = vec!["OTHER".into()];
    let listed = devices.list().expect("list");
    assert!(!get(&listed, "sr0").is_boot_medium, "RIVET is not OTHER");
    assert!(
        get(&listed, "sdc").is_boot_medium,
        "Ironic's labels always count"
    );
}

#[test]
fn qemu_root_device_selection() {
    let devices = list("qemu-q35");
    let none = parse_hints(&serde_json::json!({})).expect("hints");
    let got = select_root_device(&devices, &none, &[], true).expect("a disk");
    assert_eq!(got.name, "md0", "smallest disk or RAID of at least 4 GiB");
    let hints = parse_hints(&serde_json::json!({"wwn": "0x5000C500A0B1C2D3"})).expect("hints");
    let got = select_root_device(&devices, &hints, &[], true).expect("a disk");
    assert_eq!(got.name, "sda");
}

#[test]
fn captured_firecracker_vm() {
    let devices = list("firecracker-vda");
    let names: Vec<&str> = devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(
        names,
        ["loop0", "loop1", "loop2", "loop3", "loop4", "loop5", "loop6", "loop7", "vda", "zram0"]
    );
    let want = BlockDevice {
        physical_sector_size: 4096,
        rotational: true,
        vendor: Some("0x1af4".into()),
        serial: Some("overlayblk".into()),
        by_path: Some("/dev/disk/by-path/pci-0000:00:02.0".into()),
        tran: Some("virtio".into()),
        ..bare("firecracker-vda", "vda", DeviceKind::Disk, 256 * GIB)
    };
    assert_eq!(get(&devices, "vda"), &want);
    for d in devices.iter().filter(|d| d.name != "vda") {
        assert_eq!(
            (d.kind, d.size_bytes),
            (DeviceKind::Virtual, 0),
            "{}",
            d.name
        );
    }
}

#[test]
fn missing_class_block_is_an_error_naming_the_path() {
    let err = SysfsBlockDevices::new("/nonexistent-sys", "/dev")
        .list()
        .expect_err("no sysfs");
    assert!(err.to_string().contains("/nonexistent-sys"), "{err}");
}
