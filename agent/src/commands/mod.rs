//! The command API's engine: what `POST/GET /v1/commands/` do, independent of HTTP.

pub mod service;
