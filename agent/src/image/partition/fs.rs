//! File systems on the partitions of a partition-image deploy, written natively: the swap
//! signature (`mkswap`'s header; label `swap1`, or `ephemeral0` for a swap ephemeral
//! partition) and FAT32 (the EFI system partition, label `EFI-PART`; a vfat ephemeral
//! partition, label `ephemeral0`). ext ephemeral partitions are made by the ramdisk's
//! mke2fs ([`super::ephemeral`]). [`fs_uuid`] reads the UUID that `lsblk -o UUID` would
//! show, for `get_partition_uuids`.

use std::fs::File;
use std::os::unix::fs::FileExt;

const PAGE: u64 = 4096;

/// Writes a Linux swap signature (version 1, `SWAPSPACE2`) over `[offset, offset + len)`.
pub fn write_swap(
    file: &File,
    offset: u64,
    len: u64,
    uuid: uuid::Uuid,
    label: &str,
) -> std::io::Result<()> {
    let pages = len / PAGE;
    if pages < 10 {
        return Err(std::io::Error::other(format!(
            "a swap partition of {len} bytes is too small"
        )));
    }
    let mut header = vec![0u8; PAGE as usize];
    header[1024..1028].copy_from_slice(&1u32.to_le_bytes());
    let last_page = u32::try_from(pages - 1).unwrap_or(u32::MAX);
    header[1028..1032].copy_from_slice(&last_page.to_le_bytes());
    header[1036..1052].copy_from_slice(uuid.as_bytes());
    let name = label.as_bytes();
    let n = name.len().min(15);
    header[1052..1052 + n].copy_from_slice(&name[..n]);
    header[PAGE as usize - 10..].copy_from_slice(b"SWAPSPACE2");
    file.write_all_at(&header, offset)
}

const SECTOR: u64 = 512;
const RESERVED: u64 = 32;
const FATS: u64 = 2;
/// FAT32 needs at least this many clusters.
const MIN_CLUSTERS: u64 = 65525;

/// FAT32's geometry for `len` bytes: sectors per cluster, sectors per FAT, clusters and
/// the sector count; an error for a size FAT32 cannot have (fewer than 65525 clusters of
/// 512 bytes, about 33 MiB, or 2 TiB and more).
pub fn fat32_geometry(len: u64) -> Result<(u64, u64, u64, u32), String> {
    let total = len / SECTOR;
    let total32 = u32::try_from(total)
        .map_err(|_| format!("{len} bytes are too many for a FAT32 file system (2 TiB)"))?;
    // The largest cluster (up to 4 KiB) that still leaves FAT32's minimum cluster count.
    let (per_cluster, fat_sectors, clusters) = [8u64, 4, 2, 1]
        .into_iter()
        .filter(|_| total > RESERVED)
        .map(|spc| {
            let fat = (total - RESERVED).div_ceil((256 * spc + FATS) / 2);
            let data = (total - RESERVED).saturating_sub(FATS * fat);
            (spc, fat, data / spc)
        })
        .find(|&(_, _, clusters)| clusters >= MIN_CLUSTERS)
        .ok_or_else(|| format!("{len} bytes are too few for a FAT32 file system"))?;
    Ok((per_cluster, fat_sectors, clusters, total32))
}

/// Formats `[offset, offset + len)` as FAT32 with `label` (up to 11 bytes, kept as given, as
/// mkfs.fat 4.2 does) and the volume serial `volume_id` (what `lsblk` shows as
/// `XXXX-XXXX`). `hidden` is the partition's first sector, recorded in the boot sector as
/// mkfs.vfat does.
pub fn format_fat32(
    file: &File,
    offset: u64,
    len: u64,
    label: &str,
    volume_id: u32,
    hidden: u64,
) -> std::io::Result<()> {
    let (per_cluster, fat_sectors, clusters, total32) =
        fat32_geometry(len).map_err(std::io::Error::other)?;
    let mut label_bytes = [b' '; 11];
    for (slot, byte) in label_bytes.iter_mut().zip(label.bytes()) {
        *slot = byte;
    }

    let mut boot = [0u8; 512];
    boot[0..3].copy_from_slice(&[0xeb, 0x58, 0x90]);
    boot[3..11].copy_from_slice(b"rivet   ");
    boot[11..13].copy_from_slice(&(SECTOR as u16).to_le_bytes());
    boot[13] = per_cluster as u8;
    boot[14..16].copy_from_slice(&(RESERVED as u16).to_le_bytes());
    boot[16] = FATS as u8;
    boot[21] = 0xf8;
    boot[24..26].copy_from_slice(&63u16.to_le_bytes());
    boot[26..28].copy_from_slice(&255u16.to_le_bytes());
    boot[28..32].copy_from_slice(&(u32::try_from(hidden).unwrap_or(0)).to_le_bytes());
    boot[32..36].copy_from_slice(&total32.to_le_bytes());
    boot[36..40].copy_from_slice(&(fat_sectors as u32).to_le_bytes());
    boot[44..48].copy_from_slice(&2u32.to_le_bytes());
    boot[48..50].copy_from_slice(&1u16.to_le_bytes());
    boot[50..52].copy_from_slice(&6u16.to_le_bytes());
    boot[64] = 0x80;
    boot[66] = 0x29;
    boot[67..71].copy_from_slice(&volume_id.to_le_bytes());
    boot[71..82].copy_from_slice(&label_bytes);
    boot[82..90].copy_from_slice(b"FAT32   ");
    boot[510] = 0x55;
    boot[511] = 0xaa;

    let mut info = [0u8; 512];
    info[0..4].copy_from_slice(&0x4161_5252u32.to_le_bytes());
    info[484..488].copy_from_slice(&0x6141_7272u32.to_le_bytes());
    info[488..492].copy_from_slice(&((clusters - 1) as u32).to_le_bytes());
    info[492..496].copy_from_slice(&3u32.to_le_bytes());
    info[508..512].copy_from_slice(&0xaa55_0000u32.to_le_bytes());

    // Reserved sectors, both FATs and the root directory's cluster start as zeros.
    let metadata = (RESERVED + FATS * fat_sectors + per_cluster) * SECTOR;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < metadata {
        let n = (metadata - at).min(zeros.len() as u64) as usize;
        file.write_all_at(&zeros[..n], offset + at)?;
        at += n as u64;
    }
    file.write_all_at(&boot, offset)?;
    file.write_all_at(&info, offset + SECTOR)?;
    file.write_all_at(&boot, offset + 6 * SECTOR)?;
    file.write_all_at(&info, offset + 7 * SECTOR)?;
    let mut fat_head = [0u8; 12];
    fat_head[0..4].copy_from_slice(&0x0fff_fff8u32.to_le_bytes());
    fat_head[4..8].copy_from_slice(&0x0fff_ffffu32.to_le_bytes());
    // The root directory: one cluster, end of chain.
    fat_head[8..12].copy_from_slice(&0x0fff_ffffu32.to_le_bytes());
    for copy in 0..FATS {
        file.write_all_at(&fat_head, offset + (RESERVED + copy * fat_sectors) * SECTOR)?;
    }
    // The volume label entry in the root directory (where blkid reads the label).
    let mut entry = [0u8; 32];
    entry[0..11].copy_from_slice(&label_bytes);
    entry[11] = 0x08;
    file.write_all_at(&entry, offset + (RESERVED + FATS * fat_sectors) * SECTOR)
}

fn read(file: &File, at: u64, len: usize) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, at).ok()?;
    Some(buf)
}

fn dashed(bytes: &[u8]) -> String {
    uuid::Uuid::from_slice(bytes)
        .map(|u| u.to_string())
        .unwrap_or_default()
}

/// The file-system UUID of the file system at `offset` (ext2/3/4, XFS, btrfs, swap, FAT),
/// formatted as `lsblk -o UUID` shows it; `None` when none is recognised.
pub fn fs_uuid(file: &File, offset: u64) -> Option<String> {
    let head = read(file, offset, 4096)?;
    // ext2/3/4: superblock at 1024, magic 0xEF53 at +56, UUID at +104.
    if head[1024 + 56..1024 + 58] == [0x53, 0xef] {
        return Some(dashed(&head[1024 + 104..1024 + 120]));
    }
    if &head[0..4] == b"XFSB" {
        return Some(dashed(&head[32..48]));
    }
    if &head[4086..4096] == b"SWAPSPACE2" {
        return Some(dashed(&head[1036..1052]));
    }
    if head[510..512] == [0x55, 0xaa] {
        let serial_at = if &head[82..87] == b"FAT32" {
            Some(67)
        } else if &head[54..57] == b"FAT" {
            Some(39)
        } else {
            None
        };
        if let Some(at) = serial_at {
            let id = u32::from_le_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
            return Some(format!("{:04X}-{:04X}", id >> 16, id & 0xffff));
        }
    }
    // btrfs: superblock at 64 KiB, fsid at +32, magic at +64.
    let btrfs = read(file, offset + 65536, 128)?;
    if &btrfs[64..72] == b"_BHRfS_M" {
        return Some(dashed(&btrfs[32..48]));
    }
    None
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::image::testutil::{blkid, path_str, run, sized_file};

    #[test]
    fn the_native_fat32_passes_fsck_and_blkid_reads_its_label_and_serial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("esp");
        let file = sized_file(&path, 64 << 20);
        format_fat32(&file, 0, 64 << 20, "EFI-PART", 0x1234_abcd, 2048).unwrap();
        run("fsck.vfat", &["-n", path_str(&path)]);
        assert_eq!(blkid(&path, "TYPE"), "vfat");
        assert_eq!(blkid(&path, "LABEL"), "EFI-PART");
        assert_eq!(blkid(&path, "UUID"), "1234-ABCD");
        assert_eq!(fs_uuid(&file, 0).as_deref(), Some("1234-ABCD"));
        // rivet's own FAT reader (the one install_bootloader uses) reads it too.
        let fat = crate::efi::fat::Fat::open(&file, 0).unwrap();
        assert!(fat
            .list("")
            .unwrap()
            .iter()
            .all(|e| e.name.is_empty() || e.name == "EFI-PART"));
        // Too small for FAT32: refused.
        assert!(format_fat32(&file, 0, 16 << 20, "x", 1, 0).is_err());
        // The label is kept as given (mkfs.fat 4.2 keeps lower case too).
        format_fat32(&file, 0, 64 << 20, "ephemeral0", 7, 2048).unwrap();
        run("fsck.vfat", &["-n", path_str(&path)]);
        assert_eq!(blkid(&path, "LABEL"), "ephemeral0");
    }

    #[test]
    fn fat32_geometry_bounds() {
        assert!(fat32_geometry(0).is_err());
        assert!(fat32_geometry(32 << 20).is_err());
        let (spc, _, clusters, _) = fat32_geometry(34 << 20).unwrap();
        assert_eq!(spc, 1);
        assert!(clusters >= MIN_CLUSTERS);
        let (spc, _, _, total) = fat32_geometry(1 << 30).unwrap();
        assert_eq!((spc, total), (8, 2 << 20));
        let err = fat32_geometry(2 << 40).unwrap_err();
        assert!(err.contains("too many"), "{err}");
    }

    #[test]
    fn the_swap_signature_is_what_blkid_and_swapon_expect() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("swap");
        let file = sized_file(&path, 8 << 20);
        let uuid = uuid::Uuid::parse_str("5e0c1a2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b").unwrap();
        write_swap(&file, 0, 8 << 20, uuid, "swap1").unwrap();
        assert_eq!(blkid(&path, "TYPE"), "swap");
        assert_eq!(blkid(&path, "LABEL"), "swap1");
        assert_eq!(blkid(&path, "UUID"), uuid.to_string());
        assert_eq!(fs_uuid(&file, 0), Some(uuid.to_string()));
    }

    #[test]
    fn fs_uuid_reads_what_mkfs_made() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ext4");
        File::create(&path).unwrap().set_len(16 << 20).unwrap();
        run("mkfs.ext4", &["-q", "-F", path_str(&path)]);
        let file = File::open(&path).unwrap();
        assert_eq!(fs_uuid(&file, 0), Some(blkid(&path, "UUID")));
        let blank = dir.path().join("blank");
        File::create(&blank).unwrap().set_len(1 << 20).unwrap();
        assert_eq!(fs_uuid(&File::open(&blank).unwrap(), 0), None);
    }
}
