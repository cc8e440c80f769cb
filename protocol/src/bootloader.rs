//! `image.install_bootloader` params (spec §4).

use serde::{Deserialize, Serialize};

use crate::inventory::BootMode;
use crate::JsonObject;

/// What Ironic sends to `image.install_bootloader`. Ironic always sends the three partition
/// UUIDs (null when unknown; whole-disk images have no root UUID); `target_boot_mode` is
/// left out when Ironic retries after an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstallBootloaderParams {
    #[serde(default)]
    pub root_uuid: Option<String>,
    #[serde(default)]
    pub efi_system_part_uuid: Option<String>,
    #[serde(default)]
    pub prep_boot_part_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_boot_mode: Option<BootMode>,
    /// Accepted by IPA, never sent by Ironic 39.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_bootloader_failure: Option<bool>,
    #[serde(flatten)]
    pub extra: JsonObject,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_disk_uefi_params_round_trip() -> Result<(), serde_json::Error> {
        let wire = serde_json::json!({
            "root_uuid": null, "efi_system_part_uuid": null, "prep_boot_part_uuid": null,
            "target_boot_mode": "uefi",
        });
        let params: InstallBootloaderParams = serde_json::from_value(wire.clone())?;
        assert_eq!(params.target_boot_mode, Some(BootMode::Uefi));
        assert_eq!(params.root_uuid, None);
        assert_eq!(serde_json::to_value(&params)?, wire);
        Ok(())
    }
}
