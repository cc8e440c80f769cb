//! The erase report of one device: what it is, what was done, when, and what the read-back
//! showed. Returned as the step's result and kept for `log.collect_system_logs`
//! (`erase-reports.json`).

use std::time::SystemTime;

use serde::Serialize;
use serde_json::Value;

use super::verify::Verification;
use crate::disks::{BlockDevice, DeviceKind};

/// How the device's erase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Erased,
    /// Left alone on purpose (boot medium, RAID member, read-only with the skip knob...).
    Skipped,
    /// Not erased because it must not be (protected, read-only): the step failed.
    Refused,
    Failed,
    /// Not started because another device was refused.
    NotStarted,
}

/// One method tried on the device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptReport {
    pub method: String,
    pub succeeded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Method-specific facts: the controller's estimate, the ATA timeout, the signatures a
    /// metadata erase removed...
    #[serde(skip_serializing_if = "Value::is_null")]
    pub detail: Value,
    pub started_at: String,
    pub finished_at: String,
}

/// The report of one device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EraseReport {
    pub device: String,
    pub kind: DeviceKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
    pub size_bytes: u64,
    /// The step that erased it.
    pub step: &'static str,
    pub outcome: Outcome,
    /// The method that erased it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Why it was skipped, refused or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<AttemptReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl EraseReport {
    /// A report with the device's identity and nothing done yet.
    pub fn new(device: &BlockDevice, step: &'static str, outcome: Outcome) -> Self {
        EraseReport {
            device: device.path.display().to_string(),
            kind: device.kind,
            model: device.model.clone(),
            serial: device.serial.clone(),
            size_bytes: device.size_bytes,
            step,
            outcome,
            method: None,
            reason: None,
            started_at: None,
            finished_at: None,
            seconds: None,
            attempts: Vec::new(),
            verification: None,
            notes: Vec::new(),
        }
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// `SystemTime` as RFC 3339 UTC with microseconds.
pub fn timestamp(at: SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.microsecond()
    )
}

/// The reports of one step run, as kept for the system logs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepReports {
    pub step: &'static str,
    pub started_at: String,
    pub finished_at: String,
    pub devices: Vec<EraseReport>,
}
