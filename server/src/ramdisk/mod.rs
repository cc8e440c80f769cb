//! Ironic's ramdisk endpoints, with Ironic 39's semantics, status codes and error bodies, so
//! an agent speaks one protocol to Ironic and to rivet-server: `GET /`, `GET /v1/lookup`,
//! `POST /v1/heartbeat/{node}`, `POST /v1/continue_inspection`; plus rivet's plan-mode
//! report endpoint, which the `rivet` capability marker in `GET /` announces.

mod heartbeat;
mod inspection;
mod reports;
pub mod version;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use rivet_protocol::lookup::MASKED_TOKEN;
use rivet_protocol::JsonObject;
use rusqlite::Connection;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::error::{ApiError, IronicError};
use crate::store::{self, Identity, Match, Node};
use crate::token;

pub use reports::{Report, ReportBatch, REPORTS_PATH};

/// The capability marker's version: agents that know plan mode switch to it when
/// `GET /` carries `"rivet": {"plan_mode": 1, ...}`.
pub const PLAN_MODE_VERSION: u32 = 1;

/// Ironic's generic 404, the same whether no node matched, several did, or the node may
/// not look up (so a caller learns nothing about which).
pub fn resource_not_found() -> ApiError {
    ApiError::not_found("Resource could not be found.")
}

pub fn router(state: AppState) -> Router {
    let versioned = Router::new()
        .route("/v1/lookup", get(lookup))
        .route("/v1/heartbeat/{node}", post(heartbeat::heartbeat))
        .route(
            "/v1/continue_inspection",
            post(inspection::continue_inspection),
        )
        .route(REPORTS_PATH, post(reports::reports))
        .layer(axum::middleware::from_fn(version::negotiate));
    Router::new()
        .route("/", get(root))
        .merge(versioned)
        .with_state(state)
}

/// `GET /`: Ironic's version document (the agent reads `default_version.version`) with the
/// `rivet` capability marker.
async fn root(State(app): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let base = app.base_url(&headers);
    let v1 = json!({
        "id": "v1",
        "links": [{"href": format!("{base}/v1/"), "rel": "self"}],
        "status": "CURRENT",
        "min_version": version::MIN.to_string(),
        "version": version::MAX.to_string(),
    });
    Json(json!({
        "name": "rivet-server",
        "description": "rivet's control server, speaking Ironic's ramdisk API.",
        "default_version": v1,
        "versions": [v1],
        "rivet": {
            "version": env!("CARGO_PKG_VERSION"),
            "plan_mode": PLAN_MODE_VERSION,
            "reports": REPORTS_PATH,
        },
    }))
}

#[derive(Debug, Deserialize)]
struct LookupQuery {
    addresses: Option<String>,
    node_uuid: Option<String>,
    /// rivet extension: the SMBIOS system UUID.
    system_uuid: Option<String>,
    /// rivet extension: the chassis serial number.
    serial: Option<String>,
}

/// Checks `node_uuid` as Ironic's `args.uuid` does.
fn node_uuid_arg(value: Option<String>) -> Result<Option<String>, ApiError> {
    value
        .map(|text| {
            uuid::Uuid::parse_str(&text)
                .map(|uuid| uuid.to_string())
                .map_err(|_| ApiError::bad_request(format!("Expected UUID for node_uuid: {text}")))
        })
        .transpose()
}

/// `GET /v1/lookup?addresses=<macs>[&node_uuid=]` (spec §1.3): the node by UUID or by its
/// MACs, and at >= 1.62 its token, handed out once and `"******"` after.
async fn lookup(
    State(app): State<AppState>,
    Extension(version::Requested(version)): Extension<version::Requested>,
    headers: HeaderMap,
    query: Result<Query<LookupQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, IronicError> {
    if version < version::RAMDISK_ENDPOINTS {
        return Err(resource_not_found().into());
    }
    let Query(query) = query.map_err(|error| ApiError::bad_request(error.body_text()))?;
    let node_uuid = node_uuid_arg(query.node_uuid)?;
    let macs: Vec<String> = query
        .addresses
        .iter()
        .flat_map(|list| list.split(','))
        .filter(|text| !text.trim().is_empty())
        .filter_map(|text| {
            let mac = store::normalize_mac(text);
            if mac.is_none() {
                tracing::warn!(address = text, "lookup ignores an invalid MAC address");
            }
            mac
        })
        .collect();
    let identity = Identity {
        macs,
        system_uuid: query.system_uuid.filter(|s| !s.is_empty()),
        serial: query.serial.filter(|s| !s.is_empty()),
    };
    if identity == Identity::default() && node_uuid.is_none() {
        return Err(ApiError::bad_request(
            "At least one of 'addresses' and 'node_uuid' parameters is required",
        )
        .into());
    }
    let with_token = version >= rivet_protocol::version::microversions::AGENT_TOKEN;
    let base = app.base_url(&headers);
    let heartbeat_timeout = app.settings.heartbeat_timeout;
    let answer = app
        .db
        .write(move |conn| {
            let node = match node_uuid {
                Some(uuid) => store::find(conn, &uuid)?,
                None => match store::match_identity(conn, &identity)? {
                    Match::One(node) => Some(*node),
                    Match::None | Match::Ambiguous => None,
                },
            };
            let Some(node) = node else {
                tracing::info!(?identity, "lookup found no node");
                return Err(resource_not_found());
            };
            let token = if with_token {
                Some(token_for(conn, &node)?)
            } else {
                None
            };
            Ok(lookup_answer(&node, token, &base, heartbeat_timeout))
        })
        .await?;
    Ok(Json(answer))
}

/// Ironic's `get_node_with_token`: a fresh token when the node has none (stored as a hash),
/// else the mask.
pub(crate) fn token_for(conn: &Connection, node: &Node) -> Result<String, ApiError> {
    if node.agent.token_sha256.is_some() {
        return Ok(MASKED_TOKEN.to_string());
    }
    let fresh = token::generate();
    conn.prepare_cached(
        "UPDATE nodes SET token_sha256 = ?1, token_pregenerated = 0, updated_at = ?2 WHERE id = ?3",
    )?
    .execute(rusqlite::params![
        token::digest(&fresh),
        crate::db::now_ms(),
        node.id
    ])?;
    store::add_event(
        conn,
        node.id,
        "server",
        "token",
        "agent token handed out at lookup",
        None,
    )?;
    Ok(fresh)
}

/// Keys whose values the ramdisk must not see (Ironic masks the same kind of keys).
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["password", "secret", "token", "configdrive", "image_url"]
        .iter()
        .any(|needle| key.contains(needle))
}

fn masked(object: &JsonObject) -> JsonObject {
    object
        .iter()
        .map(|(key, value)| {
            let value = if is_secret_key(key) {
                Value::String(MASKED_TOKEN.into())
            } else {
                value.clone()
            };
            (key.clone(), value)
        })
        .collect()
}

/// The 200 body of lookup (spec §1.4) with Ironic 39's default agent configuration, plus
/// `config.rivet`: the node's plan (plan mode) and where to report.
pub(crate) fn lookup_answer(
    node: &Node,
    token: Option<String>,
    base: &str,
    heartbeat_timeout: u64,
) -> Value {
    let mut driver_internal_info = JsonObject::new();
    if node.agent.token_sha256.is_some() || token.is_some() {
        driver_internal_info.insert("agent_secret_token".into(), MASKED_TOKEN.into());
    }
    if let Some(last) = node.agent.last_heartbeat {
        driver_internal_info.insert(
            "agent_last_heartbeat".into(),
            crate::time::rfc3339(last).into(),
        );
    }
    json!({
        "node": {
            "uuid": node.uuid,
            "properties": node.properties,
            "instance_info": masked(&node.instance_info),
            "driver_internal_info": driver_internal_info,
            "links": [
                {"href": format!("{base}/v1/nodes/{}", node.uuid), "rel": "self"},
                {"href": format!("{base}/nodes/{}", node.uuid), "rel": "bookmark"},
            ],
        },
        "config": {
            "metrics": {"backend": "noop", "prepend_host": false, "prepend_uuid": false,
                        "prepend_host_reverse": true, "global_prefix": null},
            "metrics_statsd": {"statsd_host": "localhost", "statsd_port": 8125},
            "heartbeat_timeout": heartbeat_timeout,
            "agent_containers": {
                "allow_arbitrary_containers": false,
                "allowed_containers": [],
                "container_steps_file": "/etc/ironic-python-agent.d/mysteps.yaml",
                "runner": "podman",
                "pull_options": [],
                "run_options": ["--rm", "--network=host"],
            },
            "agent_token": token,
            "agent_token_required": true,
            "agent_md5_checksum_enable": false,
            "disable_deep_image_inspection": false,
            "permitted_image_formats": ["raw", "gpt", "qcow2", "iso"],
            "agent_skip_bmc_detect": false,
            "enable_bios_bootloader_install": false,
            "tls_min_version": "1.3",
            "tls_cipher_suites": null,
            "rivet": {
                "plan": node.plan,
                "reports": REPORTS_PATH.replace("{node}", &node.uuid),
            },
        },
    })
}
