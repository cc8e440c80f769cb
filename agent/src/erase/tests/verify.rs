//! Sampling, markers and the judgement of a read-back.

use rand::SeedableRng;

use super::*;
use crate::erase::fake::FakeDisk;

fn rng() -> rand::rngs::StdRng {
    rand::rngs::StdRng::seed_from_u64(7)
}

#[test]
fn samples_cover_first_last_and_every_stripe() {
    let s = Samples::choose(64 << 20, 512, &mut rng());
    assert_eq!(s.offsets.len(), SAMPLES + 2);
    assert_eq!(s.offsets[0], 0);
    assert_eq!(*s.offsets.last().unwrap(), (64 << 20) - 512);
    assert!(s.offsets.windows(2).all(|w| w[0] < w[1]));
    assert!(s.offsets.iter().all(|o| o % 512 == 0));
    let stripe = ((64u64 << 20) / 512 / (SAMPLES as u64 + 1)) * 512;
    for (i, offset) in s.offsets[1..=SAMPLES].iter().enumerate() {
        let i = i as u64;
        assert!(
            *offset >= i * stripe && *offset < (i + 1) * stripe,
            "{i}: {offset}"
        );
    }
}

#[test]
fn tiny_devices_get_what_fits() {
    assert_eq!(Samples::choose(512, 512, &mut rng()).offsets, [0]);
    assert_eq!(Samples::choose(4096, 4096, &mut rng()).offsets, [0]);
    assert_eq!(Samples::choose(8192, 512, &mut rng()).offsets, [0, 7680]);
    assert!(Samples::choose(100, 512, &mut rng()).offsets.is_empty());
}

#[test]
fn markers_are_found_until_erased() {
    let disk = FakeDisk::new(1 << 20, 512, 0);
    let samples = Samples::choose(1 << 20, 512, &mut rng());
    let mut io = disk.open();
    write_markers(io.as_mut(), &samples, 42).unwrap();
    let before = read_back(io.as_mut(), &samples, 42).unwrap();
    assert_eq!(before.marked, samples.offsets.len());
    assert_eq!(before.zero, 0);
    // Another run's nonce does not count.
    assert_eq!(read_back(io.as_mut(), &samples, 43).unwrap().marked, 0);

    disk.fill(0);
    let zeroed = read_back(io.as_mut(), &samples, 42).unwrap();
    assert!(zeroed.all_zero() && zeroed.markers_gone());
    disk.fill(0xC3);
    let garbage = read_back(io.as_mut(), &samples, 42).unwrap();
    assert!(garbage.markers_gone() && !garbage.all_zero());
}

#[test]
fn a_partly_erased_block_still_counts_as_marked() {
    let disk = FakeDisk::new(1 << 20, 512, 0);
    let samples = Samples::choose(1 << 20, 512, &mut rng());
    let mut io = disk.open();
    write_markers(io.as_mut(), &samples, 1).unwrap();
    let first = samples.offsets[3] as usize;
    disk.poke(first, &[0u8; 480]);
    let result = read_back(io.as_mut(), &samples, 1).unwrap();
    assert_eq!(result.marked, samples.offsets.len());
}

#[test]
fn judging() {
    let zero = ReadBack {
        samples: 4,
        zero: 4,
        marked: 0,
    };
    let garbage = ReadBack {
        samples: 4,
        zero: 0,
        marked: 0,
    };
    let stale = ReadBack {
        samples: 4,
        zero: 0,
        marked: 1,
    };
    assert!(Verification::judge(Expect::Zeroes, zero).passed);
    assert!(!Verification::judge(Expect::Zeroes, garbage).passed);
    assert!(Verification::judge(Expect::MarkersGone, garbage).passed);
    let failed = Verification::judge(Expect::MarkersGone, stale);
    assert!(!failed.passed);
    assert_eq!(
        failed.detail,
        "4 sampled blocks read back: 0 all zeroes, 1 still holding the marker written before \
         the erase"
    );
    assert!(
        !Verification::judge(Expect::MarkersGone, ReadBack::default()).passed,
        "no samples"
    );
}
