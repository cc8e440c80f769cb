use std::path::PathBuf;

use super::*;
use crate::disks::DeviceKind;

fn device(name: &str, parent: Option<&str>, boot: bool) -> BlockDevice {
    BlockDevice {
        name: name.into(),
        path: PathBuf::from(format!("/dev/{name}")),
        kind: if parent.is_some() {
            DeviceKind::Partition
        } else {
            DeviceKind::Disk
        },
        parent: parent.map(String::from),
        partitions: Vec::new(),
        holders: Vec::new(),
        size_bytes: 8 << 30,
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
        is_boot_medium: boot,
    }
}

fn devices() -> Vec<BlockDevice> {
    vec![
        device("sda", None, false),
        device("sda1", Some("sda"), false),
        device("sdb", None, true),
        device("sdb1", Some("sdb"), true),
        device("loop3", None, false),
    ]
}

fn names(devices: Vec<BlockDevice>) -> Vec<String> {
    devices.into_iter().map(|d| d.name).collect()
}

#[test]
fn ramdisk_gets_everything_but_the_boot_medium() {
    let got = writable_candidates(devices(), &Settings::default(), true);
    assert_eq!(names(got), ["sda", "sda1", "loop3"]);
}

#[test]
fn host_gets_nothing_by_default() {
    let got = writable_candidates(devices(), &Settings::default(), false);
    assert!(got.is_empty(), "{got:?}");
}

#[test]
fn host_gets_only_listed_disks_and_their_partitions() {
    let settings = Settings {
        host_disks: vec!["/dev/sda".into(), "/dev/sdb".into(), "/dev/nope".into()],
        ..Settings::default()
    };
    let got = writable_candidates(devices(), &settings, false);
    assert_eq!(names(got), ["sda", "sda1"], "sdb is the boot medium");
    let settings = Settings {
        host_disks: vec!["/dev/loop3".into()],
        ..Settings::default()
    };
    assert_eq!(
        names(writable_candidates(devices(), &settings, false)),
        ["loop3"]
    );
}
