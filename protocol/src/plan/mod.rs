//! rivet's deploy plans (docs/plan.md, schema docs/plan.schema.json): what an agent runs by
//! itself in plan mode (received at lookup from rivet-server) or offline mode (embedded in
//! the ISO's config area as the bundle entry `plan.json`).
//!
//! A plan names the machines it is for (matchers on MAC, SMBIOS system UUID, serial), their
//! network and per-machine node properties (root device hints), the steps (Ironic's step
//! names and argument shapes, plus rivet's own and the plan-level actions `wait`, `reboot`,
//! `poweroff`), what to do when a step fails, where to report, and whether a plan that
//! already completed on a machine may run there again.
//!
//! [`report`] is the JSON report the agent writes to the report medium and posts.

pub mod report;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::network_data::NetworkData;
use crate::JsonObject;

/// The plan format version this build reads and writes.
pub const PLAN_VERSION: u32 = 1;

/// Steps the agent's step engine runs (Ironic's names where Ironic has the step).
pub const ENGINE_STEPS: &[&str] = &[
    "erase_devices",
    "erase_devices_metadata",
    "erase_devices_express",
    "write_image",
    "inject_files",
    "verify_wiring",
    "sleep",
];

/// Steps that write to disks: a plan that completed on a machine does not run them there
/// again unless it says `"rerun": "always"`.
pub const DESTRUCTIVE_STEPS: &[&str] = &[
    "erase_devices",
    "erase_devices_metadata",
    "erase_devices_express",
    "write_image",
    "inject_files",
];

/// A whole plan document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// [`PLAN_VERSION`].
    pub version: u32,
    /// Names the plan in reports and in the completion record.
    pub name: String,
    /// The machines the plan is for; empty: any machine that boots it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub machines: Vec<Machine>,
    /// OpenStack network_data.json for every machine without its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_data: Option<NetworkData>,
    pub steps: Vec<PlanStep>,
    #[serde(default)]
    pub on_failure: OnFailure,
    #[serde(default, skip_serializing_if = "ReportTargets::is_empty")]
    pub report: ReportTargets,
    #[serde(default)]
    pub rerun: Rerun,
}

/// One machine of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: Matcher,
    /// Node properties the steps see as Ironic's `node.properties` (`root_device`,
    /// `skip_block_devices`).
    #[serde(default, skip_serializing_if = "JsonObject::is_empty")]
    pub properties: JsonObject,
    /// This machine's network_data.json (static addresses differ per machine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_data: Option<NetworkData>,
}

/// What identifies a machine; every field given must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    /// A MAC address one of its NICs has (any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    /// SMBIOS system UUID (any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_uuid: Option<String>,
    /// SMBIOS system serial number (exact).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

/// What a machine is, as the agent reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    #[serde(default)]
    pub macs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

impl Matcher {
    pub fn is_empty(&self) -> bool {
        self.mac.is_none() && self.system_uuid.is_none() && self.serial.is_none()
    }

    /// Whether every given field matches `identity`.
    pub fn matches(&self, identity: &Identity) -> bool {
        let mac_ok = self.mac.as_ref().is_none_or(|mac| {
            identity
                .macs
                .iter()
                .any(|have| have.eq_ignore_ascii_case(mac))
        });
        let uuid_ok = self.system_uuid.as_ref().is_none_or(|uuid| {
            identity
                .system_uuid
                .as_ref()
                .is_some_and(|have| have.eq_ignore_ascii_case(uuid))
        });
        let serial_ok = self
            .serial
            .as_ref()
            .is_none_or(|serial| identity.serial.as_deref() == Some(serial.as_str()));
        mac_ok && uuid_ok && serial_ok
    }
}

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanStep {
    /// An [`ENGINE_STEPS`] name, `inspect`, or a plan-level [`Action`] name.
    pub step: String,
    #[serde(default, skip_serializing_if = "JsonObject::is_empty")]
    pub args: JsonObject,
    /// A failure of this step is reported and the plan goes on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_failure: bool,
}

/// What a plan step is to the runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// Run by the step engine (the hardware managers).
    Engine,
    /// Collect the inventory into the report.
    Inspect,
    /// A plan-level action the runner does itself (Ironic 39 reserves these names for
    /// conductor-side steps, so they are never agent steps).
    Action(Action),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `{"seconds": N}`: pause.
    Wait,
    Reboot,
    PowerOff,
}

impl PlanStep {
    /// What the step is; `None` for a name nothing runs.
    pub fn kind(&self) -> Option<StepKind> {
        Some(match self.step.as_str() {
            "wait" => StepKind::Action(Action::Wait),
            "reboot" => StepKind::Action(Action::Reboot),
            "poweroff" => StepKind::Action(Action::PowerOff),
            "inspect" => StepKind::Inspect,
            name if ENGINE_STEPS.contains(&name) => StepKind::Engine,
            _ => return None,
        })
    }

    pub fn is_destructive(&self) -> bool {
        DESTRUCTIVE_STEPS.contains(&self.step.as_str())
    }

    /// `wait`'s `seconds`.
    pub fn wait_seconds(&self) -> Option<f64> {
        self.args
            .get("seconds")
            .and_then(Value::as_f64)
            .filter(|s| s.is_finite() && *s >= 0.0)
    }
}

/// What happens when a step fails (and its `ignore_failure` is not set). The report is
/// written and posted first in every case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Stop running steps; the machine stays on with the error on its console.
    #[default]
    Stop,
    #[serde(rename = "poweroff")]
    PowerOff,
    Reboot,
}

/// Where results go besides the console.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportTargets {
    /// A raw disk the JSON report is written to (also the completion record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<MediumRef>,
    /// An http(s) URL the report is posted to once reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// How long the agent keeps trying to post before a power action ends the boot
    /// (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_wait_seconds: Option<u64>,
}

impl ReportTargets {
    pub fn is_empty(&self) -> bool {
        self.medium.is_none() && self.url.is_none() && self.post_wait_seconds.is_none()
    }
}

/// A whole disk chosen by its serial number (`/sys/block/<dev>/device/serial`, the NVMe or
/// virtio serial; for SCSI/ATA the serial the inventory shows).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediumRef {
    pub serial: String,
}

/// Whether a plan that completed on a machine runs there again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Rerun {
    /// Its destructive steps do not run again on a machine whose report medium records it
    /// as done.
    #[default]
    Never,
    Always,
}

/// A plan that cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("plan: {0}")]
pub struct PlanError(pub String);

impl Plan {
    /// Parses a plan document (JSON) and [validates](Plan::validate) it.
    pub fn from_json(text: &str) -> Result<Plan, PlanError> {
        let plan: Plan = serde_json::from_str(text).map_err(|e| PlanError(e.to_string()))?;
        plan.validate()?;
        Ok(plan)
    }

    /// Parses a plan document in JSON or YAML (see [`document_value`]) and validates it.
    #[cfg(feature = "yaml")]
    pub fn from_document(text: &str) -> Result<Plan, PlanError> {
        Plan::from_value(&document_value(text)?)
    }

    /// [`Plan::from_json`] for a JSON value (the plan in a lookup answer).
    pub fn from_value(value: &Value) -> Result<Plan, PlanError> {
        let plan = Plan::deserialize(value).map_err(|e| PlanError(e.to_string()))?;
        plan.validate()?;
        Ok(plan)
    }

    /// Everything serde cannot check: the version, known step names and their arguments,
    /// no step after `reboot`/`poweroff`, machines with names and at least one matcher,
    /// an http(s) report URL, and a report medium for plans with destructive steps that
    /// must not run twice.
    pub fn validate(&self) -> Result<(), PlanError> {
        let fail = |message: String| Err(PlanError(message));
        if self.version != PLAN_VERSION {
            return fail(format!(
                "version {} is not supported (this build reads version {PLAN_VERSION})",
                self.version
            ));
        }
        if self.name.trim().is_empty() {
            return fail("name is empty".into());
        }
        if self.steps.is_empty() {
            return fail("steps is empty".into());
        }
        for (index, step) in self.steps.iter().enumerate() {
            let at = format!("step {index} ({})", step.step);
            let Some(kind) = step.kind() else {
                return fail(format!(
                    "{at}: unknown step; known: {}, inspect, wait, reboot, poweroff",
                    ENGINE_STEPS.join(", ")
                ));
            };
            let last = index + 1 == self.steps.len();
            let has_image_info = step.args.get("image_info").is_some_and(Value::is_object);
            match kind {
                StepKind::Action(Action::Wait) if step.wait_seconds().is_none() => {
                    return fail(format!("{at}: needs args.seconds, a number >= 0"));
                }
                StepKind::Action(Action::Reboot | Action::PowerOff) if !last => {
                    return fail(format!("{at}: ends the boot, so it must be the last step"));
                }
                StepKind::Engine if step.step == "write_image" && !has_image_info => {
                    return fail(format!("{at}: needs args.image_info, an object"));
                }
                _ => {}
            }
        }
        let mut names: Vec<&str> = Vec::new();
        for machine in &self.machines {
            if machine.name.trim().is_empty() {
                return fail("a machine has an empty name".into());
            }
            if names.contains(&machine.name.as_str()) {
                return fail(format!("machine {} is given twice", machine.name));
            }
            names.push(&machine.name);
            if machine.matcher.is_empty() {
                return fail(format!(
                    "machine {}: match names no mac, system_uuid or serial",
                    machine.name
                ));
            }
        }
        if let Some(url) = &self.report.url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return fail(format!("report.url {url:?} is not an http(s) URL"));
            }
        }
        if let Some(medium) = &self.report.medium {
            if medium.serial.trim().is_empty() {
                return fail("report.medium.serial is empty".into());
            }
        }
        let destructive = self.steps.iter().any(PlanStep::is_destructive);
        if destructive && self.rerun == Rerun::Never && self.report.medium.is_none() {
            return fail(
                "the plan erases or writes disks but names no report.medium to record that it \
                 completed: without one every boot would run it again; name a report medium or \
                 set \"rerun\": \"always\""
                    .into(),
            );
        }
        Ok(())
    }

    /// The machine `identity` is: `Ok(None)` for a plan without machines; an error when
    /// no machine matches or more than one does.
    pub fn select(&self, identity: &Identity) -> Result<Option<&Machine>, PlanError> {
        if self.machines.is_empty() {
            return Ok(None);
        }
        let matching: Vec<&Machine> = self
            .machines
            .iter()
            .filter(|m| m.matcher.matches(identity))
            .collect();
        match matching.as_slice() {
            [one] => Ok(Some(one)),
            [] => Err(PlanError(format!(
                "no machine of plan {} matches this one (MACs {}, system UUID {}, serial {})",
                self.name,
                identity.macs.join(", "),
                identity.system_uuid.as_deref().unwrap_or("unknown"),
                identity.serial.as_deref().unwrap_or("unknown"),
            ))),
            many => Err(PlanError(format!(
                "machines {} of plan {} all match this one: refusing to guess",
                many.iter()
                    .map(|m| m.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                self.name
            ))),
        }
    }

    /// The network_data.json for `machine` (its own, else the plan's).
    pub fn network_data_for<'a>(&'a self, machine: Option<&'a Machine>) -> Option<&'a NetworkData> {
        machine
            .and_then(|m| m.network_data.as_ref())
            .or(self.network_data.as_ref())
    }

    /// The sha256 (hex) of the plan's canonical JSON: what the completion record names.
    pub fn digest(&self) -> String {
        use sha2::Digest;
        let canonical = serde_json::to_vec(self).unwrap_or_default();
        hex_string(&sha2::Sha256::digest(&canonical))
    }
}

/// A plan document as a JSON value: JSON when its first non-blank character is `{`, YAML
/// otherwise. A YAML plan is the same document as its JSON (same values, same digest): the
/// agent only ever receives JSON.
#[cfg(feature = "yaml")]
pub fn document_value(text: &str) -> Result<Value, PlanError> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| PlanError(format!("JSON: {e}")));
    }
    serde_norway::from_str(text).map_err(|e| PlanError(format!("YAML: {e}")))
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
