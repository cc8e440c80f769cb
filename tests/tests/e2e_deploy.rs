//! A deploy by the real Ironic 39 (`direct` deploy interface) through rivet-agent in a VM,
//! then the deployed disk booted on its own. See docs/e2e-tests.md.
//!
//! The whole-disk image is built by the test (a GPT with an ESP holding GRUB and the test
//! kernel, see `rivet_tests::deploy`) and served over HTTP inside the namespace with its
//! SHA-256; the node has fake power, boot and management, so the test starts the VMs itself:
//! first the rivet ISO (UEFI, USB virtual media) with an empty 5 GiB virtio disk, which the
//! conductor deploys to `active`; then, from that same disk image, a second VM whose firmware
//! finds GRUB on the deployed ESP and boots the kernel with the test's marker.

use std::time::Duration;

use anyhow::{ensure, Context};
use rivet_tests::deploy::{bootable_uefi_disk, enroll_for_deploy, sha256_file, FileServer};
use rivet_tests::e2e::{Lab, BOOT_TIMEOUT, VM_MAC};
use rivet_tests::ironic::{node_summary, RealIronic};
use rivet_tests::or_panic;
use rivet_tests::vm::{BootMedium, DiskBus, Firmware, VmBuilder};
use serde_json::json;

/// From the deploy VM's start to `active`: boot, lookup, deploy steps, power off.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(600);
/// IPA's smallest root device is 4 GiB; the file is sparse.
const DISK_BYTES: u64 = 5 << 30;
const HTTP_PORT: u16 = 8080;

#[test]
fn direct_deploy_of_a_whole_disk_image_boots_from_the_deployed_disk() {
    let lab = or_panic(Lab::create());
    let work = or_panic(tempfile::tempdir().context("temp dir"));
    let images = work.path().join("images");
    or_panic(std::fs::create_dir(&images).context("images dir"));
    let marker = format!("rivet-deployed-marker={}", std::process::id());
    let disk = or_panic(bootable_uefi_disk(&images, &lab.image.kernel(), &marker));
    let digest = or_panic(sha256_file(&disk));
    for (from, to) in [
        (lab.image.kernel(), "deploy.kernel"),
        (lab.image.initramfs(), "deploy.initramfs"),
    ] {
        or_panic(
            std::fs::hard_link(&from, images.join(to))
                .or_else(|_| std::fs::copy(&from, images.join(to)).map(drop))
                .with_context(|| format!("linking {} into the image directory", from.display())),
        );
    }

    let result = lab.net.block_on(async {
        let server = FileServer::start(&lab.net, &images, lab.net.bridge_address(), HTTP_PORT)?;
        let ironic = RealIronic::start_in(&lab.net).await?;
        let instance_info = json!({
            "image_source": server.url("disk.img"),
            "image_os_hash_algo": "sha256",
            "image_os_hash_value": digest,
            "image_disk_format": "raw",
        });
        // The pxe boot interface fetches these into its TFTP root; the VM boots the ISO
        // instead (nothing boots over the network here).
        let driver_info = json!({
            "deploy_kernel": server.url("deploy.kernel"),
            "deploy_ramdisk": server.url("deploy.initramfs"),
        });
        let properties = json!({"capabilities": "boot_mode:uefi", "cpu_arch": "x86_64"});
        let uuid = enroll_for_deploy(
            &ironic,
            "rivet-e2e-deploy",
            VM_MAC,
            driver_info,
            instance_info,
            properties,
        )
        .await?;
        let mut vm = VmBuilder::new("deploy")
            .firmware(Firmware::Uefi)
            .boot(BootMedium::UsbCd(lab.image.iso()))
            .disk(DiskBus::VirtioBlk, DISK_BYTES)
            .nic("tap0", VM_MAC)
            .start(&lab.net)?;
        // The agent powers the VM off at the end (tear_down_agent): QEMU may only end after
        // the image was written.
        let done = ironic
            .watch_node(
                &uuid,
                DEPLOY_TIMEOUT,
                "provision state active",
                |node| match node["provision_state"].as_str() {
                    Some("active") => Ok(Some(node.clone())),
                    Some("deploy failed") => {
                        anyhow::bail!("the deploy failed: {}", node_summary(node))
                    }
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
        let console = vm.console_text();
        ensure!(
            console.contains("write_image disk.img to /dev/vda"),
            "the agent's console shows no write_image progress:\n{}",
            vm.failure_report()
        );
        // Wait for the agent's power-off, then boot the disk it wrote.
        for _ in 0..600 {
            if vm.ensure_running().is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let deployed = vm.disk_image(0)?;
        let mut booted = VmBuilder::new("deployed")
            .firmware(Firmware::Uefi)
            .boot(BootMedium::Disk)
            .disk_from(DiskBus::VirtioBlk, &deployed)
            .start(&lab.net)?;
        vm.stop();
        let (at, line) = booted
            .wait_for_console(&marker, BOOT_TIMEOUT)
            .with_context(|| booted.failure_report())?;
        ensure!(
            line.contains("Command line:") || line.contains("Kernel command line:"),
            "the marker appeared outside the kernel's command line: {line}"
        );
        eprintln!("the deployed disk booted its kernel after {at:.1?}");
        booted.stop();
        Ok::<(), anyhow::Error>(())
    });
    or_panic(or_panic(result));
}
