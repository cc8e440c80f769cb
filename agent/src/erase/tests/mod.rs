//! The erase steps end to end on fakes: plans, parallel execution, fallbacks, reports,
//! progress, abort and the step results Ironic gets.

use std::path::PathBuf;

/// A file of agent/tests/fixtures/<dir>.
fn fixture_in(dir: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(dir)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

pub(crate) fn nvme_fixture(name: &str) -> Vec<u8> {
    fixture_in("nvme", name)
}

pub(crate) fn ata_fixture(name: &str) -> Vec<u8> {
    fixture_in("ata", name)
}

use serde_json::{json, Value};

use super::fake::{
    AtaSecurity, DiscardBehaviour, FakeAtaDrive, FakeDevice, FakeDisk, FakeEraseHost, FakeNvme,
    SanitizeBehaviour,
};
use super::*;
use crate::disks::DeviceKind;
use crate::progress::{AbortSignal, ProgressBoard};
use crate::settings::{NvmeSanitize, Settings};
use crate::steps::StepError;
use crate::syslogs::LogAttachments;

const MIB: usize = 1024 * 1024;
const OLD: u8 = 0xAA;

fn plain(name: &str, kind: DeviceKind) -> FakeDevice {
    let mut d = FakeDevice::new(name, kind, FakeDisk::new(8 * MIB, 512, OLD));
    if kind == DeviceKind::Partition {
        d.device.parent = Some(name.trim_end_matches(char::is_numeric).to_string());
    }
    d
}

fn nvme(name: &str, ctrl: &str) -> FakeDevice {
    let mut d = plain(name, DeviceKind::Disk);
    d.nvme = Some(FakeNvme::new(
        d.disk.clone(),
        nvme_fixture(ctrl),
        nvme_fixture("id-ns-512.bin"),
    ));
    d.device.tran = Some("nvme".into());
    d
}

fn sata(name: &str, security: AtaSecurity) -> FakeDevice {
    let mut d = plain(name, DeviceKind::Disk);
    d.ata = Some(FakeAtaDrive::new(
        d.disk.clone(),
        ata_fixture("identify-ssd-not-frozen.bin"),
        security,
    ));
    d.device.tran = Some("sata".into());
    d
}

fn ata_security(frozen: bool) -> AtaSecurity {
    AtaSecurity {
        supported: true,
        frozen,
        enhanced: true,
        password: None,
        locked: false,
        prepared: false,
        erase_fails: false,
    }
}

/// One step run and what it left behind.
struct Run {
    result: Result<Value, StepError>,
    attachments: LogAttachments,
    progress: ProgressBoard,
}

fn run_with(
    host: &FakeEraseHost,
    mode: EraseMode,
    info: Value,
    settings: &Settings,
    abort: bool,
) -> Run {
    let node = json!({"uuid": "n1", "driver_internal_info": info});
    let progress = ProgressBoard::default();
    let attachments = LogAttachments::default();
    let signal = AbortSignal::default();
    if abort {
        signal.request();
    }
    let call = EraseCall {
        node: &node,
        settings,
        progress: &progress,
        abort: &signal,
        attachments: &attachments,
    };
    let result = erase_step(host, mode, &call);
    Run {
        result,
        attachments,
        progress,
    }
}

fn run(host: &FakeEraseHost, mode: EraseMode, info: Value) -> Run {
    run_with(host, mode, info, &Settings::default(), false)
}

fn all(disk: &FakeDisk, byte: u8) -> bool {
    disk.contents().iter().all(|&b| b == byte)
}

fn ipa_error(result: &Result<Value, StepError>) -> (String, String) {
    match result {
        Err(StepError::Ipa { type_, details, .. }) => (type_.clone(), details.clone()),
        other => panic!("not an IPA error: {other:?}"),
    }
}

#[test]
fn erase_devices_picks_a_method_per_device_and_reports_each() {
    let mut boot = plain("sdb", DeviceKind::Disk);
    boot.device.is_boot_medium = true;
    let mut member = plain("sdc", DeviceKind::Disk);
    member.device.holders = vec!["md0".into()];
    let host = FakeEraseHost::new(vec![
        nvme("nvme0n1", "qemu-id-ctrl.bin"),
        sata("sda", ata_security(false)),
        plain("vda", DeviceKind::Disk),
        boot,
        member,
        plain("vda1", DeviceKind::Partition),
    ]);
    let out = run(
        &host,
        EraseMode::Full,
        json!({"disk_erasure_concurrency": 4}),
    );
    let result = out.result.unwrap();
    let map = result.as_object().unwrap();
    // IPA's keys: every whole device, the skipped ones included, no partitions.
    let keys: Vec<&str> = map.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "/dev/nvme0n1",
            "/dev/sda",
            "/dev/sdb",
            "/dev/sdc",
            "/dev/vda"
        ]
    );
    let method = |dev: &str| map[dev]["method"].as_str().unwrap_or("-").to_string();
    assert_eq!(method("/dev/nvme0n1"), "nvme-format-user-data-erase");
    assert_eq!(method("/dev/sda"), "ata-security-erase-enhanced");
    assert_eq!(method("/dev/vda"), "overwrite (1 random pass + zeroes)");
    for dev in ["/dev/nvme0n1", "/dev/sda", "/dev/vda"] {
        let report = &map[dev];
        assert_eq!(report["outcome"], "erased", "{report}");
        assert_eq!(report["verification"]["passed"], true, "{report}");
        assert!(report["started_at"].as_str().unwrap().ends_with('Z'));
        assert!(report["serial"].as_str().unwrap().starts_with("SN-"));
    }
    assert_eq!(map["/dev/vda"]["verification"]["expect"], "zeroes");
    assert_eq!(map["/dev/sdb"]["outcome"], "skipped");
    assert_eq!(map["/dev/sdb"]["reason"], "the agent was booted from it");
    assert_eq!(
        map["/dev/sdc"]["reason"],
        "it is a member of the software RAID md0"
    );
    for (i, d) in host.devices.iter().enumerate() {
        let erased = i < 3;
        assert_eq!(all(&d.disk, OLD), !erased, "{}", d.device.name);
    }
    assert!(all(&host.devices[2].disk, 0));
    let written = host.opened_for_write();
    assert!(
        !written
            .iter()
            .any(|n| n == "sdb" || n == "sdc" || n == "vda1"),
        "{written:?}"
    );
    assert!(out.progress.snapshot().is_empty(), "every task finished");
    // The reports are kept for collect_system_logs.
    let kept = out.attachments.snapshot();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].0, "erase-reports.json");
    assert_eq!(
        kept[0].1["erase_devices"]["devices"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn one_at_a_time_with_concurrency_one() {
    let host = FakeEraseHost::new(vec![
        plain("vda", DeviceKind::Disk),
        plain("vdb", DeviceKind::Disk),
        plain("vdc", DeviceKind::Disk),
    ]);
    run(
        &host,
        EraseMode::Full,
        json!({"disk_erasure_concurrency": 1}),
    )
    .result
    .unwrap();
    let mut order = host.opened_for_write();
    order.dedup();
    assert_eq!(order, ["vda", "vdb", "vdc"], "no interleaving");
}

#[test]
fn a_protected_device_fails_the_step_before_any_write() {
    let mut gpfs = plain("sdb", DeviceKind::Disk);
    // A GPT whose only partition is GPFS (type 37AFFC90-...).
    let mut header = [0u8; 92];
    header[..8].copy_from_slice(b"EFI PART");
    header[72..80].copy_from_slice(&2u64.to_le_bytes());
    header[80..84].copy_from_slice(&1u32.to_le_bytes());
    header[84..88].copy_from_slice(&128u32.to_le_bytes());
    gpfs.disk.poke(512, &header);
    gpfs.disk.poke(
        1024,
        &[
            0x90, 0xFC, 0xAF, 0x37, 0x7D, 0xEF, 0x96, 0x4E, 0x91, 0xC3, 0x2D, 0x7A, 0xE0, 0x55,
            0xB1, 0x74,
        ],
    );
    gpfs.device.model = Some("shared".into());
    let host = FakeEraseHost::new(vec![plain("sda", DeviceKind::Disk), gpfs]);
    for mode in [EraseMode::Full, EraseMode::Metadata, EraseMode::Express] {
        let out = run(&host, mode, json!({}));
        let (type_, details) = ipa_error(&out.result);
        assert_eq!(type_, "ProtectedDeviceError");
        assert_eq!(
            details,
            "Found IBM GPFS Partition on device /dev/sdb as such cleaning will not continue"
        );
        assert!(
            host.opened_for_write().is_empty(),
            "{mode:?} wrote something"
        );
        let kept = &out.attachments.snapshot()[0].1[mode.step_name()]["devices"];
        assert_eq!(kept[0]["outcome"], "not_started", "{kept}");
        assert_eq!(kept[1]["outcome"], "refused");
    }
    // The operator may lift the guard (IPA's wipe_special_filesystems=False).
    run(
        &host,
        EraseMode::Metadata,
        json!({"wipe_special_filesystems": false}),
    )
    .result
    .unwrap();
    assert!(host.opened_for_write().contains(&"sdb".to_string()));
}

#[test]
fn read_only_devices_fail_erase_devices_unless_skipped() {
    let mut ro = plain("sdb", DeviceKind::Disk);
    ro.device.read_only = true;
    ro.disk.set_read_only();
    let host = FakeEraseHost::new(vec![plain("sda", DeviceKind::Disk), ro]);
    let (type_, details) = ipa_error(&run(&host, EraseMode::Full, json!({})).result);
    assert_eq!(type_, "BlockDeviceEraseError");
    assert!(details.contains("/dev/sdb is read-only"), "{details}");
    assert!(host.opened_for_write().is_empty());

    let out = run(
        &host,
        EraseMode::Full,
        json!({"agent_erase_skip_read_only": true}),
    );
    let map = out.result.unwrap();
    assert_eq!(map["/dev/sdb"]["outcome"], "skipped");
    assert_eq!(map["/dev/sda"]["outcome"], "erased");
    // The metadata and express steps always skip read-only devices.
    let meta = run(&host, EraseMode::Metadata, json!({})).result.unwrap();
    assert_eq!(meta["/dev/sdb"]["reason"], "it is read-only");
}

#[test]
fn a_frozen_drive_fails_unless_the_overwrite_fallback_is_allowed() {
    let host = FakeEraseHost::new(vec![sata("sda", ata_security(true))]);
    let (type_, details) = ipa_error(&run(&host, EraseMode::Full, json!({})).result);
    assert_eq!(type_, "BlockDeviceEraseError");
    assert!(
        details.starts_with("/dev/sda: ATA security of /dev/sda is frozen"),
        "{details}"
    );
    assert!(details.contains("suspend to RAM"), "{details}");
    assert!(all(&host.devices[0].disk, OLD), "nothing written");

    let out = run(
        &host,
        EraseMode::Full,
        json!({"agent_continue_if_secure_erase_failed": true}),
    );
    let report = &out.result.unwrap()["/dev/sda"];
    assert_eq!(report["method"], "overwrite (1 random pass + zeroes)");
    assert_eq!(report["attempts"][0]["succeeded"], false);
    assert!(report["attempts"][0]["error"]
        .as_str()
        .unwrap()
        .contains("frozen"));
    assert!(all(&host.devices[0].disk, 0));
}

#[test]
fn a_failed_nvme_format_falls_back_to_discard_then_overwrite() {
    let mut dev = nvme("nvme0n1", "id-ctrl-datacenter.bin");
    dev.disk.discard = DiscardBehaviour::Zeroes;
    dev.disk.secure_discard = true;
    let host = FakeEraseHost::new(vec![dev]);
    let nvme = host.devices[0].nvme.clone().unwrap();
    nvme.fail_format_with(0x0006);
    let info = json!({"agent_enable_discard_erase": true});
    let report = run(&host, EraseMode::Full, info).result.unwrap()["/dev/nvme0n1"].clone();
    assert_eq!(report["method"], "discard", "{report}");
    assert!(report["attempts"][0]["error"]
        .as_str()
        .unwrap()
        .contains("Internal Error"));
    assert_eq!(report["attempts"][1]["detail"]["secure"], true);
    assert!(all(&host.devices[0].disk, 0));

    // Discard not allowed and no continue knob: the step fails with the controller's answer.
    nvme.fail_format_with(0x0006);
    let (_, details) = ipa_error(&run(&host, EraseMode::Full, json!({})).result);
    assert!(
        details.contains("Format NVM: the controller answered Internal Error"),
        "{details}"
    );
}

#[test]
fn a_format_that_erases_nothing_is_caught_by_the_read_back() {
    let mut dev = nvme("nvme0n1", "id-ctrl-client.bin");
    dev.nvme.as_mut().unwrap().format_is_a_no_op = true;
    let host = FakeEraseHost::new(vec![dev]);
    let (_, details) = ipa_error(&run(&host, EraseMode::Full, json!({})).result);
    assert!(details.contains("verification failed"), "{details}");
    assert!(details.contains("still holding the marker"), "{details}");
    // With the continue knob the overwrite finishes the job.
    let out = run(
        &host,
        EraseMode::Full,
        json!({"agent_continue_if_secure_erase_failed": true}),
    );
    assert_eq!(out.result.unwrap()["/dev/nvme0n1"]["outcome"], "erased");
    assert!(all(&host.devices[0].disk, 0));
}

#[test]
fn sanitize_by_policy_reports_the_controller_estimate() {
    let mut dev = nvme("nvme0n1", "id-ctrl-datacenter.bin");
    {
        let n = dev.nvme.as_mut().unwrap();
        n.sanitize = SanitizeBehaviour::CompletesAfter(3);
        n.estimates = [45, 900, u32::MAX];
    }
    let host = FakeEraseHost::new(vec![dev]);
    let settings = Settings {
        nvme_sanitize: NvmeSanitize::Crypto,
        ..Settings::default()
    };
    let out = run_with(&host, EraseMode::Full, json!({}), &settings, false);
    let report = &out.result.unwrap()["/dev/nvme0n1"];
    assert_eq!(report["method"], "nvme-sanitize-crypto-erase");
    assert_eq!(
        report["attempts"][0]["detail"]["controller_estimate_seconds"],
        45
    );
    assert_eq!(report["verification"]["expect"], "markers-gone");
    assert!(
        all(&host.devices[0].disk, 0xC3),
        "crypto erase leaves ciphertext"
    );
}

#[test]
fn express_formats_nvme_and_wipes_metadata_elsewhere_partitions_first() {
    let host = FakeEraseHost::new(vec![
        nvme("nvme0n1", "qemu-id-ctrl.bin"),
        plain("sda", DeviceKind::Disk),
        plain("sda1", DeviceKind::Partition),
        plain("sda2", DeviceKind::Partition),
    ]);
    let out = run(
        &host,
        EraseMode::Express,
        json!({"disk_erasure_concurrency": 1}),
    );
    let map = out.result.unwrap();
    assert_eq!(map["/dev/nvme0n1"]["method"], "nvme-format-user-data-erase");
    for dev in ["/dev/sda", "/dev/sda1", "/dev/sda2"] {
        assert_eq!(map[dev]["method"], "metadata", "{dev}");
    }
    assert!(all(&host.devices[0].disk, 0));
    let mut order = host.opened_for_write();
    order.dedup();
    let sda: Vec<&str> = order
        .iter()
        .map(String::as_str)
        .filter(|n| n.starts_with("sda"))
        .collect();
    assert_eq!(sda, ["sda2", "sda1", "sda"], "partitions before their disk");
}

#[test]
fn devices_in_skip_block_devices_are_left_alone_with_their_partitions() {
    let mut keep = plain("sdb", DeviceKind::Disk);
    keep.device.serial = Some("REPORT-1".into());
    let host = FakeEraseHost::new(vec![
        plain("sda", DeviceKind::Disk),
        keep,
        plain("sdb1", DeviceKind::Partition),
    ]);
    let node = json!({"uuid": "n1", "driver_internal_info": {},
                      "properties": {"skip_block_devices": [{"serial": "REPORT-1"}]}});
    let progress = ProgressBoard::default();
    let attachments = LogAttachments::default();
    let call = EraseCall {
        node: &node,
        settings: &Settings::default(),
        progress: &progress,
        abort: &AbortSignal::default(),
        attachments: &attachments,
    };
    let map = erase_step(&host, EraseMode::Express, &call).unwrap();
    assert_eq!(map["/dev/sda"]["method"], "metadata");
    assert!(
        map.get("/dev/sdb").is_none() && map.get("/dev/sdb1").is_none(),
        "{map}"
    );
    assert!(all(&host.devices[1].disk, OLD) && all(&host.devices[2].disk, OLD));
    assert!(!all(&host.devices[0].disk, OLD));

    let bad = json!({"properties": {"skip_block_devices": {"serial": "x"}}});
    let call = EraseCall { node: &bad, ..call };
    let err = erase_step(&host, EraseMode::Express, &call).unwrap_err();
    assert!(err.to_string().contains("skip_block_devices"), "{err}");
}

#[test]
fn metadata_erase_removes_signatures_and_reports_them() {
    let disk = plain("sda", DeviceKind::Disk);
    disk.disk.fill(0);
    disk.disk.poke(1080, &[0x53, 0xEF]);
    disk.disk.poke(8 * MIB - 512, b"EFI PART");
    let host = FakeEraseHost::new(vec![disk]);
    let report = run(&host, EraseMode::Metadata, json!({})).result.unwrap()["/dev/sda"].clone();
    assert_eq!(report["outcome"], "erased");
    let removed: Vec<&str> = report["attempts"][0]["detail"]["signatures_removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(removed, ["ext2/3/4", "gpt (backup header)"]);
    assert_eq!(report["verification"]["expect"], "metadata-gone");
    assert_eq!(report["verification"]["passed"], true);
}

#[test]
fn an_abort_stops_every_device() {
    let host = FakeEraseHost::new(vec![
        plain("vda", DeviceKind::Disk),
        plain("vdb", DeviceKind::Disk),
    ]);
    let out = run_with(
        &host,
        EraseMode::Full,
        json!({}),
        &Settings::default(),
        true,
    );
    let (_, details) = ipa_error(&out.result);
    assert!(
        details.contains("/dev/vda: the erase was aborted"),
        "{details}"
    );
    assert!(
        details.contains("/dev/vdb: the erase was aborted"),
        "{details}"
    );
    assert!(host.opened_for_write().is_empty());
}

#[test]
fn nothing_to_write_is_a_skip() {
    let host = FakeEraseHost::new(vec![plain("vda", DeviceKind::Disk)]);
    let info = json!({"agent_erase_devices_iterations": 0, "agent_erase_devices_zeroize": false});
    let map = run(&host, EraseMode::Full, info).result.unwrap();
    assert_eq!(map["/dev/vda"]["outcome"], "skipped");
    assert!(all(&host.devices[0].disk, OLD));
}

#[test]
fn bad_knobs_and_listing_failures() {
    let host = FakeEraseHost::new(vec![plain("vda", DeviceKind::Disk)]);
    match run(
        &host,
        EraseMode::Full,
        json!({"disk_erasure_concurrency": "many"}),
    )
    .result
    {
        Err(StepError::InvalidArgs { step, message }) => {
            assert_eq!(step, "erase_devices");
            assert!(message.contains("disk_erasure_concurrency"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    let mut broken = FakeEraseHost::default();
    broken.list_error = Some("reading /sys/class/block: EACCES".into());
    match run(&broken, EraseMode::Metadata, json!({})).result {
        Err(StepError::Failed(message)) => {
            assert_eq!(
                message,
                "listing block devices: reading /sys/class/block: EACCES"
            )
        }
        other => panic!("{other:?}"),
    }
    // No device at all is a success with nothing to report, as IPA's {}.
    let empty = FakeEraseHost::default();
    assert_eq!(
        run(&empty, EraseMode::Full, json!({})).result.unwrap(),
        json!({})
    );
}

#[test]
fn each_step_keeps_its_last_reports() {
    let host = FakeEraseHost::new(vec![plain("vda", DeviceKind::Disk)]);
    let node = json!({});
    let progress = ProgressBoard::default();
    let attachments = LogAttachments::default();
    let abort = AbortSignal::default();
    let settings = Settings::default();
    let call = EraseCall {
        node: &node,
        settings: &settings,
        progress: &progress,
        abort: &abort,
        attachments: &attachments,
    };
    erase_step(&host, EraseMode::Metadata, &call).unwrap();
    erase_step(&host, EraseMode::Full, &call).unwrap();
    erase_step(&host, EraseMode::Metadata, &call).unwrap();
    let kept = &attachments.snapshot()[0].1;
    let steps: Vec<&String> = kept.as_object().unwrap().keys().collect();
    assert_eq!(steps, ["erase_devices", "erase_devices_metadata"]);
}
