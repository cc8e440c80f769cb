//! The halves of a partition-image deploy around the image pipeline: [`plan_for`] checks
//! `image_info` (the ephemeral file system included) and lays the disk out before anything
//! is written; [`finish`] writes the partition table and the small partitions once the root
//! partition holds the verified image, and returns `get_partition_uuids`' answer;
//! [`make_ext_ephemeral`] runs mke2fs on an ext ephemeral partition once the disk is closed.

use std::path::Path;

use rivet_protocol::image_info::ImageInfo;
use serde_json::{Map, Value};

use super::ephemeral::{self, EphemeralFs, FsMaker};
use super::fs::{fat32_geometry, format_fat32, fs_uuid, write_swap};
use super::layout::{partition_path, plan, Layout, LayoutRequest, Role};
use super::table::write_table;
use super::{deploy_uefi, disk_label};
use crate::image::target::{DiskFile, Target};

/// The layout and what decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub layout: Layout,
    pub uefi: bool,
    /// How the ephemeral partition's file system is made (when there is one).
    pub ephemeral: Option<EphemeralFs>,
}

fn number(value: &Option<Option<u64>>) -> u64 {
    value.flatten().unwrap_or(0)
}

/// Checks the partition fields of `image_info` and lays out a disk of `disk_bytes`.
/// `drive_bytes`: the config drive's size (0 for none). The ephemeral file system must be
/// one rivet can make (for ext, `fs_maker` must be able to run; vfat must fit FAT32).
pub fn plan_for(
    info: &ImageInfo,
    node: &Value,
    firmware_uefi: bool,
    disk_bytes: u64,
    drive_bytes: u64,
    fs_maker: &dyn FsMaker,
) -> Result<Plan, String> {
    if info.preserve_ephemeral.flatten() == Some(true) {
        return Err(
            "preserve_ephemeral (rebuilding a partition image while keeping the ephemeral \
             partition) is not supported by this build of rivet-agent"
                .into(),
        );
    }
    let root_mb = info
        .root_mb
        .flatten()
        .ok_or("image_info of a partition image lacks root_mb")?;
    let uefi = deploy_uefi(node, firmware_uefi);
    let request = LayoutRequest {
        uefi,
        label: disk_label(node, uefi),
        root_mb,
        swap_mb: number(&info.swap_mb),
        ephemeral_mb: number(&info.ephemeral_mb),
        configdrive_mb: drive_bytes.div_ceil(1 << 20),
    };
    let ephemeral_format = info.ephemeral_format.clone().flatten();
    if request.ephemeral_mb > 0 && ephemeral_format.is_none() {
        return Err("ephemeral_mb is set but ephemeral_format is not".into());
    }
    let layout = plan(&request, disk_bytes).map_err(|e| e.to_string())?;
    let ephemeral = match (layout.get(Role::Ephemeral), ephemeral_format) {
        (Some(part), Some(format)) => {
            let fs = ephemeral::decide(&format)?;
            match fs {
                EphemeralFs::Ext(ext) => fs_maker.check(ext)?,
                EphemeralFs::Vfat => {
                    fat32_geometry(part.len).map_err(|e| {
                        format!("ephemeral_format vfat: the ephemeral partition: {e}")
                    })?;
                }
                EphemeralFs::Swap => {}
            }
            Some(fs)
        }
        _ => None,
    };
    Ok(Plan {
        layout,
        uefi,
        ephemeral,
    })
}

/// Writes the table, the config drive, swap, the ESP's FAT32 and a vfat or swap ephemeral
/// file system, re-reads the partitions, and returns IPA's `get_partition_uuids` dict:
/// `root uuid` (the root file system's UUID, else its PARTUUID), `efi system partition
/// uuid` (null outside UEFI) and `partitions` (role → device node). An ext ephemeral file
/// system is left to [`make_ext_ephemeral`].
pub fn finish(
    disk: &DiskFile,
    device: &Path,
    plan: &Plan,
    sector_size: u64,
    drive: Option<&[u8]>,
) -> Result<Map<String, Value>, String> {
    let layout = &plan.layout;
    let file = disk.file();
    let dev = device.display();
    let part_uuids =
        write_table(file, layout, sector_size, !plan.uefi).map_err(|e| e.to_string())?;
    tracing::info!(device = %dev, label = layout.label.name(), partitions = layout.partitions.len(), "partition table written");
    if let (Some(part), Some(drive)) = (layout.get(Role::ConfigDrive), drive) {
        disk.zero(part.start, part.len)
            .and_then(|()| disk.write_at(part.start, drive))
            .map_err(|e| format!("writing the config drive to partition {}: {e}", part.number))?;
    }
    if let Some(part) = layout.get(Role::Swap) {
        write_swap(file, part.start, part.len, uuid::Uuid::new_v4(), "swap1").map_err(|e| {
            format!(
                "writing the swap signature on partition {}: {e}",
                part.number
            )
        })?;
    }
    if let Some(part) = layout.get(Role::Esp) {
        format_fat32(
            file,
            part.start,
            part.len,
            "EFI-PART",
            rand::random(),
            part.start / 512,
        )
        .map_err(|e| format!("making the FAT32 of the EFI system partition: {e}"))?;
    }
    if let Some(part) = layout.get(Role::Ephemeral) {
        match plan.ephemeral {
            Some(EphemeralFs::Vfat) => format_fat32(
                file,
                part.start,
                part.len,
                ephemeral::LABEL,
                rand::random(),
                part.start / 512,
            )
            .map_err(|e| format!("making the FAT32 of the ephemeral partition: {e}"))?,
            Some(EphemeralFs::Swap) => write_swap(
                file,
                part.start,
                part.len,
                uuid::Uuid::new_v4(),
                ephemeral::LABEL,
            )
            .map_err(|e| format!("writing the swap signature of the ephemeral partition: {e}"))?,
            Some(EphemeralFs::Ext(_)) | None => {}
        }
    }
    disk.sync().map_err(|e| format!("flushing {dev}: {e}"))?;
    if let Err(e) = disk.reread_partitions() {
        tracing::warn!(device = %dev, error = %e, "re-reading the partition table failed");
    }

    let uuid_of = |role: Role| -> Option<String> {
        let part = layout.get(role)?;
        let index = part.number as usize - 1;
        fs_uuid(file, part.start).or_else(|| part_uuids.get(index).cloned())
    };
    let root_uuid = uuid_of(Role::Root).ok_or("the root partition has no UUID")?;
    let mut partitions = Map::new();
    for part in &layout.partitions {
        let node = partition_path(device, part.number);
        partitions.insert(
            part.role.key().into(),
            Value::String(node.display().to_string()),
        );
    }
    let mut uuids = Map::new();
    uuids.insert("root uuid".into(), Value::String(root_uuid));
    uuids.insert(
        "efi system partition uuid".into(),
        uuid_of(Role::Esp).map_or(Value::Null, Value::String),
    );
    uuids.insert("partitions".into(), Value::Object(partitions));
    Ok(uuids)
}

/// Makes an ext ephemeral file system: `mke2fs -t <fs> -F -L ephemeral0` on the partition's
/// device node. The caller must have closed the disk: mke2fs claims the partition
/// exclusively, which the kernel refuses while the whole disk is held with `O_EXCL`.
/// Nothing to do for any other plan.
pub fn make_ext_ephemeral(
    device: &Path,
    plan: &Plan,
    fs_maker: &dyn FsMaker,
) -> Result<(), String> {
    let (Some(EphemeralFs::Ext(fs)), Some(part)) =
        (plan.ephemeral, plan.layout.get(Role::Ephemeral))
    else {
        return Ok(());
    };
    let node = partition_path(device, part.number);
    fs_maker
        .mke2fs(fs, &node, ephemeral::LABEL)
        .map_err(|e| format!("making the ephemeral file system: {e}"))?;
    tracing::info!(device = %node.display(), fs = fs.name(), "ephemeral file system made");
    Ok(())
}
