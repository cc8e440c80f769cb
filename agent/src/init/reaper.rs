//! Zombie reaping for PID 1.
//!
//! PID 1 runs the agent in a child process and does nothing but wait: every process whose
//! parent dies is re-parented to PID 1, and `waitpid(-1)` collects them all. The agent's own
//! children are reaped by the agent (tokio / std::process), so a blanket `waitpid(-1)` never
//! steals their exit statuses, and a panic in the agent (the release profile aborts on
//! panic) ends only the child, never PID 1.

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::coldplug::Clock;

/// A child that ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExit {
    Exited { pid: Pid, code: i32 },
    Killed { pid: Pid, signal: Signal },
}

impl ChildExit {
    pub fn pid(&self) -> Pid {
        match self {
            ChildExit::Exited { pid, .. } | ChildExit::Killed { pid, .. } => *pid,
        }
    }
}

impl std::fmt::Display for ChildExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChildExit::Exited { code, .. } => write!(f, "exited with status {code}"),
            ChildExit::Killed { signal, .. } => write!(f, "was killed by {signal}"),
        }
    }
}

/// `waitpid(-1, ...)`, behind a trait so the supervision loop is tested without forking.
pub trait Children {
    /// Waits for any child; with `block` false returns `Ok(None)` when none has ended.
    fn wait_any(&mut self, block: bool) -> Result<Option<ChildExit>, Errno>;
}

/// The real `waitpid(-1)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Waitpid;

impl Children for Waitpid {
    fn wait_any(&mut self, block: bool) -> Result<Option<ChildExit>, Errno> {
        let flags = if block {
            WaitPidFlag::empty()
        } else {
            WaitPidFlag::WNOHANG
        };
        loop {
            match waitpid(Pid::from_raw(-1), Some(flags)) {
                Ok(WaitStatus::Exited(pid, code)) => {
                    return Ok(Some(ChildExit::Exited { pid, code }))
                }
                Ok(WaitStatus::Signaled(pid, signal, _)) => {
                    return Ok(Some(ChildExit::Killed { pid, signal }))
                }
                Ok(WaitStatus::StillAlive) => return Ok(None),
                // Stopped/continued children are not exits; keep waiting.
                Ok(_) if block => continue,
                Ok(_) => return Ok(None),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

/// How the agent process ended, or that it vanished from under us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentEnd {
    Ended(ChildExit),
    /// `waitpid` said there are no children left without reporting the agent (should not
    /// happen; treated as an agent failure).
    Lost,
}

/// Blocks until the agent process `agent` ends, reaping every other child meanwhile.
/// Returns how the agent ended and how many orphans were reaped.
pub fn wait_for_agent(children: &mut dyn Children, agent: Pid) -> (AgentEnd, usize) {
    let mut reaped = 0;
    loop {
        match children.wait_any(true) {
            Ok(Some(exit)) if exit.pid() == agent => return (AgentEnd::Ended(exit), reaped),
            Ok(Some(exit)) => {
                reaped += 1;
                tracing::debug!("reaped orphan {} which {exit}", exit.pid());
            }
            Ok(None) => continue,
            Err(Errno::ECHILD) => return (AgentEnd::Lost, reaped),
            Err(e) => {
                tracing::warn!("waitpid: {e}");
                return (AgentEnd::Lost, reaped);
            }
        }
    }
}

/// Reaps whatever ends during `duration` (the pause before restarting the agent), checking
/// every `tick`. Returns how many were reaped.
pub fn reap_for(
    children: &mut dyn Children,
    clock: &dyn Clock,
    duration: Duration,
    tick: Duration,
) -> usize {
    let until = clock.elapsed() + duration;
    let mut reaped = 0;
    loop {
        while let Ok(Some(exit)) = children.wait_any(false) {
            reaped += 1;
            tracing::debug!("reaped orphan {} which {exit}", exit.pid());
        }
        let now = clock.elapsed();
        if now >= until {
            return reaped;
        }
        clock.sleep(tick.min(until - now));
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::collections::VecDeque;

    use super::*;

    /// Scripted `waitpid` results.
    struct FakeChildren {
        events: VecDeque<Result<Option<ChildExit>, Errno>>,
    }

    impl Children for FakeChildren {
        fn wait_any(&mut self, _block: bool) -> Result<Option<ChildExit>, Errno> {
            self.events.pop_front().unwrap_or(Ok(None))
        }
    }

    struct FakeClock(Cell<Duration>);

    impl Clock for FakeClock {
        fn elapsed(&self) -> Duration {
            self.0.get()
        }
        fn sleep(&self, d: Duration) {
            self.0.set(self.0.get() + d);
        }
    }

    fn exited(pid: i32, code: i32) -> Result<Option<ChildExit>, Errno> {
        Ok(Some(ChildExit::Exited {
            pid: Pid::from_raw(pid),
            code,
        }))
    }

    #[test]
    fn reaps_orphans_until_the_agent_ends() {
        let mut children = FakeChildren {
            events: VecDeque::from([
                exited(40, 0),
                Ok(Some(ChildExit::Killed {
                    pid: Pid::from_raw(41),
                    signal: Signal::SIGKILL,
                })),
                exited(7, 3),
                exited(42, 0),
            ]),
        };
        let (end, reaped) = wait_for_agent(&mut children, Pid::from_raw(7));
        assert_eq!(
            end,
            AgentEnd::Ended(ChildExit::Exited {
                pid: Pid::from_raw(7),
                code: 3
            })
        );
        assert_eq!(reaped, 2);
        assert_eq!(children.events.len(), 1, "stops at the agent's exit");
    }

    #[test]
    fn no_children_left_means_lost() {
        let mut children = FakeChildren {
            events: VecDeque::from([exited(40, 0), Err(Errno::ECHILD)]),
        };
        assert_eq!(
            wait_for_agent(&mut children, Pid::from_raw(7)),
            (AgentEnd::Lost, 1)
        );
    }

    #[test]
    fn pause_reaps_and_lasts_the_whole_delay() {
        let mut children = FakeChildren {
            events: VecDeque::from([exited(50, 0), Ok(None), exited(51, 1)]),
        };
        let clock = FakeClock(Cell::new(Duration::from_secs(10)));
        let reaped = reap_for(
            &mut children,
            &clock,
            Duration::from_millis(1050),
            Duration::from_millis(200),
        );
        assert_eq!(reaped, 2);
        assert_eq!(clock.elapsed(), Duration::from_millis(11_050));
    }

    #[test]
    fn exit_messages() {
        let killed = ChildExit::Killed {
            pid: Pid::from_raw(9),
            signal: Signal::SIGABRT,
        };
        assert_eq!(killed.to_string(), "was killed by SIGABRT");
    }
}
