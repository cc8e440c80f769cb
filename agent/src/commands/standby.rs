//! `standby.get_partition_uuids`, `standby.sync`, `standby.power_off`, `standby.run_image`
//! (spec §4; IPA/extensions/standby.py).

use std::sync::Arc;

use serde_json::Value;

use super::catalog::{blocking, Env};
use super::failure::Failure;
use super::fssync::full_sync;
use super::output::CommandOutput;

/// The UUIDs recorded when an image was written; `{}` before that.
pub(crate) fn get_partition_uuids(env: &Env) -> CommandOutput {
    let uuids = env.ctx.state().partition_uuids;
    if uuids.is_none() {
        tracing::warn!("no partition UUIDs recorded yet: no image has been written");
    }
    CommandOutput::Json(Value::Object(uuids.unwrap_or_default()))
}

/// `sync(2)`, drop caches, flush every disk's buffers.
pub(crate) async fn sync(env: &Arc<Env>) -> Result<CommandOutput, Failure> {
    let fs = env.host.fs_sync.clone();
    blocking(move || full_sync(fs.as_ref()).map_err(Failure::execution)).await?;
    Ok(CommandOutput::none())
}

/// Flushes what it can, then powers off (`reboot == false`) or reboots through [`Power`].
/// A failed flush only warns: the power action still happens, as in IPA.
///
/// [`Power`]: crate::power::Power
pub(crate) async fn power_action(env: Arc<Env>, reboot: bool) -> Result<CommandOutput, Failure> {
    tracing::info!(
        reboot,
        "flushing buffers, then {}",
        if reboot { "rebooting" } else { "powering off" }
    );
    blocking(move || {
        if let Err(e) = full_sync(env.host.fs_sync.as_ref()) {
            tracing::warn!(error = %e, "failed to sync file system buffers");
        }
        let outcome = if reboot {
            env.power.reboot()
        } else {
            env.power.power_off()
        };
        outcome.map_err(|e| Failure::new("SystemRebootError", 500, "Error rebooting system", e.0))
    })
    .await?;
    Ok(CommandOutput::none())
}
