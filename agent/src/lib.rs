//! rivet-agent: an IPA-compatible deploy agent. `main.rs` is a thin dispatcher over this.

pub mod api;
pub mod app;
pub mod bootconfig;
pub mod cli;
pub mod commands;
pub mod context;
pub mod disks;
pub mod efi;
pub mod erase;
pub mod image;
pub mod init;
pub mod ironic;
pub mod logbuf;
pub mod net;
pub mod pace;
pub mod power;
pub mod progress;
pub mod run;
pub mod settings;
pub mod steps;
pub mod syslogs;
pub mod tls;
pub mod vmedia;
