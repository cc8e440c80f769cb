//! `image.install_bootloader` (spec §4; IPA/extensions/image.py).
//!
//! In UEFI mode, after `write_image`, boot entries are added for the loaders on the written
//! disk's EFI system partition (the one named by `efi_system_part_uuid`, else the first of
//! ESP type) through efivarfs, as IPA's `manage_uefi` does with efibootmgr ([`crate::efi`]).
//! A whole-disk image (`root_uuid` null or `0x00000000`) without an ESP or loader needs
//! nothing, as in IPA. This build installs no GRUB (BIOS) and sets up no PReP partition:
//! those fail clearly, unless `ignore_bootloader_failure` (the parameter, or the setting when
//! the parameter is absent) says to carry on, as IPA does for its own failures.

use rivet_protocol::JsonObject;
use serde_json::Value;

use super::catalog::{required, Env};
use super::failure::Failure;
use super::output::CommandOutput;
use crate::efi::{manage_uefi, Efivarfs, EFIVARS_DIR};

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
    let uefi = match uefi_entries(env, boot_mode, efi) {
        Ok(done) => done,
        Err(problem) if ignore_failure => {
            tracing::error!(%problem, "boot entries not set up; ignored as requested");
            return Ok(CommandOutput::none());
        }
        Err(problem) => return Err(Failure::execution(problem)),
    };
    let problem = if uefi && prep.is_none() {
        None
    } else if efi.is_some() || prep.is_some() {
        Some(format!(
            "setting up a boot loader on a partition (efi_system_part_uuid={}, \
             prep_boot_part_uuid={}) is not supported by this build of rivet-agent",
            efi.unwrap_or("None"),
            prep.unwrap_or("None")
        ))
    } else if !whole_disk {
        Some(format!(
            "installing a boot loader for a partition image (root_uuid={}) is not supported \
             by this build of rivet-agent",
            root_uuid.unwrap_or("None")
        ))
    } else {
        None
    };

    match problem {
        None => {
            tracing::info!(
                boot_mode,
                "whole-disk image without a root UUID: no boot loader to install"
            );
            Ok(CommandOutput::none())
        }
        Some(problem) if ignore_failure => {
            tracing::error!(%problem, "boot loader not installed; ignored as requested");
            Ok(CommandOutput::none())
        }
        Some(problem) => Err(Failure::execution(problem)),
    }
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
