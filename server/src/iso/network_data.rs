//! A node's network_data.json (OpenStack's format, docs/network.md), set by the operator
//! for its per-node ISO: `PUT`/`GET`/`DELETE /v1/nodes/{node}/network-data`.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rivet_protocol::network_data::NetworkData;
use rusqlite::{params, Connection};
use serde_json::Value;

use crate::app::AppState;
use crate::db::now_ms;
use crate::error::{ApiError, OperatorError};
use crate::store;

/// The node's network_data.json as stored, if the operator set one.
pub fn get(conn: &Connection, id: i64) -> Result<Option<String>, ApiError> {
    let text = conn
        .prepare_cached("SELECT network_data FROM nodes WHERE id = ?1")?
        .query_row([id], |row| row.get(0))?;
    Ok(text)
}

/// The body as compact JSON, if it is an OpenStack network_data.json the agent can apply.
fn validate(body: &[u8]) -> Result<String, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}")))?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "network_data.json is a JSON object (links, networks, services)",
        ));
    }
    let text = value.to_string();
    NetworkData::from_json(&text).map_err(|error| {
        ApiError::bad_request(format!("not an OpenStack network_data.json: {error}"))
    })?;
    Ok(text)
}

fn store_text(conn: &Connection, ident: &str, text: Option<String>) -> Result<(), ApiError> {
    let node = store::get(conn, ident)?;
    let message = if text.is_some() {
        "network_data set"
    } else {
        "network_data removed"
    };
    conn.prepare_cached("UPDATE nodes SET network_data = ?1, updated_at = ?2 WHERE id = ?3")?
        .execute(params![text, now_ms(), node.id])?;
    store::add_event(conn, node.id, "operator", "network_data", message, None)
}

pub async fn set(
    State(app): State<AppState>,
    Path(ident): Path<String>,
    body: Bytes,
) -> Result<StatusCode, OperatorError> {
    let text = validate(&body)?;
    app.db
        .write(move |conn| store_text(conn, &ident, Some(text)))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub async fn show(
    State(app): State<AppState>,
    Path(ident): Path<String>,
) -> Result<Json<Value>, OperatorError> {
    let text = app
        .db
        .read(move |conn| {
            let node = store::get(conn, &ident)?;
            get(conn, node.id)?.ok_or_else(|| {
                ApiError::not_found(format!("node {} has no network_data", node.uuid))
            })
        })
        .await?;
    let value = serde_json::from_str(&text).map_err(ApiError::internal)?;
    Ok(Json(value))
}

pub async fn clear(
    State(app): State<AppState>,
    Path(ident): Path<String>,
) -> Result<StatusCode, OperatorError> {
    app.db
        .write(move |conn| store_text(conn, &ident, None))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_network_data_is_accepted() {
        let good = br#"{"links": [{"id": "eth0", "type": "phy", "ethernet_mac_address": "52:54:00:00:00:01"}], "networks": [], "services": []}"#;
        assert!(validate(good).is_ok());
        for bad in [&b"[1]"[..], b"{", br#"{"links": 3}"#] {
            let error = validate(bad).expect_err("must be refused");
            assert_eq!(error.status, StatusCode::BAD_REQUEST);
        }
    }
}
