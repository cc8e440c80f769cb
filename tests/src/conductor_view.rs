//! What Ironic 39's conductor reads from the agent's answers (spec §3.4, §4, §6 and
//! `tests/fixtures/ironic-39/RECORDING.md`), as checks on raw JSON: the wire, not rivet's
//! types, is under test.

use std::io::Read;

use anyhow::{bail, ensure, Context, Result};
use base64::Engine as _;
use serde_json::{Map, Value};

/// The statuses Ironic understands (spec §3.4).
const STATUSES: &[&str] = &[
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "CLEAN_VERSION_MISMATCH",
    "VERSION_MISMATCH",
];

/// Keys of `get_partition_uuids` (spec §4).
const PARTITION_UUID_KEYS: &[&str] = &[
    "root uuid",
    "efi system partition uuid",
    "PReP Boot partition uuid",
    "partitions",
];

fn object<'a>(value: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    value
        .as_object()
        .with_context(|| format!("{what} is not a JSON object: {value}"))
}

fn string<'a>(value: &'a Value, key: &str) -> Result<&'a str> {
    value[key]
        .as_str()
        .with_context(|| format!("`{key}` is not a string in {value}"))
}

/// One command result: exactly `id` (a uuid4), `command_name` (a bare name),
/// `command_status`, `command_error` (null or `{type, code, message, details}`) and
/// `command_result` (null or an object).
pub fn check_command_result(result: &Value) -> Result<()> {
    let fields = object(result, "the command result")?;
    let mut keys: Vec<&str> = fields.keys().map(String::as_str).collect();
    keys.sort_unstable();
    ensure!(
        keys == [
            "command_error",
            "command_name",
            "command_result",
            "command_status",
            "id"
        ],
        "command result keys are {keys:?}: {result}"
    );
    let id = string(result, "id")?;
    let uuid = uuid::Uuid::parse_str(id).with_context(|| format!("id {id:?} is not a uuid"))?;
    ensure!(
        uuid.get_version_num() == 4,
        "id {id} is not a random (version 4) uuid"
    );
    let name = string(result, "command_name")?;
    ensure!(
        !name.is_empty() && !name.contains('.'),
        "command_name {name:?} is not a bare command name"
    );
    let status = string(result, "command_status")?;
    ensure!(
        STATUSES.contains(&status),
        "command_status {status:?} is not one Ironic knows"
    );
    match &result["command_error"] {
        Value::Null => {}
        error => check_command_error(error)?,
    }
    match &result["command_result"] {
        Value::Null | Value::Object(_) => {}
        other => bail!("command_result is neither null nor an object: {other}"),
    }
    Ok(())
}

/// `{type, code, message, details}`: IPA's serialized `RESTError`.
pub fn check_command_error(error: &Value) -> Result<()> {
    object(error, "command_error")?;
    for key in ["type", "message", "details"] {
        string(error, key).context("in command_error")?;
    }
    ensure!(
        error["code"].is_u64(),
        "command_error.code is not an integer: {error}"
    );
    Ok(())
}

/// Ironic's `get_command_error`: `details`, else `message`.
pub fn command_error_text(result: &Value) -> Option<&str> {
    let error = &result["command_error"];
    error["details"]
        .as_str()
        .filter(|d| !d.is_empty())
        .or_else(|| error["message"].as_str())
}

/// An error reply: `{"faultcode": "Client"|"Server", "faultstring": "..."}`.
pub fn check_fault(body: &Value) -> Result<&str> {
    let code = string(body, "faultcode")?;
    ensure!(
        code == "Client" || code == "Server",
        "faultcode {code:?} is neither Client nor Server"
    );
    string(body, "faultstring")
}

/// What the conductor makes of `GET /v1/commands/` while it waits for `current_step` of
/// `step_type` (Ironic's `agent_base._get_completed_command`).
#[derive(Debug, Clone, PartialEq)]
pub enum StepProgress {
    /// It waits for a later heartbeat, for the reason given.
    Wait(String),
    /// The step is over; the command as listed.
    Done(Value),
}

/// The conductor's reading of the command list: the **last** entry must be
/// `execute_<type>_step`, not RUNNING, and when SUCCEEDED must echo `current_step` as
/// `command_result.<type>_step` (compared as a whole dict); anything else means "wait".
pub fn step_progress(commands: &[Value], step_type: &str, current_step: &Value) -> StepProgress {
    let Some(last) = commands.last() else {
        return StepProgress::Wait("the command list is empty".into());
    };
    let expected = format!("execute_{step_type}_step");
    if last["command_name"] != expected.as_str() {
        return StepProgress::Wait(format!(
            "the last command is {}, not {expected}",
            last["command_name"]
        ));
    }
    match last["command_status"].as_str() {
        Some("RUNNING") => StepProgress::Wait("the step is still RUNNING".into()),
        Some("SUCCEEDED") => {
            let echo = &last["command_result"][format!("{step_type}_step")];
            if echo == current_step {
                StepProgress::Done(last.clone())
            } else {
                StepProgress::Wait(format!(
                    "SUCCEEDED without an echo of the current step (got {echo})"
                ))
            }
        }
        _ => StepProgress::Done(last.clone()),
    }
}

/// A step as Ironic needs it in `get_<type>_steps`: `interface`, `step`, `priority`.
fn check_step(step: &Value) -> Result<()> {
    string(step, "interface")?;
    string(step, "step")?;
    ensure!(
        step["priority"].is_i64(),
        "step has no integer priority: {step}"
    );
    Ok(())
}

/// The steps of a `get_<type>_steps` result, across managers: `(manager, step)`.
pub fn advertised_steps<'a>(result: &'a Value, step_type: &str) -> Result<Vec<&'a Value>> {
    let key = format!("{step_type}_steps");
    let managers = object(&result[&key], &format!("command_result.{key}"))?;
    let mut steps = Vec::new();
    for (manager, list) in managers {
        let list = list
            .as_array()
            .with_context(|| format!("{key}.{manager} is not a list"))?;
        for step in list {
            check_step(step).with_context(|| format!("in {key}.{manager}"))?;
            steps.push(step);
        }
    }
    Ok(steps)
}

/// A `get_<type>_steps` result: `<type>_steps` of well-formed steps and a non-empty
/// `hardware_manager_version` of strings.
pub fn check_get_steps(result: &Value, step_type: &str) -> Result<()> {
    advertised_steps(result, step_type)?;
    let versions = object(
        &result["hardware_manager_version"],
        "command_result.hardware_manager_version",
    )?;
    ensure!(
        !versions.is_empty() && versions.values().all(Value::is_string),
        "hardware_manager_version must map manager names to version strings: {versions:?}"
    );
    Ok(())
}

/// The flag as the conductor reads it (absent means false).
fn flag(step: &Value, key: &str) -> bool {
    step[key].as_bool().unwrap_or(false)
}

/// Every step `recorded` advertised is in `ours` with the same interface, priority,
/// abortable and reboot_requested; steps rivet adds are named in `extra_allowed` and have
/// priority 0, so they never run unless asked for.
pub fn check_steps_cover(
    ours: &Value,
    recorded: &Value,
    step_type: &str,
    extra_allowed: &[&str],
) -> Result<()> {
    let ours = advertised_steps(ours, step_type).context("in rivet's answer")?;
    let recorded = advertised_steps(recorded, step_type).context("in the recorded answer")?;
    let mut problems = Vec::new();
    for want in &recorded {
        let name = &want["step"];
        let Some(have) = ours.iter().find(|s| s["step"] == *name) else {
            problems.push(format!("{name} is missing"));
            continue;
        };
        for key in ["interface", "priority"] {
            if have[key] != want[key] {
                problems.push(format!(
                    "{name}: {key} is {}, recorded {}",
                    have[key], want[key]
                ));
            }
        }
        for key in ["abortable", "reboot_requested"] {
            if flag(have, key) != flag(want, key) {
                problems.push(format!(
                    "{name}: {key} is {}, recorded {}",
                    have[key], want[key]
                ));
            }
        }
    }
    for have in &ours {
        let name = &have["step"];
        if recorded.iter().any(|s| s["step"] == *name) {
            continue;
        }
        if !have["step"]
            .as_str()
            .is_some_and(|n| extra_allowed.contains(&n))
        {
            problems.push(format!(
                "{name} is advertised but the recorded agent had no such step"
            ));
        } else if have["priority"] != 0 {
            problems.push(format!(
                "{name} has priority {}: an extra step must not run unless asked for",
                have["priority"]
            ));
        }
    }
    ensure!(
        problems.is_empty(),
        "{step_type} steps differ from the recorded agent's:\n  {}",
        problems.join("\n  ")
    );
    Ok(())
}

/// `get_partition_uuids`: an object with only the keys IPA uses, each a string (or, for
/// `partitions`, an object).
pub fn check_partition_uuids(result: &Value) -> Result<()> {
    for (key, value) in object(result, "get_partition_uuids' command_result")? {
        ensure!(
            PARTITION_UUID_KEYS.contains(&key.as_str()),
            "get_partition_uuids: unknown key {key:?}"
        );
        let fits = if key == "partitions" {
            value.is_object()
        } else {
            value.is_string() || value.is_null()
        };
        ensure!(
            fits,
            "get_partition_uuids: {key:?} has a wrong type: {value}"
        );
    }
    Ok(())
}

/// `collect_system_logs`: `{"system_logs": base64 of a tar.gz}`; returns the archive's
/// members as `(name, contents)`.
pub fn unpack_system_logs(result: &Value) -> Result<Vec<(String, Vec<u8>)>> {
    let encoded = string(result, "system_logs")?;
    let archive = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .context("system_logs is not base64")?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive.as_slice()));
    let mut members = Vec::new();
    for entry in tar.entries().context("system_logs is not a tar.gz")? {
        let mut entry = entry.context("reading a system_logs archive entry")?;
        let name = entry
            .path()
            .context("reading an archive entry's name")?
            .display()
            .to_string();
        let mut contents = Vec::new();
        entry
            .read_to_end(&mut contents)
            .with_context(|| format!("reading archive member {name}"))?;
        members.push((name, contents));
    }
    ensure!(!members.is_empty(), "the system_logs archive is empty");
    Ok(members)
}
