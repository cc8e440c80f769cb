//! ATA PASS-THROUGH encoding, sense decoding and IDENTIFY parsing against the fixtures
//! (agent/tests/fixtures/ata).

use std::time::Duration;

use super::*;
use crate::erase::tests::ata_fixture as fixture;

#[test]
fn sg_io_header_and_request_match_the_uapi_header() {
    // struct sg_io_hdr is 88 bytes on x86_64; SG_IO is 0x2285.
    assert_eq!(std::mem::size_of::<SgIoHdr>(), 88);
}

#[test]
fn cdb_for_identify_reads_one_block_with_ck_cond() {
    let mut cmd = AtaCommand::new(CMD_IDENTIFY_DEVICE);
    cmd.count = 1;
    assert_eq!(
        cdb16(&cmd, Direction::In),
        [0x85, 0x08, 0x2E, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0xEC, 0]
    );
}

#[test]
fn cdb_for_security_commands() {
    let mut erase = AtaCommand::new(CMD_SECURITY_ERASE_UNIT);
    erase.count = 1;
    // PIO data-out (protocol 5), T_DIR 0, BYT_BLOK 1, T_LENGTH 2, CK_COND.
    assert_eq!(
        cdb16(&erase, Direction::Out),
        [0x85, 0x0A, 0x26, 0, 0, 0, 0x01, 0, 0, 0, 0, 0, 0, 0, 0xF4, 0]
    );
    // Non-data (protocol 3), no transfer length.
    assert_eq!(
        cdb16(
            &AtaCommand::new(CMD_SECURITY_ERASE_PREPARE),
            Direction::None
        ),
        [0x85, 0x06, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xF3, 0]
    );
    // LBA bits 27:24 go to the device field.
    let mut lba = AtaCommand::new(0x25);
    lba.lba = 0x0ABC_DEF1;
    lba.device = 0x40;
    let cdb = cdb16(&lba, Direction::None);
    assert_eq!(
        (cdb[8], cdb[10], cdb[12], cdb[13]),
        (0xF1, 0xDE, 0xBC, 0x4A)
    );
}

/// Descriptor sense as libata returns it with CK_COND: RECOVERED ERROR, 00h/1Dh, and the
/// ATA Status Return descriptor.
fn descriptor_sense(key: u8, error: u8, status: u8) -> Vec<u8> {
    let mut sense = vec![0x72, key, 0x00, 0x1D, 0, 0, 0, 14];
    sense.extend_from_slice(&[
        0x09, 0x0C, 0x00, error, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0x40, status,
    ]);
    sense
}

#[test]
fn sense_with_ata_status_return() {
    let ok = descriptor_sense(0x01, 0x00, 0x50);
    let parsed = parse_sense(&ok).unwrap();
    assert_eq!((parsed.key, parsed.asc, parsed.ascq), (0x01, 0x00, 0x1D));
    assert_eq!(
        parsed.ata,
        Some(AtaRegisters {
            status: 0x50,
            error: 0,
            count: 1
        })
    );
    assert_eq!(
        judge("x", 0x02, 0, 0x08, &ok).unwrap().status,
        0x50,
        "CHECK CONDITION carrying a clean ATA status is success"
    );
    let aborted = descriptor_sense(0x0B, ERROR_ABRT, 0x51);
    match judge("SECURITY ERASE UNIT", 0x02, 0, 0x08, &aborted) {
        Err(AtaError::Aborted { status, error, .. }) => assert_eq!((status, error), (0x51, 0x04)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn fixed_format_sense() {
    // ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE: no ATA pass-through.
    let illegal = [0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0x00];
    let err = judge("IDENTIFY", 0x02, 0, 0x08, &illegal).unwrap_err();
    assert!(err.is_unsupported(), "{err}");
    assert!(err.to_string().contains("20h/00h"), "{err}");
    // SAT fixed format with the ATA registers in the INFORMATION field.
    let regs = [
        0x70, 0, 0x01, 0x04, 0x51, 0x40, 0x00, 10, 0, 0, 0, 0, 0x00, 0x1D,
    ];
    let parsed = parse_sense(&regs).unwrap();
    assert_eq!(parsed.ata.map(|r| (r.error, r.status)), Some((0x04, 0x51)));
    assert!(matches!(
        judge("x", 0x02, 0, 0x08, &regs),
        Err(AtaError::Aborted { .. })
    ));
}

#[test]
fn host_and_driver_failures() {
    let timeout = judge("ERASE UNIT", 0, 0x03, 0, &[]).unwrap_err();
    assert!(timeout.to_string().contains("timed out"), "{timeout}");
    assert!(judge("x", 0, 0, 0x06, &[]).is_err());
    assert_eq!(judge("x", 0, 0, 0, &[]).unwrap(), AtaRegisters::default());
    assert!(judge("x", 0x02, 0, 0x08, &[]).is_err());
    assert!(parse_sense(&[0x7F]).is_none());
}

#[test]
fn identify_of_a_not_frozen_ssd() {
    let id = AtaIdentify::parse(&fixture("identify-ssd-not-frozen.bin")).unwrap();
    assert_eq!(id.model, "Samsung SSD 860 EVO 1TB");
    assert_eq!(id.serial, "S3Z9NB0K123456A");
    assert_eq!(id.firmware, "RVT04B6Q");
    assert_eq!(id.sectors, 1_953_525_168);
    assert!(id.trim_reads_zero);
    let s = id.security;
    assert!(s.supported && !s.enabled && !s.locked && !s.frozen && s.enhanced_erase_supported);
    assert_eq!(s.normal_erase_time, EraseTime::Minutes(4));
    assert_eq!(s.enhanced_erase_time, EraseTime::Minutes(8));
}

#[test]
fn identify_security_variants() {
    let frozen = AtaIdentify::parse(&fixture("identify-ssd-frozen.bin")).unwrap();
    assert!(frozen.security.frozen && !frozen.security.locked);
    let locked = AtaIdentify::parse(&fixture("identify-ssd-locked.bin")).unwrap();
    assert!(locked.security.enabled && locked.security.locked && !locked.security.count_expired);
    let expired = AtaIdentify::parse(&fixture("identify-ssd-locked-expired.bin")).unwrap();
    assert!(expired.security.count_expired);
    let none = AtaIdentify::parse(&fixture("identify-no-security.bin")).unwrap();
    assert!(!none.security.supported);
    let hdd = AtaIdentify::parse(&fixture("identify-hdd-4tb.bin")).unwrap();
    assert_eq!(hdd.sectors, 7_814_037_168);
    assert!(!hdd.trim_reads_zero);
    assert!(!hdd.security.enhanced_erase_supported);
    assert_eq!(hdd.security.normal_erase_time, EraseTime::Minutes(500));
    assert_eq!(hdd.security.enhanced_erase_time, EraseTime::NotReported);
}

#[test]
fn identify_checksum_and_length_are_checked() {
    let mut page = fixture("identify-ssd-not-frozen.bin");
    page[100] ^= 0x01;
    let err = AtaIdentify::parse(&page).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
    assert!(AtaIdentify::parse(&page[..200]).is_err());
    // Without the 0xA5 signature there is no checksum to check.
    page[510] = 0;
    assert!(AtaIdentify::parse(&page).is_ok());
    page[1] = 0x80;
    assert!(AtaIdentify::parse(&page).is_err(), "word 0 bit 15: not ATA");
}

#[test]
fn erase_time_words_and_timeouts() {
    assert_eq!(EraseTime::from_word(0), EraseTime::NotReported);
    assert_eq!(EraseTime::from_word(0x0002), EraseTime::Minutes(4));
    assert_eq!(EraseTime::from_word(0x00FF), EraseTime::MoreThan(508));
    assert_eq!(EraseTime::from_word(0x80FA), EraseTime::Minutes(500));
    assert_eq!(EraseTime::from_word(0xFFFF), EraseTime::MoreThan(65532));
    // The short format ignores bits 14:8.
    assert_eq!(EraseTime::from_word(0x1203), EraseTime::Minutes(6));

    let tb = 1_000_000_000_000u64;
    // 4 minutes x 1.5 + 15 minutes.
    assert_eq!(
        EraseTime::Minutes(4).timeout(tb),
        Duration::from_secs(360 + 900)
    );
    // No estimate: the whole drive at 10 MB/s plus 15 minutes.
    assert_eq!(
        EraseTime::NotReported.timeout(tb),
        Duration::from_secs(100_000 + 900)
    );
    // "More than 508 minutes" on a small drive: the estimate bound wins.
    assert_eq!(
        EraseTime::MoreThan(508).timeout(1_000_000),
        Duration::from_secs(508 * 90 + 900)
    );
}

#[test]
fn security_payload_layout() {
    let mut password = [0u8; 32];
    password[..4].copy_from_slice(b"pass");
    let normal = security_payload(false, &password);
    assert_eq!(normal.len(), 512);
    assert_eq!(&normal[..2], &[0, 0]);
    assert_eq!(&normal[2..6], b"pass");
    assert!(normal[34..].iter().all(|&b| b == 0));
    let enhanced = security_payload(true, &PASSWORD);
    assert_eq!(enhanced[0], 0x02);
    assert!(enhanced[1..].iter().all(|&b| b == 0));
}
