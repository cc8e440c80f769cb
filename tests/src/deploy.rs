//! Pieces of the deploy scenario (`tests/tests/e2e_deploy.rs`): a tiny UEFI-bootable
//! whole-disk image (the partition image is `crate::partition_image`), an HTTP server for it inside the test namespace, and a node enrolled
//! and provisioned through the real Ironic's `direct` deploy.

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};

use crate::e2e::TRANSITION_TIMEOUT;
use crate::image::BootImage;
use crate::ironic::RealIronic;
use crate::netns::TestNet;
use crate::process::LoggedChild;

const MIB: u64 = 1 << 20;
/// The whole-disk image's size and its ESP's (from 1 MiB to 1 MiB before the end).
const DISK_MIB: u64 = 64;

fn run(tool: &str, args: &[&str]) -> Result<()> {
    let output = Command::new(tool).args(args).output().with_context(|| {
        format!("running {tool} (ci/setup installs grub-common, grub-efi-amd64-bin, dosfstools, mtools, gdisk)")
    })?;
    ensure!(
        output.status.success(),
        "{tool} {args:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

fn text(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not UTF-8", path.display()))
}

/// A 64 MiB whole-disk image in `dir`: a GPT with one EFI system partition holding GRUB as
/// `\EFI\BOOT\BOOTX64.EFI` (the firmware's removable-media path, so it boots with fresh
/// NVRAM) and `kernel` as `\vmlinuz`. GRUB's embedded configuration boots that kernel with
/// `console=ttyS0 <marker>`; the kernel prints its command line on the serial console early,
/// which is what the test looks for (no root file system is needed for that).
pub fn bootable_uefi_disk(dir: &Path, kernel: &Path, marker: &str) -> Result<PathBuf> {
    let cfg = dir.join("grub.cfg");
    std::fs::write(
        &cfg,
        format!(
            "set timeout=0\ninsmod part_gpt\ninsmod fat\n\
             search --no-floppy --set=root --file /rivet-deployed\n\
             linux /vmlinuz console=ttyS0 panic=-1 {marker}\nboot\n"
        ),
    )
    .with_context(|| format!("writing {}", cfg.display()))?;
    let grub = dir.join("BOOTX64.EFI");
    run(
        "grub-mkstandalone",
        &[
            "-O",
            "x86_64-efi",
            "--locales=",
            "--fonts=",
            "--themes=",
            "-o",
            text(&grub)?,
            &format!("boot/grub/grub.cfg={}", text(&cfg)?),
        ],
    )?;
    let esp = dir.join("esp.img");
    let esp_kib = (DISK_MIB - 2) * 1024;
    let _ = std::fs::remove_file(&esp);
    run(
        "mkfs.vfat",
        &["-C", "-F", "32", text(&esp)?, &esp_kib.to_string()],
    )?;
    let marker_file = dir.join("rivet-deployed");
    std::fs::write(&marker_file, marker).context("writing the marker file")?;
    run("mmd", &["-i", text(&esp)?, "::/EFI", "::/EFI/BOOT"])?;
    for (from, to) in [
        (grub.as_path(), "::/EFI/BOOT/BOOTX64.EFI"),
        (kernel, "::/vmlinuz"),
        (marker_file.as_path(), "::/rivet-deployed"),
    ] {
        run("mcopy", &["-i", text(&esp)?, text(from)?, to])?;
    }

    let disk = dir.join("disk.img");
    let file = std::fs::File::create(&disk).context("creating the disk image")?;
    file.set_len(DISK_MIB * MIB)
        .context("sizing the disk image")?;
    drop(file);
    run(
        "sgdisk",
        &[
            "-n",
            "1:2048:-1M",
            "-t",
            "1:ef00",
            "-c",
            "1:EFI",
            text(&disk)?,
        ],
    )?;
    let content = std::fs::read(&esp).context("reading the ESP image")?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .context("opening the disk image")?;
    std::os::unix::fs::FileExt::write_all_at(&file, &content, MIB)
        .context("writing the ESP into the disk image")?;
    Ok(disk)
}

/// The UUID of the file system in image `path` (`blkid -p`).
pub fn fs_uuid(path: &Path) -> Result<String> {
    let output = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "UUID", text(path)?])
        .output()
        .context("running blkid (util-linux)")?;
    let uuid = String::from_utf8_lossy(&output.stdout).trim().to_string();
    ensure!(
        !uuid.is_empty(),
        "blkid found no UUID on {}",
        path.display()
    );
    Ok(uuid)
}

/// `sfdisk --json <disk>`'s `partitiontable`.
pub fn sfdisk_json(disk: &Path) -> Result<Value> {
    let output = Command::new("sfdisk")
        .args(["--json", text(disk)?])
        .output()
        .context("running sfdisk (Debian package fdisk; ci/setup installs it)")?;
    ensure!(
        output.status.success(),
        "sfdisk --json {}: {}",
        disk.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let table: Value = serde_json::from_slice(&output.stdout).context("parsing sfdisk's JSON")?;
    Ok(table["partitiontable"].clone())
}

/// The SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::Digest;
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(sha2::Sha256::digest(&data)))
}

/// Links the lab's kernel and initramfs into the served directory: the pxe boot interface
/// fetches `driver_info`'s deploy kernel and ramdisk into its TFTP root, although the VM
/// boots the ISO (nothing boots over the network here).
pub fn serve_deploy_ramdisk(image: &BootImage, images: &Path) -> Result<()> {
    for (from, to) in [
        (image.kernel(), "deploy.kernel"),
        (image.initramfs(), "deploy.initramfs"),
    ] {
        std::fs::hard_link(&from, images.join(to))
            .or_else(|_| std::fs::copy(&from, images.join(to)).map(drop))
            .with_context(|| format!("linking {} into the image directory", from.display()))?;
    }
    Ok(())
}

/// `python3 -m http.server` serving `dir` on `address:port` inside the namespace.
pub struct FileServer {
    _process: LoggedChild,
    base: String,
}

impl FileServer {
    pub fn start(net: &TestNet, dir: &Path, address: Ipv4Addr, port: u16) -> Result<FileServer> {
        let mut command = net.command("python3");
        command
            .args(["-m", "http.server", &port.to_string(), "--bind"])
            .arg(address.to_string())
            .arg("--directory")
            .arg(dir);
        let log = dir.with_extension("http.log");
        let mut process = LoggedChild::spawn("http.server", command, &log)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        let socket = SocketAddr::from((address, port));
        // The caller runs inside the namespace (TestNet::block_on): connect there.
        while TcpStream::connect_timeout(&socket, Duration::from_millis(200)).is_err() {
            process.ensure_running()?;
            if Instant::now() >= deadline {
                bail!("the image HTTP server on {socket} did not start");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(FileServer {
            _process: process,
            base: format!("http://{socket}"),
        })
    }

    pub fn url(&self, name: &str) -> String {
        format!("{}/{name}", self.base)
    }
}

/// Enrolls a `manual-management` node (fake power, noop management, pxe boot: nothing
/// happens out of band; the `fake` management of `fake-hardware` refuses the boot device
/// `disk` that a UEFI deploy sets, see shared/conformance/README.md) with a port for `mac`,
/// `driver_info`, `instance_info` and `properties` as given, makes it `available` and starts
/// the deploy (`active`); returns its uuid once it waits for its agent (`wait call-back`).
pub async fn enroll_for_deploy(
    ironic: &RealIronic,
    name: &str,
    mac: &str,
    driver_info: Value,
    instance_info: Value,
    properties: Value,
) -> Result<String> {
    let body = json!({
        "name": name,
        "driver": "manual-management",
        "boot_interface": "pxe",
        "deploy_interface": "direct",
        "management_interface": "noop",
        "power_interface": "fake",
        "network_interface": "noop",
        "driver_info": driver_info,
    });
    let node = ironic
        .call(Method::POST, "/v1/nodes", Some(&body))
        .await
        .with_context(|| format!("creating node {name}"))?;
    let uuid = node["uuid"]
        .as_str()
        .context("created node has no uuid")?
        .to_owned();
    ironic.create_port(&uuid, mac).await?;
    let mut patch = Vec::new();
    for (root, fields) in [
        ("instance_info", &instance_info),
        ("properties", &properties),
    ] {
        for (key, value) in fields.as_object().into_iter().flatten() {
            patch.push(json!({"op": "add", "path": format!("/{root}/{key}"), "value": value}));
        }
    }
    ironic
        .call(
            Method::PATCH,
            &format!("/v1/nodes/{uuid}"),
            Some(&Value::Array(patch)),
        )
        .await
        .with_context(|| format!("setting instance_info of node {uuid}"))?;
    ironic.manage(&uuid).await?;
    ironic
        .wait_for_provision_state(&uuid, "manageable", TRANSITION_TIMEOUT)
        .await?;
    ironic
        .set_provision_state(&uuid, &json!({"target": "provide"}))
        .await?;
    ironic
        .wait_for_provision_state(&uuid, "available", TRANSITION_TIMEOUT)
        .await?;
    ironic
        .set_provision_state(&uuid, &json!({"target": "active"}))
        .await?;
    ironic
        .wait_for_provision_state(&uuid, "wait call-back", TRANSITION_TIMEOUT)
        .await?;
    Ok(uuid)
}
