//! `image.install_bootloader` (spec §4; IPA/extensions/image.py).
//!
//! In UEFI mode, after `write_image`, boot entries are added for the loaders on the written
//! disk's EFI system partition (the one named by `efi_system_part_uuid`, else the first of
//! ESP type) through efivarfs, as IPA's `manage_uefi` does with efibootmgr ([`crate::efi`]).
//! A whole-disk image (`root_uuid` null or `0x00000000`) without an ESP or loader needs
//! nothing, as in IPA. Otherwise (a partition image, or UEFI without loaders on the ESP) the
//! image's own GRUB is installed from a chroot ([`crate::image::grub`]), in BIOS mode only when
//! `enable_bios_bootloader_install` (the setting, or the lookup's config) is true (else IPA's
//! `InvalidImage`). PReP partitions fail
//! clearly. `ignore_bootloader_failure` (the parameter, or the setting when the parameter is
//! absent) turns any failure into a logged error, as IPA does.

use rivet_protocol::JsonObject;
use serde_json::Value;

use super::catalog::{required, Env};
use super::failure::Failure;
use super::output::CommandOutput;
use crate::efi::{ensure_efivarfs, manage_uefi, Efivarfs, EFIVARS_DIR};
use crate::image::grub::{find_partition, install_grub, GrubTarget};

const COMMAND: &str = "install_bootloader";

fn optional_str<'a>(params: &'a JsonObject, name: &str) -> Result<Option<&'a str>, Failure> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(Failure::execution(format!(
            "{COMMAND}: '{name}' must be a string or null, got {other}"
        ))),
    }
}

pub(crate) fn install_bootloader(params: &JsonObject, env: &Env) -> Result<CommandOutput, Failure> {
    required(params, COMMAND, "root_uuid").map_err(Failure::execution)?;
    let root_uuid = optional_str(params, "root_uuid")?;
    let efi = optional_str(params, "efi_system_part_uuid")?;
    let prep = optional_str(params, "prep_boot_part_uuid")?;
    let boot_mode = optional_str(params, "target_boot_mode")?.unwrap_or("bios");
    let ignore_failure = match params.get("ignore_bootloader_failure") {
        None | Some(Value::Null) => env.ctx.settings.ignore_bootloader_failure,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(Failure::execution(format!(
                "{COMMAND}: 'ignore_bootloader_failure' must be a boolean, got {other}"
            )))
        }
    };

    let whole_disk = matches!(root_uuid, None | Some("0x00000000"));
    let outcome = match uefi_entries(env, boot_mode, efi) {
        Ok(true) if prep.is_none() => Ok(()),
        Ok(_) if whole_disk && efi.is_none() && prep.is_none() => {
            tracing::info!(
                boot_mode,
                "whole-disk image without a root UUID: no boot loader to install"
            );
            Ok(())
        }
        Ok(_) => grub(env, boot_mode, root_uuid, efi, prep),
        Err(problem) => Err(Failure::execution(problem)),
    };
    match outcome {
        Ok(()) => Ok(CommandOutput::none()),
        Err(failure) if ignore_failure => {
            tracing::error!(problem = %failure.error.details, "boot loader not installed; ignored as requested");
            Ok(CommandOutput::none())
        }
        Err(failure) => Err(failure),
    }
}

/// IPA's `_install_grub2`: the image's own GRUB on the disk `write_image` wrote, from a
/// chroot into its root partition (and ESP in UEFI); then, in UEFI, boot entries for what
/// GRUB put on the ESP.
fn grub(
    env: &Env,
    boot_mode: &str,
    root_uuid: Option<&str>,
    efi: Option<&str>,
    prep: Option<&str>,
) -> Result<(), Failure> {
    if let Some(prep) = prep {
        return Err(Failure::execution(format!(
            "installing a boot loader on a PReP partition (prep_boot_part_uuid={prep}) is \
             not supported by this build of rivet-agent"
        )));
    }
    let uefi = boot_mode == "uefi";
    // The setting, or the lookup's `config.enable_bios_bootloader_install` (the conductor's
    // `[agent]enable_bios_bootloader_install`), which the runtime state holds.
    if !uefi && !env.ctx.state().enable_bios_bootloader_install {
        return Err(Failure::new(
            "InvalidImage",
            500,
            "The image is invalid",
            "installing a BIOS boot loader (GRUB) is disabled: \
             enable_bios_bootloader_install is false",
        ));
    }
    let Some(disk) = env.ctx.state().root_device else {
        return Err(Failure::execution(
            "no disk to install a boot loader on: write_image has not written one",
        ));
    };
    let file = std::fs::File::open(&disk)
        .map_err(|e| Failure::execution(format!("opening {}: {e}", disk.display())))?;
    let find = |what: &str, uuid: &str| {
        find_partition(&disk, &file, uuid).ok_or_else(|| {
            Failure::new(
                "DeviceNotFound",
                404,
                "Error finding the disk or partition device to deploy the image onto",
                format!(
                    "no partition with UUID {uuid} ({what}) on {}",
                    disk.display()
                ),
            )
        })
    };
    let root_uuid = root_uuid.ok_or_else(|| {
        Failure::execution("installing GRUB needs the root partition's root_uuid")
    })?;
    let target = GrubTarget {
        disk: disk.clone(),
        root: find("root", root_uuid)?,
        esp: match efi {
            Some(uuid) if uefi => Some(find("EFI system partition", uuid)?),
            _ => None,
        },
    };
    drop(file);
    install_grub(env.host.boot.as_ref(), &target).map_err(Failure::execution)?;
    if uefi {
        uefi_entries(env, boot_mode, efi).map_err(Failure::execution)?;
    }
    Ok(())
}

/// In UEFI mode with a disk written by `write_image`: boot entries for its ESP's loaders.
/// `Ok(true)` when entries were written, `Ok(false)` when there was nothing to do.
fn uefi_entries(env: &Env, boot_mode: &str, efi: Option<&str>) -> Result<bool, String> {
    if boot_mode != "uefi" {
        return Ok(false);
    }
    let Some(device) = env.ctx.state().root_device else {
        return Ok(false);
    };
    let disk =
        std::fs::File::open(&device).map_err(|e| format!("opening {}: {e}", device.display()))?;
    ensure_efivarfs(&env.host.root);
    let vars = Efivarfs::new(env.host.root.join(EFIVARS_DIR));
    match manage_uefi(&disk, efi, &vars)? {
        Some(outcome) => {
            for (number, label, loader) in &outcome.entries {
                tracing::info!(
                    device = %device.display(),
                    entry = format!("Boot{number:04X}"),
                    %label,
                    %loader,
                    "UEFI boot entry written"
                );
            }
            Ok(true)
        }
        None => {
            tracing::info!(device = %device.display(), "no EFI system partition or boot loader on the disk");
            Ok(false)
        }
    }
}
