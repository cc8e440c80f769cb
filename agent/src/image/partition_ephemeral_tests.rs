//! `write_image` with an ephemeral partition: the format is decided before the disk is
//! touched; vfat and swap are written natively, ext by the (fake) mke2fs after the table.

use super::*;
use crate::image::testutil::blkid;

fn ipa_type(err: &StepError) -> &str {
    match err {
        StepError::Ipa { type_, .. } => type_,
        other => panic!("not an IPA error: {other:?}"),
    }
}

/// `partition_setup` filled the disk's first 4 MiB with 0x5a: still there means nothing
/// was written.
fn untouched(disk: &Path) -> bool {
    std::fs::read(disk).unwrap()[..4 * MIB]
        .iter()
        .all(|&b| b == 0x5a)
}

fn bios() -> Value {
    json!({"instance_info": {"deploy_boot_mode": "bios"}})
}

/// The bytes of `[start, start + len)` of `disk` as a file of their own, for blkid and fsck.
fn extract(disk: &Path, start: usize, len: usize) -> PathBuf {
    let bytes = std::fs::read(disk).unwrap();
    let path = disk.with_file_name("extracted-partition");
    std::fs::write(&path, &bytes[start..start + len]).unwrap();
    path
}

#[test]
fn an_ephemeral_file_system_rivet_cannot_make_fails_before_the_disk_is_touched() {
    let (s, disk, image, _) = partition_setup();
    let fs = RecordingFsMaker::default();
    let hex = sha256(&image);
    let ephemeral = |format: &str, mb: u64| {
        partition_info(
            &s,
            &hex,
            json!({"ephemeral_mb": mb, "ephemeral_format": format}),
        )
    };

    let err = run_on(
        &s,
        &disk,
        json!({"image_info": ephemeral("xfs", 40)}),
        bios(),
        &fs,
    )
    .unwrap_err();
    assert_eq!(ipa_type(&err), "InvalidCommandParamsError", "{err:?}");
    assert!(
        err.to_string().contains(
            "ephemeral_format \"xfs\": the ramdisk has no mkfs.xfs; supported ephemeral \
             formats: ext2, ext3, ext4, vfat, swap"
        ),
        "{err}"
    );
    assert!(untouched(&disk));

    // ext4 in a ramdisk without mke2fs.
    let missing = RecordingFsMaker {
        missing: true,
        ..Default::default()
    };
    let err = run_on(
        &s,
        &disk,
        json!({"image_info": ephemeral("ext4", 40)}),
        bios(),
        &missing,
    )
    .unwrap_err();
    assert_eq!(ipa_type(&err), "InvalidCommandParamsError", "{err:?}");
    assert!(
        err.to_string()
            .contains("ephemeral_format ext4: no mke2fs here"),
        "{err}"
    );
    assert!(untouched(&disk));

    // vfat in a partition too small for FAT32.
    let err = run_on(
        &s,
        &disk,
        json!({"image_info": ephemeral("vfat", 16)}),
        bios(),
        &fs,
    )
    .unwrap_err();
    assert_eq!(ipa_type(&err), "InvalidCommandParamsError", "{err:?}");
    assert!(
        err.to_string()
            .contains("ephemeral_format vfat: the ephemeral partition: 16777216 bytes are too few"),
        "{err}"
    );
    assert!(untouched(&disk));
    assert!(fs.runs.lock().unwrap().is_empty());
    assert!(missing.runs.lock().unwrap().is_empty());
    assert!(s.ctx.state().partition_uuids.is_none());
}

#[test]
fn a_failing_mke2fs_fails_the_step_and_clears_the_disk() {
    let (s, disk, image, _) = partition_setup();
    let fs = RecordingFsMaker {
        failing: true,
        ..Default::default()
    };
    let info = partition_info(
        &s,
        &sha256(&image),
        json!({"ephemeral_mb": 20, "ephemeral_format": "ext3"}),
    );
    let err = run_on(&s, &disk, json!({"image_info": info}), bios(), &fs).unwrap_err();
    assert_eq!(ipa_type(&err), "ImageWriteError", "{err:?}");
    assert!(
        err.to_string()
            .contains("making the ephemeral file system: mke2fs: device busy"),
        "{err}"
    );
    assert_eq!(
        *fs.runs.lock().unwrap(),
        vec![(
            "ext3".to_string(),
            disk.with_file_name("sdc1"),
            "ephemeral0".to_string()
        )]
    );
    let bytes = std::fs::read(&disk).unwrap();
    assert!(
        bytes[..MIB].iter().all(|&b| b == 0),
        "no partition table left"
    );
    assert!(s.ctx.state().partition_uuids.is_none());
}

#[test]
fn vfat_and_swap_ephemeral_partitions_are_written_natively_with_label_ephemeral0() {
    let (s, disk, image, _) = partition_setup();
    let fs = RecordingFsMaker::default();
    let info = partition_info(
        &s,
        &sha256(&image),
        json!({"ephemeral_mb": 40, "ephemeral_format": "vfat"}),
    );
    run_on(&s, &disk, json!({"image_info": info}), bios(), &fs).unwrap();
    let uuids = s.ctx.state().partition_uuids.unwrap();
    assert_eq!(
        uuids["partitions"]["ephemeral"],
        json!(format!("{}1", disk.display()))
    );
    // Partition 1 starts at 1 MiB.
    let part = extract(&disk, MIB, 40 * MIB);
    run_tool("fsck.vfat", &["-n", path_str(&part)]);
    assert_eq!(blkid(&part, "TYPE"), "vfat");
    assert_eq!(blkid(&part, "LABEL"), "ephemeral0");

    let info = partition_info(
        &s,
        &sha256(&image),
        json!({"ephemeral_mb": 8, "ephemeral_format": "swap"}),
    );
    run_on(&s, &disk, json!({"image_info": info}), bios(), &fs).unwrap();
    let part = extract(&disk, MIB, 8 * MIB);
    assert_eq!(blkid(&part, "TYPE"), "swap");
    assert_eq!(blkid(&part, "LABEL"), "ephemeral0");
    assert!(
        fs.runs.lock().unwrap().is_empty(),
        "no mke2fs for vfat or swap"
    );
}
