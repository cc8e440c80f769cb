//! The erase in a VM, driven by the real Ironic 39: a manual clean with
//! `erase_devices_express` on a VM whose NVMe disk the host filled with a pattern; after it the
//! NVMe image reads back as zeroes (the agent's Format NVM on QEMU's controller) and the
//! virtio disk has its ends zeroed (the metadata erase) and its middle untouched.
//! See docs/e2e-tests.md for the lab (namespace, dnsmasq, Ironic) and its prerequisites.

use anyhow::{ensure, Context};
use rivet_tests::e2e::{enroll_for_clean_steps, watch_clean, Lab, VM_MAC};
use rivet_tests::ironic::{node_summary, RealIronic};
use rivet_tests::or_panic;
use rivet_tests::vm::{check_image, BootMedium, DiskBus, Firmware, VmBuilder};
use serde_json::json;

const MIB: u64 = 1024 * 1024;
const VIRTIO_SIZE: u64 = 64 * MIB;
const NVME_SIZE: u64 = 256 * MIB;
const VIRTIO_FILL: u8 = 0x5A;
const NVME_FILL: u8 = 0xA5;

#[test]
fn manual_clean_with_erase_devices_express_zeroes_the_nvme_disk() {
    let lab = or_panic(Lab::create());
    let steps = json!([{"interface": "deploy", "step": "erase_devices_express", "args": {}}]);
    let result = lab.net.block_on(async {
        let ironic = RealIronic::start_in(&lab.net).await?;
        let uuid = enroll_for_clean_steps(&ironic, "rivet-e2e-erase", &[VM_MAC], steps).await?;
        let mut vm = VmBuilder::new("erase")
            .firmware(Firmware::Uefi)
            .boot(BootMedium::UsbCd(lab.image.iso()))
            .disk_filled(DiskBus::VirtioBlk, VIRTIO_SIZE, VIRTIO_FILL)
            .disk_filled(DiskBus::Nvme, NVME_SIZE, NVME_FILL)
            .nic("tap0", VM_MAC)
            .start(&lab.net)?;
        let started = vm.started();
        let outcome = watch_clean(&ironic, &uuid, started, || vm.ensure_running())
            .await
            .with_context(|| vm.failure_report())?;
        ensure!(
            outcome.done["last_error"].is_null(),
            "cleaning ended with an error: {}",
            node_summary(&outcome.done)
        );
        let log = ironic.log_text()?;
        ensure!(
            log.contains(&format!(
                "Agent on node {uuid} returned clean command success"
            )),
            "the conductor never saw erase_devices_express succeed"
        );
        let console = vm.console_text();
        ensure!(
            console.contains("erase /dev/nvme0n1: erased by nvme-format-user-data-erase"),
            "the agent's console does not show the NVMe format:\n{}",
            vm.failure_report()
        );
        // QEMU ends before the images are read: nothing is left in flight.
        let nvme = vm.disk_image(1)?;
        let virtio = vm.disk_image(0)?;
        vm.stop();
        check_image(&nvme, "the NVMe disk after the format", |_, b| b == 0)?;
        check_image(
            &virtio,
            "the virtio disk after the metadata erase",
            |offset, b| {
                let middle = (4 * MIB..VIRTIO_SIZE - 4 * MIB).contains(&offset);
                b == if middle { VIRTIO_FILL } else { 0 }
            },
        )?;
        eprintln!(
            "first accepted heartbeat {:.1?} after QEMU started; clean done",
            outcome.first_heartbeat
        );
        Ok::<(), anyhow::Error>(())
    });
    or_panic(or_panic(result));
}
