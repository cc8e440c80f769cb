//! Signature probing and the protected-device check on hand-made images (real mkfs output
//! is covered by tests/erase_host.rs).

use super::*;
use crate::erase::fake::FakeDisk;

const MIB: usize = 1024 * 1024;

/// The on-disk (mixed-endian) form of a GUID written as text.
fn guid_raw(text: &str) -> [u8; 16] {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    let b: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    [
        b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6], b[8], b[9], b[10], b[11], b[12], b[13],
        b[14], b[15],
    ]
}

/// A GPT with one partition of `type_` starting at LBA 2048 (512-byte blocks).
fn gpt_disk(size: usize, type_: &str) -> FakeDisk {
    let disk = FakeDisk::new(size, 512, 0);
    let mut header = [0u8; 92];
    header[..8].copy_from_slice(b"EFI PART");
    let last = (size / 512 - 1) as u64;
    header[32..40].copy_from_slice(&last.to_le_bytes());
    header[72..80].copy_from_slice(&2u64.to_le_bytes());
    header[80..84].copy_from_slice(&128u32.to_le_bytes());
    header[84..88].copy_from_slice(&128u32.to_le_bytes());
    disk.poke(512, &header);
    disk.poke(size - 512, b"EFI PART");
    let mut entry = [0u8; 128];
    entry[..16].copy_from_slice(&guid_raw(type_));
    entry[32..40].copy_from_slice(&2048u64.to_le_bytes());
    disk.poke(1024, &entry);
    disk.poke(510, &[0x55, 0xAA]);
    disk
}

fn names(disk: &FakeDisk) -> Vec<(&'static str, u64)> {
    probe(disk.open().as_mut())
        .unwrap()
        .into_iter()
        .map(|f| (f.name, f.offset))
        .collect()
}

#[test]
fn guid_text_is_mixed_endian() {
    let linux = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";
    let raw = guid_raw(linux);
    assert_eq!(&raw[..4], &[0xAF, 0x3D, 0xC6, 0x0F]);
    assert_eq!(guid_text(&raw), linux);
}

#[test]
fn a_blank_device_has_no_signature() {
    assert!(names(&FakeDisk::new(16 * MIB, 512, 0)).is_empty());
    // A device smaller than the probes reach is fine too.
    assert!(names(&FakeDisk::new(4096, 512, 0)).is_empty());
}

#[test]
fn signatures_at_the_start() {
    let disk = FakeDisk::new(16 * MIB, 512, 0);
    disk.poke(1080, &[0x53, 0xEF]);
    disk.poke(0, b"XFSB");
    disk.poke(512, b"LABELONE");
    disk.poke(4096, &0xa92b_4efcu32.to_le_bytes());
    disk.poke(4096 - 10, b"SWAPSPACE2");
    disk.poke(32769, b"CD001");
    disk.poke(65536 + 64, b"_BHRfS_M");
    assert_eq!(
        names(&disk),
        [
            ("xfs", 0),
            ("LVM2_member", 512),
            ("ext2/3/4", 1080),
            ("swap", 4086),
            ("linux_raid_member (md 1.1/1.2)", 4096),
            ("iso9660", 32769),
            ("btrfs", 65600),
        ]
    );
}

#[test]
fn boot_sectors_are_told_apart() {
    let fat = FakeDisk::new(MIB, 512, 0);
    fat.poke(0x52, b"FAT32   ");
    fat.poke(510, &[0x55, 0xAA]);
    assert_eq!(names(&fat), [("vfat", 0)]);
    let ntfs = FakeDisk::new(MIB, 512, 0);
    ntfs.poke(3, b"NTFS    ");
    ntfs.poke(510, &[0x55, 0xAA]);
    assert_eq!(names(&ntfs), [("ntfs", 3)]);
    let mbr = FakeDisk::new(MIB, 512, 0);
    mbr.poke(510, &[0x55, 0xAA]);
    assert_eq!(names(&mbr), [("dos (MBR boot signature)", 510)]);
}

#[test]
fn signatures_at_the_end_and_in_the_middle() {
    let size = 128 * MIB;
    let disk = gpt_disk(size, "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    let md10 = md_tail_offsets(size as u64)[1] as usize;
    disk.poke(md10, &0xa92b_4efcu32.to_le_bytes());
    disk.poke(size - 1024, b"Intel Raid ISM Cfg Sig. ");
    disk.poke(64 * MIB + 64, b"_BHRfS_M");
    let zfs = zfs_label_offsets(size as u64)[3] as usize;
    disk.poke(zfs + 128 * 1024 + 3 * 1024, &0x00ba_b10cu64.to_le_bytes());
    let found = names(&disk);
    for expected in [
        ("dos (MBR boot signature)", 510),
        ("gpt", 512),
        ("btrfs (superblock mirror)", (64 * MIB + 64) as u64),
        ("linux_raid_member (md 0.90/1.0)", md10 as u64),
        ("zfs_member", (zfs + 128 * 1024 + 3 * 1024) as u64),
        ("isw_raid_member", (size - 1024) as u64),
        ("gpt (backup header)", (size - 512) as u64),
    ] {
        assert!(found.contains(&expected), "{expected:?} not in {found:?}");
    }
}

#[test]
fn md_and_zfs_tail_offsets() {
    // 0.90: the last 64 KiB aligned block; 1.0: 8 KiB before the end, 4 KiB aligned.
    let size = 100 * MIB as u64 + 3 * 512;
    assert_eq!(
        md_tail_offsets(size),
        [100 * MIB as u64 - 65536, 100 * MIB as u64 - 8192]
    );
    assert_eq!(
        zfs_label_offsets(size),
        [
            0,
            262144,
            100 * MIB as u64 - 524288,
            100 * MIB as u64 - 262144
        ]
    );
    assert!(zfs_label_offsets(512 * 1024).is_empty());
}

#[test]
fn reads_the_primary_gpt() {
    let disk = gpt_disk(8 * MIB, "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    let gpt = read_gpt(disk.open().as_mut()).unwrap().unwrap();
    assert_eq!(gpt.block_size, 512);
    assert_eq!(gpt.alternate_lba, (8 * MIB / 512 - 1) as u64);
    assert_eq!(gpt.entries_lba, 2);
    assert_eq!(gpt.entries_bytes, 128 * 128);
    assert_eq!(
        gpt.partitions,
        [TablePartition {
            type_: "0FC63DAF-8483-4772-8E79-3D69D8477DE4".into(),
            start: 2048 * 512
        }]
    );
}

fn protected_of(disk: FakeDisk) -> Option<&'static str> {
    protected(disk.open().as_mut()).unwrap()
}

#[test]
fn protected_partition_types_and_filesystems() {
    assert_eq!(
        protected_of(gpt_disk(8 * MIB, "37AFFC90-EF7D-4E96-91C3-2D7AE055B174")),
        Some("IBM GPFS Partition")
    );
    assert_eq!(
        protected_of(gpt_disk(8 * MIB, "AA31E02A-400F-11DB-9590-000C2911D1B8")),
        Some("VMware VMFS Partition (GPT)")
    );
    assert_eq!(
        protected_of(gpt_disk(8 * MIB, "0FC63DAF-8483-4772-8E79-3D69D8477DE4")),
        None
    );
    let mbr = FakeDisk::new(8 * MIB, 512, 0);
    let mut entry = [0u8; 16];
    entry[4] = 0xfb;
    entry[8..12].copy_from_slice(&2048u32.to_le_bytes());
    mbr.poke(446, &entry);
    mbr.poke(510, &[0x55, 0xAA]);
    assert_eq!(protected_of(mbr), Some("VMware VMFS Partition (MBR)"));
    // gfs2 on a partition of a disk, found through the table, and on a bare device.
    let gfs2 = gpt_disk(8 * MIB, "0FC63DAF-8483-4772-8E79-3D69D8477DE4");
    gfs2.poke(2048 * 512 + 65536, &[0x01, 0x16, 0x19, 0x70]);
    assert_eq!(protected_of(gfs2), Some("Red Hat Global File System 2"));
    let bare = FakeDisk::new(MIB, 512, 0);
    bare.poke(65536, &[0x01, 0x16, 0x19, 0x70]);
    assert_eq!(protected_of(bare), Some("Red Hat Global File System 2"));
}
