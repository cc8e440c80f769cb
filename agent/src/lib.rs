//! rivet-agent: an IPA-compatible deploy agent. `main.rs` is a thin dispatcher over this.

pub mod api;
pub mod cli;
pub mod commands;
pub mod context;
pub mod settings;
pub mod tls;
