//! `<type>.get_<type>_steps` and `<type>.execute_<type>_step` for clean, deploy and service
//! (spec §4, §6; IPA/extensions/clean.py, deploy.py, service.py).

use std::sync::Arc;

use rivet_protocol::steps::StepType;
use rivet_protocol::JsonObject;
use serde_json::{json, Value};

use super::catalog::{blocking, required, Env};
use super::failure::Failure;
use super::output::CommandOutput;
use super::service::ApiError;
use crate::steps::StepCall;

/// `get_<type>_steps(node, ports)`: the de-duplicated steps of every manager plus
/// `hardware_manager_version`.
pub(crate) fn get_steps(
    step_type: StepType,
    params: &JsonObject,
    env: &Env,
) -> Result<Result<CommandOutput, Failure>, ApiError> {
    let command = format!("get_{}_steps", step_type.as_str());
    for name in ["node", "ports"] {
        required(params, &command, name).map_err(ApiError::InvalidParams)?;
    }
    let result = env.managers.get_steps(step_type);
    Ok(Ok(CommandOutput::Json(result.to_json())))
}

/// `execute_<type>_step(step, node, ports, <type>_version)`: checks the manager versions,
/// runs the step on the first manager that has it and echoes the step exactly as sent.
pub(crate) async fn execute_step(
    step_type: StepType,
    mut params: JsonObject,
    env: Arc<Env>,
) -> Result<CommandOutput, Failure> {
    let kind = step_type.as_str();
    let command = format!("execute_{kind}_step");
    for name in ["step", "node", "ports"] {
        required(&params, &command, name).map_err(Failure::execution)?;
    }
    let sent_step = params.remove("step").unwrap_or_default();
    let node = params.remove("node").unwrap_or_default();
    let ports = params.remove("ports").unwrap_or_default();

    // Ironic sends back the `hardware_manager_version` of get_<type>_steps; null means
    // "first run" and is not checked.
    match params.remove(&format!("{kind}_version")) {
        None | Some(Value::Null) => {}
        Some(theirs) => {
            let ours = env.managers.versions();
            if serde_json::to_value(&ours).ok().as_ref() != Some(&theirs) {
                tracing::warn!(?ours, %theirs, "hardware manager versions differ from Ironic's");
                return Err(Failure::version_mismatch(&ours, &theirs));
            }
        }
    }

    let Some(name) = sent_step
        .get("step")
        .and_then(Value::as_str)
        .map(str::to_string)
    else {
        return Err(Failure::execution(format!(
            "Malformed {kind}_step, no \"step\" key: {sent_step}"
        )));
    };
    // Extra command parameters are passed to the step too; the step's own args win.
    let mut args = params;
    match sent_step.get("args") {
        None | Some(Value::Null) => {}
        Some(Value::Object(step_args)) => args.extend(step_args.clone()),
        Some(other) => {
            return Err(Failure::execution(format!(
                "Malformed {kind}_step {name}: \"args\" must be an object, got {other}"
            )))
        }
    }

    tracing::info!(step = %name, %kind, "executing step");
    let managers = env.managers.clone();
    let ctx = env.ctx.clone();
    let step_name = name.clone();
    let value = blocking(move || {
        let call = StepCall {
            args: &args,
            node: &node,
            ports: &ports,
            progress: &ctx.progress,
            ctx: &ctx,
        };
        managers
            .execute(&step_name, &call)
            .map_err(|e| Failure::step(step_type, e))
    })
    .await
    .inspect_err(|f| tracing::error!(step = %name, %kind, error = ?f.error, "step failed"))?;
    tracing::info!(step = %name, %kind, result = %value, "step completed");
    Ok(CommandOutput::Json(json!({
        format!("{kind}_result"): value,
        format!("{kind}_step"): sent_step,
    })))
}
