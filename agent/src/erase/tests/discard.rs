//! The discard erase on in-memory disks with each discard behaviour.

use rand::SeedableRng;

use super::*;
use crate::erase::fake::{DiscardBehaviour, FakeDisk};

fn samples(size: u64) -> Samples {
    Samples::choose(size, 512, &mut rand::rngs::StdRng::seed_from_u64(1))
}

fn disk(discard: DiscardBehaviour, secure: bool, write_zeroes: bool) -> FakeDisk {
    let mut d = FakeDisk::new(4 << 20, 512, 0x99);
    d.discard = discard;
    d.secure_discard = secure;
    d.write_zeroes = write_zeroes;
    d
}

#[test]
fn secure_discard_that_reads_zeroes() {
    let d = disk(DiscardBehaviour::Zeroes, true, false);
    let out = discard_erase(
        d.open().as_mut(),
        &samples(4 << 20),
        5,
        false,
        &mut |_, _| Ok(()),
    )
    .unwrap();
    assert!(out.secure && !out.zeroed_out);
    assert!(out.read_back.all_zero());
    assert!(d.contents().iter().all(|&b| b == 0));
}

#[test]
fn plain_discard_when_secure_is_not_supported() {
    let d = disk(DiscardBehaviour::Zeroes, false, false);
    let out = discard_erase(
        d.open().as_mut(),
        &samples(4 << 20),
        5,
        false,
        &mut |_, _| Ok(()),
    )
    .unwrap();
    assert!(!out.secure);
}

#[test]
fn a_discard_that_keeps_data_is_followed_by_zeroout() {
    let d = disk(DiscardBehaviour::KeepsData, false, true);
    let out = discard_erase(
        d.open().as_mut(),
        &samples(4 << 20),
        5,
        true,
        &mut |_, _| Ok(()),
    )
    .unwrap();
    assert!(out.zeroed_out);
    assert!(d.contents().iter().all(|&b| b == 0));
}

#[test]
fn a_discard_that_keeps_data_without_zeroout_fails() {
    let d = disk(DiscardBehaviour::KeepsData, false, false);
    let err = discard_erase(
        d.open().as_mut(),
        &samples(4 << 20),
        5,
        false,
        &mut |_, _| Ok(()),
    )
    .unwrap_err();
    assert!(matches!(err, DiscardError::NotZeroed(_)), "{err}");
    assert!(err.to_string().contains("do not read as zeroes"), "{err}");
}

#[test]
fn no_discard_support_is_an_error() {
    let d = disk(DiscardBehaviour::None, false, true);
    let err = discard_erase(
        d.open().as_mut(),
        &samples(4 << 20),
        5,
        true,
        &mut |_, _| Ok(()),
    )
    .unwrap_err();
    assert!(matches!(err, DiscardError::Io(_)), "{err}");
}
