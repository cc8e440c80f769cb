//! Replays the conductor's side of a recording against an [`InProcessAgent`] and checks
//! every answer against what the conductor needed (see [`crate::conductor_view`]).
//!
//! Requests go out in recorded order with the recorded method, path, query and JSON body.
//! Two values are the conductor's own and are replaced by what it would hold against this
//! agent: `agent_token` (the token this agent adopted at lookup) and `<type>_version` of
//! `execute_<type>_step` (the `hardware_manager_version` this agent gave in
//! `get_<type>_steps`). Before a `GET /v1/commands/` for which the recording shows a finished
//! last command, the replay polls (bounded) as the conductor does on its heartbeats.

use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use crate::conductor_view::{
    check_command_error, check_command_result, check_get_steps, check_partition_uuids,
    check_steps_cover, command_error_text, step_progress, StepProgress,
};
use crate::in_process::InProcessAgent;
use crate::recording::{ConductorRequest, Recording};

/// How often a poll asks, and for how long at most (Ironic's `[agent]command_timeout`).
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);
pub const POLL_BOUND: Duration = Duration::from_secs(60);

/// Headers of the recording not replayed: the HTTP client sets them for its own connection.
const CONNECTION_HEADERS: &[&str] = &["host", "content-length", "connection", "accept-encoding"];

/// How a replayed command must end.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// With this `command_status`, as recorded.
    Status(String),
    /// The recorded agent ran this disk step; this build does not implement it and must
    /// fail it with "<step> is not supported by this build".
    NotSupported(String),
    /// The recorded agent ran this disk step; this build implements it, but the in-process
    /// agent has no disk to give it, so it must fail with this IPA error type before touching
    /// anything.
    FailsWith { step: String, error_type: String },
}

/// A command the replay posted.
#[derive(Debug, Clone)]
pub struct Posted {
    pub seq: u64,
    pub id: String,
    pub name: String,
    pub outcome: Outcome,
    /// For `execute_<type>_step`: the type and the step as sent.
    pub step: Option<(String, Value)>,
}

/// What to change in the recorded traffic, and what this build does not implement.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Replaces the `step` of every `execute_<type>_step` (rivet's own `sleep`, say); that
    /// step must then succeed.
    pub step_override: Option<Value>,
    /// Steps the recorded agent ran that this build must fail as not supported.
    pub not_yet_implemented: Vec<String>,
    /// Disk steps this build implements that must fail for lack of a disk: (step, IPA error
    /// type).
    pub no_disk: Vec<(String, String)>,
    /// Steps rivet advertises beyond the recorded agent's.
    pub rivet_steps: Vec<String>,
}

/// A replay in progress.
pub struct Replay<'a> {
    recording: &'a Recording,
    agent: &'a InProcessAgent,
    client: reqwest::Client,
    token: String,
    options: ReplayOptions,
    /// `hardware_manager_version` per step type, as the conductor stores it.
    versions: Vec<(String, Value)>,
    posted: Vec<Posted>,
    replayed: usize,
}

/// An answer: status and JSON body (`Null` when empty).
struct Answer {
    status: u16,
    body: Value,
}

impl<'a> Replay<'a> {
    pub fn new(
        recording: &'a Recording,
        agent: &'a InProcessAgent,
        token: &str,
        options: ReplayOptions,
    ) -> Result<Replay<'a>> {
        Ok(Replay {
            recording,
            agent,
            client: agent.conductor_client()?,
            token: token.to_owned(),
            options,
            versions: Vec::new(),
            posted: Vec::new(),
            replayed: 0,
        })
    }

    /// The commands posted so far.
    pub fn posted(&self) -> &[Posted] {
        &self.posted
    }

    /// Replays every conductor request; returns how many were replayed.
    pub async fn run(&mut self) -> Result<usize> {
        for request in self.recording.conductor_requests()? {
            let what = format!(
                "{} seq {}: {} {}",
                self.recording.name, request.seq, request.method, request.path
            );
            match (request.method.as_str(), request.path.as_str()) {
                ("POST", "/v1/commands/") => self.replay_post(&request).await,
                ("GET", "/v1/commands/") => self.replay_list(&request).await,
                _ => Err(anyhow::anyhow!(
                    "the conductor is not known to send this; teach the replay first"
                )),
            }
            .with_context(|| what)?;
            self.replayed += 1;
        }
        Ok(self.replayed)
    }

    /// Sends `method path?query` with the recorded headers and `body`.
    async fn send(
        &self,
        request: &ConductorRequest,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Answer> {
        let method = reqwest::Method::from_bytes(request.method.as_bytes())
            .with_context(|| format!("method {:?}", request.method))?;
        let mut builder = self
            .client
            .request(method, self.agent.url(&request.path))
            .query(query);
        for (name, value) in &request.headers {
            if !CONNECTION_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                builder = builder.header(name, value);
            }
        }
        if let Some(body) = body {
            builder = builder.body(serde_json::to_vec(body).context("encoding the body")?);
        }
        let response = builder.send().await.context("sending the request")?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.context("reading the answer")?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).with_context(|| {
                format!(
                    "the answer ({status}) is not JSON: {}",
                    String::from_utf8_lossy(&bytes)
                )
            })?
        };
        Ok(Answer { status, body })
    }

    /// The recorded query with our token.
    fn query(&self, request: &ConductorRequest) -> Vec<(String, String)> {
        request
            .query
            .iter()
            .map(|(key, value)| {
                let value = if key == "agent_token" {
                    self.token.clone()
                } else {
                    value.clone()
                };
                (key.clone(), value)
            })
            .collect()
    }

    async fn replay_post(&mut self, request: &ConductorRequest) -> Result<()> {
        let mut body = request.body.clone().context("a POST without a body")?;
        let full_name = body["name"].as_str().context("no command name")?.to_owned();
        let (_, bare) = full_name
            .split_once('.')
            .with_context(|| format!("command name {full_name:?} has no extension"))?;
        let execute_type = bare
            .strip_prefix("execute_")
            .and_then(|rest| rest.strip_suffix("_step"))
            .map(str::to_owned);
        if let Some(step_type) = &execute_type {
            self.conductor_values(&mut body, step_type)?;
        }
        let answer = self
            .send(request, &self.query(request), Some(&body))
            .await?;
        ensure!(
            answer.status == request.status,
            "status {} where the recorded agent answered {}: {}",
            answer.status,
            request.status,
            answer.body
        );
        let result = answer.body;
        check_command_result(&result)?;
        let recorded = &request.resp_body;
        ensure!(
            result["command_name"] == bare && result["command_name"] == recorded["command_name"],
            "command_name is {}, expected {bare:?} as recorded",
            result["command_name"]
        );
        let outcome = self.expected_outcome(request, &body, execute_type.is_some())?;
        let posted = Posted {
            seq: request.seq,
            id: result["id"].as_str().unwrap_or_default().to_owned(),
            name: bare.to_owned(),
            outcome,
            step: execute_type.map(|t| (t, body["params"]["step"].clone())),
        };
        if recorded["command_status"] == "RUNNING" {
            ensure!(
                result["command_status"] == "RUNNING",
                "an async command must answer RUNNING at once, got {}",
                result["command_status"]
            );
        } else {
            check_outcome(&result, &posted)?;
        }
        if let Some(step_type) = bare
            .strip_prefix("get_")
            .and_then(|rest| rest.strip_suffix("_steps"))
        {
            self.check_steps(&result, recorded, step_type)?;
        }
        if bare == "get_partition_uuids" {
            check_partition_uuids(&result["command_result"])?;
            ensure!(
                result["command_result"] == recorded["command_result"],
                "get_partition_uuids is {} where the recorded agent answered {} (no image was \
                 written)",
                result["command_result"],
                recorded["command_result"]
            );
        }
        self.posted.push(posted);
        Ok(())
    }

    /// The conductor's own values in an `execute_<type>_step` body: its stored
    /// `hardware_manager_version`, and the overriding step if any.
    fn conductor_values(&self, body: &mut Value, step_type: &str) -> Result<()> {
        let params = body["params"]
            .as_object_mut()
            .context("params is not an object")?;
        let key = format!("{step_type}_version");
        if params.contains_key(&key) {
            let stored = self
                .versions
                .iter()
                .find(|(t, _)| t == step_type)
                .map(|(_, v)| v.clone())
                .with_context(|| format!("{key} is sent before any get_{step_type}_steps"))?;
            params.insert(key, stored);
        }
        if let Some(step) = &self.options.step_override {
            params.insert("step".into(), step.clone());
        }
        Ok(())
    }

    fn expected_outcome(
        &self,
        request: &ConductorRequest,
        body: &Value,
        is_step: bool,
    ) -> Result<Outcome> {
        let id = request.resp_body["id"]
            .as_str()
            .context("the recorded answer has no id")?;
        let recorded = self
            .recording
            .final_status(id)
            .with_context(|| format!("the recording never shows command {id} finished"))?;
        if is_step {
            if self.options.step_override.is_some() {
                return Ok(Outcome::Status("SUCCEEDED".into()));
            }
            let step = body["params"]["step"]["step"].as_str().unwrap_or_default();
            if recorded == "SUCCEEDED" && self.options.not_yet_implemented.iter().any(|s| s == step)
            {
                return Ok(Outcome::NotSupported(step.to_owned()));
            }
            if let Some((_, error_type)) = self.options.no_disk.iter().find(|(s, _)| s == step) {
                return Ok(Outcome::FailsWith {
                    step: step.to_owned(),
                    error_type: error_type.clone(),
                });
            }
        }
        Ok(Outcome::Status(recorded))
    }

    fn check_steps(&mut self, result: &Value, recorded: &Value, step_type: &str) -> Result<()> {
        let ours = &result["command_result"];
        check_get_steps(ours, step_type)?;
        let extra: Vec<&str> = self
            .options
            .rivet_steps
            .iter()
            .map(String::as_str)
            .collect();
        check_steps_cover(ours, &recorded["command_result"], step_type, &extra)?;
        self.versions.push((
            step_type.to_owned(),
            ours["hardware_manager_version"].clone(),
        ));
        Ok(())
    }

    async fn replay_list(&mut self, request: &ConductorRequest) -> Result<()> {
        let recorded = request.resp_body["commands"]
            .as_array()
            .context("the recorded list has no `commands`")?;
        let waits = recorded
            .last()
            .is_some_and(|last| last["command_status"] != "RUNNING");
        let query = self.query(request);
        let mut polls = 0;
        let answer = loop {
            let answer = self.send(request, &query, None).await?;
            let last_running = answer.body["commands"]
                .as_array()
                .and_then(|c| c.last())
                .is_some_and(|last| last["command_status"] == "RUNNING");
            if !(waits && last_running && answer.status == 200) {
                break answer;
            }
            polls += 1;
            ensure!(
                POLL_INTERVAL * polls < POLL_BOUND,
                "the last command is still RUNNING after {POLL_BOUND:?} of polling: {}",
                answer.body
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        };
        ensure!(
            answer.status == request.status,
            "status {} where the recorded agent answered {}: {}",
            answer.status,
            request.status,
            answer.body
        );
        let commands = answer.body["commands"]
            .as_array()
            .with_context(|| format!("no `commands` list in {}", answer.body))?;
        let names = |list: &[Value]| -> Vec<String> {
            list.iter()
                .map(|c| c["command_name"].as_str().unwrap_or("?").to_owned())
                .collect()
        };
        ensure!(
            names(commands) == names(recorded),
            "the list holds {:?} where the recorded agent's held {:?}",
            names(commands),
            names(recorded)
        );
        ensure!(
            commands.len() == self.posted.len(),
            "the list holds {} commands, the replay posted {}",
            commands.len(),
            self.posted.len()
        );
        for ((entry, want), posted) in commands.iter().zip(recorded).zip(&self.posted) {
            let context = || format!("list entry {} (posted at seq {})", posted.name, posted.seq);
            check_command_result(entry).with_context(context)?;
            ensure!(
                entry["id"] == posted.id.as_str(),
                "list entry {} has id {}, the POST answered {}",
                posted.name,
                entry["id"],
                posted.id
            );
            if !(want["command_status"] == "RUNNING" && entry["command_status"] == "RUNNING") {
                check_outcome(entry, posted).with_context(context)?;
            }
        }
        if waits {
            self.check_conductor_view(commands)?;
        }
        Ok(())
    }

    /// After an `execute_<type>_step`, the conductor must find the step over in the last
    /// entry: echoed when it succeeded, with an error text when it failed.
    fn check_conductor_view(&self, commands: &[Value]) -> Result<()> {
        let Some(posted) = self.posted.last() else {
            return Ok(());
        };
        let Some((step_type, step)) = &posted.step else {
            return Ok(());
        };
        match step_progress(commands, step_type, step) {
            StepProgress::Wait(reason) => bail!(
                "the conductor would wait for a later heartbeat forever after {}: {reason}",
                posted.name
            ),
            StepProgress::Done(last) => {
                ensure!(
                    last["id"] == posted.id.as_str(),
                    "the conductor would take {} for the step it started",
                    last["id"]
                );
                if last["command_status"] != "SUCCEEDED" {
                    let text = command_error_text(&last).unwrap_or_default();
                    ensure!(
                        !text.is_empty(),
                        "a failed step without an error text for the node's last_error: {last}"
                    );
                }
                Ok(())
            }
        }
    }

    /// See [`wait_until_idle`].
    pub async fn wait_until_idle(&self) -> Result<Vec<Value>> {
        wait_until_idle(self.agent, &self.client, &self.token).await
    }
}

/// Polls `GET /v1/commands/` as the conductor does on heartbeats, until the last command is
/// no longer RUNNING (at most [`POLL_BOUND`]); returns the list.
pub async fn wait_until_idle(
    agent: &InProcessAgent,
    client: &reqwest::Client,
    token: &str,
) -> Result<Vec<Value>> {
    let url = agent.url("/v1/commands/");
    let mut polls = 0;
    loop {
        let response = client
            .get(&url)
            .query(&[("agent_token", token)])
            .send()
            .await
            .context("listing commands")?;
        ensure!(
            response.status().as_u16() == 200,
            "listing commands answered {}",
            response.status()
        );
        let body: Value = response.json().await.context("reading the command list")?;
        let commands = body["commands"]
            .as_array()
            .with_context(|| format!("no `commands` list in {body}"))?
            .clone();
        if commands
            .last()
            .is_none_or(|last| last["command_status"] != "RUNNING")
        {
            return Ok(commands);
        }
        polls += 1;
        ensure!(
            POLL_INTERVAL * polls < POLL_BOUND,
            "the last command is still RUNNING after {POLL_BOUND:?}: {body}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// `result` ends as `posted.outcome` says; a finished step echoes what was sent.
fn check_outcome(result: &Value, posted: &Posted) -> Result<()> {
    let status = &result["command_status"];
    match &posted.outcome {
        Outcome::Status(want) => {
            ensure!(
                status == want.as_str(),
                "command_status is {status}, the recorded agent's ended {want}: {result}"
            );
            if want != "SUCCEEDED" {
                return Ok(());
            }
            ensure!(
                result["command_error"].is_null(),
                "a SUCCEEDED command with an error: {result}"
            );
            if let Some((step_type, step)) = &posted.step {
                let output = &result["command_result"];
                ensure!(
                    output[format!("{step_type}_step")] == *step,
                    "command_result.{step_type}_step must echo the step sent ({step}): {output}"
                );
                ensure!(
                    output
                        .as_object()
                        .is_some_and(|o| o.contains_key(&format!("{step_type}_result"))),
                    "command_result has no {step_type}_result: {output}"
                );
            }
            Ok(())
        }
        Outcome::FailsWith { step, error_type } => {
            ensure!(
                status == "FAILED",
                "{step} has no disk here and must be FAILED, is {status}: {result}"
            );
            let error = &result["command_error"];
            check_command_error(error)?;
            ensure!(
                error["type"] == error_type.as_str(),
                "{step} without a disk must fail with {error_type}: {error}"
            );
            ensure!(
                result["command_result"].is_null(),
                "a failed command with a result: {result}"
            );
            Ok(())
        }
        Outcome::NotSupported(step) => {
            ensure!(
                status == "FAILED",
                "{step} is not implemented by this build and must be FAILED, is {status}: {result}"
            );
            let error = &result["command_error"];
            check_command_error(error)?;
            let (error_type, message) = match posted.step.as_ref().map(|(t, _)| t.as_str()) {
                Some("clean") => ("CleaningError", "Clean step failed"),
                Some("deploy") => ("DeploymentError", "Deploy step failed"),
                Some("service") => ("ServicingError", "Service step failed"),
                other => bail!("{step} is not a step of a known type ({other:?})"),
            };
            let wanted = format!("{step} is not supported by this build of rivet-agent");
            ensure!(
                error["type"] == error_type
                    && error["code"] == 500
                    && error["message"] == message
                    && error["details"]
                        .as_str()
                        .is_some_and(|d| d.contains(&wanted)),
                "command_error must be a {error_type} (500, {message:?}) saying {wanted:?}: \
                 {error}"
            );
            ensure!(
                command_error_text(result).is_some_and(|t| t.contains(&wanted)),
                "the conductor's error text would not say {wanted:?}"
            );
            ensure!(
                result["command_result"].is_null(),
                "a failed command with a result: {result}"
            );
            Ok(())
        }
    }
}
