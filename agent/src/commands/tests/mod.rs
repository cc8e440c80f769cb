//! Tests of the command engine through the `CommandService` API, with fake power, disks,
//! kernel log and addresses, and temporary directories as `/`, `/proc` and `/sys`.

mod runner;
mod steps;
mod system;

use std::sync::{Arc, Condvar, Mutex};

use rivet_protocol::command::{CommandRequest, CommandResult, CommandStatus};
use rivet_protocol::steps::{Step, StepType};
use serde_json::{json, Value};

use super::fssync::FakeFsSync;
use super::service::{ApiError, CommandService};
use super::{CommandRunner, HostAccess};
use crate::context::AgentContext;
use crate::erase::fake::FakeEraseHost;
use crate::image::grub::FakeBootHost;
use crate::logbuf::LogBuffer;
use crate::power::FakePower;
use crate::settings::Settings;
use crate::steps::{
    GenericHardwareManager, HardwareManager, HardwareManagers, HardwareSupport,
    RivetHardwareManager, StepCall, StepError, WiringSources,
};
use crate::syslogs::{FakeAddresses, FakeKernelLog, LogSources};

/// A door a step waits behind; opened by the test (and always on drop, so no blocking
/// thread outlives a failed test).
#[derive(Default)]
pub(super) struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    pub fn open(&self) {
        match self.open.lock() {
            Ok(mut open) => *open = true,
            Err(poisoned) => *poisoned.into_inner() = true,
        }
        self.opened.notify_all();
    }

    fn wait(&self) {
        let mut open = self.open.lock().expect("gate lock");
        while !*open {
            open = self.opened.wait(open).expect("gate wait");
        }
    }
}

/// Test steps: `gate` (waits for the gate, returns its args), `ipa_fail` (an IPA-typed
/// error), `fail`.
struct TestManager {
    gate: Arc<Gate>,
}

impl HardwareManager for TestManager {
    fn name(&self) -> &str {
        "test_hardware_manager"
    }
    fn class_name(&self) -> &str {
        "TestHardwareManager"
    }
    fn version(&self) -> &str {
        "3"
    }
    fn support(&self) -> HardwareSupport {
        HardwareSupport::MAINLINE
    }
    fn steps(&self) -> Vec<(StepType, Step)> {
        vec![(StepType::Clean, crate::steps::step("gate", 0, "deploy"))]
    }
    fn execute(&self, step: &str, call: &StepCall<'_>) -> Result<Value, StepError> {
        match step {
            "gate" => {
                self.gate.wait();
                Ok(Value::Object(call.args.clone()))
            }
            "ipa_fail" => Err(StepError::Ipa {
                type_: "BlockDeviceEraseError".into(),
                code: 500,
                message: "Error erasing block device".into(),
                details: "sda: injected".into(),
            }),
            "fail" => Err(StepError::Failed("boom".into())),
            other => Err(StepError::Unhandled(other.into())),
        }
    }
}

pub(super) struct Harness {
    pub runner: CommandRunner,
    pub ctx: Arc<AgentContext>,
    pub power: Arc<FakePower>,
    pub fs: Arc<FakeFsSync>,
    pub gate: Arc<Gate>,
    pub logs: LogBuffer,
    pub root: tempfile::TempDir,
    /// What install_bootloader's GRUB would have mounted and run.
    pub boot: Arc<FakeBootHost>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.gate.open();
    }
}

pub(super) struct Options {
    pub power: FakePower,
    pub fs: FakeFsSync,
    pub settings: Settings,
    /// The "mounted" image root the fake boot host shows (`None`: an empty directory).
    pub boot_root: Option<std::path::PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            power: FakePower::new(),
            fs: FakeFsSync::with_devices(&["nvme0n1", "sda"]),
            settings: Settings::default(),
            boot_root: None,
        }
    }
}

pub(super) fn harness() -> Harness {
    harness_with(Options::default())
}

pub(super) fn harness_with(options: Options) -> Harness {
    let root = tempfile::tempdir().expect("temp dir");
    let ctx = Arc::new(AgentContext::new(options.settings.clone()));
    let gate = Arc::new(Gate::default());
    let managers = HardwareManagers::new(vec![
        // No disks: the erase steps find nothing to erase (and never see this machine's).
        Arc::new(
            GenericHardwareManager::new(&options.settings)
                .with_erase_host(Arc::new(FakeEraseHost::default())),
        ),
        Arc::new(RivetHardwareManager::new(WiringSources::live(
            &options.settings,
            ctx.lldp.clone(),
        ))),
        Arc::new(TestManager { gate: gate.clone() }),
    ]);
    let power = Arc::new(options.power);
    let fs = Arc::new(options.fs);
    let logs = LogBuffer::new(100);
    let boot_root = options
        .boot_root
        .clone()
        .unwrap_or_else(|| root.path().join("image-root"));
    let boot = Arc::new(FakeBootHost::new(&boot_root, None));
    let host = HostAccess {
        root: root.path().join("root"),
        fs_sync: fs.clone(),
        log_sources: LogSources {
            kernel_log: Arc::new(FakeKernelLog {
                records: vec!["6,1,1000000,-;Linux version test".into()],
                error: None,
            }),
            addresses: Arc::new(FakeAddresses::default()),
            proc_root: root.path().join("proc"),
            sys_root: root.path().join("sys"),
        },
        boot: boot.clone(),
    };
    let runner = CommandRunner::with_host(ctx.clone(), managers, power.clone(), logs.clone(), host);
    Harness {
        runner,
        ctx,
        power,
        fs,
        gate,
        logs,
        root,
        boot,
    }
}

pub(super) fn request(name: &str, params: Value) -> CommandRequest {
    CommandRequest {
        name: name.to_string(),
        params: params.as_object().cloned().expect("params object"),
    }
}

impl Harness {
    pub async fn post(
        &self,
        name: &str,
        params: Value,
        wait: bool,
    ) -> Result<CommandResult, ApiError> {
        self.runner.execute(request(name, params), wait).await
    }

    /// POSTs and expects the request to be accepted.
    pub async fn ok(&self, name: &str, params: Value, wait: bool) -> CommandResult {
        self.post(name, params, wait)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Waits for command `id` to finish.
    pub async fn done(&self, id: &str) -> CommandResult {
        let result = self.runner.get(id, true).await.expect("known id");
        assert!(result.command_status.is_done());
        result
    }
}

/// The node and ports Ironic sends (trimmed).
pub(super) fn node() -> Value {
    json!({"uuid": "ad027926-c944-48a4-9230-a66134b75211", "driver_internal_info": {}})
}

pub(super) fn status(result: &CommandResult) -> CommandStatus {
    result.command_status
}
