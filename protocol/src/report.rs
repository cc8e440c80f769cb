//! rivet's plan-mode reports (not part of Ironic's API): what an agent in plan mode posts to
//! rivet-server's report endpoint, which `GET /` announces under `rivet.reports`.
//!
//! An agent numbers its reports with `seq` (1, 2, ...) within one `boot_id` (a fresh random id
//! per boot), buffers them while the server is unreachable and resends them: the server
//! stores each `(boot_id, seq)` once, so resending is always safe.

use serde::{Deserialize, Serialize};

/// The body of one report post. `Debug` never shows the token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportBatch {
    pub agent_token: String,
    pub boot_id: String,
    pub reports: Vec<Report>,
}

impl std::fmt::Debug for ReportBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportBatch")
            .field("agent_token", &"<redacted>")
            .field("boot_id", &self.boot_id)
            .field("reports", &self.reports)
            .finish()
    }
}

/// One report: its number within the boot and what it says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub seq: u64,
    #[serde(flatten)]
    pub body: ReportBody,
}

/// What a report says, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReportBody {
    /// A plan step started, progressed or ended. `index` is the step's place in the plan.
    Step {
        index: u32,
        name: String,
        state: StepState,
        /// 0.0 to 1.0, when the step can tell.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        progress: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// The proof of one device's erase (method, duration, verification).
    Erase {
        message: String,
        data: serde_json::Value,
    },
    /// Anything else worth keeping in the node's history.
    Event {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<serde_json::Value>,
    },
    /// The inventory the plan's `inspect` step collected (Ironic's inventory format), which
    /// the server keeps as the node's inventory.
    Inventory { inventory: serde_json::Value },
    /// The agent is alive and its plan runs (a step without progress to report runs
    /// long). Not kept in the node's history: the server only notes when it last heard.
    Heartbeat {},
    /// The whole plan ended.
    Plan {
        state: PlanState,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    Running,
    Done,
    Failed,
    Skipped,
}

impl StepState {
    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Running => "running",
            StepState::Done => "done",
            StepState::Failed => "failed",
            StepState::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanState {
    Done,
    Failed,
}

/// The 202 answer: how many reports were new and how many had been stored before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAck {
    pub stored: u32,
    pub duplicates: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_tagged_by_kind() -> Result<(), serde_json::Error> {
        let wire = serde_json::json!({"seq": 3, "kind": "step", "index": 0,
                                      "name": "erase_devices", "state": "running", "progress": 0.5});
        let report: Report = serde_json::from_value(wire.clone())?;
        assert_eq!(
            report.body,
            ReportBody::Step {
                index: 0,
                name: "erase_devices".into(),
                state: StepState::Running,
                progress: Some(0.5),
                message: None
            }
        );
        assert_eq!(serde_json::to_value(&report)?, wire);
        Ok(())
    }

    #[test]
    fn a_heartbeat_is_only_its_kind() -> Result<(), serde_json::Error> {
        let report = Report {
            seq: 9,
            body: ReportBody::Heartbeat {},
        };
        let wire = serde_json::json!({"seq": 9, "kind": "heartbeat"});
        assert_eq!(serde_json::to_value(&report)?, wire);
        assert_eq!(serde_json::from_value::<Report>(wire)?, report);
        Ok(())
    }

    #[test]
    fn debug_hides_the_token() {
        let batch = ReportBatch {
            agent_token: "s3cret".into(),
            boot_id: "b".into(),
            reports: vec![],
        };
        assert!(!format!("{batch:?}").contains("s3cret"));
    }
}
