//! Plan mode with rivet-server in a VM (issue 8, docs/e2e-tests.md): rivet-server runs in
//! the test's network namespace with the e2e boot ISO as its `--iso-base`; the test adds a
//! node with the VM's MAC and a plan (inspect, erase_devices_express, write_image of a
//! whole-disk image served over HTTP with its SHA-256, poweroff) through the real CLI, asks
//! the CLI for the node's signed ISO URL (the one a BMC gets) and boots a UEFI VM straight
//! from that URL (QEMU's curl block driver reading the per-node ISO with range requests, as
//! USB virtual media). The agent takes a DHCP lease, looks itself up at the server, gets the
//! plan, runs it, reports progress, erase proofs and its inventory, and powers the VM off.
//!
//! The test then checks the disks on the host (the NVMe erased, the virtio disk holding the
//! image) and what the real CLI shows: `node show` with every step done, the inventory's
//! disks and MAC, the erase proofs, the write's last progress line and the last-seen age;
//! `node list` with the node done.
//!
//! One VM boot. Needs what tests/tests/e2e_deploy.rs needs (root, QEMU with
//! qemu-block-extra, OVMF, dnsmasq, the static agent, rivet-image-builder) and
//! `cargo build -p rivet-server`, but no Ironic.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rivet_tests::bootdisk::marker_disk;
use rivet_tests::deploy::FileServer;
use rivet_tests::e2e::{Lab, BOOT_TIMEOUT, INIT_BANNER, VM_MAC};
use rivet_tests::ironic::NAMESPACE_API_PORT;
use rivet_tests::or_panic;
use rivet_tests::server::Server;
use rivet_tests::vm::{check_image, BootMedium, DiskBus, Firmware, Vm, VmBuilder};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const MIB: u64 = 1 << 20;
/// Large enough that the write runs for several of the agent's 3-second progress looks
/// under TCG; a pattern (not zeroes) past the boot sector, so every byte is written.
const IMAGE_SIZE: usize = 192 << 20;
const TARGET_SIZE: u64 = 256 * MIB;
const NVME_SIZE: u64 = 64 * MIB;
const TARGET_FILL: u8 = 0x5A;
const NVME_FILL: u8 = 0xA5;
const HTTP_PORT: u16 = 8080;
const NODE: &str = "vm-1";
/// From QEMU's start to the node's `done`: boot from HTTP, DHCP, lookup, the plan.
const PLAN_TIMEOUT: Duration = Duration::from_secs(900);

fn image() -> Vec<u8> {
    let mut image = marker_disk(IMAGE_SIZE);
    for (i, byte) in image.iter_mut().enumerate().skip(MIB as usize) {
        *byte = (i % 251) as u8 | 1;
    }
    image
}

fn plan(url: &str, sha256: &str) -> Value {
    json!({
        "version": 1,
        "name": "server-e2e",
        "machines": [{"name": NODE, "match": {"mac": VM_MAC},
                      "properties": {"root_device": {"serial": "rivet-vd0"}}}],
        "steps": [
            {"step": "inspect"},
            {"step": "erase_devices_express"},
            {"step": "write_image", "args": {"image_info": {
                "id": "pattern",
                "urls": [url],
                "os_hash_algo": "sha256",
                "os_hash_value": sha256,
                "disk_format": "raw",
                "image_type": "whole-disk"
            }}},
            {"step": "poweroff"}
        ],
        "on_failure": "poweroff",
        "rerun": "always"
    })
}

#[test]
fn a_vm_booted_from_its_node_iso_url_runs_its_plan_and_the_cli_shows_it() {
    let lab = or_panic(Lab::create());
    let work = or_panic(tempfile::tempdir().context("temp dir"));
    let images = work.path().join("images");
    or_panic(std::fs::create_dir(&images).context("images dir"));
    let image = image();
    or_panic(std::fs::write(images.join("pattern.raw"), &image).context("writing the image"));
    let sha256 = hex::encode(Sha256::digest(&image));
    let result = lab
        .net
        .block_on(async { scenario(&lab, work.path(), &images, &image, &sha256).await });
    or_panic(or_panic(result));
}

async fn scenario(lab: &Lab, work: &Path, images: &Path, image: &[u8], sha256: &str) -> Result<()> {
    let address = lab.net.bridge_address();
    let files = FileServer::start(&lab.net, images, address, HTTP_PORT)?;
    let public = format!("http://{address}:{NAMESPACE_API_PORT}");
    let extra: Vec<OsString> = vec![
        "--iso-base".into(),
        lab.image.iso().into(),
        "--public-url".into(),
        public.clone().into(),
    ];
    let server = Server::start_in(&lab.net, address, NAMESPACE_API_PORT, &extra).await?;
    let outcome = run(lab, &server, &files, work, image, sha256).await;
    outcome.with_context(|| format!("rivet-server's log:\n{}", server.log()))
}

async fn run(
    lab: &Lab,
    server: &Server,
    files: &FileServer,
    work: &Path,
    image: &[u8],
    sha256: &str,
) -> Result<()> {
    let plan_file = work.join("plan.json");
    std::fs::write(
        &plan_file,
        plan(&files.url("pattern.raw"), sha256).to_string(),
    )?;
    let plan_arg = plan_file.to_str().context("the plan's path is not UTF-8")?;
    let added = server.cli(&[
        "node", "add", "--name", NODE, "--mac", VM_MAC, "--plan", plan_arg,
    ])?;
    ensure!(added.starts_with("added node "), "node add said: {added}");
    let url = server.cli(&["node", "iso-url", NODE, "--ttl", "3600"])?;
    let url = url.trim().to_string();
    ensure!(
        url.starts_with(&format!("{}/v1/isos/", server.url)) && url.contains("signature="),
        "iso-url gave {url:?}"
    );

    let mut vm = VmBuilder::new("server-plan")
        .firmware(Firmware::Uefi)
        .boot(BootMedium::UrlCd(url))
        .disk_filled(DiskBus::VirtioBlk, TARGET_SIZE, TARGET_FILL)
        .disk_filled(DiskBus::Nvme, NVME_SIZE, NVME_FILL)
        .nic("tap0", VM_MAC)
        .start(&lab.net)?;
    vm.wait_for_console(INIT_BANNER, BOOT_TIMEOUT)
        .with_context(|| vm.failure_report())?;
    let (node, saw_running_progress) = wait_for_plan(server, &mut vm).await?;
    ensure!(
        node["state"] == "done",
        "the plan ended {}: {}\n{}",
        node["state"],
        node["last_error"],
        vm.failure_report()
    );
    vm.wait_for_exit(Duration::from_secs(120))
        .with_context(|| format!("the plan's poweroff\n{}", vm.failure_report()))?;
    check_disks(&vm, image)?;
    let console = vm.console_text();
    ensure!(
        console.contains("plan mode: running the plan from lookup"),
        "the agent did not switch to plan mode\n{}",
        vm.failure_report()
    );
    check_cli(server, saw_running_progress)
}

/// Polls the node until its plan is over; also says whether a poll saw `write_image`
/// running with progress (the test does not depend on catching it).
async fn wait_for_plan(server: &Server, vm: &mut Vm) -> Result<(Value, bool)> {
    let deadline = Instant::now() + PLAN_TIMEOUT;
    let mut saw_progress = false;
    loop {
        let node = server.get(&format!("/v1/nodes/{NODE}")).await?;
        if node["state"] == "done" || node["state"] == "failed" {
            return Ok((node, saw_progress));
        }
        let steps = server.get(&format!("/v1/nodes/{NODE}/steps")).await?;
        saw_progress |= steps["steps"].as_array().into_iter().flatten().any(|s| {
            s["name"] == "write_image" && s["state"] == "running" && s["progress"].is_number()
        });
        if let Err(e) = vm.ensure_running() {
            // The power-off may just have followed the plan's last report.
            let node = server.get(&format!("/v1/nodes/{NODE}")).await?;
            if node["state"] == "done" || node["state"] == "failed" {
                return Ok((node, saw_progress));
            }
            bail!("{e:#}: node {node}\n{}", vm.failure_report());
        }
        if Instant::now() >= deadline {
            bail!(
                "the plan did not end within {PLAN_TIMEOUT:?}: node {node}\n{}",
                vm.failure_report()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn check_disks(vm: &Vm, image: &[u8]) -> Result<()> {
    check_image(&vm.disk_image(1)?, "the erased NVMe disk", |_, byte| {
        byte == 0
    })?;
    let target = vm.disk_image(0)?;
    let len = image.len() as u64;
    check_image(
        &target,
        "the virtio disk after the image",
        |offset, byte| offset < len || byte == 0 || byte == TARGET_FILL,
    )?;
    let written = std::fs::read(&target)?;
    ensure!(
        written[..image.len()] == *image,
        "the virtio disk does not start with the image"
    );
    Ok(())
}

/// What `node show` and `node list` print about the finished node.
fn check_cli(server: &Server, saw_running_progress: bool) -> Result<()> {
    let shown = server.cli(&["node", "show", NODE])?;
    eprintln!("rivet-server node show {NODE}:\n{shown}");
    let line = |start: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(start))
            .unwrap_or_default()
            .to_string()
    };
    ensure!(line("state").ends_with("done"), "state: {shown}");
    ensure!(line("macs").contains(VM_MAC), "the MAC: {shown}");
    ensure!(
        line("last seen").ends_with(" ago"),
        "no last-seen age: {shown}"
    );
    ensure!(
        line("disks").contains("vda 256 MiB (rivet-vd0)")
            && line("disks").contains("nvme0n1 64 MiB"),
        "the inventory's disks: {shown}"
    );
    ensure!(
        line("interfaces").contains(VM_MAC),
        "the inventory's MAC: {shown}"
    );
    for step in ["inspect", "erase_devices_express", "write_image"] {
        ensure!(
            shown
                .lines()
                .any(|l| l.contains(&format!(" {step} ")) && l.contains(" done ")),
            "step {step} is not done: {shown}"
        );
    }
    // A finished step says how its tasks ended.
    let step_line = |name: &str| {
        shown
            .lines()
            .find(|l| l.contains(&format!(" {name} ")) && l.contains(" done "))
            .unwrap_or_default()
            .to_string()
    };
    let write = step_line("write_image");
    ensure!(
        write.contains(&format!("{} MiB of raw written in", IMAGE_SIZE >> 20)),
        "write_image does not say what it wrote: {shown}"
    );
    ensure!(
        step_line("erase_devices_express")
            .contains("erase /dev/nvme0n1: erased by nvme-format-user-data-erase"),
        "the erase step does not say how the NVMe disk was erased: {shown}"
    );
    ensure!(
        shown.contains("/dev/nvme0n1: erased (nvme-format-user-data-erase)"),
        "no erase proof event for the NVMe disk: {shown}"
    );
    // The write's progress while it ran: its first progress report goes out at the agent's
    // first look at the board (a second into the write, which takes many seconds here).
    let events = server.cli(&["node", "events", NODE])?;
    let progress: Vec<&str> = events
        .lines()
        .filter(|l| l.contains(" progress ") && l.contains("step 2 write_image: running"))
        .collect();
    eprintln!("write_image's progress events:\n{}", progress.join("\n"));
    ensure!(
        progress
            .iter()
            .any(|l| l.contains(&format!(" MiB of {} MiB", IMAGE_SIZE >> 20))),
        "no progress report of the write (bytes of total): {events}"
    );
    eprintln!("a poll saw write_image running with progress: {saw_running_progress}");

    let listed = server.cli(&["node", "list"])?;
    eprintln!("rivet-server node list:\n{listed}");
    let row = listed
        .lines()
        .find(|l| l.contains(NODE))
        .with_context(|| format!("node list has no {NODE}: {listed}"))?;
    ensure!(
        row.contains("done") && row.contains(VM_MAC) && row.contains(" ago"),
        "node list: {listed}"
    );
    Ok(())
}
