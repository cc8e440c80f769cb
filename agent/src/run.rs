//! The boot-to-ready sequence in Ironic mode (spec "Boot-to-ready sequence"): wait for a NIC,
//! look the node up, choose the callback address and TLS, serve the command API and heartbeat
//! until told to stop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use rivet_protocol::version::microversions;
use tokio::sync::watch;

use crate::api::{self, ServeOptions};
use crate::commands::CommandRunner;
use crate::context::{AgentContext, Lifecycle};
use crate::ironic::advertise::{callback_url, find_advertise_host};
use crate::ironic::client::IronicClient;
use crate::ironic::heartbeat::run_heartbeater;
use crate::ironic::lookup::{apply_lookup, lookup_node, LookupPolicy};
use crate::logbuf::LogBuffer;
use crate::net::interfaces::{list_interfaces, lookup_addresses, NetInfo, SysfsNetInfo};
use crate::pace::Pacer;
use crate::power::SystemPower;
use crate::settings::{Protocol, Settings};
use crate::steps::HardwareManagers;
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
    if settings.api_urls.is_empty() {
        bail!("no Ironic API URL is configured (ipa-api-url): Ironic mode has nobody to report to");
    }
    if !settings.inspection_callback_urls.is_empty() {
        tracing::warn!(
            "inspection (ipa-inspection-callback-url) is not supported by this build; \
             continuing with lookup"
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

    let client =
        Arc::new(IronicClient::new(&ctx.settings).context("setting up the Ironic API client")?);
    let policy = LookupPolicy::from_settings(&ctx.settings);
    let answer = tokio::select! {
        answer = lookup_node(&client, &macs, None, policy, &pacer) => answer.context("looking up this node in Ironic")?,
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

    let managers = HardwareManagers::builtin(&ctx.settings);
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
