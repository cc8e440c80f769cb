//! `RivetHardwareManager`: rivet's own steps. Only `sleep`, which sleeps and touches nothing;
//! it lets a manual clean, deploy template or service run exercise the whole step path. It is not
//! called `wait`: Ironic reserves `wait`, `hold`, `power_on`, `power_off` and `reboot` as
//! conductor-side step names and never sends them to the agent.

use std::time::Duration;

use rivet_protocol::steps::{ArgInfo, Step, StepType};
use rivet_protocol::JsonObject;
use serde_json::Value;

use super::{step, HardwareManager, HardwareSupport, StepCall, StepError};

/// The longest `sleep` accepted, in seconds.
pub const MAX_SLEEP_SECONDS: f64 = 3600.0;

const SLEEP: &str = "sleep";

/// `rivet_hardware_manager`, version 1.0.
#[derive(Debug, Clone, Default)]
pub struct RivetHardwareManager;

impl RivetHardwareManager {
    pub const NAME: &'static str = "rivet_hardware_manager";
    pub const CLASS_NAME: &'static str = "RivetHardwareManager";
    pub const VERSION: &'static str = "1.0";

    pub fn new() -> Self {
        RivetHardwareManager
    }

    fn sleep_step(step_type: StepType) -> Step {
        let mut s = step(SLEEP, 0, "deploy");
        if step_type == StepType::Clean {
            s.abortable = Some(true);
        }
        s.argsinfo = Some(
            [(
                "seconds".to_string(),
                ArgInfo {
                    description: format!(
                        "How long to sleep, in seconds (0 to {MAX_SLEEP_SECONDS}). The step \
                         changes nothing on the machine."
                    ),
                    required: true,
                },
            )]
            .into_iter()
            .collect(),
        );
        s
    }
}

/// Reads `seconds`: a number, or a string holding one, within 0..=3600.
fn sleep_duration(args: &JsonObject) -> Result<Duration, StepError> {
    let invalid = |message: String| StepError::InvalidArgs {
        step: SLEEP.to_string(),
        message,
    };
    let seconds = match args.get("seconds") {
        None | Some(Value::Null) => return Err(invalid("'seconds' is required".to_string())),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match seconds {
        Some(s) if s.is_finite() && (0.0..=MAX_SLEEP_SECONDS).contains(&s) => {
            Ok(Duration::from_secs_f64(s))
        }
        _ => Err(invalid(format!(
            "'seconds' must be a number from 0 to {MAX_SLEEP_SECONDS}, got {}",
            args.get("seconds")
                .map(Value::to_string)
                .unwrap_or_default()
        ))),
    }
}

impl HardwareManager for RivetHardwareManager {
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
        StepType::ALL
            .into_iter()
            .map(|kind| (kind, Self::sleep_step(kind)))
            .collect()
    }

    fn execute(&self, step: &str, call: &StepCall<'_>) -> Result<Value, StepError> {
        if step != SLEEP {
            return Err(StepError::Unhandled(step.to_string()));
        }
        let duration = sleep_duration(call.args)?;
        tracing::info!(seconds = duration.as_secs_f64(), "sleep step: sleeping");
        std::thread::sleep(duration);
        Ok(Value::Null)
    }
}
