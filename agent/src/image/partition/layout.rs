//! The layout of a disk for a partition image, as IPA's `make_partitions` lays it out: a
//! 1 MiB lead-in, then in this order the EFI system partition (UEFI) or a BIOS boot partition
//! (BIOS with GPT), ephemeral, swap, config drive, and the root partition last (so that
//! cloud-init's growroot can extend it to the end of the disk). Sizes are whole MiB.

use std::path::{Path, PathBuf};

/// Partition table type (IPA's `disk_label`: `gpt` or `msdos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Label {
    Gpt,
    Msdos,
}

impl Label {
    pub fn name(self) -> &'static str {
        match self {
            Label::Gpt => "gpt",
            Label::Msdos => "msdos",
        }
    }
}

/// What a partition is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Esp,
    BiosBoot,
    Ephemeral,
    Swap,
    ConfigDrive,
    Root,
}

impl Role {
    /// The key in IPA's `partitions` dict (`get_partition_uuids`).
    pub fn key(self) -> &'static str {
        match self {
            Role::Esp => "efi system partition",
            Role::BiosBoot => "BIOS Boot partition",
            Role::Ephemeral => "ephemeral",
            Role::Swap => "swap",
            Role::ConfigDrive => "configdrive",
            Role::Root => "root",
        }
    }

    /// The GPT partition name rivet gives it.
    pub fn gpt_name(self) -> &'static str {
        match self {
            Role::Esp => "efi-part",
            Role::BiosBoot => "bios-boot",
            Role::Ephemeral => "ephemeral0",
            Role::Swap => "swap1",
            Role::ConfigDrive => super::super::disklabel::CONFIG_DRIVE_LABEL,
            Role::Root => "root",
        }
    }
}

/// IPA's `[disk_utils]efi_system_partition_size` default, MiB.
pub const ESP_MB: u64 = 550;
/// IPA's `[disk_utils]bios_boot_partition_size` default, MiB.
pub const BIOS_BOOT_MB: u64 = 1;
const MIB: u64 = 1 << 20;
/// Room at the end of a GPT disk for the backup entries and header (33 sectors of 512 B,
/// or 6 of 4 KiB): 1 MiB keeps the arithmetic simple.
const GPT_TAIL: u64 = MIB;
/// MBR partitions cannot reach past 2^32 sectors of 512 bytes.
const MBR_LIMIT: u64 = (1u64 << 32) * 512;

/// What the layout is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutRequest {
    pub uefi: bool,
    pub label: Label,
    pub root_mb: u64,
    pub swap_mb: u64,
    pub ephemeral_mb: u64,
    /// The config drive's size rounded up to MiB; 0 for none.
    pub configdrive_mb: u64,
}

/// One partition of the layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// 1-based partition number.
    pub number: u32,
    pub role: Role,
    /// Byte offset on the disk.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The partitions to create, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub label: Label,
    pub partitions: Vec<Planned>,
}

impl Layout {
    pub fn get(&self, role: Role) -> Option<&Planned> {
        self.partitions.iter().find(|p| p.role == role)
    }
}

/// Why no layout fits.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct LayoutError(pub String);

/// The layout for `request` on a disk of `disk_bytes`.
pub fn plan(request: &LayoutRequest, disk_bytes: u64) -> Result<Layout, LayoutError> {
    if request.root_mb == 0 {
        return Err(LayoutError(
            "root_mb must be positive for a partition image".into(),
        ));
    }
    let mut sizes: Vec<(Role, u64)> = Vec::new();
    if request.uefi {
        if request.label != Label::Gpt {
            return Err(LayoutError(
                "UEFI boot needs a GPT partition table (disk_label msdos given)".into(),
            ));
        }
        sizes.push((Role::Esp, ESP_MB));
    } else if request.label == Label::Gpt {
        sizes.push((Role::BiosBoot, BIOS_BOOT_MB));
    }
    if request.ephemeral_mb > 0 {
        sizes.push((Role::Ephemeral, request.ephemeral_mb));
    }
    if request.swap_mb > 0 {
        sizes.push((Role::Swap, request.swap_mb));
    }
    if request.configdrive_mb > 0 {
        sizes.push((Role::ConfigDrive, request.configdrive_mb));
    }
    sizes.push((Role::Root, request.root_mb));
    if request.label == Label::Msdos && sizes.len() > 4 {
        return Err(LayoutError(format!(
            "an msdos partition table holds 4 primary partitions; this layout needs {}",
            sizes.len()
        )));
    }

    let mut start = MIB;
    let mut partitions = Vec::with_capacity(sizes.len());
    for (index, (role, mb)) in sizes.into_iter().enumerate() {
        let len = mb.checked_mul(MIB).ok_or_else(|| {
            LayoutError(format!(
                "the {} partition size {mb} MiB is too large",
                role.key()
            ))
        })?;
        partitions.push(Planned {
            number: index as u32 + 1,
            role,
            start,
            len,
        });
        start = start
            .checked_add(len)
            .ok_or_else(|| LayoutError("the partition sizes overflow".into()))?;
    }
    let usable = match request.label {
        Label::Gpt => disk_bytes.saturating_sub(GPT_TAIL),
        Label::Msdos => disk_bytes.min(MBR_LIMIT),
    };
    if start > usable {
        return Err(LayoutError(format!(
            "the partitions need {} MiB but the disk has {} MiB",
            start.div_ceil(MIB) + if request.label == Label::Gpt { 1 } else { 0 },
            disk_bytes / MIB
        )));
    }
    Ok(Layout {
        label: request.label,
        partitions,
    })
}

/// The device node of partition `number` of `device`, as IPA's `partition_index_to_path`
/// names it: `/dev/sda1`, but `/dev/nvme0n1p1` when the disk's name ends with a digit.
pub fn partition_path(device: &Path, number: u32) -> PathBuf {
    let text = device.display().to_string();
    if text.ends_with(|c: char| c.is_ascii_digit()) {
        PathBuf::from(format!("{text}p{number}"))
    } else {
        PathBuf::from(format!("{text}{number}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(uefi: bool, label: Label) -> LayoutRequest {
        LayoutRequest {
            uefi,
            label,
            root_mb: 100,
            swap_mb: 0,
            ephemeral_mb: 0,
            configdrive_mb: 0,
        }
    }

    fn roles(layout: &Layout) -> Vec<(u32, Role, u64, u64)> {
        layout
            .partitions
            .iter()
            .map(|p| (p.number, p.role, p.start / MIB, p.len / MIB))
            .collect()
    }

    #[test]
    fn uefi_puts_the_esp_first_and_root_last() {
        let mut r = request(true, Label::Gpt);
        r.swap_mb = 64;
        r.ephemeral_mb = 200;
        r.configdrive_mb = 2;
        let layout = plan(&r, 4 << 30).unwrap();
        assert_eq!(
            roles(&layout),
            vec![
                (1, Role::Esp, 1, 550),
                (2, Role::Ephemeral, 551, 200),
                (3, Role::Swap, 751, 64),
                (4, Role::ConfigDrive, 815, 2),
                (5, Role::Root, 817, 100),
            ]
        );
    }

    #[test]
    fn bios_with_gpt_gets_a_bios_boot_partition_and_msdos_none() {
        let layout = plan(&request(false, Label::Gpt), 1 << 30).unwrap();
        assert_eq!(
            roles(&layout),
            vec![(1, Role::BiosBoot, 1, 1), (2, Role::Root, 2, 100)]
        );
        let layout = plan(&request(false, Label::Msdos), 1 << 30).unwrap();
        assert_eq!(roles(&layout), vec![(1, Role::Root, 1, 100)]);
    }

    #[test]
    fn impossible_layouts_are_refused_with_the_reason() {
        let err = plan(&request(true, Label::Msdos), 1 << 30).unwrap_err();
        assert!(err.0.contains("GPT"), "{err}");
        let err = plan(&request(false, Label::Msdos), 50 << 20).unwrap_err();
        assert!(
            err.0.contains("need 101 MiB but the disk has 50 MiB"),
            "{err}"
        );
        let mut r = request(false, Label::Gpt);
        r.root_mb = 0;
        assert!(plan(&r, 1 << 30).is_err());
        let mut r = request(false, Label::Msdos);
        r.swap_mb = 1;
        r.ephemeral_mb = 1;
        r.configdrive_mb = 1;
        assert_eq!(plan(&r, 1 << 30).unwrap().partitions.len(), 4);
        let mut r = request(false, Label::Gpt);
        r.swap_mb = 1;
        r.ephemeral_mb = 1;
        r.configdrive_mb = 1;
        assert_eq!(plan(&r, 1 << 30).unwrap().partitions.len(), 5);
    }

    #[test]
    fn partition_paths_follow_the_kernel_names() {
        assert_eq!(
            partition_path(Path::new("/dev/sda"), 2),
            PathBuf::from("/dev/sda2")
        );
        assert_eq!(
            partition_path(Path::new("/dev/nvme0n1"), 1),
            PathBuf::from("/dev/nvme0n1p1")
        );
    }
}
