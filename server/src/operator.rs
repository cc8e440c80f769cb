//! The operator API: nodes, plans, events, steps, inventory, agent tokens, network data
//! and per-node ISOs (`crate::iso`), as JSON under `/v1/nodes`, behind a bearer token that
//! is not an agent token. Its OpenAPI document is `GET /v1/openapi.json` (public, like the
//! version document).

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use rusqlite::params;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::db::now_ms;
use crate::error::{ApiError, OperatorError};
use crate::iso::{self, network_data};
use crate::store::{self, states, NewNode};
use crate::token;

/// The OpenAPI 3.1 document of the operator API, written by hand (see docs/server.md).
pub const OPENAPI: &str = include_str!("openapi.json");

pub fn router(state: AppState) -> Router {
    let protected = Router::new()
        .route("/v1/nodes", get(list_nodes).post(add_node))
        .route("/v1/nodes/{node}", get(show_node).delete(delete_node))
        .route(
            "/v1/nodes/{node}/plan",
            put(set_plan).get(show_plan).delete(clear_plan),
        )
        .route("/v1/nodes/{node}/events", get(list_events))
        .route("/v1/nodes/{node}/steps", get(list_steps))
        .route("/v1/nodes/{node}/inventory", get(show_inventory))
        .route("/v1/nodes/{node}/token", post(new_token))
        .route("/v1/nodes/{node}/reset-agent", post(reset_agent))
        .route(
            "/v1/nodes/{node}/network-data",
            put(network_data::set)
                .get(network_data::show)
                .delete(network_data::clear),
        )
        .route("/v1/nodes/{node}/iso", get(iso::get_iso))
        .route("/v1/nodes/{node}/iso-url", post(iso::signed::make_url))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_operator,
        ));
    Router::new()
        .route("/v1/openapi.json", get(openapi))
        // Signed and expiring instead of the operator token (for BMCs).
        .route("/v1/isos/{node}", get(iso::signed::get_signed))
        .merge(protected)
        .with_state(state)
}

async fn openapi() -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        OPENAPI,
    )
        .into_response()
}

/// Lets a request through only with `Authorization: Bearer <operator token>`.
async fn require_operator(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| token.trim().to_string());
    let unauthorized = |message: &str| {
        let mut response =
            OperatorError(ApiError::new(StatusCode::UNAUTHORIZED, message)).into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        response
    };
    let Some(presented) = presented else {
        return unauthorized("an operator token is required (Authorization: Bearer <token>)");
    };
    let digest = token::digest(&presented);
    let known = app
        .db
        .read(move |conn| {
            let count: i64 = conn
                .prepare_cached("SELECT count(*) FROM operator_tokens WHERE token_sha256 = ?1")?
                .query_row([digest], |row| row.get(0))?;
            Ok(count > 0)
        })
        .await;
    match known {
        Ok(true) => next.run(request).await,
        Ok(false) => unauthorized("the operator token is not valid"),
        Err(error) => OperatorError(error).into_response(),
    }
}

type Answer<T> = Result<T, OperatorError>;

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}")))
}

async fn list_nodes(State(app): State<AppState>) -> Answer<Json<Value>> {
    let nodes = app.db.read(store::list).await?;
    Ok(Json(json!({ "nodes": nodes })))
}

async fn add_node(State(app): State<AppState>, body: Bytes) -> Answer<(StatusCode, Json<Value>)> {
    let new: NewNode = parse_json(&body)?;
    if let Some(plan) = &new.plan {
        check_plan(plan)?;
    }
    let node = app
        .db
        .write(move |conn| {
            let node = store::insert(conn, &new, states::ENROLLED, false)?;
            store::add_event(conn, node.id, "operator", "enrolled", "node added", None)?;
            Ok(node)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(json!(node))))
}

async fn show_node(State(app): State<AppState>, Path(ident): Path<String>) -> Answer<Json<Value>> {
    let node = app.db.read(move |conn| store::get(conn, &ident)).await?;
    Ok(Json(json!(node)))
}

async fn delete_node(State(app): State<AppState>, Path(ident): Path<String>) -> Answer<StatusCode> {
    app.db
        .write(move |conn| {
            let node = store::get(conn, &ident)?;
            conn.prepare_cached("DELETE FROM heartbeat_log WHERE node_id = ?1")?
                .execute([node.id])?;
            conn.prepare_cached("DELETE FROM nodes WHERE id = ?1")?
                .execute([node.id])?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A plan must pass the checks the agent makes before running it (docs/plan.md), so an
/// operator learns about a mistake now rather than from a failed boot.
fn check_plan(plan: &Value) -> Result<(), ApiError> {
    if !plan.is_object() {
        return Err(ApiError::bad_request("a plan is a JSON object"));
    }
    rivet_protocol::plan::Plan::from_value(plan)
        .map(|_| ())
        .map_err(|e| ApiError::bad_request(format!("invalid {e}")))
}

async fn set_plan(
    State(app): State<AppState>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Answer<Json<Value>> {
    let plan: Value = parse_json(&body)?;
    check_plan(&plan)?;
    let node = app
        .db
        .write(move |conn| {
            let node = store::get(conn, &ident)?;
            conn.prepare_cached("UPDATE nodes SET plan = ?1, updated_at = ?2 WHERE id = ?3")?
                .execute(params![plan.to_string(), now_ms(), node.id])?;
            store::add_event(conn, node.id, "operator", "plan", "plan set", None)?;
            store::get(conn, &node.uuid)
        })
        .await?;
    Ok(Json(json!(node)))
}

async fn show_plan(State(app): State<AppState>, Path(ident): Path<String>) -> Answer<Json<Value>> {
    let node = app.db.read(move |conn| store::get(conn, &ident)).await?;
    let plan = node
        .plan
        .ok_or_else(|| ApiError::not_found(format!("node {} has no plan", node.uuid)))?;
    Ok(Json(plan))
}

async fn clear_plan(State(app): State<AppState>, Path(ident): Path<String>) -> Answer<StatusCode> {
    app.db
        .write(move |conn| {
            let node = store::get(conn, &ident)?;
            conn.prepare_cached("UPDATE nodes SET plan = NULL, updated_at = ?1 WHERE id = ?2")?
                .execute(params![now_ms(), node.id])?;
            store::add_event(conn, node.id, "operator", "plan", "plan removed", None)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after: i64,
    #[serde(default = "default_limit")]
    limit: u32,
}

fn default_limit() -> u32 {
    100
}

async fn list_events(
    State(app): State<AppState>,
    Path(ident): Path<String>,
    Query(query): Query<EventsQuery>,
) -> Answer<Json<Value>> {
    let limit = query.limit.clamp(1, 1000);
    let events = app
        .db
        .read(move |conn| {
            let node = store::get(conn, &ident)?;
            store::events(conn, node.id, query.after, limit)
        })
        .await?;
    Ok(Json(json!({ "events": events })))
}

async fn list_steps(State(app): State<AppState>, Path(ident): Path<String>) -> Answer<Json<Value>> {
    let steps = app
        .db
        .read(move |conn| {
            let node = store::get(conn, &ident)?;
            store::latest_steps(conn, node.id)
        })
        .await?;
    Ok(Json(json!({ "steps": steps })))
}

async fn show_inventory(
    State(app): State<AppState>,
    Path(ident): Path<String>,
) -> Answer<Json<Value>> {
    let inventory = app
        .db
        .read(move |conn| {
            let node = store::get(conn, &ident)?;
            store::inventory(conn, node.id)?.ok_or_else(|| {
                ApiError::not_found(format!("node {} has not been inspected", node.uuid))
            })
        })
        .await?;
    Ok(Json(inventory))
}

/// Forgets the node's agent: token, callback URL and pinned certificate, as Ironic does when
/// it powers a node off or reboots it. The next boot's lookup gets a fresh token.
fn wipe_agent(conn: &rusqlite::Connection, id: i64) -> Result<(), ApiError> {
    conn.prepare_cached(
        "UPDATE nodes SET token_sha256 = NULL, token_pregenerated = 0, agent_url = NULL, \
         agent_verify_ca = NULL, updated_at = ?1 WHERE id = ?2",
    )?
    .execute(params![now_ms(), id])?;
    Ok(())
}

/// A pregenerated token (for a per-node ISO or `ipa-agent-token`): replaces any earlier
/// token, wipes the agent's URL and certificate, and is shown this once.
async fn new_token(State(app): State<AppState>, Path(ident): Path<String>) -> Answer<Json<Value>> {
    let fresh = token::generate();
    let digest = token::digest(&fresh);
    let uuid = app
        .db
        .write(move |conn| {
            let node = store::get(conn, &ident)?;
            wipe_agent(conn, node.id)?;
            conn.prepare_cached(
                "UPDATE nodes SET token_sha256 = ?1, token_pregenerated = 1 WHERE id = ?2",
            )?
            .execute(params![digest, node.id])?;
            store::add_event(
                conn,
                node.id,
                "operator",
                "token",
                "agent token pregenerated",
                None,
            )?;
            Ok(node.uuid)
        })
        .await?;
    Ok(Json(json!({ "uuid": uuid, "agent_token": fresh })))
}

async fn reset_agent(
    State(app): State<AppState>,
    Path(ident): Path<String>,
) -> Answer<Json<Value>> {
    let node = app
        .db
        .write(move |conn| {
            let node = store::get(conn, &ident)?;
            wipe_agent(conn, node.id)?;
            store::add_event(
                conn,
                node.id,
                "operator",
                "agent",
                "agent token, callback URL and certificate forgotten",
                None,
            )?;
            store::get(conn, &node.uuid)
        })
        .await?;
    Ok(Json(json!(node)))
}
