//! Block devices that may be virtual media, found in sysfs (no udev in the ramdisk): CD-ROMs
//! (`sr*`), floppies (`fd*`) and whole disks under 4 GiB that are removable, on USB or
//! virtio; partitions never (IPA's vmedia check, spec §9.3). Their identity is read from
//! the device node.

use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::labels::{self, IsoIdentity};

/// IPA refuses larger disks as virtual media.
const MAX_DISK_BYTES: u64 = 4 << 30;

/// One candidate device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Kernel name (`sr1`).
    pub name: String,
    /// Device node (`/dev/sr1`).
    pub node: PathBuf,
    /// `device/model` from sysfs (BMCs name theirs "Virtual Media").
    pub model: Option<String>,
}

/// What a candidate holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Identity {
    pub iso: Option<IsoIdentity>,
    pub fat_label: Option<String>,
}

/// Block devices from a sysfs `class/block` directory and a `/dev` directory (tests point
/// both at fixtures whose "device nodes" are image files).
#[derive(Debug, Clone)]
pub struct SysfsBlockDevices {
    pub class_block: PathBuf,
    pub dev: PathBuf,
}

impl Default for SysfsBlockDevices {
    fn default() -> Self {
        SysfsBlockDevices {
            class_block: PathBuf::from("/sys/class/block"),
            dev: PathBuf::from("/dev"),
        }
    }
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_string())
}

impl SysfsBlockDevices {
    /// The candidates present now, by name.
    pub fn candidates(&self) -> Vec<Candidate> {
        let Ok(entries) = std::fs::read_dir(&self.class_block) else {
            tracing::debug!("cannot list {}", self.class_block.display());
            return Vec::new();
        };
        let mut found: Vec<Candidate> = entries
            .flatten()
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let dir = entry.path();
                self.is_candidate(&name, &dir).then(|| Candidate {
                    node: self.dev.join(&name),
                    model: read_trimmed(&dir.join("device/model")),
                    name,
                })
            })
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found
    }

    fn is_candidate(&self, name: &str, dir: &Path) -> bool {
        if dir.join("partition").exists() {
            return false;
        }
        if name.starts_with("sr") || name.starts_with("fd") {
            return true;
        }
        let bytes = read_trimmed(&dir.join("size"))
            .and_then(|s| s.parse::<u64>().ok())
            .map_or(0, |sectors| sectors * 512);
        if bytes == 0 || bytes >= MAX_DISK_BYTES {
            return false;
        }
        let removable = read_trimmed(&dir.join("removable")).as_deref() == Some("1");
        let path = std::fs::canonicalize(dir).unwrap_or_default();
        let on_usb = path.to_string_lossy().contains("/usb");
        removable || on_usb || name.starts_with("vd")
    }

    /// Reads the ISO 9660 and FAT identity of a candidate; an empty tray or an unreadable
    /// device has none.
    pub fn identify(&self, candidate: &Candidate) -> Identity {
        let file = match File::options()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&candidate.node)
        {
            Ok(file) => file,
            Err(e) => {
                tracing::debug!("vmedia: opening {}: {e}", candidate.node.display());
                return Identity::default();
            }
        };
        let mut pvd = vec![0u8; labels::PVD_LEN];
        let iso = file
            .read_exact_at(&mut pvd, labels::PVD_OFFSET)
            .ok()
            .and_then(|()| labels::parse_pvd(&pvd));
        let mut boot = vec![0u8; labels::BOOT_SECTOR_LEN];
        let fat_label = file
            .read_exact_at(&mut boot, 0)
            .ok()
            .and_then(|()| labels::parse_fat_label(&boot));
        Identity { iso, fat_label }
    }
}
