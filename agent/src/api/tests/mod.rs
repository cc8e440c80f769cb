//! The API over real loopback sockets, with a fake command engine.

mod routes;
mod server;
mod tls;

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use rivet_protocol::command::{CommandRequest, CommandResult, CommandStatus};
use serde_json::Value;
use tokio::sync::Notify;

use super::{serve, ApiServer, ServeOptions};
use crate::commands::service::{ApiError, CommandService};
use crate::context::AgentContext;
use crate::settings::{Secret, Settings};

/// The token the test agent holds.
const TOKEN: &str = "b1n6iYWKJMPhgynm39scQduWgQuNbgo9_2q4Xr7eLgg";

/// A call the API made into the engine.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    Execute {
        name: String,
        params: Value,
        wait: bool,
    },
    Get {
        id: String,
        wait: bool,
    },
}

/// Holds `execute` until released, to keep a request in flight.
#[derive(Default)]
struct Gate {
    entered: Notify,
    release: Notify,
}

/// A command engine that records its calls, answers from a scripted list and otherwise
/// makes up a result: SUCCEEDED when waited for, RUNNING when not.
#[derive(Default)]
struct FakeCommands {
    results: Mutex<Vec<CommandResult>>,
    calls: Mutex<Vec<Call>>,
    errors: Mutex<VecDeque<ApiError>>,
    gate: Option<Arc<Gate>>,
    on_execute: Mutex<Option<Box<dyn FnOnce() + Send>>>,
}

impl FakeCommands {
    fn with_results(results: Vec<CommandResult>) -> Self {
        FakeCommands {
            results: Mutex::new(results),
            ..Default::default()
        }
    }

    fn gated(gate: Arc<Gate>) -> Self {
        FakeCommands {
            gate: Some(gate),
            ..Default::default()
        }
    }

    /// The next call answers with `error`.
    fn fail_next(&self, error: ApiError) {
        self.errors.lock().expect("errors lock").push_back(error);
    }

    /// Runs `hook` during the next `execute`.
    fn on_next_execute(&self, hook: impl FnOnce() + Send + 'static) {
        *self.on_execute.lock().expect("hook lock") = Some(Box::new(hook));
    }

    fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls lock").clone()
    }

    fn record(&self, call: Call) -> Option<ApiError> {
        self.calls.lock().expect("calls lock").push(call);
        self.errors.lock().expect("errors lock").pop_front()
    }
}

impl CommandService for FakeCommands {
    async fn execute(
        &self,
        request: CommandRequest,
        wait: bool,
    ) -> Result<CommandResult, ApiError> {
        let call = Call::Execute {
            name: request.name.clone(),
            params: Value::Object(request.params.clone()),
            wait,
        };
        if let Some(error) = self.record(call) {
            return Err(error);
        }
        if let Some(gate) = &self.gate {
            gate.entered.notify_one();
            gate.release.notified().await;
        }
        if let Some(hook) = self.on_execute.lock().expect("hook lock").take() {
            hook();
        }
        let mut results = self.results.lock().expect("results lock");
        let command_name = request
            .split_name()
            .map_or(request.name.as_str(), |(_, command)| command)
            .to_owned();
        let result = CommandResult {
            id: format!("cmd-{}", results.len()),
            command_name,
            command_status: if wait {
                CommandStatus::Succeeded
            } else {
                CommandStatus::Running
            },
            command_error: None,
            command_result: None,
        };
        results.push(result.clone());
        Ok(result)
    }

    fn list(&self) -> Vec<CommandResult> {
        self.results.lock().expect("results lock").clone()
    }

    async fn get(&self, id: &str, wait: bool) -> Result<CommandResult, ApiError> {
        let call = Call::Get {
            id: id.to_owned(),
            wait,
        };
        if let Some(error) = self.record(call) {
            return Err(error);
        }
        self.list()
            .into_iter()
            .find(|result| result.id == id)
            .ok_or_else(|| ApiError::UnknownCommandId(id.to_owned()))
    }
}

fn result(id: &str, name: &str, status: CommandStatus) -> CommandResult {
    CommandResult {
        id: id.into(),
        command_name: name.into(),
        command_status: status,
        command_error: None,
        command_result: Some(serde_json::json!({"echo": id})),
    }
}

/// Settings for a test agent on 127.0.0.1 with an ephemeral port.
fn loopback_settings(token: Option<&str>) -> Settings {
    Settings {
        listen_host: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        listen_port: 0,
        agent_token: token.map(|token| Secret(token.into())),
        ..Settings::default()
    }
}

/// A running test agent.
struct Agent {
    ctx: Arc<AgentContext>,
    commands: Arc<FakeCommands>,
    server: ApiServer,
    base: String,
    client: reqwest::Client,
}

impl Agent {
    async fn start(commands: FakeCommands) -> Agent {
        Agent::start_with(
            loopback_settings(Some(TOKEN)),
            commands,
            ServeOptions::default(),
        )
        .await
    }

    async fn start_with(
        settings: Settings,
        commands: FakeCommands,
        options: ServeOptions,
    ) -> Agent {
        let scheme = if options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let ctx = Arc::new(AgentContext::new(settings));
        let commands = Arc::new(commands);
        let server = serve(Arc::clone(&ctx), Arc::clone(&commands), options).expect("serve");
        let base = format!("{scheme}://{}", server.local_addr());
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("reqwest client");
        Agent {
            ctx,
            commands,
            server,
            base,
            client,
        }
    }

    fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    async fn get(&self, path_and_query: &str) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path_and_query))
            .send()
            .await
            .expect("GET");
        read(response).await
    }

    async fn post(&self, path_and_query: &str, body: &str) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path_and_query))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await
            .expect("POST");
        read(response).await
    }
}

/// Status and JSON body; fails unless the body is declared and parses as JSON.
async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    assert_eq!(
        content_type.as_deref(),
        Some("application/json"),
        "content type of a {status} reply"
    );
    let body = response.bytes().await.expect("response body");
    let json = serde_json::from_slice(&body)
        .unwrap_or_else(|err| panic!("{status} body is not JSON ({err}): {body:?}"));
    (status, json)
}

fn fault(code: &str, faultstring: &str) -> Value {
    serde_json::json!({"faultcode": code, "faultstring": faultstring})
}
