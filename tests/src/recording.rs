//! The Ironic 39 recordings in `tests/fixtures/ironic-39/*.jsonl`, read as data: what the
//! conductor sent to the agent and what the recorded agent answered.

use std::path::PathBuf;

use anyhow::{bail, ensure, Context, Result};
use rivet_protocol::lookup::LookupResponse;
use serde_json::Value;

/// `tests/fixtures/ironic-39/<name>.jsonl`.
pub fn recording_path(name: &str) -> PathBuf {
    crate::workspace_root()
        .join("tests/fixtures/ironic-39")
        .join(format!("{name}.jsonl"))
}

/// One request the conductor sent to the agent's API, with the recorded agent's answer.
#[derive(Debug, Clone)]
pub struct ConductorRequest {
    pub seq: u64,
    pub method: String,
    pub path: String,
    /// The query parameters, `agent_token` included (it is the recording's token).
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    /// The JSON body; `None` for a GET.
    pub body: Option<Value>,
    pub status: u16,
    pub resp_body: Value,
}

/// A whole recording: its records in order.
#[derive(Debug, Clone)]
pub struct Recording {
    pub name: String,
    pub records: Vec<Value>,
}

impl Recording {
    pub fn load(name: &str) -> Result<Recording> {
        let path = recording_path(name);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading recording {}", path.display()))?;
        let records = text
            .lines()
            .enumerate()
            .filter(|(_, line)| !line.trim().is_empty())
            .map(|(number, line)| {
                serde_json::from_str(line)
                    .with_context(|| format!("{}:{}: not JSON", path.display(), number + 1))
            })
            .collect::<Result<Vec<Value>>>()?;
        ensure!(
            records.first().and_then(|r| r["kind"].as_str()) == Some("meta"),
            "{}: the first record is not `meta`",
            path.display()
        );
        Ok(Recording {
            name: name.to_owned(),
            records,
        })
    }

    /// Every `conductor->agent` record, in recorded order.
    pub fn conductor_requests(&self) -> Result<Vec<ConductorRequest>> {
        self.records
            .iter()
            .filter(|r| r["kind"] == "conductor->agent")
            .map(|r| parse_request(r).with_context(|| format!("{}: record {r}", self.name)))
            .collect()
    }

    /// The reply to the agent's `GET /v1/lookup`, with its token replaced by `token` (or
    /// removed when `None`).
    pub fn lookup_answer(&self, token: Option<&str>) -> Result<LookupResponse> {
        let record = self
            .records
            .iter()
            .find(|r| {
                r["kind"] == "agent->api"
                    && r["path"]
                        .as_str()
                        .is_some_and(|p| p.starts_with("/v1/lookup"))
            })
            .with_context(|| format!("{}: no recorded lookup", self.name))?;
        let mut answer = record["resp_body"].clone();
        answer["config"]["agent_token"] = token.map_or(Value::Null, |t| Value::String(t.into()));
        serde_json::from_value(answer)
            .with_context(|| format!("{}: parsing the recorded lookup reply", self.name))
    }

    /// The last status the recording shows for the command `id`: from the sync reply, the
    /// `agent-command-done` record or the last command list that holds it.
    pub fn final_status(&self, id: &str) -> Option<String> {
        let mut status = None;
        for record in &self.records {
            let mut consider = |command: &Value| {
                if command["id"] == id {
                    status = command["command_status"].as_str().map(str::to_owned);
                }
            };
            match record["kind"].as_str() {
                Some("agent-command-done") => consider(&record["command"]),
                Some("conductor->agent") => {
                    let reply = &record["resp_body"];
                    match reply["commands"].as_array() {
                        Some(commands) => commands.iter().for_each(&mut consider),
                        None => consider(reply),
                    }
                }
                _ => {}
            }
        }
        status
    }
}

fn string_pairs(object: &Value, what: &str) -> Result<Vec<(String, String)>> {
    match object {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) => map
            .iter()
            .map(|(key, value)| match value {
                Value::String(value) => Ok((key.clone(), value.clone())),
                other => bail!("{what} {key} is not a string: {other}"),
            })
            .collect(),
        other => bail!("{what} is not an object: {other}"),
    }
}

fn parse_request(record: &Value) -> Result<ConductorRequest> {
    let text = |key: &str| {
        record[key]
            .as_str()
            .map(str::to_owned)
            .with_context(|| format!("no string `{key}`"))
    };
    Ok(ConductorRequest {
        seq: record["seq"].as_u64().context("no `seq`")?,
        method: text("method")?,
        path: text("path")?,
        query: string_pairs(&record["query"], "query parameter")?,
        headers: string_pairs(&record["headers"], "header")?,
        body: Some(record["body"].clone()).filter(|body| !body.is_null()),
        status: record["status"]
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .context("no `status`")?,
        resp_body: record["resp_body"].clone(),
    })
}
