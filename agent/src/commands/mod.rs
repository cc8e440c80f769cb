//! The command API's engine: what `POST/GET /v1/commands/` do, independent of HTTP.
//!
//! [`CommandRunner`] implements [`service::CommandService`] for the HTTP layer. The commands
//! themselves live in one module per extension; steps are dispatched to the hardware
//! managers of [`crate::steps`].

mod catalog;
pub mod failure;
pub mod fssync;
mod image;
pub mod output;
mod rescue;
mod runner;
pub mod service;
mod shacrypt;
mod standby;
mod step_commands;

pub use catalog::HostAccess;
pub use rescue::{PASSWORD_FILE, RESCUED_MARKER};
pub use runner::CommandRunner;

#[cfg(test)]
mod tests;
