//! rivet-agent: an IPA-compatible deploy agent. `main.rs` is a thin dispatcher over this.

pub mod commands;
pub mod context;
pub mod init;
pub mod net;
pub mod settings;
