//! Bundles read from image files laid out as rivet's ISO is on its boot medium: an ISO 9660
//! primary volume descriptor labelled RIVET with the locator in its Application Use field,
//! kernel-argument fields and a config area, written with the same encoders the image
//! builder uses. Devices come from [`FakeBlockDevices`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rivet_protocol::config_area::bundle;
use rivet_protocol::config_area::kargs::encode_field;
use rivet_protocol::config_area::keys::SigningKey;
use rivet_protocol::config_area::locator::Extent;
use rivet_protocol::config_area::payload::File as BundleFile;

use super::*;
use crate::disks::{BlockDevice, DiskError};
use crate::settings::{self, Inputs};

const AREA_AT: u64 = 40 * 2048;
const AREA_LEN: u64 = 64 << 10;

/// Block devices from a list; devices with `appear_at` show up only from that call of
/// `list` on (0: from the first).
struct FakeBlockDevices {
    devices: Vec<(usize, BlockDevice)>,
    calls: AtomicUsize,
}

impl FakeBlockDevices {
    fn new(devices: Vec<(usize, BlockDevice)>) -> Self {
        FakeBlockDevices {
            devices,
            calls: AtomicUsize::new(0),
        }
    }
}

impl BlockDevices for FakeBlockDevices {
    fn list(&self) -> Result<Vec<BlockDevice>, DiskError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(self
            .devices
            .iter()
            .filter(|(at, _)| *at <= call)
            .map(|(_, d)| d.clone())
            .collect())
    }
}

fn device(path: &Path, kind: DeviceKind, boot: bool) -> BlockDevice {
    BlockDevice {
        name: path.file_name().unwrap().to_string_lossy().into_owned(),
        path: path.to_owned(),
        kind,
        parent: None,
        partitions: Vec::new(),
        holders: Vec::new(),
        size_bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        logical_sector_size: 2048,
        physical_sector_size: 2048,
        rotational: false,
        read_only: true,
        removable: true,
        model: None,
        vendor: None,
        serial: None,
        wwn: None,
        wwn_with_extension: None,
        wwn_vendor_extension: None,
        hctl: None,
        by_path: None,
        tran: None,
        is_boot_medium: boot,
    }
}

fn key(seed: u8) -> SigningKey {
    let mut der = vec![
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    der.extend_from_slice(&[seed; 32]);
    SigningKey::from_pkcs8(&der).unwrap()
}

/// An image of rivet's ISO whose config area starts with `area` (zeros: no bundle).
fn image(dir: &Path, name: &str, area: &[u8]) -> PathBuf {
    let mut img = vec![0u8; (AREA_AT + AREA_LEN) as usize];
    let pvd = 16 * 2048;
    img[pvd] = 1;
    img[pvd + 1..pvd + 6].copy_from_slice(b"CD001");
    img[pvd + 6] = 1;
    img[pvd + 40..pvd + 72].copy_from_slice(format!("{:<32}", "RIVET").as_bytes());
    let args = "console=ttyS0";
    let locator = Locator {
        area: Extent {
            offset: AREA_AT,
            len: AREA_LEN,
        },
        default_kargs: Extent {
            offset: 36 * 2048,
            len: args.len() as u64,
        },
        kargs_field_len: 64,
        kargs_fields: vec![37 * 2048, 38 * 2048],
        signing_key_sha256: None,
    };
    let at = LOCATOR_OFFSET as usize;
    img[at..at + LOCATOR_LEN].copy_from_slice(&locator.encode().unwrap());
    img[36 * 2048..36 * 2048 + args.len()].copy_from_slice(args.as_bytes());
    for field in [37 * 2048, 38 * 2048] {
        img[field..field + 64].copy_from_slice(&encode_field(args, 64).unwrap());
    }
    let area_at = AREA_AT as usize;
    img[area_at..area_at + area.len()].copy_from_slice(area);
    let path = dir.join(name);
    std::fs::write(&path, img).unwrap();
    path
}

const NETWORK_DATA: &str = r#"{
    "links": [
        {"id": "eno1", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"},
        {"id": "eno2", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:02"},
        {"id": "bond0", "type": "bond", "bond_links": ["eno1", "eno2"], "bond_mode": "active-backup"},
        {"id": "vlan100", "type": "vlan", "vlan_link": "bond0", "vlan_id": 100}
    ],
    "networks": [
        {"id": "n1", "type": "ipv4", "link": "vlan100", "ip_address": "192.0.2.10",
         "netmask": "255.255.255.0"}
    ],
    "services": []
}"#;

fn contents() -> Contents {
    Contents {
        settings: Some(
            "# node-1\nipa-api-url=https://192.0.2.1:6385\n  # indented comment\nipa-debug=1\n"
                .into(),
        ),
        network_data: Some(NETWORK_DATA.into()),
        ca: Some("-----BEGIN CERTIFICATE-----\nMII=\n-----END CERTIFICATE-----\n".into()),
        plan: None,
        files: vec![BundleFile {
            path: "/usr/local/bin/hook".into(),
            mode: 0o750,
            data: b"#!/bin/sh\n".to_vec(),
        }],
    }
}

fn bundle_bytes(contents: &Contents, key: Option<&SigningKey>) -> Vec<u8> {
    bundle::encode(&contents.to_tar().unwrap(), key)
}

fn options(dir: &Path) -> BundleOptions {
    BundleOptions {
        signing_pubkey: dir.join("no-key.pub"),
        wait: Duration::ZERO,
        poll: Duration::from_millis(500),
    }
}

fn with_key(dir: &Path, key: &SigningKey) -> BundleOptions {
    let path = dir.join("bundle-signing.pub");
    std::fs::write(&path, key.public_key().to_pem()).unwrap();
    BundleOptions {
        signing_pubkey: path,
        ..options(dir)
    }
}

async fn found(dir: &Path, area: &[u8], options: &BundleOptions) -> Option<BootConfig> {
    let iso = image(dir, "sr0", area);
    let devices = FakeBlockDevices::new(vec![(0, device(&iso, DeviceKind::Rom, true))]);
    discover(&devices, options).await
}

#[tokio::test]
async fn bundle_becomes_the_highest_priority_source() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = bundle_bytes(&contents(), None);
    let config = found(dir.path(), &bytes, &options(dir.path()))
        .await
        .expect("a bundle");
    let iso = dir.path().join("sr0");
    assert_eq!(
        config.source,
        format!("rivet config area on {}", iso.display())
    );
    assert!(config.problems.is_empty());
    let data = config.network_data.as_ref().expect("network_data");
    assert_eq!(data.links().len(), 4);
    assert_eq!(config.settings_texts.len(), 1);
    assert_eq!(
        config.settings_texts[0].text,
        "ipa-api-url=https://192.0.2.1:6385\nipa-debug=1\nrivet-cafile=/etc/rivet/ca.pem\n"
    );
    assert_eq!(
        config.settings_texts[0].path,
        PathBuf::from(format!("{}:config-area/settings", iso.display()))
    );
    let files: Vec<(String, u32)> = config
        .files
        .iter()
        .map(|f| (f.path.display().to_string(), f.mode))
        .collect();
    assert_eq!(
        files,
        [
            ("/etc/rivet/ca.pem".to_string(), 0o644),
            ("/usr/local/bin/hook".to_string(), 0o750)
        ]
    );

    // After the kernel command line and Ironic's parameters.txt, the bundle's settings win.
    let loaded = settings::load(&Inputs {
        cmdline: Some(SourceText {
            path: "/proc/cmdline".into(),
            text: "ipa-api-url=http://10.0.0.1:6385 ipa-debug=0 ipa-insecure=1".into(),
        }),
        parameters: vec![
            SourceText {
                path: "/mnt/ir-vfd-dev/parameters.txt".into(),
                text: "ipa-api-url=http://10.0.0.2:6385".into(),
            },
            config.settings_texts[0].clone(),
        ],
        ..Inputs::default()
    });
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let s = &loaded.settings;
    assert_eq!(s.api_urls[0].as_str(), "https://192.0.2.1:6385/");
    assert!(s.debug && s.insecure);
    assert_eq!(s.cafile.as_deref(), Some(Path::new("/etc/rivet/ca.pem")));
}

#[tokio::test]
async fn empty_areas_and_other_devices_give_nothing() {
    let dir = tempfile::tempdir().unwrap();
    assert!(found(dir.path(), &[], &options(dir.path())).await.is_none());

    // Devices that are not the boot medium, or are partitions, are not read; an ISO
    // without a locator is skipped for the next medium.
    let bundle = image(dir.path(), "sdb", &bundle_bytes(&contents(), None));
    let plain = dir.path().join("plain.iso");
    std::fs::write(&plain, vec![0u8; 40_000]).unwrap();
    let skipped = FakeBlockDevices::new(vec![
        (0, device(&bundle, DeviceKind::Disk, false)),
        (0, device(&bundle, DeviceKind::Partition, true)),
    ]);
    assert!(discover(&skipped, &options(dir.path())).await.is_none());
    let second = FakeBlockDevices::new(vec![
        (0, device(&plain, DeviceKind::Rom, true)),
        (0, device(&bundle, DeviceKind::Disk, true)),
    ]);
    let config = discover(&second, &options(dir.path())).await.unwrap();
    assert!(config.source.ends_with("/sdb"), "{}", config.source);
}

#[test]
fn corrupt_or_oversized_bundles_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let read = |area: &[u8]| {
        let iso = image(dir.path(), "sr0", area);
        match read_area(&iso, None) {
            Err(Refused(why)) => why,
            Ok(other) => panic!("not refused: {other:?}"),
        }
    };
    let mut bytes = bundle_bytes(&contents(), None);
    bytes[HEADER_LEN + 600] ^= 0x01;
    assert!(read(&bytes).contains("does not match its sha256"));

    let mut bytes = bundle_bytes(&contents(), None);
    bytes[16..24].copy_from_slice(&(AREA_LEN).to_le_bytes());
    let why = read(&bytes);
    assert!(
        why.contains(&format!(
            "needs {} bytes but the config area holds {AREA_LEN}",
            AREA_LEN + 128
        )),
        "{why}"
    );

    assert!(read(b"GARBAGE!").contains("bad magic"));

    // A bundle written by a newer builder (unknown entry) is not half-applied.
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(2);
    header.set_mode(0o644);
    tar.append_data(&mut header, "plan.yaml", &b"{}"[..])
        .unwrap();
    let bytes = bundle::encode(&tar.into_inner().unwrap(), None);
    assert!(read(&bytes).contains("unknown entry \"plan.yaml\""));
}

#[tokio::test]
async fn unusable_network_data_refuses_the_whole_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let bad = Contents {
        network_data: Some(r#"{"links": "eno1"}"#.into()),
        ..contents()
    };
    let err = boot_config(Path::new("/dev/sr0"), bad).unwrap_err();
    assert!(err.0.starts_with("network_data.json: "), "{err:?}");
    // The builder refuses to write it; a bundle made by other means is refused on boot.
    let mut tar = tar::Builder::new(Vec::new());
    let json = br#"{"links": "eno1"}"#;
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o644);
    tar.append_data(&mut header, "network_data.json", &json[..])
        .unwrap();
    let bytes = bundle::encode(&tar.into_inner().unwrap(), None);
    assert!(found(dir.path(), &bytes, &options(dir.path()))
        .await
        .is_none());
}

#[tokio::test]
async fn a_ramdisk_key_admits_only_bundles_signed_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let trusted = key(1);
    let opts = with_key(dir.path(), &trusted);
    let signed = bundle_bytes(&contents(), Some(&trusted));
    assert!(found(dir.path(), &signed, &opts).await.is_some());
    let unsigned = bundle_bytes(&contents(), None);
    assert!(found(dir.path(), &unsigned, &opts).await.is_none());
    let other = bundle_bytes(&contents(), Some(&key(2)));
    assert!(found(dir.path(), &other, &opts).await.is_none());

    let iso = image(dir.path(), "sr0", &unsigned);
    let why = read_area(&iso, Some(&trusted.public_key())).unwrap_err().0;
    assert!(why.contains("only accepts bundles signed"), "{why}");

    // Without a key in the ramdisk a signed bundle is applied (its signature unchecked).
    assert!(found(dir.path(), &other, &options(dir.path()))
        .await
        .is_some());

    // A damaged key file in the ramdisk refuses every bundle.
    std::fs::write(&opts.signing_pubkey, "not a key").unwrap();
    assert!(found(dir.path(), &signed, &opts).await.is_none());
}

/// A plan rides in the bundle: it comes out parsed, and a ramdisk with a key runs only a
/// plan from a bundle signed with it (docs/plan.md "Where the plan comes from, and trust").
#[tokio::test]
async fn a_plan_comes_with_the_bundle_and_needs_its_signature() {
    let dir = tempfile::tempdir().unwrap();
    let with_plan = Contents {
        plan: Some(include_str!("../../../docs/plans/minimal.json").into()),
        ..contents()
    };
    let config = found(
        dir.path(),
        &bundle_bytes(&with_plan, None),
        &options(dir.path()),
    )
    .await
    .expect("a bundle");
    let (plan, source) = crate::bootconfig::plan(std::slice::from_ref(&config)).expect("a plan");
    assert_eq!(plan.name, "inspect-only");
    assert!(source.starts_with("rivet config area on "), "{source}");
    assert!(describe(
        &config,
        Verified {
            signed: false,
            signature_checked: false
        }
    )
    .contains("plan inspect-only"));

    let trusted = key(1);
    let opts = with_key(dir.path(), &trusted);
    let unsigned = bundle_bytes(&with_plan, None);
    assert!(found(dir.path(), &unsigned, &opts).await.is_none());
    let signed = bundle_bytes(&with_plan, Some(&trusted));
    let config = found(dir.path(), &signed, &opts)
        .await
        .expect("signed bundle");
    assert!(config.plan.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_late_medium_is_waited_for_when_the_kernel_came_from_the_iso() {
    let dir = tempfile::tempdir().unwrap();
    let iso = image(dir.path(), "sr0", &bundle_bytes(&contents(), None));
    // The medium appears at the fifth scan (2 s at 500 ms).
    let devices = FakeBlockDevices::new(vec![(4, device(&iso, DeviceKind::Rom, true))]);
    let opts = BundleOptions {
        wait: Duration::from_secs(10),
        ..options(dir.path())
    };
    let start = tokio::time::Instant::now();
    assert!(discover(&devices, &opts).await.is_some());
    assert_eq!(start.elapsed(), Duration::from_secs(2));

    let never = FakeBlockDevices::new(Vec::new());
    let start = tokio::time::Instant::now();
    assert!(discover(&never, &opts).await.is_none());
    assert_eq!(start.elapsed(), Duration::from_secs(10));
}

#[test]
fn options_wait_only_after_an_iso_boot() {
    let iso = BundleOptions::for_ramdisk("BOOT_IMAGE=/boot/vmlinuz console=ttyS0");
    assert_eq!(iso.wait, Duration::from_secs(10));
    assert_eq!(
        iso.signing_pubkey,
        PathBuf::from("/etc/rivet/bundle-signing.pub")
    );
    let pxe = BundleOptions::for_ramdisk("initrd=ipa.initramfs console=ttyS0");
    assert_eq!(pxe.wait, Duration::ZERO);
}
