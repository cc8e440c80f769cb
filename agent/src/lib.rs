//! rivet-agent: an IPA-compatible deploy agent. `main.rs` is a thin dispatcher over this.

pub mod commands;
pub mod context;
pub mod logbuf;
pub mod power;
pub mod settings;
pub mod steps;
pub mod syslogs;
