//! Wire and file formats of rivet, as serde types, and the byte layouts of rivet's embedded
//! config area. No I/O lives here.
//!
//! Ironic's ramdisk API (what IPA 13 and Ironic 39 exchange) is described field by field in
//! the project's compatibility spec; every type names the section it implements. Types that
//! travel through Ironic keep unknown fields (`extra`) so that a message re-serializes to the
//! same JSON, which the conformance tests check against recorded traffic. Where Ironic may
//! send a key as null or not at all, the types keep the two apart (see `serde_util`).

pub mod bootloader;
pub mod command;
pub mod config_area;
pub mod fault;
pub mod heartbeat;
pub mod image_info;
pub mod inspection;
pub mod inventory;
pub mod lookup;
pub mod network_data;
pub mod plan;
pub mod ramdisk;
pub mod report;
mod serde_util;
pub mod steps;
pub mod version;

/// A JSON object, as found in `params`, `properties`, `instance_info` and similar fields.
pub type JsonObject = serde_json::Map<String, serde_json::Value>;
