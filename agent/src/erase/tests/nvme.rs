//! NVMe command encoding and page parsing against the fixtures (agent/tests/fixtures/nvme).

use super::*;
use crate::erase::tests::nvme_fixture as fixture;

#[test]
fn kernel_struct_and_ioctl_numbers_match_the_uapi_header() {
    assert_eq!(std::mem::size_of::<NvmeAdminCmd>(), 72);
    // NVME_IOCTL_ADMIN_CMD = _IOWR('N', 0x41, struct nvme_admin_cmd), NVME_IOCTL_ID = _IO('N', 0x40).
    assert_eq!(
        nix::request_code_readwrite!(b'N', 0x41, std::mem::size_of::<NvmeAdminCmd>()) as u64,
        0xC048_4E41
    );
    assert_eq!(nix::request_code_none!(b'N', 0x40), 0x4E40);
}

#[test]
fn identify_controller_of_a_datacenter_drive() {
    let ctrl = ControllerInfo::parse(&fixture("id-ctrl-datacenter.bin")).unwrap();
    assert_eq!(ctrl.vendor_id, 0x144D);
    assert_eq!(ctrl.serial, "S64GNE0R600123");
    assert_eq!(ctrl.model, "SAMSUNG MZQL23T8HCLS-00A07");
    assert_eq!(ctrl.firmware, "GDC5602Q");
    assert_eq!(ctrl.oacs, 0x5F);
    assert!(ctrl.format_supported());
    assert!(ctrl.crypto_erase_supported());
    assert!(!ctrl.format_applies_to_all());
    assert!(!ctrl.secure_erase_applies_to_all());
    assert_eq!(ctrl.namespaces, 32);
    assert_eq!(
        ctrl.sanitize(),
        SanitizeCaps {
            crypto_erase: true,
            block_erase: true,
            overwrite: false,
            no_deallocate_inhibited: false,
        }
    );
}

#[test]
fn identify_controller_fna_and_sanicap_bits() {
    let all = ControllerInfo::parse(&fixture("id-ctrl-fna-all.bin")).unwrap();
    assert!(all.format_applies_to_all() && all.secure_erase_applies_to_all());
    assert!(all.crypto_erase_supported());
    assert!(all.sanitize().crypto_erase && all.sanitize().block_erase && all.sanitize().overwrite);

    let client = ControllerInfo::parse(&fixture("id-ctrl-client.bin")).unwrap();
    assert_eq!(client.fna, 0);
    assert!(!client.sanitize().any());

    let ndi = SanitizeCaps::from_sanicap(1 << 29);
    assert!(ndi.no_deallocate_inhibited && !ndi.any());
}

/// The pages QEMU 7.2's emulated controller answered (recorded by record.sh).
#[test]
fn recorded_qemu_controller_and_namespace() {
    let qemu = ControllerInfo::parse(&fixture("qemu-id-ctrl.bin")).unwrap();
    assert_eq!(qemu.vendor_id, 0x1B36);
    assert_eq!(qemu.model, "QEMU NVMe Ctrl");
    assert_eq!(qemu.serial, "rivet0");
    assert_eq!(qemu.firmware, "7.2.22");
    assert_eq!(qemu.oacs, 0x10A, "as spec/lab-notes.md measured");
    assert!(qemu.format_supported());
    assert!(!qemu.crypto_erase_supported());
    assert_eq!(qemu.fna, 0);
    assert!(!qemu.sanitize().any());
    assert_eq!(qemu.namespaces, 256);

    let ns = NamespaceInfo::parse(&fixture("qemu-id-ns.bin")).unwrap();
    assert_eq!(ns.size_blocks, 64 * 1024 * 1024 / 512);
    assert_eq!(ns.lba_formats.len(), 8);
    assert_eq!(ns.lba_format_index, 0);
    assert_eq!(ns.block_size(), 512);
    assert_eq!(ns.lba_formats[7].metadata_size, 64);
    assert_eq!(ns.lba_formats[7].lba_data_size_log2, 12);
    assert!(ns.deallocated_reads_zero());
    assert_eq!(format_cdw10(&ns, SecureErase::UserData), 0x200);
    assert_eq!(parse_namespace_list(&fixture("qemu-ns-list.bin")), [1]);
}

#[test]
fn short_pages_are_errors_not_panics() {
    let err = ControllerInfo::parse(&[0u8; 100]).unwrap_err();
    assert!(
        err.to_string().contains("100 bytes, expected 4096"),
        "{err}"
    );
    assert!(NamespaceInfo::parse(&[0u8; 4095]).is_err());
    assert!(SanitizeLog::parse(&[0u8; 31]).is_err());
}

#[test]
fn namespace_formats_and_dlfeat() {
    let ns = NamespaceInfo::parse(&fixture("id-ns-512.bin")).unwrap();
    assert_eq!(ns.size_blocks, 2 * 1024 * 1024);
    assert_eq!(ns.lba_formats.len(), 2);
    assert_eq!(ns.lba_format_index, 0);
    assert_eq!(ns.block_size(), 512);
    assert!(ns.deallocated_reads_zero());
    assert!(!ns.metadata_at_end);

    let pi = NamespaceInfo::parse(&fixture("id-ns-4k-pi.bin")).unwrap();
    assert_eq!(pi.lba_format_index, 3);
    assert_eq!(pi.block_size(), 4096);
    assert_eq!(pi.current_format().unwrap().metadata_size, 8);
    assert!(pi.metadata_at_end);
    assert_eq!(pi.pi_type, 1);
    assert!(pi.pi_first);
    assert!(!pi.deallocated_reads_zero());

    let high = NamespaceInfo::parse(&fixture("id-ns-lbaf17.bin")).unwrap();
    assert_eq!(high.lba_formats.len(), 20);
    assert_eq!(high.lba_format_index, 17);
    assert_eq!(high.block_size(), 4096);
}

#[test]
fn a_format_index_beyond_the_list_is_rejected() {
    let mut page = fixture("id-ns-512.bin");
    page[26] = 0x05;
    let err = NamespaceInfo::parse(&page).unwrap_err();
    assert!(err.to_string().contains("format index 5"), "{err}");
}

#[test]
fn format_cdw10_keeps_the_current_format() {
    let plain = NamespaceInfo::parse(&fixture("id-ns-512.bin")).unwrap();
    // SES 2 at bits 11:9.
    assert_eq!(format_cdw10(&plain, SecureErase::Cryptographic), 0x0400);
    assert_eq!(format_cdw10(&plain, SecureErase::UserData), 0x0200);
    let pi = NamespaceInfo::parse(&fixture("id-ns-4k-pi.bin")).unwrap();
    // LBAF 3, MSET 1 (bit 4), PI 1 (bits 7:5), PIL 1 (bit 8), SES 1.
    assert_eq!(
        format_cdw10(&pi, SecureErase::UserData),
        0x3 | 0x10 | (1 << 5) | (1 << 8) | (1 << 9)
    );
    let high = NamespaceInfo::parse(&fixture("id-ns-lbaf17.bin")).unwrap();
    // Index 17 = 0b01_0001: LBAF 1, LBAFU 1 at bits 13:12.
    assert_eq!(
        format_cdw10(&high, SecureErase::Cryptographic),
        0x1 | (2 << 9) | (1 << 12)
    );
}

#[test]
fn sanitize_cdw10_encoding() {
    // SANACT | AUSE.
    assert_eq!(sanitize_cdw10(SanitizeAction::CryptoErase, 0), 0x0C);
    assert_eq!(sanitize_cdw10(SanitizeAction::BlockErase, 5), 0x0A);
    assert_eq!(sanitize_cdw10(SanitizeAction::ExitFailureMode, 0), 0x09);
    // OWPASS at bits 7:4; 16 passes is encoded as 0.
    assert_eq!(sanitize_cdw10(SanitizeAction::Overwrite, 3), 0x3B);
    assert_eq!(sanitize_cdw10(SanitizeAction::Overwrite, 16), 0x0B);
    assert_eq!(sanitize_cdw10(SanitizeAction::Overwrite, 0), 0x1B);
}

#[test]
fn admin_command_builders() {
    let id = AdminCommand::identify(CNS_NAMESPACE, 3);
    assert_eq!((id.opcode, id.nsid, id.cdw10), (0x06, 3, 0));
    assert!(id.reads_data());
    let log = AdminCommand::get_log_page(LID_SANITIZE_STATUS, SANITIZE_LOG_LEN);
    // NUMDL = 128 dwords - 1 at bits 31:16.
    assert_eq!(log.cdw10, 0x81 | (127 << 16));
    assert_eq!(log.cdw11, 0);
    assert_eq!(log.nsid, NSID_ALL);
    let big = AdminCommand::get_log_page(0x02, 1 << 20);
    assert_eq!(big.cdw10 >> 16, 0xFFFF);
    assert_eq!(big.cdw11, 0x3);
    let format = AdminCommand::format_nvm(1, 0x400, std::time::Duration::from_secs(600));
    assert_eq!((format.opcode, format.timeout.as_secs()), (0x80, 600));
    assert!(!format.reads_data());
    let sanitize = AdminCommand::sanitize(0x0C, 0);
    assert_eq!((sanitize.opcode, sanitize.nsid), (0x84, 0));
}

#[test]
fn namespace_lists_end_at_zero() {
    assert_eq!(
        parse_namespace_list(&fixture("ns-list-1-2-7.bin")),
        [1, 2, 7]
    );
    assert!(parse_namespace_list(&[0u8; 4096]).is_empty());
}

#[test]
fn sanitize_logs() {
    let running = SanitizeLog::parse(&fixture("sanitize-log-crypto-25pct.bin")).unwrap();
    assert_eq!(running.state, SanitizeState::InProgress);
    assert_eq!(running.percent(), 25.0);
    assert_eq!(running.cdw10, 0x0C);
    assert_eq!(
        running.estimate(SanitizeAction::CryptoErase),
        Some(std::time::Duration::from_secs(30))
    );
    assert_eq!(
        running.estimate(SanitizeAction::BlockErase),
        Some(std::time::Duration::from_secs(600))
    );
    assert_eq!(running.estimate(SanitizeAction::Overwrite), None);

    let done = SanitizeLog::parse(&fixture("sanitize-log-completed.bin")).unwrap();
    assert_eq!(done.state, SanitizeState::Completed);
    assert!(done.global_data_erased);

    let failed = SanitizeLog::parse(&fixture("sanitize-log-failed.bin")).unwrap();
    assert_eq!(failed.state, SanitizeState::Failed);

    let ow = SanitizeLog::parse(&fixture("sanitize-log-overwrite-2-passes.bin")).unwrap();
    assert_eq!(ow.state, SanitizeState::InProgress);
    assert_eq!(ow.overwrite_passes_done, 2);
    assert_eq!(ow.percent(), 50.0);

    let never = SanitizeLog::parse(&fixture("sanitize-log-never.bin")).unwrap();
    assert_eq!(never.state, SanitizeState::Never);
    assert_eq!(never.estimate(SanitizeAction::CryptoErase), None);
}

#[test]
fn status_decoding() {
    let opcode = NvmeStatus(0x4001);
    assert!(opcode.is_invalid_opcode());
    assert!(opcode.do_not_retry());
    assert_eq!(
        opcode.to_string(),
        "Invalid Command Opcode (status 0x4001: type 0, code 0x01, do not retry)"
    );
    assert_eq!(NvmeStatus(0x010A).meaning(), "Invalid Format");
    assert_eq!(NvmeStatus(0x001D).meaning(), "Sanitize In Progress");
    assert_eq!(
        NvmeStatus(0x0281).meaning(),
        "Media and Data Integrity Error"
    );
    assert!(!NvmeStatus(0x0002).is_invalid_opcode());
}
