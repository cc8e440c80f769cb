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

/// Installs the global tracing subscriber writing to stderr (the console). Does nothing if
/// one is installed already.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // An error only means a subscriber exists already, which is fine.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .with_timer(BootTime)
        .try_init();
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
