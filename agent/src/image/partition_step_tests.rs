//! `write_image` with partition images, on sparse disk files, checked with sfdisk and blkid.

use std::process::Command;
use std::sync::Mutex;

use super::*;
use crate::image::partition::ephemeral::{ExtFs, FsMaker};
use crate::image::testutil::{path_str, run as run_tool};

const DISK: u64 = 1 << 30;

/// Records the mke2fs runs the step asked for. `missing`: the check fails as in a ramdisk
/// without mke2fs; `failing`: mke2fs fails.
#[derive(Default)]
struct RecordingFsMaker {
    runs: Mutex<Vec<(String, PathBuf, String)>>,
    missing: bool,
    failing: bool,
}

impl FsMaker for RecordingFsMaker {
    fn check(&self, fs: ExtFs) -> Result<(), String> {
        if self.missing {
            Err(format!("ephemeral_format {}: no mke2fs here", fs.name()))
        } else {
            Ok(())
        }
    }

    fn mke2fs(&self, fs: ExtFs, device: &Path, label: &str) -> Result<(), String> {
        self.runs
            .lock()
            .unwrap()
            .push((fs.name().into(), device.to_path_buf(), label.into()));
        if self.failing {
            Err("mke2fs: device busy".into())
        } else {
            Ok(())
        }
    }
}

/// An ext4 file system image of `mib` MiB, and its UUID.
fn ext4_image(dir: &Path, mib: u64) -> (PathBuf, Vec<u8>, String) {
    let path = dir.join("root.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    run_tool(
        "mkfs.ext4",
        &["-q", "-F", "-L", "img-root", path_str(&path)],
    );
    let bytes = std::fs::read(&path).unwrap();
    let uuid = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "UUID", path_str(&path)])
        .output()
        .expect("blkid (util-linux) is required by this test");
    (
        path,
        bytes,
        String::from_utf8_lossy(&uuid.stdout).trim().to_string(),
    )
}

fn sfdisk_json(disk: &Path) -> Value {
    let output = Command::new("sfdisk")
        .args(["--json", path_str(disk)])
        .output()
        .expect("sfdisk (Debian package fdisk; ci/setup installs it) is required by this test");
    assert!(
        output.status.success(),
        "sfdisk: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice::<Value>(&output.stdout).unwrap()["partitiontable"].clone()
}

/// A 1 GiB sparse disk `sdc` listed in rivet-host-disks, with the root partition image.
fn partition_setup() -> (Setup, PathBuf, Vec<u8>, String) {
    let s = setup_with(&["sdc"]);
    let disk = s.disk.with_file_name("sdc");
    std::fs::write(&disk, vec![0x5au8; 4 * MIB]).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(DISK)
        .unwrap();
    let (path, bytes, uuid) = ext4_image(disk.parent().unwrap(), 12);
    let mut s = s;
    s.url = file_url(&path);
    (s, disk, bytes, uuid)
}

fn partition_info(s: &Setup, hex: &str, extra: Value) -> Value {
    let mut info = image_info(s, hex);
    let fields = info.as_object_mut().unwrap();
    fields.insert("image_type".into(), json!("partition"));
    fields.insert("root_mb".into(), json!(16));
    fields.insert("swap_mb".into(), json!(0));
    fields.insert("ephemeral_mb".into(), json!(0));
    fields.insert("preserve_ephemeral".into(), json!(false));
    for (k, v) in extra.as_object().unwrap() {
        fields.insert(k.clone(), v.clone());
    }
    info
}

fn run_on(
    s: &Setup,
    disk: &Path,
    args: Value,
    node: Value,
    fs_maker: &dyn FsMaker,
) -> Result<Value, StepError> {
    let args: JsonObject = args.as_object().unwrap().clone();
    let ports = json!([]);
    let call = StepCall {
        args: &args,
        node: &node,
        ports: &ports,
        progress: &s.ctx.progress,
        ctx: &s.ctx,
    };
    let devices = FixedBlockDevices(vec![device("sdc", disk, "S2")]);
    let host = WriteHost {
        devices: &devices,
        in_ramdisk: false,
        firmware_uefi: false,
        fs_maker,
    };
    write_image_on(&host, &call)
}

#[test]
fn a_uefi_partition_image_gets_ipas_gpt_layout_and_uuids() {
    let (s, disk, image, fs_uuid) = partition_setup();
    let fs = RecordingFsMaker::default();
    let info = partition_info(
        &s,
        &sha256(&image),
        json!({"swap_mb": 8, "deploy_boot_mode": "uefi"}),
    );
    let args = json!({"image_info": info, "configdrive": gzip_b64(&config_drive_iso())});
    let node = json!({"instance_info": {"deploy_boot_mode": "uefi"}});
    let result = run_on(&s, &disk, args, node, &fs).unwrap();

    let uuids = s.ctx.state().partition_uuids.unwrap();
    let esp_uuid = uuids["efi system partition uuid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(uuids["root uuid"], json!(fs_uuid));
    let dev = disk.display();
    assert_eq!(
        result,
        json!({"result": format!(
            "prepare_image: image (disk.img) written to device {dev} root_uuid={fs_uuid} \
             efi_system_partition_uuid={esp_uuid}"
        )})
    );
    assert_eq!(
        uuids["partitions"],
        json!({
            "efi system partition": format!("{dev}1"),
            "swap": format!("{dev}2"),
            "configdrive": format!("{dev}3"),
            "root": format!("{dev}4"),
        })
    );

    let table = sfdisk_json(&disk);
    assert_eq!(table["label"], "gpt");
    let parts = table["partitions"].as_array().unwrap();
    let layout: Vec<(u64, u64, String)> = parts
        .iter()
        .map(|p| {
            (
                p["start"].as_u64().unwrap(),
                p["size"].as_u64().unwrap(),
                p["type"].as_str().unwrap().to_ascii_lowercase(),
            )
        })
        .collect();
    let mib = 2048;
    assert_eq!(
        layout,
        vec![
            (
                mib,
                550 * mib,
                "c12a7328-f81f-11d2-ba4b-00a0c93ec93b".into()
            ),
            (
                551 * mib,
                8 * mib,
                "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f".into()
            ),
            (
                559 * mib,
                mib,
                "0fc63daf-8483-4772-8e79-3d69d8477de4".into()
            ),
            (
                560 * mib,
                16 * mib,
                "0fc63daf-8483-4772-8e79-3d69d8477de4".into()
            ),
        ]
    );
    // The root partition holds the image, the config drive its ISO, the ESP a FAT32 whose
    // serial is the reported UUID.
    let bytes = std::fs::read(&disk).unwrap();
    let root = 560 * MIB;
    assert!(bytes[root..root + image.len()] == image[..]);
    let cd = 559 * MIB;
    assert_eq!(&bytes[cd + 32769..cd + 32774], b"CD001");
    let file = std::fs::File::open(&disk).unwrap();
    assert_eq!(
        crate::image::partition::fs::fs_uuid(&file, MIB as u64).as_deref(),
        Some(esp_uuid.as_str())
    );
    assert_eq!(&bytes[551 * MIB + 4086..551 * MIB + 4096], b"SWAPSPACE2");
    assert!(fs.runs.lock().unwrap().is_empty());
}

#[test]
fn a_bios_partition_image_gets_an_msdos_table_with_an_active_root() {
    let (s, disk, image, fs_uuid) = partition_setup();
    let fs = RecordingFsMaker::default();
    let info = partition_info(
        &s,
        &sha256(&image),
        json!({"ephemeral_mb": 20, "ephemeral_format": "ext4", "swap_mb": 4}),
    );
    let node = json!({"instance_info": {"deploy_boot_mode": "bios"}});
    let result = run_on(&s, &disk, json!({"image_info": info}), node, &fs).unwrap();
    let dev = disk.display();
    assert_eq!(
        result,
        json!({"result": format!(
            "prepare_image: image (disk.img) written to device {dev} root_uuid={fs_uuid}"
        )})
    );
    let uuids = s.ctx.state().partition_uuids.unwrap();
    assert_eq!(uuids["efi system partition uuid"], Value::Null);
    assert_eq!(
        uuids["partitions"],
        json!({"ephemeral": format!("{dev}1"), "swap": format!("{dev}2"),
               "root": format!("{dev}3")})
    );
    assert_eq!(
        *fs.runs.lock().unwrap(),
        vec![(
            "ext4".to_string(),
            disk.with_file_name("sdc1"),
            "ephemeral0".to_string()
        )]
    );
    let table = sfdisk_json(&disk);
    assert_eq!(table["label"], "dos");
    let parts = table["partitions"].as_array().unwrap();
    let kinds: Vec<(&str, bool)> = parts
        .iter()
        .map(|p| {
            (
                p["type"].as_str().unwrap(),
                p["bootable"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    assert_eq!(kinds, vec![("83", false), ("82", false), ("83", true)]);
    assert_eq!(parts[2]["start"], json!(25 * 2048));

    // disk_label gpt in BIOS mode: a 1 MiB BIOS boot partition first.
    let info = partition_info(&s, &sha256(&image), json!({}));
    let node = json!({"instance_info": {"deploy_boot_mode": "bios",
                                        "capabilities": {"disk_label": "gpt"}}});
    run_on(&s, &disk, json!({"image_info": info}), node, &fs).unwrap();
    let table = sfdisk_json(&disk);
    assert_eq!(table["label"], "gpt");
    assert_eq!(
        table["partitions"][0]["type"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase(),
        "21686148-6449-6e6f-744e-656564454649"
    );
    let uuids = s.ctx.state().partition_uuids.unwrap();
    assert_eq!(
        uuids["partitions"]["BIOS Boot partition"],
        json!(format!("{dev}1"))
    );
}

#[test]
fn a_partition_image_larger_than_root_mb_fails_and_leaves_no_table() {
    let (s, disk, image, _) = partition_setup();
    let fs = RecordingFsMaker::default();
    let info = partition_info(&s, &sha256(&image), json!({"root_mb": 8}));
    let err = run_on(&s, &disk, json!({"image_info": info}), json!({}), &fs).unwrap_err();
    assert!(matches!(err, StepError::Ipa { .. }), "{err:?}");
    let bytes = std::fs::read(&disk).unwrap();
    assert!(
        bytes[..MIB].iter().all(|&b| b == 0),
        "no partition table left"
    );
    assert!(s.ctx.state().partition_uuids.is_none());

    let info = partition_info(&s, &sha256(&image), json!({"preserve_ephemeral": true}));
    let err = run_on(&s, &disk, json!({"image_info": info}), json!({}), &fs).unwrap_err();
    assert!(err.to_string().contains("preserve_ephemeral"), "{err}");
}

#[path = "partition_ephemeral_tests.rs"]
mod ephemeral;
