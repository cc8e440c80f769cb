//! `GenericHardwareManager`: IPA's generic steps with IPA's names, interfaces, priorities,
//! abortable flags and argsinfo (spec §6.2, IPA/hardware.py `get_*_steps`).
//!
//! `write_image` is [`crate::image::step`]; the erase steps (`erase_devices`,
//! `erase_devices_metadata`, `erase_devices_express`) run through [`crate::erase`]. The other
//! steps' work is not implemented in this build yet: each one fails with "<step> is not
//! supported by this build of rivet-agent" rather than pretending to succeed.

use std::collections::BTreeMap;
use std::sync::Arc;

use rivet_protocol::steps::{ArgInfo, Step, StepType};
use serde_json::Value;

use super::{step, HardwareManager, HardwareSupport, StepCall, StepError};
use crate::disks::sysfs::SysfsBlockDevices;
use crate::disks::BlockDevices;
use crate::erase::{self, EraseCall, EraseHost, EraseMode, SystemEraseHost};
use crate::settings::Settings;

const CLEAN_UEFI_NVRAM_ARGSINFO: &[(&str, &str, bool)] = &[(
    "match_patterns",
    "Json blob contains a list of regex patterns where any UEFI NVRAM entry matching that \
     pattern will be deleted. Default value is '[\"^HD\\(\", \"shim.*\\.efi\", \"grub.*\\.efi\"]'",
    false,
)];

const RAID_APPLY_CONFIGURATION_ARGSINFO: &[(&str, &str, bool)] = &[
    ("raid_config", "The RAID configuration to apply.", true),
    (
        "delete_existing",
        "Setting this to 'True' indicates to delete existing RAID configuration prior to \
         creating the new configuration. Default value is 'True'.",
        false,
    ),
];

const INJECT_FILES_ARGSINFO: &[(&str, &str, bool)] = &[
    (
        "files",
        "Files to inject, a list of file structures with keys: 'path' (path to the file), \
         'partition' (partition specifier), 'content' (base64 encoded string), 'mode' (new \
         file mode) and 'dirmode' (mode for the leaf directory, if created). Merged with the \
         values from node.properties[inject_files].",
        false,
    ),
    (
        "verify_ca",
        "Whether to verify TLS certificates. Global agent options are used by default.",
        false,
    ),
];

/// Every step name the generic manager implements in IPA.
const STEP_NAMES: &[&str] = &[
    "erase_devices",
    "erase_devices_metadata",
    "erase_devices_express",
    "erase_pstore",
    "clean_uefi_nvram",
    "delete_configuration",
    "create_configuration",
    "apply_configuration",
    "burnin_cpu",
    "burnin_gpu",
    "burnin_disk",
    "burnin_memory",
    "burnin_network",
    "write_image",
    "inject_files",
    "execute_bootc_install",
];

fn argsinfo(spec: &[(&str, &str, bool)]) -> Option<BTreeMap<String, ArgInfo>> {
    Some(
        spec.iter()
            .map(|(name, description, required)| {
                (
                    name.to_string(),
                    ArgInfo {
                        description: description.to_string(),
                        required: *required,
                    },
                )
            })
            .collect(),
    )
}

fn abortable(mut s: Step) -> Step {
    s.abortable = Some(true);
    s
}

fn with_args(mut s: Step, spec: &[(&str, &str, bool)]) -> Step {
    s.argsinfo = argsinfo(spec);
    s
}

/// IPA's `GenericHardwareManager` (`generic_hardware_manager`, version 1.2).
#[derive(Clone)]
pub struct GenericHardwareManager {
    inject_files_priority: i64,
    /// Where disk steps list devices (sysfs; a fake in tests).
    devices: Arc<dyn BlockDevices>,
    settings: Settings,
    /// What the erase steps act on (this machine through `disks::writable_candidates`; a
    /// fake in tests).
    erase_host: Arc<dyn EraseHost>,
}

impl std::fmt::Debug for GenericHardwareManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenericHardwareManager")
            .field("inject_files_priority", &self.inject_files_priority)
            .finish_non_exhaustive()
    }
}

impl GenericHardwareManager {
    pub const NAME: &'static str = "generic_hardware_manager";
    pub const CLASS_NAME: &'static str = "GenericHardwareManager";
    pub const VERSION: &'static str = "1.2";

    /// The manager acting on this machine's disks (only those `disks::writable_candidates`
    /// allows).
    pub fn new(settings: &Settings) -> Self {
        GenericHardwareManager {
            inject_files_priority: settings.inject_files_priority,
            devices: Arc::new(SysfsBlockDevices::from_settings(settings)),
            settings: settings.clone(),
            erase_host: Arc::new(SystemEraseHost::for_settings(settings)),
        }
    }

    /// The same manager listing devices from `devices`.
    pub fn with_block_devices(mut self, devices: Arc<dyn BlockDevices>) -> Self {
        self.devices = devices;
        self
    }

    /// The same manager with the erase steps acting through `erase_host`.
    pub fn with_erase_host(mut self, erase_host: Arc<dyn EraseHost>) -> Self {
        self.erase_host = erase_host;
        self
    }

    fn clean_steps(&self) -> Vec<Step> {
        vec![
            abortable(step("erase_devices", 10, "deploy")),
            abortable(step("erase_devices_metadata", 99, "deploy")),
            abortable(step("erase_devices_express", 0, "deploy")),
            abortable(step("erase_pstore", 0, "deploy")),
            with_args(
                abortable(step("clean_uefi_nvram", 0, "deploy")),
                CLEAN_UEFI_NVRAM_ARGSINFO,
            ),
            abortable(step("delete_configuration", 0, "raid")),
            abortable(step("create_configuration", 0, "raid")),
            abortable(step("burnin_cpu", 0, "deploy")),
            abortable(step("burnin_gpu", 0, "deploy")),
            abortable(step("burnin_disk", 0, "deploy")),
            abortable(step("burnin_memory", 0, "deploy")),
            abortable(step("burnin_network", 0, "deploy")),
        ]
    }

    fn deploy_steps(&self) -> Vec<Step> {
        vec![
            step("erase_devices_metadata", 0, "deploy"),
            with_args(
                step("apply_configuration", 0, "raid"),
                RAID_APPLY_CONFIGURATION_ARGSINFO,
            ),
            with_args(
                step("clean_uefi_nvram", 0, "deploy"),
                CLEAN_UEFI_NVRAM_ARGSINFO,
            ),
            step("write_image", 0, "deploy"),
            with_args(
                step("inject_files", self.inject_files_priority, "deploy"),
                INJECT_FILES_ARGSINFO,
            ),
            step("execute_bootc_install", 0, "deploy"),
        ]
    }

    /// IPA leaves `burnin_disk` out of service steps on purpose (it destroys data).
    fn service_steps(&self) -> Vec<Step> {
        vec![
            abortable(step("delete_configuration", 0, "raid")),
            with_args(
                step("apply_configuration", 0, "raid"),
                RAID_APPLY_CONFIGURATION_ARGSINFO,
            ),
            abortable(step("create_configuration", 0, "raid")),
            abortable(step("burnin_cpu", 0, "deploy")),
            abortable(step("burnin_gpu", 0, "deploy")),
            abortable(step("burnin_memory", 0, "deploy")),
            abortable(step("burnin_network", 0, "deploy")),
            step("write_image", 0, "deploy"),
            with_args(
                step("inject_files", self.inject_files_priority, "deploy"),
                INJECT_FILES_ARGSINFO,
            ),
            step("execute_bootc_install", 0, "deploy"),
        ]
    }
}

impl HardwareManager for GenericHardwareManager {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn class_name(&self) -> &str {
        Self::CLASS_NAME
    }

    fn version(&self) -> &str {
        Self::VERSION
    }

    fn support(&self) -> HardwareSupport {
        HardwareSupport::GENERIC
    }

    fn steps(&self) -> Vec<(StepType, Step)> {
        let typed = |kind: StepType, steps: Vec<Step>| steps.into_iter().map(move |s| (kind, s));
        typed(StepType::Clean, self.clean_steps())
            .chain(typed(StepType::Deploy, self.deploy_steps()))
            .chain(typed(StepType::Service, self.service_steps()))
            .collect()
    }

    fn execute(&self, step: &str, call: &StepCall<'_>) -> Result<Value, StepError> {
        if step == "write_image" {
            let in_ramdisk = crate::init::running_as_init();
            return crate::image::step::write_image(self.devices.as_ref(), in_ramdisk, call);
        }
        let mode = match step {
            "erase_devices" => Some(EraseMode::Full),
            "erase_devices_metadata" => Some(EraseMode::Metadata),
            "erase_devices_express" => Some(EraseMode::Express),
            _ => None,
        };
        if let Some(mode) = mode {
            let erase_call = EraseCall {
                node: call.node,
                settings: &self.settings,
                progress: call.progress,
                abort: &call.ctx.abort,
                attachments: &call.ctx.attachments,
            };
            return erase::erase_step(self.erase_host.as_ref(), mode, &erase_call);
        }
        if STEP_NAMES.contains(&step) {
            Err(StepError::NotSupported(step.to_string()))
        } else {
            Err(StepError::Unhandled(step.to_string()))
        }
    }
}
