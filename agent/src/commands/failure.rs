//! How a command fails: the status and IPA-shaped `command_error` (spec §3.4, IPA/errors.py).

use rivet_protocol::command::{CommandError, CommandStatus};
use rivet_protocol::steps::{HardwareManagerVersion, StepType};
use rivet_protocol::JsonObject;

use crate::steps::StepError;

/// A failed (or version-mismatched) command.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub status: CommandStatus,
    pub error: CommandError,
}

impl Failure {
    /// A `FAILED` command with an IPA error of type `type_`.
    pub fn new(type_: &str, code: u16, message: &str, details: impl Into<String>) -> Self {
        Failure {
            status: CommandStatus::Failed,
            error: CommandError {
                type_: type_.to_string(),
                code,
                message: message.to_string(),
                details: details.into(),
                extra: JsonObject::new(),
            },
        }
    }

    /// IPA's wrapping of an unexpected error: `CommandExecutionError`, 500,
    /// "Command execution failed".
    pub fn execution(details: impl Into<String>) -> Self {
        Failure::new(
            "CommandExecutionError",
            500,
            "Command execution failed",
            details,
        )
    }

    /// `CLEAN_VERSION_MISMATCH` with IPA's `VersionMismatch` error (code 409).
    pub fn version_mismatch(ours: &HardwareManagerVersion, theirs: &serde_json::Value) -> Self {
        let ours = serde_json::to_string(ours).unwrap_or_default();
        Failure {
            status: CommandStatus::CleanVersionMismatch,
            ..Failure::new(
                "VersionMismatch",
                409,
                "Hardware managers version mismatch, reload agent with correct version",
                format!("Current versions: {ours}, versions used by ironic: {theirs}"),
            )
        }
    }

    /// A step that did not succeed: IPA's `CleaningError` / `DeploymentError` /
    /// `ServicingError`, or the step's own IPA error type.
    pub fn step(step_type: StepType, error: StepError) -> Self {
        match error {
            StepError::NoManager(_) => Failure::new(
                "HardwareManagerMethodNotFound",
                500,
                "No HardwareManager found to handle method",
                error.to_string(),
            ),
            StepError::Ipa {
                type_,
                code,
                message,
                details,
            } => Failure::new(&type_, code, &message, details),
            other => {
                let (type_, message) = match step_type {
                    StepType::Clean => ("CleaningError", "Clean step failed"),
                    StepType::Deploy => ("DeploymentError", "Deploy step failed"),
                    StepType::Service => ("ServicingError", "Service step failed"),
                };
                Failure::new(type_, 500, message, other.to_string())
            }
        }
    }
}
