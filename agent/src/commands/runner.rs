//! [`CommandRunner`]: the command list and execution rules behind `/v1/commands/`
//! (spec §3.4, §3.5; IPA/extensions/base.py `ExecuteCommandMixin`).
//!
//! * Results are kept in order and never pruned.
//! * One global lock serializes `execute`; sync commands run under it.
//! * While the **last** result is RUNNING, a new command gets 409 `Busy`.
//! * Async commands are recorded as RUNNING and finish on their own task; every finish bumps
//!   the [`CommandRunner::async_done`] counter (the heartbeater's cue for a forced heartbeat).
//! * A RUNNING command read back (`GET /v1/commands/`, which Ironic's conductor calls on every
//!   heartbeat during a step) carries the progress of the agent's long work as
//!   `command_result: {"progress": [...]}` (rivet's addition: IPA answers `null`; Ironic
//!   reads no result of a RUNNING command, docs/architecture.md).

use std::sync::{Arc, Mutex};

use rivet_protocol::command::{CommandRequest, CommandResult, CommandStatus};
use tokio::sync::watch;

use super::catalog::{self, Command, Env, HostAccess};
use super::failure::Failure;
use super::output::CommandOutput;
use super::service::{ApiError, CommandService};
use crate::context::AgentContext;
use crate::logbuf::LogBuffer;
use crate::power::Power;
use crate::steps::HardwareManagers;

/// The command engine; cheap to clone (shared).
#[derive(Clone)]
pub struct CommandRunner {
    inner: Arc<Inner>,
}

struct Inner {
    env: Arc<Env>,
    exec_lock: tokio::sync::Mutex<()>,
    results: Mutex<Vec<CommandResult>>,
    async_done: watch::Sender<u64>,
}

impl CommandRunner {
    /// A runner that acts on this machine (see [`HostAccess::system`]).
    pub fn new(
        ctx: Arc<AgentContext>,
        managers: HardwareManagers,
        power: Arc<dyn Power>,
        logs: LogBuffer,
    ) -> Self {
        CommandRunner::with_host(ctx, managers, power, logs, HostAccess::system())
    }

    /// A runner with explicit host access (fakes and fixture directories in tests).
    pub fn with_host(
        ctx: Arc<AgentContext>,
        managers: HardwareManagers,
        power: Arc<dyn Power>,
        logs: LogBuffer,
        host: HostAccess,
    ) -> Self {
        let (async_done, _) = watch::channel(0);
        CommandRunner {
            inner: Arc::new(Inner {
                env: Arc::new(Env {
                    ctx,
                    managers,
                    power,
                    logs,
                    host,
                }),
                exec_lock: tokio::sync::Mutex::new(()),
                results: Mutex::new(Vec::new()),
                async_done,
            }),
        }
    }

    /// Counts finished async commands; changes each time one finishes.
    pub fn async_done(&self) -> watch::Receiver<u64> {
        self.inner.async_done.subscribe()
    }
}

fn new_result(name: &str, status: CommandStatus) -> CommandResult {
    CommandResult {
        id: uuid::Uuid::new_v4().to_string(),
        command_name: name.to_string(),
        command_status: status,
        command_error: None,
        command_result: None,
    }
}

impl Inner {
    fn with_results<R>(&self, f: impl FnOnce(&mut Vec<CommandResult>) -> R) -> R {
        match self.results.lock() {
            Ok(mut results) => f(&mut results),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    fn find(&self, id: &str) -> Option<CommandResult> {
        self.with_results(|results| results.iter().find(|r| r.id == id).cloned())
            .map(|result| self.with_progress(result))
    }

    /// `result`, with the progress board's reports as its `command_result` while it runs.
    fn with_progress(&self, mut result: CommandResult) -> CommandResult {
        if !result.command_status.is_done() {
            let progress = self.env.ctx.progress.snapshot();
            if !progress.is_empty() {
                result.command_result = Some(serde_json::json!({ "progress": progress }));
            }
        }
        result
    }

    fn record(&self, result: &CommandResult) {
        self.with_results(|results| results.push(result.clone()));
    }

    async fn execute(
        self: &Arc<Self>,
        request: CommandRequest,
        wait: bool,
    ) -> Result<CommandResult, ApiError> {
        let guard = self.exec_lock.lock().await;
        let (extension, command) = request.split_name().ok_or_else(|| {
            ApiError::InvalidCommand("Command name must be of the form <extension>.<name>".into())
        })?;
        if let Some(last) = self.with_results(|results| results.last().cloned()) {
            if !last.command_status.is_done() {
                tracing::warn!(command = %request.name, running = %last.command_name, "agent is busy");
                return Err(ApiError::Busy(last.command_name));
            }
        }
        let command = Command::parse(extension, command)?;
        tracing::info!(command = %request.name, "executing command");
        match command {
            Command::Sync(sync) => {
                let outcome = catalog::run_sync(sync, request.params, &self.env).await?;
                let result = match outcome {
                    Ok(output) => {
                        let mut result = new_result(sync.name(), CommandStatus::Succeeded);
                        result.command_result = output.into_result(sync.name(), false);
                        result
                    }
                    // As IPA: a sync command that raised is stored under the dotted name.
                    Err(failure) => {
                        tracing::error!(command = %request.name, error = ?failure.error, "command failed");
                        let mut result = new_result(&request.name, failure.status);
                        result.command_error = Some(failure.error);
                        result
                    }
                };
                self.record(&result);
                Ok(result)
            }
            Command::Async(task) => {
                let result = new_result(task.name(), CommandStatus::Running);
                self.record(&result);
                let inner = Arc::clone(self);
                let id = result.id.clone();
                let params = request.params;
                tokio::spawn(async move {
                    let work = catalog::run_async(task, params, Arc::clone(&inner.env));
                    let outcome = tokio::spawn(work).await.unwrap_or_else(|e| {
                        Err(Failure::execution(format!("command task failed: {e}")))
                    });
                    inner.finish(&id, task.name(), outcome);
                });
                drop(guard);
                if wait {
                    self.wait_for(&result.id).await
                } else {
                    Ok(result)
                }
            }
        }
    }

    fn finish(&self, id: &str, name: &str, outcome: Result<CommandOutput, Failure>) {
        match &outcome {
            Ok(_) => tracing::info!(command = name, "asynchronous command completed"),
            Err(failure) => {
                tracing::error!(command = name, error = ?failure.error, "asynchronous command failed")
            }
        }
        self.with_results(|results| {
            if let Some(result) = results.iter_mut().find(|r| r.id == id) {
                match outcome {
                    Ok(output) => {
                        result.command_status = CommandStatus::Succeeded;
                        result.command_result = output.into_result(name, true);
                    }
                    Err(failure) => {
                        result.command_status = failure.status;
                        result.command_error = Some(failure.error);
                        result.command_result = None;
                    }
                }
            }
        });
        self.async_done.send_modify(|count| *count += 1);
    }

    /// The result once it is no longer RUNNING.
    async fn wait_for(&self, id: &str) -> Result<CommandResult, ApiError> {
        let mut done = self.async_done.subscribe();
        loop {
            let result = self
                .find(id)
                .ok_or_else(|| ApiError::UnknownCommandId(id.to_string()))?;
            if result.command_status.is_done() || done.changed().await.is_err() {
                return Ok(result);
            }
        }
    }
}

impl CommandService for CommandRunner {
    fn execute(
        &self,
        request: CommandRequest,
        wait: bool,
    ) -> impl std::future::Future<Output = Result<CommandResult, ApiError>> + Send {
        let inner = Arc::clone(&self.inner);
        async move { inner.execute(request, wait).await }
    }

    fn list(&self) -> Vec<CommandResult> {
        let results = self.inner.with_results(|results| results.clone());
        results
            .into_iter()
            .map(|result| self.inner.with_progress(result))
            .collect()
    }

    fn get(
        &self,
        id: &str,
        wait: bool,
    ) -> impl std::future::Future<Output = Result<CommandResult, ApiError>> + Send {
        let inner = Arc::clone(&self.inner);
        let id = id.to_string();
        async move {
            if wait {
                inner.wait_for(&id).await
            } else {
                inner.find(&id).ok_or(ApiError::UnknownCommandId(id))
            }
        }
    }
}
