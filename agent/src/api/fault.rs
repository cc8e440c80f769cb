//! Error replies: `{"faultcode", "faultstring"}` bodies worded as IPA's (Werkzeug's) are.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rivet_protocol::fault::Fault;

use crate::commands::service::ApiError;

/// Werkzeug's descriptions of the HTTP errors IPA lets it produce.
pub(super) const NOT_FOUND: &str = "The requested URL was not found on the server. If you \
     entered the URL manually please check your spelling and try again.";
pub(super) const METHOD_NOT_ALLOWED: &str = "The method is not allowed for the requested URL.";
pub(super) const TOKEN_INVALID: &str = "Token invalid.";
pub(super) const BAD_COMMAND: &str = "Missing or invalid name or params";

/// A reply with `fault` as its JSON body.
pub(super) fn fault_response(status: StatusCode, fault: Fault) -> Response {
    (status, Json(fault)).into_response()
}

/// An HTTP error as IPA words it: `"<code> <reason>: <description>"`, e.g.
/// `"401 Unauthorized: Token invalid."`; `Server` for 5xx, `Client` otherwise.
pub(super) fn http_error(status: StatusCode, description: &str) -> Response {
    let faultstring = format!(
        "{} {}: {description}",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    );
    let fault = if status.is_server_error() {
        Fault::server(faultstring)
    } else {
        Fault::client(faultstring)
    };
    fault_response(status, fault)
}

/// An HTTP error not yet turned into a reply; see [`http_error`].
#[derive(Debug)]
pub(super) struct HttpError {
    status: StatusCode,
    description: String,
}

impl HttpError {
    pub(super) fn new(status: StatusCode, description: impl Into<String>) -> Self {
        HttpError {
            status,
            description: description.into(),
        }
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        http_error(self.status, &self.description)
    }
}

/// The command engine's error, with the status it stands for.
pub(super) fn api_error(error: &ApiError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if status.is_server_error() {
        tracing::warn!(%error, "command API error");
    }
    fault_response(status, error.fault())
}
