//! Steps and the get-steps answer (spec §6).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::JsonObject;

/// The kinds of step Ironic drives through the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepType {
    Clean,
    Deploy,
    Service,
}

impl StepType {
    pub const ALL: [StepType; 3] = [StepType::Clean, StepType::Deploy, StepType::Service];

    /// `clean`, `deploy` or `service`: the extension name and the key prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            StepType::Clean => "clean",
            StepType::Deploy => "deploy",
            StepType::Service => "service",
        }
    }
}

/// Description of one step argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArgInfo {
    pub description: String,
    #[serde(default)]
    pub required: bool,
}

/// A step as the agent advertises it and as Ironic sends it back (with `args`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub step: String,
    pub priority: i64,
    pub interface: String,
    #[serde(default)]
    pub reboot_requested: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abortable: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub argsinfo: Option<BTreeMap<String, ArgInfo>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<JsonObject>,
    /// Ironic adds e.g. `requires_ramdisk`; kept verbatim so echoes match.
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// `{name: version}` of the active hardware managers (spec §6.3).
pub type HardwareManagerVersion = BTreeMap<String, String>;

/// The answer of `get_<type>_steps`: `{"<type>_steps": {manager: [step]}, "hardware_manager_version": {...}}`.
/// Serialized by hand because the key carries the step type.
#[derive(Debug, Clone, PartialEq)]
pub struct GetStepsResult {
    pub step_type: StepType,
    pub steps: BTreeMap<String, Vec<Step>>,
    pub hardware_manager_version: HardwareManagerVersion,
}

impl GetStepsResult {
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = JsonObject::new();
        object.insert(
            format!("{}_steps", self.step_type.as_str()),
            serde_json::to_value(&self.steps).unwrap_or_default(),
        );
        object.insert(
            "hardware_manager_version".to_string(),
            serde_json::to_value(&self.hardware_manager_version).unwrap_or_default(),
        );
        serde_json::Value::Object(object)
    }

    /// Parses an answer for `step_type`; `None` when either key is missing or malformed
    /// (Ironic fails the operation in that case).
    pub fn from_json(step_type: StepType, value: &serde_json::Value) -> Option<Self> {
        let steps = value.get(format!("{}_steps", step_type.as_str()))?;
        let version = value.get("hardware_manager_version")?;
        Some(GetStepsResult {
            step_type,
            steps: serde_json::from_value(steps.clone()).ok()?,
            hardware_manager_version: serde_json::from_value(version.clone()).ok()?,
        })
    }
}
