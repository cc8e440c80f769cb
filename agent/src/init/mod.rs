//! The agent as PID 1 of the ramdisk.
//!
//! [`run_as_init`] mounts the API filesystems, puts logging on the console, loads the
//! modules the hardware asks for (coldplug), then runs the agent in a child process and
//! supervises it: PID 1 itself only reaps processes and restarts the agent after a pause
//! when it fails, exits or panics. PID 1 never exits (that would panic the kernel).
//! Each boot step is logged with its duration. See docs/init.md for the kernel parameters.

pub mod coldplug;
pub mod console;
pub mod modules;
pub mod mounts;
pub mod reaper;
pub mod shutdown;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::unistd::{fork, ForkResult, Pid};

pub use shutdown::{power_off, reboot, PowerAction, PowerError};

use coldplug::{ColdplugOptions, KernelModuleLoader, MonotonicClock, SysfsDevices};
use reaper::{AgentEnd, ChildExit, Waitpid};

/// Set in the agent process forked by PID 1.
static AGENT_UNDER_INIT: AtomicBool = AtomicBool::new(false);

/// Whether this process is the ramdisk's init or the agent it supervises (as opposed to an
/// agent started by hand on a running system). Power actions and "kill everything" are
/// only ours to take when this is true.
pub fn running_as_init() -> bool {
    std::process::id() == 1 || AGENT_UNDER_INIT.load(Ordering::Relaxed)
}

/// What PID 1 does; defaults are for the ramdisk, the kernel command line overrides them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOptions {
    /// `/lib/modules/$(uname -r)` when None.
    pub module_dir: Option<PathBuf>,
    pub coldplug: ColdplugOptions,
    /// Pause before the agent is started again after it ended (`rivet.retry_delay=SECONDS`).
    pub retry_delay: Duration,
    /// The device stdin/stdout/stderr are attached to once /dev is mounted; None keeps the
    /// inherited ones (init started by a container runtime, or a test).
    pub console: Option<PathBuf>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            module_dir: None,
            coldplug: ColdplugOptions::default(),
            retry_delay: Duration::from_secs(30),
            console: Some(PathBuf::from("/dev/console")),
        }
    }
}

impl InitOptions {
    /// Applies `rivet.modules=a,b` (added to the always-load list) and
    /// `rivet.retry_delay=SECONDS` from the kernel command line. Bad values are reported
    /// and ignored.
    pub fn apply_cmdline(&mut self, cmdline: &str) {
        for word in cmdline.split_whitespace() {
            match word.split_once('=') {
                Some(("rivet.modules", list)) => self.coldplug.always_load.extend(
                    list.split(',')
                        .filter(|m| !m.is_empty())
                        .map(str::to_string),
                ),
                Some(("rivet.retry_delay", secs)) => match secs.parse::<u64>() {
                    Ok(secs) => self.retry_delay = Duration::from_secs(secs),
                    Err(e) => tracing::warn!("ignoring rivet.retry_delay={secs:?}: {e}"),
                },
                _ => {}
            }
        }
    }
}

/// Boots the ramdisk and runs the agent forever; see the module docs. `make_agent` is called
/// in a fresh agent process (inside a new multi-threaded tokio runtime) for each attempt.
pub fn run_as_init<F, Fut>(make_agent: F) -> !
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    run_as_init_with(InitOptions::default(), make_agent)
}

/// [`run_as_init`] with options other than the defaults (the kernel command line still
/// overrides them).
pub fn run_as_init_with<F, Fut>(mut options: InitOptions, make_agent: F) -> !
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    std::panic::set_hook(Box::new(panic_hook));
    boot(&mut options);
    let clock = MonotonicClock::new();
    let mut attempt: u32 = 0;
    loop {
        attempt += 1;
        let started = Instant::now();
        let end = match spawn_agent(&make_agent) {
            Ok(pid) => {
                tracing::info!("agent started as process {pid} (attempt {attempt})");
                let (end, reaped) = reaper::wait_for_agent(&mut Waitpid, pid);
                if reaped > 0 {
                    tracing::debug!("reaped {reaped} orphaned processes");
                }
                describe_end(end)
            }
            Err(e) => format!("could not start the agent process: fork: {e}"),
        };
        console::banner(&[
            format!(
                "the agent {end} after {:.1} s (attempt {attempt}).",
                started.elapsed().as_secs_f64()
            ),
            format!(
                "Restarting it in {} s. The machine stays up; see the messages above.",
                options.retry_delay.as_secs()
            ),
        ]);
        reaper::reap_for(
            &mut Waitpid,
            &clock,
            options.retry_delay,
            Duration::from_millis(200),
        );
    }
}

fn describe_end(end: AgentEnd) -> String {
    match end {
        AgentEnd::Ended(ChildExit::Exited { code: 0, .. }) => "stopped".to_string(),
        AgentEnd::Ended(exit) => exit.to_string(),
        AgentEnd::Lost => "process vanished".to_string(),
    }
}

/// The boot steps, each timed and logged. Nothing here is fatal: a failed step is reported
/// and the agent decides what it can still do.
fn boot(options: &mut InitOptions) {
    let started = Instant::now();
    let mounts = mounts::mount_all(&mounts::RealMountOps, &mounts::boot_mounts());
    let mount_time = started.elapsed();
    let console_result = options.console.as_deref().map(console::attach_console);
    console::init_logging();
    tracing::info!(
        "rivet-agent {} starting as init (pid {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    for (spec, outcome) in &mounts {
        match outcome {
            mounts::MountOutcome::Mounted => tracing::info!("mounted {}", spec.target),
            mounts::MountOutcome::AlreadyMounted => {
                tracing::info!("{} was already mounted", spec.target)
            }
            mounts::MountOutcome::NotApplicable(why) => {
                tracing::debug!("{} not mounted: {why}", spec.target)
            }
            mounts::MountOutcome::Failed(why) => tracing::error!("{why}"),
        }
    }
    tracing::info!("boot step mounts: done in {} ms", mount_time.as_millis());
    if let Some(Err(e)) = console_result {
        tracing::warn!("attaching the console to stdin/stdout/stderr: {e}");
    }

    let step = Instant::now();
    match std::fs::read_to_string("/proc/cmdline") {
        Ok(cmdline) => options.apply_cmdline(&cmdline),
        Err(e) => tracing::warn!("reading /proc/cmdline: {e}"),
    }
    run_coldplug(options);
    tracing::info!(
        "boot step coldplug: done in {} ms",
        step.elapsed().as_millis()
    );
    tracing::info!(
        "boot steps done in {} ms ({} ms since the kernel started)",
        started.elapsed().as_millis(),
        console::since_boot().as_millis()
    );
}

/// `/lib/modules/$(uname -r)`.
fn default_module_dir() -> Result<PathBuf, String> {
    match std::fs::read_to_string("/proc/sys/kernel/osrelease") {
        Ok(release) => Ok(PathBuf::from("/lib/modules").join(release.trim())),
        Err(e) => Err(format!("reading /proc/sys/kernel/osrelease: {e}")),
    }
}

/// Loads kernel modules by name or alias from the ramdisk's module directory (with their
/// dependencies): filesystems and link types no device asks for (`isofs`, `vfat`,
/// `bonding`, `8021q`). Outside the ramdisk, or without a module index, it does nothing:
/// the kernel has them built in or they are not there, and the caller's next step says so.
pub fn load_modules(names: &[&str], wanted_by: &str) {
    if names.is_empty() || !running_as_init() {
        return;
    }
    let index = match default_module_dir()
        .and_then(|dir| modules::ModuleIndex::load(&dir).map_err(|e| e.to_string()))
    {
        Ok(index) => index,
        Err(e) => {
            tracing::debug!("not loading {names:?} for {wanted_by}: {e}");
            return;
        }
    };
    let report = coldplug::load_named(&index, &KernelModuleLoader, names, wanted_by);
    let loaded: Vec<&str> = report
        .modules
        .iter()
        .filter(|(_, outcome)| outcome.is_present())
        .map(|(name, _)| name.as_str())
        .collect();
    tracing::debug!("modules for {wanted_by}: {loaded:?} present");
}

fn run_coldplug(options: &InitOptions) {
    let dir = match &options.module_dir {
        Some(dir) => dir.clone(),
        None => match default_module_dir() {
            Ok(dir) => dir,
            Err(e) => {
                tracing::warn!("coldplug skipped: {e}");
                return;
            }
        },
    };
    let index = match modules::ModuleIndex::load(&dir) {
        Ok(index) => index,
        Err(e) => {
            tracing::warn!("coldplug skipped (only built-in drivers are available): {e}");
            return;
        }
    };
    let report = coldplug::coldplug(
        &index,
        &SysfsDevices::default(),
        &KernelModuleLoader,
        &MonotonicClock::new(),
        &options.coldplug,
    );
    let loaded = report.modules.values().filter(|o| o.is_present()).count();
    tracing::info!(
        "coldplug: {} devices, {loaded} of {} modules tried are loaded, {} scans",
        report.devices_seen,
        report.modules.len(),
        report.scans
    );
}

/// Forks the agent process.
fn spawn_agent<F, Fut>(make_agent: &F) -> nix::Result<Pid>
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    // SAFETY: PID 1 never starts a thread (mounting, coldplug, waiting and sleeping all run
    // on its only thread, and no async runtime exists in it), so at fork time no other
    // thread can hold a lock or be inside the allocator: the child is a complete copy of a
    // single-threaded process and may allocate and start threads.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            AGENT_UNDER_INIT.store(true, Ordering::Relaxed);
            // Never unwind back into PID 1's loop from the child.
            let code =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_agent(make_agent)))
                    .unwrap_or(101);
            std::process::exit(code)
        }
    }
}

/// Runs one agent attempt in this (child) process; returns its exit status.
fn run_agent<F, Fut>(make_agent: &F) -> i32
where
    F: Fn() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            console::banner(&[format!("cannot start the async runtime: {e}")]);
            return 70;
        }
    };
    let result = runtime.block_on(make_agent());
    runtime.shutdown_timeout(Duration::from_secs(2));
    match result {
        Ok(()) => 0,
        Err(e) => {
            let mut lines = vec![format!("agent failed: {e}")];
            lines.extend(
                e.chain()
                    .skip(1)
                    .map(|cause| format!("  caused by: {cause}")),
            );
            console::banner(&lines);
            1
        }
    }
}

/// In the agent process: print the panic clearly; the process then ends (abort in release
/// builds) and PID 1 restarts it. In PID 1 itself: print, wait, and re-execute init, since
/// returning would end PID 1 and panic the kernel.
fn panic_hook(info: &std::panic::PanicHookInfo<'_>) {
    let location = info
        .location()
        .map(|l| format!(" at {}:{}", l.file(), l.line()))
        .unwrap_or_default();
    let message = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string());
    if std::process::id() != 1 {
        console::banner(&[
            format!("the agent panicked{location}: {message}"),
            "PID 1 will restart it.".to_string(),
        ]);
        return;
    }
    console::banner(&[
        format!("init panicked{location}: {message}"),
        "Starting init again in 30 s.".to_string(),
    ]);
    std::thread::sleep(Duration::from_secs(30));
    let error = reexec_self();
    console::banner(&[format!(
        "cannot restart init ({error}); the machine stays up and idle."
    )]);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Replaces PID 1's program with a fresh copy of itself; returns only on failure.
fn reexec_self() -> nix::Error {
    let args: Vec<std::ffi::CString> = std::env::args_os()
        .filter_map(|a| std::ffi::CString::new(a.into_encoded_bytes()).ok())
        .collect();
    match nix::unistd::execv(c"/proc/self/exe", &args) {
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_sets_modules_and_retry_delay() {
        let mut options = InitOptions::default();
        options.apply_cmdline(
            "BOOT_IMAGE=/vmlinuz console=ttyS0 rivet.modules=e1000,,nvme rivet.retry_delay=5 \
             rivet.modules=isofs quiet",
        );
        assert_eq!(options.coldplug.always_load, ["e1000", "nvme", "isofs"]);
        assert_eq!(options.retry_delay, Duration::from_secs(5));
        options.apply_cmdline("rivet.retry_delay=soon");
        assert_eq!(options.retry_delay, Duration::from_secs(5));
    }

    #[test]
    fn ends_are_described() {
        let pid = Pid::from_raw(5);
        assert_eq!(
            describe_end(AgentEnd::Ended(ChildExit::Exited { pid, code: 0 })),
            "stopped"
        );
        assert_eq!(
            describe_end(AgentEnd::Ended(ChildExit::Exited { pid, code: 1 })),
            "exited with status 1"
        );
        assert_eq!(describe_end(AgentEnd::Lost), "process vanished");
    }

    #[test]
    fn not_init_in_tests() {
        assert!(!running_as_init());
    }
}
