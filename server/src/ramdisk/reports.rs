//! `POST /v1/rivet/nodes/{node}/reports`: plan-mode reports (step progress, erase proofs,
//! the inspect step's inventory, events, the plan's end, heartbeats), authenticated by the agent token, stored once per
//! `(boot_id, seq)` so agents can resend what they buffered. Heartbeats are not kept as
//! events: they only move the node's `last_report`, which every post does.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rivet_protocol::report::{PlanState, ReportAck, ReportBody, StepState};
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;

pub use rivet_protocol::report::{Report, ReportBatch};

use crate::app::AppState;
use crate::db::now_ms;
use crate::error::{ApiError, IronicError};
use crate::store::states;
use crate::token;

/// Where agents post reports; `{node}` is the node's UUID.
pub const REPORTS_PATH: &str = "/v1/rivet/nodes/{node}/reports";
/// The most reports one post may carry.
pub const MAX_REPORTS: usize = 1000;

pub(super) async fn reports(
    State(app): State<AppState>,
    Path(node): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<ReportAck>), IronicError> {
    let batch: ReportBatch = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request(format!("Invalid report body: {error}")))?;
    if batch.reports.len() > MAX_REPORTS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_REPORTS} reports per request, got {}",
            batch.reports.len()
        ))
        .into());
    }
    if batch.boot_id.is_empty() || batch.boot_id.len() > 64 {
        return Err(ApiError::bad_request("boot_id must have 1 to 64 characters").into());
    }
    let ack = app.db.write(move |conn| store(conn, &node, &batch)).await?;
    Ok((StatusCode::ACCEPTED, Json(ack)))
}

/// Stores a batch: checks the token, then inserts each report not stored before and applies
/// its effect on steps and the node's state.
pub(crate) fn store(
    conn: &Connection,
    ident: &str,
    batch: &ReportBatch,
) -> Result<ReportAck, ApiError> {
    let row = conn
        .prepare_cached("SELECT id, token_sha256 FROM nodes WHERE uuid = ?1 OR name = ?1")?
        .query_row([ident], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Option<String>>(1)?))
        })
        .optional()?;
    let Some((id, token_sha256)) = row else {
        return Err(ApiError::not_found(format!(
            "Node {ident} could not be found."
        )));
    };
    if !token_sha256.is_some_and(|stored| token::matches(&batch.agent_token, &stored)) {
        return Err(ApiError::bad_request(
            "Invalid or missing agent token received.",
        ));
    }
    let now = now_ms();
    let mut ack = ReportAck {
        stored: 0,
        duplicates: 0,
    };
    let mut insert = conn.prepare_cached(
        "INSERT OR IGNORE INTO events (node_id, time, source, kind, message, data, boot_id, seq) \
         VALUES (?1, ?2, 'agent', ?3, ?4, ?5, ?6, ?7)",
    )?;
    for report in &batch.reports {
        let seq = i64::try_from(report.seq)
            .map_err(|_| ApiError::bad_request(format!("seq {} is too large", report.seq)))?;
        if matches!(report.body, ReportBody::Heartbeat {}) {
            // Only `last_report` keeps heartbeats (one every few seconds per agent).
            ack.stored += 1;
            continue;
        }
        let (kind, message, data) = describe(&report.body);
        let inserted = insert.execute(params![
            id,
            now,
            kind,
            message,
            data.map(|d| d.to_string()),
            batch.boot_id,
            seq
        ])?;
        if inserted == 0 {
            ack.duplicates += 1;
            continue;
        }
        ack.stored += 1;
        apply(conn, id, &batch.boot_id, &report.body, now)?;
    }
    conn.prepare_cached("UPDATE nodes SET last_report = ?1 WHERE id = ?2")?
        .execute(params![now, id])?;
    Ok(ack)
}

/// The event row of a report: kind, message, data.
fn describe(body: &ReportBody) -> (&'static str, String, Option<Value>) {
    match body {
        ReportBody::Step {
            index,
            name,
            state,
            progress,
            message,
        } => {
            let mut text = format!("step {index} {name}: {}", state.as_str());
            if let Some(progress) = progress {
                text.push_str(&format!(" {:.0}%", progress * 100.0));
            }
            if let Some(message) = message {
                text.push_str(&format!(" ({message})"));
            }
            // A running step's progress is its own kind: `node show` lists it in the
            // step table, not among the events.
            let kind = if *state == StepState::Running && (progress.is_some() || message.is_some())
            {
                "progress"
            } else {
                "step"
            };
            (
                kind,
                text,
                Some(
                    serde_json::json!({"index": index, "name": name, "state": state, "progress": progress}),
                ),
            )
        }
        ReportBody::Erase { message, data } => ("erase", message.clone(), Some(data.clone())),
        ReportBody::Heartbeat {} => ("heartbeat", "heartbeat".into(), None),
        ReportBody::Inventory { inventory } => {
            let count = |key: &str| inventory[key].as_array().map_or(0, Vec::len);
            let summary = serde_json::json!({
                "interfaces": count("interfaces"),
                "disks": count("disks"),
            });
            (
                "inspection",
                format!(
                    "inventory received from the plan's inspect step: {} disk(s), {} interface(s)",
                    count("disks"),
                    count("interfaces")
                ),
                Some(summary),
            )
        }
        ReportBody::Event { message, data } => ("event", message.clone(), data.clone()),
        ReportBody::Plan { state, message } => {
            let verb = match state {
                PlanState::Done => "plan finished",
                PlanState::Failed => "plan failed",
            };
            let text = match message {
                Some(message) => format!("{verb}: {message}"),
                None => verb.to_string(),
            };
            ("plan", text, None)
        }
    }
}

/// The effect of a new report on the step table and the node's state.
fn apply(
    conn: &Connection,
    id: i64,
    boot_id: &str,
    body: &ReportBody,
    now: i64,
) -> Result<(), ApiError> {
    match body {
        ReportBody::Step {
            index,
            name,
            state,
            progress,
            message,
        } => {
            conn.prepare_cached(
                "INSERT INTO steps (node_id, boot_id, idx, name, state, progress, message, \
                 started_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8) \
                 ON CONFLICT (node_id, boot_id, idx) DO UPDATE SET name = excluded.name, \
                 state = excluded.state, progress = coalesce(excluded.progress, progress), \
                 message = coalesce(excluded.message, message), updated_at = excluded.updated_at",
            )?
            .execute(params![
                id,
                boot_id,
                index,
                name,
                state.as_str(),
                progress,
                message,
                now
            ])?;
            let (state, error) = match state {
                StepState::Failed => (
                    states::FAILED,
                    Some(format!(
                        "step {name} failed{}",
                        message
                            .as_ref()
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    )),
                ),
                _ => (states::RUNNING, None),
            };
            set_state(conn, id, state, error.as_deref(), now)
        }
        ReportBody::Plan { state, message } => match state {
            PlanState::Done => set_state(conn, id, states::DONE, None, now),
            PlanState::Failed => {
                let error = format!(
                    "plan failed{}",
                    message
                        .as_ref()
                        .map(|m| format!(": {m}"))
                        .unwrap_or_default()
                );
                set_state(conn, id, states::FAILED, Some(&error), now)
            }
        },
        ReportBody::Inventory { inventory } => {
            conn.prepare_cached(
                "UPDATE nodes SET inventory = ?1, inspected_at = ?2, updated_at = ?2 WHERE id = ?3",
            )?
            .execute(params![inventory.to_string(), now, id])?;
            Ok(())
        }
        ReportBody::Erase { .. } | ReportBody::Event { .. } | ReportBody::Heartbeat {} => Ok(()),
    }
}

fn set_state(
    conn: &Connection,
    id: i64,
    state: &str,
    error: Option<&str>,
    now: i64,
) -> Result<(), ApiError> {
    conn.prepare_cached(
        "UPDATE nodes SET state = ?1, last_error = coalesce(?2, last_error), updated_at = ?3 \
         WHERE id = ?4",
    )?
    .execute(params![state, error, now, id])?;
    Ok(())
}
