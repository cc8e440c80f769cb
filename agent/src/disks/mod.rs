//! Block devices as every disk-touching step sees them: inventory, erase, image writing and
//! root-device selection all start from [`BlockDevices::list`].
//!
//! Everything is read from sysfs (and ioctls on read-only opened devices where sysfs lacks
//! a value); serial, WWN, HCTL and by-path are derived the way udev would, without udev.

use std::path::PathBuf;

mod boot;
pub mod hints;
mod safety;
pub mod sysfs;
pub mod udev;

pub use boot::{
    boot_medium_reason, fat_label, iso9660_label, read_labels, VolumeLabels, RIVET_LABEL,
};
pub use safety::writable_candidates;

/// What kind of block device this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// A whole disk (`/sys/block/<name>` with a `device` link, or virtio/NVMe namespaces).
    Disk,
    /// A partition of a disk.
    Partition,
    /// Software RAID (`md*`).
    Raid,
    /// An optical drive (`sr*`).
    Rom,
    /// Loop, ram, zram, dm, nbd and other virtual devices (`/sys/devices/virtual/block`),
    /// and floppy drives (`fd*`): never install targets.
    Virtual,
}

/// One block device.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BlockDevice {
    /// Kernel name, e.g. `nvme0n1`, `sda1`.
    pub name: String,
    /// `/dev/<name>`.
    pub path: PathBuf,
    pub kind: DeviceKind,
    /// For partitions: the parent disk's kernel name.
    pub parent: Option<String>,
    /// Partitions of a disk, by kernel name, in order.
    pub partitions: Vec<String>,
    /// Devices built on this one (`holders/`, e.g. `md0`): a RAID member has some.
    pub holders: Vec<String>,
    pub size_bytes: u64,
    pub logical_sector_size: u32,
    pub physical_sector_size: u32,
    pub rotational: bool,
    pub read_only: bool,
    pub removable: bool,
    pub model: Option<String>,
    pub vendor: Option<String>,
    pub serial: Option<String>,
    pub wwn: Option<String>,
    pub wwn_with_extension: Option<String>,
    pub wwn_vendor_extension: Option<String>,
    /// SCSI host:channel:target:lun, e.g. `1:0:0:0`.
    pub hctl: Option<String>,
    /// Full `/dev/disk/by-path/...` path as udev would name it.
    pub by_path: Option<String>,
    /// Transport as lsblk reports it: `nvme`, `sata`, `sas`, `usb`, `virtio`, `iscsi`, ...
    pub tran: Option<String>,
    /// The ramdisk was booted from this device (or a partition of it): never written.
    pub is_boot_medium: bool,
}

/// Lists block devices. The real implementation reads sysfs; tests use fixture trees.
pub trait BlockDevices: Send + Sync {
    /// Every block device, disks before their partitions, sorted by name.
    fn list(&self) -> Result<Vec<BlockDevice>, DiskError>;
}

/// Errors listing or inspecting block devices.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: unexpected content {content:?}")]
    Parse { path: PathBuf, content: String },
}
