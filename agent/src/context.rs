//! State shared by the agent's parts for the life of one boot.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rivet_protocol::lookup::LookupNode;
use rivet_protocol::JsonObject;
use tokio::sync::watch;

use crate::lldp::LldpBoard;
use crate::progress::{AbortSignal, ProgressBoard};
use crate::settings::{Secret, Settings, TlsVersion};
use crate::syslogs::LogAttachments;

/// What the agent should be doing; watched by the API server and the heartbeater.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Serve the API and heartbeat.
    Serving,
    /// Stop the API and heartbeats (after `rescue.finalize_rescue`, or lookup got a masked
    /// token and we have none). With `lockdown`, also set every interface down.
    Stopped { lockdown: bool },
}

/// Values that lookup and commands change at run time (spec §1.5).
#[derive(Debug, Clone)]
pub struct RuntimeState {
    /// The node from the last lookup.
    pub node: Option<LookupNode>,
    /// The agent token, from `ipa-agent-token` or adopted at lookup.
    pub token: Option<Secret>,
    /// `config.heartbeat_timeout` (300 s by default).
    pub heartbeat_timeout: Duration,
    pub md5_enabled: bool,
    pub disable_deep_image_inspection: bool,
    pub permitted_image_formats: Vec<String>,
    pub enable_bios_bootloader_install: bool,
    pub tls_min_version: TlsVersion,
    /// `standby.get_partition_uuids` answer once an image has been written (spec §4);
    /// `None` until then (the command answers `{}`).
    pub partition_uuids: Option<JsonObject>,
    /// The device `write_image` wrote; `image.install_bootloader` sets up its boot entries.
    pub root_device: Option<PathBuf>,
    /// The last inventory JSON the agent built, if any; `log.collect_system_logs` adds it.
    pub inventory: Option<serde_json::Value>,
}

/// Shared by the API, the command runner, the heartbeater and the steps.
#[derive(Debug)]
pub struct AgentContext {
    pub settings: Settings,
    /// Progress of long-running steps.
    pub progress: ProgressBoard,
    /// Asks running steps to stop; set when the agent stops serving.
    pub abort: AbortSignal,
    /// What steps leave for `log.collect_system_logs`: the last erase reports.
    pub attachments: LogAttachments,
    /// What LLDP heard on each link (inspection, `verify_wiring`).
    pub lldp: Arc<LldpBoard>,
    /// When the agent started; `GET /v1/status` reports it as `started_at`.
    pub started_at: SystemTime,
    state: RwLock<RuntimeState>,
    lifecycle: watch::Sender<Lifecycle>,
}

impl AgentContext {
    pub fn new(settings: Settings) -> Self {
        let state = RuntimeState {
            node: None,
            token: settings.agent_token.clone(),
            heartbeat_timeout: Duration::from_secs(300),
            md5_enabled: settings.md5_enabled,
            disable_deep_image_inspection: settings.disable_deep_image_inspection,
            permitted_image_formats: settings.permitted_image_formats.clone(),
            enable_bios_bootloader_install: settings.enable_bios_bootloader_install,
            tls_min_version: settings.tls_min_version,
            partition_uuids: None,
            root_device: None,
            inventory: None,
        };
        let (lifecycle, _) = watch::channel(Lifecycle::Serving);
        AgentContext {
            settings,
            progress: ProgressBoard::default(),
            abort: AbortSignal::default(),
            attachments: LogAttachments::default(),
            lldp: Arc::new(LldpBoard::default()),
            started_at: SystemTime::now(),
            state: RwLock::new(state),
            lifecycle,
        }
    }

    /// A copy of the run-time state.
    pub fn state(&self) -> RuntimeState {
        match self.state.read() {
            Ok(state) => state.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Changes the run-time state under the lock.
    pub fn update_state<R>(&self, change: impl FnOnce(&mut RuntimeState) -> R) -> R {
        match self.state.write() {
            Ok(mut state) => change(&mut state),
            Err(poisoned) => change(&mut poisoned.into_inner()),
        }
    }

    /// The token commands must carry; `None` means every command is refused.
    pub fn token(&self) -> Option<Secret> {
        self.state().token
    }

    pub fn lifecycle(&self) -> Lifecycle {
        *self.lifecycle.borrow()
    }

    /// Changes the lifecycle; stopping also asks running steps to stop.
    pub fn set_lifecycle(&self, lifecycle: Lifecycle) {
        if let Lifecycle::Stopped { .. } = lifecycle {
            self.abort.request();
        }
        self.lifecycle.send_replace(lifecycle);
    }

    /// Wakes on every lifecycle change.
    pub fn watch_lifecycle(&self) -> watch::Receiver<Lifecycle> {
        self.lifecycle.subscribe()
    }
}
