//! Shared helpers for the end-to-end tests.

pub mod agent;
pub mod bootdisk;
pub mod conductor_view;
pub mod deploy;
pub mod dnsmasq;
pub mod e2e;
pub mod host_step;
pub mod image;
pub mod in_process;
pub mod ironic;
pub mod ironic_iso;
pub mod lldp_switch;
pub mod loopdev;
pub mod net;
pub mod netns;
pub mod partition_image;
pub mod process;
pub mod recording;
pub mod replay;
pub mod server;
pub mod vlan_switch;
pub mod vm;

use std::path::{Path, PathBuf};

/// The checkout this crate was built from.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Ends a test on an error: the panic prints the whole context chain, and process guards
/// ([`process::LoggedChild`]) print their logs' tails while the test unwinds.
pub fn or_panic<T>(result: anyhow::Result<T>) -> T {
    result.unwrap_or_else(|e| panic!("{e:?}"))
}
