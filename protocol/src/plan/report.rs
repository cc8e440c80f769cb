//! The JSON report of one plan run: printed on the console at the end, written to the
//! plan's report medium (where it is also the completion record a re-run looks for) and
//! posted to the report URL inside a [`crate::report::ReportBatch`] (as the `data` of the
//! final `event` report).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Identity;
pub use crate::report::StepState;

/// Format version of [`PlanReport`]; also the value of its `rivet_report` key, which a
/// report medium must start with (`{"rivet_report":`) to be overwritten.
pub const REPORT_VERSION: u32 = 1;
/// The bytes a report medium holding a report starts with.
pub const REPORT_MAGIC: &[u8] = b"{\"rivet_report\":";

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Written before the first step: a report still saying this means the run was cut
    /// short (power loss, crash).
    Running,
    Done,
    Failed,
    /// The plan completed here before and `rerun` is `never`: nothing destructive ran.
    AlreadyDone,
}

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub index: u32,
    pub step: String,
    pub state: StepState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// What the step returned (for `inspect`: the inventory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The report of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanReport {
    /// [`REPORT_VERSION`]; first key, so a medium holding a report starts with
    /// [`REPORT_MAGIC`].
    pub rivet_report: u32,
    pub plan: String,
    /// [`super::Plan::digest`] of the plan that ran.
    pub plan_sha256: String,
    /// The plan's machine that matched, if the plan names machines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<String>,
    pub identity: Identity,
    /// A fresh random id per boot.
    pub boot_id: String,
    /// Seconds since the Unix epoch.
    pub started_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<u64>,
    pub state: RunState,
    pub steps: Vec<StepRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When `state` is `already_done`: the `finished_at` of the run that completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<u64>,
}

impl PlanReport {
    /// Whether this report records that plan `digest` completed on the machine `identity`
    /// (same system UUID when both know one, else a shared MAC).
    pub fn records_completion(&self, digest: &str, identity: &Identity) -> bool {
        let completed = matches!(self.state, RunState::Done | RunState::AlreadyDone);
        let same_machine = match (&self.identity.system_uuid, &identity.system_uuid) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => self
                .identity
                .macs
                .iter()
                .any(|a| identity.macs.iter().any(|b| a.eq_ignore_ascii_case(b))),
        };
        completed && self.plan_sha256 == digest && same_machine
    }

    /// When the recorded completion happened.
    pub fn completion_time(&self) -> Option<u64> {
        match self.state {
            RunState::AlreadyDone => self.completed_at,
            _ => self.finished_at,
        }
    }

    /// Reads a report back from the start of a report medium: the JSON document up to the
    /// first NUL byte. `Ok(None)`: the medium is blank (starts with a NUL byte).
    pub fn from_medium(bytes: &[u8]) -> Result<Option<PlanReport>, String> {
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        if end == 0 {
            return Ok(None);
        }
        if !bytes.starts_with(REPORT_MAGIC) {
            return Err("it holds something other than a rivet report".into());
        }
        serde_json::from_slice(&bytes[..end])
            .map(Some)
            .map_err(|e| format!("its rivet report does not parse: {e}"))
    }
}
