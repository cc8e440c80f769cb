//! The agent's command API bodies (spec §3.2-§3.4).

use serde::{Deserialize, Serialize};

use crate::JsonObject;

/// `POST /v1/commands/` body: `{"name": "<extension>.<command>", "params": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandRequest {
    pub name: String,
    #[serde(default)]
    pub params: JsonObject,
}

impl CommandRequest {
    /// Splits `clean.get_clean_steps` into `("clean", "get_clean_steps")`.
    pub fn split_name(&self) -> Option<(&str, &str)> {
        let (extension, command) = self.name.split_once('.')?;
        if extension.is_empty() || command.is_empty() || command.contains('.') {
            return None;
        }
        Some((extension, command))
    }
}

/// Status of a command result. Ironic also accepts `VERSION_MISMATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandStatus {
    Running,
    Succeeded,
    Failed,
    CleanVersionMismatch,
    VersionMismatch,
}

impl CommandStatus {
    pub fn is_done(self) -> bool {
        self != CommandStatus::Running
    }
}

/// `command_error` of a failed command: `{type, code, message, details}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandError {
    #[serde(rename = "type")]
    pub type_: String,
    pub code: u16,
    pub message: String,
    pub details: String,
    #[serde(flatten)]
    pub extra: JsonObject,
}

/// One entry of the command list. `command_name` is the bare name (`execute_clean_step`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandResult {
    pub id: String,
    pub command_name: String,
    pub command_status: CommandStatus,
    pub command_error: Option<CommandError>,
    pub command_result: Option<serde_json::Value>,
}

/// `GET /v1/commands/`: oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandList {
    pub commands: Vec<CommandResult>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str) -> CommandRequest {
        CommandRequest {
            name: name.to_string(),
            params: JsonObject::new(),
        }
    }

    #[test]
    fn split_name_takes_extension_and_command() {
        assert_eq!(
            request("clean.get_clean_steps").split_name(),
            Some(("clean", "get_clean_steps"))
        );
        assert_eq!(
            request("standby.power_off").split_name(),
            Some(("standby", "power_off"))
        );
        for bad in [
            "get_clean_steps",
            ".power_off",
            "standby.",
            "a.b.c",
            "",
            ".",
        ] {
            assert_eq!(request(bad).split_name(), None, "{bad:?}");
        }
    }

    #[test]
    fn params_default_to_empty() -> Result<(), serde_json::Error> {
        let parsed: CommandRequest = serde_json::from_str(r#"{"name": "standby.sync"}"#)?;
        assert!(parsed.params.is_empty());
        Ok(())
    }

    #[test]
    fn statuses_use_ipa_spelling() -> Result<(), serde_json::Error> {
        for (status, wire) in [
            (CommandStatus::Running, "\"RUNNING\""),
            (
                CommandStatus::CleanVersionMismatch,
                "\"CLEAN_VERSION_MISMATCH\"",
            ),
            (CommandStatus::VersionMismatch, "\"VERSION_MISMATCH\""),
        ] {
            assert_eq!(serde_json::to_string(&status)?, wire);
        }
        assert!(!CommandStatus::Running.is_done());
        assert!(CommandStatus::Failed.is_done());
        Ok(())
    }
}
