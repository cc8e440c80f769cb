//! Partition-table work after a whole-disk image is written (spec §5): moving the GPT
//! backup to the end of a larger disk (IPA's `fix_gpt_partition`), the `config-2` config
//! drive partition (GPT: a new partition in the last 64 MiB; MBR: a new primary partition),
//! and the MBR disk identifier that `get_partition_uuids` reports.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use base64::Engine;
use gptman::{GPTPartitionEntry, GPT};

use crate::disks::iso9660_label;

/// Largest config drive accepted (IPA's `MAX_CONFIG_DRIVE_SIZE_MB`).
pub const MAX_CONFIG_DRIVE: usize = 64 << 20;
/// Size of a new config drive partition.
const PARTITION_BYTES: u64 = 64 << 20;
/// The label cloud-init looks for.
pub const CONFIG_DRIVE_LABEL: &str = "config-2";
/// GPT type of the new partition: Linux filesystem data.
const LINUX_DATA: &str = "0fc63daf-8483-4772-8e79-3d69d8477de4";
/// MBR partitions cannot reach past 2^32 sectors of 512 bytes.
const MBR_LIMIT: u64 = (1u64 << 32) * 512;

/// Why the partition table could not be handled.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    #[error("{0}")]
    Invalid(String),
    #[error("{action}: {source}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{action}: {source}")]
    Gpt {
        action: String,
        #[source]
        source: gptman::Error,
    },
}

fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabelError {
    let action = action.into();
    move |source| LabelError::Io { action, source }
}

fn gpt_error(action: impl Into<String>) -> impl FnOnce(gptman::Error) -> LabelError {
    let action = action.into();
    move |source| LabelError::Gpt { action, source }
}

/// The config drive image from what Ironic sent: base64 of a gzipped (or plain) ISO, or,
/// fetched from a URL, the same or the ISO's bytes themselves.
pub fn decode_config_drive(data: &[u8], from_url: bool) -> Result<Vec<u8>, LabelError> {
    let compact: Vec<u8> = data
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let decoded = match base64::engine::general_purpose::STANDARD.decode(&compact) {
        Ok(decoded) => decoded,
        Err(_) if from_url => data.to_vec(),
        Err(e) => {
            return Err(LabelError::Invalid(format!(
                "the config drive is not base64: {e}"
            )))
        }
    };
    let image = if decoded.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&decoded[..])
            .take(MAX_CONFIG_DRIVE as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| LabelError::Invalid(format!("the config drive is not valid gzip: {e}")))?;
        out
    } else {
        decoded
    };
    if image.len() > MAX_CONFIG_DRIVE {
        return Err(LabelError::Invalid(format!(
            "the config drive is larger than {} MiB",
            MAX_CONFIG_DRIVE >> 20
        )));
    }
    if image.is_empty() {
        return Err(LabelError::Invalid("the config drive is empty".into()));
    }
    Ok(image)
}

/// The MBR disk identifier (4 bytes at offset 440) as `get_partition_uuids` reports it for
/// whole-disk images: `0x%08x` of the little-endian value, as `hexdump -e '"0x%08x"'` prints.
pub fn disk_identifier(file: &File) -> Result<String, LabelError> {
    let mut id = [0u8; 4];
    file.read_exact_at(&mut id, 440)
        .map_err(io("reading the MBR disk identifier"))?;
    Ok(format!("0x{:08x}", u32::from_le_bytes(id)))
}

/// The disk's GPT, if it has one.
fn read_gpt(file: &File) -> Option<GPT> {
    let mut reader = file;
    GPT::find_from(&mut reader).ok()
}

/// Moves the GPT backup header and entries to the end of the disk (the image was smaller
/// than the disk) and widens the protective MBR. Nothing to do without a GPT or when they
/// are there already. Returns whether it changed anything.
pub fn fix_gpt(file: &File) -> Result<bool, LabelError> {
    let Some(mut gpt) = read_gpt(file) else {
        return Ok(false);
    };
    let mut seeker = file;
    let before = gpt.header.backup_lba;
    gpt.header
        .update_from(&mut seeker, gpt.sector_size)
        .map_err(gpt_error("sizing the GPT to the disk"))?;
    if gpt.header.backup_lba == before {
        return Ok(false);
    }
    let mut writer = file;
    gpt.write_into(&mut writer)
        .map_err(gpt_error("writing the GPT"))?;
    widen_protective_mbr(file, gpt.sector_size)?;
    Ok(true)
}

/// Sets the protective MBR entry (type 0xEE) to cover the whole disk.
fn widen_protective_mbr(file: &File, sector_size: u64) -> Result<(), LabelError> {
    let mut mbr = [0u8; 512];
    file.read_exact_at(&mut mbr, 0)
        .map_err(io("reading the MBR"))?;
    if mbr[510..512] != [0x55, 0xaa] || mbr[446 + 4] != 0xee {
        return Ok(());
    }
    let mut seeker = file;
    let sectors = seeker
        .seek(SeekFrom::End(0))
        .map_err(io("measuring the disk"))?
        / sector_size;
    let count = (sectors - 1).min(u64::from(u32::MAX)) as u32;
    file.write_all_at(&count.to_le_bytes(), 446 + 12)
        .map_err(io("writing the protective MBR"))
}

/// How many partitions the disk's partition table lists (GPT entries in use, else MBR
/// primary entries); 0 without a partition table.
pub fn partition_count(file: &File) -> Result<usize, LabelError> {
    if let Some(gpt) = read_gpt(file) {
        return Ok(gpt.iter().filter(|(_, entry)| entry.is_used()).count());
    }
    let mut mbr = [0u8; 512];
    file.read_exact_at(&mut mbr, 0)
        .map_err(io("reading the MBR"))?;
    if mbr[510..512] != [0x55, 0xaa] {
        return Ok(0);
    }
    Ok(mbr_entries(&mbr).iter().filter(|e| e.0 != 0).count())
}

/// Where the config drive went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDrivePartition {
    /// 1-based partition number.
    pub number: u32,
    pub offset: u64,
    pub len: u64,
    /// Reused an existing `config-2` partition of the image.
    pub reused: bool,
}

/// Whether the filesystem at `offset` is labelled `config-2`.
fn labelled_config_drive(file: &File, offset: u64) -> bool {
    let mut pvd = [0u8; 2048];
    file.read_exact_at(&mut pvd, offset + 32768).is_ok()
        && iso9660_label(&pvd).is_some_and(|l| l.eq_ignore_ascii_case(CONFIG_DRIVE_LABEL))
}

/// Adds (or reuses) the `config-2` partition and writes `drive` into it.
pub fn write_config_drive(file: &File, drive: &[u8]) -> Result<ConfigDrivePartition, LabelError> {
    let partition = match read_gpt(file) {
        Some(gpt) => gpt_partition(file, gpt, drive.len() as u64)?,
        None => mbr_partition(file, drive.len() as u64)?,
    };
    let zeros = vec![0u8; 1 << 20];
    let mut at = partition.offset;
    let end = partition.offset + partition.len;
    while at < end {
        let n = (end - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], at)
            .map_err(io("clearing the config drive partition"))?;
        at += n as u64;
    }
    file.write_all_at(drive, partition.offset)
        .map_err(io("writing the config drive"))?;
    let mut handle = file;
    handle.flush().map_err(io("flushing the config drive"))?;
    file.sync_data().map_err(io("flushing the config drive"))?;
    Ok(partition)
}

fn gpt_partition(
    file: &File,
    mut gpt: GPT,
    needed: u64,
) -> Result<ConfigDrivePartition, LabelError> {
    let ss = gpt.sector_size;
    for (number, entry) in gpt.iter() {
        let offset = entry.starting_lba * ss;
        let len = (entry.ending_lba + 1 - entry.starting_lba) * ss;
        if entry.is_used()
            && (entry.partition_name.as_str() == CONFIG_DRIVE_LABEL
                || labelled_config_drive(file, offset))
        {
            if len < needed {
                return Err(LabelError::Invalid(format!(
                    "the image's config-2 partition {number} holds {len} bytes, the config \
                     drive needs {needed}"
                )));
            }
            return Ok(ConfigDrivePartition {
                number,
                offset,
                len,
                reused: true,
            });
        }
    }
    let mut seeker = file;
    gpt.header
        .update_from(&mut seeker, ss)
        .map_err(gpt_error("sizing the GPT to the disk"))?;
    let sectors = PARTITION_BYTES / ss;
    let start = gpt.find_last_place(sectors).ok_or_else(|| {
        LabelError::Invalid(
            "no free space for a 64 MiB config drive partition at the end of the disk".into(),
        )
    })?;
    let number = (1..=gpt.header.number_of_partition_entries)
        .find(|&i| gpt[i].is_unused())
        .ok_or_else(|| LabelError::Invalid("the GPT has no free partition entry".into()))?;
    let type_guid = uuid::Uuid::parse_str(LINUX_DATA)
        .map_err(|e| LabelError::Invalid(e.to_string()))?
        .to_bytes_le();
    gpt[number] = GPTPartitionEntry {
        partition_type_guid: type_guid,
        unique_partition_guid: uuid::Uuid::new_v4().to_bytes_le(),
        starting_lba: start,
        ending_lba: start + sectors - 1,
        attribute_bits: 0,
        partition_name: CONFIG_DRIVE_LABEL.into(),
    };
    let mut writer = file;
    gpt.write_into(&mut writer)
        .map_err(gpt_error("writing the GPT with the config drive partition"))?;
    widen_protective_mbr(file, ss)?;
    Ok(ConfigDrivePartition {
        number,
        offset: start * ss,
        len: sectors * ss,
        reused: false,
    })
}

/// One MBR primary entry: (type, first sector, sectors).
fn mbr_entries(mbr: &[u8; 512]) -> [(u8, u64, u64); 4] {
    let mut entries = [(0u8, 0u64, 0u64); 4];
    for (i, entry) in entries.iter_mut().enumerate() {
        let e = &mbr[446 + 16 * i..446 + 16 * (i + 1)];
        let word =
            |at: usize| u64::from(u32::from_le_bytes([e[at], e[at + 1], e[at + 2], e[at + 3]]));
        *entry = (e[4], word(8), word(12));
    }
    entries
}

fn mbr_partition(file: &File, needed: u64) -> Result<ConfigDrivePartition, LabelError> {
    let mut mbr = [0u8; 512];
    file.read_exact_at(&mut mbr, 0)
        .map_err(io("reading the MBR"))?;
    if mbr[510..512] != [0x55, 0xaa] {
        return Err(LabelError::Invalid(
            "the image has no partition table (neither GPT nor MBR); cannot add a config drive"
                .into(),
        ));
    }
    let entries = mbr_entries(&mbr);
    for (i, &(kind, start, count)) in entries.iter().enumerate() {
        if kind != 0 && labelled_config_drive(file, start * 512) {
            if count * 512 < needed {
                return Err(LabelError::Invalid(format!(
                    "the image's config-2 partition {} is too small for the config drive",
                    i + 1
                )));
            }
            return Ok(ConfigDrivePartition {
                number: i as u32 + 1,
                offset: start * 512,
                len: count * 512,
                reused: true,
            });
        }
    }
    let slot = entries.iter().position(|e| e.0 == 0).ok_or_else(|| {
        LabelError::Invalid(
            "the disk uses MBR partitioning and already has 4 primary partitions; cannot add a \
             config drive"
                .into(),
        )
    })?;
    let mut seeker = file;
    let disk = seeker
        .seek(SeekFrom::End(0))
        .map_err(io("measuring the disk"))?;
    let end = disk.min(MBR_LIMIT) / 512;
    let sectors = PARTITION_BYTES / 512;
    // 1 MiB aligned, inside the last 64 MiB (+ alignment) below the end.
    let start = (end.saturating_sub(sectors)) / 2048 * 2048;
    if start < 2048 {
        return Err(LabelError::Invalid(
            "the disk is too small for a config drive".into(),
        ));
    }
    let overlaps = entries
        .iter()
        .any(|&(kind, s, c)| kind != 0 && s < start + sectors && start < s + c);
    if overlaps {
        return Err(LabelError::Invalid(
            "no free space for a 64 MiB config drive partition at the end of the disk".into(),
        ));
    }
    let mut entry = [0u8; 16];
    entry[1..4].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[4] = 0x83;
    entry[5..8].copy_from_slice(&[0xfe, 0xff, 0xff]);
    entry[8..12].copy_from_slice(&(start as u32).to_le_bytes());
    entry[12..16].copy_from_slice(&(sectors as u32).to_le_bytes());
    file.write_all_at(&entry, 446 + 16 * slot as u64)
        .map_err(io("writing the MBR entry of the config drive"))?;
    Ok(ConfigDrivePartition {
        number: slot as u32 + 1,
        offset: start * 512,
        len: sectors * 512,
        reused: false,
    })
}

#[cfg(test)]
#[path = "disklabel_tests.rs"]
mod tests;
