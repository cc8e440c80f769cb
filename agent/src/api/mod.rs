//! The agent's HTTP API (spec §3): the routes Ironic's conductor calls, and the server that
//! carries them over plain HTTP or TLS.
//!
//! [`router`] maps IPA's routes onto a [`CommandService`]; [`serve`] binds the listener and
//! runs the router until shut down or until the agent's lifecycle turns to `Stopped`.

mod fault;
mod handlers;
mod server;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{any, get};
use axum::Router;

use crate::commands::service::CommandService;
use crate::context::AgentContext;

pub use server::{serve, ApiServer, ServeError, ServeOptions};

/// The IPA release whose API this agent implements; `GET /v1/status` reports it as `version`.
pub const IPA_COMPAT_VERSION: &str = "13.0.0";

/// Largest request body accepted. Command parameters can carry an inline, base64-encoded
/// config drive (Ironic allows up to 64 MiB), so the bound sits well above that.
pub const MAX_BODY_BYTES: usize = 100 * 1024 * 1024;

/// What every handler sees.
struct ApiState<S> {
    ctx: Arc<AgentContext>,
    service: Arc<S>,
}

impl<S> Clone for ApiState<S> {
    fn clone(&self) -> Self {
        ApiState {
            ctx: Arc::clone(&self.ctx),
            service: Arc::clone(&self.service),
        }
    }
}

/// Every route of spec §3.2, each also without the `/v1` prefix as IPA has them.
///
/// `/v1`, `/v1/commands` and `/commands` answer 308 to the same path with a trailing slash
/// (Werkzeug's strict slashes). Unknown paths answer 404 and known paths with another method
/// 405, both with a `{faultcode, faultstring}` body. Every request is logged with its method,
/// path and status; the query string, which carries the token, is never logged.
pub fn router<S: CommandService>(ctx: Arc<AgentContext>, service: Arc<S>) -> Router {
    let mut app = Router::new()
        .route("/", get(handlers::root))
        .route("/v1/", get(handlers::v1))
        .route("/v1", any(handlers::add_trailing_slash));
    for prefix in ["/v1", ""] {
        app = app
            .route(&format!("{prefix}/status"), get(handlers::status::<S>))
            .route(
                &format!("{prefix}/commands/"),
                get(handlers::list_commands::<S>).post(handlers::run_command::<S>),
            )
            .route(
                &format!("{prefix}/commands/{{id}}"),
                get(handlers::get_command::<S>),
            )
            .route(
                &format!("{prefix}/commands"),
                any(handlers::add_trailing_slash),
            );
    }
    app.fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(handlers::log_request))
        .with_state(ApiState { ctx, service })
}
