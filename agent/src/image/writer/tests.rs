use std::io::Read;
use std::sync::Arc;

use super::*;
use crate::image::fake::{MemoryDisk, Op};

const MIB: usize = 1 << 20;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

#[test]
fn the_first_mib_is_written_last_after_a_sync() {
    let disk = Arc::new(MemoryDisk::new(8 * MIB, 0xee));
    let image = pattern(5 * MIB + 123, 7);
    let mut writer = DiskWriter::begin(disk.clone(), false).unwrap();
    for (i, chunk) in image.chunks(300_000).enumerate() {
        writer.write((i * 300_000) as u64, chunk).unwrap();
    }
    // Before finishing, the first MiB of the disk is still cleared.
    assert!(disk.content()[..MIB].iter().all(|&b| b == 0));
    let stats = writer.finish().unwrap();
    assert_eq!(stats.written, image.len() as u64);
    let content = disk.content();
    assert_eq!(&content[..image.len()], &image[..]);
    // The old content past the image stays, except the cleared last MiB.
    assert!(content[image.len()..7 * MIB].iter().all(|&b| b == 0xee));
    assert!(content[7 * MIB..].iter().all(|&b| b == 0));

    let ops = disk.ops();
    let first_mib_write = ops
        .iter()
        .position(|op| matches!(op, Op::Write { offset: 0, .. }))
        .unwrap();
    assert_eq!(first_mib_write, ops.len() - 2, "{ops:?}");
    assert_eq!(ops[first_mib_write - 1], Op::Sync);
    assert_eq!(ops[ops.len() - 1], Op::Sync);
    // Everything else was written in large pieces.
    let small = ops
        .iter()
        .filter(|op| matches!(op, Op::Write { len, .. } if *len < (1 << 20) as u64))
        .count();
    assert!(small <= 1, "{ops:?}");
}

#[test]
fn zero_blocks_are_zeroed_or_skipped_when_the_disk_reads_zeros() {
    let mut image = pattern(4 * MIB, 3);
    image[2 * MIB..3 * MIB].fill(0);
    for known_zero in [false, true] {
        let disk = Arc::new(MemoryDisk::new(6 * MIB, if known_zero { 0 } else { 0x55 }));
        let mut writer = DiskWriter::begin(disk.clone(), known_zero).unwrap();
        writer.write(0, &image).unwrap();
        writer.zero(4 * MIB as u64, MIB as u64).unwrap();
        let stats = writer.finish().unwrap();
        assert_eq!(&disk.content()[..4 * MIB], &image[..]);
        assert!(disk.content()[4 * MIB..5 * MIB].iter().all(|&b| b == 0));
        if known_zero {
            assert_eq!(stats.skipped, MIB as u64);
            assert_eq!(stats.zeroed, 0);
        } else {
            assert_eq!(stats.zeroed, 2 * MIB as u64);
        }
    }
}

#[test]
fn writes_past_the_disk_are_refused() {
    let disk = Arc::new(MemoryDisk::new(2 * MIB, 0));
    let mut writer = DiskWriter::begin(disk, false).unwrap();
    let err = writer.write(2 * MIB as u64 - 10, &[1; 20]).unwrap_err();
    assert!(matches!(err, WriteError::TooLarge { needed, .. } if needed == 2 * MIB as u64 + 10));
}

#[test]
fn a_failed_write_surfaces_and_wipe_clears_both_ends() {
    let mut disk = MemoryDisk::new(8 * MIB, 0x77);
    disk.fail_writes_at = Some(3 * MIB as u64);
    let disk = Arc::new(disk);
    let image = pattern(6 * MIB, 1);
    let mut writer = DiskWriter::begin(disk.clone(), false).unwrap();
    let outcome = writer
        .write(0, &image)
        .and_then(|()| writer.finish().map(drop));
    let err = outcome.unwrap_err();
    assert!(err.to_string().contains("injected write failure"), "{err}");
    // Nothing of the image's first MiB reached the disk.
    assert!(disk.content()[..MIB].iter().all(|&b| b == 0));
    disk.bytes.lock().unwrap()[..MIB].fill(9);
    wipe(disk.as_ref()).unwrap();
    let content = disk.content();
    assert!(content[..MIB].iter().all(|&b| b == 0));
    assert!(content[7 * MIB..].iter().all(|&b| b == 0));
}

#[test]
fn zero_segments_merge_runs() {
    let mut data = vec![1u8; 5 * ZERO_BLOCK + 10];
    data[ZERO_BLOCK..3 * ZERO_BLOCK].fill(0);
    assert_eq!(
        zero_segments(&data),
        vec![
            (0, ZERO_BLOCK, false),
            (ZERO_BLOCK, 3 * ZERO_BLOCK, true),
            (3 * ZERO_BLOCK, 5 * ZERO_BLOCK + 10, false)
        ]
    );
}

/// Hands out a stream in reads of varying, odd sizes.
struct Trickle<'a> {
    data: &'a [u8],
    step: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.step = self.step % 700_001 + 99_991;
        let n = buf.len().min(self.data.len()).min(self.step);
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

#[test]
fn a_stream_is_read_into_the_buffers_and_held_back_like_writes() {
    let disk = Arc::new(MemoryDisk::new(16 * MIB, 0xee));
    let mut image = pattern(9 * MIB + 4321, 5);
    image[5 * MIB..6 * MIB].fill(0);
    let mut writer = DiskWriter::begin(disk.clone(), false).unwrap();
    writer.write(0, &image[..1000]).unwrap();
    let mut stream = Trickle {
        data: &image[1000..],
        step: 0,
    };
    let end = writer.write_from(1000, &mut stream).unwrap();
    assert_eq!(end, image.len() as u64);
    assert!(disk.content()[..MIB].iter().all(|&b| b == 0));
    let stats = writer.finish().unwrap();
    assert_eq!(stats.written + stats.zeroed, image.len() as u64);
    assert_eq!(stats.zeroed, MIB as u64);
    assert_eq!(&disk.content()[..image.len()], &image[..]);
    let ops = disk.ops();
    let small = ops
        .iter()
        .filter(|op| matches!(op, Op::Write { len, .. } if *len < MIB as u64))
        .count();
    assert!(small <= 1, "{ops:?}");
}

#[test]
fn a_stream_longer_than_the_disk_is_refused() {
    for (size, image) in [(2 * MIB, 2 * MIB + 1), (MIB / 2, MIB)] {
        let disk = Arc::new(MemoryDisk::new(size, 0));
        let mut writer = DiskWriter::begin(disk, false).unwrap();
        let data = pattern(image, 2);
        let mut stream = Trickle {
            data: &data,
            step: 0,
        };
        let err = writer.write_from(0, &mut stream).unwrap_err();
        assert!(
            matches!(err, FillError::Write(WriteError::TooLarge { needed, .. }) if needed == size as u64 + 1),
            "{err:?}"
        );
    }
    // Exactly the disk's size fits.
    let disk = Arc::new(MemoryDisk::new(2 * MIB, 0));
    let mut writer = DiskWriter::begin(disk.clone(), false).unwrap();
    let data = pattern(2 * MIB, 4);
    let end = writer.write_from(0, &mut &data[..]).unwrap();
    assert_eq!(end, 2 * MIB as u64);
    writer.finish().unwrap();
    assert_eq!(disk.content(), data);
}

#[test]
fn all_zero_looks_at_every_byte() {
    for len in [0, 1, 63, 64, 65, 4096 + 17] {
        let mut block = vec![0u8; len];
        assert!(all_zero(&block));
        for at in 0..len {
            block[at] = 1;
            assert!(!all_zero(&block), "{len} {at}");
            block[at] = 0;
        }
    }
}
