//! `POST /v1/continue_inspection` (spec §7.4): stores the inventory on the node matched by
//! UUID, MACs, system UUID or serial, or registers a new node when the operator allows it.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::{Extension, Json};
use rivet_protocol::version::{microversions, MicroVersion};
use rusqlite::params;
use serde::Deserialize;
use serde_json::{json, Value};

use super::version::Requested;
use crate::app::AppState;
use crate::db::now_ms;
use crate::error::{ApiError, IronicError};
use crate::store::{self, states, Identity, Match, NewNode};

#[derive(Debug, Deserialize)]
pub(super) struct InspectionQuery {
    node_uuid: Option<String>,
}

/// Ironic's minimal schema for the payload: an `inventory` object whose `interfaces` list
/// has at least one object with a string `mac_address`; BMC addresses strings or null.
fn validate(data: &Value) -> Result<(), ApiError> {
    let error = |detail: &str| ApiError::bad_request(format!("Schema error for data: {detail}"));
    let inventory = data
        .get("inventory")
        .ok_or_else(|| error("'inventory' is a required property"))?;
    let inventory = inventory
        .as_object()
        .ok_or_else(|| error("'inventory' is not of type 'object'"))?;
    let interfaces = inventory
        .get("interfaces")
        .ok_or_else(|| error("'interfaces' is a required property"))?
        .as_array()
        .ok_or_else(|| error("'interfaces' is not of type 'array'"))?;
    if interfaces.is_empty() {
        return Err(error("[] should be non-empty"));
    }
    for interface in interfaces {
        if !interface.get("mac_address").is_some_and(Value::is_string) {
            return Err(error("'mac_address' is a required property"));
        }
    }
    for key in ["bmc_address", "bmc_v6address"] {
        if inventory
            .get(key)
            .is_some_and(|v| !v.is_string() && !v.is_null())
        {
            return Err(error(&format!("'{key}' is not of type 'string', 'null'")));
        }
    }
    Ok(())
}

fn text_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|text| !text.is_empty())
}

/// MACs, system UUID and serial from an inventory.
fn identity_of(inventory: &Value) -> Identity {
    let macs = inventory["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|interface| interface["mac_address"].as_str())
        .filter_map(store::normalize_mac)
        .collect();
    Identity {
        macs,
        system_uuid: text_at(inventory, "/system_vendor/system_uuid").map(str::to_string),
        serial: text_at(inventory, "/system_vendor/serial_number").map(str::to_string),
    }
}

pub(super) async fn continue_inspection(
    State(app): State<AppState>,
    Extension(Requested(version)): Extension<Requested>,
    headers: HeaderMap,
    query: Result<Query<InspectionQuery>, axum::extract::rejection::QueryRejection>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), IronicError> {
    let new_endpoint = version >= microversions::INSPECTION_WITH_TOKEN;
    let Query(query) = query.map_err(|error| ApiError::bad_request(error.body_text()))?;
    // 1.1 (no header, as IPA sends it) is accepted for compatibility; node_uuid needs 1.84.
    let old_endpoint = version == MicroVersion::new(1, 1) && query.node_uuid.is_none();
    if !(new_endpoint || old_endpoint) {
        return Err(ApiError::not_found(format!(
            "API version {} or newer is required",
            microversions::INSPECTION_WITH_TOKEN
        ))
        .into());
    }
    let node_uuid = super::node_uuid_arg(query.node_uuid)?;
    let mut data: Value = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("Invalid inspection data: {error}")))?;
    validate(&data)?;
    let inventory = data
        .as_object_mut()
        .and_then(|object| object.remove("inventory"))
        .unwrap_or(Value::Null);
    let identity = identity_of(&inventory);
    let has_bmc = ["bmc_address", "bmc_v6address"]
        .iter()
        .any(|key| text_at(&inventory, &format!("/{key}")).is_some());
    if identity.macs.is_empty() && !has_bmc && node_uuid.is_none() {
        return Err(ApiError::bad_request("No lookup information provided").into());
    }
    let auto_register = app.settings.auto_register;
    let base = app.base_url(&headers);
    let heartbeat_timeout = app.settings.heartbeat_timeout;
    let answer = app
        .db
        .write(move |conn| {
            let found = match &node_uuid {
                Some(uuid) => store::find(conn, uuid)?,
                None => match store::match_identity(conn, &identity)? {
                    Match::One(node) => Some(*node),
                    Match::Ambiguous => return Err(super::resource_not_found()),
                    Match::None => None,
                },
            };
            let node = match found {
                Some(node) => node,
                None if auto_register && node_uuid.is_none() => register(conn, &identity)?,
                None => {
                    tracing::info!(?identity, "inspection data for an unknown machine refused");
                    return Err(super::resource_not_found());
                }
            };
            store_inspection(conn, &node, &identity, &inventory, &data)?;
            if new_endpoint {
                let token = super::token_for(conn, &node)?;
                let node = store::get(conn, &node.uuid)?;
                Ok(super::lookup_answer(
                    &node,
                    Some(token),
                    &base,
                    heartbeat_timeout,
                ))
            } else {
                Ok(json!({"uuid": node.uuid}))
            }
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

fn register(conn: &rusqlite::Connection, identity: &Identity) -> Result<store::Node, ApiError> {
    let new = NewNode {
        macs: identity.macs.clone(),
        serial: identity.serial.clone(),
        system_uuid: identity.system_uuid.clone(),
        ..NewNode::default()
    };
    let node = store::insert(conn, &new, states::DISCOVERED, true)?;
    tracing::info!(node = node.uuid, macs = ?identity.macs, "registered a node from inspection");
    store::add_event(
        conn,
        node.id,
        "server",
        "registered",
        "registered automatically from inspection data",
        None,
    )?;
    Ok(node)
}

/// Keeps the inventory, gives the node the inventory's MACs that no other node owns, fills
/// in serial and system UUID, and records the inspection (and its error, if the agent
/// reported one, which Ironic's `ramdisk-error` hook treats as a failed inspection).
fn store_inspection(
    conn: &rusqlite::Connection,
    node: &store::Node,
    identity: &Identity,
    inventory: &Value,
    data: &Value,
) -> Result<(), ApiError> {
    let now = now_ms();
    let error = text_at(data, "/error").map(str::to_string);
    let state = match (node.state.as_str(), &error) {
        (_, Some(_)) => states::FAILED,
        (states::ENROLLED | states::DISCOVERED, None) => states::INSPECTED,
        (current, None) => current,
    };
    conn.prepare_cached(
        "UPDATE nodes SET inventory = ?1, inspected_at = ?2, updated_at = ?2, state = ?3, \
         serial = coalesce(serial, ?4), system_uuid = coalesce(system_uuid, ?5), \
         last_error = CASE WHEN ?6 IS NULL THEN last_error ELSE ?6 END WHERE id = ?7",
    )?
    .execute(params![
        inventory.to_string(),
        now,
        state,
        identity.serial,
        identity.system_uuid,
        error.as_ref().map(|e| format!("inspection: {e}")),
        node.id
    ])?;
    store::add_ports(conn, node.id, &identity.macs)?;
    let summary = json!({
        "interfaces": inventory["interfaces"].as_array().map(Vec::len),
        "disks": inventory["disks"].as_array().map(Vec::len),
        "root_disk": data["root_disk"]["name"],
        "error": error,
    });
    let message = match &error {
        Some(error) => format!("inspection data received with an error: {error}"),
        None => "inspection data received".to_string(),
    };
    store::add_event(
        conn,
        node.id,
        "agent",
        "inspection",
        &message,
        Some(&summary),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_follows_ironics_minimum() {
        assert!(validate(&json!({"inventory": {"interfaces": [{"mac_address": "x"}]}})).is_ok());
        for bad in [
            json!({}),
            json!({"inventory": []}),
            json!({"inventory": {"interfaces": []}}),
            json!({"inventory": {"interfaces": [{"name": "eth0"}]}}),
            json!({"inventory": {"interfaces": [{"mac_address": "x"}], "bmc_address": 1}}),
        ] {
            let error = validate(&bad).expect_err("invalid");
            assert!(error.message.starts_with("Schema error"), "{bad}: {error}");
        }
    }

    #[test]
    fn identity_from_inventory() {
        let inventory = json!({
            "interfaces": [{"mac_address": "52:54:00:AA:BB:CC"}, {"mac_address": "bogus"}],
            "system_vendor": {"serial_number": " S123 ", "system_uuid": ""},
        });
        assert_eq!(
            identity_of(&inventory),
            Identity {
                macs: vec!["52:54:00:aa:bb:cc".into()],
                system_uuid: None,
                serial: Some("S123".into()),
            }
        );
    }
}
