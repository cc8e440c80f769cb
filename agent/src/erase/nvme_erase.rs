//! NVMe erase procedures on top of the admin commands of `nvme.rs`: probing a namespace,
//! Format NVM with a secure erase setting (spec §8.2 step 3), and Sanitize with the
//! Sanitize Status log polled for progress and the controller's estimate.

use std::io;
use std::time::{Duration, Instant};

use super::host::EraseClock;
use super::nvme::{
    format_cdw10, parse_namespace_list, sanitize_cdw10, AdminCommand, ControllerInfo,
    NamespaceInfo, NvmeAdmin, NvmeError, SanitizeAction, SanitizeLog, SanitizeState, SecureErase,
    CNS_ACTIVE_NAMESPACES, CNS_CONTROLLER, CNS_NAMESPACE, IDENTIFY_LEN, LID_SANITIZE_STATUS,
    NSID_ALL, SANITIZE_LOG_LEN,
};

/// What the erase knows about one NVMe namespace and its controller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NvmeProbe {
    pub nsid: u32,
    pub controller: ControllerInfo,
    pub namespace: NamespaceInfo,
    /// The controller's active namespaces; `None` if it cannot list them (NVMe 1.0).
    pub active_namespaces: Option<Vec<u32>>,
}

impl NvmeProbe {
    /// Other namespaces of this controller that a controller-wide operation would erase
    /// too. Unknown (no list) with more than one namespace supported counts as "maybe":
    /// the namespace count is returned as the single entry `0`.
    pub fn other_namespaces(&self) -> Vec<u32> {
        match &self.active_namespaces {
            Some(list) => list.iter().copied().filter(|&n| n != self.nsid).collect(),
            None if self.controller.namespaces > 1 => vec![0],
            None => Vec::new(),
        }
    }
}

/// Identify Controller and Namespace, and the active namespace list.
pub fn probe(admin: &mut dyn NvmeAdmin) -> Result<NvmeProbe, NvmeError> {
    let nsid = admin.namespace_id()?;
    let mut page = vec![0u8; IDENTIFY_LEN];
    admin.admin(&AdminCommand::identify(CNS_CONTROLLER, 0), &mut page)?;
    let controller = ControllerInfo::parse(&page)?;
    page.fill(0);
    admin.admin(&AdminCommand::identify(CNS_NAMESPACE, nsid), &mut page)?;
    let namespace = NamespaceInfo::parse(&page)?;
    page.fill(0);
    let active_namespaces =
        match admin.admin(&AdminCommand::identify(CNS_ACTIVE_NAMESPACES, 0), &mut page) {
            Ok(_) => Some(parse_namespace_list(&page)),
            Err(NvmeError::Status { status, .. }) => {
                tracing::info!("the controller cannot list its active namespaces: {status}");
                None
            }
            Err(e) => return Err(e),
        };
    Ok(NvmeProbe {
        nsid,
        controller,
        namespace,
        active_namespaces,
    })
}

/// How long a Format NVM may take: a crypto erase only changes a key (10 minutes is
/// generous); a user-data erase may write the whole media (at least 30 minutes, or the
/// size at a pessimistic 50 MB/s).
pub fn format_timeout(erase: SecureErase, size_bytes: u64) -> Duration {
    match erase {
        SecureErase::Cryptographic => Duration::from_secs(600),
        SecureErase::UserData => Duration::from_secs((size_bytes / 50_000_000).max(1800)),
    }
}

/// Format NVM keeping the current LBA format, with `erase`, on this namespace or (when
/// `all_namespaces`) on every namespace of the controller.
pub fn format(
    admin: &mut dyn NvmeAdmin,
    probe: &NvmeProbe,
    erase: SecureErase,
    all_namespaces: bool,
    size_bytes: u64,
) -> Result<(), NvmeError> {
    let nsid = if all_namespaces { NSID_ALL } else { probe.nsid };
    let cmd = AdminCommand::format_nvm(
        nsid,
        format_cdw10(&probe.namespace, erase),
        format_timeout(erase, size_bytes),
    );
    admin.admin(&cmd, &mut []).map(|_| ())
}

/// Reads the Sanitize Status log.
pub fn sanitize_log(admin: &mut dyn NvmeAdmin) -> Result<SanitizeLog, NvmeError> {
    let mut page = vec![0u8; SANITIZE_LOG_LEN];
    admin.admin(
        &AdminCommand::get_log_page(LID_SANITIZE_STATUS, SANITIZE_LOG_LEN),
        &mut page,
    )?;
    SanitizeLog::parse(&page)
}

/// How long to wait for a sanitize without an estimate from the controller.
pub const WAIT_WITHOUT_ESTIMATE: Duration = Duration::from_secs(24 * 3600);

/// The wait limit for a sanitize the controller estimates at `estimate`: twice the
/// estimate, and at least the estimate plus 30 minutes.
pub fn sanitize_wait_limit(estimate: Option<Duration>) -> Duration {
    match estimate {
        Some(e) => (e * 2).max(e + Duration::from_secs(1800)),
        None => WAIT_WITHOUT_ESTIMATE,
    }
}

/// One look at a running sanitize.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SanitizeTick {
    pub percent: f64,
    pub estimate: Option<Duration>,
    pub elapsed: Duration,
}

/// Why a sanitize failed.
#[derive(Debug, thiserror::Error)]
pub enum SanitizeError {
    #[error(transparent)]
    Nvme(#[from] NvmeError),
    #[error("the sanitize failed (Sanitize Status log: {0:?}); {1}")]
    Failed(SanitizeLog, String),
    #[error(
        "the sanitize is still running after {waited:?} (controller estimate: {estimate:?}); \
         the drive keeps working on it, also across power cycles"
    )]
    TimedOut {
        waited: Duration,
        estimate: Option<Duration>,
    },
    #[error("stopped waiting for the sanitize: {0}; the drive keeps working on it")]
    Stopped(io::Error),
}

/// What a finished sanitize reported.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sanitized {
    pub estimate: Option<Duration>,
    pub took: Duration,
}

/// Polls the log every `poll` until the sanitize in progress ends; returns the final log.
fn wait_for_sanitize(
    admin: &mut dyn NvmeAdmin,
    action: SanitizeAction,
    clock: &dyn EraseClock,
    poll: Duration,
    started: Instant,
    tick: &mut dyn FnMut(&SanitizeTick) -> io::Result<()>,
) -> Result<(SanitizeLog, Option<Duration>), SanitizeError> {
    let mut estimate = None;
    loop {
        let log = sanitize_log(admin)?;
        if estimate.is_none() {
            estimate = log.estimate(action);
        }
        let elapsed = clock.now().saturating_duration_since(started);
        if log.state != SanitizeState::InProgress {
            return Ok((log, estimate));
        }
        tick(&SanitizeTick {
            percent: log.percent(),
            estimate,
            elapsed,
        })
        .map_err(SanitizeError::Stopped)?;
        if elapsed >= sanitize_wait_limit(estimate) {
            return Err(SanitizeError::TimedOut {
                waited: elapsed,
                estimate,
            });
        }
        clock.sleep(poll);
    }
}

/// Sanitize with `action` (`overwrite_passes` for Overwrite), then waits for it, telling
/// `tick` the progress. A sanitize already running (one interrupted by a power cycle
/// resumes by itself) is waited for first.
pub fn sanitize(
    admin: &mut dyn NvmeAdmin,
    action: SanitizeAction,
    overwrite_passes: u8,
    clock: &dyn EraseClock,
    poll: Duration,
    tick: &mut dyn FnMut(&SanitizeTick) -> io::Result<()>,
) -> Result<Sanitized, SanitizeError> {
    let before = sanitize_log(admin)?;
    if before.state == SanitizeState::InProgress {
        tracing::warn!("a sanitize is already in progress; waiting for it before starting one");
        wait_for_sanitize(admin, action, clock, poll, clock.now(), tick)?;
    }
    let cdw10 = sanitize_cdw10(action, overwrite_passes);
    let started = clock.now();
    admin.admin(&AdminCommand::sanitize(cdw10, 0), &mut [])?;
    let (log, estimate) = wait_for_sanitize(admin, action, clock, poll, started, tick)?;
    match log.state {
        SanitizeState::Completed | SanitizeState::CompletedNoDeallocate => Ok(Sanitized {
            estimate,
            took: clock.now().saturating_duration_since(started),
        }),
        _ => {
            // AUSE was set: Exit Failure Mode makes the drive usable again.
            let exit = admin.admin(
                &AdminCommand::sanitize(sanitize_cdw10(SanitizeAction::ExitFailureMode, 0), 0),
                &mut [],
            );
            let note = match exit {
                Ok(_) => "left the sanitize failure mode".to_string(),
                Err(e) => format!("leaving the sanitize failure mode failed too: {e}"),
            };
            Err(SanitizeError::Failed(log, note))
        }
    }
}

#[cfg(test)]
#[path = "tests/nvme_erase.rs"]
mod tests;
