//! Route handlers (spec §3.2-§3.4), the token check and the request log.

use std::time::UNIX_EPOCH;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rivet_protocol::command::{CommandList, CommandRequest};
use rivet_protocol::version::{AgentRoot, AgentStatus, AgentV1, AgentVersion, Link, MediaType};
use serde_json::Value;

use super::fault::{self, http_error, HttpError};
use super::server::ConnectionInfo;
use super::{ApiState, IPA_COMPAT_VERSION};
use crate::commands::service::CommandService;
use crate::context::AgentContext;

const DOCS_URL: &str = "https://docs.openstack.org/ironic-python-agent";
const MEDIA_TYPE: &str = "application/vnd.openstack.ironic-python-agent.v1+json";

/// `GET /`: the version document.
pub(super) async fn root(parts: Parts) -> Response {
    let url = url_root(&parts);
    Json(AgentRoot {
        name: "OpenStack Ironic Python Agent API".into(),
        description: "Ironic Python Agent is a provisioning agent for OpenStack Ironic".into(),
        versions: vec![version(&url)],
        default_version: version(&url),
    })
    .into_response()
}

/// `GET /v1/`: links to the resources and the media type.
pub(super) async fn v1(parts: Parts) -> Response {
    let url = url_root(&parts);
    let AgentVersion { id, links } = version(&url);
    let resource_links = |resource: &str| {
        vec![
            link(format!("{url}/v1/{resource}"), "self"),
            link(format!("{url}/{resource}"), "bookmark"),
        ]
    };
    Json(AgentV1 {
        id,
        links,
        media_types: vec![MediaType {
            base: "application/json".into(),
            type_: MEDIA_TYPE.into(),
        }],
        commands: Some(resource_links("commands")),
        status: Some(resource_links("status")),
    })
    .into_response()
}

/// `GET /v1/status`: when the agent started, and the IPA version it implements.
pub(super) async fn status<S: CommandService>(State(state): State<ApiState<S>>) -> Response {
    let started_at = state
        .ctx
        .started_at
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs_f64())
        .unwrap_or(0.0);
    Json(AgentStatus {
        started_at,
        version: IPA_COMPAT_VERSION.into(),
    })
    .into_response()
}

/// `GET /v1/commands/`: every command result, oldest first.
pub(super) async fn list_commands<S: CommandService>(
    State(state): State<ApiState<S>>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = CommandQuery::parse(query.as_deref());
    if let Err(denied) = authorize(&state.ctx, query.agent_token.as_deref()) {
        return denied.into_response();
    }
    Json(CommandList {
        commands: state.service.list(),
    })
    .into_response()
}

/// `GET /v1/commands/{id}`, optionally waiting for the command to finish.
pub(super) async fn get_command<S: CommandService>(
    State(state): State<ApiState<S>>,
    id: Result<Path<String>, PathRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    let query = CommandQuery::parse(query.as_deref());
    if let Err(denied) = authorize(&state.ctx, query.agent_token.as_deref()) {
        return denied.into_response();
    }
    let Ok(Path(id)) = id else {
        return http_error(StatusCode::NOT_FOUND, fault::NOT_FOUND);
    };
    match state.service.get(&id, query.wait).await {
        Ok(result) => Json(result).into_response(),
        Err(error) => fault::api_error(&error),
    }
}

/// `POST /v1/commands/`: runs a command. As in IPA, the body is checked before the token.
pub(super) async fn run_command<S: CommandService>(
    State(state): State<ApiState<S>>,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return http_error(rejection.status(), &rejection.body_text()),
    };
    let request = match parse_command(&body) {
        Ok(request) => request,
        Err(invalid) => return invalid.into_response(),
    };
    let query = CommandQuery::parse(query.as_deref());
    if let Err(denied) = authorize(&state.ctx, query.agent_token.as_deref()) {
        return denied.into_response();
    }
    match state.service.execute(request, query.wait).await {
        Ok(result) => Json(result).into_response(),
        Err(error) => fault::api_error(&error),
    }
}

/// `/v1`, `/v1/commands`, `/commands`: 308 to the same path with a trailing slash, keeping
/// the query string.
pub(super) async fn add_trailing_slash(parts: Parts) -> Response {
    let location = match parts.uri.query() {
        Some(query) => format!("{}/?{query}", parts.uri.path()),
        None => format!("{}/", parts.uri.path()),
    };
    (
        StatusCode::PERMANENT_REDIRECT,
        [(header::LOCATION, location)],
    )
        .into_response()
}

pub(super) async fn not_found() -> Response {
    http_error(StatusCode::NOT_FOUND, fault::NOT_FOUND)
}

pub(super) async fn method_not_allowed() -> Response {
    http_error(StatusCode::METHOD_NOT_ALLOWED, fault::METHOD_NOT_ALLOWED)
}

/// Logs method, path and status of every request. The query (with the token) is left out.
pub(super) async fn log_request(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let peer = request
        .extensions()
        .get::<ConnectionInfo>()
        .map(|info| info.peer.to_string())
        .unwrap_or_default();
    let response = next.run(request).await;
    tracing::info!(%method, %path, status = response.status().as_u16(), %peer, "API request");
    response
}

/// The query parameters of the command routes.
#[derive(Debug, Default, PartialEq)]
pub(super) struct CommandQuery {
    pub agent_token: Option<String>,
    pub wait: bool,
}

impl CommandQuery {
    /// The first `agent_token` and `wait`, as Werkzeug's `args.get` takes them. `wait` is
    /// true for oslo's true forms (`true`, `1`, `yes`, `y`, `on`, `t`; any case) and false for
    /// anything else, absent included.
    pub(super) fn parse(query: Option<&str>) -> Self {
        let mut parsed = CommandQuery::default();
        let mut wait = None;
        for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match key.as_ref() {
                "agent_token" if parsed.agent_token.is_none() => {
                    parsed.agent_token = Some(value.into_owned());
                }
                "wait" if wait.is_none() => wait = Some(value.into_owned()),
                _ => {}
            }
        }
        parsed.wait = wait.is_some_and(|wait| {
            matches!(
                wait.trim().to_ascii_lowercase().as_str(),
                "true" | "1" | "yes" | "y" | "on" | "t"
            )
        });
        parsed
    }
}

/// The token check of spec §3.3: fails when no token is presented, when the agent holds
/// none, or when they differ.
fn authorize(ctx: &AgentContext, presented: Option<&str>) -> Result<(), HttpError> {
    let valid = match (ctx.token(), presented) {
        (Some(expected), Some(presented)) if !expected.expose().is_empty() => {
            constant_time_eq(expected.expose().as_bytes(), presented.as_bytes())
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(HttpError::new(
            StatusCode::UNAUTHORIZED,
            fault::TOKEN_INVALID,
        ))
    }
}

/// Compares without stopping at the first difference, so timing tells nothing but the length.
pub(super) fn constant_time_eq(expected: &[u8], presented: &[u8]) -> bool {
    if expected.len() != presented.len() {
        return false;
    }
    let difference = expected
        .iter()
        .zip(presented)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(difference) == 0
}

/// The body of `POST /v1/commands/`: a JSON object with a string `name` and an object
/// `params`, both required (IPA answers 400 otherwise).
fn parse_command(body: &[u8]) -> Result<CommandRequest, HttpError> {
    let value: Value = serde_json::from_slice(body).map_err(|err| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            format!("Failed to decode JSON object: {err}"),
        )
    })?;
    let Value::Object(mut body) = value else {
        return Err(HttpError::new(StatusCode::BAD_REQUEST, fault::BAD_COMMAND));
    };
    match (body.remove("name"), body.remove("params")) {
        (Some(Value::String(name)), Some(Value::Object(params))) => {
            Ok(CommandRequest { name, params })
        }
        _ => Err(HttpError::new(StatusCode::BAD_REQUEST, fault::BAD_COMMAND)),
    }
}

/// `scheme://host` of the request, for links.
fn url_root(parts: &Parts) -> String {
    let info = parts.extensions.get::<ConnectionInfo>();
    let scheme = match info {
        Some(info) if info.tls => "https",
        _ => "http",
    };
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .map(str::to_owned)
        .or_else(|| parts.uri.authority().map(ToString::to_string))
        .or_else(|| info.map(|info| info.local.to_string()))
        .unwrap_or_else(|| "localhost".into());
    format!("{scheme}://{host}")
}

fn version(url: &str) -> AgentVersion {
    AgentVersion {
        id: "v1".into(),
        links: vec![
            link(format!("{url}/v1"), "self"),
            Link {
                href: format!("{DOCS_URL}/"),
                rel: "describedby".into(),
                type_: Some("text/html".into()),
            },
        ],
    }
}

fn link(href: String, rel: &str) -> Link {
    Link {
        href,
        rel: rel.into(),
        type_: None,
    }
}
