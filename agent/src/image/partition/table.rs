//! Writes a [`Layout`]'s partition table: a GPT (with gptman, and a protective MBR) or an
//! MBR with primary partitions, as parted's `mklabel` + `mkpart` would leave it. Returns each
//! partition's PARTUUID, which `get_partition_uuids` falls back to when a partition has no
//! file-system UUID.

use std::fs::File;
use std::os::unix::fs::FileExt;

use gptman::{GPTPartitionEntry, GPT};

use super::layout::{Label, Layout, Role};
use crate::image::disklabel::LabelError;

/// GPT partition types.
const ESP: &str = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b";
const BIOS_BOOT: &str = "21686148-6449-6e6f-744e-656564454649";
const LINUX_SWAP: &str = "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f";
const LINUX_DATA: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";

/// MBR partition types.
const MBR_LINUX: u8 = 0x83;
const MBR_SWAP: u8 = 0x82;
const MBR_ESP: u8 = 0xef;

fn gpt_type(role: Role) -> &'static str {
    match role {
        Role::Esp => ESP,
        Role::BiosBoot => BIOS_BOOT,
        Role::Swap => LINUX_SWAP,
        Role::Ephemeral | Role::ConfigDrive | Role::Root => LINUX_DATA,
    }
}

fn guid(text: &str) -> Result<[u8; 16], LabelError> {
    uuid::Uuid::parse_str(text)
        .map(|u| u.to_bytes_le())
        .map_err(|e| LabelError::Invalid(format!("partition type {text}: {e}")))
}

/// PARTUUIDs by partition number (index 0 is partition 1).
pub type PartUuids = Vec<String>;

/// Writes the table for `layout` on `file` (a disk of `disk_bytes` with logical sectors of
/// `sector_size` bytes). `bios_boot_root`: mark the root partition active (BIOS with msdos,
/// as IPA sets parted's `boot` flag).
pub fn write_table(
    file: &File,
    layout: &Layout,
    sector_size: u64,
    bios_boot_root: bool,
) -> Result<PartUuids, LabelError> {
    match layout.label {
        Label::Gpt => write_gpt(file, layout, sector_size),
        Label::Msdos => write_mbr(file, layout, sector_size, bios_boot_root),
    }
}

fn write_gpt(file: &File, layout: &Layout, ss: u64) -> Result<PartUuids, LabelError> {
    let gpt_error = |action: &'static str| {
        move |source: gptman::Error| LabelError::Gpt {
            action: action.into(),
            source,
        }
    };
    let mut handle = file;
    let mut gpt = GPT::new_from(&mut handle, ss, uuid::Uuid::new_v4().to_bytes_le())
        .map_err(gpt_error("creating a GPT"))?;
    let mut uuids = Vec::new();
    for p in &layout.partitions {
        let unique = uuid::Uuid::new_v4();
        let first = p.start / ss;
        let last = (p.start + p.len) / ss - 1;
        if first < gpt.header.first_usable_lba || last > gpt.header.last_usable_lba {
            return Err(LabelError::Invalid(format!(
                "partition {} ({}) lies outside the GPT's usable sectors {}..={}",
                p.number,
                p.role.key(),
                gpt.header.first_usable_lba,
                gpt.header.last_usable_lba
            )));
        }
        gpt[p.number] = GPTPartitionEntry {
            partition_type_guid: guid(gpt_type(p.role))?,
            unique_partition_guid: unique.to_bytes_le(),
            starting_lba: first,
            ending_lba: last,
            attribute_bits: 0,
            partition_name: p.role.gpt_name().into(),
        };
        uuids.push(unique.to_string());
    }
    gpt.write_into(&mut handle)
        .map_err(gpt_error("writing the GPT"))?;
    GPT::write_protective_mbr_into(&mut handle, ss)
        .map_err(gpt_error("writing the protective MBR"))?;
    Ok(uuids)
}

fn write_mbr(
    file: &File,
    layout: &Layout,
    ss: u64,
    bios_boot_root: bool,
) -> Result<PartUuids, LabelError> {
    if ss != 512 {
        return Err(LabelError::Invalid(format!(
            "an msdos partition table needs 512-byte sectors; the disk has {ss}-byte sectors"
        )));
    }
    if layout.partitions.len() > 4 {
        return Err(LabelError::Invalid(
            "an msdos partition table holds 4 primary partitions".into(),
        ));
    }
    let mut mbr = [0u8; 512];
    // The boot code area stays empty: install_bootloader puts GRUB's there (BIOS).
    let signature: u32 = rand::random::<u32>() | 1;
    mbr[440..444].copy_from_slice(&signature.to_le_bytes());
    let mut uuids = Vec::new();
    for (slot, p) in layout.partitions.iter().enumerate() {
        let entry = &mut mbr[446 + 16 * slot..446 + 16 * (slot + 1)];
        let active = bios_boot_root && p.role == Role::Root;
        entry[0] = if active { 0x80 } else { 0 };
        // CHS fields saturated: LBA is authoritative.
        entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
        entry[4] = match p.role {
            Role::Swap => MBR_SWAP,
            Role::Esp => MBR_ESP,
            _ => MBR_LINUX,
        };
        entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
        let sectors = |bytes: u64| {
            u32::try_from(bytes / 512).map_err(|_| {
                LabelError::Invalid(format!(
                    "partition {} ({}) lies beyond what an msdos partition table addresses",
                    p.number,
                    p.role.key()
                ))
            })
        };
        entry[8..12].copy_from_slice(&sectors(p.start)?.to_le_bytes());
        entry[12..16].copy_from_slice(&sectors(p.len)?.to_le_bytes());
        uuids.push(format!("{signature:08x}-{:02x}", p.number));
    }
    mbr[510] = 0x55;
    mbr[511] = 0xaa;
    file.write_all_at(&mbr, 0)
        .map_err(|source| LabelError::Io {
            action: "writing the MBR".into(),
            source,
        })?;
    Ok(uuids)
}
