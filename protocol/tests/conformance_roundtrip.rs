//! Every message body recorded between a real Ironic 39 conductor and an IPA-13-shaped agent
//! (tests/fixtures/ironic-39, see its RECORDING.md) parses into its rivet-protocol type and
//! re-serializes to the same JSON value: null stays null, absent stays absent.
//!
//! Every line of every recording is classified. A message the test does not know fails it,
//! naming the file and seq, so new recordings cannot be skipped silently.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use rivet_protocol::bootloader::InstallBootloaderParams;
use rivet_protocol::command::{CommandList, CommandRequest, CommandResult, CommandStatus};
use rivet_protocol::fault::{Fault, IronicErrorBody};
use rivet_protocol::heartbeat::HeartbeatRequest;
use rivet_protocol::image_info::WriteImageArgs;
use rivet_protocol::inspection::{InspectionRequest, InspectionResponse};
use rivet_protocol::lookup::{LookupResponse, TokenDecision};
use rivet_protocol::steps::{
    ExecuteStepParams, ExecuteStepResult, GetStepsParams, GetStepsResult, StepType,
};
use rivet_protocol::version::{microversions, ApiRoot, MicroVersion};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/ironic-39");

/// Record kinds that describe the run rather than carry a message body.
const NON_MESSAGE_KINDS: [&str; 4] = ["meta", "node-state", "conductor-log", "agent-exit"];

/// Commands whose params must be the empty object.
const COMMANDS_WITHOUT_PARAMS: [&str; 6] = [
    "get_partition_uuids",
    "power_off",
    "run_image",
    "sync",
    "collect_system_logs",
    "lockdown",
];

#[derive(Default)]
struct Checker {
    /// Bodies that round-tripped, by type.
    checked: BTreeMap<String, usize>,
    /// Lines by classification.
    records: BTreeMap<String, usize>,
    /// `conductor->agent` and `agent->api` records seen, and those fully covered.
    messages: usize,
    covered: usize,
    failures: Vec<String>,
}

impl Checker {
    fn fail(&mut self, at: &str, message: impl std::fmt::Display) {
        self.failures.push(format!("{at}: {message}"));
    }

    fn count(&mut self, what: &str) {
        *self.checked.entry(what.to_string()).or_default() += 1;
    }

    /// Parses `value` as `T`, re-serializes it and compares. Returns the typed value when both
    /// steps succeed and the JSON is identical.
    fn roundtrip<T: DeserializeOwned + Serialize>(
        &mut self,
        at: &str,
        what: &str,
        value: &Value,
    ) -> Option<T> {
        let typed: T = match serde_json::from_value(value.clone()) {
            Ok(typed) => typed,
            Err(e) => {
                self.fail(at, format!("{what} does not parse: {e}"));
                return None;
            }
        };
        match serde_json::to_value(&typed) {
            Ok(back) => self.same(at, what, value, &back).then_some(typed),
            Err(e) => {
                self.fail(at, format!("{what} does not serialize: {e}"));
                None
            }
        }
    }

    /// Compares a re-serialized body with the recorded one and counts it when equal.
    fn same(&mut self, at: &str, what: &str, recorded: &Value, back: &Value) -> bool {
        match first_difference(recorded, back, "$") {
            None => {
                self.count(what);
                true
            }
            Some(difference) => {
                self.fail(
                    at,
                    format!("{what} re-serializes differently: {difference}"),
                );
                false
            }
        }
    }

    fn expect_null(&mut self, at: &str, what: &str, value: &Value) -> bool {
        if value.is_null() {
            true
        } else {
            self.fail(at, format!("{what} should be null, is {value}"));
            false
        }
    }
}

/// The first place where two JSON values differ, as a path and both sides.
fn first_difference(recorded: &Value, ours: &Value, path: &str) -> Option<String> {
    match (recorded, ours) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let at = format!("{path}.{key}");
                match b.get(key) {
                    None => return Some(format!("{at} missing (recorded {value})")),
                    Some(other) => {
                        if let Some(difference) = first_difference(value, other, &at) {
                            return Some(difference);
                        }
                    }
                }
            }
            b.iter()
                .find(|(key, _)| !a.contains_key(*key))
                .map(|(key, value)| format!("{path}.{key} added ({value})"))
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, &format!("{path}[{i}]"))),
        _ if recorded == ours => None,
        _ => Some(format!("{path}: recorded {recorded}, rivet {ours}")),
    }
}

fn field<'a>(record: &'a Value, key: &str) -> &'a Value {
    record.get(key).unwrap_or(&Value::Null)
}

fn text<'a>(record: &'a Value, key: &str) -> &'a str {
    field(record, key).as_str().unwrap_or_default()
}

/// `get_clean_steps` -> Clean, `execute_deploy_step` -> Deploy.
fn step_command(command: &str, prefix: &str, suffix: &str) -> Option<StepType> {
    StepType::parse(command.strip_prefix(prefix)?.strip_suffix(suffix)?)
}

/// A request's params, typed by command (`command` is the bare name).
fn check_params(c: &mut Checker, at: &str, extension: &str, command: &str, params: &Value) -> bool {
    if let Some(step_type) = step_command(command, "get_", "_steps") {
        if extension != step_type.as_str() {
            c.fail(at, format!("{command} sent to extension {extension}"));
            return false;
        }
        return c
            .roundtrip::<GetStepsParams>(at, "GetStepsParams", params)
            .is_some();
    }
    if let Some(step_type) = step_command(command, "execute_", "_step") {
        return check_execute_params(c, at, step_type, params);
    }
    if command == "install_bootloader" {
        return c
            .roundtrip::<InstallBootloaderParams>(at, "InstallBootloaderParams", params)
            .is_some();
    }
    if COMMANDS_WITHOUT_PARAMS.contains(&command) {
        if params.as_object().is_some_and(|p| p.is_empty()) {
            c.count("empty params");
            return true;
        }
        c.fail(at, format!("{command} params should be {{}}, are {params}"));
        return false;
    }
    c.fail(at, format!("unrecognised command {extension}.{command}"));
    false
}

fn check_execute_params(c: &mut Checker, at: &str, step_type: StepType, params: &Value) -> bool {
    let Some(object) = params.as_object() else {
        c.fail(at, "execute params are not an object");
        return false;
    };
    let parsed = match ExecuteStepParams::from_params(step_type, object) {
        Ok(parsed) => parsed,
        Err(e) => {
            c.fail(at, e);
            return false;
        }
    };
    if parsed.version.is_none() {
        c.fail(at, "Ironic sent no hardware manager version");
        return false;
    }
    let back = Value::Object(parsed.to_params());
    if !c.same(at, "ExecuteStepParams", params, &back) {
        return false;
    }
    if parsed.step.step != "write_image" {
        return true;
    }
    let Some(args) = parsed.step.args.map(Value::Object) else {
        c.fail(at, "write_image without args");
        return false;
    };
    let Some(write) = c.roundtrip::<WriteImageArgs>(at, "WriteImageArgs (ImageInfo)", &args) else {
        return false;
    };
    // Checked with MD5 disabled, IPA 13's default: Ironic also sends an os_hash pair.
    match write.image_info.validate(false) {
        Ok(()) => {
            c.count("ImageInfo::validate");
            true
        }
        Err(e) => {
            c.fail(at, format!("recorded image_info does not validate: {e}"));
            false
        }
    }
}

/// A command result's `command_result`, typed by the bare command name.
fn check_command_result(c: &mut Checker, at: &str, result: &CommandResult) -> bool {
    let command = result.command_name.as_str();
    let value = result.command_result.clone().unwrap_or_default();
    if result.command_status == CommandStatus::Failed {
        if result.command_error.is_none() {
            c.fail(at, format!("{command} FAILED without command_error"));
            return false;
        }
        return true;
    }
    if let Some(step_type) = step_command(command, "get_", "_steps") {
        return match GetStepsResult::from_json(step_type, &value) {
            Some(steps) => c.same(at, "GetStepsResult", &value, &steps.to_json()),
            None => {
                c.fail(at, format!("{command} result is not a get-steps result"));
                false
            }
        };
    }
    if let Some(step_type) = step_command(command, "execute_", "_step") {
        if result.command_status == CommandStatus::Running {
            return c.expect_null(at, "RUNNING command_result", &value);
        }
        return match ExecuteStepResult::from_json(step_type, &value) {
            Some(done) => c.same(at, "ExecuteStepResult", &value, &done.to_json()),
            None => {
                c.fail(at, format!("{command} result lacks the step echo"));
                false
            }
        };
    }
    match command {
        "get_partition_uuids" => {
            if value.is_object() {
                c.count("partition uuids (object)");
                true
            } else {
                c.fail(at, format!("get_partition_uuids result is {value}"));
                false
            }
        }
        "install_bootloader" | "power_off" => c.expect_null(at, "command_result", &value),
        _ => {
            c.fail(at, format!("unrecognised command result {command}"));
            false
        }
    }
}

fn check_result_value(c: &mut Checker, at: &str, value: &Value) -> bool {
    match c.roundtrip::<CommandResult>(at, "CommandResult", value) {
        Some(result) => check_command_result(c, at, &result),
        None => false,
    }
}

fn check_conductor_to_agent(c: &mut Checker, at: &str, record: &Value) -> bool {
    let (method, path) = (text(record, "method"), text(record, "path"));
    let (body, reply) = (field(record, "body"), field(record, "resp_body"));
    let status = field(record, "status").as_u64().unwrap_or_default();
    if path != "/v1/commands/" {
        c.fail(at, format!("unrecognised agent API call {method} {path}"));
        return false;
    }
    match method {
        "POST" => {
            let Some(request) = c.roundtrip::<CommandRequest>(at, "CommandRequest", body) else {
                return false;
            };
            let Some((extension, command)) = request.split_name() else {
                c.fail(
                    at,
                    format!("command name {:?} is not ext.cmd", request.name),
                );
                return false;
            };
            let params = Value::Object(request.params.clone());
            let params_ok = check_params(c, at, extension, command, &params);
            if status != 200 {
                return c.roundtrip::<Fault>(at, "Fault (agent)", reply).is_some() && params_ok;
            }
            let Some(result) = c.roundtrip::<CommandResult>(at, "CommandResult", reply) else {
                return false;
            };
            if result.command_name != command {
                c.fail(
                    at,
                    format!(
                        "result names {:?}, not the bare {command:?}",
                        result.command_name
                    ),
                );
                return false;
            }
            params_ok && check_command_result(c, at, &result)
        }
        "GET" => {
            if !c.expect_null(at, "GET body", body) {
                return false;
            }
            if status != 200 {
                return c.roundtrip::<Fault>(at, "Fault (agent)", reply).is_some();
            }
            let Some(list) = c.roundtrip::<CommandList>(at, "CommandList", reply) else {
                return false;
            };
            // Check every entry, not just up to the first failure.
            let mut ok = true;
            for result in &list.commands {
                ok &= check_command_result(c, at, result);
            }
            ok
        }
        _ => {
            c.fail(at, format!("unrecognised agent API call {method} {path}"));
            false
        }
    }
}

/// An Ironic error reply and the fault encoded inside it.
fn check_ironic_error(c: &mut Checker, at: &str, reply: &Value) -> bool {
    let Some(error) = c.roundtrip::<IronicErrorBody>(at, "IronicErrorBody", reply) else {
        return false;
    };
    match serde_json::from_str::<Value>(&error.error_message) {
        Ok(inner) => c
            .roundtrip::<Fault>(at, "Fault (in Ironic error_message)", &inner)
            .is_some(),
        Err(e) => {
            c.fail(at, format!("error_message is not JSON: {e}"));
            false
        }
    }
}

fn check_agent_to_api(c: &mut Checker, at: &str, record: &Value) -> bool {
    let method = text(record, "method");
    let full_path = text(record, "path");
    let path = full_path.split('?').next().unwrap_or_default();
    let (body, reply) = (field(record, "body"), field(record, "resp_body"));
    let status = field(record, "status").as_u64().unwrap_or_default();
    let header_version = field(record, "headers")
        .get("X-OpenStack-Ironic-API-Version")
        .and_then(Value::as_str)
        .and_then(MicroVersion::parse);

    match (method, path) {
        ("GET", "/") => {
            let Some(root) = c.roundtrip::<ApiRoot>(at, "ApiRoot", reply) else {
                return false;
            };
            let max = root
                .default_version
                .version
                .as_deref()
                .and_then(MicroVersion::parse);
            if max.is_none() {
                c.fail(at, "default_version.version is not a microversion");
            }
            c.expect_null(at, "GET body", body) && max.is_some()
        }
        ("GET", "/v1/lookup") => {
            if !c.expect_null(at, "GET body", body) {
                return false;
            }
            if status != 200 {
                return check_ironic_error(c, at, reply);
            }
            match c.roundtrip::<LookupResponse>(at, "LookupResponse", reply) {
                // At 1.62 Ironic 39 always answers with a token, fresh or masked.
                Some(answer) => answer.config.token_decision() != TokenDecision::Invalid,
                None => false,
            }
        }
        ("POST", _) if path.starts_with("/v1/heartbeat/") => {
            let request_ok = c
                .roundtrip::<HeartbeatRequest>(at, "HeartbeatRequest", body)
                .is_some();
            let reply_ok = if status == 202 {
                c.expect_null(at, "heartbeat reply", reply)
            } else {
                check_ironic_error(c, at, reply)
            };
            request_ok && reply_ok
        }
        ("POST", "/v1/continue_inspection") => {
            let request_ok = c
                .roundtrip::<InspectionRequest>(at, "InspectionRequest", body)
                .is_some();
            if status != 202 {
                return check_ironic_error(c, at, reply) && request_ok;
            }
            let Some(answer) = c.roundtrip::<InspectionResponse>(at, "InspectionResponse", reply)
            else {
                return false;
            };
            let with_token =
                header_version.is_some_and(|v| v >= microversions::INSPECTION_WITH_TOKEN);
            let shape_ok = match (&answer, with_token) {
                (InspectionResponse::Uuid(_), false) => {
                    c.count("InspectionResponse {uuid}");
                    true
                }
                (InspectionResponse::Lookup(lookup), true) => {
                    c.count("InspectionResponse {node, config}");
                    lookup.config.token_decision() != TokenDecision::Invalid
                }
                _ => {
                    c.fail(
                        at,
                        format!("answer shape does not match version {header_version:?}"),
                    );
                    false
                }
            };
            request_ok && shape_ok && !answer.node_uuid().is_empty()
        }
        _ => {
            c.fail(
                at,
                format!("unrecognised Ironic API call {method} {full_path}"),
            );
            false
        }
    }
}

fn check_line(c: &mut Checker, file: &str, line_number: usize, record: &Value) {
    let seq = record
        .get("seq")
        .map(Value::to_string)
        .unwrap_or_else(|| format!("(line {line_number})"));
    let at = format!("{file} seq {seq}");
    let kind = record.get("kind").and_then(Value::as_str);
    match kind {
        Some(kind @ ("conductor->agent" | "agent->api")) => {
            *c.records.entry(kind.to_string()).or_default() += 1;
            c.messages += 1;
            let ok = if kind == "conductor->agent" {
                check_conductor_to_agent(c, &at, record)
            } else {
                check_agent_to_api(c, &at, record)
            };
            if ok {
                c.covered += 1;
            }
        }
        Some("agent-command-done") => {
            *c.records
                .entry("agent-command-done".to_string())
                .or_default() += 1;
            check_result_value(c, &at, field(record, "command"));
        }
        Some(kind) if NON_MESSAGE_KINDS.contains(&kind) => {
            *c.records.entry(kind.to_string()).or_default() += 1;
        }
        // faults.jsonl: one summary line per injected deviation; it records what the
        // conductor did, not message bodies.
        None if record.get("fault").is_some_and(Value::is_string) => {
            *c.records.entry("fault summary".to_string()).or_default() += 1;
        }
        _ => c.fail(&at, format!("unrecognised record kind {kind:?}")),
    }
}

fn fixture_files() -> Vec<PathBuf> {
    let dir = Path::new(FIXTURES);
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading fixture directory {}: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()))
                .path()
        })
        .filter(|path| path.extension().is_some_and(|ext| ext == "jsonl"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_recorded_message_round_trips() {
    let files = fixture_files();
    assert!(
        files.len() >= 5,
        "expected the five Ironic 39 recordings in {FIXTURES}, found {files:?}"
    );
    let mut c = Checker::default();
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let content = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        for (index, line) in content.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Value>(line) {
                Ok(record) => check_line(&mut c, &name, index + 1, &record),
                Err(e) => c.fail(
                    &format!("{name} line {}", index + 1),
                    format!("not JSON: {e}"),
                ),
            }
        }
    }

    eprintln!("records: {:#?}", c.records);
    eprintln!("bodies round-tripped: {:#?}", c.checked);
    assert!(
        c.failures.is_empty(),
        "{} failure(s):\n{}",
        c.failures.len(),
        c.failures.join("\n")
    );
    assert_eq!(
        c.covered, c.messages,
        "every conductor->agent and agent->api record must be covered"
    );
    // The recordings hold each of these; a count of zero means a check stopped running.
    for what in [
        "ApiRoot",
        "LookupResponse",
        "HeartbeatRequest",
        "InspectionRequest",
        "InspectionResponse {uuid}",
        "InspectionResponse {node, config}",
        "IronicErrorBody",
        "Fault (in Ironic error_message)",
        "CommandRequest",
        "CommandResult",
        "CommandList",
        "GetStepsParams",
        "GetStepsResult",
        "ExecuteStepParams",
        "ExecuteStepResult",
        "WriteImageArgs (ImageInfo)",
        "ImageInfo::validate",
        "InstallBootloaderParams",
        "empty params",
    ] {
        assert!(
            c.checked.get(what).copied().unwrap_or_default() > 0,
            "no {what} was checked; counts: {:#?}",
            c.checked
        );
    }
    assert_eq!(
        c.records.get("conductor->agent"),
        Some(&12),
        "{:#?}",
        c.records
    );
    assert_eq!(c.records.get("agent->api"), Some(&16), "{:#?}", c.records);
    assert_eq!(
        c.records.get("fault summary"),
        Some(&10),
        "{:#?}",
        c.records
    );
}

#[test]
fn an_unknown_message_is_reported_with_file_and_seq() {
    let mut c = Checker::default();
    let record = serde_json::json!({
        "seq": 7, "kind": "agent->api", "method": "POST", "path": "/v1/unknown",
        "body": {}, "status": 200, "resp_body": null,
    });
    check_line(&mut c, "made-up.jsonl", 8, &record);
    check_line(
        &mut c,
        "made-up.jsonl",
        9,
        &serde_json::json!({"seq": 8, "kind": "new-kind"}),
    );
    assert_eq!(c.covered, 0);
    assert_eq!(c.messages, 1);
    assert_eq!(
        c.failures,
        vec![
            "made-up.jsonl seq 7: unrecognised Ironic API call POST /v1/unknown".to_string(),
            "made-up.jsonl seq 8: unrecognised record kind Some(\"new-kind\")".to_string(),
        ]
    );
}

#[test]
fn a_changed_body_is_reported_with_its_path() {
    let mut c = Checker::default();
    let recorded = serde_json::json!({"callback_url": "http://h:9999", "agent_token": null});
    // A HeartbeatRequest that dropped the null would differ exactly here.
    let ours = serde_json::json!({"callback_url": "http://h:9999"});
    assert!(!c.same("x seq 1", "HeartbeatRequest", &recorded, &ours));
    assert_eq!(
        c.failures,
        vec!["x seq 1: HeartbeatRequest re-serializes differently: $.agent_token missing (recorded null)".to_string()]
    );
}
