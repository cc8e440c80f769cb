//! The erase knobs (spec §8.1): what Ironic puts into `driver_internal_info`, with IPA's
//! defaults, plus the agent's own settings.

use serde_json::Value;

use crate::disks::hints::{parse_skip_list, RootDeviceHints};
use crate::settings::{NvmeSanitize, Settings};

/// Everything that decides how devices are erased.
#[derive(Debug, Clone, PartialEq)]
pub struct Knobs {
    /// `agent_erase_devices_iterations` (1): random overwrite passes.
    pub iterations: u32,
    /// `agent_erase_devices_zeroize` (true): a final pass of zeroes.
    pub zeroize: bool,
    /// `agent_continue_if_secure_erase_failed`, else the legacy
    /// `agent_continue_if_ata_erase_failed` (false): overwrite after a failed secure erase.
    pub continue_if_secure_erase_failed: bool,
    /// `agent_enable_nvme_secure_erase` (true).
    pub enable_nvme_secure_erase: bool,
    /// `agent_enable_ata_secure_erase` (true).
    pub enable_ata_secure_erase: bool,
    /// `disk_erasure_concurrency`: devices erased at once. IPA uses 1 when Ironic does not
    /// send it; rivet erases every device at once then (`None`).
    pub concurrency: Option<usize>,
    /// `agent_erase_skip_read_only` (false): skip read-only devices instead of failing.
    pub skip_read_only: bool,
    /// `agent_enable_discard_erase`, else the `ipa-enable-discard-erase` setting (false).
    pub enable_discard_erase: bool,
    /// `ipa-guard-special-filesystems` (true) and not
    /// `driver_internal_info.wipe_special_filesystems == false`.
    pub guard_special_filesystems: bool,
    /// `rivet-nvme-sanitize` (off): whether NVMe Sanitize is preferred to Format NVM.
    pub nvme_sanitize: NvmeSanitize,
    /// `node.properties.skip_block_devices`: devices matching any of these hints are left
    /// alone (as in IPA; a deploy plan adds its report medium here).
    pub skip_block_devices: Vec<RootDeviceHints>,
}

impl Default for Knobs {
    /// IPA's defaults with Ironic sending nothing, and the agent's default settings.
    fn default() -> Self {
        Knobs {
            iterations: 1,
            zeroize: true,
            continue_if_secure_erase_failed: false,
            enable_nvme_secure_erase: true,
            enable_ata_secure_erase: true,
            concurrency: None,
            skip_read_only: false,
            enable_discard_erase: false,
            guard_special_filesystems: true,
            nvme_sanitize: NvmeSanitize::Off,
            skip_block_devices: Vec::new(),
        }
    }
}

fn flag(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Some(true),
            "0" | "false" | "no" | "off" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn number(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Knobs {
    /// Reads the knobs from `node.driver_internal_info`; a knob of the wrong type is an
    /// error naming it.
    pub fn from_node(node: &Value, settings: &Settings) -> Result<Self, String> {
        let info = node.get("driver_internal_info").unwrap_or(&Value::Null);
        let get = |key: &str| info.get(key).filter(|v| !v.is_null());
        let bool_knob = |key: &str, default: bool| -> Result<bool, String> {
            match get(key) {
                None => Ok(default),
                Some(v) => flag(v).ok_or_else(|| {
                    format!("driver_internal_info.{key} must be a boolean, got {v}")
                }),
            }
        };
        let int_knob = |key: &str| -> Result<Option<i64>, String> {
            match get(key) {
                None => Ok(None),
                Some(v) => number(v).map(Some).ok_or_else(|| {
                    format!("driver_internal_info.{key} must be an integer, got {v}")
                }),
            }
        };
        let iterations = match int_knob("agent_erase_devices_iterations")? {
            None => 1,
            Some(n) if (0..=1000).contains(&n) => n as u32,
            Some(n) => {
                return Err(format!(
                    "driver_internal_info.agent_erase_devices_iterations must be 0 to 1000, got {n}"
                ))
            }
        };
        let concurrency = match int_knob("disk_erasure_concurrency")? {
            None => None,
            Some(n) if n >= 1 => Some(n as usize),
            Some(n) => {
                return Err(format!(
                    "driver_internal_info.disk_erasure_concurrency must be at least 1, got {n}"
                ))
            }
        };
        let continue_legacy = bool_knob("agent_continue_if_ata_erase_failed", false)?;
        Ok(Knobs {
            iterations,
            zeroize: bool_knob("agent_erase_devices_zeroize", true)?,
            continue_if_secure_erase_failed: bool_knob(
                "agent_continue_if_secure_erase_failed",
                continue_legacy,
            )?,
            enable_nvme_secure_erase: bool_knob("agent_enable_nvme_secure_erase", true)?,
            enable_ata_secure_erase: bool_knob("agent_enable_ata_secure_erase", true)?,
            concurrency,
            skip_read_only: bool_knob("agent_erase_skip_read_only", false)?,
            enable_discard_erase: bool_knob(
                "agent_enable_discard_erase",
                settings.enable_discard_erase,
            )?,
            guard_special_filesystems: settings.guard_special_filesystems
                && bool_knob("wipe_special_filesystems", true)?,
            nvme_sanitize: settings.nvme_sanitize,
            skip_block_devices: parse_skip_list(
                node.pointer("/properties/skip_block_devices")
                    .unwrap_or(&Value::Null),
            )
            .map_err(|e| format!("properties.skip_block_devices: {e}"))?,
        })
    }
}

#[cfg(test)]
#[path = "tests/knobs.rs"]
mod tests;
