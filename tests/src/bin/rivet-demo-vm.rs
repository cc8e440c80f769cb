//! The README's main job, part 2: the rivet ISO boots in a QEMU VM (UEFI, USB virtual media,
//! TCG) inside a test network namespace with dnsmasq, a real lldpd as the switch on the VM's
//! tap, and the real Ironic 39 on the bridge (`[deploy] fast_track`, so one boot of the agent
//! serves every stage, as Metal3 runs it). Ironic then drives the one agent through:
//!
//! 1. inspection (`agent` inspect interface): inventory, LLDP neighbour, ports;
//! 2. a manual clean with `erase_devices_express`: the NVMe disk, filled with a pattern by the
//!    host, is formatted and must read back as zeroes afterwards;
//! 3. a deploy (`direct` deploy interface) of a small UEFI-bootable whole-disk image served
//!    over HTTP in the namespace, with its SHA-256, to `active`; then a second VM boots the
//!    deployed disk and must show the image's marker;
//!
//! printing each stage, the agent's progress lines from the VM console as they appear, and
//! the times. The node is `manual-management` (pxe boot, noop management, fake power: nothing
//! happens out of band; see tests/src/deploy.rs).

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rivet_tests::deploy::{bootable_uefi_disk, serve_deploy_ramdisk, sha256_file, FileServer};
use rivet_tests::e2e::{Lab, BOOT_TIMEOUT, TRANSITION_TIMEOUT, VM_MAC};
use rivet_tests::ironic::{node_summary, RealIronic};
use rivet_tests::lldp_switch::{Switch, SWITCH};
use rivet_tests::vm::{check_image, BootMedium, DiskBus, Firmware, Vm, VmBuilder};
use serde_json::{json, Value};

/// Inspection with LLDP, and the settings every stage needs.
const KERNEL_ARGS: &str = "ipa-inspection-callback-url={api}/v1/continue_inspection \
    ipa-inspection-collectors=default,logs,lldp ipa-collect-lldp=1";
/// Bound of each stage that needs the agent, under TCG on a loaded machine.
const STAGE_TIMEOUT: Duration = Duration::from_secs(600);
/// The virtio disk: the deploy target (sparse; IPA's smallest root device is 4 GiB).
const VIRTIO_BYTES: u64 = 5 << 30;
/// Where the namespace's HTTP server serves the image and the deploy ramdisk.
const HTTP_PORT: u16 = 8080;
/// The NVMe disk the host fills before the boot and checks after the erase.
const NVME_BYTES: u64 = 256 << 20;
const FILL: u8 = 0xa5;

fn main() {
    if let Err(err) = demo() {
        eprintln!("rivet-demo-vm: FAILED: {err:#}");
        std::process::exit(1);
    }
}

/// Prints with the time since the start.
struct Say(Instant);

impl Say {
    fn line(&self, text: impl AsRef<str>) {
        println!(
            "[{:6.1}s] {}",
            self.0.elapsed().as_secs_f64(),
            text.as_ref()
        );
    }
}

/// Echoes the VM console's agent progress lines that were not printed yet.
struct ConsoleEcho {
    printed: usize,
}

impl ConsoleEcho {
    fn echo(&mut self, say: &Say, vm: &Vm) {
        let text = vm.console_text();
        // Only whole lines: the last one may still be being written.
        let whole = text.rfind('\n').map_or("", |end| &text[..=end]);
        let lines: Vec<&str> = whole.lines().collect();
        for line in lines.iter().skip(self.printed) {
            if line.contains("progress:") {
                say.line(format!("  vm | {}", line.trim()));
            }
        }
        self.printed = lines.len();
    }
}

fn demo() -> Result<()> {
    let say = Say(Instant::now());
    say.line("building the ramdisk ISO (Debian kernel, static rivet-agent) ...");
    let lab = Lab::create_with_args(KERNEL_ARGS)?;
    let kernel = lab.image.size_of(&lab.image.kernel())?;
    let initramfs = lab.image.size_of(&lab.image.initramfs())?;
    say.line(format!(
        "ISO {} ready: kernel + initramfs {:.1} MB (IPA's: 451 MB)",
        lab.image.iso().display(),
        (kernel + initramfs) as f64 / 1e6
    ));
    let work = tempfile::Builder::new()
        .prefix("rivet-demo-")
        .tempdir()
        .context("creating a work directory")?;
    let images = work.path().join("images");
    std::fs::create_dir(&images).context("creating the image directory")?;
    let marker = format!("rivet-demo-deployed={}", std::process::id());
    let disk = bootable_uefi_disk(&images, &lab.image.kernel(), &marker)?;
    let image = Image {
        sha256: sha256_file(&disk)?,
        bytes: std::fs::metadata(&disk).context("image size")?.len(),
        marker,
    };
    serve_deploy_ramdisk(&lab.image, &images)?;
    say.line(format!(
        "whole-disk image {} ({} MiB: GPT, ESP with GRUB and a kernel) ready to serve",
        disk.display(),
        image.bytes >> 20
    ));
    lab.net
        .block_on(stages(&say, &lab, &images, &image))
        .context("entering the test namespace")?
}

/// The image the demo deploys.
struct Image {
    sha256: String,
    bytes: u64,
    /// What its kernel's command line carries.
    marker: String,
}

async fn stages(say: &Say, lab: &Lab, images: &std::path::Path, image: &Image) -> Result<()> {
    let server = FileServer::start(&lab.net, images, lab.net.bridge_address(), HTTP_PORT)?;
    let switch = Switch::start(&lab.net, SWITCH)?;
    let ironic = RealIronic::start_in_with(&lab.net, &[("deploy", "fast_track", "true")]).await?;
    say.line(format!(
        "real Ironic 39 at {} (fast track), lldpd `{SWITCH}` on the VM's switch port",
        ironic.url()
    ));
    let body = json!({
        "name": "rivet-demo-vm",
        "driver": "manual-management",
        "boot_interface": "pxe",
        "deploy_interface": "direct",
        "inspect_interface": "agent",
        "management_interface": "noop",
        "power_interface": "fake",
        "network_interface": "noop",
        "driver_info": {
            "deploy_kernel": server.url("deploy.kernel"),
            "deploy_ramdisk": server.url("deploy.initramfs"),
        },
        "properties": {"capabilities": "boot_mode:uefi"},
    });
    let node = ironic
        .call(reqwest::Method::POST, "/v1/nodes", Some(&body))
        .await
        .context("creating the node")?;
    let uuid = node["uuid"]
        .as_str()
        .context("node without uuid")?
        .to_owned();
    ironic.create_port(&uuid, VM_MAC).await?;
    ironic.manage(&uuid).await?;
    ironic
        .wait_for_provision_state(&uuid, "manageable", TRANSITION_TIMEOUT)
        .await?;
    ironic.inspect(&uuid).await?;
    ironic
        .wait_for_provision_state(&uuid, "inspect wait", TRANSITION_TIMEOUT)
        .await?;
    say.line(format!("node {uuid} enrolled; inspection started"));

    let mut vm = VmBuilder::new("demo")
        .firmware(Firmware::Uefi)
        .boot(BootMedium::UsbCd(lab.image.iso()))
        .disk(DiskBus::VirtioBlk, VIRTIO_BYTES)
        .disk_filled(DiskBus::Nvme, NVME_BYTES, FILL)
        .nic("tap0", VM_MAC)
        .start(&lab.net)?;
    say.line("VM started: UEFI, the ISO as USB virtual media, a 5 GiB virtio and an NVMe disk");
    let result = drive(say, &ironic, &uuid, &mut vm, &server, image).await;
    let result = result.map_err(|e| {
        e.context(format!(
            "{}\nlldpd:\n{}\nIronic's log: {}",
            vm.failure_report(),
            switch.log(),
            ironic.log_path().display()
        ))
    });
    result?;
    vm.stop();
    let nvme = vm.disk_image(1)?;
    check_image(&nvme, "the NVMe disk after the erase", |_, b| b == 0)?;
    say.line(format!(
        "host check: the NVMe disk image {} ({} MiB, filled with {FILL:#04x} before the boot) \
         reads back as zeroes",
        nvme.display(),
        NVME_BYTES >> 20
    ));
    let deployed = vm.disk_image(0)?;
    let mut booted = VmBuilder::new("demo-deployed")
        .firmware(Firmware::Uefi)
        .boot(BootMedium::FirstDisk)
        .disk_copy(DiskBus::VirtioBlk, &deployed)?
        .start(&lab.net)?;
    let (at, _) = booted
        .wait_for_console(&image.marker, BOOT_TIMEOUT)
        .with_context(|| booted.failure_report())?;
    booted.stop();
    say.line(format!(
        "a second VM booted the deployed disk: its firmware found GRUB on the deployed ESP and \
         the kernel printed {} after {:.1} s",
        image.marker,
        at.as_secs_f64()
    ));
    say.line("done");
    Ok(())
}

async fn drive(
    say: &Say,
    ironic: &RealIronic,
    uuid: &str,
    vm: &mut Vm,
    server: &FileServer,
    image: &Image,
) -> Result<()> {
    let mut echo = ConsoleEcho { printed: 0 };
    let started = vm.started();
    let inspected = ironic
        .watch_until(uuid, STAGE_TIMEOUT, "manageable", "inspect failed", |_| {
            vm.ensure_running()?;
            echo.echo(say, vm);
            Ok(())
        })
        .await?;
    ensure!(
        inspected["last_error"].is_null(),
        "inspection: {}",
        node_summary(&inspected)
    );
    let inventory = ironic.inventory(uuid).await?;
    say.line(format!(
        "1/3 inspected {:.1} s after QEMU started:",
        started.elapsed().as_secs_f64()
    ));
    for line in inventory_summary(&inventory["inventory"]) {
        say.line(format!("    {line}"));
    }
    let ports = ironic
        .call(
            reqwest::Method::GET,
            &format!("/v1/nodes/{uuid}/ports?detail=True"),
            None,
        )
        .await?;
    if let Some(link) = ports["ports"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["address"] == VM_MAC))
        .map(|p| &p["local_link_connection"])
    {
        say.line(format!(
            "    port {VM_MAC}: local_link_connection from LLDP = {link}"
        ));
    }

    let steps = json!([{"interface": "deploy", "step": "erase_devices_express", "args": {}}]);
    ironic.clean(uuid, steps).await?;
    say.line("2/3 manual clean with erase_devices_express started");
    let clean_started = Instant::now();
    let cleaned = ironic
        .watch_until(uuid, STAGE_TIMEOUT, "manageable", "clean failed", |_| {
            vm.ensure_running()?;
            echo.echo(say, vm);
            Ok(())
        })
        .await?;
    ensure!(
        cleaned["last_error"].is_null(),
        "cleaning: {}",
        node_summary(&cleaned)
    );
    echo.echo(say, vm);
    say.line(format!(
        "2/3 erased in {:.1} s; the node is manageable again",
        clean_started.elapsed().as_secs_f64()
    ));

    ironic
        .set_provision_state(uuid, &json!({"target": "provide"}))
        .await?;
    ironic
        .wait_for_provision_state(uuid, "available", TRANSITION_TIMEOUT)
        .await?;
    let patch: Vec<Value> = [
        ("image_source", json!(server.url("disk.img"))),
        ("image_os_hash_algo", json!("sha256")),
        ("image_os_hash_value", json!(image.sha256)),
        ("image_disk_format", json!("raw")),
    ]
    .into_iter()
    .map(|(key, value)| json!({"op": "add", "path": format!("/instance_info/{key}"), "value": value}))
    .collect();
    ironic
        .call(
            reqwest::Method::PATCH,
            &format!("/v1/nodes/{uuid}"),
            Some(&Value::Array(patch)),
        )
        .await
        .context("setting instance_info")?;
    ironic
        .set_provision_state(uuid, &json!({"target": "active"}))
        .await?;
    say.line(format!(
        "3/3 deploy started: {} ({} MiB, sha256 {}) to the VM's root disk",
        server.url("disk.img"),
        image.bytes >> 20,
        &image.sha256[..12]
    ));
    let deploy_started = Instant::now();
    let deployed = ironic
        .watch_until(uuid, STAGE_TIMEOUT, "active", "deploy failed", |node| {
            echo.echo(say, vm);
            // The agent powers the VM off at the end of `deploying`, as Ironic asks: it must
            // run only while the conductor waits for it.
            if node["provision_state"] == "wait call-back" {
                vm.ensure_running()?;
            }
            Ok(())
        })
        .await?;
    ensure!(
        deployed["last_error"].is_null(),
        "deploy: {}",
        node_summary(&deployed)
    );
    echo.echo(say, vm);
    say.line(format!(
        "3/3 deployed in {:.1} s: the node is active; waiting for the agent's power-off",
        deploy_started.elapsed().as_secs_f64()
    ));
    for _ in 0..600 {
        if vm.ensure_running().is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// A few readable lines from the inventory Ironic stored.
fn inventory_summary(inventory: &Value) -> Vec<String> {
    let mut lines = vec![
        format!(
            "system: {} {} ({} boot)",
            inventory["system_vendor"]["manufacturer"]
                .as_str()
                .unwrap_or("?"),
            inventory["system_vendor"]["product_name"]
                .as_str()
                .unwrap_or("?"),
            inventory["boot"]["current_boot_mode"]
                .as_str()
                .unwrap_or("?")
        ),
        format!(
            "cpu: {} x {} ({})",
            inventory["cpu"]["count"],
            inventory["cpu"]["model_name"].as_str().unwrap_or("?"),
            inventory["cpu"]["architecture"].as_str().unwrap_or("?")
        ),
        format!("memory: {} MiB", inventory["memory"]["physical_mb"]),
    ];
    for disk in inventory["disks"].as_array().into_iter().flatten() {
        lines.push(format!(
            "disk {}: {} bytes, model {:?}, serial {:?}",
            disk["name"].as_str().unwrap_or("?"),
            disk["size"],
            disk["model"].as_str().unwrap_or(""),
            disk["serial"].as_str().unwrap_or("")
        ));
    }
    for nic in inventory["interfaces"].as_array().into_iter().flatten() {
        lines.push(format!(
            "nic {} {} ({}), {} LLDP TLVs heard",
            nic["name"].as_str().unwrap_or("?"),
            nic["mac_address"].as_str().unwrap_or("?"),
            nic["driver"].as_str().unwrap_or("?"),
            nic["lldp"].as_array().map_or(0, Vec::len)
        ));
    }
    lines
}
