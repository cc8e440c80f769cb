//! `POST /v1/heartbeat/{node}` (spec §2.2): Ironic's checks in Ironic's order (API first,
//! then conductor), then the heartbeat is stored and answered 202 once committed.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Extension;
use rivet_protocol::version::{microversions, MicroVersion};
use rusqlite::{params, OptionalExtension};
use serde::Deserialize;

use super::version::{self, Requested};
use crate::app::AppState;
use crate::db::now_ms;
use crate::error::{ApiError, IronicError};
use crate::{store, token};

/// The heartbeat body as Ironic's API validates it: every field a string, `callback_url`
/// required. `agent_token` null and absent are alike (both "missing").
#[derive(Debug, Deserialize)]
struct Body {
    callback_url: Option<String>,
    agent_token: Option<String>,
    agent_version: Option<String>,
    agent_verify_ca: Option<String>,
    agent_status: Option<String>,
    agent_status_message: Option<String>,
}

const AGENT_STATUSES: [&str; 3] = ["start", "end", "error"];

/// What the checks before the database need to know.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    pub callback_url: String,
    pub agent_token: Option<String>,
    pub agent_version: Option<String>,
    pub agent_verify_ca: Option<String>,
    pub agent_status: Option<String>,
}

/// The API-side checks that need no node: field/microversion rules and the body's shape.
fn parse(version: MicroVersion, body: &[u8]) -> Result<Heartbeat, ApiError> {
    let body: Body = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("Invalid heartbeat body: {error}")))?;
    if body.agent_version.is_some() && version < microversions::AGENT_VERSION {
        return Err(ApiError::bad_request(
            r#"Field "agent_version" not recognised"#,
        ));
    }
    if (body.agent_status.is_some() || body.agent_status_message.is_some())
        && version < version::AGENT_STATUS
    {
        return Err(ApiError::bad_request(
            r#"Fields "agent_status" and "agent_status_message" not recognised."#,
        ));
    }
    if body.agent_verify_ca.is_some() && version < microversions::AGENT_VERIFY_CA {
        return Err(ApiError::bad_request(
            r#"Field "agent_verify_ca" not recognised in this version"#,
        ));
    }
    let callback_url = body
        .callback_url
        .ok_or_else(|| ApiError::bad_request(r#"Missing argument: "callback_url""#))?;
    Ok(Heartbeat {
        callback_url,
        agent_token: body.agent_token,
        agent_version: body.agent_version,
        agent_verify_ca: body.agent_verify_ca,
        agent_status: body.agent_status,
    })
}

/// Ironic accepts a callback URL whose scheme contains `http`, and an empty one.
fn callback_url_ok(url: &str) -> bool {
    url.is_empty()
        || url::Url::parse(url)
            .map(|parsed| parsed.scheme().contains("http"))
            .unwrap_or(false)
}

pub(super) async fn heartbeat(
    State(app): State<AppState>,
    Extension(Requested(version)): Extension<Requested>,
    Path(node): Path<String>,
    body: Bytes,
) -> Result<StatusCode, IronicError> {
    if version < version::RAMDISK_ENDPOINTS {
        return Err(super::resource_not_found().into());
    }
    let beat = parse(version, &body)?;
    let require_tls = app.settings.require_tls;
    app.db
        .write(move |conn| record(conn, &node, &beat, require_tls))
        .await?;
    Ok(StatusCode::ACCEPTED)
}

/// The checks that need the node, in Ironic's order, then the update.
pub(crate) fn record(
    conn: &rusqlite::Connection,
    ident: &str,
    beat: &Heartbeat,
    require_tls: bool,
) -> Result<(), ApiError> {
    let row = conn
        .prepare_cached(
            "SELECT id, token_sha256, agent_url, agent_verify_ca, agent_version FROM nodes \
             WHERE uuid = ?1 OR name = ?1",
        )?
        .query_row([ident], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, Option<String>>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, Option<String>>(4)?,
            ))
        })
        .optional()?;
    let Some((id, token_sha256, agent_url, verify_ca, agent_version)) = row else {
        return Err(ApiError::not_found(format!(
            "Node {ident} could not be found."
        )));
    };
    if !callback_url_ok(&beat.callback_url) {
        return Err(ApiError::bad_request(
            r#"An issue with the supplied "callback_url" has been detected."#,
        ));
    }
    if agent_url
        .as_ref()
        .is_some_and(|url| *url != beat.callback_url)
    {
        tracing::warn!(
            node = ident,
            url = beat.callback_url,
            "heartbeat with a changed callback URL"
        );
        return Err(ApiError::bad_request(
            r#"Detected change in ramdisk provided "callback_url""#,
        ));
    }
    let Some(agent_token) = &beat.agent_token else {
        return Err(ApiError::bad_request(
            "Agent token is required for heartbeat processing.",
        ));
    };
    if let Some(status) = &beat.agent_status {
        if !AGENT_STATUSES.contains(&status.as_str()) {
            return Err(ApiError::bad_request(format!(
                "Agent status is invalid. Valid states are {}.",
                AGENT_STATUSES.join(",")
            )));
        }
    }
    if beat.agent_version.is_none() && beat.agent_status.is_none() {
        return Err(ApiError::bad_request(
            "Agent did not transmit a version, and a version is required. Please update the \
             agent being used.",
        ));
    }
    if !token_sha256.is_some_and(|stored| token::matches(agent_token, &stored)) {
        tracing::warn!(
            node = ident,
            "heartbeat with an invalid or missing agent token"
        );
        return Err(ApiError::bad_request(
            "Invalid or missing agent token received.",
        ));
    }
    if require_tls && !beat.callback_url.is_empty() && !beat.callback_url.starts_with("https://") {
        return Err(ApiError::bad_request("TLS is required by configuration"));
    }
    if let (Some(stored), Some(sent)) = (&verify_ca, &beat.agent_verify_ca) {
        if stored.trim() != sent.trim() {
            return Err(ApiError::bad_request(
                r#"Detected change in ramdisk provided "agent_verify_ca""#,
            ));
        }
    }
    let now = now_ms();
    // The node row changes only when the agent does (first heartbeat, new version or
    // certificate); every heartbeat is one row appended to the log (see migration 2).
    if agent_url.is_none()
        || agent_version != beat.agent_version
        || (verify_ca.is_none() && beat.agent_verify_ca.is_some())
    {
        conn.prepare_cached(
            "UPDATE nodes SET agent_url = ?1, agent_version = ?2, \
             agent_verify_ca = coalesce(agent_verify_ca, ?3), updated_at = ?4 WHERE id = ?5",
        )?
        .execute(params![
            beat.callback_url,
            beat.agent_version,
            beat.agent_verify_ca,
            now,
            id
        ])?;
    }
    conn.prepare_cached("INSERT INTO heartbeat_log (node_id, time) VALUES (?1, ?2)")?
        .execute(params![id, now])?;
    if agent_url.is_none() {
        let pinned = if beat.agent_verify_ca.is_some() {
            ", certificate pinned"
        } else {
            ""
        };
        store::add_event(
            conn,
            id,
            "agent",
            "agent",
            &format!("agent up at {}{pinned}", beat.callback_url),
            None,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_the_microversion() {
        let body = br#"{"callback_url": "https://a:9999", "agent_version": "13.0.0"}"#;
        let error = parse(MicroVersion::new(1, 31), body).expect_err("agent_version at 1.31");
        assert!(error.message.contains("agent_version"));
        assert!(parse(MicroVersion::new(1, 36), body).is_ok());
        let ca = br#"{"callback_url": "https://a:9999", "agent_verify_ca": "x"}"#;
        assert!(parse(MicroVersion::new(1, 62), ca).is_err());
        assert!(parse(MicroVersion::new(1, 68), ca).is_ok());
        let status = br#"{"callback_url": "", "agent_status": "start"}"#;
        assert!(parse(MicroVersion::new(1, 68), status).is_err());
        assert!(parse(MicroVersion::new(1, 72), status).is_ok());
        assert!(parse(MicroVersion::new(1, 68), br#"{}"#).is_err());
        assert!(parse(MicroVersion::new(1, 68), b"not json").is_err());
    }

    #[test]
    fn callback_urls_as_ironic_accepts_them() {
        for ok in ["", "https://10.0.0.5:9999", "http://[::1]:9999"] {
            assert!(callback_url_ok(ok), "{ok:?}");
        }
        for bad in ["ftp://h", "10.0.0.5:9999", "not a url"] {
            assert!(!callback_url_ok(bad), "{bad:?}");
        }
    }
}
