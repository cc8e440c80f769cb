//! Offline mode (docs/plan.md): a VM without any NIC boots rivet's ISO customized with a
//! plan and the image it deploys (both in the config-area bundle), matches its machine by
//! SMBIOS system UUID, erases its NVMe disk, writes the image to its virtio disk, writes its
//! report to a third disk named by serial, and powers off. The host then checks the disks
//! and the report, boots the deployed disk in a second VM (BIOS, from the disk itself) and
//! waits for the marker its boot sector prints, and finally boots the ISO again on the first
//! VM's disks to see that the completed plan erases and writes nothing the second time.
//!
//! A second test deploys the image from a labelled second medium instead (an ISO 9660 file
//! system on another disk, `file:///run/rivet/media/LABEL/...`).
//!
//! Needs what tests/tests/e2e_boot.rs needs (root, QEMU, OVMF, the static agent,
//! rivet-image-builder, xorriso), but no Ironic and no DHCP server.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rivet_protocol::plan::report::{PlanReport, RunState, StepState};
use rivet_tests::bootdisk::{marker_disk, BOOTED_MARKER, DISK_ID};
use rivet_tests::e2e::{kernel_args, BOOT_TIMEOUT, INIT_BANNER};
use rivet_tests::image::{boot_image, customize, target_dir};
use rivet_tests::netns::{TestNet, TestNetConfig};
use rivet_tests::or_panic;
use rivet_tests::vm::{BootMedium, DiskBus, Firmware, Vm, VmBuilder};
use serde_json::json;
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;
const TARGET_SIZE: u64 = 64 * MIB;
const NVME_SIZE: u64 = 256 * MIB;
const REPORT_SIZE: u64 = 8 * MIB;
const TARGET_FILL: u8 = 0x5A;
const NVME_FILL: u8 = 0xA5;
const IMAGE_SIZE: usize = 2 << 20;
const IMAGE_PATH: &str = "/run/rivet/images/marker.raw";
const SYSTEM_UUID: &str = "5f1c3e36-7d0a-4c59-9a51-0e2b7d1f0a01";
/// The report medium is the third disk: the harness names it `rivet-vd2`.
const REPORT_SERIAL: &str = "rivet-vd2";
/// From QEMU's start to the plan's power-off: boot, inventory, NVMe format, write.
const PLAN_TIMEOUT: Duration = Duration::from_secs(600);

fn plan(image_sha256: &str) -> serde_json::Value {
    json!({
        "version": 1,
        "name": "offline-e2e",
        "machines": [
            {"name": "someone-else", "match": {"system_uuid": "00000000-1111-2222-3333-444444444444"}},
            {"name": "vm-1", "match": {"system_uuid": SYSTEM_UUID.to_uppercase()},
             "properties": {"root_device": {"serial": "rivet-vd0"}}}
        ],
        "steps": [
            {"step": "inspect"},
            {"step": "erase_devices_express"},
            {"step": "write_image", "args": {"image_info": {
                "id": "marker",
                "urls": [format!("file://{IMAGE_PATH}")],
                "os_hash_algo": "sha256",
                "os_hash_value": image_sha256,
                "disk_format": "raw",
                "image_type": "whole-disk"
            }}},
            {"step": "poweroff"}
        ],
        "on_failure": "poweroff",
        "report": {"medium": {"serial": REPORT_SERIAL}}
    })
}

fn read_report(path: &Path) -> Result<PlanReport> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    PlanReport::from_medium(&bytes[..(1 << 20)])
        .map_err(anyhow::Error::msg)?
        .context("the report medium is blank: the agent wrote no report")
}

/// The VM that boots the ISO: UEFI, the ISO as USB virtual media, no NIC.
fn deploy_vm(net: &TestNet, iso: &Path, disks: Option<&Vm>) -> Result<Vm> {
    let builder = VmBuilder::new("offline-plan")
        .firmware(Firmware::Uefi)
        .system_uuid(SYSTEM_UUID)
        .boot(BootMedium::UsbCd(iso.to_path_buf()));
    let builder = match disks {
        None => builder
            .disk_filled(DiskBus::VirtioBlk, TARGET_SIZE, TARGET_FILL)
            .disk_filled(DiskBus::Nvme, NVME_SIZE, NVME_FILL)
            .disk(DiskBus::VirtioBlk, REPORT_SIZE),
        Some(vm) => builder
            .disk_copy(DiskBus::VirtioBlk, &vm.disk_image(0)?)?
            .disk_copy(DiskBus::Nvme, &vm.disk_image(1)?)?
            .disk_copy(DiskBus::VirtioBlk, &vm.disk_image(2)?)?,
    };
    builder.start(net)
}

fn check_disks(vm: &Vm, image: &[u8]) -> Result<()> {
    let nvme = std::fs::read(vm.disk_image(1)?)?;
    if let Some(at) = nvme.iter().position(|&b| b != 0) {
        anyhow::bail!(
            "the NVMe disk is not erased: byte {at} is {:#04x}",
            nvme[at]
        );
    }
    let target = std::fs::read(vm.disk_image(0)?)?;
    ensure!(
        target[..image.len()] == *image,
        "the virtio disk does not start with the image"
    );
    // Past the image: what the metadata erase left (zeroes at the ends, the old fill
    // between), never anything else.
    for (offset, byte) in target.iter().enumerate().skip(image.len()) {
        let offset = offset as u64;
        let erased_end = offset >= TARGET_SIZE - 4 * MIB;
        let ok = if erased_end {
            *byte == 0
        } else {
            *byte == TARGET_FILL || *byte == 0
        };
        ensure!(ok, "the virtio disk's byte {offset} is {byte:#04x}");
    }
    Ok(())
}

/// The e2e boot image (cached; built with the Ironic URL the other tests use, which
/// `customize` deletes here).
fn base_image() -> Result<rivet_tests::image::BootImage> {
    boot_image(&kernel_args(&format!(
        "http://{}:6385",
        TestNetConfig::default().bridge_address
    )))
}

#[test]
fn offline_plan_erases_writes_reports_powers_off_and_the_disk_boots() {
    let net = or_panic(TestNet::create(TestNetConfig::default()));
    // Customized: no Ironic URL, the plan and the image in the bundle.
    let base = or_panic(base_image());
    let work = tempfile::tempdir_in(target_dir()).expect("a work directory under target/");
    let image = marker_disk(IMAGE_SIZE);
    let image_file = work.path().join("marker.raw");
    std::fs::write(&image_file, &image).unwrap();
    let sha256 = hex::encode(Sha256::digest(&image));
    let plan_file = work.path().join("plan.json");
    std::fs::write(&plan_file, plan(&sha256).to_string()).unwrap();
    let iso = work.path().join("offline.iso");
    or_panic(customize(
        &base.iso(),
        &[
            "--plan".into(),
            plan_file.display().to_string(),
            "--file".into(),
            format!("{}:{IMAGE_PATH}", image_file.display()),
            "--delete-karg".into(),
            "ipa-api-url".into(),
        ],
        &iso,
    ));

    // First boot: the plan runs and powers the VM off.
    let mut vm = or_panic(deploy_vm(&net, &iso, None));
    or_panic(vm.wait_for_console(INIT_BANNER, BOOT_TIMEOUT));
    let status = or_panic(vm.wait_for_exit(PLAN_TIMEOUT));
    let console = vm.console_text();
    for (what, pattern) in [
        ("the bundle with the plan", "plan offline-e2e"),
        ("offline mode", "offline mode: running plan offline-e2e"),
        ("the machine match", "this machine is vm-1"),
        ("the erase step", "erase_devices_express: starting"),
        (
            "the NVMe format",
            "erase /dev/nvme0n1: erased by nvme-format-user-data-erase",
        ),
        (
            "the report medium left alone",
            "alone: listed in properties.skip_block_devices",
        ),
        ("the image written", "step 2 write_image: done"),
        ("the power-off", "plan offline-e2e: PowerOff"),
    ] {
        assert!(
            console.contains(pattern),
            "the console never showed {what} ({pattern:?}); QEMU ended with {status}\n{}",
            vm.failure_report()
        );
    }
    let report = or_panic(read_report(&or_panic(vm.disk_image(2))));
    assert_eq!(report.state, RunState::Done, "{report:#?}");
    assert_eq!(report.machine.as_deref(), Some("vm-1"));
    assert_eq!(report.identity.system_uuid.as_deref(), Some(SYSTEM_UUID));
    let steps: Vec<(&str, StepState)> = report
        .steps
        .iter()
        .map(|s| (s.step.as_str(), s.state))
        .collect();
    assert_eq!(
        steps,
        [
            ("inspect", StepState::Done),
            ("erase_devices_express", StepState::Done),
            ("write_image", StepState::Done),
            ("poweroff", StepState::Done)
        ]
    );
    assert!(report.steps[0]
        .result
        .as_ref()
        .is_some_and(|r| r["disks"].is_array()));
    let written = report.steps[2]
        .result
        .as_ref()
        .map(|r| r.to_string())
        .unwrap_or_default();
    assert!(
        written.contains(&format!("root_uuid=0x{DISK_ID:08x}")),
        "write_image's result: {written}"
    );
    or_panic(check_disks(&vm, &image));

    // The deployed disk boots by itself (BIOS, first disk, no ISO).
    let mut deployed = or_panic(
        VmBuilder::new("deployed")
            .firmware(Firmware::Bios)
            .boot(BootMedium::FirstDisk)
            .disk_copy(DiskBus::VirtioBlk, &or_panic(vm.disk_image(0)))
            .and_then(|b| b.start(&net)),
    );
    let (at, _) = or_panic(deployed.wait_for_console(BOOTED_MARKER, BOOT_TIMEOUT));
    deployed.stop();
    eprintln!("the deployed disk printed its marker {at:.1?} after QEMU started");

    // Second boot of the ISO on the same disks: the completed plan does nothing again.
    let mut again = or_panic(deploy_vm(&net, &iso, Some(&vm)));
    or_panic(again.wait_for_exit(PLAN_TIMEOUT));
    let console = again.console_text();
    assert!(
        console.contains("already completed on this machine"),
        "the second boot did not recognise the completed plan\n{}",
        again.failure_report()
    );
    assert!(
        !console.contains("erase_devices_express: starting"),
        "it erased again"
    );
    let report = or_panic(read_report(&or_panic(again.disk_image(2))));
    assert_eq!(report.state, RunState::AlreadyDone);
    assert!(report.steps.is_empty());
    or_panic(check_disks(&again, &image));
}

#[test]
fn offline_plan_reads_its_image_from_a_labelled_second_medium() {
    const LABEL: &str = "RIVETIMAGES";
    let net = or_panic(TestNet::create(TestNetConfig::default()));
    let base = or_panic(base_image());
    let work = tempfile::tempdir_in(target_dir()).expect("a work directory under target/");
    let image = marker_disk(IMAGE_SIZE);
    let tree = work.path().join("tree/images");
    std::fs::create_dir_all(&tree).unwrap();
    std::fs::write(tree.join("marker.raw"), &image).unwrap();
    let medium = work.path().join("images.iso");
    let made = std::process::Command::new("xorriso")
        .args(["-as", "mkisofs", "-R", "-J", "-V", LABEL, "-o"])
        .arg(&medium)
        .arg(work.path().join("tree"))
        .output()
        .expect("running xorriso (Debian package xorriso)");
    assert!(
        made.status.success(),
        "xorriso failed: {}",
        String::from_utf8_lossy(&made.stderr)
    );
    let plan = json!({
        "version": 1,
        "name": "second-medium",
        "machines": [{"name": "vm-1", "match": {"system_uuid": SYSTEM_UUID},
                      "properties": {"root_device": {"serial": "rivet-vd0"}}}],
        "steps": [
            {"step": "write_image", "args": {"image_info": {
                "id": "marker",
                "urls": [format!("file:///run/rivet/media/{LABEL}/images/marker.raw")],
                "os_hash_algo": "sha256",
                "os_hash_value": hex::encode(Sha256::digest(&image)),
                "disk_format": "raw",
                "image_type": "whole-disk"
            }}},
            {"step": "poweroff"}
        ],
        "on_failure": "poweroff",
        "rerun": "always"
    });
    let plan_file = work.path().join("plan.json");
    std::fs::write(&plan_file, plan.to_string()).unwrap();
    let iso = work.path().join("offline.iso");
    or_panic(customize(
        &base.iso(),
        &[
            "--plan".into(),
            plan_file.display().to_string(),
            "--delete-karg".into(),
            "ipa-api-url".into(),
        ],
        &iso,
    ));
    let mut vm = or_panic(
        VmBuilder::new("second-medium")
            .firmware(Firmware::Uefi)
            .system_uuid(SYSTEM_UUID)
            .boot(BootMedium::UsbCd(iso.clone()))
            .disk_filled(DiskBus::VirtioBlk, TARGET_SIZE, TARGET_FILL)
            .disk_copy(DiskBus::VirtioBlk, &medium)
            .and_then(|b| b.start(&net)),
    );
    or_panic(vm.wait_for_console(INIT_BANNER, BOOT_TIMEOUT));
    or_panic(vm.wait_for_exit(PLAN_TIMEOUT));
    let console = vm.console_text();
    for pattern in [
        format!("image medium {LABEL}: /dev/vdb mounted read-only"),
        "step 0 write_image: done".to_string(),
    ] {
        assert!(
            console.contains(&pattern),
            "the console never showed {pattern:?}\n{}",
            vm.failure_report()
        );
    }
    let target = std::fs::read(or_panic(vm.disk_image(0))).unwrap();
    assert!(
        target[..image.len()] == image[..],
        "the virtio disk does not start with the image"
    );
}
