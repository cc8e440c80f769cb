//! `destroy_disk_metadata` without wipefs, dd or sgdisk (spec §8.3): zero every place where
//! a partition table, RAID, LVM or file-system signature can live, with aligned direct
//! writes, then check that the places read back as zeroes and that no signature is left.
//!
//! The regions: the first and last 4 MiB (MBR, primary and backup GPT, every superblock at a
//! fixed offset from the start — ext2/3/4, xfs, vfat/ntfs/exfat boot sectors, LVM2 label and
//! metadata area, MD 1.1/1.2, swap, iso9660, bcache, btrfs, ZFS labels 0/1, LUKS, VMFS — and
//! from the end — MD 0.90/1.0, ZFS labels 2/3, Intel/DDF RAID anchors, NTFS backup boot
//! sector), the btrfs superblock mirrors at 64 MiB and 256 GiB, and the backup GPT where the
//! primary header says it is (a disk image copied to a larger disk keeps it mid-disk).

use std::io;

use super::io::{align_down, align_up, AlignedBuf, BlockIo};
use super::signatures::{self, Found};

const MIB: u64 = 1024 * 1024;
/// How much of each end is zeroed.
pub const EDGE: u64 = 4 * MIB;
/// btrfs superblock mirrors (the primary at 64 KiB is in the head region).
const BTRFS_MIRRORS: [u64; 2] = [64 * MIB, 256 * 1024 * MIB];
const BTRFS_SUPERBLOCK: u64 = 4096;

/// A byte range to zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Region {
    pub offset: u64,
    pub len: u64,
}

impl Region {
    fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// The regions to zero on a device of `size` bytes with logical block size `lbs`, given its
/// primary GPT (if any). Aligned to `lbs`, sorted, merged, inside the device.
pub fn regions(size: u64, lbs: u32, gpt: Option<&signatures::Gpt>) -> Vec<Region> {
    let lbs = u64::from(lbs.max(512));
    let size = align_down(size, lbs);
    if size <= 2 * EDGE {
        return if size == 0 {
            Vec::new()
        } else {
            vec![Region {
                offset: 0,
                len: size,
            }]
        };
    }
    let mut raw = vec![(0, EDGE), (size - EDGE, size)];
    for mirror in BTRFS_MIRRORS {
        raw.push((mirror, mirror + BTRFS_SUPERBLOCK));
    }
    if let Some(gpt) = gpt {
        let bs = gpt.block_size;
        let alternate = gpt.alternate_lba.saturating_mul(bs);
        // The backup header and, before it, the backup entry array.
        raw.push((
            alternate.saturating_sub(align_up(gpt.entries_bytes, bs)),
            alternate.saturating_add(bs),
        ));
        let entries = gpt.entries_lba.saturating_mul(bs);
        raw.push((entries, entries.saturating_add(gpt.entries_bytes)));
    }
    let mut clipped: Vec<Region> = raw
        .into_iter()
        .filter_map(|(start, end)| {
            let start = align_down(start, lbs);
            let end = align_up(end, lbs).min(size);
            (start < end).then(|| Region {
                offset: start,
                len: end - start,
            })
        })
        .collect();
    clipped.sort_by_key(|r| r.offset);
    let mut merged: Vec<Region> = Vec::new();
    for region in clipped {
        match merged.last_mut() {
            Some(last) if region.offset <= last.end() => {
                let end = last.end().max(region.end());
                last.len = end - last.offset;
            }
            _ => merged.push(region),
        }
    }
    merged
}

/// What a metadata erase did to one device.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MetadataOutcome {
    /// Signatures present before.
    pub found_before: Vec<Found>,
    pub regions: Vec<Region>,
    pub bytes_zeroed: u64,
    /// Signatures still present after (empty on success).
    pub found_after: Vec<Found>,
    /// Regions that did not read back as zeroes.
    pub regions_not_zero: Vec<Region>,
}

impl MetadataOutcome {
    pub fn clean(&self) -> bool {
        self.found_after.is_empty() && self.regions_not_zero.is_empty()
    }
}

/// Zeroes `regions` with writes of at most 1 MiB; calls `progress(done, total)` after each.
pub fn zero_regions(
    io: &mut dyn BlockIo,
    regions: &[Region],
    progress: &mut dyn FnMut(u64, u64) -> io::Result<()>,
) -> io::Result<u64> {
    let total: u64 = regions.iter().map(|r| r.len).sum();
    let zeros = AlignedBuf::zeroed(MIB as usize);
    let mut done = 0;
    for region in regions {
        let mut offset = region.offset;
        while offset < region.end() {
            let len = (region.end() - offset).min(MIB);
            io.write_at(offset, &zeros.as_slice()[..len as usize])?;
            offset += len;
            done += len;
            progress(done, total)?;
        }
    }
    io.sync()?;
    Ok(done)
}

/// The regions of `regions` that hold a non-zero byte.
pub fn regions_not_zero(io: &mut dyn BlockIo, regions: &[Region]) -> io::Result<Vec<Region>> {
    let mut buf = AlignedBuf::zeroed(MIB as usize);
    let mut dirty = Vec::new();
    for region in regions {
        let mut offset = region.offset;
        while offset < region.end() {
            let len = (region.end() - offset).min(MIB) as usize;
            let chunk = &mut buf.as_mut_slice()[..len];
            io.read_at(offset, chunk)?;
            if chunk.iter().any(|&b| b != 0) {
                dirty.push(*region);
                break;
            }
            offset += len as u64;
        }
    }
    Ok(dirty)
}

/// The whole metadata erase of one device: probe, zero, sync, check.
pub fn erase_metadata(
    io: &mut dyn BlockIo,
    progress: &mut dyn FnMut(u64, u64) -> io::Result<()>,
) -> io::Result<MetadataOutcome> {
    let found_before = signatures::probe(io)?;
    let gpt = signatures::read_gpt(io)?;
    let regions = regions(io.size(), io.logical_block_size(), gpt.as_ref());
    let bytes_zeroed = zero_regions(io, &regions, progress)?;
    let regions_not_zero = regions_not_zero(io, &regions)?;
    let found_after = signatures::probe(io)?;
    Ok(MetadataOutcome {
        found_before,
        regions,
        bytes_zeroed,
        found_after,
        regions_not_zero,
    })
}

#[cfg(test)]
#[path = "tests/metadata.rs"]
mod tests;
