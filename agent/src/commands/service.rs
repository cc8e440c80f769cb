//! The contract between the HTTP layer and the command engine.

use std::future::Future;

use rivet_protocol::command::{CommandRequest, CommandResult};
use rivet_protocol::fault::Fault;

/// Errors a command call answers with before or instead of a result (spec §3.4).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ApiError {
    /// Malformed body or unknown command (400, `InvalidCommandError`).
    #[error("Invalid command: {0}")]
    InvalidCommand(String),
    /// Parameters rejected by the command's validator (400, `InvalidCommandParamsError`).
    #[error("Invalid command parameters: {0}")]
    InvalidParams(String),
    /// Unknown extension (404).
    #[error("Extension {0} not found")]
    UnknownExtension(String),
    /// Unknown command id (404).
    #[error("Command {0} not found")]
    UnknownCommandId(String),
    /// The last command is still running (409). The wording is what Ironic matches on.
    #[error("Agent is busy: executing command {0}")]
    Busy(String),
    /// Anything else (500).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        match self {
            ApiError::InvalidCommand(_) | ApiError::InvalidParams(_) => 400,
            ApiError::UnknownExtension(_) | ApiError::UnknownCommandId(_) => 404,
            ApiError::Busy(_) => 409,
            ApiError::Internal(_) => 500,
        }
    }

    pub fn fault(&self) -> Fault {
        if self.status() >= 500 {
            Fault::server(self.to_string())
        } else {
            Fault::client(self.to_string())
        }
    }
}

/// What the HTTP layer needs from the command engine. The token check happens before any of
/// these are called.
pub trait CommandService: Send + Sync + 'static {
    /// `POST /v1/commands/`: runs a sync command to completion, or starts an async one and
    /// answers RUNNING; with `wait`, blocks until the async command is done.
    fn execute(
        &self,
        request: CommandRequest,
        wait: bool,
    ) -> impl Future<Output = Result<CommandResult, ApiError>> + Send;

    /// `GET /v1/commands/`: every result, oldest first.
    fn list(&self) -> Vec<CommandResult>;

    /// `GET /v1/commands/{id}`; with `wait`, blocks until that command is done.
    fn get(
        &self,
        id: &str,
        wait: bool,
    ) -> impl Future<Output = Result<CommandResult, ApiError>> + Send;
}
