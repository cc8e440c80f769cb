//! `RivetHardwareManager`: rivet's own steps.
//!
//! * `sleep` sleeps and touches nothing; it lets a manual clean, deploy template or service
//!   run exercise the whole step path. It is not called `wait`: Ironic reserves `wait`,
//!   `hold`, `power_on`, `power_off` and `reboot` as conductor-side step names and never
//!   sends them to the agent.
//! * `verify_wiring` checks each NIC's LLDP neighbour against the expected switch and port
//!   and fails with the difference ([`crate::wiring`]).

use std::sync::Arc;
use std::time::Duration;

use rivet_protocol::steps::{ArgInfo, Step, StepType};
use rivet_protocol::JsonObject;
use serde_json::Value;

use super::{step, HardwareManager, HardwareSupport, StepCall, StepError};
use crate::lldp::{listen, KernelLinks, LinkState, ListenOptions, LldpBoard};
use crate::net::interfaces::{list_interfaces, NetInfo, SysfsNetInfo};
use crate::settings::Settings;
use crate::wiring::{compare, parse_expected};

/// The longest `sleep` accepted, in seconds.
pub const MAX_SLEEP_SECONDS: f64 = 3600.0;

const SLEEP: &str = "sleep";
const VERIFY_WIRING: &str = "verify_wiring";

/// Where `verify_wiring` gets NICs and LLDP results from.
#[derive(Clone)]
pub struct WiringSources {
    /// Shared with the boot-time listener and inspection.
    pub board: Arc<LldpBoard>,
    pub net: Arc<dyn NetInfo>,
    pub links: Arc<dyn LinkState>,
    /// For a session the step starts itself.
    pub listen: ListenOptions,
}

impl WiringSources {
    /// This machine, listening as the settings say.
    pub fn live(settings: &Settings, board: Arc<LldpBoard>) -> Self {
        WiringSources {
            board,
            net: Arc::new(SysfsNetInfo::default()),
            links: Arc::new(KernelLinks),
            listen: listen_options(settings),
        }
    }
}

/// The LLDP session options the settings give.
pub fn listen_options(settings: &Settings) -> ListenOptions {
    ListenOptions {
        timeout: settings.lldp_timeout,
        end_early: true,
        // A process started by hand on a running system listens only: the host's links
        // and its switches are not ours to announce on.
        transmit_as: (settings.lldp_transmit && crate::init::running_as_init()).then(|| {
            crate::inventory::HostFs::new("/")
                .attribute("proc/sys/kernel/hostname")
                .unwrap_or_else(|| "rivet-agent".to_string())
        }),
    }
}

/// `rivet_hardware_manager`, version 1.0.
#[derive(Clone)]
pub struct RivetHardwareManager {
    wiring: WiringSources,
}

impl RivetHardwareManager {
    pub const NAME: &'static str = "rivet_hardware_manager";
    pub const CLASS_NAME: &'static str = "RivetHardwareManager";
    pub const VERSION: &'static str = "1.0";

    pub fn new(wiring: WiringSources) -> Self {
        RivetHardwareManager { wiring }
    }

    fn verify_wiring_step() -> Step {
        let mut s = step(VERIFY_WIRING, 0, "deploy");
        s.argsinfo = Some(
            [(
                "expected".to_string(),
                ArgInfo {
                    description: "The expected cabling: a list of {\"mac\" or \"interface\", \
                                  \"switch_chassis_id\" or \"switch_system_name\", \"port_id\"}. \
                                  The step fails with the difference when a NIC's LLDP neighbour \
                                  is another switch or port, or is not heard."
                        .to_string(),
                    required: true,
                },
            )]
            .into_iter()
            .collect(),
        );
        s
    }

    /// Compares the expectation with what LLDP heard; NICs that heard nothing yet get a
    /// fresh listening session first.
    fn verify_wiring(&self, args: &JsonObject) -> Result<Value, StepError> {
        let expected =
            parse_expected(args.get("expected").unwrap_or(&Value::Null)).map_err(|message| {
                StepError::InvalidArgs {
                    step: VERIFY_WIRING.to_string(),
                    message,
                }
            })?;
        let sources = &self.wiring;
        let interfaces = list_interfaces(sources.net.as_ref())
            .map_err(|e| StepError::Failed(format!("listing network interfaces: {e}")))?;
        if sources.board.listening() {
            tracing::info!("verify_wiring: waiting for the LLDP session in progress");
            sources
                .board
                .wait_idle(sources.listen.timeout + Duration::from_secs(5));
        }
        let check = compare(&expected, &interfaces, &sources.board.observations());
        let unheard: Vec<String> = check
            .links
            .iter()
            .filter(|l| l.status == crate::wiring::LinkStatus::NoNeighbor)
            .filter_map(|l| l.interface.clone())
            .collect();
        let check = if unheard.is_empty() {
            check
        } else {
            tracing::info!(links = ?unheard, "verify_wiring: listening for LLDP");
            listen(
                &unheard,
                &sources.listen,
                &sources.board,
                sources.links.as_ref(),
            );
            compare(&expected, &interfaces, &sources.board.observations())
        };
        let report = serde_json::to_value(&check)
            .map_err(|e| StepError::Failed(format!("encoding the wiring report: {e}")))?;
        if check.ok {
            tracing::info!("verify_wiring: {}", check.difference());
            Ok(report)
        } else {
            Err(StepError::Failed(check.difference()))
        }
    }

    fn sleep_step(step_type: StepType) -> Step {
        let mut s = step(SLEEP, 0, "deploy");
        if step_type == StepType::Clean {
            s.abortable = Some(true);
        }
        s.argsinfo = Some(
            [(
                "seconds".to_string(),
                ArgInfo {
                    description: format!(
                        "How long to sleep, in seconds (0 to {MAX_SLEEP_SECONDS}). The step \
                         changes nothing on the machine."
                    ),
                    required: true,
                },
            )]
            .into_iter()
            .collect(),
        );
        s
    }
}

/// Reads `seconds`: a number, or a string holding one, within 0..=3600.
fn sleep_duration(args: &JsonObject) -> Result<Duration, StepError> {
    let invalid = |message: String| StepError::InvalidArgs {
        step: SLEEP.to_string(),
        message,
    };
    let seconds = match args.get("seconds") {
        None | Some(Value::Null) => return Err(invalid("'seconds' is required".to_string())),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match seconds {
        Some(s) if s.is_finite() && (0.0..=MAX_SLEEP_SECONDS).contains(&s) => {
            Ok(Duration::from_secs_f64(s))
        }
        _ => Err(invalid(format!(
            "'seconds' must be a number from 0 to {MAX_SLEEP_SECONDS}, got {}",
            args.get("seconds")
                .map(Value::to_string)
                .unwrap_or_default()
        ))),
    }
}

impl HardwareManager for RivetHardwareManager {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn class_name(&self) -> &str {
        Self::CLASS_NAME
    }

    fn version(&self) -> &str {
        Self::VERSION
    }

    fn support(&self) -> HardwareSupport {
        HardwareSupport::GENERIC
    }

    fn steps(&self) -> Vec<(StepType, Step)> {
        StepType::ALL
            .into_iter()
            .flat_map(|kind| {
                [
                    (kind, Self::sleep_step(kind)),
                    (kind, Self::verify_wiring_step()),
                ]
            })
            .collect()
    }

    fn execute(&self, step: &str, call: &StepCall<'_>) -> Result<Value, StepError> {
        match step {
            SLEEP => {
                let duration = sleep_duration(call.args)?;
                tracing::info!(seconds = duration.as_secs_f64(), "sleep step: sleeping");
                std::thread::sleep(duration);
                Ok(Value::Null)
            }
            VERIFY_WIRING => self.verify_wiring(call.args),
            _ => Err(StepError::Unhandled(step.to_string())),
        }
    }
}
