//! Console output for PID 1: stdin/stdout/stderr on `/dev/console`, and the tracing
//! subscriber writing there with a timestamp in seconds since the kernel booted (as dmesg).
//!
//! The log filter comes from `RUST_LOG` (default `info`); the kernel hands unknown
//! `KEY=value` parameters of its command line to init as environment variables, so
//! `RUST_LOG=debug` on the kernel command line works.

use std::fmt;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use nix::time::{clock_gettime, ClockId};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::FormatTime;

/// Points fds 0, 1 and 2 at `device` (`/dev/console`). The kernel does this itself only if
/// the initramfs has a `/dev/console` node; after devtmpfs is mounted it always exists.
pub fn attach_console(device: &Path) -> std::io::Result<()> {
    let console = File::options()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(device)
        .map_err(|e| std::io::Error::new(e.kind(), format!("opening {}: {e}", device.display())))?;
    for fd in 0..=2 {
        nix::unistd::dup2(console.as_raw_fd(), fd).map_err(std::io::Error::from)?;
    }
    Ok(())
}

/// Seconds since boot (CLOCK_BOOTTIME), formatted like the kernel's `[    3.141593]`.
#[derive(Debug, Clone, Copy, Default)]
pub struct BootTime;

/// Time since the kernel booted.
pub fn since_boot() -> Duration {
    clock_gettime(ClockId::CLOCK_BOOTTIME)
        .map(Duration::from)
        .unwrap_or_default()
}

impl FormatTime for BootTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        write!(w, "{}", format_boot_time(since_boot()))
    }
}

fn format_boot_time(t: Duration) -> String {
    format!("[{:5}.{:06}]", t.as_secs(), t.subsec_micros())
}

/// Installs the global tracing subscriber writing to stderr (the console) and into the
/// process's log buffer ([`crate::logbuf::global`]); the agent process forked from PID 1
/// inherits it. `ipa-debug` on the kernel command line turns on debug for rivet's modules.
/// Does nothing if a subscriber is installed already.
pub fn init_logging() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let default = if debug_requested(&cmdline) {
        "info,rivet_agent=debug"
    } else {
        "info"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_timer(BootTime);
    // An error only means a subscriber exists already, which is fine.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(console)
        .with(crate::logbuf::global().layer())
        .try_init();
}

/// `ipa-debug` with a true value (oslo booleans) on the kernel command line.
fn debug_requested(cmdline: &str) -> bool {
    cmdline
        .split_whitespace()
        .filter_map(|token| token.split_once('='))
        .rfind(|(key, _)| *key == "ipa-debug")
        .is_some_and(|(_, value)| {
            matches!(
                value.to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
}

/// Prints a block that stands out on a scrolling console, straight to stderr so that it is
/// seen even if logging is broken.
pub fn banner(lines: &[String]) {
    let rule = "=".repeat(72);
    let mut text = format!("\n{rule}\n");
    for line in lines {
        text.push_str("rivet: ");
        text.push_str(line);
        text.push('\n');
    }
    text.push_str(&rule);
    text.push('\n');
    eprint!("{text}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_looks_like_dmesg() {
        assert_eq!(
            format_boot_time(Duration::from_micros(3_141_593)),
            "[    3.141593]"
        );
        assert_eq!(
            format_boot_time(Duration::from_secs(123_456)),
            "[123456.000000]"
        );
    }

    #[test]
    fn boot_clock_runs() {
        assert!(since_boot() > Duration::ZERO);
    }
}

#[cfg(test)]
mod debug_flag_tests {
    use super::debug_requested;

    #[test]
    fn ipa_debug_on_the_command_line_asks_for_debug_logs() {
        assert!(debug_requested("quiet ipa-debug=1 console=ttyS0"));
        assert!(debug_requested("ipa-debug=True"));
        assert!(!debug_requested("ipa-debug=0"));
        assert!(!debug_requested("ipa-debug=1 ipa-debug=off"));
        assert!(!debug_requested("console=ttyS0"));
    }
}
