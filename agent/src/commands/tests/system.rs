//! standby, log, system, rescue and image commands.

use serde_json::json;

use super::*;
use crate::commands::shacrypt::sha256_crypt;
use crate::commands::{PASSWORD_FILE, RESCUED_MARKER};
use crate::context::Lifecycle;
use crate::power::PowerAction;

#[tokio::test]
async fn partition_uuids_are_empty_until_an_image_is_written() {
    let h = harness();
    let result = h.ok("standby.get_partition_uuids", json!({}), true).await;
    assert_eq!(result.command_name, "get_partition_uuids");
    assert_eq!(status(&result), CommandStatus::Succeeded);
    assert_eq!(result.command_result, Some(json!({})));

    h.ctx.update_state(|state| {
        state.partition_uuids = json!({"root uuid": "0x1234abcd"}).as_object().cloned();
    });
    let result = h.ok("standby.get_partition_uuids", json!({}), true).await;
    assert_eq!(
        result.command_result,
        Some(json!({"root uuid": "0x1234abcd"}))
    );
}

#[tokio::test]
async fn sync_flushes_everything() {
    let h = harness();
    let result = h.ok("standby.sync", json!({}), true).await;
    assert_eq!(result.command_name, "sync");
    assert_eq!(status(&result), CommandStatus::Succeeded);
    assert_eq!(result.command_result, None);
    assert_eq!(
        h.fs.calls(),
        ["sync", "drop_caches", "flush nvme0n1", "flush sda"]
    );
}

#[tokio::test]
async fn power_off_and_run_image_sync_then_act() {
    let h = harness();
    let result = h.ok("standby.power_off", json!({}), false).await;
    assert_eq!(result.command_name, "power_off");
    assert_eq!(status(&result), CommandStatus::Running);
    let done = h.done(&result.id).await;
    assert_eq!(status(&done), CommandStatus::Succeeded);
    assert_eq!(done.command_result, None);
    assert_eq!(h.power.calls(), [PowerAction::PowerOff]);
    assert_eq!(h.fs.calls()[0], "sync");

    let done = h.ok("standby.run_image", json!({}), true).await;
    assert_eq!(done.command_name, "run_image");
    assert_eq!(status(&done), CommandStatus::Succeeded);
    assert_eq!(
        h.power.calls(),
        [PowerAction::PowerOff, PowerAction::Reboot]
    );
}

#[tokio::test]
async fn power_failures_are_reported() {
    let h = harness_with(Options {
        power: FakePower::failing("writing \"o\" to /proc/sysrq-trigger: denied"),
        ..Options::default()
    });
    let done = h.ok("standby.power_off", json!({}), true).await;
    assert_eq!(status(&done), CommandStatus::Failed);
    let error = done.command_error.expect("error");
    assert_eq!(error.type_, "SystemRebootError");
    assert_eq!(error.message, "Error rebooting system");
    assert!(error.details.contains("sysrq-trigger"));
}

#[tokio::test]
async fn collect_system_logs_returns_a_tar_gz() {
    let h = harness();
    h.logs
        .push("2024-01-01T00:00:00Z  INFO rivet: a line to find".into());
    let result = h.ok("log.collect_system_logs", json!({}), true).await;
    assert_eq!(result.command_name, "collect_system_logs");
    assert_eq!(status(&result), CommandStatus::Succeeded);
    let value = result.command_result.expect("result");
    let encoded = value["system_logs"].as_str().expect("base64 string");
    let members = crate::syslogs::tests::unpack(encoded);
    assert!(members["rivet-agent.log"].contains("a line to find"));
    assert_eq!(members["dmesg"], "[    1.000000] Linux version test\n");
    // The harness's /proc and /sys are empty: those parts are listed as errors.
    assert!(members["collection_errors"].contains("ip_route"));
    assert!(!members.contains_key("inventory.json"));

    h.ctx
        .update_state(|state| state.inventory = Some(json!({"memory": {"total": 1}})));
    let result = h.ok("log.collect_system_logs", json!({}), true).await;
    let members = crate::syslogs::tests::unpack(
        result.command_result.expect("result")["system_logs"]
            .as_str()
            .expect("string"),
    );
    assert!(members["inventory.json"].contains("\"total\": 1"));
}

#[tokio::test]
async fn lockdown_stops_the_agent_with_links_down() {
    let h = harness();
    let result = h.ok("system.lockdown", json!({}), false).await;
    assert_eq!(result.command_name, "lockdown");
    assert_eq!(status(&result), CommandStatus::Succeeded);
    assert_eq!(h.ctx.lifecycle(), Lifecycle::Stopped { lockdown: true });
}

fn rescue_file(h: &Harness, rel: &str) -> std::path::PathBuf {
    h.root.path().join("root").join(rel)
}

#[tokio::test]
async fn finalize_rescue_writes_the_hash_and_stops() {
    let h = harness();
    let hash = "$6$rounds=5000$abcdefgh$0123456789";
    let result = h
        .ok(
            "rescue.finalize_rescue",
            json!({"rescue_password": hash, "hashed": true}),
            false,
        )
        .await;
    assert_eq!(result.command_name, "finalize_rescue");
    assert_eq!(status(&result), CommandStatus::Succeeded);
    assert_eq!(
        std::fs::read_to_string(rescue_file(&h, PASSWORD_FILE)).expect("password file"),
        hash
    );
    assert!(rescue_file(&h, RESCUED_MARKER).exists());
    assert_eq!(h.ctx.lifecycle(), Lifecycle::Stopped { lockdown: false });
}

#[tokio::test]
async fn finalize_rescue_hashes_a_plain_password() {
    let h = harness();
    h.ok(
        "rescue.finalize_rescue",
        json!({"rescue_password": "s3cret pass"}),
        false,
    )
    .await;
    let stored = std::fs::read_to_string(rescue_file(&h, PASSWORD_FILE)).expect("file");
    let salt = stored
        .strip_prefix("$5$")
        .and_then(|rest| rest.split('$').next())
        .expect("sha256-crypt format");
    assert_eq!(stored, sha256_crypt(b"s3cret pass", salt));
}

#[tokio::test]
async fn finalize_rescue_rejects_bad_passwords() {
    let h = harness();
    for params in [
        json!({"rescue_password": "plain text", "hashed": true}),
        json!({"rescue_password": "", "hashed": false}),
        json!({}),
        json!({"rescue_password": 42, "hashed": true}),
        json!({"rescue_password": "$5$x$y", "hashed": "yes"}),
    ] {
        let err = h
            .post("rescue.finalize_rescue", params.clone(), false)
            .await
            .expect_err("refused");
        assert!(
            matches!(err, ApiError::InvalidParams(_)),
            "{params}: {err:?}"
        );
        assert_eq!(err.status(), 400);
    }
    assert!(!rescue_file(&h, PASSWORD_FILE).exists());
    assert_eq!(h.ctx.lifecycle(), Lifecycle::Serving);
}

#[tokio::test]
async fn finalize_rescue_write_failure_is_a_failed_command() {
    let h = harness();
    // `<root>/etc` is a file: the password directory cannot be created.
    std::fs::create_dir_all(h.root.path().join("root")).expect("mkdir");
    std::fs::write(h.root.path().join("root/etc"), "").expect("write");
    let result = h
        .ok(
            "rescue.finalize_rescue",
            json!({"rescue_password": "$6$salt$hash", "hashed": true}),
            false,
        )
        .await;
    assert_eq!(result.command_name, "rescue.finalize_rescue");
    assert_eq!(status(&result), CommandStatus::Failed);
    assert!(result
        .command_error
        .expect("error")
        .details
        .starts_with("Rescue Operation failed when writing"));
    assert_eq!(h.ctx.lifecycle(), Lifecycle::Serving);
}

#[tokio::test]
async fn install_bootloader_for_a_whole_disk_image_has_nothing_to_do() {
    let h = harness();
    for root_uuid in [Value::Null, json!("0x00000000")] {
        let result = h
            .ok(
                "image.install_bootloader",
                json!({"root_uuid": root_uuid, "efi_system_part_uuid": null,
                       "prep_boot_part_uuid": null, "target_boot_mode": "uefi"}),
                false,
            )
            .await;
        assert_eq!(result.command_name, "install_bootloader");
        assert_eq!(status(&result), CommandStatus::Running);
        let done = h.done(&result.id).await;
        assert_eq!(status(&done), CommandStatus::Succeeded);
        assert_eq!(done.command_result, None);
    }
}

#[tokio::test]
async fn install_bootloader_adds_uefi_entries_for_the_written_disk() {
    use crate::efi::testutil::{disk_with, esp};
    let h = harness();
    let work = tempfile::tempdir().expect("tempdir");
    let image = esp(
        work.path(),
        16384,
        "16",
        &[("EFI/BOOT/BOOTX64.EFI", b"loader".to_vec())],
    );
    drop(disk_with(work.path(), &image, true));
    let efivars = h.root.path().join("root/sys/firmware/efi/efivars");
    std::fs::create_dir_all(&efivars).expect("efivars dir");
    h.ctx
        .update_state(|s| s.root_device = Some(work.path().join("disk")));
    let done = h
        .ok(
            "image.install_bootloader",
            json!({"root_uuid": "0x00000000", "efi_system_part_uuid": null,
                   "target_boot_mode": "uefi"}),
            true,
        )
        .await;
    assert_eq!(
        status(&done),
        CommandStatus::Succeeded,
        "{:?}",
        done.command_error
    );
    let order = std::fs::read(efivars.join(format!("BootOrder-{}", crate::efi::GLOBAL_GUID)))
        .expect("BootOrder written");
    assert_eq!(order, [7, 0, 0, 0, 0, 0]);
    assert!(efivars
        .join(format!("Boot0000-{}", crate::efi::GLOBAL_GUID))
        .exists());
}

#[tokio::test]
async fn install_bootloader_fails_clearly_for_what_it_cannot_do() {
    let h = harness();
    // GRUB for BIOS is off unless enable_bios_bootloader_install: IPA's InvalidImage.
    for params in [
        json!({"root_uuid": "3f2a0b44-1111-2222-3333-444455556666", "target_boot_mode": "bios"}),
        json!({"root_uuid": null, "efi_system_part_uuid": "8c4d5e6f-0000-1111-2222-333344445555"}),
    ] {
        let done = h.ok("image.install_bootloader", params.clone(), true).await;
        assert_eq!(status(&done), CommandStatus::Failed, "{params}");
        let error = done.command_error.expect("error");
        assert_eq!(error.type_, "InvalidImage");
        assert!(error.details.contains("enable_bios_bootloader_install"));
    }
    let done = h
        .ok(
            "image.install_bootloader",
            json!({"root_uuid": "3f2a0b44-1111-2222-3333-444455556666",
                   "prep_boot_part_uuid": "8c4d5e6f-0000-1111-2222-333344445555"}),
            true,
        )
        .await;
    assert!(done
        .command_error
        .expect("error")
        .details
        .contains("not supported by this build of rivet-agent"));
    let done = h.ok("image.install_bootloader", json!({}), true).await;
    assert!(done
        .command_error
        .expect("error")
        .details
        .contains("missing required parameter 'root_uuid'"));

    // Asked to ignore boot loader failures, the command carries on as IPA does.
    let done = h
        .ok(
            "image.install_bootloader",
            json!({"root_uuid": "3f2a0b44-1111-2222-3333-444455556666",
                   "ignore_bootloader_failure": true}),
            true,
        )
        .await;
    assert_eq!(status(&done), CommandStatus::Succeeded);
    assert!(h.boot.log().is_empty());
}

#[tokio::test]
async fn install_bootloader_runs_the_images_grub_for_a_bios_partition_image() {
    use crate::image::partition::fs::write_swap;
    use crate::image::partition::layout::{plan, Label, LayoutRequest, Role};
    use crate::image::partition::table::write_table;

    let work = tempfile::tempdir().expect("tempdir");
    let image_root = work.path().join("image-root");
    std::fs::create_dir_all(image_root.join("usr/sbin")).expect("image root");
    std::fs::write(image_root.join("usr/sbin/grub-install"), b"").expect("grub-install");
    let h = harness_with(Options {
        boot_root: Some(image_root),
        ..Options::default()
    });
    // Off in the settings, on from the lookup's config (the conductor's
    // [agent]enable_bios_bootloader_install), as with Ironic.
    assert!(!h.ctx.settings.enable_bios_bootloader_install);
    h.ctx
        .update_state(|s| s.enable_bios_bootloader_install = true);

    // A disk laid out for a BIOS partition image; the "root file system" is a swap
    // signature, whose UUID find_partition reads as it would an ext4's.
    let disk = work.path().join("vda");
    let file = std::fs::File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&disk)
        .expect("disk");
    file.set_len(64 << 20).expect("size");
    let request = LayoutRequest {
        uefi: false,
        label: Label::Msdos,
        root_mb: 16,
        swap_mb: 0,
        ephemeral_mb: 0,
        configdrive_mb: 0,
    };
    let layout = plan(&request, 64 << 20).expect("layout");
    write_table(&file, &layout, 512, true).expect("table");
    let root = layout.get(Role::Root).expect("root");
    let uuid = uuid::Uuid::new_v4();
    write_swap(&file, root.start, root.len, uuid, "root").expect("fs");
    h.ctx.update_state(|s| s.root_device = Some(disk.clone()));

    let done = h
        .ok(
            "image.install_bootloader",
            json!({"root_uuid": uuid.to_string(), "efi_system_part_uuid": null,
                   "prep_boot_part_uuid": null, "target_boot_mode": "bios"}),
            true,
        )
        .await;
    assert_eq!(
        status(&done),
        CommandStatus::Succeeded,
        "{:?}",
        done.command_error
    );
    let log = h.boot.log();
    let dev = disk.display();
    assert_eq!(log[0], format!("mount Device {dev}1 ROOT/"));
    assert!(
        log.contains(&format!("chroot ROOT/ grub-install {dev}")),
        "{log:?}"
    );
    assert_eq!(log.last().map(String::as_str), Some("rmdir"));

    // A root UUID that is on no partition: DeviceNotFound.
    let done = h
        .ok(
            "image.install_bootloader",
            json!({"root_uuid": "00000000-0000-0000-0000-000000000000",
                   "target_boot_mode": "bios"}),
            true,
        )
        .await;
    assert_eq!(done.command_error.expect("error").type_, "DeviceNotFound");
}
