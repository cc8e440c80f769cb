//! The heartbeater (spec §2.3): tells Ironic where the agent listens, and so keeps the
//! conductor driving the node.
//!
//! The first heartbeat goes out at once. After a success the next one is due in
//! `heartbeat_timeout × U(0.3, 0.6)`; after any error in `5 s × U(1.0, 2.0)`. When an async
//! command finishes, a heartbeat goes out as soon as 5 s have passed since the previous one,
//! so the conductor learns of the result quickly. The heartbeater ends when the agent's
//! lifecycle becomes `Stopped`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::sync::watch;

use crate::context::{AgentContext, Lifecycle};
use crate::ironic::client::{ClientError, IronicClient};
use crate::pace::Pacer;

/// The shortest gap between two heartbeats when one is forced, and the base of the retry
/// interval after an error.
pub const MIN_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// The success interval is `heartbeat_timeout` times a factor in this range.
pub const SUCCESS_JITTER: (f64, f64) = (0.3, 0.6);
/// The error interval is [`MIN_HEARTBEAT_INTERVAL`] times a factor in this range.
pub const ERROR_JITTER: (f64, f64) = (1.0, 2.0);

/// When the next heartbeat is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// When the previous heartbeat finished; `None` before the first.
    previous: Option<Instant>,
    /// How long after `previous` the next one is due.
    interval: Duration,
    /// An async command finished since the last successful heartbeat.
    forced: bool,
}

impl Schedule {
    /// Nothing sent yet: the first heartbeat is due now.
    pub fn new() -> Self {
        Schedule {
            previous: None,
            interval: Duration::ZERO,
            forced: false,
        }
    }

    /// Records a heartbeat that finished at `now`; `interval` is when the next is due.
    pub fn sent(&mut self, now: Instant, succeeded: bool, interval: Duration) {
        self.previous = Some(now);
        self.interval = interval;
        if succeeded {
            self.forced = false;
        }
    }

    /// An async command finished.
    pub fn force(&mut self) {
        self.forced = true;
    }

    pub fn is_forced(&self) -> bool {
        self.forced
    }

    /// How long from `now` until a heartbeat is due (zero: due now).
    pub fn wait(&self, now: Instant) -> Duration {
        let Some(previous) = self.previous else {
            return Duration::ZERO;
        };
        let elapsed = now.saturating_duration_since(previous);
        let regular = self.interval.saturating_sub(elapsed);
        if self.forced {
            regular.min(MIN_HEARTBEAT_INTERVAL.saturating_sub(elapsed))
        } else {
            regular
        }
    }
}

impl Default for Schedule {
    fn default() -> Self {
        Schedule::new()
    }
}

/// Heartbeats until the lifecycle becomes `Stopped`. The node and the token are read from
/// `ctx` for every heartbeat; the callback URL and the CA (`agent_verify_ca`, the auto-TLS
/// certificate) stay fixed, as Ironic requires for one boot. `commands_done` changes each
/// time an async command finishes.
pub async fn run_heartbeater(
    ctx: Arc<AgentContext>,
    client: Arc<IronicClient>,
    callback_url: String,
    verify_ca: Option<String>,
    mut commands_done: watch::Receiver<u64>,
    pacer: Pacer,
) {
    tracing::info!(callback_url, "starting the heartbeater");
    let mut lifecycle = ctx.watch_lifecycle();
    let mut commands_open = true;
    let mut lifecycle_open = true;
    let mut schedule = Schedule::new();
    loop {
        if stopped(&ctx) {
            break;
        }
        let wait = schedule.wait(pacer.now());
        if wait.is_zero() {
            let succeeded = match beat(&ctx, &client, &callback_url, verify_ca.as_deref()).await {
                Ok(()) => true,
                Err(err) => {
                    log_failure(&err);
                    false
                }
            };
            let interval = if succeeded {
                let timeout = ctx.state().heartbeat_timeout;
                pacer.scaled(timeout, SUCCESS_JITTER.0, SUCCESS_JITTER.1)
            } else {
                pacer.scaled(MIN_HEARTBEAT_INTERVAL, ERROR_JITTER.0, ERROR_JITTER.1)
            };
            tracing::info!("next heartbeat in {interval:?}");
            schedule.sent(pacer.now(), succeeded, interval);
            continue;
        }
        tokio::select! {
            _ = pacer.sleep(wait) => {}
            changed = commands_done.changed(), if commands_open => match changed {
                Ok(()) => {
                    tracing::debug!("an async command finished; heartbeating soon");
                    schedule.force();
                }
                Err(_) => commands_open = false,
            },
            changed = lifecycle.changed(), if lifecycle_open => {
                if changed.is_err() {
                    lifecycle_open = false;
                }
            }
        }
    }
    tracing::info!("stopping the heartbeater");
}

fn stopped(ctx: &AgentContext) -> bool {
    matches!(ctx.lifecycle(), Lifecycle::Stopped { .. })
}

/// Errors of one heartbeat.
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    #[error("no node to heartbeat for: lookup has not succeeded")]
    UnknownNode,
    #[error(transparent)]
    Client(#[from] ClientError),
}

async fn beat(
    ctx: &AgentContext,
    client: &IronicClient,
    callback_url: &str,
    verify_ca: Option<&str>,
) -> Result<(), HeartbeatError> {
    let state = ctx.state();
    let node = state.node.ok_or(HeartbeatError::UnknownNode)?;
    client
        .heartbeat(&node.uuid, callback_url, state.token.as_ref(), verify_ca)
        .await?;
    tracing::debug!("heartbeat accepted");
    Ok(())
}

fn log_failure(err: &HeartbeatError) {
    match err {
        HeartbeatError::Client(client) if client.status() == Some(StatusCode::CONFLICT) => {
            tracing::warn!("conflict error sending a heartbeat: {err}")
        }
        _ => tracing::error!("error sending a heartbeat: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn first_heartbeat_is_due_at_once() {
        assert_eq!(Schedule::new().wait(Instant::now()), Duration::ZERO);
    }

    #[test]
    fn next_heartbeat_after_the_interval() {
        let start = Instant::now();
        let mut schedule = Schedule::new();
        schedule.sent(start, true, 120 * SECOND);
        assert_eq!(schedule.wait(start), 120 * SECOND);
        assert_eq!(schedule.wait(start + 100 * SECOND), 20 * SECOND);
        assert_eq!(schedule.wait(start + 130 * SECOND), Duration::ZERO);
    }

    #[test]
    fn forced_heartbeat_waits_for_five_seconds_since_the_previous() {
        let start = Instant::now();
        let mut schedule = Schedule::new();
        schedule.sent(start, true, 120 * SECOND);
        schedule.force();
        assert_eq!(schedule.wait(start + 2 * SECOND), 3 * SECOND);
        assert_eq!(schedule.wait(start + 7 * SECOND), Duration::ZERO);
        schedule.sent(start + 7 * SECOND, true, 120 * SECOND);
        assert!(!schedule.is_forced());
        assert_eq!(schedule.wait(start + 8 * SECOND), 119 * SECOND);
    }

    #[test]
    fn a_failed_heartbeat_keeps_the_force() {
        let start = Instant::now();
        let mut schedule = Schedule::new();
        schedule.sent(start, true, 120 * SECOND);
        schedule.force();
        schedule.sent(start + 6 * SECOND, false, 8 * SECOND);
        assert!(schedule.is_forced());
        assert_eq!(schedule.wait(start + 6 * SECOND), 5 * SECOND);
    }

    #[test]
    fn a_short_interval_is_not_stretched_by_a_force() {
        let start = Instant::now();
        let mut schedule = Schedule::new();
        schedule.sent(start, true, 3 * SECOND);
        schedule.force();
        assert_eq!(schedule.wait(start + SECOND), 2 * SECOND);
    }
}
