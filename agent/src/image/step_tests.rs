use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use gptman::{GPTPartitionEntry, GPT};
use rivet_protocol::JsonObject;

use super::*;
use crate::context::AgentContext;
use crate::disks::{DeviceKind, DiskError};
use crate::image::testutil::{file_url, sha256};

const MIB: usize = 1 << 20;

/// Block devices from a list: `FixedBlockDevices`.
struct FixedBlockDevices(Vec<BlockDevice>);

impl BlockDevices for FixedBlockDevices {
    fn list(&self) -> Result<Vec<BlockDevice>, DiskError> {
        Ok(self.0.clone())
    }
}

fn device(name: &str, path: &Path, serial: &str) -> BlockDevice {
    BlockDevice {
        path: path.to_path_buf(),
        model: Some("QEMU HARDDISK".into()),
        serial: Some(serial.into()),
        tran: Some("sata".into()),
        ..crate::erase::fake::block_device(name, DeviceKind::Disk, 100 << 30, 512)
    }
}

/// An 8 MiB whole-disk image with a GPT, an MBR disk identifier and one partition.
fn gpt_image() -> Vec<u8> {
    let mut image = Cursor::new(vec![0u8; 8 * MIB]);
    let mut gpt = GPT::new_from(&mut image, 512, [9; 16]).unwrap();
    gpt[1] = GPTPartitionEntry {
        partition_type_guid: [1; 16],
        unique_partition_guid: [3; 16],
        starting_lba: 2048,
        ending_lba: 8191,
        attribute_bits: 0,
        partition_name: "root".into(),
    };
    gpt.write_into(&mut image).unwrap();
    GPT::write_protective_mbr_into(&mut image, 512).unwrap();
    let mut bytes = image.into_inner();
    bytes[440..444].copy_from_slice(&0x0a0b0c0du32.to_le_bytes());
    bytes[2048 * 512..2048 * 512 + 5].copy_from_slice(b"root!");
    bytes
}

fn gzip_b64(data: &[u8]) -> String {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(data).unwrap();
    base64::engine::general_purpose::STANDARD.encode(encoder.finish().unwrap())
}

struct Setup {
    _dir: tempfile::TempDir,
    disk: PathBuf,
    image: Vec<u8>,
    url: String,
    ctx: AgentContext,
}

fn setup() -> Setup {
    setup_with(&[])
}

/// A setup whose rivet-host-disks also lists the (empty) disk files named `extra`.
fn setup_with(extra: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let image = gpt_image();
    let image_path = dir.path().join("disk.img");
    std::fs::write(&image_path, &image).unwrap();
    let disk = dir.path().join("sdb");
    let file = std::fs::File::create(&disk).unwrap();
    file.set_len(100 * MIB as u64).unwrap();
    std::fs::write(&disk, vec![0x5au8; 2 * MIB]).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(100 * MIB as u64)
        .unwrap();
    let mut settings = Settings {
        host_disks: vec![disk.clone()],
        ..Settings::default()
    };
    for name in extra {
        let path = dir.path().join(name);
        std::fs::write(&path, b"").unwrap();
        settings.host_disks.push(path);
    }
    settings.image_download_connection_retries = 0;
    settings.image_download_connection_retry_interval = Duration::from_millis(10);
    Setup {
        url: file_url(&image_path),
        _dir: dir,
        disk,
        image,
        ctx: AgentContext::new(settings),
    }
}

fn run(s: &Setup, devices: Vec<BlockDevice>, args: Value, node: Value) -> Result<Value, StepError> {
    let args: JsonObject = args.as_object().unwrap().clone();
    let ports = json!([]);
    let call = StepCall {
        args: &args,
        node: &node,
        ports: &ports,
        progress: &s.ctx.progress,
        ctx: &s.ctx,
    };
    write_image(&FixedBlockDevices(devices), false, &call)
}

fn image_info(s: &Setup, hex: &str) -> Value {
    json!({
        "id": "disk.img",
        "urls": [s.url],
        "disk_format": "raw",
        "os_hash_algo": "sha256",
        "os_hash_value": hex,
        "node_uuid": "072a1d4d-2109-4966-9aab-708de8cfa79d",
    })
}

fn config_drive_iso() -> Vec<u8> {
    let mut iso = vec![0u8; 64 * 1024];
    iso[32769..32774].copy_from_slice(b"CD001");
    iso[32808..32816].copy_from_slice(b"config-2");
    iso
}

#[test]
fn write_image_step_writes_the_image_and_a_config_drive_and_answers_as_ipa() {
    let s = setup();
    let other = s.disk.with_file_name("sdc");
    let devices = vec![device("sdb", &s.disk, "S1"), device("sdc", &other, "S2")];
    let args = json!({
        "image_info": image_info(&s, &sha256(&s.image)),
        "configdrive": gzip_b64(&config_drive_iso()),
    });
    let node = json!({"instance_info": {"root_device": {"serial": "s1"}}, "properties": {}});
    let result = run(&s, devices, args, node).unwrap();
    let dev = s.disk.display();
    assert_eq!(
        result,
        json!({"result": format!(
            "prepare_image: image (disk.img) written to device {dev} root_uuid=0x0a0b0c0d"
        )})
    );
    assert_eq!(
        s.ctx.state().partition_uuids,
        json!({"root uuid": "0x0a0b0c0d"}).as_object().cloned()
    );
    let written = std::fs::read(&s.disk).unwrap();
    // The image's partition data, then its GPT (entries changed: config-2 was added).
    assert_eq!(&written[2048 * 512..2048 * 512 + 5], b"root!");
    let mut file = std::fs::File::open(&s.disk).unwrap();
    let gpt = GPT::find_from(&mut file).unwrap();
    assert_eq!(gpt[2].partition_name.as_str(), "config-2");
    let start = (gpt[2].starting_lba * 512) as usize;
    assert_eq!(&written[start + 32769..start + 32774], b"CD001");
    assert_eq!(gpt.header.backup_lba, (100 * MIB / 512) as u64 - 1);
    assert!(
        s.ctx.progress.snapshot().is_empty(),
        "the task was finished"
    );
}

#[test]
fn write_image_step_refuses_what_it_must_not_write() {
    let s = setup();
    let hex = sha256(&s.image);
    // Not listed in rivet-host-disks.
    let elsewhere = s.disk.with_file_name("sdz");
    let err = run(
        &s,
        vec![device("sdz", &elsewhere, "S9")],
        json!({"image_info": image_info(&s, &hex)}),
        json!({}),
    )
    .unwrap_err();
    assert!(
        matches!(&err, StepError::Ipa { type_, .. } if type_ == "DeviceNotFound"),
        "{err:?}"
    );
    assert!(err.to_string().contains("rivet-host-disks"), "{err}");

    // The boot medium is never a candidate.
    let mut boot = device("sdb", &s.disk, "S1");
    boot.is_boot_medium = true;
    let err = run(
        &s,
        vec![boot],
        json!({"image_info": image_info(&s, &hex)}),
        json!({}),
    )
    .unwrap_err();
    assert!(
        matches!(&err, StepError::Ipa { type_, .. } if type_ == "DeviceNotFound"),
        "{err:?}"
    );

    // Ambiguous hints in strict mode (the default) name the candidates.
    let s = setup_with(&["sdc"]);
    let second = s.disk.with_file_name("sdc");
    let devices = vec![device("sdb", &s.disk, "S1"), device("sdc", &second, "S2")];
    let err = run(
        &s,
        devices,
        json!({"image_info": image_info(&s, &hex)}),
        json!({"properties": {"root_device": {"model": "qemu harddisk"}}}),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("more than one disk"), "{text}");
    assert!(text.contains("sdb") && text.contains("sdc"), "{text}");
}

#[test]
fn write_image_step_fails_clearly_on_bad_input() {
    let s = setup();
    let devices = || vec![device("sdb", &s.disk, "S1")];
    // MD5 without the lookup enabling it.
    let mut info = image_info(&s, "");
    info.as_object_mut().unwrap().remove("os_hash_algo");
    info.as_object_mut().unwrap().remove("os_hash_value");
    info["checksum"] = json!("b6d81b360a5672d80c27430f39153e2c");
    let err = run(&s, devices(), json!({"image_info": info}), json!({})).unwrap_err();
    assert!(
        matches!(&err, StepError::Ipa { type_, code: 400, .. } if type_ == "InvalidCommandParamsError"),
        "{err:?}"
    );
    // A partition image without root_mb.
    let mut info = image_info(&s, &sha256(&s.image));
    info["image_type"] = json!("partition");
    let err = run(&s, devices(), json!({"image_info": info}), json!({})).unwrap_err();
    assert!(
        matches!(&err, StepError::Ipa { type_, code: 400, .. } if type_ == "InvalidCommandParamsError"),
        "{err:?}"
    );
    assert!(err.to_string().contains("root_mb"), "{err}");
    // Nothing was written so far.
    assert!(std::fs::read(&s.disk).unwrap()[..2 * MIB]
        .iter()
        .all(|&b| b == 0x5a));

    // A wrong checksum: IPA's ImageChecksumError, and the disk's first MiB is cleared.
    let wrong = "0".repeat(64);
    let err = run(
        &s,
        devices(),
        json!({"image_info": image_info(&s, &wrong)}),
        json!({}),
    )
    .unwrap_err();
    assert!(
        matches!(&err, StepError::Ipa { type_, .. } if type_ == "ImageChecksumError"),
        "{err:?}"
    );
    let written = std::fs::read(&s.disk).unwrap();
    assert!(written[..MIB].iter().all(|&b| b == 0));
    assert!(s.ctx.state().partition_uuids.is_none());
}

#[test]
fn write_image_step_refuses_an_image_without_partitions_and_clears_the_disk() {
    let s = setup();
    // A bare file system image, no partition table: IPA fails such a deploy too.
    let bare = crate::image::testutil::content(3 * MIB, 5);
    let path = s.disk.with_file_name("bare.img");
    std::fs::write(&path, &bare).unwrap();
    let mut info = image_info(&s, &sha256(&bare));
    info["urls"] = json!([file_url(&path)]);
    let err = run(
        &s,
        vec![device("sdb", &s.disk, "S1")],
        json!({"image_info": info}),
        json!({}),
    )
    .unwrap_err();
    assert!(
        matches!(&err, StepError::Ipa { type_, .. } if type_ == "ImageWriteError"),
        "{err:?}"
    );
    assert!(err.to_string().contains("no partitions"), "{err}");
    assert!(std::fs::read(&s.disk).unwrap()[..MIB]
        .iter()
        .all(|&b| b == 0));
}

#[path = "partition_step_tests.rs"]
mod partition;
