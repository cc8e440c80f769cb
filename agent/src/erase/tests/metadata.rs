//! Metadata regions and the wipe on in-memory disks (real signatures made by mkfs, pvcreate,
//! mdadm and sgdisk are wiped in tests/erase_host.rs).

use super::*;
use crate::erase::fake::FakeDisk;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

fn r(offset: u64, len: u64) -> Region {
    Region { offset, len }
}

#[test]
fn small_devices_are_zeroed_whole() {
    assert_eq!(regions(0, 512, None), []);
    assert_eq!(regions(8 * MIB, 512, None), [r(0, 8 * MIB)]);
    // A size that is not a whole number of blocks is cut to the last whole block.
    assert_eq!(regions(3 * MIB + 100, 512, None), [r(0, 3 * MIB)]);
}

#[test]
fn head_tail_and_btrfs_mirrors() {
    assert_eq!(
        regions(100 * MIB, 512, None),
        [r(0, 4 * MIB), r(64 * MIB, 4096), r(96 * MIB, 4 * MIB)]
    );
    let size = 300 * GIB + 512;
    assert_eq!(
        regions(size, 512, None),
        [
            r(0, 4 * MIB),
            r(64 * MIB, 4096),
            r(256 * GIB, 4096),
            r(size - 4 * MIB, 4 * MIB)
        ]
    );
    // 4 KiB logical blocks: the tail starts on a block boundary.
    let odd = 100 * MIB + 4096 * 3;
    let regions_4k = regions(odd, 4096, None);
    assert_eq!(*regions_4k.last().unwrap(), r(odd - 4 * MIB, 4 * MIB));
    assert!(regions_4k
        .iter()
        .all(|x| x.offset % 4096 == 0 && x.len % 4096 == 0));
}

#[test]
fn a_backup_gpt_left_mid_disk_is_zeroed_too() {
    // An image made for a 1 GiB disk, copied to a 2 GiB one.
    let gpt = crate::erase::signatures::Gpt {
        block_size: 512,
        alternate_lba: GIB / 512 - 1,
        entries_lba: 2,
        entries_bytes: 128 * 128,
        partitions: Vec::new(),
    };
    let found = regions(2 * GIB, 512, Some(&gpt));
    assert!(
        found.contains(&r(GIB - 512 - 16 * KIB, 16 * KIB + 512)),
        "{found:?}"
    );
    // Entries far from the start (a hand-made table) are covered as well.
    let far = crate::erase::signatures::Gpt {
        entries_lba: 3 * GIB / 512,
        ..gpt
    };
    assert!(regions(4 * GIB, 512, Some(&far)).contains(&r(3 * GIB, 16 * KIB)));
}

#[test]
fn regions_overlapping_are_merged_and_clipped() {
    let gpt = crate::erase::signatures::Gpt {
        block_size: 512,
        alternate_lba: u64::MAX / 1024,
        entries_lba: 2,
        entries_bytes: 128 * 128,
        partitions: Vec::new(),
    };
    let found = regions(100 * MIB, 512, Some(&gpt));
    assert_eq!(
        found,
        [r(0, 4 * MIB), r(64 * MIB, 4096), r(96 * MIB, 4 * MIB)]
    );
}

#[test]
fn erase_metadata_zeroes_the_regions_and_leaves_the_rest() {
    let size = 96 * MIB as usize;
    let disk = FakeDisk::new(size, 512, 0x77);
    disk.poke(1080, &[0x53, 0xEF]);
    disk.poke(510, &[0x55, 0xAA]);
    let mut ticks = Vec::new();
    let outcome = erase_metadata(disk.open().as_mut(), &mut |done, total| {
        ticks.push((done, total));
        Ok(())
    })
    .unwrap();
    assert!(outcome.clean(), "{outcome:?}");
    assert!(outcome.found_before.iter().any(|f| f.name == "ext2/3/4"));
    assert_eq!(outcome.bytes_zeroed, 8 * MIB + 4096);
    assert_eq!(ticks.last(), Some(&(8 * MIB + 4096, 8 * MIB + 4096)));
    let data = disk.contents();
    assert!(data[..4 * MIB as usize].iter().all(|&b| b == 0));
    assert!(data[size - 4 * MIB as usize..].iter().all(|&b| b == 0));
    assert!(data[64 * MIB as usize..64 * MIB as usize + 4096]
        .iter()
        .all(|&b| b == 0));
    assert_eq!(
        data[5 * MIB as usize],
        0x77,
        "user data outside the regions stays"
    );
    assert_eq!(data[64 * MIB as usize + 4096], 0x77);
}

#[test]
fn a_read_only_device_fails_with_erofs() {
    let disk = FakeDisk::new(16 * MIB as usize, 512, 0x11);
    disk.set_read_only();
    let err = erase_metadata(disk.open().as_mut(), &mut |_, _| Ok(())).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS));
}

#[test]
fn progress_can_stop_the_wipe() {
    let disk = FakeDisk::new(16 * MIB as usize, 512, 0x11);
    let err = erase_metadata(disk.open().as_mut(), &mut |_, _| {
        Err(std::io::Error::new(
            std::io::ErrorKind::Interrupted,
            "aborted",
        ))
    })
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::Interrupted);
    assert_eq!(disk.writes(), 1, "stopped after the first write");
}
