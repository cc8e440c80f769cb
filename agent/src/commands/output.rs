//! What a successful command returns, and how it becomes `command_result` (spec §3.4).

use serde_json::{json, Value};

/// A command's return value.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandOutput {
    /// Stored as is (`null` for commands that return nothing).
    Json(Value),
    /// Wrapped as `{"result": text}` by a sync command, `{"result": "<command>: text"}` by an
    /// async one, as IPA does.
    Text(String),
}

impl CommandOutput {
    pub fn none() -> Self {
        CommandOutput::Json(Value::Null)
    }

    /// The `command_result` for the bare `command_name`.
    pub fn into_result(self, command_name: &str, is_async: bool) -> Option<Value> {
        match self {
            CommandOutput::Json(Value::Null) => None,
            CommandOutput::Json(value) => Some(value),
            CommandOutput::Text(text) if is_async => {
                Some(json!({"result": format!("{command_name}: {text}")}))
            }
            CommandOutput::Text(text) => Some(json!({"result": text})),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_results_are_wrapped_as_ipa_does() {
        let text = || CommandOutput::Text("done".into());
        assert_eq!(
            text().into_result("sync", false),
            Some(json!({"result": "done"}))
        );
        assert_eq!(
            text().into_result("prepare_image", true),
            Some(json!({"result": "prepare_image: done"}))
        );
        assert_eq!(CommandOutput::none().into_result("sync", false), None);
        assert_eq!(
            CommandOutput::Json(json!({})).into_result("get_partition_uuids", false),
            Some(json!({}))
        );
    }
}
