//! The boot-to-ready sequence in Ironic mode (spec "Boot-to-ready sequence"): wait for a NIC,
//! start listening for LLDP, inspect when asked to, look the node up (with the UUID inspection
//! returned), choose the callback address and TLS, serve the command API and heartbeat until
//! told to stop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rivet_protocol::version::microversions;
use tokio::sync::watch;

use crate::api::{self, ServeOptions};
use crate::commands::CommandRunner;
use crate::context::{AgentContext, Lifecycle};
use crate::disks::sysfs::SysfsBlockDevices;
use crate::inspection::{self, InspectionEnv, PostPolicy};
use crate::inventory::{HostSources, InventoryOptions};
use crate::ironic::advertise::{callback_url, find_advertise_host};
use crate::ironic::client::IronicClient;
use crate::ironic::heartbeat::run_heartbeater;
use crate::ironic::lookup::{apply_lookup, lookup_node, LookupPolicy};
use crate::lldp::KernelLinks;
use crate::logbuf::LogBuffer;
use crate::net::interfaces::{list_interfaces, lookup_addresses, NetInfo, SysfsNetInfo};
use crate::pace::Pacer;
use crate::power::SystemPower;
use crate::settings::{Protocol, Settings};
use crate::steps::{listen_options, HardwareManagers};
use crate::syslogs::LogSources;
use crate::tls;

/// How long to wait for a NIC with a MAC address, and how often to look (spec step 4).
const INTERFACE_WAIT: Duration = Duration::from_secs(60);
const INTERFACE_POLL: Duration = Duration::from_secs(5);

/// Why [`run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// The agent stopped serving: after `rescue.finalize_rescue`, `system.lockdown`, a refused
    /// power action on a host, or because lookup masked the token and none was configured.
    Stopped { lockdown: bool },
    /// `shutdown` fired (SIGTERM or Ctrl-C of a process run by hand).
    Interrupted,
}

/// Runs the agent in Ironic mode until it stops or `shutdown` fires.
pub async fn run(
    settings: Settings,
    logs: LogBuffer,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<RunOutcome> {
    let inspecting = inspection::is_enabled(&settings);
    if settings.api_urls.is_empty() && !inspecting {
        bail!(
            "no Ironic API URL (ipa-api-url) and no inspection callback \
             (ipa-inspection-callback-url) is configured: Ironic mode has nobody to report to"
        );
    }
    let ctx = Arc::new(AgentContext::new(settings));
    let pacer = Pacer::system();
    let net = SysfsNetInfo::default();
    if !ctx.settings.hardware_initialization_delay.is_zero() {
        tracing::info!(
            "waiting {:?} for hardware to initialize (ipa-hardware-initialization-delay)",
            ctx.settings.hardware_initialization_delay
        );
        tokio::time::sleep(ctx.settings.hardware_initialization_delay).await;
    }
    let macs = wait_for_macs(&net).await;
    // Whatever way run() ends, a listening session must not keep the process alive.
    let _stop_lldp = StopLldpOnDrop(ctx.lldp.clone());
    if ctx.settings.lldp_listen {
        start_lldp(&ctx, &net);
    }
    let managers = HardwareManagers::builtin(&ctx.settings, ctx.lldp.clone());

    let client = Arc::new(
        IronicClient::for_inspection(&ctx.settings).context("setting up the Ironic API client")?,
    );
    let mut node_uuid = None;
    if inspecting {
        tokio::select! {
            uuid = inspect(&ctx, &client, &managers, &logs, &pacer) => node_uuid = uuid,
            _ = shutdown_requested(&mut shutdown) => return Ok(RunOutcome::Interrupted),
        }
    }
    if ctx.settings.api_urls.is_empty() {
        tracing::info!(
            "inspection is done and no Ironic API URL (ipa-api-url) is configured: \
             nothing more to do until the agent is stopped"
        );
        shutdown_requested(&mut shutdown).await;
        return Ok(RunOutcome::Interrupted);
    }
    let policy = LookupPolicy::from_settings(&ctx.settings);
    let answer = tokio::select! {
        answer = lookup_node(&client, &macs, node_uuid.as_deref(), policy, &pacer) => answer.context("looking up this node in Ironic")?,
        _ = shutdown_requested(&mut shutdown) => return Ok(RunOutcome::Interrupted),
    };
    let outcome = apply_lookup(&ctx, &answer);
    tracing::info!(node = %answer.node.uuid, "lookup: {outcome}");
    if !outcome.may_serve() {
        tracing::error!(
            "Ironic masked the agent token and none was configured (ipa-agent-token): \
             refusing to serve the command API"
        );
        return Ok(RunOutcome::Stopped { lockdown: false });
    }
    if let Some(plan) = lookup_plan(&answer.config.extra) {
        let reports = plan_reports_url(&client, &answer.config.extra, &answer.node.uuid)?;
        let node = serde_json::to_value(&answer.node).context("encoding the lookup node")?;
        tracing::info!(node = %answer.node.uuid, "plan mode: running the plan from lookup");
        let outcome = tokio::select! {
            outcome = crate::plan::live::run_from_lookup(ctx.clone(), plan, reports, node) => outcome?,
            _ = shutdown_requested(&mut shutdown) => return Ok(RunOutcome::Interrupted),
        };
        tracing::info!(
            state = ?outcome.map(|o| o.report.state),
            "plan mode: the plan is over"
        );
        return Ok(RunOutcome::Stopped { lockdown: false });
    }

    let advertise = find_advertise_host(&ctx.settings, &net, &pacer)
        .await
        .context("finding the address to advertise to Ironic")?;
    let (tls_config, verify_ca) = choose_tls(&ctx, &client, &advertise).await?;
    let protocol = if tls_config.is_some() {
        Protocol::Https
    } else {
        ctx.settings.advertise_protocol
    };
    let callback = callback_url(protocol, &advertise, ctx.settings.advertise_port);

    if ctx.state().inventory.is_none() {
        cache_inventory(&ctx);
    }
    let power = Arc::new(SystemPower::new(ctx.clone()));
    let runner = Arc::new(CommandRunner::new(ctx.clone(), managers, power, logs));
    let commands_done = runner.async_done();
    let options = ServeOptions {
        tls: tls_config,
        ..ServeOptions::default()
    };
    let server = api::serve(ctx.clone(), runner, options).context("starting the command API")?;
    tracing::info!(
        listen = %server.local_addr(),
        callback_url = %callback,
        "serving the command API"
    );
    let heartbeater = tokio::spawn(run_heartbeater(
        ctx.clone(),
        client,
        callback,
        verify_ca,
        commands_done,
        pacer,
    ));

    let mut lifecycle = ctx.watch_lifecycle();
    let outcome = loop {
        if let Lifecycle::Stopped { lockdown } = ctx.lifecycle() {
            break RunOutcome::Stopped { lockdown };
        }
        tokio::select! {
            changed = lifecycle.changed() => if changed.is_err() {
                break RunOutcome::Interrupted;
            },
            _ = shutdown_requested(&mut shutdown) => break RunOutcome::Interrupted,
        }
    };
    ctx.set_lifecycle(Lifecycle::Stopped {
        lockdown: matches!(outcome, RunOutcome::Stopped { lockdown: true }),
    });
    server
        .shutdown()
        .await
        .context("stopping the command API")?;
    heartbeater.await.context("stopping the heartbeater")?;
    tracing::info!(?outcome, "the agent stopped serving");
    Ok(outcome)
}

/// rivet-server's `config.rivet.plan` in a lookup answer (Ironic sends none).
fn lookup_plan(config: &rivet_protocol::JsonObject) -> Option<&serde_json::Value> {
    config
        .get("rivet")
        .and_then(|rivet| rivet.get("plan"))
        .filter(|plan| plan.is_object())
}

/// Where plan-mode reports go: `config.rivet.reports` (a path on the API URL), else the
/// server's documented path for `node`.
fn plan_reports_url(
    client: &IronicClient,
    config: &rivet_protocol::JsonObject,
    node: &str,
) -> anyhow::Result<String> {
    let path = config
        .get("rivet")
        .and_then(|rivet| rivet.get("reports"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("/v1/rivet/nodes/{node}/reports"));
    let base = client
        .api_urls()
        .into_iter()
        .next()
        .context("no Ironic API URL to post plan reports to")?;
    Ok(base
        .join(&path)
        .with_context(|| format!("joining the report path {path:?} to {base}"))?
        .to_string())
}

/// Cancels the LLDP session when dropped.
struct StopLldpOnDrop(Arc<crate::lldp::LldpBoard>);

impl Drop for StopLldpOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Listens for LLDP on every interface, on a blocking thread, from now on (design step 5);
/// inspection and `verify_wiring` read the results from `ctx.lldp`.
fn start_lldp(ctx: &Arc<AgentContext>, net: &dyn NetInfo) {
    let links: Vec<String> = match list_interfaces(net) {
        Ok(list) => list.into_iter().map(|i| i.name).collect(),
        Err(err) => {
            tracing::warn!("not listening for LLDP: listing interfaces: {err}");
            return;
        }
    };
    let board = ctx.lldp.clone();
    let options = listen_options(&ctx.settings);
    tokio::task::spawn_blocking(move || {
        crate::lldp::listen(&links, &options, &board, &KernelLinks);
    });
}

/// This machine's inventory sources.
fn host_sources(ctx: &AgentContext) -> HostSources {
    HostSources::live(Arc::new(SysfsBlockDevices::from_settings(&ctx.settings)))
}

/// Inspection (spec §7): collect, post with IPA's retries, adopt a 1.84 answer's token.
/// Returns the node UUID; a failure is logged and lookup goes on without one, as in IPA.
async fn inspect(
    ctx: &Arc<AgentContext>,
    client: &IronicClient,
    managers: &HardwareManagers,
    logs: &LogBuffer,
    pacer: &Pacer,
) -> Option<String> {
    let env = InspectionEnv {
        settings: ctx.settings.clone(),
        host: host_sources(ctx),
        lldp: ctx.lldp.clone(),
        links: Arc::new(KernelLinks),
        listen: listen_options(&ctx.settings),
        log_sources: LogSources::system(),
        agent_log: logs.clone(),
        managers: managers
            .versions()
            .into_iter()
            .map(|(name, version)| rivet_protocol::inspection::ManagerInfo { name, version })
            .collect(),
    };
    tracing::info!(
        collectors = ?inspection::collector_names(&ctx.settings),
        "inspection is enabled"
    );
    let collected = match tokio::task::spawn_blocking(move || inspection::collect(&env)).await {
        Ok(collected) => collected,
        Err(err) => {
            tracing::error!("inspection: collecting failed: {err}");
            return None;
        }
    };
    tracing::info!(took = ?collected.took, "inspection data collected");
    if let Some(error) = &collected.request.error {
        tracing::warn!("inspection collectors reported: {error}");
    }
    let inventory = inspection::inventory_json(&collected.request.inventory);
    ctx.update_state(|state| state.inventory = inventory);
    let urls = inspection::callback_urls(&ctx.settings);
    let answer = match inspection::post_inspection(
        client,
        &urls,
        &collected.request,
        ctx.settings.inspection_api_version,
        PostPolicy::default(),
        pacer,
    )
    .await
    {
        Ok(answer) => answer,
        Err(err) => {
            tracing::error!("inspection failed, looking up without a node UUID: {err}");
            return None;
        }
    };
    if let Some(lookup) = answer.lookup() {
        let outcome = apply_lookup(ctx, lookup);
        tracing::info!(node = %lookup.node.uuid, "inspection answered like lookup: {outcome}");
    }
    tracing::info!(node = %answer.node_uuid(), "inspection finished");
    Some(answer.node_uuid().to_string())
}

/// Collects the inventory for `log.collect_system_logs` in the background (BMC skipped when
/// lookup said so).
fn cache_inventory(ctx: &Arc<AgentContext>) {
    let ctx = ctx.clone();
    tokio::task::spawn_blocking(move || {
        let skip_bmc = ctx
            .state()
            .node
            .as_ref()
            .and_then(|node| node.extra.get("skip_bmc_detect"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        let collected = crate::inventory::collect(
            &host_sources(&ctx),
            &InventoryOptions {
                skip_bmc,
                bootif: ctx.settings.bootif.clone(),
                interface_lldp: None,
            },
        );
        for error in &collected.errors {
            tracing::warn!("inventory: {error}");
        }
        let inventory = inspection::inventory_json(&collected.inventory);
        ctx.update_state(|state| state.inventory = inventory);
    });
}

/// Resolves when `shutdown` turns true; a dropped sender means "never", not "now".
async fn shutdown_requested(shutdown: &mut watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Waits up to a minute for any NIC with a MAC address; lookup without one fails.
async fn wait_for_macs(net: &dyn NetInfo) -> Vec<String> {
    let started = tokio::time::Instant::now();
    loop {
        match list_interfaces(net) {
            Ok(interfaces) if !interfaces.is_empty() => {
                for interface in &interfaces {
                    tracing::info!(
                        name = %interface.name,
                        mac = %interface.mac_address,
                        "network interface"
                    );
                }
                return lookup_addresses(&interfaces);
            }
            Ok(_) => tracing::warn!("no network interface with a MAC address yet"),
            Err(err) => tracing::warn!("listing network interfaces: {err}"),
        }
        if started.elapsed() >= INTERFACE_WAIT {
            tracing::error!(
                "no network interface with a MAC address after {INTERFACE_WAIT:?}; \
                 looking up without addresses"
            );
            return Vec::new();
        }
        tokio::time::sleep(INTERFACE_POLL).await;
    }
}

/// Static TLS when configured; otherwise auto-TLS when enabled and Ironic understands
/// `agent_verify_ca` (>= 1.68); otherwise plain HTTP. Returns the server config and the PEM
/// to send as `agent_verify_ca`.
async fn choose_tls(
    ctx: &AgentContext,
    client: &IronicClient,
    advertise: &crate::ironic::advertise::AdvertiseHost,
) -> anyhow::Result<(Option<Arc<rustls::ServerConfig>>, Option<String>)> {
    let settings = &ctx.settings;
    let min_version = ctx.state().tls_min_version;
    if settings.listen_tls {
        let (Some(cert), Some(key)) = (&settings.tls_cert_file, &settings.tls_key_file) else {
            bail!("listen_tls is set but tls_cert_file or tls_key_file is missing");
        };
        let identity = tls::load_static(cert, key).context("loading the static TLS certificate")?;
        let config = tls::server_config(identity.cert_chain, identity.key, min_version)?;
        return Ok((Some(config), None));
    }
    if !settings.enable_auto_tls {
        return Ok((None, None));
    }
    let version = client.api_version().await;
    if version < microversions::AGENT_VERIFY_CA {
        tracing::warn!(
            %version,
            "Ironic is older than {}: serving plain HTTP without auto-TLS",
            microversions::AGENT_VERIFY_CA
        );
        return Ok((None, None));
    }
    let Some(ip) = advertise.ip() else {
        bail!(
            "auto-TLS needs an IP address to put in the certificate, but the advertised host \
             is the name {advertise}; set ipa-advertise-host to an IP address"
        );
    };
    let generated = tls::auto_tls(settings, ip).context("generating the auto-TLS certificate")?;
    let config = tls::server_config(
        generated.identity.cert_chain,
        generated.identity.key,
        min_version,
    )?;
    Ok((Some(config), Some(generated.cert_pem)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_lookup_answer_with_a_plan_object_switches_to_plan_mode() {
        let config = |rivet: serde_json::Value| {
            json!({"heartbeat_timeout": 300, "rivet": rivet})
                .as_object()
                .cloned()
                .unwrap()
        };
        let with = config(json!({"plan": {"version": 1}, "reports": "/v1/rivet/nodes/n1/reports"}));
        assert_eq!(lookup_plan(&with), Some(&json!({"version": 1})));
        assert_eq!(lookup_plan(&config(json!({"plan": null}))), None);
        assert_eq!(
            lookup_plan(&rivet_protocol::JsonObject::new()),
            None,
            "Ironic sends no rivet key"
        );

        let settings = Settings {
            api_urls: vec![url::Url::parse("https://10.0.0.1:6385").unwrap()],
            ..Settings::default()
        };
        let client = IronicClient::new(&settings).unwrap();
        assert_eq!(
            plan_reports_url(&client, &with, "n1").unwrap(),
            "https://10.0.0.1:6385/v1/rivet/nodes/n1/reports"
        );
        assert_eq!(
            plan_reports_url(&client, &config(json!({"plan": {}})), "n2").unwrap(),
            "https://10.0.0.1:6385/v1/rivet/nodes/n2/reports"
        );
    }
}
