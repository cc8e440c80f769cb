//! Deploys by the real Ironic 39 (`direct` deploy interface) through rivet-agent in a VM.
//! See docs/e2e-tests.md.
//!
//! The images are built by the test and served over HTTP inside the namespace with their
//! SHA-256; the nodes have fake power and noop management, so the test starts the VMs
//! itself: the rivet ISO (UEFI, USB virtual media) with an empty 5 GiB virtio disk, which the
//! conductor deploys to `active`.
//!
//! - A whole-disk image (a GPT with an ESP holding GRUB and the test kernel, see
//!   `rivet_tests::deploy`); then, from that same disk image, a second VM whose firmware
//!   finds GRUB on the deployed ESP and boots the kernel with the test's marker.
//! - A partition image (an ext4 file system): the disk must have IPA's UEFI layout, the root
//!   partition the image, and the conductor the root file system's UUID.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rivet_tests::deploy::{
    bootable_uefi_disk, enroll_for_deploy, ext4_image, serve_deploy_ramdisk, sfdisk_json,
    sha256_file, FileServer,
};
use rivet_tests::e2e::{Lab, BOOT_TIMEOUT, VM_MAC};
use rivet_tests::ironic::{node_summary, RealIronic};
use rivet_tests::or_panic;
use rivet_tests::vm::{BootMedium, DiskBus, Firmware, Vm, VmBuilder};
use serde_json::{json, Value};

/// From the deploy VM's start to `active`: boot, lookup, deploy steps, power off.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);
/// IPA's smallest root device is 4 GiB; the file is sparse.
const DISK_BYTES: u64 = 5 << 30;
const HTTP_PORT: u16 = 8080;
const MIB: u64 = 1 << 20;

/// Enrolls a node with `instance_info`, deploys it while a VM boots the rivet ISO with an
/// empty disk, and waits for `active` without error. Returns the VM (powered off by the
/// agent, or about to be) and the node.
async fn deploy(
    lab: &Lab,
    ironic: &RealIronic,
    server: &FileServer,
    name: &str,
    instance_info: Value,
) -> Result<(Vm, Value)> {
    let driver_info = json!({
        "deploy_kernel": server.url("deploy.kernel"),
        "deploy_ramdisk": server.url("deploy.initramfs"),
    });
    let properties = json!({"capabilities": "boot_mode:uefi", "cpu_arch": "x86_64"});
    let uuid =
        enroll_for_deploy(ironic, name, VM_MAC, driver_info, instance_info, properties).await?;
    let mut vm = VmBuilder::new(name)
        .firmware(Firmware::Uefi)
        .boot(BootMedium::UsbCd(lab.image.iso()))
        .disk(DiskBus::VirtioBlk, DISK_BYTES)
        .nic("tap0", VM_MAC)
        .start(&lab.net)?;
    // The agent powers the VM off at the end (tear_down_agent): QEMU may only end after the
    // node left `wait call-back`.
    let done = ironic
        .watch_node(
            &uuid,
            DEPLOY_TIMEOUT,
            "provision state active",
            |node| match node["provision_state"].as_str() {
                Some("active") => Ok(Some(node.clone())),
                Some("deploy failed") => anyhow::bail!("the deploy failed: {}", node_summary(node)),
                Some("wait call-back") => vm.ensure_running().map(|()| None),
                _ => Ok(None),
            },
        )
        .await
        .with_context(|| vm.failure_report())?;
    ensure!(
        done["last_error"].is_null(),
        "the deploy ended with an error: {}",
        node_summary(&done)
    );
    let log = ironic.log_text()?;
    ensure!(
        log.contains(&format!("Image successfully written to node {uuid}")),
        "the conductor never saw the image written"
    );
    // The write's progress (bytes, rate) is in the agent's log, on its console.
    let console = vm.console_text();
    ensure!(
        console.contains("progress: write_image") && console.contains("MiB/s"),
        "the agent's console shows no write_image progress:\n{}",
        vm.failure_report()
    );
    // Wait for the agent's power-off before anyone reads the disk image.
    for _ in 0..600 {
        if vm.ensure_running().is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    vm.stop();
    Ok((vm, done))
}

#[test]
fn direct_deploy_of_a_whole_disk_image_boots_from_the_deployed_disk() {
    let lab = or_panic(Lab::create());
    let work = or_panic(tempfile::tempdir().context("temp dir"));
    let images = work.path().join("images");
    or_panic(std::fs::create_dir(&images).context("images dir"));
    let marker = format!("rivet-deployed-marker={}", std::process::id());
    let disk = or_panic(bootable_uefi_disk(&images, &lab.image.kernel(), &marker));
    let digest = or_panic(sha256_file(&disk));
    or_panic(serve_deploy_ramdisk(&lab.image, &images));

    let result = lab.net.block_on(async {
        let server = FileServer::start(&lab.net, &images, lab.net.bridge_address(), HTTP_PORT)?;
        let ironic = RealIronic::start_in(&lab.net).await?;
        let instance_info = json!({
            "image_source": server.url("disk.img"),
            "image_os_hash_algo": "sha256",
            "image_os_hash_value": digest,
            "image_disk_format": "raw",
        });
        let (vm, _) = deploy(&lab, &ironic, &server, "deploy-whole", instance_info).await?;
        let deployed = vm.disk_image(0)?;
        let mut booted = VmBuilder::new("deployed")
            .firmware(Firmware::Uefi)
            .boot(BootMedium::FirstDisk)
            .disk_copy(DiskBus::VirtioBlk, &deployed)?
            .start(&lab.net)?;
        let (at, line) = booted
            .wait_for_console(&marker, BOOT_TIMEOUT)
            .with_context(|| booted.failure_report())?;
        ensure!(
            line.contains("Command line:"),
            "the marker appeared outside the kernel's command line: {line}"
        );
        eprintln!("the deployed disk booted its kernel after {at:.1?}");
        booted.stop();
        Ok::<(), anyhow::Error>(())
    });
    or_panic(or_panic(result));
}

/// The image has no GRUB to run: installing the boot loader mounts its root (ext4) in the
/// ramdisk and then fails, which `ipa-ignore-bootloader-failure=1` turns into a logged
/// error, so this scenario checks the layout and what the conductor got, not a boot.
#[test]
fn direct_deploy_of_a_partition_image_lays_out_the_disk_as_ipa() {
    let lab = or_panic(Lab::create_with_args("ipa-ignore-bootloader-failure=1"));
    let work = or_panic(tempfile::tempdir().context("temp dir"));
    let images = work.path().join("images");
    or_panic(std::fs::create_dir(&images).context("images dir"));
    let (image, fs_uuid) = or_panic(ext4_image(&images, "root.img", 32));
    let digest = or_panic(sha256_file(&image));
    or_panic(serve_deploy_ramdisk(&lab.image, &images));

    let result = lab.net.block_on(async {
        let server = FileServer::start(&lab.net, &images, lab.net.bridge_address(), HTTP_PORT)?;
        let ironic = RealIronic::start_in(&lab.net).await?;
        let instance_info = json!({
            "image_source": server.url("root.img"),
            "image_os_hash_algo": "sha256",
            "image_os_hash_value": digest,
            "image_disk_format": "raw",
            "image_type": "partition",
            "kernel": server.url("deploy.kernel"),
            "ramdisk": server.url("deploy.initramfs"),
            "root_gb": 1,
            "swap_mb": 64,
        });
        let (vm, node) = deploy(&lab, &ironic, &server, "deploy-partition", instance_info).await?;
        let root_uuid = &node["driver_internal_info"]["root_uuid_or_disk_id"];
        ensure!(
            root_uuid == &json!(fs_uuid),
            "the conductor's root_uuid_or_disk_id is {root_uuid}, the image's file system is \
             {fs_uuid}"
        );
        // The agent mounted the image's root and its binds, looked for GRUB, unmounted.
        let console = vm.console_text();
        ensure!(
            console.contains("has neither grub-install nor grub2-install"),
            "the console does not show the GRUB installation reaching the image's root:\n{}",
            vm.failure_report()
        );
        let disk = vm.disk_image(0)?;
        let table = sfdisk_json(&disk)?;
        ensure!(table["label"] == "gpt", "not a GPT: {table}");
        let layout: Vec<(u64, u64, String)> = table["partitions"]
            .as_array()
            .context("no partitions")?
            .iter()
            .map(|p| {
                (
                    p["start"].as_u64().unwrap_or_default() * 512 / MIB,
                    p["size"].as_u64().unwrap_or_default() * 512 / MIB,
                    p["type"].as_str().unwrap_or_default().to_ascii_lowercase(),
                )
            })
            .collect();
        let expected = vec![
            (1, 550, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b".to_string()),
            (551, 64, "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f".to_string()),
            (
                615,
                1024,
                "0fc63daf-8483-4772-8e79-3d69d8477de4".to_string(),
            ),
        ];
        ensure!(
            layout == expected,
            "layout {layout:?}, expected {expected:?}"
        );
        // The agent mounted it read-write (superblock, journal changed): its UUID says it is
        // the image's file system.
        let output = std::process::Command::new("blkid")
            .args([
                "-p",
                "-O",
                &(615 * MIB).to_string(),
                "-o",
                "value",
                "-s",
                "UUID",
            ])
            .arg(&disk)
            .output()
            .context("running blkid")?;
        let found = String::from_utf8_lossy(&output.stdout).trim().to_string();
        ensure!(
            found == fs_uuid,
            "the root partition holds file system {found:?}, not the image's {fs_uuid}"
        );
        Ok::<(), anyhow::Error>(())
    });
    or_panic(or_panic(result));
}
