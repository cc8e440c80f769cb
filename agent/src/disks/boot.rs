//! Boot medium detection: the device the ramdisk came from, found by volume label.
//!
//! Heuristics (docs/disks.md): an iso9660 volume label equal to rivet's (`RIVET` or
//! `rivet-boot-label`) on any disk, optical drive or partition; or one of Ironic's
//! virtual-media labels (`ir-vfd-dev`, `config-2`, `VMEDIA_BOOT_ISO`, iso9660 or FAT) on an
//! optical drive or a USB disk under 4 GiB, IPA's vmedia check (spec §9.3). A partition
//! that matches marks its disk; a disk marks all its partitions.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

use super::{BlockDevice, DeviceKind};

/// The volume label of the ISO rivet-image-builder makes.
pub const RIVET_LABEL: &str = "RIVET";

/// Labels of the media Ironic attaches as virtual media (compared case-insensitively).
pub const IRONIC_VMEDIA_LABELS: [&str; 3] = ["ir-vfd-dev", "config-2", "vmedia_boot_iso"];

/// IPA's vmedia check: a USB disk must be smaller than this.
const VMEDIA_MAX_USB_SIZE: u64 = 4 << 30;

/// Devices smaller than this cannot hold an iso9660 primary volume descriptor.
pub const MIN_LABELLED_SIZE: u64 = PVD_OFFSET + PVD_LEN as u64;

/// The primary volume descriptor is sector 16 of 2048-byte sectors.
const PVD_OFFSET: u64 = 16 * 2048;
const PVD_LEN: usize = 0x48;

/// Labels found on one device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeLabels {
    /// Volume identifier of the iso9660 primary volume descriptor (offset 0x8028).
    pub iso9660: Option<String>,
    /// Volume label of a FAT12/16/32 boot sector.
    pub fat: Option<String>,
}

/// Reads the labels of a device node (or fixture file), opened read-only and non-blocking
/// (so an optical drive's tray is not closed). A short file has no labels.
pub fn read_labels(path: &Path) -> io::Result<VolumeLabels> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let mut boot_sector = [0u8; 512];
    let mut pvd = [0u8; PVD_LEN];
    Ok(VolumeLabels {
        fat: read_full(&file, &mut boot_sector, 0)?
            .then(|| fat_label(&boot_sector))
            .flatten(),
        iso9660: read_full(&file, &mut pvd, PVD_OFFSET)?
            .then(|| iso9660_label(&pvd))
            .flatten(),
    })
}

/// Fills `buf` from `offset`; false when the file ends first.
fn read_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<bool> {
    match file.read_exact_at(buf, offset) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// The volume identifier of an iso9660 primary volume descriptor (72 bytes from 0x8000):
/// type 1, `CD001`, version 1; the identifier is bytes 40..72, space padded.
pub fn iso9660_label(pvd: &[u8]) -> Option<String> {
    if pvd.len() < PVD_LEN || pvd[0] != 1 || &pvd[1..6] != b"CD001" || pvd[6] != 1 {
        return None;
    }
    padded_text(&pvd[40..72])
}

/// The volume label of a FAT boot sector: at 0x2b (FAT12/16) or 0x47 (FAT32), present when
/// the extended boot signature 0x29 is.
pub fn fat_label(sector: &[u8]) -> Option<String> {
    if sector.len() < 512 || sector[510..512] != [0x55, 0xaa] {
        return None;
    }
    if &sector[0x52..0x57] == b"FAT32" && sector[0x42] == 0x29 {
        return padded_text(&sector[0x47..0x52]);
    }
    if &sector[0x36..0x39] == b"FAT" && sector[0x26] == 0x29 {
        return padded_text(&sector[0x2b..0x36]);
    }
    None
}

fn padded_text(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim_end_matches([' ', '\0']).trim();
    (!text.is_empty() && text != "NO NAME").then(|| text.to_string())
}

/// Why `device` with `labels` is the boot medium, if it is.
pub fn boot_medium_reason(
    device: &BlockDevice,
    labels: &VolumeLabels,
    rivet_labels: &[String],
) -> Option<String> {
    if let Some(label) = &labels.iso9660 {
        if rivet_labels.iter().any(|l| l.eq_ignore_ascii_case(label)) {
            return Some(format!("iso9660 label {label:?} is rivet's boot label"));
        }
    }
    let vmedia_device = match device.kind {
        DeviceKind::Rom => true,
        DeviceKind::Disk => {
            device.tran.as_deref() == Some("usb") && device.size_bytes < VMEDIA_MAX_USB_SIZE
        }
        _ => false,
    };
    if !vmedia_device {
        return None;
    }
    [&labels.iso9660, &labels.fat]
        .into_iter()
        .flatten()
        .find(|label| {
            IRONIC_VMEDIA_LABELS
                .iter()
                .any(|v| v.eq_ignore_ascii_case(label))
        })
        .map(|label| format!("label {label:?} of Ironic's virtual media"))
}

/// Sets `is_boot_medium` on every device a label marks, on the disk of a marked partition
/// and on every partition of a marked disk.
pub fn mark_boot_media(
    devices: &mut [BlockDevice],
    labels: &HashMap<String, VolumeLabels>,
    rivet_labels: &[String],
) {
    let mut marked: Vec<String> = Vec::new();
    for device in devices.iter() {
        let Some(reason) = labels
            .get(&device.name)
            .and_then(|l| boot_medium_reason(device, l, rivet_labels))
        else {
            continue;
        };
        tracing::info!("{} is the boot medium: {reason}", device.path.display());
        marked.push(device.parent.clone().unwrap_or_else(|| device.name.clone()));
    }
    for device in devices.iter_mut() {
        let disk = device.parent.as_ref().unwrap_or(&device.name);
        if marked.contains(disk) {
            device.is_boot_medium = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn pvd(label: &str) -> Vec<u8> {
        let mut pvd = vec![b' '; PVD_LEN];
        pvd[0] = 1;
        pvd[1..6].copy_from_slice(b"CD001");
        pvd[6] = 1;
        pvd[40..40 + label.len()].copy_from_slice(label.as_bytes());
        pvd
    }

    fn fat16(label: &str) -> Vec<u8> {
        let mut sector = vec![0u8; 512];
        sector[0x26] = 0x29;
        sector[0x2b..0x36].copy_from_slice(format!("{label:<11}").as_bytes());
        sector[0x36..0x3e].copy_from_slice(b"FAT12   ");
        sector[510] = 0x55;
        sector[511] = 0xaa;
        sector
    }

    fn device(name: &str, kind: DeviceKind, tran: Option<&str>, size_bytes: u64) -> BlockDevice {
        BlockDevice {
            name: name.into(),
            path: format!("/dev/{name}").into(),
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
            tran: tran.map(String::from),
            is_boot_medium: false,
        }
    }

    #[test]
    fn iso9660_labels() {
        assert_eq!(iso9660_label(&pvd("RIVET")).as_deref(), Some("RIVET"));
        let mut bad = pvd("RIVET");
        bad[1] = b'X';
        assert_eq!(iso9660_label(&bad), None);
        assert_eq!(iso9660_label(&pvd("")), None);
    }

    #[test]
    fn fat_labels() {
        assert_eq!(
            fat_label(&fat16("ir-vfd-dev")).as_deref(),
            Some("ir-vfd-dev")
        );
        assert_eq!(fat_label(&fat16("NO NAME")), None);
        assert_eq!(fat_label(&[0u8; 512]), None);
    }

    #[test]
    fn rivet_label_marks_any_disk_in_any_case() {
        let labels = VolumeLabels {
            iso9660: Some("rivet".into()),
            fat: None,
        };
        let big = device("sda", DeviceKind::Disk, Some("sata"), 500 << 30);
        assert!(boot_medium_reason(&big, &labels, &["RIVET".into()]).is_some());
        assert!(boot_medium_reason(&big, &labels, &["OTHER".into()]).is_none());
    }

    #[test]
    fn ironic_labels_only_on_rom_or_small_usb() {
        let iso = |l: &str| VolumeLabels {
            iso9660: Some(l.into()),
            fat: None,
        };
        let rivet = [RIVET_LABEL.to_string()];
        let rom = device("sr0", DeviceKind::Rom, Some("ata"), 400 << 20);
        let usb = device("sdb", DeviceKind::Disk, Some("usb"), 1 << 30);
        let big_usb = device("sdc", DeviceKind::Disk, Some("usb"), 8 << 30);
        let sata = device("sda", DeviceKind::Disk, Some("sata"), 1 << 30);
        for label in ["VMEDIA_BOOT_ISO", "config-2", "CONFIG-2", "ir-vfd-dev"] {
            assert!(
                boot_medium_reason(&rom, &iso(label), &rivet).is_some(),
                "{label}"
            );
            assert!(
                boot_medium_reason(&usb, &iso(label), &rivet).is_some(),
                "{label}"
            );
            assert!(
                boot_medium_reason(&big_usb, &iso(label), &rivet).is_none(),
                "{label}"
            );
            assert!(
                boot_medium_reason(&sata, &iso(label), &rivet).is_none(),
                "{label}"
            );
        }
        let floppy = VolumeLabels {
            iso9660: None,
            fat: Some("IR-VFD-DEV".into()),
        };
        assert!(boot_medium_reason(&usb, &floppy, &rivet).is_some());
    }

    #[test]
    fn a_marked_partition_marks_its_disk_and_siblings() {
        let mut disk = device("sdb", DeviceKind::Disk, Some("usb"), 16 << 30);
        disk.partitions = vec!["sdb1".into(), "sdb2".into()];
        let mut p1 = device("sdb1", DeviceKind::Partition, None, 1 << 30);
        p1.parent = Some("sdb".into());
        let mut p2 = p1.clone();
        p2.name = "sdb2".into();
        let other = device("sda", DeviceKind::Disk, Some("sata"), 16 << 30);
        let mut devices = vec![other, disk, p1, p2];
        let labels = HashMap::from([(
            "sdb2".to_string(),
            VolumeLabels {
                iso9660: Some("RIVET".into()),
                fat: None,
            },
        )]);
        mark_boot_media(&mut devices, &labels, &[RIVET_LABEL.to_string()]);
        let marked: Vec<_> = devices.iter().map(|d| d.is_boot_medium).collect();
        assert_eq!(marked, [false, true, true, true]);
    }
}
