//! Deploys by the real Ironic 39 (`direct` deploy interface) through rivet-agent in a VM.
//! See docs/e2e-tests.md.
//!
//! The images are built by the test and served over HTTP inside the namespace with their
//! SHA-256; the nodes have fake power and noop management, so the test starts the VMs
//! itself: the rivet ISO (UEFI: USB virtual media; BIOS: a CD) with one empty 5 GiB disk
//! (virtio-blk or NVMe), which the conductor deploys to `active`. Then a second VM boots a
//! copy of the deployed disk and its console must show the test's marker on the kernel's
//! command line. Across the tests both image types go to both disk buses:
//!
//! - a whole-disk image (a GPT with an ESP holding GRUB and the test kernel, see
//!   `rivet_tests::deploy`), UEFI, to virtio-blk and to NVMe;
//! - a partition image with its own GRUB tools and kernel (`rivet_tests::partition_image`),
//!   BIOS to NVMe and UEFI to virtio-blk: the disk must have IPA's layout (msdos; GPT with
//!   an ESP and, asked in UEFI mode, a 1 GiB ext4 ephemeral partition that `e2fsck` finds
//!   clean), the conductor the root file system's UUID, and the agent's
//!   `install_bootloader` must have run the image's `grub-install` and `grub-mkconfig`,
//!   whose `grub.cfg` (with the marker from the image's `/etc/default/grub`) boots the
//!   kernel.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use rivet_tests::deploy::{
    bootable_uefi_disk, enroll_for_deploy, serve_deploy_ramdisk, sfdisk_json, sha256_file,
    FileServer,
};
use rivet_tests::e2e::{Lab, BOOT_TIMEOUT, VM_MAC};
use rivet_tests::ironic::{node_summary, RealIronic};
use rivet_tests::or_panic;
use rivet_tests::partition_image::bootable_partition_image;
use rivet_tests::vm::{BootMedium, DiskBus, Firmware, Vm, VmBuilder};
use serde_json::{json, Value};

/// From the deploy VM's start to `active`: boot, lookup, deploy steps, power off.
const DEPLOY_TIMEOUT: Duration = Duration::from_secs(900);
/// IPA's smallest root device is 4 GiB; the file is sparse.
const DISK_BYTES: u64 = 5 << 30;
const HTTP_PORT: u16 = 8080;
const MIB: u64 = 1 << 20;

/// The deployed machine: its firmware (and so the node's boot mode) and its disk's bus.
#[derive(Debug, Clone, Copy)]
struct Machine {
    firmware: Firmware,
    bus: DiskBus,
}

impl Machine {
    fn boot_mode(self) -> &'static str {
        match self.firmware {
            Firmware::Uefi => "uefi",
            Firmware::Bios => "bios",
        }
    }

    /// The rivet ISO as a BMC would attach it (UEFI), or as a plain CD (SeaBIOS, which
    /// boots no USB CD).
    fn iso(self, iso: &Path) -> BootMedium {
        match self.firmware {
            Firmware::Uefi => BootMedium::UsbCd(iso.to_path_buf()),
            Firmware::Bios => BootMedium::Cd(iso.to_path_buf()),
        }
    }
}

/// Enrolls a node with `instance_info`, deploys it while a VM boots the rivet ISO with an
/// empty disk, and waits for `active` without error. Returns the VM (powered off by the
/// agent, or about to be) and the node.
async fn deploy(
    lab: &Lab,
    ironic: &RealIronic,
    server: &FileServer,
    name: &str,
    machine: Machine,
    instance_info: Value,
) -> Result<(Vm, Value)> {
    let driver_info = json!({
        "deploy_kernel": server.url("deploy.kernel"),
        "deploy_ramdisk": server.url("deploy.initramfs"),
    });
    let properties = json!({
        "capabilities": format!("boot_mode:{}", machine.boot_mode()),
        "cpu_arch": "x86_64",
    });
    let uuid =
        enroll_for_deploy(ironic, name, VM_MAC, driver_info, instance_info, properties).await?;
    let mut vm = VmBuilder::new(name)
        .firmware(machine.firmware)
        .boot(machine.iso(&lab.image.iso()))
        .disk(machine.bus, DISK_BYTES)
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

/// Boots a copy of `disk` (deployed to `machine`) in a second VM of the same firmware and
/// bus; its console must show `marker` on the kernel's command line.
fn boot_deployed(lab: &Lab, machine: Machine, disk: &Path, marker: &str) -> Result<String> {
    let mut booted = VmBuilder::new("deployed")
        .firmware(machine.firmware)
        .boot(BootMedium::FirstDisk)
        .disk_copy(machine.bus, disk)?
        .start(&lab.net)?;
    let (at, line) = booted
        .wait_for_console(marker, BOOT_TIMEOUT)
        .with_context(|| booted.failure_report())?;
    ensure!(
        line.contains("Command line:"),
        "the marker appeared outside the kernel's command line: {line}"
    );
    eprintln!("the deployed disk booted its kernel after {at:.1?}: {line}");
    booted.stop();
    Ok(line)
}

/// The whole-disk image deployed in UEFI mode to a disk on `bus`, then booted.
fn whole_disk_deploy_boots(name: &str, bus: DiskBus) {
    let machine = Machine {
        firmware: Firmware::Uefi,
        bus,
    };
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
        let (vm, _) = deploy(&lab, &ironic, &server, name, machine, instance_info).await?;
        boot_deployed(&lab, machine, &vm.disk_image(0)?, &marker)?;
        Ok::<(), anyhow::Error>(())
    });
    or_panic(or_panic(result));
}

#[test]
fn direct_deploy_of_a_whole_disk_image_to_virtio_boots_from_the_deployed_disk() {
    whole_disk_deploy_boots("deploy-whole-virtio", DiskBus::VirtioBlk);
}

#[test]
fn direct_deploy_of_a_whole_disk_image_to_nvme_boots_from_the_deployed_disk() {
    whole_disk_deploy_boots("deploy-whole-nvme", DiskBus::Nvme);
}

/// One partition as `sfdisk --json` shows it, in MiB.
#[derive(Debug, PartialEq, Eq)]
struct Partition {
    start: u64,
    size: u64,
    /// sfdisk's type: a GPT type GUID (lower case) or an MBR type byte in hex.
    kind: String,
    bootable: bool,
}

/// A partition table: sfdisk's label (`gpt`, `dos`) and partitions.
type Table = (String, Vec<Partition>);

/// `sfdisk --json`'s partition table of `disk`.
fn layout_of(disk: &Path) -> Result<Table> {
    let table = sfdisk_json(disk)?;
    let label = table["label"].as_str().unwrap_or_default().to_string();
    let partitions = table["partitions"]
        .as_array()
        .with_context(|| format!("no partitions: {table}"))?
        .iter()
        .map(|p| Partition {
            start: p["start"].as_u64().unwrap_or_default() * 512 / MIB,
            size: p["size"].as_u64().unwrap_or_default() * 512 / MIB,
            kind: p["type"].as_str().unwrap_or_default().to_ascii_lowercase(),
            bootable: p["bootable"].as_bool().unwrap_or_default(),
        })
        .collect();
    Ok((label, partitions))
}

/// The value of `tag` (`UUID`, `TYPE`, `LABEL`) of the file system at `offset_mib` of
/// `disk` (`blkid -p`; empty when there is none).
fn fs_tag_at(disk: &Path, offset_mib: u64, tag: &str) -> Result<String> {
    let output = std::process::Command::new("blkid")
        .args(["-p", "-O", &(offset_mib * MIB).to_string()])
        .args(["-o", "value", "-s", tag])
        .arg(disk)
        .output()
        .context("running blkid")?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Where the UEFI case's ephemeral partition starts and how big it is (MiB).
const EPHEMERAL_MIB: (u64, u64) = (551, 1024);

/// Checks that the ephemeral partition of `disk` holds a clean ext4 labelled `ephemeral0`
/// (the ramdisk's bundled mke2fs made it): blkid, then `e2fsck -fn` on a copy.
fn check_ephemeral(disk: &Path, work: &Path) -> Result<()> {
    let (start, size) = EPHEMERAL_MIB;
    let kind = fs_tag_at(disk, start, "TYPE")?;
    let label = fs_tag_at(disk, start, "LABEL")?;
    ensure!(
        (kind.as_str(), label.as_str()) == ("ext4", "ephemeral0"),
        "the ephemeral partition holds {kind:?} labelled {label:?}, not ext4 ephemeral0"
    );
    let copy = work.join("ephemeral.img");
    let status = std::process::Command::new("dd")
        .arg(format!("if={}", disk.display()))
        .arg(format!("of={}", copy.display()))
        .args(["bs=1M", &format!("skip={start}"), &format!("count={size}")])
        .arg("status=none")
        .status()
        .context("running dd")?;
    ensure!(status.success(), "dd of the ephemeral partition: {status}");
    let fsck = std::process::Command::new("e2fsck")
        .args(["-fn"])
        .arg(&copy)
        .output()
        .context("running e2fsck (e2fsprogs)")?;
    ensure!(
        fsck.status.success(),
        "e2fsck -fn of the ephemeral file system: {}\n{}{}",
        fsck.status,
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    Ok(())
}

/// IPA's layout for a partition image with `root_gb` 1 and `swap_mb` 64 (and in UEFI mode
/// `ephemeral_gb` 1), and where its root starts (MiB).
fn ipa_layout(firmware: Firmware) -> (Table, u64) {
    let part = |start, size, kind: &str, bootable| Partition {
        start,
        size,
        kind: kind.to_string(),
        bootable,
    };
    match firmware {
        // msdos, swap then root (active) from 1 MiB; no BIOS boot partition: GRUB's core
        // image goes into the gap before the first partition.
        Firmware::Bios => (
            (
                "dos".into(),
                vec![part(1, 64, "82", false), part(65, 1024, "83", true)],
            ),
            65,
        ),
        // GPT: ESP 550 MiB, ephemeral, swap, root last.
        Firmware::Uefi => (
            (
                "gpt".into(),
                vec![
                    part(1, 550, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", false),
                    part(
                        EPHEMERAL_MIB.0,
                        EPHEMERAL_MIB.1,
                        "0fc63daf-8483-4772-8e79-3d69d8477de4",
                        false,
                    ),
                    part(1575, 64, "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f", false),
                    part(1639, 1024, "0fc63daf-8483-4772-8e79-3d69d8477de4", false),
                ],
            ),
            1639,
        ),
    }
}

/// A partition image with GRUB's tools for `machine`'s firmware, deployed there: the
/// conductor gets the root file system's UUID, the disk IPA's layout, the agent installs
/// the image's GRUB (in BIOS mode the conductor allows it:
/// `[agent]enable_bios_bootloader_install`), and the firmware of a second VM boots the
/// deployed disk's GRUB, the `grub.cfg` the image's `grub-mkconfig` wrote and the kernel
/// with the marker from the image's `/etc/default/grub`. The UEFI case also asks for a
/// 1 GiB ext4 ephemeral partition (the ramdisk's bundled mke2fs makes it).
fn partition_deploy_boots(name: &str, machine: Machine) {
    let lab = or_panic(Lab::create());
    let work = or_panic(tempfile::tempdir().context("temp dir"));
    let images = work.path().join("images");
    or_panic(std::fs::create_dir(&images).context("images dir"));
    let marker = format!("rivet-partition-marker={}", std::process::id());
    let version = or_panic(lab.image.kernel_version());
    let platform = match machine.firmware {
        Firmware::Bios => "i386-pc",
        Firmware::Uefi => "x86_64-efi",
    };
    let image = or_panic(bootable_partition_image(
        &images,
        "root.img",
        192,
        &lab.image.kernel(),
        &version,
        &marker,
        &[platform],
    ));
    let digest = or_panic(sha256_file(&image.path));
    or_panic(serve_deploy_ramdisk(&lab.image, &images));

    let result = lab.net.block_on(async {
        let server = FileServer::start(&lab.net, &images, lab.net.bridge_address(), HTTP_PORT)?;
        let options: &[(&str, &str, &str)] = match machine.firmware {
            Firmware::Bios => &[("agent", "enable_bios_bootloader_install", "true")],
            Firmware::Uefi => &[],
        };
        let ironic = RealIronic::start_in_with(&lab.net, options).await?;
        let mut instance_info = json!({
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
        if machine.firmware == Firmware::Uefi {
            instance_info["ephemeral_gb"] = json!(1);
            instance_info["ephemeral_format"] = json!("ext4");
        }
        let (vm, node) = deploy(&lab, &ironic, &server, name, machine, instance_info).await?;
        let root_uuid = &node["driver_internal_info"]["root_uuid_or_disk_id"];
        ensure!(
            root_uuid == &json!(image.uuid),
            "the conductor's root_uuid_or_disk_id is {root_uuid}, the image's file system is \
             {}",
            image.uuid
        );
        let console = vm.console_text();
        let chroot: Vec<&str> = console
            .lines()
            .filter(|l| l.contains("in the image's chroot"))
            .collect();
        eprintln!("{}", chroot.join("\n"));
        // The image has every program GRUB's tools and scripts run.
        ensure!(
            !chroot.iter().any(|l| l.contains("not found")),
            "a program is missing from the partition image:\n{}",
            chroot.join("\n")
        );
        // In UEFI the agent then adds NVRAM entries for what GRUB put on the ESP (the boot
        // below uses fresh variables, hence the removable path).
        let entries: Vec<&str> = console
            .lines()
            .filter(|l| l.contains("UEFI boot entry written"))
            .collect();
        eprintln!("{}", entries.join("\n"));
        ensure!(
            (machine.firmware == Firmware::Uefi) != entries.is_empty(),
            "UEFI boot entries written in {} mode: {entries:?}",
            machine.boot_mode()
        );
        ensure!(
            console.contains("GRUB installed"),
            "the console does not show the image's GRUB installed:\n{}",
            vm.failure_report()
        );
        let disk = vm.disk_image(0)?;
        let table = layout_of(&disk)?;
        let (expected, root_mib) = ipa_layout(machine.firmware);
        ensure!(
            table == expected,
            "partition table {table:?}, expected {expected:?}"
        );
        // The agent mounted it read-write (superblock, journal changed): its UUID says it is
        // the image's file system.
        let found = fs_tag_at(&disk, root_mib, "UUID")?;
        ensure!(
            found == image.uuid,
            "the root partition holds file system {found:?}, not the image's {}",
            image.uuid
        );
        if machine.firmware == Firmware::Uefi {
            check_ephemeral(&disk, work.path())?;
        }
        // grub-mkconfig's 10_linux names the kernel it found: the generated grub.cfg ran.
        let line = boot_deployed(&lab, machine, &disk, &marker)?;
        ensure!(
            line.contains(&format!("BOOT_IMAGE=/boot/vmlinuz-{version}")),
            "the kernel was not booted by a grub.cfg from grub-mkconfig: {line}"
        );
        Ok::<(), anyhow::Error>(())
    });
    or_panic(or_panic(result));
}

#[test]
fn direct_deploy_of_a_bios_partition_image_to_nvme_installs_its_grub_and_boots() {
    let machine = Machine {
        firmware: Firmware::Bios,
        bus: DiskBus::Nvme,
    };
    partition_deploy_boots("deploy-partition-bios", machine);
}

#[test]
fn direct_deploy_of_a_uefi_partition_image_to_virtio_installs_its_grub_and_boots() {
    let machine = Machine {
        firmware: Firmware::Uefi,
        bus: DiskBus::VirtioBlk,
    };
    partition_deploy_boots("deploy-partition-uefi", machine);
}
