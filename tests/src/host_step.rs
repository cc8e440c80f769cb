//! Running one step of the agent's generic hardware manager in this process, on devices of
//! this machine that a test or benchmark attached itself (loop devices): they reach the step
//! only through `rivet-host-disks`, which is all `disks::writable_candidates` lets a normal
//! process touch.

use std::path::Path;

use anyhow::Result;
use rivet_agent::context::AgentContext;
use rivet_agent::settings::Settings;
use rivet_agent::steps::{GenericHardwareManager, HardwareManager, StepCall};
use serde_json::{json, Value};

/// Runs `step` with `rivet-host-disks` set to `disks` and `info` as the node's
/// `driver_internal_info` (where Ironic puts the erase knobs); the step's result.
pub fn run_generic_step(step: &str, disks: &[&Path], info: Value) -> Result<Value> {
    let settings = Settings {
        host_disks: disks.iter().map(|p| p.to_path_buf()).collect(),
        ..Settings::default()
    };
    let manager = GenericHardwareManager::new(&settings);
    let node = json!({"uuid": "host-step", "driver_internal_info": info});
    let ports = json!([]);
    let ctx = AgentContext::new(settings);
    let args = serde_json::Map::new();
    let call = StepCall {
        args: &args,
        node: &node,
        ports: &ports,
        progress: &ctx.progress,
        ctx: &ctx,
    };
    manager
        .execute(step, &call)
        .map_err(|e| anyhow::anyhow!("{step}: {e}"))
}
