//! `FakeIronic`: an Ironic API on a loopback port (axum, plain HTTP or TLS) that records every
//! request and answers from scripts. Its default answers are the ones a real Ironic 39 gave in
//! the recordings under tests/fixtures/ironic-39.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use url::Url;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    /// The raw query string.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Option<Value>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Path and query, as the recordings write them.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(query) => format!("{}?{query}", self.path),
            None => self.path.clone(),
        }
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn json(status: u16, body: &Value) -> Self {
        Reply {
            status,
            body: body.to_string(),
        }
    }

    pub fn raw(status: u16, body: &str) -> Self {
        Reply {
            status,
            body: body.to_string(),
        }
    }

    /// An Ironic error: `{"error_message": "<JSON fault>"}`.
    pub fn ironic_error(status: u16, faultstring: &str) -> Self {
        let fault = serde_json::json!({
            "faultcode": "Client", "faultstring": faultstring, "debuginfo": null
        });
        Reply::json(
            status,
            &serde_json::json!({ "error_message": fault.to_string() }),
        )
    }

    pub fn accepted() -> Self {
        Reply::raw(202, "")
    }
}

#[derive(Debug)]
struct Script {
    requests: Vec<Recorded>,
    root: Reply,
    lookup: VecDeque<Reply>,
    lookup_default: Reply,
    heartbeat: VecDeque<Reply>,
    heartbeat_default: Reply,
    inspection: VecDeque<Reply>,
}

#[derive(Debug)]
struct Shared {
    script: Mutex<Script>,
    arrived: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Script> {
        match self.script.lock() {
            Ok(script) => script,
            Err(poisoned) => poisoned.into_inner(),
        }
    }
}

/// A fake Ironic API on 127.0.0.1.
pub struct FakeIronic {
    pub url: Url,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for FakeIronic {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeIronic {
    /// Plain HTTP.
    pub async fn start() -> Self {
        let (listener, shared, app) = Self::prepare().await;
        let url = url_of(&listener, "http");
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the fake Ironic serves");
        });
        FakeIronic {
            url,
            shared,
            server,
        }
    }

    /// HTTPS with `config`.
    pub async fn start_tls(config: rustls::ServerConfig) -> Self {
        let (listener, shared, app) = Self::prepare().await;
        let url = url_of(&listener, "https");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let server = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                tokio::spawn(async move {
                    // A failed handshake is what the TLS tests provoke; the client reports it.
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                        .await;
                });
            }
        });
        FakeIronic {
            url,
            shared,
            server,
        }
    }

    async fn prepare() -> (TcpListener, Arc<Shared>, Router) {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a loopback port");
        let shared = Arc::new(Shared {
            script: Mutex::new(Script {
                requests: Vec::new(),
                root: Reply::json(200, &recorded_root()),
                lookup: VecDeque::new(),
                lookup_default: Reply::ironic_error(404, "Resource could not be found."),
                heartbeat: VecDeque::new(),
                heartbeat_default: Reply::accepted(),
                inspection: VecDeque::new(),
            }),
            arrived: Notify::new(),
        });
        let state = shared.clone();
        let app = Router::new().fallback(
            move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = state.clone();
                async move { answer(&state, method, uri, headers, body) }
            },
        );
        (listener, shared, app)
    }

    /// `GET /` answers this from now on.
    pub fn set_root(&self, reply: Reply) {
        self.shared.lock().root = reply;
    }

    /// The next lookups get these answers, in order; then the default.
    pub fn script_lookup(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.lock().lookup.extend(replies);
    }

    pub fn set_lookup_default(&self, reply: Reply) {
        self.shared.lock().lookup_default = reply;
    }

    /// The next heartbeats get these answers, in order; then 202.
    pub fn script_heartbeat(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.lock().heartbeat.extend(replies);
    }

    /// The next `POST /v1/continue_inspection` get these answers, in order; then 404.
    pub fn script_inspection(&self, replies: impl IntoIterator<Item = Reply>) {
        self.shared.lock().inspection.extend(replies);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.lock().requests.clone()
    }

    /// The requests whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|request| request.path.starts_with(prefix))
            .collect()
    }

    /// Waits until `count` requests to paths starting with `prefix` have arrived.
    pub async fn wait_for(&self, prefix: &str, count: usize) -> Vec<Recorded> {
        loop {
            let arrived = self.shared.arrived.notified();
            let seen = self.requests_to(prefix);
            if seen.len() >= count {
                return seen;
            }
            arrived.await;
        }
    }
}

fn url_of(listener: &TcpListener, scheme: &str) -> Url {
    let address = listener
        .local_addr()
        .expect("a bound listener has an address");
    Url::parse(&format!("{scheme}://{address}")).expect("a loopback URL parses")
}

fn answer(shared: &Shared, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let reply = {
        let mut script = shared.lock();
        script.requests.push(Recorded {
            method,
            path: path.clone(),
            query: uri.query().map(str::to_string),
            headers,
            body: serde_json::from_slice(&body).ok(),
        });
        if path == "/" {
            script.root.clone()
        } else if path == "/v1/lookup" {
            let default = script.lookup_default.clone();
            script.lookup.pop_front().unwrap_or(default)
        } else if path.starts_with("/v1/heartbeat/") {
            script
                .heartbeat
                .pop_front()
                .unwrap_or_else(|| script.heartbeat_default.clone())
        } else if path == "/v1/continue_inspection" {
            script.inspection.pop_front().unwrap_or_else(|| {
                Reply::ironic_error(404, "Node was not found in the inspect wait state.")
            })
        } else {
            Reply::ironic_error(404, "Resource could not be found.")
        }
    };
    shared.arrived.notify_waiters();
    let status = StatusCode::from_u16(reply.status).expect("scripted statuses are valid");
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        reply.body,
    )
        .into_response()
}

/// The Ironic 39 recordings.
pub mod recordings {
    use serde_json::Value;

    fn records(name: &str) -> Vec<Value> {
        let path = format!(
            "{}/../tests/fixtures/ironic-39/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("reading the recording {path}: {err}"));
        text.lines()
            .map(|line| serde_json::from_str(line).expect("recordings are JSON lines"))
            .collect()
    }

    /// The agent->api records of a recording whose method and path (with query) start as
    /// given.
    pub fn agent_calls(name: &str, method: &str, path_prefix: &str) -> Vec<Value> {
        records(name)
            .into_iter()
            .filter(|record| {
                record["kind"] == "agent->api"
                    && record["method"] == method
                    && record["path"]
                        .as_str()
                        .is_some_and(|path| path.starts_with(path_prefix))
            })
            .collect()
    }

    /// The first agent->api record as above.
    pub fn first_agent_call(name: &str, method: &str, path_prefix: &str) -> Value {
        agent_calls(name, method, path_prefix)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("{name} has no {method} {path_prefix} record"))
    }
}

/// Ironic 39's `GET /` answer (maximum microversion 1.115).
pub fn recorded_root() -> Value {
    recordings::first_agent_call("deploy-whole-disk.jsonl", "GET", "/")["resp_body"].clone()
}

/// A root document announcing `version` as the maximum.
pub fn root_with_version(version: &str) -> Value {
    let mut root = recorded_root();
    root["default_version"]["version"] = Value::String(version.into());
    root
}

/// The first lookup answer of the deploy recording (a fresh token, heartbeat_timeout 20).
pub fn recorded_lookup_answer() -> Value {
    recordings::first_agent_call("deploy-whole-disk.jsonl", "GET", "/v1/lookup")["resp_body"]
        .clone()
}
