//! The HTTP application: shared state and the router of both APIs.

use std::sync::Arc;

use axum::http::HeaderMap;
use axum::Router;

use crate::db::Database;
use crate::iso::IsoSource;
use crate::settings::ServeSettings;
use crate::{operator, ramdisk};

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: Database,
    pub settings: Arc<ServeSettings>,
    /// Whether the listener serves TLS (for the scheme of links).
    pub tls: bool,
    /// Per-node ISOs, when `serve --iso-base` was given.
    pub iso: Option<Arc<IsoSource>>,
}

impl AppState {
    /// The base URL clients reached us at: `--public-url`, else scheme and Host header.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.settings.public_url {
            return url.as_str().trim_end_matches('/').to_string();
        }
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("localhost");
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{host}")
    }
}

/// Both APIs: the ramdisk endpoints (Ironic's shape) and the operator API under `/v1/nodes`
/// and `/v1/openapi.json`.
pub fn router(state: AppState) -> Router {
    ramdisk::router(state.clone()).merge(operator::router(state))
}
