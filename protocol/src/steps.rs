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

    /// The inverse of [`StepType::as_str`].
    pub fn parse(name: &str) -> Option<Self> {
        StepType::ALL.into_iter().find(|t| t.as_str() == name)
    }

    /// `<type>_<suffix>`, e.g. `clean_version`, `deploy_result`.
    pub fn key(self, suffix: &str) -> String {
        format!("{}_{suffix}", self.as_str())
    }
}

impl std::fmt::Display for StepType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Description of one step argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArgInfo {
    pub description: String,
    #[serde(default)]
    pub required: bool,
}

/// A step as the agent advertises it in `get_<type>_steps`: Ironic rejects a step without
/// `interface`, `step` or `priority`. What Ironic sends back to run is a [`RequestedStep`].
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
            self.step_type.key("steps"),
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
        let steps = value.get(step_type.key("steps"))?;
        let version = value.get("hardware_manager_version")?;
        Some(GetStepsResult {
            step_type,
            steps: serde_json::from_value(steps.clone()).ok()?,
            hardware_manager_version: serde_json::from_value(version.clone()).ok()?,
        })
    }
}

/// A step as Ironic sends it in `execute_<type>_step` and as the agent echoes it in the
/// result. Ironic copies its own step dict, so only `interface` and `step` are certain: a
/// deploy step proxied from an out-of-band one (`write_image`) comes without `priority` or
/// `reboot_requested`. Anything else Ironic adds (`requires_ramdisk`, `argsinfo`) is kept in
/// `extra` so the echo matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestedStep {
    pub interface: String,
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reboot_requested: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abortable: Option<bool>,
    /// Merged into the step function's keyword arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<JsonObject>,
    #[serde(flatten)]
    pub extra: JsonObject,
}

impl RequestedStep {
    /// Whether this names the advertised `step` (same interface and step name).
    pub fn matches(&self, step: &Step) -> bool {
        self.interface == step.interface && self.step == step.step
    }
}

/// Why the params of a step command could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StepParamsError {
    #[error("{command} params: missing '{key}'")]
    Missing { command: String, key: &'static str },
    #[error("{command} params: invalid '{key}': {source}")]
    Invalid {
        command: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

/// The params of `get_<type>_steps`: `{"node": {...}, "ports": [...]}` (spec §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetStepsParams {
    /// `Node.as_dict(secure=True)`.
    pub node: JsonObject,
    /// `Port.as_dict()` of each port.
    pub ports: Vec<JsonObject>,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// The params of `execute_<type>_step`: `step`, `node`, `ports` and `<type>_version` (the
/// `hardware_manager_version` Ironic stored from `get_<type>_steps`; spec §4, §6.3).
/// Read and written by hand because the version key carries the step type.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecuteStepParams {
    pub step_type: StepType,
    pub step: RequestedStep,
    pub node: JsonObject,
    pub ports: Vec<JsonObject>,
    /// `None` when sent as null (or not sent): no version check, as in IPA.
    pub version: Option<HardwareManagerVersion>,
    /// Any other key, kept as sent.
    pub extra: JsonObject,
}

impl ExecuteStepParams {
    /// Reads the params object of `execute_<step_type>_step`.
    pub fn from_params(step_type: StepType, params: &JsonObject) -> Result<Self, StepParamsError> {
        let command = format!("execute_{step_type}_step");
        let version_key = step_type.key("version");
        let mut rest = params.clone();
        let mut take = |key: &'static str| {
            rest.remove(key).ok_or_else(|| StepParamsError::Missing {
                command: command.clone(),
                key,
            })
        };
        let step = take("step")?;
        let node = take("node")?;
        let ports = take("ports")?;
        let version = rest.remove(&version_key).unwrap_or_default();
        let invalid = |key: &str| {
            let command = command.clone();
            let key = key.to_string();
            move |source| StepParamsError::Invalid {
                command,
                key,
                source,
            }
        };
        Ok(ExecuteStepParams {
            step_type,
            step: serde_json::from_value(step).map_err(invalid("step"))?,
            node: serde_json::from_value(node).map_err(invalid("node"))?,
            ports: serde_json::from_value(ports).map_err(invalid("ports"))?,
            version: serde_json::from_value(version).map_err(invalid(&version_key))?,
            extra: rest,
        })
    }

    /// The params object. The version key is always written (null when `None`), as Ironic
    /// always sends it.
    pub fn to_params(&self) -> JsonObject {
        let mut params = self.extra.clone();
        params.insert(
            "step".to_string(),
            serde_json::to_value(&self.step).unwrap_or_default(),
        );
        params.insert(
            "node".to_string(),
            serde_json::Value::Object(self.node.clone()),
        );
        params.insert(
            "ports".to_string(),
            serde_json::Value::Array(
                self.ports
                    .iter()
                    .cloned()
                    .map(serde_json::Value::Object)
                    .collect(),
            ),
        );
        params.insert(
            self.step_type.key("version"),
            serde_json::to_value(&self.version).unwrap_or_default(),
        );
        params
    }
}

/// The `command_result` of a finished `execute_<type>_step`:
/// `{"<type>_result": <what the step returned>, "<type>_step": <the step as sent>}`.
/// Ironic needs the echo to recognise the step as done (spec §6.5).
#[derive(Debug, Clone, PartialEq)]
pub struct ExecuteStepResult {
    pub step_type: StepType,
    pub result: serde_json::Value,
    pub step: RequestedStep,
}

impl ExecuteStepResult {
    pub fn to_json(&self) -> serde_json::Value {
        let mut object = JsonObject::new();
        object.insert(self.step_type.key("result"), self.result.clone());
        object.insert(
            self.step_type.key("step"),
            serde_json::to_value(&self.step).unwrap_or_default(),
        );
        serde_json::Value::Object(object)
    }

    /// Parses a result for `step_type`; `None` when the echo is missing or malformed.
    /// A missing `<type>_result` reads as null.
    pub fn from_json(step_type: StepType, value: &serde_json::Value) -> Option<Self> {
        let step = value.get(step_type.key("step"))?;
        let result = value
            .get(step_type.key("result"))
            .cloned()
            .unwrap_or_default();
        Some(ExecuteStepResult {
            step_type,
            result,
            step: serde_json::from_value(step.clone()).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(value: serde_json::Value) -> JsonObject {
        match value {
            serde_json::Value::Object(object) => object,
            other => panic!("test params must be an object, got {other}"),
        }
    }

    #[test]
    fn step_type_names() {
        for step_type in StepType::ALL {
            assert_eq!(StepType::parse(step_type.as_str()), Some(step_type));
        }
        assert_eq!(StepType::parse("rescue"), None);
        assert_eq!(StepType::Deploy.key("version"), "deploy_version");
    }

    #[test]
    fn execute_params_read_the_version_key_of_their_type() -> Result<(), StepParamsError> {
        let wire = params(json!({
            "step": {"interface": "deploy", "step": "erase_devices_metadata", "abortable": true, "priority": 0},
            "node": {"uuid": "n"},
            "ports": [{"address": "52:54:00:12:34:56"}],
            "clean_version": {"generic_hardware_manager": "1.2"},
        }));
        let parsed = ExecuteStepParams::from_params(StepType::Clean, &wire)?;
        assert_eq!(parsed.step.step, "erase_devices_metadata");
        assert_eq!(parsed.step.priority, Some(0));
        assert_eq!(parsed.step.reboot_requested, None);
        assert_eq!(
            parsed
                .version
                .as_ref()
                .and_then(|v| v.get("generic_hardware_manager")),
            Some(&"1.2".to_string())
        );
        assert!(parsed.extra.is_empty());
        assert_eq!(parsed.to_params(), wire);

        // Read as a deploy step, the clean version key is just another key.
        let as_deploy = ExecuteStepParams::from_params(StepType::Deploy, &wire)?;
        assert_eq!(as_deploy.version, None);
        assert!(as_deploy.extra.contains_key("clean_version"));
        Ok(())
    }

    #[test]
    fn null_version_means_no_check() -> Result<(), StepParamsError> {
        let wire = params(json!({
            "step": {"interface": "deploy", "step": "write_image", "args": {"image_info": {}}},
            "node": {}, "ports": [], "deploy_version": null,
        }));
        let parsed = ExecuteStepParams::from_params(StepType::Deploy, &wire)?;
        assert_eq!(parsed.version, None);
        assert_eq!(parsed.step.priority, None);
        assert_eq!(parsed.to_params(), wire);
        Ok(())
    }

    #[test]
    fn execute_params_errors_name_command_and_key() {
        let missing = params(json!({"node": {}, "ports": []}));
        let error = ExecuteStepParams::from_params(StepType::Service, &missing)
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("execute_service_step params: missing 'step'")
        );
        let invalid = params(json!({
            "step": {"interface": "deploy", "step": "x"}, "node": {}, "ports": [],
            "service_version": {"generic_hardware_manager": 12},
        }));
        let error = ExecuteStepParams::from_params(StepType::Service, &invalid)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.starts_with("execute_service_step params: invalid 'service_version': "),
            "{error}"
        );
    }

    #[test]
    fn execute_result_echoes_the_step() {
        let step: RequestedStep = match serde_json::from_value(
            json!({"interface": "deploy", "step": "write_image", "args": {"configdrive": null}}),
        ) {
            Ok(step) => step,
            Err(e) => panic!("step does not parse: {e}"),
        };
        let result = ExecuteStepResult {
            step_type: StepType::Deploy,
            result: serde_json::Value::Null,
            step,
        };
        let wire = result.to_json();
        assert_eq!(
            wire,
            json!({"deploy_result": null, "deploy_step": {"interface": "deploy", "step": "write_image", "args": {"configdrive": null}}})
        );
        assert_eq!(
            ExecuteStepResult::from_json(StepType::Deploy, &wire),
            Some(result)
        );
        assert_eq!(ExecuteStepResult::from_json(StepType::Clean, &wire), None);
    }

    #[test]
    fn requested_step_matches_advertised_step() {
        let advertised = Step {
            step: "erase_devices_metadata".to_string(),
            priority: 99,
            interface: "deploy".to_string(),
            reboot_requested: false,
            abortable: Some(true),
            argsinfo: None,
            args: None,
            extra: JsonObject::new(),
        };
        let mut requested = RequestedStep {
            interface: "deploy".to_string(),
            step: "erase_devices_metadata".to_string(),
            priority: None,
            reboot_requested: None,
            abortable: None,
            args: None,
            extra: JsonObject::new(),
        };
        assert!(requested.matches(&advertised));
        requested.interface = "raid".to_string();
        assert!(!requested.matches(&advertised));
    }

    #[test]
    fn get_steps_result_requires_both_keys() {
        let wire = json!({"clean_steps": {"GenericHardwareManager": [
            {"step": "erase_devices", "priority": 10, "interface": "deploy", "reboot_requested": false, "abortable": true}
        ]}, "hardware_manager_version": {"generic_hardware_manager": "1.2"}});
        let parsed = GetStepsResult::from_json(StepType::Clean, &wire);
        assert_eq!(
            parsed.as_ref().map(GetStepsResult::to_json),
            Some(wire.clone())
        );
        let mut without_version = wire.clone();
        if let Some(object) = without_version.as_object_mut() {
            object.remove("hardware_manager_version");
        }
        assert_eq!(
            GetStepsResult::from_json(StepType::Clean, &without_version),
            None
        );
        assert_eq!(GetStepsResult::from_json(StepType::Deploy, &wire), None);
    }
}
