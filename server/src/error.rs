//! Errors of the HTTP API, in two shapes: Ironic's on the ramdisk endpoints
//! (`{"error_message": "<JSON-encoded fault>"}`, so the agent reads one protocol) and rivet's
//! own on the operator API (`{"error": {"code", "message"}}`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use rivet_protocol::fault::IronicErrorBody;

/// An error a handler answers with: a status and a message for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP {status}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::CONFLICT, message)
    }

    /// A failure of the server itself. The detail is logged; the client gets a generic
    /// message that leaks nothing (database paths, SQL).
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!("internal error: {detail}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal server error; see the server log",
        )
    }

    /// The database could not take the write: the client should retry (agents buffer and
    /// resend their reports).
    pub fn unavailable(detail: impl std::fmt::Display) -> Self {
        tracing::error!("database unavailable: {detail}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the server cannot store this now; retry later",
        )
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(error: rusqlite::Error) -> Self {
        ApiError::internal(format!("database: {error}"))
    }
}

/// An [`ApiError`] answered in Ironic's shape (ramdisk endpoints).
#[derive(Debug)]
pub struct IronicError(pub ApiError);

impl From<ApiError> for IronicError {
    fn from(error: ApiError) -> Self {
        IronicError(error)
    }
}

impl IntoResponse for IronicError {
    fn into_response(self) -> Response {
        let code = if self.0.status.is_server_error() {
            "Server"
        } else {
            "Client"
        };
        // The inner document as Python's json.dumps writes it (", " and ": " separators),
        // with debuginfo, which Ironic always sends as null.
        let message = serde_json::Value::String(self.0.message);
        let error_message =
            format!(r#"{{"faultcode": "{code}", "faultstring": {message}, "debuginfo": null}}"#);
        (self.0.status, Json(IronicErrorBody { error_message })).into_response()
    }
}

/// An [`ApiError`] answered in the operator API's shape.
#[derive(Debug)]
pub struct OperatorError(pub ApiError);

impl From<ApiError> for OperatorError {
    fn from(error: ApiError) -> Self {
        OperatorError(error)
    }
}

impl From<rusqlite::Error> for OperatorError {
    fn from(error: rusqlite::Error) -> Self {
        OperatorError(error.into())
    }
}

impl IntoResponse for OperatorError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": {"code": self.0.status.as_u16(), "message": self.0.message}
        });
        (self.0.status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[tokio::test]
    async fn ironic_shape_double_encodes_the_fault() {
        let response =
            IronicError(ApiError::not_found("Resource could not be found.")).into_response();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        let body = body_of(response).await;
        assert_eq!(
            body["error_message"],
            r#"{"faultcode": "Client", "faultstring": "Resource could not be found.", "debuginfo": null}"#
        );
        let inner: serde_json::Value =
            serde_json::from_str(body["error_message"].as_str().expect("a string")).expect("JSON");
        assert_eq!(
            inner,
            serde_json::json!({"faultcode": "Client", "faultstring": "Resource could not be found.", "debuginfo": null})
        );
    }

    #[tokio::test]
    async fn operator_shape_names_code_and_message() {
        let response = OperatorError(ApiError::conflict("taken")).into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(
            body_of(response).await,
            serde_json::json!({"error": {"code": 409, "message": "taken"}})
        );
    }
}
