//! The plan runner on the real machine: offline mode (a plan from the config area) and plan
//! mode (a plan in rivet-server's lookup answer, `config.rivet.plan`).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rivet_protocol::plan::{Identity, Plan};
use rivet_protocol::report::{PlanState, ReportBody};
use serde_json::Value;

use super::{read_identity, run_plan, DiskFinder, Inspector, MediaFinder, Outcome, PlanEnv};
use super::{ReportMedium, ReportQueue, DMI_DIR};
use crate::context::AgentContext;
use crate::disks::sysfs::SysfsBlockDevices;
use crate::inventory::{HostSources, InventoryOptions};
use crate::net::http::{build_client, HttpTls};
use crate::net::interfaces::SysfsNetInfo;
use crate::power::SystemPower;
use crate::settings::{Secret, Settings};
use crate::steps::HardwareManagers;
use crate::vmedia::KernelMounter;

/// The inventory as inspection collects it.
struct LiveInspector(Settings);

impl Inspector for LiveInspector {
    fn inventory(&self) -> Result<Value, String> {
        let sources = HostSources::live(Arc::new(SysfsBlockDevices::from_settings(&self.0)));
        let collected = crate::inventory::collect(&sources, &InventoryOptions::default());
        for error in &collected.errors {
            tracing::warn!("inventory: {error}");
        }
        serde_json::to_value(&collected.inventory).map_err(|e| format!("encoding: {e}"))
    }
}

/// Report media among this machine's disks.
struct LiveMedia(Settings);

impl MediaFinder for LiveMedia {
    fn find(&self, serial: &str) -> Result<Box<dyn ReportMedium>, String> {
        DiskFinder(&SysfsBlockDevices::from_settings(&self.0)).find(serial)
    }
}

/// This machine's identity for the plan's matchers.
pub fn this_machine() -> Identity {
    read_identity(&SysfsNetInfo::default(), Path::new(DMI_DIR))
}

/// A queue posting to `url` with the agent's TLS settings.
pub fn report_queue(
    settings: &Settings,
    url: String,
    token: Option<Secret>,
    boot_id: &str,
) -> anyhow::Result<ReportQueue> {
    let client = build_client(
        &HttpTls::from_settings(settings),
        settings.http_request_timeout,
    )
    .context("building the report client")?;
    Ok(ReportQueue::start(url, token, boot_id.to_string(), client))
}

/// Mounts the media the plan's images are on (see [`super::media`]); problems are logged.
fn mount_media(plan: &Plan, settings: &Settings) {
    let devices = SysfsBlockDevices::from_settings(settings);
    let root = Path::new(super::media::MEDIA_ROOT);
    for error in super::media::mount_media(plan, &devices, &KernelMounter, root) {
        tracing::error!("plan {}: {error}", plan.name);
    }
}

fn env(
    ctx: Arc<AgentContext>,
    queue: Option<ReportQueue>,
    node: Option<Value>,
    boot_id: String,
) -> PlanEnv {
    let settings = ctx.settings.clone();
    PlanEnv {
        managers: HardwareManagers::builtin(&settings, ctx.lldp.clone()),
        power: Arc::new(SystemPower::new(ctx.clone())),
        media: Arc::new(LiveMedia(settings.clone())),
        inspector: Arc::new(LiveInspector(settings)),
        identity: this_machine(),
        queue,
        boot_id,
        node,
        ctx,
    }
}

/// Offline mode: runs the plan from the config area; reports go to `report.url` when the
/// plan names one, carrying `ipa-agent-token` (e.g. a token rivet-server pregenerated, set
/// in the bundle's settings) as `agent_token`.
pub async fn run_embedded(plan: &Plan, settings: Settings) -> anyhow::Result<Outcome> {
    let boot_id = uuid::Uuid::new_v4().to_string();
    let queue = match &plan.report.url {
        Some(url) => Some(report_queue(
            &settings,
            url.clone(),
            settings.agent_token.clone(),
            &boot_id,
        )?),
        None => None,
    };
    mount_media(plan, &settings);
    let ctx = Arc::new(AgentContext::new(settings));
    Ok(run_plan(plan, &env(ctx, queue, None, boot_id)).await)
}

/// Plan mode: runs the plan lookup returned; reports go to the server's report endpoint with
/// the agent token. A plan that does not parse is reported as failed and nothing runs.
pub async fn run_from_lookup(
    ctx: Arc<AgentContext>,
    plan: &Value,
    reports_url: String,
    node: Value,
) -> anyhow::Result<Option<Outcome>> {
    let boot_id = uuid::Uuid::new_v4().to_string();
    let queue = report_queue(&ctx.settings, reports_url, ctx.token(), &boot_id)?;
    let plan = match Plan::from_value(plan) {
        Ok(plan) => plan,
        Err(e) => {
            tracing::error!("the plan from lookup cannot run: {e}");
            queue.push(ReportBody::Plan {
                state: PlanState::Failed,
                message: Some(e.to_string()),
            });
            queue.flush(super::DEFAULT_POST_WAIT).await;
            return Ok(None);
        }
    };
    Ok(Some(
        run_plan(&plan, &env(ctx, Some(queue), Some(node), boot_id)).await,
    ))
}
