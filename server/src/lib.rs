//! rivet-server: the control server agents report to. It serves Ironic's ramdisk endpoints
//! with Ironic's semantics (so the agent speaks one protocol), plan-mode reports, and an
//! operator API and CLI; state lives in an embedded SQLite database. See docs/server.md.

pub mod app;
pub mod cli;
pub mod client;
pub mod db;
pub mod error;
pub mod iso;
pub mod loadgen;
pub mod operator;
pub mod ramdisk;
pub mod server;
pub mod settings;
pub mod store;
pub mod table;
pub mod time;
pub mod tls;
pub mod token;
