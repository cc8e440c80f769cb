//! Disk erase: the `erase_devices`, `erase_devices_metadata` and `erase_devices_express`
//! steps (spec §8) without external tools.
//!
//! * Devices come only from [`EraseHost::candidates`] (`disks::writable_candidates` on the
//!   real machine): as a normal process that is only what `rivet-host-disks` lists.
//! * Per device, probing (NVMe Identify, ATA IDENTIFY, protected partitions) feeds a pure
//!   [`plan`]; a refused device (protected, read-only) fails the step before anything is
//!   written.
//! * Methods: NVMe Format NVM / Sanitize (`nvme.rs`, `nvme_erase.rs`), ATA security erase
//!   (`ata.rs`, `ata_erase.rs`), discard (`discard.rs`), overwrite (`overwrite.rs`),
//!   metadata (`metadata.rs`, `signatures.rs`); each followed by a read-back check
//!   (`verify.rs`).
//! * Devices are erased in parallel: `disk_erasure_concurrency` at once, every device at
//!   once when Ironic does not send it (IPA would do one at a time).
//! * Progress per device goes to the [`ProgressBoard`]; the step returns
//!   `{"/dev/<name>": <report>}` (IPA's keys, with a report where IPA has `null`) and keeps
//!   the reports for `log.collect_system_logs` (`erase-reports.json`).

pub mod ata;
pub mod ata_erase;
mod device;
pub mod discard;
pub mod engine;
pub mod fake;
pub mod host;
pub mod io;
pub mod knobs;
pub mod metadata;
pub mod nvme;
pub mod nvme_erase;
mod nvme_pages;
pub mod overwrite;
pub mod plan;
pub mod report;
pub mod signatures;
pub mod verify;

use serde_json::{Map, Value};

pub use engine::{run_erase, EraseFailure, StepOutcome};
pub use host::{EraseHost, SystemEraseHost};
pub use knobs::Knobs;
pub use plan::{plan, EraseMode};

use crate::progress::{AbortSignal, ProgressBoard};
use crate::settings::Settings;
use crate::steps::StepError;
use crate::syslogs::LogAttachments;

/// Name of the system-log member holding the last reports of each erase step.
pub const REPORTS_ATTACHMENT: &str = "erase-reports.json";

/// What an erase step needs besides the host.
pub struct EraseCall<'a> {
    pub node: &'a Value,
    pub settings: &'a Settings,
    pub progress: &'a ProgressBoard,
    pub abort: &'a AbortSignal,
    pub attachments: &'a LogAttachments,
}

/// Runs the step for `mode`: IPA's result keys with the reports as values, or IPA's error.
pub fn erase_step(
    host: &dyn EraseHost,
    mode: EraseMode,
    call: &EraseCall<'_>,
) -> Result<Value, StepError> {
    let knobs =
        Knobs::from_node(call.node, call.settings).map_err(|message| StepError::InvalidArgs {
            step: mode.step_name().to_string(),
            message,
        })?;
    tracing::info!(?knobs, "{}: starting", mode.step_name());
    let outcome = run_erase(host, mode, &knobs, call.progress, call.abort);
    let reports = serde_json::to_value(&outcome.reports).unwrap_or(Value::Null);
    call.attachments.update(REPORTS_ATTACHMENT, |previous| {
        let mut all = match previous {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        all.insert(mode.step_name().to_string(), reports);
        Value::Object(all)
    });
    match outcome.error {
        None => Ok(Value::Object(
            outcome
                .reports
                .devices
                .iter()
                .map(|r| {
                    (
                        r.device.clone(),
                        serde_json::to_value(r).unwrap_or(Value::Null),
                    )
                })
                .collect(),
        )),
        Some(EraseFailure::Protected(details)) => Err(StepError::Ipa {
            type_: "ProtectedDeviceError".to_string(),
            code: 500,
            message: "Protected device located, cleaning aborted.".to_string(),
            details,
        }),
        Some(EraseFailure::Device(details)) => Err(StepError::Ipa {
            type_: "BlockDeviceEraseError".to_string(),
            code: 500,
            message: "Error erasing block device".to_string(),
            details,
        }),
        Some(EraseFailure::Devices(details)) => Err(StepError::Failed(details)),
    }
}

#[cfg(test)]
mod tests;
