//! Node ISO URLs for BMCs, which can be given a URL but not a bearer token:
//! `POST /v1/nodes/{node}/iso-url[?ttl=SECONDS]` (operator) answers
//! `{"url": "<base>/v1/isos/<uuid>?expires=<unix s>&signature=<hex>", "expires_at"}`, and
//! `GET`/`HEAD /v1/isos/{uuid}` serves the node's ISO without a token while the signature
//! (HMAC-SHA256 over the UUID and the expiry, with a key only this server has) is valid and
//! the expiry has not passed. Anyone holding the URL can read that node's ISO until then.

use std::path::Path;

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::Json;
use ring::hmac;
use serde::Deserialize;
use serde_json::{json, Value};

use super::IsoError;
use crate::app::AppState;
use crate::db::now_ms;
use crate::error::{ApiError, OperatorError};
use crate::store;

/// Lifetime of a URL when the operator gives none: a day.
const DEFAULT_TTL: u64 = 24 * 3600;
/// The longest lifetime: 30 days.
const MAX_TTL: u64 = 30 * 24 * 3600;

/// The key URLs are signed with.
pub struct UrlKey(hmac::Key);

impl std::fmt::Debug for UrlKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlKey(..)")
    }
}

impl UrlKey {
    /// Reads the key file at `path`, creating it (mode 0600, 256 random bits) on first use.
    /// Removing the file revokes every URL handed out (at the next start).
    pub fn load_or_create(path: &Path) -> Result<UrlKey, IsoError> {
        if !path.exists() {
            crate::tls::write_new(
                path,
                format!("{}\n", crate::token::generate()).as_bytes(),
                0o600,
            )
            .map_err(|error| IsoError::UrlKey(error.to_string()))?;
        }
        let text = std::fs::read_to_string(path)
            .map_err(|error| IsoError::UrlKey(format!("reading {}: {error}", path.display())))?;
        let secret = text.trim();
        if secret.len() < 32 {
            return Err(IsoError::UrlKey(format!(
                "{} holds fewer than 32 characters",
                path.display()
            )));
        }
        Ok(UrlKey(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())))
    }

    fn message(uuid: &str, expires: i64) -> String {
        format!("rivet-server node ISO\n{uuid}\n{expires}")
    }

    fn sign(&self, uuid: &str, expires: i64) -> String {
        hex::encode(hmac::sign(&self.0, Self::message(uuid, expires).as_bytes()))
    }

    fn verify(&self, uuid: &str, expires: i64, signature: &str) -> bool {
        hex::decode(signature).is_ok_and(|tag| {
            hmac::verify(&self.0, Self::message(uuid, expires).as_bytes(), &tag).is_ok()
        })
    }
}

#[derive(Debug, Deserialize)]
pub struct TtlQuery {
    ttl: Option<u64>,
}

/// `POST /v1/nodes/{node}/iso-url`.
pub async fn make_url(
    State(app): State<AppState>,
    UrlPath(ident): UrlPath<String>,
    Query(query): Query<TtlQuery>,
    headers: HeaderMap,
) -> Result<Json<Value>, OperatorError> {
    let source = app.iso.clone().ok_or_else(super::no_isos)?;
    let ttl = query.ttl.unwrap_or(DEFAULT_TTL);
    if !(1..=MAX_TTL).contains(&ttl) {
        return Err(ApiError::bad_request(format!("ttl must be 1 to {MAX_TTL} seconds")).into());
    }
    let node = app.db.read(move |conn| store::get(conn, &ident)).await?;
    let expires = now_ms() / 1000 + ttl as i64;
    let signature = source.url_key.sign(&node.uuid, expires);
    let url = format!(
        "{}/v1/isos/{}?expires={expires}&signature={signature}",
        app.base_url(&headers),
        node.uuid
    );
    Ok(Json(json!({
        "url": url,
        "expires_at": crate::time::rfc3339(expires * 1000),
    })))
}

#[derive(Debug, Deserialize)]
pub struct SignedQuery {
    expires: i64,
    signature: String,
}

/// `GET`/`HEAD /v1/isos/{uuid}?expires=&signature=`.
pub async fn get_signed(
    State(app): State<AppState>,
    UrlPath(uuid): UrlPath<String>,
    query: Result<Query<SignedQuery>, axum::extract::rejection::QueryRejection>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, OperatorError> {
    let source = app.iso.clone().ok_or_else(super::no_isos)?;
    let forbidden = |message: &str| OperatorError(ApiError::new(StatusCode::FORBIDDEN, message));
    let Ok(Query(query)) = query else {
        return Err(forbidden("a node ISO URL needs expires and signature"));
    };
    if !source
        .url_key
        .verify(&uuid, query.expires, &query.signature)
    {
        return Err(forbidden("the URL's signature is not valid"));
    }
    if query.expires <= now_ms() / 1000 {
        return Err(forbidden("the URL has expired"));
    }
    super::serve(app, source, uuid, method, headers).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_the_node_and_the_expiry() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("key");
        let key = UrlKey::load_or_create(&path).expect("a new key");
        let signature = key.sign("node-a", 100);
        assert!(key.verify("node-a", 100, &signature));
        assert!(!key.verify("node-b", 100, &signature));
        assert!(!key.verify("node-a", 101, &signature));
        assert!(!key.verify("node-a", 100, "00"));
        assert!(!key.verify("node-a", 100, "not hex"));
        let again = UrlKey::load_or_create(&path).expect("the same key");
        assert!(again.verify("node-a", 100, &signature));
        let other = UrlKey::load_or_create(&dir.path().join("other")).expect("another key");
        assert!(!other.verify("node-a", 100, &signature));
    }
}
