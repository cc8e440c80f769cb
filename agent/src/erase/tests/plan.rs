//! The decision tree, over every combination of device, flags, knobs and capabilities
//! (properties checked for each), plus the cases spelled out.

use super::*;
use crate::erase::ata::AtaIdentify;
use crate::erase::fake::block_device;
use crate::erase::nvme::{ControllerInfo, NamespaceInfo};
use crate::erase::tests::{ata_fixture, nvme_fixture};

const MODES: [EraseMode; 3] = [EraseMode::Full, EraseMode::Metadata, EraseMode::Express];
const POLICIES: [NvmeSanitize; 4] = [
    NvmeSanitize::Off,
    NvmeSanitize::Crypto,
    NvmeSanitize::Block,
    NvmeSanitize::Overwrite,
];

fn bools() -> [bool; 2] {
    [false, true]
}

/// The device shapes: (name, kind).
const DEVICES: [(&str, DeviceKind); 7] = [
    ("nvme0n1", DeviceKind::Disk),
    ("sda", DeviceKind::Disk),
    ("vda", DeviceKind::Disk),
    ("loop3", DeviceKind::Virtual),
    ("sda1", DeviceKind::Partition),
    ("sr0", DeviceKind::Rom),
    ("md0", DeviceKind::Raid),
];

fn nvme_probe(ctrl: &str, active: &[u32]) -> NvmeFacts {
    NvmeFacts::Probed(Box::new(NvmeProbe {
        nsid: 1,
        controller: ControllerInfo::parse(&nvme_fixture(ctrl)).unwrap(),
        namespace: NamespaceInfo::parse(&nvme_fixture("id-ns-512.bin")).unwrap(),
        active_namespaces: Some(active.to_vec()),
    }))
}

fn ata(page: &str) -> AtaFacts {
    AtaFacts::Identified(Box::new(AtaIdentify::parse(&ata_fixture(page)).unwrap()))
}

fn facts(name: &str, kind: DeviceKind) -> DeviceFacts {
    let mut device = block_device(name, kind, 1 << 30, 512);
    if kind == DeviceKind::Partition {
        device.parent = Some("sda".into());
    }
    DeviceFacts {
        device,
        nvme: NvmeFacts::NotProbed,
        ata: AtaFacts::NotProbed,
        limits: QueueLimits::default(),
        protected: None,
    }
}

fn methods(plan: &Plan) -> Vec<Method> {
    match plan {
        Plan::Erase { attempts, .. } => attempts.iter().map(|a| a.method.clone()).collect(),
        other => panic!("not an erase: {other:?}"),
    }
}

/// Layer 1: who is left alone or refused, for every mode, device shape and flag.
#[test]
fn exclusions_and_refusals_in_every_combination() {
    let mut cases = 0;
    for mode in MODES {
        for (name, kind) in DEVICES {
            for (boot, md, ro, protected, skip_ro, guard) in combinations() {
                let mut f = facts(name, kind);
                f.device.is_boot_medium = boot;
                if md {
                    f.device.holders = vec!["md127".into()];
                }
                f.device.read_only = ro;
                f.protected = protected.then(|| "IBM GPFS Partition".to_string());
                let knobs = Knobs {
                    skip_read_only: skip_ro,
                    guard_special_filesystems: guard,
                    ..Knobs::default()
                };
                let excluded = boot
                    || md
                    || matches!(kind, DeviceKind::Rom | DeviceKind::Raid)
                    || (kind == DeviceKind::Partition && mode == EraseMode::Full);
                let got = plan(&f, &knobs, mode);
                cases += 1;
                let context = format!("{mode:?} {name} boot={boot} md={md} ro={ro} protected={protected} skip_ro={skip_ro} guard={guard}: {got:?}");
                match got {
                    Plan::Skip { reason } => {
                        assert!(
                            excluded || (ro && (mode != EraseMode::Full || skip_ro)),
                            "{context}"
                        );
                        if boot {
                            assert!(reason.contains("booted"), "{context}");
                        } else if md {
                            assert!(reason.contains("md127"), "{context}");
                        }
                    }
                    Plan::Refuse {
                        reason,
                        protected: is_protected,
                    } => {
                        assert!(!excluded, "{context}");
                        if ro && mode == EraseMode::Full && !skip_ro {
                            assert!(!is_protected && reason.contains("read-only"), "{context}");
                        } else {
                            assert!(!ro && protected && guard && is_protected, "{context}");
                            assert!(
                                reason.starts_with("Found IBM GPFS Partition on device /dev/"),
                                "{context}"
                            );
                        }
                    }
                    Plan::Erase { .. } => {
                        assert!(!(excluded || ro || (protected && guard)), "{context}");
                    }
                }
            }
        }
    }
    assert_eq!(cases, 3 * 7 * 64);
}

/// All combinations of six booleans.
fn combinations() -> impl Iterator<Item = (bool, bool, bool, bool, bool, bool)> {
    (0..1u32 << 6).map(|i| {
        let b = |k: u32| i & (1 << k) != 0;
        (b(0), b(1), b(2), b(3), b(4), b(5))
    })
}

/// Layer 2: `erase_devices` on an eligible disk, for every capability and knob.
#[test]
fn full_erase_attempts_in_every_combination() {
    let nvme_variants = [
        nvme_probe("id-ctrl-datacenter.bin", &[1]),
        nvme_probe("qemu-id-ctrl.bin", &[1]),
        nvme_probe("id-ctrl-client.bin", &[1]),
        nvme_probe("id-ctrl-fna-all.bin", &[1, 2]),
        NvmeFacts::Failed("ioctl: Permission denied".into()),
    ];
    let ata_variants = [
        ata("identify-ssd-not-frozen.bin"),
        ata("identify-ssd-frozen.bin"),
        ata("identify-no-security.bin"),
        ata("identify-hdd-4tb.bin"),
        AtaFacts::Unavailable("SG_IO: ENOTTY".into()),
    ];
    let mut cases = 0;
    for (name, kind) in &DEVICES[..4] {
        let nvme_disk = name.starts_with("nvme");
        let caps: Vec<(NvmeFacts, AtaFacts)> = if nvme_disk {
            nvme_variants
                .iter()
                .map(|n| (n.clone(), AtaFacts::NotProbed))
                .collect()
        } else {
            ata_variants
                .iter()
                .map(|a| (NvmeFacts::NotProbed, a.clone()))
                .collect()
        };
        for (nvme, ata) in caps {
            for policy in POLICIES {
                for (cont, discard_on, discard_cap, en_nvme, en_ata, zeroize) in combinations() {
                    for iterations in [0, 1, 3] {
                        let mut f = facts(name, *kind);
                        f.nvme = nvme.clone();
                        f.ata = ata.clone();
                        f.limits.discard = discard_cap;
                        let knobs = Knobs {
                            iterations,
                            zeroize,
                            continue_if_secure_erase_failed: cont,
                            enable_nvme_secure_erase: en_nvme,
                            enable_ata_secure_erase: en_ata,
                            enable_discard_erase: discard_on,
                            nvme_sanitize: policy,
                            ..Knobs::default()
                        };
                        cases += 1;
                        check_full(&f, &knobs);
                    }
                }
            }
        }
    }
    assert_eq!(cases, 4 * 5 * 4 * 64 * 3);
}

/// The properties of one `erase_devices` plan.
fn check_full(f: &DeviceFacts, knobs: &Knobs) {
    let got = plan(f, knobs, EraseMode::Full);
    let context = format!(
        "{} {knobs:?} {:?} {:?}: {got:?}",
        f.device.name, f.nvme, f.ata
    );
    let secure_expected = if f.device.name.starts_with("nvme") {
        knobs.enable_nvme_secure_erase
    } else {
        knobs.enable_ata_secure_erase
            && matches!(&f.ata, AtaFacts::Identified(id) if id.security.supported)
    };
    let nothing_to_write = knobs.iterations == 0 && !knobs.zeroize;
    let attempts = match got {
        Plan::Skip { reason } => {
            assert!(!secure_expected && nothing_to_write, "{context}");
            assert!(reason.contains("nothing to write"), "{context}");
            return;
        }
        Plan::Refuse { .. } => panic!("{context}"),
        Plan::Erase { attempts, .. } => attempts,
    };
    let (last, rest) = attempts.split_last().unwrap();
    assert_eq!(last.on_failure, OnFailure::Fail, "{context}");
    assert!(
        rest.iter().all(|a| a.on_failure == OnFailure::Next),
        "{context}"
    );
    let secure = !matches!(
        attempts[0].method,
        Method::Overwrite { .. } | Method::Discard | Method::Metadata
    );
    assert_eq!(secure, secure_expected, "{context}");
    let has_discard = attempts.iter().any(|a| a.method == Method::Discard);
    assert_eq!(
        has_discard,
        secure && knobs.enable_discard_erase && f.limits.discard,
        "{context}"
    );
    let overwrite = Method::Overwrite {
        passes: knobs.iterations,
        zeroize: knobs.zeroize,
    };
    let has_overwrite = attempts.iter().any(|a| a.method == overwrite);
    assert_eq!(
        has_overwrite,
        !secure || knobs.continue_if_secure_erase_failed,
        "{context}"
    );
    assert!(
        !attempts.iter().any(|a| a.method == Method::Metadata),
        "{context}"
    );
    if has_overwrite {
        assert_eq!(last.method, overwrite, "{context}");
    }
    // A frozen drive is never sent an erase.
    if let AtaFacts::Identified(id) = &f.ata {
        if id.security.frozen && secure {
            assert!(
                matches!(&attempts[0].method, Method::SecureEraseUnavailable { reason } if reason.contains("frozen")),
                "{context}"
            );
        }
    }
    // Controller-wide operations never run while other namespaces exist.
    if let NvmeFacts::Probed(p) = &f.nvme {
        if !p.other_namespaces().is_empty() {
            assert!(
                !matches!(attempts[0].method, Method::NvmeSanitize { .. }),
                "{context}"
            );
            if let Method::NvmeFormat { all_namespaces, .. } = attempts[0].method {
                assert!(!all_namespaces, "{context}");
            }
        }
    }
}

/// Layer 3: express and metadata always end with the metadata wipe.
#[test]
fn express_and_metadata_in_every_combination() {
    let nvme_variants = [
        nvme_probe("id-ctrl-datacenter.bin", &[1]),
        nvme_probe("qemu-id-ctrl.bin", &[1]),
        nvme_probe("id-ctrl-fna-all.bin", &[1, 2]),
        NvmeFacts::Failed("no".into()),
        NvmeFacts::NotProbed,
    ];
    for mode in [EraseMode::Express, EraseMode::Metadata] {
        for (name, kind) in &DEVICES[..5] {
            for nvme in &nvme_variants {
                for policy in POLICIES {
                    for en_nvme in bools() {
                        let mut f = facts(name, *kind);
                        if name.starts_with("nvme") {
                            f.nvme = nvme.clone();
                        }
                        let knobs = Knobs {
                            enable_nvme_secure_erase: en_nvme,
                            nvme_sanitize: policy,
                            ..Knobs::default()
                        };
                        let got = methods(&plan(&f, &knobs, mode));
                        let context =
                            format!("{mode:?} {name} {nvme:?} {policy:?} {en_nvme}: {got:?}");
                        assert_eq!(got.last(), Some(&Method::Metadata), "{context}");
                        if mode == EraseMode::Metadata || !name.starts_with("nvme") || !en_nvme {
                            assert_eq!(got, [Method::Metadata], "{context}");
                        }
                        assert!(got.len() <= 2, "{context}");
                        if got.len() == 2 {
                            assert!(
                                matches!(
                                    got[0],
                                    Method::NvmeFormat { .. }
                                        | Method::NvmeSanitize {
                                            action: SanitizeAction::CryptoErase
                                        }
                                ),
                                "express uses only fast NVMe erases: {context}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn nvme_methods_spelled_out() {
    let full = |ctrl: &str, active: &[u32], policy: NvmeSanitize| {
        let mut f = facts("nvme0n1", DeviceKind::Disk);
        f.nvme = nvme_probe(ctrl, active);
        let knobs = Knobs {
            nvme_sanitize: policy,
            ..Knobs::default()
        };
        methods(&plan(&f, &knobs, EraseMode::Full)).remove(0)
    };
    let format = |erase, all_namespaces| Method::NvmeFormat {
        erase,
        all_namespaces,
    };
    // IPA's choice: crypto erase when FNA bit 2 says so, else user data.
    assert_eq!(
        full("id-ctrl-datacenter.bin", &[1], NvmeSanitize::Off),
        format(SecureErase::Cryptographic, false)
    );
    assert_eq!(
        full("qemu-id-ctrl.bin", &[1], NvmeSanitize::Off),
        format(SecureErase::UserData, false)
    );
    // Sanitize by policy and SANICAP.
    assert_eq!(
        full("id-ctrl-datacenter.bin", &[1], NvmeSanitize::Crypto),
        Method::NvmeSanitize {
            action: SanitizeAction::CryptoErase
        }
    );
    assert_eq!(
        full("qemu-id-ctrl.bin", &[1], NvmeSanitize::Overwrite),
        format(SecureErase::UserData, false),
        "no SANICAP: format"
    );
    // FNA says every namespace: the broadcast NSID, only when there is no other namespace.
    assert_eq!(
        full("id-ctrl-fna-all.bin", &[1], NvmeSanitize::Off),
        format(SecureErase::Cryptographic, true)
    );
    match full("id-ctrl-fna-all.bin", &[1, 2, 7], NvmeSanitize::Overwrite) {
        Method::SecureEraseUnavailable { reason } => {
            assert!(reason.contains("every namespace (FNA 0x7)"), "{reason}");
            assert!(reason.contains("other namespaces (2, 7)"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Per-namespace format is fine next to other namespaces; sanitize is not.
    assert_eq!(
        full("id-ctrl-datacenter.bin", &[1, 2], NvmeSanitize::Crypto),
        format(SecureErase::Cryptographic, false)
    );
}

#[test]
fn an_nvme_without_format_or_allowed_sanitize_fails_like_ipa() {
    let mut page = nvme_fixture("id-ctrl-datacenter.bin");
    page[256] &= !0x02;
    let mut f = facts("nvme0n1", DeviceKind::Disk);
    f.nvme = NvmeFacts::Probed(Box::new(NvmeProbe {
        nsid: 1,
        controller: ControllerInfo::parse(&page).unwrap(),
        namespace: NamespaceInfo::parse(&nvme_fixture("id-ns-512.bin")).unwrap(),
        active_namespaces: Some(vec![1]),
    }));
    let got = plan(&f, &Knobs::default(), EraseMode::Full);
    match &methods(&got)[0] {
        Method::SecureEraseUnavailable { reason } => {
            assert!(reason.contains("does not support Format NVM"), "{reason}");
            assert!(reason.contains("rivet-nvme-sanitize"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    if let Plan::Erase { attempts, .. } = got {
        assert_eq!(attempts.len(), 1, "no continue knob: the step fails");
        assert_eq!(attempts[0].on_failure, OnFailure::Fail);
    }
}

#[test]
fn ata_and_fallbacks_spelled_out() {
    let mut f = facts("sda", DeviceKind::Disk);
    f.ata = ata("identify-ssd-not-frozen.bin");
    f.limits.discard = true;
    let knobs = Knobs {
        continue_if_secure_erase_failed: true,
        enable_discard_erase: true,
        ..Knobs::default()
    };
    assert_eq!(
        methods(&plan(&f, &knobs, EraseMode::Full)),
        [
            Method::AtaSecurityErase { enhanced: true },
            Method::Discard,
            Method::Overwrite {
                passes: 1,
                zeroize: true
            }
        ]
    );
    // A virtio disk has no secure erase: straight to the overwrite.
    let mut vda = facts("vda", DeviceKind::Disk);
    vda.ata = AtaFacts::Unavailable("ENOTTY".into());
    assert_eq!(
        methods(&plan(&vda, &Knobs::default(), EraseMode::Full)),
        [Method::Overwrite {
            passes: 1,
            zeroize: true
        }]
    );
}

#[test]
fn discard_without_device_support_is_noted() {
    let mut f = facts("sda", DeviceKind::Disk);
    f.ata = ata("identify-ssd-frozen.bin");
    let knobs = Knobs {
        enable_discard_erase: true,
        ..Knobs::default()
    };
    match plan(&f, &knobs, EraseMode::Full) {
        Plan::Erase { notes, attempts } => {
            assert_eq!(attempts.len(), 1);
            assert_eq!(
                notes,
                ["discard erase is enabled but the device cannot discard"]
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn method_names() {
    assert_eq!(
        Method::Overwrite {
            passes: 1,
            zeroize: true
        }
        .name(),
        "overwrite (1 random pass + zeroes)"
    );
    assert_eq!(
        Method::Overwrite {
            passes: 3,
            zeroize: false
        }
        .name(),
        "overwrite (3 random passes)"
    );
    assert_eq!(
        Method::NvmeSanitize {
            action: SanitizeAction::BlockErase
        }
        .name(),
        "nvme-sanitize-block-erase"
    );
    assert_eq!(
        Method::NvmeFormat {
            erase: SecureErase::Cryptographic,
            all_namespaces: false
        }
        .name(),
        "nvme-format-crypto-erase"
    );
    assert_eq!(
        Method::AtaSecurityErase { enhanced: true }.name(),
        "ata-security-erase-enhanced"
    );
    assert_eq!(EraseMode::Express.step_name(), "erase_devices_express");
}
