//! The step engine: hardware managers, their steps, and dispatch (spec §6).
//!
//! A [`HardwareManager`] advertises steps per [`StepType`] and executes them by name.
//! [`HardwareManagers`] holds the active managers sorted by support level and implements
//! IPA's `get_<type>_steps` de-duplication, the `hardware_manager_version` dict and
//! `dispatch_to_managers`.

mod generic;
mod rivet;

use std::collections::BTreeMap;
use std::sync::Arc;

use rivet_protocol::steps::{GetStepsResult, HardwareManagerVersion, Step, StepType};
use rivet_protocol::JsonObject;
use serde_json::Value;

use crate::context::AgentContext;
use crate::progress::ProgressBoard;
use crate::settings::Settings;

pub use generic::GenericHardwareManager;
pub use rivet::{listen_options, RivetHardwareManager, WiringSources};

/// How well a manager supports this machine (IPA's `evaluate_hardware_support()`). Larger is
/// more specific; managers reporting [`HardwareSupport::NONE`] are dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HardwareSupport(pub u32);

impl HardwareSupport {
    pub const NONE: HardwareSupport = HardwareSupport(0);
    pub const GENERIC: HardwareSupport = HardwareSupport(1);
    pub const MAINLINE: HardwareSupport = HardwareSupport(2);
    pub const SERVICE_PROVIDER: HardwareSupport = HardwareSupport(3);
}

/// Why a step did not succeed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StepError {
    /// This manager has no step of that name (IPA's `IncompatibleHardwareMethodError`): the
    /// dispatcher tries the next manager.
    #[error("step {0} is not handled by this hardware manager")]
    Unhandled(String),
    /// No active manager handles the step (IPA's `HardwareManagerMethodNotFound`).
    #[error("Could not find method: {0}")]
    NoManager(String),
    /// The step exists in IPA but this build cannot do its work.
    #[error("{0} is not supported by this build of rivet-agent")]
    NotSupported(String),
    /// The step's arguments are missing or malformed.
    #[error("invalid arguments for step {step}: {message}")]
    InvalidArgs { step: String, message: String },
    /// The step ran and failed.
    #[error("{0}")]
    Failed(String),
    /// A failure that IPA reports with its own error type (for example
    /// `BlockDeviceEraseError`); reported as is instead of as a generic step failure.
    #[error("{message}: {details}")]
    Ipa {
        type_: String,
        code: u16,
        message: String,
        details: String,
    },
}

/// Everything a step gets besides its name.
#[derive(Clone, Copy)]
pub struct StepCall<'a> {
    /// The step's `args` merged into the extra command parameters (the step's own win).
    pub args: &'a JsonObject,
    /// The node as Ironic sent it (`driver_internal_info` carries the erase knobs).
    pub node: &'a Value,
    pub ports: &'a Value,
    /// Where long steps report progress.
    pub progress: &'a ProgressBoard,
    /// The agent's settings and run-time state (lookup overrides such as `md5_enabled`;
    /// `partition_uuids` recorded by `write_image`), the `abort` signal long steps check,
    /// and the `attachments` they leave for `log.collect_system_logs`.
    pub ctx: &'a AgentContext,
}

/// One hardware manager: a set of steps and their implementation.
pub trait HardwareManager: Send + Sync {
    /// `HARDWARE_MANAGER_NAME`: the key in `hardware_manager_version`.
    fn name(&self) -> &str;
    /// IPA's class name: the key of the manager's list in `get_<type>_steps`.
    fn class_name(&self) -> &str;
    /// `HARDWARE_MANAGER_VERSION`.
    fn version(&self) -> &str;
    fn support(&self) -> HardwareSupport;
    /// Every step the manager advertises, with the type it is advertised for.
    fn steps(&self) -> Vec<(StepType, Step)>;
    /// Runs the step `step`. Blocking: called on a blocking thread. Returns the step's
    /// result (`null` for none), or [`StepError::Unhandled`] for a step this manager lacks.
    fn execute(&self, step: &str, call: &StepCall<'_>) -> Result<Value, StepError>;
}

/// One manager's version of a step: (support, class name, step).
type Candidate = (HardwareSupport, String, Step);

/// The active managers, most specific first.
#[derive(Clone)]
pub struct HardwareManagers {
    managers: Vec<Arc<dyn HardwareManager>>,
}

impl std::fmt::Debug for HardwareManagers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.managers.iter().map(|m| m.class_name()))
            .finish()
    }
}

impl HardwareManagers {
    /// Drops managers that report no support and sorts the rest by support, descending;
    /// equal support keeps the given order (as IPA's stable sort does).
    pub fn new(managers: Vec<Arc<dyn HardwareManager>>) -> Self {
        let mut managers: Vec<_> = managers
            .into_iter()
            .filter(|m| m.support() > HardwareSupport::NONE)
            .collect();
        managers.sort_by_key(|m| std::cmp::Reverse(m.support()));
        HardwareManagers { managers }
    }

    /// The managers built into rivet-agent: generic, then rivet's own (whose
    /// `verify_wiring` reads LLDP results from `lldp`).
    pub fn builtin(settings: &Settings, lldp: Arc<crate::lldp::LldpBoard>) -> Self {
        HardwareManagers::new(vec![
            Arc::new(GenericHardwareManager::new(settings)),
            Arc::new(RivetHardwareManager::new(WiringSources::live(
                settings, lldp,
            ))),
        ])
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn HardwareManager>> {
        self.managers.iter()
    }

    /// `{name: version}` of every active manager (spec §6.3).
    pub fn versions(&self) -> HardwareManagerVersion {
        self.managers
            .iter()
            .map(|m| (m.name().to_string(), m.version().to_string()))
            .collect()
    }

    /// The `get_<type>_steps` answer: each step name once, kept by the manager with the
    /// highest support, then the highest priority, then the alphabetically first class name
    /// (spec §6.4).
    pub fn get_steps(&self, step_type: StepType) -> GetStepsResult {
        // Per step name, in first-seen order: the candidates.
        let mut candidates: Vec<(String, Vec<Candidate>)> = Vec::new();
        for manager in &self.managers {
            for (kind, step) in manager.steps() {
                if kind != step_type {
                    continue;
                }
                let entry = (manager.support(), manager.class_name().to_string(), step);
                match candidates
                    .iter_mut()
                    .find(|(name, _)| *name == entry.2.step)
                {
                    Some((_, list)) => list.push(entry),
                    None => candidates.push((entry.2.step.clone(), vec![entry])),
                }
            }
        }
        let mut steps: BTreeMap<String, Vec<Step>> = BTreeMap::new();
        for (_, mut list) in candidates {
            list.sort_by(|a, b| {
                b.0.cmp(&a.0)
                    .then(b.2.priority.cmp(&a.2.priority))
                    .then(a.1.cmp(&b.1))
            });
            let (_, class_name, step) = list.swap_remove(0);
            steps.entry(class_name).or_default().push(step);
        }
        GetStepsResult {
            step_type,
            steps,
            hardware_manager_version: self.versions(),
        }
    }

    /// IPA's `dispatch_to_managers`: the first manager (most specific first) that handles
    /// `step` runs it. Blocking.
    pub fn execute(&self, step: &str, call: &StepCall<'_>) -> Result<Value, StepError> {
        for manager in &self.managers {
            match manager.execute(step, call) {
                Err(StepError::Unhandled(_)) => continue,
                outcome => return outcome,
            }
        }
        Err(StepError::NoManager(step.to_string()))
    }
}

/// A step with IPA's defaults: not rebooting, no abortable flag, no argsinfo.
pub(crate) fn step(name: &str, priority: i64, interface: &str) -> Step {
    Step {
        step: name.to_string(),
        priority,
        interface: interface.to_string(),
        reboot_requested: false,
        abortable: None,
        argsinfo: None,
        args: None,
        extra: JsonObject::new(),
    }
}

#[cfg(test)]
mod tests;
