//! Orderly power-off and reboot: stop the other processes, flush, unmount, then `reboot(2)`.

use std::convert::Infallible;
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sys::reboot::RebootMode;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::mounts::unmount_plan;

/// How long the other processes get between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(1);

/// What to do with the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerAction {
    PowerOff,
    Reboot,
}

impl std::fmt::Display for PowerAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PowerAction::PowerOff => "power off",
            PowerAction::Reboot => "reboot",
        })
    }
}

/// `reboot(2)` refused (no CAP_SYS_BOOT, or inside a container).
#[derive(Debug, thiserror::Error)]
#[error("{action}: reboot(2) failed: {source}")]
pub struct PowerError {
    pub action: PowerAction,
    pub source: Errno,
}

/// Powers the machine off. Returns only if the kernel refused. Whether a host (not the
/// ramdisk) may be powered off is the caller's decision; see [`super::running_as_init`].
pub fn power_off() -> Result<Infallible, PowerError> {
    shutdown(PowerAction::PowerOff)
}

/// Reboots the machine. Returns only if the kernel refused.
pub fn reboot() -> Result<Infallible, PowerError> {
    shutdown(PowerAction::Reboot)
}

fn shutdown(action: PowerAction) -> Result<Infallible, PowerError> {
    super::console::banner(&[format!("{action}: stopping processes, flushing disks")]);
    // In the ramdisk every other process is ours; on a host they are not ours to kill, and
    // neither are its mounts.
    let in_ramdisk = super::running_as_init();
    if in_ramdisk {
        stop_other_processes();
    }
    nix::unistd::sync();
    if in_ramdisk {
        unmount_everything();
        nix::unistd::sync();
    }
    let mode = match action {
        PowerAction::PowerOff => RebootMode::RB_POWER_OFF,
        PowerAction::Reboot => RebootMode::RB_AUTOBOOT,
    };
    match nix::sys::reboot::reboot(mode) {
        Err(source) => Err(PowerError { action, source }),
    }
}

/// SIGTERM to everything but PID 1 and us, a grace period, then SIGKILL.
fn stop_other_processes() {
    let all = Pid::from_raw(-1);
    match kill(all, Signal::SIGTERM) {
        Ok(()) => {
            std::thread::sleep(TERM_GRACE);
            // ESRCH: nothing left to kill.
            if let Err(e) = kill(all, Signal::SIGKILL) {
                if e != Errno::ESRCH {
                    tracing::warn!("shutdown: SIGKILL to all processes: {e}");
                }
            }
        }
        Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!("shutdown: SIGTERM to all processes: {e}"),
    }
}

/// Unmounts every filesystem with a backing store, innermost first; remounts read-only
/// those that stay busy.
fn unmount_everything() {
    let mountinfo = match std::fs::read_to_string("/proc/self/mountinfo") {
        Ok(text) => text,
        Err(e) => {
            tracing::warn!("shutdown: reading /proc/self/mountinfo: {e}");
            return;
        }
    };
    for entry in unmount_plan(&mountinfo) {
        let target = &entry.target;
        match umount2(target, MntFlags::empty()) {
            Ok(()) => tracing::info!("shutdown: unmounted {}", target.display()),
            Err(e) => {
                let ro = nix::mount::mount(
                    None::<&str>,
                    target,
                    None::<&str>,
                    MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                    None::<&str>,
                );
                match ro {
                    Ok(()) => tracing::info!(
                        "shutdown: {} busy ({e}), remounted read-only",
                        target.display()
                    ),
                    Err(ro_e) => tracing::warn!(
                        "shutdown: {} ({}): unmount: {e}; remount read-only: {ro_e}",
                        target.display(),
                        entry.source
                    ),
                }
            }
        }
    }
}
