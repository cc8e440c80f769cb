//! The overwrite passes on in-memory disks.

use super::*;
use crate::erase::fake::FakeDisk;

#[test]
fn pass_lists() {
    assert_eq!(passes(1, true), [Pass::Random, Pass::Zeroes]);
    assert_eq!(passes(2, false), [Pass::Random, Pass::Random]);
    assert!(passes(0, false).is_empty());
}

#[test]
fn random_then_zeroes_with_progress() {
    let size = 10 * 1024 * 1024 + 512;
    let disk = FakeDisk::new(size, 512, 0xEE);
    let mut ticks = Vec::new();
    let offloaded = overwrite(
        disk.open().as_mut(),
        &passes(1, true),
        false,
        &mut |t: Tick| {
            ticks.push(t);
            Ok(())
        },
    )
    .unwrap();
    assert!(!offloaded);
    assert!(disk.contents().iter().all(|&b| b == 0));
    let total = 2 * size as u64;
    assert_eq!(ticks.last().unwrap().done, total);
    assert!(ticks.iter().all(|t| t.total == total && t.passes == 2));
    assert!(ticks.windows(2).all(|w| w[0].done < w[1].done));
    // 3 writes of 4 MiB (the last one short) per pass.
    assert_eq!(disk.writes(), 6);
}

#[test]
fn random_passes_leave_random_data() {
    let disk = FakeDisk::new(1024 * 1024, 4096, 0);
    overwrite(disk.open().as_mut(), &passes(1, false), true, &mut |_| {
        Ok(())
    })
    .unwrap();
    let data = disk.contents();
    let zeroes = data.iter().filter(|&&b| b == 0).count();
    assert!(
        zeroes < data.len() / 100,
        "{zeroes} zero bytes after a random pass"
    );
}

#[test]
fn the_zero_pass_is_offloaded_when_the_device_can() {
    let mut disk = FakeDisk::new(1024 * 1024, 512, 0xEE);
    disk.write_zeroes = true;
    let offloaded =
        overwrite(disk.open().as_mut(), &[Pass::Zeroes], true, &mut |_| Ok(())).unwrap();
    assert!(offloaded);
    assert!(disk.contents().iter().all(|&b| b == 0));
    assert_eq!(disk.writes(), 1, "one BLKZEROOUT, no writes");
}

#[test]
fn without_zeroout_support_zeroes_are_written() {
    let disk = FakeDisk::new(1024 * 1024, 512, 0xEE);
    let offloaded =
        overwrite(disk.open().as_mut(), &[Pass::Zeroes], true, &mut |_| Ok(())).unwrap();
    assert!(!offloaded);
    assert!(disk.contents().iter().all(|&b| b == 0));
}

#[test]
fn a_tick_error_stops_the_overwrite() {
    let disk = FakeDisk::new(16 * 1024 * 1024, 512, 0xEE);
    let err = overwrite(disk.open().as_mut(), &passes(1, true), false, &mut |_| {
        Err(std::io::Error::new(
            std::io::ErrorKind::Interrupted,
            "aborted",
        ))
    })
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::Interrupted);
    assert_eq!(disk.writes(), 1);
}

#[test]
fn what_counts_as_unsupported() {
    for errno in [libc::EOPNOTSUPP, libc::ENOTTY, libc::EINVAL] {
        assert!(unsupported(&std::io::Error::from_raw_os_error(errno)));
    }
    assert!(!unsupported(&std::io::Error::from_raw_os_error(libc::EIO)));
}
