//! The security erase sequence against `FakeAtaDrive` (the ACS-3 state machine) with the
//! fixture IDENTIFY pages.

use std::time::Duration;

use super::*;
use crate::erase::fake::{AtaSecurity, FakeAtaDrive, FakeDisk};
use crate::erase::tests::ata_fixture as fixture;

fn drive(security: AtaSecurity) -> FakeAtaDrive {
    FakeAtaDrive::new(
        FakeDisk::new(64 * 1024, 512, 0xAB),
        fixture("identify-ssd-not-frozen.bin"),
        security,
    )
}

fn security() -> AtaSecurity {
    AtaSecurity {
        supported: true,
        frozen: false,
        enhanced: true,
        password: None,
        locked: false,
        prepared: false,
        erase_fails: false,
    }
}

fn erase(d: &mut FakeAtaDrive) -> (Result<AtaErased, AtaEraseError>, Vec<AtaErased>) {
    let mut started = Vec::new();
    let result = security_erase(d, "/dev/sda", 1_000_000_000_000, &mut |e| {
        started.push(e.clone())
    });
    (result, started)
}

#[test]
fn a_drive_with_security_disabled_is_erased_enhanced() {
    let mut d = drive(security());
    let (result, started) = erase(&mut d);
    let done = result.unwrap();
    assert!(done.enhanced);
    assert_eq!(done.estimate, EraseTime::Minutes(8));
    assert_eq!(done.timeout, Duration::from_secs(8 * 90 + 900));
    assert_eq!(started, [done]);
    assert_eq!(
        d.commands(),
        [
            CMD_IDENTIFY_DEVICE,
            CMD_SECURITY_SET_PASSWORD,
            CMD_SECURITY_ERASE_PREPARE,
            CMD_SECURITY_ERASE_UNIT,
            CMD_IDENTIFY_DEVICE
        ]
    );
    assert!(d.disk.contents().iter().all(|&b| b == 0));
    assert_eq!(d.security().password, None, "security ends disabled");
}

#[test]
fn normal_erase_when_enhanced_is_not_supported() {
    let mut d = drive(AtaSecurity {
        enhanced: false,
        ..security()
    });
    let (result, _) = erase(&mut d);
    let done = result.unwrap();
    assert!(!done.enhanced);
    assert_eq!(done.estimate, EraseTime::Minutes(4));
}

#[test]
fn a_frozen_drive_is_refused_with_the_cause_and_the_fix() {
    let mut d = drive(AtaSecurity {
        frozen: true,
        ..security()
    });
    let (result, started) = erase(&mut d);
    let err = result.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, AtaEraseError::Frozen { .. }));
    for needle in [
        "/dev/sda",
        "frozen",
        "SECURITY FREEZE LOCK",
        "suspend",
        "hot-plug",
    ] {
        assert!(text.contains(needle), "{needle} not in {text}");
    }
    assert!(started.is_empty());
    assert_eq!(
        d.commands(),
        [CMD_IDENTIFY_DEVICE],
        "nothing but IDENTIFY was sent"
    );
    assert!(d.disk.contents().iter().all(|&b| b == 0xAB));
}

#[test]
fn a_drive_locked_with_the_erase_password_is_unlocked_and_erased() {
    let mut d = drive(AtaSecurity {
        password: Some(PASSWORD),
        locked: true,
        ..security()
    });
    let (result, _) = erase(&mut d);
    result.unwrap();
    let commands = d.commands();
    assert_eq!(commands[1], CMD_SECURITY_UNLOCK);
    assert!(
        !commands.contains(&CMD_SECURITY_SET_PASSWORD),
        "already enabled"
    );
    assert!(d.disk.contents().iter().all(|&b| b == 0));
}

#[test]
fn a_drive_locked_by_someone_else_is_reported() {
    let mut other = [0u8; 32];
    other[0] = b'x';
    let mut d = drive(AtaSecurity {
        password: Some(other),
        locked: true,
        ..security()
    });
    let (result, _) = erase(&mut d);
    let err = result.unwrap_err();
    assert!(
        matches!(
            err,
            AtaEraseError::Locked {
                count_expired: false,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("user or master password"), "{err}");
    assert!(d.disk.contents().iter().all(|&b| b == 0xAB));
}

#[test]
fn a_locked_drive_with_an_expired_counter_says_power_cycle() {
    let mut d = FakeAtaDrive::new(
        FakeDisk::new(4096, 512, 1),
        fixture("identify-ssd-locked-expired.bin"),
        AtaSecurity {
            password: Some([9; 32]),
            locked: true,
            ..security()
        },
    );
    // The template's count-expired bit (4) survives the fake's update of bits 0-3 and 5.
    let (result, _) = erase(&mut d);
    let err = result.unwrap_err();
    assert!(err.to_string().contains("power-cycle"), "{err}");
}

#[test]
fn a_failed_erase_unit_clears_the_password() {
    let mut d = drive(AtaSecurity {
        erase_fails: true,
        ..security()
    });
    let (result, _) = erase(&mut d);
    let err = result.unwrap_err();
    assert!(matches!(err, AtaEraseError::EraseFailed { .. }), "{err}");
    assert!(
        err.to_string().contains("the password was cleared"),
        "{err}"
    );
    assert_eq!(d.security().password, None);
    let commands = d.commands();
    assert_eq!(
        &commands[commands.len() - 2..],
        [CMD_SECURITY_UNLOCK, CMD_SECURITY_DISABLE_PASSWORD]
    );
}

#[test]
fn no_security_feature_set() {
    let mut d = FakeAtaDrive::new(
        FakeDisk::new(4096, 512, 1),
        fixture("identify-no-security.bin"),
        AtaSecurity {
            supported: false,
            ..security()
        },
    );
    let (result, _) = erase(&mut d);
    assert!(matches!(result, Err(AtaEraseError::NotSupported { .. })));
}

#[test]
fn identify_reads_the_fake_state() {
    let mut d = drive(AtaSecurity {
        frozen: true,
        ..security()
    });
    let id = identify(&mut d).unwrap();
    assert!(id.security.frozen);
    assert_eq!(id.model, "Samsung SSD 860 EVO 1TB");
}
