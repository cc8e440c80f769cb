//! The agent's client of the Ironic API: version discovery, lookup, heartbeat and
//! inspection's `continue_inspection` (spec §1, §2, §7.4).
//!
//! Requests go to the first API URL; on a connection error or timeout the next one is tried,
//! and the URL that answered moves to the front (spec §1.2). Every request carries
//! `Content-Type` and `Accept: application/json`, and `X-OpenStack-Request-ID` when
//! `ipa-global-request-id` is set. Tokens never appear in logs or errors.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use rivet_protocol::heartbeat::HeartbeatRequest;
use rivet_protocol::inspection::InspectionResponse;
use rivet_protocol::lookup::LookupResponse;
use rivet_protocol::version::{microversions, ApiRoot, MicroVersion};
use serde_json::Value;
use url::Url;

use crate::net::http::{build_client, error_chain, HttpClientError, HttpTls};
use crate::settings::{Secret, Settings};

/// The header that carries the microversion.
pub const API_VERSION_HEADER: &str = "X-OpenStack-Ironic-API-Version";
/// The header that carries `ipa-global-request-id`.
pub const REQUEST_ID_HEADER: &str = "X-OpenStack-Request-ID";
/// What the agent reports as `agent_version`: the IPA release it is compatible with.
pub const AGENT_VERSION: &str = "13.0.0";
/// The highest microversion lookup asks for.
pub const LOOKUP_MAX_VERSION: MicroVersion = microversions::AGENT_TOKEN;
/// The highest microversion heartbeats ask for (IPA's `MAX_KNOWN_VERSION`).
pub const HEARTBEAT_MAX_VERSION: MicroVersion = microversions::AGENT_VERIFY_CA;

/// Pauses after a 409 from lookup: 5 s, then 10 s, then 30 s from then on (spec §1.6).
const CONFLICT_PAUSES: [Duration; 3] = [
    Duration::from_secs(5),
    Duration::from_secs(10),
    Duration::from_secs(30),
];

/// Errors of one call to the Ironic API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Setup(#[from] HttpClientError),
    #[error("no Ironic API URL configured (ipa-api-url)")]
    NoApiUrl,
    #[error("{method} {url}: {detail}")]
    Transport {
        method: Method,
        url: String,
        detail: String,
    },
    #[error("{method} {url}: HTTP {status}: {message}")]
    Status {
        method: Method,
        url: String,
        status: StatusCode,
        message: String,
    },
    #[error("{method} {url}: reading the response: {detail}")]
    Body {
        method: Method,
        url: String,
        detail: String,
    },
    #[error("encoding {0}")]
    Encode(String),
    #[error("{method} {url}: unusable response: {reason}")]
    InvalidResponse {
        method: Method,
        url: String,
        reason: String,
    },
}

impl ClientError {
    /// The HTTP status, when the server answered with an error.
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            ClientError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// IPA retries inspection posts on connection errors, 5xx and 409 (spec §7.4).
    pub fn is_retryable_for_inspection(&self) -> bool {
        match self {
            ClientError::Transport { .. } => true,
            ClientError::Status { status, .. } => {
                status.is_server_error() || *status == StatusCode::CONFLICT
            }
            _ => false,
        }
    }
}

/// A client of one Ironic deployment (one or more API URLs).
#[derive(Debug)]
pub struct IronicClient {
    http: reqwest::Client,
    urls: Mutex<Vec<Url>>,
    request_id: Option<String>,
    pinned_version: Option<MicroVersion>,
    discovered_version: Mutex<Option<MicroVersion>>,
    conflict_pauses: Mutex<usize>,
}

impl IronicClient {
    /// A client for `settings.api_urls` with the settings' TLS and `http_request_timeout`.
    pub fn new(settings: &Settings) -> Result<Self, ClientError> {
        if settings.api_urls.is_empty() {
            return Err(ClientError::NoApiUrl);
        }
        let http = build_client(
            &HttpTls::from_settings(settings),
            settings.http_request_timeout,
        )?;
        Ok(IronicClient {
            http,
            urls: Mutex::new(settings.api_urls.clone()),
            request_id: settings.global_request_id.clone(),
            pinned_version: settings.ironic_api_version,
            discovered_version: Mutex::new(None),
            conflict_pauses: Mutex::new(0),
        })
    }

    /// A client that may have no API URL: for inspection, which posts to the callback URLs
    /// (`ipa-inspection-callback-url`) and may run without `ipa-api-url`.
    pub fn for_inspection(settings: &Settings) -> Result<Self, ClientError> {
        let http = build_client(
            &HttpTls::from_settings(settings),
            settings.http_request_timeout,
        )?;
        Ok(IronicClient {
            http,
            urls: Mutex::new(settings.api_urls.clone()),
            request_id: settings.global_request_id.clone(),
            pinned_version: settings.ironic_api_version,
            discovered_version: Mutex::new(None),
            conflict_pauses: Mutex::new(0),
        })
    }

    /// The API URLs, the one that last answered first.
    pub fn api_urls(&self) -> Vec<Url> {
        lock(&self.urls).clone()
    }

    /// The server's maximum microversion: `ipa-ironic-api-version` if set, else
    /// `default_version.version` of `GET /` (cached once it succeeds), else 1.31.
    pub async fn api_version(&self) -> MicroVersion {
        if let Some(version) = self.pinned_version {
            return version;
        }
        if let Some(version) = *lock(&self.discovered_version) {
            return version;
        }
        match self.discover_version().await {
            Ok(version) => {
                tracing::info!(%version, "Ironic API maximum microversion");
                *lock(&self.discovered_version) = Some(version);
                version
            }
            Err(err) => {
                tracing::warn!(
                    "discovering the Ironic API version failed, using {} for now: {err}",
                    microversions::MIN_IRONIC
                );
                microversions::MIN_IRONIC
            }
        }
    }

    async fn discover_version(&self) -> Result<MicroVersion, ClientError> {
        let (url, response) = self.send(Method::GET, "/", &[], None, None).await?;
        let body = read_body(&Method::GET, &url, response).await?;
        let invalid = |reason: String| ClientError::InvalidResponse {
            method: Method::GET,
            url: url.clone(),
            reason,
        };
        let root: ApiRoot = serde_json::from_slice(&body)
            .map_err(|err| invalid(format!("not an API root document: {err}")))?;
        let text = root
            .default_version
            .version
            .ok_or_else(|| invalid("default_version has no version".into()))?;
        MicroVersion::parse(&text)
            .ok_or_else(|| invalid(format!("default_version.version {text:?} is not X.Y")))
    }

    /// `GET /v1/lookup?addresses=<macs>[&node_uuid=]` at `min(server, 1.62)`, validated as IPA
    /// does (spec §1.5): 200, JSON, `node.uuid`, and `config` (an old top-level
    /// `heartbeat_timeout` is moved into it).
    pub async fn lookup(
        &self,
        macs: &[String],
        node_uuid: Option<&str>,
    ) -> Result<LookupResponse, ClientError> {
        let version = self.api_version().await.min(LOOKUP_MAX_VERSION);
        let mut query = vec![("addresses", macs.join(","))];
        if let Some(uuid) = node_uuid {
            query.push(("node_uuid", uuid.to_string()));
        }
        let method = Method::GET;
        let (url, response) = self
            .send(method.clone(), "/v1/lookup", &query, Some(version), None)
            .await?;
        let status = response.status();
        let body = read_body(&method, &url, response).await?;
        if status != StatusCode::OK {
            return Err(ClientError::Status {
                method,
                url,
                status,
                message: error_message(&body),
            });
        }
        parse_lookup(&body).map_err(|reason| ClientError::InvalidResponse {
            method,
            url,
            reason,
        })
    }

    /// `POST /v1/heartbeat/{node_uuid}` at `min(server, 1.68)` with the body fields that
    /// version allows. Success is 202; anything else is an error (a 409 keeps its status).
    pub async fn heartbeat(
        &self,
        node_uuid: &str,
        callback_url: &str,
        token: Option<&Secret>,
        verify_ca: Option<&str>,
    ) -> Result<(), ClientError> {
        let server = self.api_version().await;
        let request = heartbeat_request(server, callback_url, token, verify_ca);
        let version = server.min(HEARTBEAT_MAX_VERSION);
        let body = serde_json::to_vec(&request)
            .map_err(|err| ClientError::Encode(format!("the heartbeat body: {err}")))?;
        tracing::debug!(callback_url, %version, "heartbeat");
        let method = Method::POST;
        let path = format!("/v1/heartbeat/{node_uuid}");
        let (url, response) = self
            .send(method.clone(), &path, &[], Some(version), Some(body))
            .await?;
        let status = response.status();
        if status == StatusCode::ACCEPTED {
            return Ok(());
        }
        let body = read_body(&method, &url, response).await?;
        Err(ClientError::Status {
            method,
            url,
            status,
            message: error_message(&body),
        })
    }

    /// One attempt of `POST <callback>` with the inspection data, as IPA makes it: JSON,
    /// no microversion header (Ironic then answers `{"uuid"}`) unless `version` is given
    /// (1.84 and later answer like lookup, with a token). `urls` are tried in order while
    /// the connection fails. Success is any status below 400; the caller retries
    /// [`ClientError::is_retryable_for_inspection`] errors.
    pub async fn continue_inspection(
        &self,
        urls: &[Url],
        body: &[u8],
        version: Option<MicroVersion>,
    ) -> Result<InspectionResponse, ClientError> {
        let method = Method::POST;
        let mut last_error = ClientError::NoApiUrl;
        for url in urls {
            let url = url.to_string();
            let mut request = self
                .http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::ACCEPT, "application/json")
                .body(body.to_vec());
            if let Some(version) = version {
                request = request.header(API_VERSION_HEADER, version.to_string());
            }
            if let Some(request_id) = &self.request_id {
                request = request.header(REQUEST_ID_HEADER, request_id);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(err) => {
                    let detail = error_chain(&err);
                    tracing::warn!("{method} {url}: {detail}; trying the next callback URL");
                    last_error = ClientError::Transport {
                        method: method.clone(),
                        url,
                        detail,
                    };
                    continue;
                }
            };
            let status = response.status();
            let answer = read_body(&method, &url, response).await?;
            if status.as_u16() >= 400 {
                return Err(ClientError::Status {
                    method,
                    url,
                    status,
                    message: error_message(&answer),
                });
            }
            return serde_json::from_slice(&answer).map_err(|err| ClientError::InvalidResponse {
                method,
                url,
                reason: format!("unexpected inspection answer: {err}"),
            });
        }
        Err(last_error)
    }

    /// How long to pause after a 409 from lookup: 5 s, 10 s, then 30 s; never reset.
    pub fn next_conflict_pause(&self) -> Duration {
        let mut count = lock(&self.conflict_pauses);
        let pause = CONFLICT_PAUSES[(*count).min(CONFLICT_PAUSES.len() - 1)];
        *count += 1;
        pause
    }

    /// Sends one request, failing over to the next URL on transport errors. Returns the full
    /// URL that answered and the response.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        version: Option<MicroVersion>,
        body: Option<Vec<u8>>,
    ) -> Result<(String, reqwest::Response), ClientError> {
        let urls = self.api_urls();
        let mut last_error = ClientError::NoApiUrl;
        for (index, base) in urls.iter().enumerate() {
            let url = format!("{}{path}", base.as_str().trim_end_matches('/'));
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::ACCEPT, "application/json");
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Some(version) = version {
                request = request.header(API_VERSION_HEADER, version.to_string());
            }
            if let Some(request_id) = &self.request_id {
                request = request.header(REQUEST_ID_HEADER, request_id);
            }
            if let Some(body) = &body {
                request = request.body(body.clone());
            }
            match request.send().await {
                Ok(response) => {
                    self.move_to_front(base);
                    return Ok((url, response));
                }
                Err(err) => {
                    let detail = error_chain(&err);
                    if index + 1 < urls.len() {
                        tracing::warn!("{method} {url}: {detail}; trying the next API URL");
                    }
                    last_error = ClientError::Transport {
                        method: method.clone(),
                        url,
                        detail,
                    };
                }
            }
        }
        Err(last_error)
    }

    fn move_to_front(&self, working: &Url) {
        let mut urls = lock(&self.urls);
        if let Some(position) = urls.iter().position(|url| url == working) {
            urls.rotate_left(position);
        }
    }
}

/// The heartbeat body for a server whose maximum microversion is `server`: `agent_version`
/// from 1.36, `agent_token` (possibly null) from 1.62, `agent_verify_ca` from 1.68 when there
/// is a certificate (spec §2.1).
pub fn heartbeat_request(
    server: MicroVersion,
    callback_url: &str,
    token: Option<&Secret>,
    verify_ca: Option<&str>,
) -> HeartbeatRequest {
    HeartbeatRequest {
        callback_url: callback_url.to_string(),
        agent_token: (server >= microversions::AGENT_TOKEN)
            .then(|| token.map(|token| token.expose().to_string())),
        agent_version: (server >= microversions::AGENT_VERSION).then(|| AGENT_VERSION.to_string()),
        agent_verify_ca: verify_ca
            .filter(|_| server >= microversions::AGENT_VERIFY_CA)
            .map(str::to_string),
        agent_status: None,
        agent_status_message: None,
    }
}

/// The message of an Ironic error body: the `faultstring` of the fault JSON-encoded in
/// `error_message` (or of a fault given as an object), else `title`, else the raw body.
pub fn error_message(body: &[u8]) -> String {
    let raw = || String::from_utf8_lossy(body).trim().to_string();
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return raw();
    };
    let fault = match value.get("error_message") {
        Some(Value::String(text)) => serde_json::from_str::<Value>(text).unwrap_or(Value::Null),
        Some(inner) => inner.clone(),
        None => value,
    };
    ["faultstring", "title"]
        .iter()
        .find_map(|key| fault.get(key).and_then(Value::as_str))
        .map(str::to_string)
        .unwrap_or_else(raw)
}

/// Validates a 200 lookup body (spec §1.5). The reason never quotes the body: it holds the
/// token.
pub fn parse_lookup(body: &[u8]) -> Result<LookupResponse, String> {
    let mut content: Value =
        serde_json::from_slice(body).map_err(|err| format!("the body is not JSON: {err}"))?;
    let Some(object) = content.as_object_mut() else {
        return Err("the body is not a JSON object".into());
    };
    if object
        .get("node")
        .and_then(|node| node.get("uuid"))
        .is_none()
    {
        return Err("the answer has no node.uuid".into());
    }
    if !object.contains_key("config") {
        // An old API put heartbeat_timeout at the top level.
        let Some(timeout) = object.remove("heartbeat_timeout") else {
            return Err("the answer has no config".into());
        };
        object.insert(
            "config".into(),
            serde_json::json!({ "heartbeat_timeout": timeout }),
        );
    }
    serde_json::from_value(content).map_err(|err| format!("unexpected lookup answer: {err}"))
}

async fn read_body(
    method: &Method,
    url: &str,
    response: reqwest::Response,
) -> Result<Vec<u8>, ClientError> {
    match response.bytes().await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(err) => Err(ClientError::Body {
            method: method.clone(),
            url: url.to_string(),
            detail: error_chain(&err),
        }),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "b1n6iYWKJMPhgynm39scQduWgQuNbgo9_2q4Xr7eLgg";

    fn body_at(version: MicroVersion, ca: Option<&str>) -> Value {
        let token = Secret(TOKEN.into());
        let request = heartbeat_request(version, "https://192.0.2.10:9999", Some(&token), ca);
        serde_json::to_value(request).expect("a heartbeat encodes")
    }

    #[test]
    fn heartbeat_fields_follow_the_microversion() {
        let ca = Some("-----BEGIN CERTIFICATE-----\n...");
        let url = "https://192.0.2.10:9999";
        assert_eq!(
            body_at(MicroVersion::new(1, 31), ca),
            serde_json::json!({"callback_url": url})
        );
        assert_eq!(
            body_at(MicroVersion::new(1, 36), ca),
            serde_json::json!({"callback_url": url, "agent_version": "13.0.0"})
        );
        assert_eq!(
            body_at(MicroVersion::new(1, 62), ca),
            serde_json::json!({"callback_url": url, "agent_version": "13.0.0", "agent_token": TOKEN})
        );
        assert_eq!(
            body_at(MicroVersion::new(1, 115), ca),
            serde_json::json!({"callback_url": url, "agent_version": "13.0.0",
                               "agent_token": TOKEN, "agent_verify_ca": ca})
        );
        assert_eq!(
            body_at(MicroVersion::new(1, 68), None),
            serde_json::json!({"callback_url": url, "agent_version": "13.0.0", "agent_token": TOKEN})
        );
    }

    #[test]
    fn heartbeat_without_token_sends_null_from_1_62() {
        let request = heartbeat_request(MicroVersion::new(1, 68), "http://[::1]:9999", None, None);
        assert_eq!(
            serde_json::to_value(request).expect("a heartbeat encodes"),
            serde_json::json!({"callback_url": "http://[::1]:9999", "agent_version": "13.0.0",
                               "agent_token": null})
        );
    }

    #[test]
    fn error_messages_from_ironic_bodies() {
        let recorded = br#"{"error_message": "{\"faultcode\": \"Client\", \"faultstring\": \"Node 66500126-0c77-4904-ae0d-628029ecb6b9 is locked by host 127.0.0.1, please retry after the current operation is completed.\", \"debuginfo\": null}"}"#;
        assert_eq!(
            error_message(recorded),
            "Node 66500126-0c77-4904-ae0d-628029ecb6b9 is locked by host 127.0.0.1, please retry \
             after the current operation is completed."
        );
        assert_eq!(
            error_message(br#"{"error_message": {"faultstring": "as an object"}}"#),
            "as an object"
        );
        assert_eq!(
            error_message(br#"{"title": "Not Found", "description": "x"}"#),
            "Not Found"
        );
        assert_eq!(
            error_message(br#"{"error_message": "plain text"}"#),
            r#"{"error_message": "plain text"}"#
        );
        assert_eq!(
            error_message(b"<html>Bad Gateway</html>\n"),
            "<html>Bad Gateway</html>"
        );
    }

    #[test]
    fn lookup_answers_are_validated() {
        assert!(parse_lookup(b"not json").is_err());
        assert!(parse_lookup(br#"{"node": {}, "config": {}}"#).is_err());
        assert!(parse_lookup(br#"{"node": {"uuid": "u"}}"#).is_err());
        let old = parse_lookup(br#"{"node": {"uuid": "u"}, "heartbeat_timeout": 60}"#)
            .expect("an old answer is converted");
        assert_eq!(old.config.heartbeat_timeout, Some(60));
        let current = parse_lookup(
            br#"{"node": {"uuid": "u"}, "config": {"heartbeat_timeout": 20, "agent_token": null}}"#,
        )
        .expect("a current answer parses");
        assert_eq!(current.node.uuid, "u");
        assert_eq!(current.config.heartbeat_timeout, Some(20));
    }

    #[test]
    fn conflict_pauses_escalate_and_stay() {
        let settings = Settings {
            api_urls: vec![Url::parse("http://127.0.0.1:1").expect("a URL")],
            ..Settings::default()
        };
        let client = IronicClient::new(&settings).expect("a client");
        let pauses: Vec<u64> = (0..5)
            .map(|_| client.next_conflict_pause().as_secs())
            .collect();
        assert_eq!(pauses, vec![5, 10, 30, 30, 30]);
    }
}
