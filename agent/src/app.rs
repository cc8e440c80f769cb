//! What `main.rs` dispatches to: one function per subcommand, with logging set up once and
//! top-level errors mapped to exit codes.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;
use tokio::sync::watch;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::bootconfig::{self, BootConfig};
use crate::bundle::{self, BundleOptions};
use crate::cli::{self, Cli, Command, SourceArgs};
use crate::logbuf::LogBuffer;
use crate::net::bringup::tcp_reachable;
use crate::net::interfaces::{list_interfaces, SysfsNetInfo};
use crate::net::link::NetlinkLinks;
use crate::net::static_apply::{self, StaticOptions};
use crate::net::{bring_up_network, BringupOptions};
use crate::run::{self, RunOutcome};
use crate::settings::Settings;
use crate::vmedia::{self, devices::SysfsBlockDevices, KernelMounter, VmediaOptions};

/// Exit codes of `rivet-agent`.
pub mod exit {
    /// Ran and stopped as asked.
    pub const OK: u8 = 0;
    /// The agent failed; the message says why.
    pub const FAILURE: u8 = 1;
    /// The command line or an explicitly named settings file was unusable.
    pub const USAGE: u8 = 2;
}

/// The ramdisk's `/init`: boots the machine (mounts, modules, console) and runs the agent in
/// a supervised child process forever. Arguments the kernel passes to init are ignored: all
/// settings come from the kernel command line and the boot medium.
pub fn init_main() -> ! {
    crate::init::run_as_init(ramdisk_agent)
}

/// One attempt of the agent in the ramdisk: settings, configuration from the boot medium
/// (Ironic's virtual media, rivet's config area), static network from the network_data.json
/// of the highest-priority source, DHCP on the other links, then Ironic mode. Returning an
/// error makes PID 1 print it and start the agent again after a pause.
async fn ramdisk_agent() -> anyhow::Result<()> {
    let defaults = cli::DefaultSources::for_this_process();
    let first = cli::load_settings(&SourceArgs::default())?;
    let logs = crate::logbuf::global().clone();
    init_logging(first.settings.debug, &logs);
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        "rivet-agent starting in the ramdisk"
    );
    let boot_configs = boot_configs(&first.settings).await;
    for error in bootconfig::install_files(&boot_configs, Path::new("/")) {
        tracing::error!("{error}");
    }
    // Read again: the copied /etc/ironic-python-agent.d/*.conf (ironic-tls.conf's cafile)
    // and parameters.txt count from here on.
    let loaded = if boot_configs.is_empty() {
        first
    } else {
        let texts = bootconfig::settings_texts(&boot_configs);
        cli::load_settings_with_boot(&SourceArgs::default(), &defaults, &texts)?
    };
    for warning in &loaded.warnings {
        tracing::warn!("settings: {warning}");
    }
    let plan = bootconfig::plan(&boot_configs);
    let mut options = network_options(&loaded.settings);
    let plan_network = plan.and_then(|(plan, _)| {
        let machine = plan.select(&crate::plan::live::this_machine()).ok()?;
        let source = format!("plan {}", plan.name);
        Some((plan.network_data_for(machine)?, source))
    });
    let network = match bootconfig::network_data(&boot_configs) {
        Some((data, source)) => Some((data, source.to_string())),
        None => plan_network,
    };
    if let Some((data, source)) = network {
        let report = static_apply::configure(data, &source, &StaticOptions::default()).await;
        options.exclude = report.exclude_from_dhcp();
        options.static_dns = report.dns.clone();
    }
    let report = bring_up_network(options).await;
    tracing::info!("network:\n{report}");
    if let Some((plan, source)) = plan {
        tracing::info!("offline mode: running plan {} from {source}", plan.name);
        let outcome = crate::plan::live::run_embedded(plan, loaded.settings).await?;
        tracing::info!(
            "plan {} is over ({:?}); idling",
            plan.name,
            outcome.report.state
        );
        std::future::pending::<()>().await;
        return Ok(());
    }
    // Nothing asks this agent to stop, but the sender must live as long as the agent: once
    // it is dropped, `changed()` returns at once and run::run ends as interrupted.
    let (_keep_shutdown_sender, shutdown) = watch::channel(false);
    match run::run(loaded.settings, logs, shutdown).await? {
        RunOutcome::Stopped { lockdown } => {
            if lockdown {
                match NetlinkLinks::new() {
                    Ok(links) => links.set_all_down().await?,
                    Err(err) => tracing::error!("lockdown: cannot reach netlink: {err}"),
                }
            }
            tracing::info!(lockdown, "the agent stopped serving; idling");
            std::future::pending::<()>().await;
            Ok(())
        }
        RunOutcome::Interrupted => Ok(()),
    }
}

/// Configuration from the boot medium, lowest priority first: Ironic's virtual media when
/// the kernel command line asks for it (`ir_pub_id`, `boot_method=vmedia`), then the bundle
/// in rivet's config area (docs/config-area.md).
async fn boot_configs(settings: &Settings) -> Vec<BootConfig> {
    let vmedia = VmediaOptions::from_settings(settings);
    let mut configs: Vec<BootConfig> =
        vmedia::discover(&SysfsBlockDevices::default(), &KernelMounter, &vmedia)
            .await
            .into_iter()
            .collect();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let disks = crate::disks::sysfs::SysfsBlockDevices::from_settings(settings);
    configs.extend(bundle::discover(&disks, &BundleOptions::for_ramdisk(&cmdline)).await);
    configs
}

/// DHCP on every link, done as soon as an Ironic API URL (or inspection callback URL)
/// accepts a TCP connection.
fn network_options(settings: &Settings) -> BringupOptions {
    let targets: Vec<(String, u16)> = settings
        .api_urls
        .iter()
        .chain(&settings.inspection_callback_urls)
        .filter_map(|url| Some((url.host_str()?.to_owned(), url.port_or_known_default()?)))
        .collect();
    BringupOptions {
        ready: (!targets.is_empty())
            .then(|| tcp_reachable(targets, std::time::Duration::from_secs(2))),
        ..BringupOptions::default()
    }
}

/// Runs the subcommand and returns the process exit code.
pub fn main(cli: Cli) -> ExitCode {
    let result = match cli.into_command() {
        Command::Interfaces => interfaces(),
        Command::Inventory(args) => inventory(&args),
        Command::ShowConfig(sources) => show_config(&sources),
        Command::Run(sources) => return run_agent(&sources),
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(err) => {
            eprintln!("rivet-agent: {err:#}");
            ExitCode::from(exit::FAILURE)
        }
    }
}

/// `rivet-agent inventory`: this machine's inventory as IPA reports it, as JSON; with
/// `--timings`, how long each part took (stderr).
fn inventory(args: &crate::cli::InventoryArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let sources = crate::inventory::HostSources::live(std::sync::Arc::new(
        crate::disks::sysfs::SysfsBlockDevices::default(),
    ));
    let collected = crate::inventory::collect(
        &sources,
        &crate::inventory::InventoryOptions {
            skip_bmc: args.skip_bmc,
            ..Default::default()
        },
    );
    let took = started.elapsed();
    println!("{}", serde_json::to_string_pretty(&collected.inventory)?);
    for error in &collected.errors {
        eprintln!("rivet-agent: inventory: {error}");
    }
    if args.timings {
        for (part, part_took) in &collected.timings {
            eprintln!("{part:>12} {:>9.3} ms", part_took.as_secs_f64() * 1000.0);
        }
        eprintln!("{:>12} {:>9.3} ms", "total", took.as_secs_f64() * 1000.0);
    }
    Ok(())
}

/// `rivet-agent interfaces`: the NICs whose MACs lookup sends, as JSON.
fn interfaces() -> anyhow::Result<()> {
    let interfaces =
        list_interfaces(&SysfsNetInfo::default()).context("listing network interfaces")?;
    let list: Vec<_> = interfaces
        .iter()
        .map(|interface| {
            json!({
                "name": interface.name,
                "mac_address": interface.mac_address,
                "ipv4_addresses": interface.ipv4_addresses,
                "ipv6_addresses": interface.ipv6_addresses,
            })
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&list)?);
    Ok(())
}

fn show_config(sources: &SourceArgs) -> anyhow::Result<()> {
    let loaded = cli::load_settings(sources)?;
    print!("{}", cli::show_config(&loaded));
    Ok(())
}

fn run_agent(sources: &SourceArgs) -> ExitCode {
    let loaded = match cli::load_settings(sources) {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("rivet-agent: {err:#}");
            return ExitCode::from(exit::USAGE);
        }
    };
    let logs = crate::logbuf::global().clone();
    init_logging(loaded.settings.debug, &logs);
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "rivet-agent starting");
    for warning in &loaded.warnings {
        tracing::warn!("settings: {warning}");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!("starting the async runtime: {err}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    let outcome = runtime.block_on(async {
        let shutdown = shutdown_on_signal();
        run::run(loaded.settings, logs, shutdown).await
    });
    match outcome {
        Ok(RunOutcome::Interrupted) => {
            tracing::info!("interrupted; exiting");
            ExitCode::from(exit::OK)
        }
        Ok(RunOutcome::Stopped { lockdown }) => {
            tracing::info!(lockdown, "stopped serving; exiting");
            ExitCode::from(exit::OK)
        }
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::from(exit::FAILURE)
        }
    }
}

/// Logs to stderr and into the buffer `log.collect_system_logs` returns. `RUST_LOG` refines
/// the level; `ipa-debug` turns on debug for rivet's own modules.
fn init_logging(debug: bool, logs: &LogBuffer) {
    let default = if debug {
        "info,rivet_agent=debug"
    } else {
        "info"
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // A second initialisation (only possible in tests) keeps the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .with(logs.layer())
        .try_init();
}

/// A receiver that changes to `true` on SIGTERM or SIGINT.
fn shutdown_on_signal() -> watch::Receiver<bool> {
    let (sender, receiver) = watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(err) => {
                    tracing::warn!("cannot watch SIGTERM: {err}");
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
        }
        sender.send_replace(true);
    });
    receiver
}
