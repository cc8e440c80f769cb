//! The extensions and commands the agent answers (spec §4), and how each one runs.

use std::path::PathBuf;
use std::sync::Arc;

use rivet_protocol::steps::StepType;
use rivet_protocol::JsonObject;
use serde_json::{json, Value};

use super::failure::Failure;
use super::fssync::{FsSync, HostFsSync};
use super::output::CommandOutput;
use super::service::ApiError;
use super::{image, rescue, standby, step_commands};
use crate::context::{AgentContext, Lifecycle};
use crate::image::chroot::SystemBootHost;
use crate::image::grub::BootHost;
use crate::logbuf::LogBuffer;
use crate::power::Power;
use crate::steps::HardwareManagers;
use crate::syslogs::{self, LogSources};

/// The parts of the host the commands touch, replaceable in tests.
#[derive(Clone)]
pub struct HostAccess {
    /// The file-system root the rescue files go under (`/`).
    pub root: PathBuf,
    pub fs_sync: Arc<dyn FsSync>,
    pub log_sources: LogSources,
    /// Mounts and the image's own programs for `install_bootloader`'s GRUB.
    pub boot: Arc<dyn BootHost>,
}

impl HostAccess {
    /// This machine.
    pub fn system() -> Self {
        HostAccess {
            root: PathBuf::from("/"),
            fs_sync: Arc::new(HostFsSync::default()),
            log_sources: LogSources::system(),
            boot: Arc::new(SystemBootHost),
        }
    }
}

/// Everything a command may use.
pub(crate) struct Env {
    pub ctx: Arc<AgentContext>,
    pub managers: HardwareManagers,
    pub power: Arc<dyn Power>,
    pub logs: LogBuffer,
    pub host: HostAccess,
}

/// One known command: sync ones finish inside the request, async ones answer RUNNING at
/// once and finish in the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Sync(SyncCommand),
    Async(AsyncCommand),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncCommand {
    GetSteps(StepType),
    GetPartitionUuids,
    Sync,
    CollectSystemLogs,
    Lockdown,
    FinalizeRescue,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AsyncCommand {
    ExecuteStep(StepType),
    PowerOff,
    RunImage,
    InstallBootloader,
}

const EXTENSIONS: &[&str] = &[
    "clean", "deploy", "service", "standby", "log", "system", "rescue", "image",
];

impl Command {
    /// Finds `<extension>.<command>`: an unknown extension is a 404, an unknown command of a
    /// known extension a 400 (IPA's `RequestedObjectNotFoundError`, `InvalidCommandError`).
    pub fn parse(extension: &str, command: &str) -> Result<Command, ApiError> {
        if !EXTENSIONS.contains(&extension) {
            return Err(ApiError::UnknownExtension(extension.to_string()));
        }
        let unknown = || ApiError::InvalidCommand(format!("Unknown command: {command}"));
        if let Some(t) = StepType::ALL.into_iter().find(|t| t.as_str() == extension) {
            return if command == format!("get_{}_steps", t.as_str()) {
                Ok(Command::Sync(SyncCommand::GetSteps(t)))
            } else if command == format!("execute_{}_step", t.as_str()) {
                Ok(Command::Async(AsyncCommand::ExecuteStep(t)))
            } else {
                Err(unknown())
            };
        }
        Ok(match (extension, command) {
            ("standby", "get_partition_uuids") => Command::Sync(SyncCommand::GetPartitionUuids),
            ("standby", "sync") => Command::Sync(SyncCommand::Sync),
            ("standby", "power_off") => Command::Async(AsyncCommand::PowerOff),
            ("standby", "run_image") => Command::Async(AsyncCommand::RunImage),
            ("log", "collect_system_logs") => Command::Sync(SyncCommand::CollectSystemLogs),
            ("system", "lockdown") => Command::Sync(SyncCommand::Lockdown),
            ("rescue", "finalize_rescue") => Command::Sync(SyncCommand::FinalizeRescue),
            ("image", "install_bootloader") => Command::Async(AsyncCommand::InstallBootloader),
            _ => return Err(unknown()),
        })
    }
}

impl SyncCommand {
    /// The bare name, as `command_name` carries it.
    pub fn name(self) -> &'static str {
        match self {
            SyncCommand::GetSteps(StepType::Clean) => "get_clean_steps",
            SyncCommand::GetSteps(StepType::Deploy) => "get_deploy_steps",
            SyncCommand::GetSteps(StepType::Service) => "get_service_steps",
            SyncCommand::GetPartitionUuids => "get_partition_uuids",
            SyncCommand::Sync => "sync",
            SyncCommand::CollectSystemLogs => "collect_system_logs",
            SyncCommand::Lockdown => "lockdown",
            SyncCommand::FinalizeRescue => "finalize_rescue",
        }
    }
}

impl AsyncCommand {
    pub fn name(self) -> &'static str {
        match self {
            AsyncCommand::ExecuteStep(StepType::Clean) => "execute_clean_step",
            AsyncCommand::ExecuteStep(StepType::Deploy) => "execute_deploy_step",
            AsyncCommand::ExecuteStep(StepType::Service) => "execute_service_step",
            AsyncCommand::PowerOff => "power_off",
            AsyncCommand::RunImage => "run_image",
            AsyncCommand::InstallBootloader => "install_bootloader",
        }
    }
}

/// Runs blocking work off the async threads; a panic becomes a failed command.
pub(crate) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(Failure::execution(format!("command task failed: {e}"))))
}

/// Runs a sync command. The outer error is a rejected request (nothing is recorded); the
/// inner one a failed command.
pub(crate) async fn run_sync(
    command: SyncCommand,
    params: JsonObject,
    env: &Arc<Env>,
) -> Result<Result<CommandOutput, Failure>, ApiError> {
    match command {
        SyncCommand::GetSteps(step_type) => step_commands::get_steps(step_type, &params, env),
        SyncCommand::GetPartitionUuids => Ok(Ok(standby::get_partition_uuids(env))),
        SyncCommand::Sync => Ok(standby::sync(env).await),
        SyncCommand::CollectSystemLogs => Ok(collect_system_logs(env).await),
        SyncCommand::Lockdown => {
            tracing::warn!(
                "system.lockdown: stopping the API and heartbeats, then taking links down"
            );
            env.ctx.set_lifecycle(Lifecycle::Stopped { lockdown: true });
            Ok(Ok(CommandOutput::none()))
        }
        SyncCommand::FinalizeRescue => rescue::finalize_rescue(&params, env).await,
    }
}

/// Runs an async command to completion (on the command's own task).
pub(crate) async fn run_async(
    command: AsyncCommand,
    params: JsonObject,
    env: Arc<Env>,
) -> Result<CommandOutput, Failure> {
    match command {
        AsyncCommand::ExecuteStep(step_type) => {
            step_commands::execute_step(step_type, params, env).await
        }
        AsyncCommand::PowerOff => standby::power_action(env, false).await,
        AsyncCommand::RunImage => standby::power_action(env, true).await,
        AsyncCommand::InstallBootloader => {
            blocking(move || image::install_bootloader(&params, &env)).await
        }
    }
}

async fn collect_system_logs(env: &Arc<Env>) -> Result<CommandOutput, Failure> {
    let sources = env.host.log_sources.clone();
    let agent_log = env.logs.text();
    let inventory = env.ctx.state().inventory;
    let attachments = env.ctx.attachments.snapshot();
    blocking(move || {
        syslogs::collect(&sources, &agent_log, inventory.as_ref(), &attachments)
            .map(|logs| CommandOutput::Json(json!({ "system_logs": logs })))
            .map_err(|e| Failure::execution(e.to_string()))
    })
    .await
}

/// A parameter that must be present (any value, `null` included).
pub(crate) fn required<'a>(
    params: &'a JsonObject,
    command: &str,
    name: &str,
) -> Result<&'a Value, String> {
    params
        .get(name)
        .ok_or_else(|| format!("{command}: missing required parameter '{name}'"))
}
