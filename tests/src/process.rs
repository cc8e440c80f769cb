//! Child processes that tests start: output goes to a log file, the whole process group is
//! ended on drop, and the log's tail is printed when the test is failing.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// How long a child gets to exit after SIGTERM before its group gets SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);
/// How much of a log [`LoggedChild::log_tail`] reads at most.
const TAIL_BYTES: u64 = 64 * 1024;

/// A process started by a test, in its own process group, writing stdout and stderr to a file.
#[derive(Debug)]
pub struct LoggedChild {
    name: String,
    child: Child,
    log: PathBuf,
}

impl LoggedChild {
    /// Starts `command` as the leader of a new process group, stdin from /dev/null, stdout
    /// and stderr appended to `log`. `name` is used in messages.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> Result<LoggedChild> {
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {} for {name}'s output", log.display()))?;
        let err = out
            .try_clone()
            .with_context(|| format!("duplicating the handle of {}", log.display()))?;
        command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("starting {name}: {command:?}"))?;
        Ok(LoggedChild {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The exit status if the process has ended, without waiting.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        self.child
            .try_wait()
            .with_context(|| format!("checking whether {} (pid {}) exited", self.name, self.pid()))
    }

    /// Fails if the process has ended; the error carries its log's tail.
    pub fn ensure_running(&mut self) -> Result<()> {
        match self.exited()? {
            None => Ok(()),
            Some(status) => anyhow::bail!(
                "{} (pid {}) exited early with {status}; last lines of {}:\n{}",
                self.name,
                self.pid(),
                self.log.display(),
                self.log_tail(60)
            ),
        }
    }

    /// The last `lines` lines of the log (at most 64 KiB), or why they cannot be read.
    pub fn log_tail(&self, lines: usize) -> String {
        match read_tail(&self.log, lines) {
            Ok(text) => text,
            Err(e) => format!("(cannot read {}: {e:#})", self.log.display()),
        }
    }

    /// Whole log as text (lossy UTF-8).
    pub fn log_text(&self) -> Result<String> {
        let bytes = std::fs::read(&self.log)
            .with_context(|| format!("reading {}'s log {}", self.name, self.log.display()))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// SIGTERM to the group, SIGKILL after [`TERM_GRACE`], then reap the leader.
    fn terminate(&mut self) {
        let Ok(raw) = i32::try_from(self.child.id()) else {
            return;
        };
        let group = Pid::from_raw(raw);
        if self.exited().ok().flatten().is_none() {
            signal_group(group, Signal::SIGTERM);
            let deadline = Instant::now() + TERM_GRACE;
            while Instant::now() < deadline && self.exited().ok().flatten().is_none() {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // Also catches workers that outlive their leader.
        signal_group(group, Signal::SIGKILL);
        if let Err(e) = self.child.wait() {
            eprintln!("reaping {} (pid {raw}): {e}", self.name);
        }
    }
}

fn signal_group(group: Pid, signal: Signal) {
    match killpg(group, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => eprintln!("sending {signal} to process group {group}: {e}"),
    }
}

fn read_tail(path: &Path, lines: usize) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let len = file
        .metadata()
        .with_context(|| format!("reading metadata of {}", path.display()))?
        .len();
    file.seek(SeekFrom::Start(len.saturating_sub(TAIL_BYTES)))
        .with_context(|| format!("seeking in {}", path.display()))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    Ok(all[all.len().saturating_sub(lines)..].join("\n"))
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        // Read before terminating: shutdown noise would push the failure out of the tail.
        let tail = std::thread::panicking().then(|| self.log_tail(150));
        self.terminate();
        if let Some(tail) = tail {
            eprintln!(
                "----- last lines of {} ({}) when the test failed -----\n{tail}\n----- end of {} -----",
                self.name,
                self.log.display(),
                self.name
            );
        }
    }
}
