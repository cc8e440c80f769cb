//! Finding on-disk signatures without libblkid: what partition tables, RAID, LVM and file
//! systems a device carries (reported before a metadata erase and checked for afterwards),
//! and the protected partition types and file systems of spec §8.2.
//!
//! The offsets are those of the formats' own documentation and of libblkid's probes.

use std::io;

use super::io::{align_down, read_bytes, BlockIo};

/// One signature found on a device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    /// What it is, in libblkid's words where there is one (`ext4` is reported as `ext2/3/4`).
    pub name: &'static str,
    /// Byte offset of the magic on the device.
    pub offset: u64,
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

/// How much of the start of a device the probe reads at once.
const HEAD: usize = (68 * KIB) as usize;

/// Linux MD superblock magic (all versions), little-endian on disk for 1.x.
const MD_MAGIC: u32 = 0xa92b_4efc;
/// ZFS uberblock magic.
const ZFS_UBERBLOCK_MAGIC: u64 = 0x00ba_b10c;
/// bcache superblock magic (at 4 KiB + 24).
const BCACHE_MAGIC: [u8; 16] = [
    0xc6, 0x85, 0x73, 0xf6, 0x4e, 0x1a, 0x45, 0xca, 0x82, 0x65, 0xf5, 0x7f, 0x48, 0xba, 0x6d, 0x81,
];

fn at(buf: &[u8], offset: usize, len: usize) -> Option<&[u8]> {
    buf.get(offset..offset.checked_add(len)?)
}

fn le32(buf: &[u8], offset: usize) -> Option<u32> {
    at(buf, offset, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

fn le64(buf: &[u8], offset: usize) -> Option<u64> {
    at(buf, offset, 8).map(|b| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        u64::from_le_bytes(a)
    })
}

fn is(buf: &[u8], offset: usize, magic: &[u8]) -> bool {
    at(buf, offset, magic.len()) == Some(magic)
}

/// Signatures found in the first 68 KiB (`head`, possibly shorter for a tiny device).
fn probe_head(head: &[u8], found: &mut Vec<Found>) {
    let mut hit = |name: &'static str, offset: usize| {
        found.push(Found {
            name,
            offset: offset as u64,
        })
    };
    let boot_signature = is(head, 510, &[0x55, 0xAA]);
    let fat = is(head, 0x36, b"FAT1") || is(head, 0x52, b"FAT32   ");
    if boot_signature && fat {
        hit("vfat", 0);
    }
    if is(head, 3, b"NTFS    ") {
        hit("ntfs", 3);
    }
    if is(head, 3, b"EXFAT   ") {
        hit("exfat", 3);
    }
    if is(head, 3, b"-FVE-FS-") {
        hit("BitLocker", 3);
    }
    if boot_signature && !fat && !is(head, 3, b"NTFS    ") && !is(head, 3, b"EXFAT   ") {
        hit("dos (MBR boot signature)", 510);
    }
    for lbs in [512usize, 4096] {
        if is(head, lbs, b"EFI PART") {
            hit("gpt", lbs);
        }
    }
    if is(head, 0, b"XFSB") {
        hit("xfs", 0);
    }
    if is(head, 1080, &[0x53, 0xEF]) {
        hit("ext2/3/4", 1080);
    }
    for sector in 0..4 {
        if is(head, sector * 512, b"LABELONE") {
            hit("LVM2_member", sector * 512);
        }
    }
    for offset in [0usize, 4096] {
        if le32(head, offset) == Some(MD_MAGIC) {
            hit("linux_raid_member (md 1.1/1.2)", offset);
        }
    }
    for page in [4096usize, 8192, 16384, 32768, 65536] {
        let offset = page - 10;
        if is(head, offset, b"SWAPSPACE2") || is(head, offset, b"SWAP-SPACE") {
            hit("swap", offset);
        }
    }
    if is(head, 32769, b"CD001") {
        hit("iso9660", 32769);
    }
    if is(head, 0, b"LUKS\xba\xbe") {
        hit("crypto_LUKS", 0);
    }
    if is(head, 4096 + 24, &BCACHE_MAGIC) {
        hit("bcache", 4096 + 24);
    }
    if le32(head, 1024) == Some(0xF2F5_2010) {
        hit("f2fs", 1024);
    }
    if is(head, 32768, b"JFS1") {
        hit("jfs", 32768);
    }
    for magic in [&b"ReIsErFs"[..], b"ReIsEr2Fs", b"ReIsEr3Fs"] {
        if is(head, 65536 + 52, magic) {
            hit("reiserfs", 65536 + 52);
        }
    }
    if is(head, 65536 + 64, b"_BHRfS_M") {
        hit("btrfs", 65536 + 64);
    }
    if is(head, 65536, &[0x01, 0x16, 0x19, 0x70]) {
        hit("gfs2", 65536);
    }
    if is(head, 1024, b"H+") || is(head, 1024, b"HX") {
        hit("hfsplus", 1024);
    }
    if is(head, 0, b"hsqs") {
        hit("squashfs", 0);
    }
    if le32(head, 1024) == Some(0xE0F5_E1E2) {
        hit("erofs", 1024);
    }
    if is(head, 1024 + 6, &[0x34, 0x34]) {
        hit("nilfs2", 1024 + 6);
    }
    if is(head, 0, b"bluestore block device") {
        hit("ceph_bluestore", 0);
    }
}

/// A ZFS label at `label` holds uberblocks (magic in either byte order) in its second half.
fn probe_zfs_label(io: &mut dyn BlockIo, label: u64, found: &mut Vec<Found>) -> io::Result<()> {
    let ring = label + 128 * KIB;
    let Some(buf) = read_bytes(io, ring, (128 * KIB) as usize)? else {
        return Ok(());
    };
    for slot in (0..buf.len()).step_by(1024) {
        let Some(magic) = le64(&buf, slot) else {
            continue;
        };
        if magic == ZFS_UBERBLOCK_MAGIC || magic.swap_bytes() == ZFS_UBERBLOCK_MAGIC {
            found.push(Found {
                name: "zfs_member",
                offset: ring + slot as u64,
            });
            break;
        }
    }
    Ok(())
}

/// Every signature this module knows, anywhere it may be.
pub fn probe(io: &mut dyn BlockIo) -> io::Result<Vec<Found>> {
    let size = io.size();
    let mut found = Vec::new();
    let head_len = (HEAD as u64).min(size) as usize;
    if let Some(head) = read_bytes(io, 0, head_len)? {
        probe_head(&head, &mut found);
    }
    // Superblock copies and structures kept at the end of a device.
    for lbs in [512u64, 4096] {
        if size >= 2 * lbs {
            if let Some(b) = read_bytes(io, size - lbs, 8)? {
                if b == b"EFI PART" {
                    found.push(Found {
                        name: "gpt (backup header)",
                        offset: size - lbs,
                    });
                }
            }
        }
    }
    for offset in md_tail_offsets(size) {
        if let Some(b) = read_bytes(io, offset, 4)? {
            if u32::from_le_bytes([b[0], b[1], b[2], b[3]]) == MD_MAGIC {
                found.push(Found {
                    name: "linux_raid_member (md 0.90/1.0)",
                    offset,
                });
            }
        }
    }
    if size >= 1024 {
        if let Some(b) = read_bytes(io, size - 1024, 24)? {
            if b == b"Intel Raid ISM Cfg Sig. " {
                found.push(Found {
                    name: "isw_raid_member",
                    offset: size - 1024,
                });
            }
        }
    }
    if size >= 512 {
        if let Some(b) = read_bytes(io, size - 512, 4)? {
            if b == [0xDE, 0x11, 0xDE, 0x11] {
                found.push(Found {
                    name: "ddf_raid_member",
                    offset: size - 512,
                });
            }
        }
    }
    for label in zfs_label_offsets(size) {
        probe_zfs_label(io, label, &mut found)?;
    }
    for mirror in [64 * MIB, 256 * GIB] {
        if let Some(b) = read_bytes(io, mirror + 64, 8)? {
            if b == b"_BHRfS_M" {
                found.push(Found {
                    name: "btrfs (superblock mirror)",
                    offset: mirror + 64,
                });
            }
        }
    }
    for (offset, name) in [(MIB, "VMFS_volume_member"), (2 * MIB, "VMFS")] {
        if let Some(b) = read_bytes(io, offset, 4)? {
            if b == [0x0d, 0xd0, 0x01, 0xc0] {
                found.push(Found { name, offset });
            }
        }
    }
    found.sort_by_key(|f| f.offset);
    found.dedup();
    Ok(found)
}

/// Where MD 0.90 (64 KiB aligned, last 64 KiB) and 1.0 (8 KiB before the end, 4 KiB aligned)
/// superblocks sit on a device of `size` bytes.
pub fn md_tail_offsets(size: u64) -> Vec<u64> {
    let mut offsets = Vec::new();
    if size >= 128 * KIB {
        offsets.push(align_down(size, 64 * KIB) - 64 * KIB);
    }
    let sectors = size / 512;
    if sectors >= 16 {
        offsets.push(((sectors - 16) & !7) * 512);
    }
    offsets
}

/// The four ZFS labels (256 KiB each): two at the start, two at the 256 KiB aligned end.
pub fn zfs_label_offsets(size: u64) -> Vec<u64> {
    let label = 256 * KIB;
    let aligned = align_down(size, label);
    if aligned < 4 * label {
        return Vec::new();
    }
    vec![0, label, aligned - 2 * label, aligned - label]
}

/// GPT partition types, MBR types and file systems that a disk step must not touch unless
/// the operator says so (spec §8.2; IPA's names).
const PROTECTED_GPT_TYPES: &[(&str, &str)] = &[
    ("37AFFC90-EF7D-4E96-91C3-2D7AE055B174", "IBM GPFS Partition"),
    (
        "AA31E02A-400F-11DB-9590-000C2911D1B8",
        "VMware VMFS Partition (GPT)",
    ),
];
const PROTECTED_MBR_TYPE: (u8, &str) = (0xfb, "VMware VMFS Partition (MBR)");
const GFS2: &str = "Red Hat Global File System 2";

/// A GUID as text, from its on-disk mixed-endian form.
pub fn guid_text(raw: &[u8]) -> String {
    format!(
        "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
        raw[3], raw[2], raw[1], raw[0], raw[5], raw[4], raw[7], raw[6], raw[8], raw[9], raw[10],
        raw[11], raw[12], raw[13], raw[14], raw[15]
    )
}

/// One partition of a table: its type and where it starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePartition {
    /// GPT type GUID (upper case) or MBR type as `0x..`.
    pub type_: String,
    pub start: u64,
}

/// The primary GPT of a device, if it has one: the partitions with a type, and the header
/// fields that locate the backup GPT and the entry array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpt {
    pub block_size: u64,
    pub alternate_lba: u64,
    pub entries_lba: u64,
    pub entries_bytes: u64,
    pub partitions: Vec<TablePartition>,
}

/// Reads the primary GPT (trying 512 and 4096 byte blocks).
pub fn read_gpt(io: &mut dyn BlockIo) -> io::Result<Option<Gpt>> {
    for block in [512u64, 4096] {
        let Some(header) = read_bytes(io, block, 92)? else {
            continue;
        };
        if &header[..8] != b"EFI PART" {
            continue;
        }
        let alternate_lba = le64(&header, 32).unwrap_or(0);
        let entries_lba = le64(&header, 72).unwrap_or(0);
        let count = u64::from(le32(&header, 80).unwrap_or(0)).min(1024);
        let entry_size = u64::from(le32(&header, 84).unwrap_or(0));
        let mut partitions = Vec::new();
        let entries_bytes = count * entry_size;
        if (128..=4096).contains(&entry_size) {
            if let Some(entries) = read_bytes(
                io,
                entries_lba.saturating_mul(block),
                entries_bytes as usize,
            )? {
                for entry in entries.chunks_exact(entry_size as usize) {
                    if entry[..16].iter().all(|&b| b == 0) {
                        continue;
                    }
                    partitions.push(TablePartition {
                        type_: guid_text(&entry[..16]),
                        start: le64(entry, 32).unwrap_or(0).saturating_mul(block),
                    });
                }
            }
        }
        return Ok(Some(Gpt {
            block_size: block,
            alternate_lba,
            entries_lba,
            entries_bytes,
            partitions,
        }));
    }
    Ok(None)
}

/// The four primary MBR partitions with a non-zero type (no GPT protective-only check).
fn read_mbr(io: &mut dyn BlockIo) -> io::Result<Vec<TablePartition>> {
    let Some(sector) = read_bytes(io, 0, 512)? else {
        return Ok(Vec::new());
    };
    if sector[510..512] != [0x55, 0xAA] {
        return Ok(Vec::new());
    }
    Ok((0..4)
        .filter_map(|i| {
            let entry = &sector[446 + 16 * i..446 + 16 * (i + 1)];
            let type_ = entry[4];
            (type_ != 0).then(|| TablePartition {
                type_: format!("0x{type_:02x}"),
                start: u64::from(le32(entry, 8).unwrap_or(0)) * 512,
            })
        })
        .collect())
}

/// Why this device is protected (spec §8.2), if it is: a GPFS or VMFS partition in its
/// partition table, or a gfs2 file system on it or on one of its partitions.
pub fn protected(io: &mut dyn BlockIo) -> io::Result<Option<&'static str>> {
    let mut partitions = match read_gpt(io)? {
        Some(gpt) => gpt.partitions,
        None => Vec::new(),
    };
    partitions.extend(read_mbr(io)?);
    for p in &partitions {
        if let Some((_, what)) = PROTECTED_GPT_TYPES.iter().find(|(t, _)| *t == p.type_) {
            return Ok(Some(what));
        }
        if p.type_ == format!("0x{:02x}", PROTECTED_MBR_TYPE.0) {
            return Ok(Some(PROTECTED_MBR_TYPE.1));
        }
    }
    let starts = std::iter::once(0).chain(partitions.iter().map(|p| p.start));
    for start in starts {
        if let Some(b) = read_bytes(io, start + 65536, 4)? {
            if b == [0x01, 0x16, 0x19, 0x70] {
                return Ok(Some(GFS2));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
#[path = "tests/signatures.rs"]
mod tests;
