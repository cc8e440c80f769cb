//! What to do with each device: the decision tree of spec §8.2-§8.4 as a pure function of
//! the device, what probing found and the knobs.

use super::ata::AtaIdentify;
use super::host::QueueLimits;
use super::knobs::Knobs;
use super::nvme::{SanitizeAction, SecureErase};
use super::nvme_erase::NvmeProbe;
use crate::disks::{BlockDevice, DeviceKind};
use crate::settings::NvmeSanitize;

/// Which step is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EraseMode {
    /// `erase_devices`: secure erase or overwrite of every disk.
    Full,
    /// `erase_devices_metadata`: signatures of disks and partitions.
    Metadata,
    /// `erase_devices_express`: NVMe format where possible, else metadata.
    Express,
}

impl EraseMode {
    pub fn step_name(self) -> &'static str {
        match self {
            EraseMode::Full => "erase_devices",
            EraseMode::Metadata => "erase_devices_metadata",
            EraseMode::Express => "erase_devices_express",
        }
    }
}

/// What probing an NVMe namespace gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NvmeFacts {
    /// Not an NVMe namespace, or NVMe erase is not wanted: not probed.
    NotProbed,
    Probed(Box<NvmeProbe>),
    /// The admin commands failed.
    Failed(String),
}

/// What probing a drive with ATA IDENTIFY gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AtaFacts {
    NotProbed,
    Identified(Box<AtaIdentify>),
    /// No ATA pass-through (virtio, SCSI, most USB bridges) or IDENTIFY failed.
    Unavailable(String),
}

/// Everything the plan is decided on, gathered without writing anything.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceFacts {
    pub device: BlockDevice,
    pub nvme: NvmeFacts,
    pub ata: AtaFacts,
    pub limits: QueueLimits,
    /// A protected partition type or file system found on it (spec §8.2).
    pub protected: Option<String>,
}

/// One way of erasing a device.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum Method {
    NvmeFormat {
        erase: SecureErase,
        all_namespaces: bool,
    },
    NvmeSanitize {
        action: SanitizeAction,
    },
    AtaSecurityErase {
        enhanced: bool,
    },
    /// A secure erase that cannot be done, known before trying (IPA raises here too).
    SecureEraseUnavailable {
        reason: String,
    },
    Discard,
    Overwrite {
        passes: u32,
        zeroize: bool,
    },
    Metadata,
}

impl Method {
    /// The short name used in progress and reports.
    pub fn name(&self) -> String {
        match self {
            Method::NvmeFormat { erase, .. } => match erase {
                SecureErase::Cryptographic => "nvme-format-crypto-erase".into(),
                SecureErase::UserData => "nvme-format-user-data-erase".into(),
            },
            Method::NvmeSanitize { action } => format!("nvme-sanitize-{}", action.name()),
            Method::AtaSecurityErase { enhanced: true } => "ata-security-erase-enhanced".into(),
            Method::AtaSecurityErase { enhanced: false } => "ata-security-erase".into(),
            Method::SecureEraseUnavailable { .. } => "secure-erase".into(),
            Method::Discard => "discard".into(),
            Method::Overwrite { passes, zeroize } => {
                format!(
                    "overwrite ({passes} random pass{}{})",
                    if *passes == 1 { "" } else { "es" },
                    if *zeroize { " + zeroes" } else { "" }
                )
            }
            Method::Metadata => "metadata".into(),
        }
    }
}

/// What happens when an attempt fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Try the next attempt.
    Next,
    /// The device's erase fails.
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Attempt {
    #[serde(flatten)]
    pub method: Method,
    pub on_failure: OnFailure,
}

/// The decision for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Left alone, and that is fine.
    Skip { reason: String },
    /// Must not be erased, and the step fails (before anything is written).
    Refuse { reason: String, protected: bool },
    /// Attempts in order until one succeeds.
    Erase {
        attempts: Vec<Attempt>,
        notes: Vec<String>,
    },
}

fn skip(reason: impl Into<String>) -> Plan {
    Plan::Skip {
        reason: reason.into(),
    }
}

fn is_nvme(device: &BlockDevice) -> bool {
    device.kind == DeviceKind::Disk && device.name.starts_with("nvme")
}

/// Why the device is left out whatever the mode, if it is.
fn exclusion(device: &BlockDevice, mode: EraseMode) -> Option<String> {
    if device.is_boot_medium {
        return Some("the agent was booted from it".into());
    }
    let md: Vec<&str> = device
        .holders
        .iter()
        .filter(|h| h.starts_with("md"))
        .map(String::as_str)
        .collect();
    if !md.is_empty() {
        return Some(format!(
            "it is a member of the software RAID {}",
            md.join(", ")
        ));
    }
    match device.kind {
        DeviceKind::Rom => Some("it is an optical drive".into()),
        DeviceKind::Raid => Some("it is a software RAID device; its members are erased".into()),
        DeviceKind::Partition if mode == EraseMode::Full => {
            Some("partitions are erased with their disk".into())
        }
        _ => None,
    }
}

/// The NVMe methods this controller allows for `mode`, best first; or why there is none.
fn nvme_method(probe: &NvmeProbe, knobs: &Knobs, mode: EraseMode) -> Result<Method, String> {
    let ctrl = &probe.controller;
    let others = probe.other_namespaces();
    let others_text = || {
        if others == [0] {
            format!(
                "the controller supports {} namespaces and cannot list the active ones",
                ctrl.namespaces
            )
        } else {
            let list: Vec<String> = others.iter().map(u32::to_string).collect();
            format!("the controller has other namespaces ({})", list.join(", "))
        }
    };
    let sanicap = ctrl.sanitize();
    let wanted: &[SanitizeAction] = match (knobs.nvme_sanitize, mode) {
        (NvmeSanitize::Off, _) => &[],
        (_, EraseMode::Express) | (NvmeSanitize::Crypto, _) => &[SanitizeAction::CryptoErase],
        (NvmeSanitize::Block, _) => &[SanitizeAction::CryptoErase, SanitizeAction::BlockErase],
        (NvmeSanitize::Overwrite, _) => &[
            SanitizeAction::CryptoErase,
            SanitizeAction::BlockErase,
            SanitizeAction::Overwrite,
        ],
    };
    let supported = |a: &SanitizeAction| match a {
        SanitizeAction::CryptoErase => sanicap.crypto_erase,
        SanitizeAction::BlockErase => sanicap.block_erase,
        SanitizeAction::Overwrite => sanicap.overwrite,
        SanitizeAction::ExitFailureMode => false,
    };
    if let Some(action) = wanted.iter().find(|a| supported(a)) {
        if others.is_empty() {
            return Ok(Method::NvmeSanitize { action: *action });
        }
    }
    if !ctrl.format_supported() {
        return Err(format!(
            "the NVMe controller does not support Format NVM (OACS {:#x}){}",
            ctrl.oacs,
            if sanicap.any() && knobs.nvme_sanitize == NvmeSanitize::Off {
                "; it supports Sanitize, which rivet-nvme-sanitize can enable"
            } else {
                ""
            }
        ));
    }
    let erase = if ctrl.crypto_erase_supported() {
        SecureErase::Cryptographic
    } else {
        SecureErase::UserData
    };
    let all_namespaces = ctrl.format_applies_to_all() || ctrl.secure_erase_applies_to_all();
    if all_namespaces && !others.is_empty() {
        return Err(format!(
            "a secure Format NVM on this controller erases every namespace (FNA {:#x}) and {}",
            ctrl.fna,
            others_text()
        ));
    }
    Ok(Method::NvmeFormat {
        erase,
        all_namespaces,
    })
}

/// The secure erase for `erase_devices`: `None` when the device has none (the overwrite
/// follows, as IPA's "unsupported"), else the method to try, which may be one already known
/// to fail (IPA's `BlockDeviceEraseError`, after which discard and the continue knob decide).
fn secure_erase(facts: &DeviceFacts, knobs: &Knobs) -> Option<Method> {
    let device = &facts.device;
    if is_nvme(device) {
        if !knobs.enable_nvme_secure_erase {
            return None;
        }
        return Some(match &facts.nvme {
            NvmeFacts::Probed(probe) => match nvme_method(probe, knobs, EraseMode::Full) {
                Ok(method) => method,
                Err(reason) => Method::SecureEraseUnavailable { reason },
            },
            NvmeFacts::Failed(reason) => Method::SecureEraseUnavailable {
                reason: format!("identifying the NVMe controller failed: {reason}"),
            },
            NvmeFacts::NotProbed => Method::SecureEraseUnavailable {
                reason: "the NVMe controller was not identified".into(),
            },
        });
    }
    if !knobs.enable_ata_secure_erase {
        return None;
    }
    match &facts.ata {
        AtaFacts::Identified(id) if id.security.supported => Some(if id.security.frozen {
            Method::SecureEraseUnavailable {
                reason: format!(
                    "ATA security of {} is frozen (SECURITY FREEZE LOCK, normally sent by the \
                     firmware at boot). To fix: suspend to RAM and resume (echo mem > \
                     /sys/power/state) or hot-plug the drive, or turn the freeze off in the \
                     firmware setup, then clean again",
                    device.path.display()
                ),
            }
        } else {
            Method::AtaSecurityErase {
                enhanced: id.security.enhanced_erase_supported,
            }
        }),
        _ => None,
    }
}

/// Decides what to do with one device.
pub fn plan(facts: &DeviceFacts, knobs: &Knobs, mode: EraseMode) -> Plan {
    let device = &facts.device;
    if let Some(reason) = exclusion(device, mode) {
        return skip(reason);
    }
    if device.read_only {
        if mode != EraseMode::Full || knobs.skip_read_only {
            return skip("it is read-only");
        }
        return Plan::Refuse {
            reason: format!(
                "{} is read-only and cannot be erased (set [deploy]erase_skip_read_only to \
                 skip read-only devices)",
                device.path.display()
            ),
            protected: false,
        };
    }
    if knobs.guard_special_filesystems {
        if let Some(what) = &facts.protected {
            return Plan::Refuse {
                reason: format!(
                    "Found {what} on device {} as such cleaning will not continue",
                    device.path.display()
                ),
                protected: true,
            };
        }
    }
    let mut notes = Vec::new();
    let attempt = |method, on_failure| Attempt { method, on_failure };
    let attempts = match mode {
        EraseMode::Metadata => vec![attempt(Method::Metadata, OnFailure::Fail)],
        EraseMode::Express => {
            let mut attempts = Vec::new();
            if is_nvme(device) && knobs.enable_nvme_secure_erase {
                match &facts.nvme {
                    NvmeFacts::Probed(probe) => {
                        match nvme_method(probe, knobs, EraseMode::Express) {
                            Ok(method) => attempts.push(attempt(method, OnFailure::Next)),
                            Err(reason) => notes.push(format!("no NVMe erase: {reason}")),
                        }
                    }
                    NvmeFacts::Failed(reason) => {
                        notes.push(format!("no NVMe erase: identifying failed: {reason}"))
                    }
                    NvmeFacts::NotProbed => {}
                }
            }
            attempts.push(attempt(Method::Metadata, OnFailure::Fail));
            attempts
        }
        EraseMode::Full => {
            let overwrite = Method::Overwrite {
                passes: knobs.iterations,
                zeroize: knobs.zeroize,
            };
            let nothing_to_write = knobs.iterations == 0 && !knobs.zeroize;
            match secure_erase(facts, knobs) {
                None if nothing_to_write => {
                    return skip(
                        "no secure erase applies and the overwrite has nothing to write \
                         (agent_erase_devices_iterations 0, agent_erase_devices_zeroize off)",
                    )
                }
                None => vec![attempt(overwrite, OnFailure::Fail)],
                Some(method) => {
                    let discard = knobs.enable_discard_erase && facts.limits.discard;
                    if knobs.enable_discard_erase && !facts.limits.discard {
                        notes.push("discard erase is enabled but the device cannot discard".into());
                    }
                    let go_on = discard || knobs.continue_if_secure_erase_failed;
                    let mut attempts = vec![attempt(
                        method,
                        if go_on {
                            OnFailure::Next
                        } else {
                            OnFailure::Fail
                        },
                    )];
                    if discard {
                        attempts.push(attempt(
                            Method::Discard,
                            if knobs.continue_if_secure_erase_failed {
                                OnFailure::Next
                            } else {
                                OnFailure::Fail
                            },
                        ));
                    }
                    if knobs.continue_if_secure_erase_failed {
                        attempts.push(attempt(overwrite, OnFailure::Fail));
                    }
                    attempts
                }
            }
        }
    };
    Plan::Erase { attempts, notes }
}

#[cfg(test)]
#[path = "tests/plan.rs"]
mod tests;
