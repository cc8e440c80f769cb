//! Powering the machine off or rebooting it (`standby.power_off`, `standby.run_image`).
//!
//! [`SystemPower`] decides by how the agent runs:
//! * **PID 1** (the ramdisk's init): `sync(2)`, then `reboot(2)`; if that fails, the
//!   magic SysRq trigger (`o` or `b` into `/proc/sysrq-trigger`).
//! * **Not PID 1, `allow_host_power_actions` true:** like IPA, run `poweroff` or `reboot`,
//!   falling back to SysRq when the command fails or says "ignoring request".
//! * **Not PID 1, `allow_host_power_actions` false (the default):** the agent never touches
//!   the host it runs on. It logs that it is not powering anything off, sets the lifecycle to
//!   `Stopped { lockdown: false }` so the API and heartbeats end, and reports success, as the
//!   machine Ironic manages is not this host in that setup (tests, development).

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::context::{AgentContext, Lifecycle};

/// What the command asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    PowerOff,
    Reboot,
}

impl PowerAction {
    fn command(self) -> &'static str {
        match self {
            PowerAction::PowerOff => "poweroff",
            PowerAction::Reboot => "reboot",
        }
    }

    fn sysrq(self) -> &'static [u8] {
        match self {
            PowerAction::PowerOff => b"o",
            PowerAction::Reboot => b"b",
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PowerError(pub String);

/// Powers the machine off or reboots it. Blocking. On success the call usually does not
/// return at all.
pub trait Power: Send + Sync {
    fn power_off(&self) -> Result<(), PowerError>;
    fn reboot(&self) -> Result<(), PowerError>;
}

/// The real implementation; see the module documentation.
#[derive(Debug)]
pub struct SystemPower {
    ctx: Arc<AgentContext>,
    sysrq_trigger: PathBuf,
}

impl SystemPower {
    pub fn new(ctx: Arc<AgentContext>) -> Self {
        SystemPower {
            ctx,
            sysrq_trigger: PathBuf::from("/proc/sysrq-trigger"),
        }
    }

    fn act(&self, action: PowerAction) -> Result<(), PowerError> {
        if crate::init::running_as_init() {
            // Only returns when reboot(2) was refused.
            let result = match action {
                PowerAction::PowerOff => crate::init::power_off(),
                PowerAction::Reboot => crate::init::reboot(),
            };
            let Err(err) = result;
            tracing::warn!(%err, ?action, "reboot(2) failed, falling back to sysrq-trigger");
            return self.sysrq(action);
        }
        if !self.ctx.settings.allow_host_power_actions {
            tracing::warn!(
                ?action,
                "not PID 1 and allow_host_power_actions is false: leaving this host's power \
                 alone and stopping the agent instead"
            );
            self.ctx
                .set_lifecycle(Lifecycle::Stopped { lockdown: false });
            return Ok(());
        }
        match Command::new(action.command()).output() {
            Ok(output) => {
                let stderr = String::from_utf8_lossy(&output.stderr);
                if output.status.success() && !stderr.contains("ignoring request") {
                    return Ok(());
                }
                tracing::warn!(
                    command = action.command(),
                    status = %output.status,
                    %stderr,
                    "power command failed or was ignored, falling back to sysrq-trigger"
                );
            }
            Err(e) => tracing::warn!(
                command = action.command(),
                error = %e,
                "cannot run the power command, falling back to sysrq-trigger"
            ),
        }
        self.sysrq(action)
    }

    fn sysrq(&self, action: PowerAction) -> Result<(), PowerError> {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&self.sysrq_trigger)
            .and_then(|mut f| f.write_all(action.sysrq()))
            .map_err(|e| {
                PowerError(format!(
                    "writing {:?} to {}: {e}",
                    String::from_utf8_lossy(action.sysrq()),
                    self.sysrq_trigger.display()
                ))
            })
    }
}

impl Power for SystemPower {
    fn power_off(&self) -> Result<(), PowerError> {
        self.act(PowerAction::PowerOff)
    }

    fn reboot(&self) -> Result<(), PowerError> {
        self.act(PowerAction::Reboot)
    }
}

/// Records the actions asked for; fails them when built with [`FakePower::failing`].
#[derive(Debug, Default)]
pub struct FakePower {
    calls: Mutex<Vec<PowerAction>>,
    failure: Option<String>,
}

impl FakePower {
    pub fn new() -> Self {
        FakePower::default()
    }

    pub fn failing(message: &str) -> Self {
        FakePower {
            calls: Mutex::new(Vec::new()),
            failure: Some(message.to_string()),
        }
    }

    pub fn calls(&self) -> Vec<PowerAction> {
        match self.calls.lock() {
            Ok(calls) => calls.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn record(&self, action: PowerAction) -> Result<(), PowerError> {
        match self.calls.lock() {
            Ok(mut calls) => calls.push(action),
            Err(poisoned) => poisoned.into_inner().push(action),
        }
        match &self.failure {
            Some(message) => Err(PowerError(message.clone())),
            None => Ok(()),
        }
    }
}

impl Power for FakePower {
    fn power_off(&self) -> Result<(), PowerError> {
        self.record(PowerAction::PowerOff)
    }

    fn reboot(&self) -> Result<(), PowerError> {
        self.record(PowerAction::Reboot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    #[test]
    fn refuses_to_touch_the_host_unless_allowed() {
        assert_ne!(
            std::process::id(),
            1,
            "this test must not run as PID 1: it would power the machine off"
        );
        let ctx = Arc::new(AgentContext::new(Settings::default()));
        let power = SystemPower::new(ctx.clone());
        assert_eq!(ctx.lifecycle(), Lifecycle::Serving);
        power.power_off().expect("refusal is not an error");
        assert_eq!(ctx.lifecycle(), Lifecycle::Stopped { lockdown: false });

        let ctx = Arc::new(AgentContext::new(Settings::default()));
        SystemPower::new(ctx.clone())
            .reboot()
            .expect("refusal is not an error");
        assert_eq!(ctx.lifecycle(), Lifecycle::Stopped { lockdown: false });
    }

    #[test]
    fn fake_power_records_and_fails_on_request() {
        let fake = FakePower::new();
        fake.reboot().expect("ok");
        fake.power_off().expect("ok");
        assert_eq!(fake.calls(), [PowerAction::Reboot, PowerAction::PowerOff]);
        let failing = FakePower::failing("no power");
        assert_eq!(failing.power_off(), Err(PowerError("no power".into())));
        assert_eq!(failing.calls(), [PowerAction::PowerOff]);
    }
}
