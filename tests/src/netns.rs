//! A network namespace of the test's own: a bridge with an address and tap devices for VMs.
//! Nothing outside the namespace is touched; dropping [`TestNet`] kills every process still
//! in it and deletes it.
//!
//! ```text
//!  netns rivet-<pid>-<n>
//!  ┌──────────────────────────────────────────────┐
//!  │  lo (up)                                     │
//!  │  br0 10.77.0.1/24 ── tap0, tap1, ...          │
//!  │   ↑ dnsmasq, Ironic       ↑ QEMU NICs        │
//!  └──────────────────────────────────────────────┘
//! ```

use std::fs::File;
use std::future::Future;
use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The bridge every tap is attached to, inside the namespace.
pub const BRIDGE: &str = "br0";
/// Namespaces this harness creates are named `<PREFIX><pid>-<n>`.
const PREFIX: &str = "rivet-";
/// How long [`TestNet`]'s drop waits for killed processes to leave the namespace.
const KILL_WAIT: Duration = Duration::from_secs(5);

static NEXT_INDEX: AtomicU32 = AtomicU32::new(0);

/// What to build: the bridge's address (the namespace's "host" side, a /24 by default)
/// and how many tap devices.
#[derive(Debug, Clone)]
pub struct TestNetConfig {
    pub bridge_address: Ipv4Addr,
    pub prefix_len: u8,
    pub taps: usize,
}

impl Default for TestNetConfig {
    fn default() -> Self {
        TestNetConfig {
            bridge_address: Ipv4Addr::new(10, 77, 0, 1),
            prefix_len: 24,
            taps: 1,
        }
    }
}

/// A live namespace `rivet-<pid>-<n>` with `lo` up, bridge [`BRIDGE`] holding
/// `bridge_address`, and taps `tap0..` enslaved to it and up.
#[derive(Debug)]
pub struct TestNet {
    name: String,
    config: TestNetConfig,
    taps: Vec<String>,
}

impl TestNet {
    /// Creates the namespace and its devices. First removes namespaces that earlier runs of
    /// this harness left behind (named `rivet-<pid>-<n>` for a pid that no longer exists).
    /// Needs root and `ip` (iproute2).
    pub fn create(config: TestNetConfig) -> Result<TestNet> {
        ensure!(
            nix::unistd::geteuid().is_root(),
            "network namespaces need root: run the end-to-end tests as root"
        );
        ensure!(
            (8..=30).contains(&config.prefix_len),
            "prefix length /{} out of the supported range /8../30",
            config.prefix_len
        );
        remove_stale_namespaces()?;
        let index = NEXT_INDEX.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{index}", std::process::id());
        ip(&["netns", "add", &name]).context(
            "creating a network namespace (is iproute2 installed? ci/setup installs it)",
        )?;
        // From here on, Drop deletes the namespace whatever fails next.
        let mut net = TestNet {
            name,
            config,
            taps: Vec::new(),
        };
        net.build_devices()
            .with_context(|| format!("setting up network namespace {}", net.name))?;
        Ok(net)
    }

    fn build_devices(&mut self) -> Result<()> {
        let ns = self.name.clone();
        let address = format!("{}/{}", self.config.bridge_address, self.config.prefix_len);
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &ns,
            "link",
            "add",
            BRIDGE,
            "type",
            "bridge",
            "forward_delay",
            "0",
        ])?;
        ip(&["-n", &ns, "addr", "add", &address, "dev", BRIDGE])?;
        ip(&["-n", &ns, "link", "set", BRIDGE, "up"])?;
        for i in 0..self.config.taps {
            let tap = format!("tap{i}");
            ip(&["-n", &ns, "tuntap", "add", "dev", &tap, "mode", "tap"])
                .context("creating a tap device (needs /dev/net/tun)")?;
            ip(&["-n", &ns, "link", "set", &tap, "master", BRIDGE, "up"])?;
            self.taps.push(tap);
        }
        Ok(())
    }

    /// `rivet-<pid>-<n>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The bridge's address: where servers in the namespace listen for VMs.
    pub fn bridge_address(&self) -> Ipv4Addr {
        self.config.bridge_address
    }

    pub fn prefix_len(&self) -> u8 {
        self.config.prefix_len
    }

    /// The subnet's netmask, e.g. 255.255.255.0 for /24.
    pub fn netmask(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::MAX << (32 - u32::from(self.config.prefix_len)))
    }

    /// Address `host` (counted from the subnet's network address) in the bridge's subnet.
    pub fn subnet_host(&self, host: u32) -> Ipv4Addr {
        let network = u32::from(self.config.bridge_address) & u32::from(self.netmask());
        Ipv4Addr::from(network | (host & !u32::from(self.netmask())))
    }

    /// The tap devices, `tap0..`, attached to the bridge.
    pub fn taps(&self) -> &[String] {
        &self.taps
    }

    /// A command running `program` inside the namespace (`ip netns exec <name> program`).
    /// The child gets SIGKILL when the thread that spawns it ends (PR_SET_PDEATHSIG), so a
    /// test killed by its runner leaves no VM running: spawn it from the thread that owns it.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe and touches no memory of the
        // parent; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        command
    }

    /// Runs `future` to completion on a new thread that has entered the namespace, with a
    /// current-thread Tokio runtime: every socket it opens is inside the namespace (the test
    /// process itself stays outside). A panic in `future` is resumed on the caller's thread.
    pub fn block_on<F>(&self, future: F) -> Result<F::Output>
    where
        F: Future + Send,
        F::Output: Send,
    {
        let path = Path::new("/run/netns").join(&self.name);
        let handle = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
        std::thread::scope(|scope| {
            let thread = scope.spawn(move || -> Result<F::Output> {
                setns(&handle, CloneFlags::CLONE_NEWNET)
                    .with_context(|| format!("entering network namespace {}", path.display()))?;
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .context("building a Tokio runtime inside the namespace")?;
                Ok(runtime.block_on(future))
            });
            match thread.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }

    /// Process ids of every process inside the namespace.
    pub fn pids(&self) -> Result<Vec<i32>> {
        namespace_pids(&self.name)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        if let Err(e) = remove_namespace(&self.name) {
            eprintln!("removing network namespace {}: {e:#}", self.name);
        }
    }
}

/// Kills every process in namespace `name`, waits for them to go, and deletes it.
fn remove_namespace(name: &str) -> Result<()> {
    let deadline = Instant::now() + KILL_WAIT;
    loop {
        let pids = namespace_pids(name)?;
        if pids.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            bail!("processes {pids:?} are still in the namespace after SIGKILL");
        }
        for pid in pids {
            match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => bail!("killing process {pid} in namespace {name}: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    ip(&["netns", "del", name])
}

fn namespace_pids(name: &str) -> Result<Vec<i32>> {
    let output = Command::new("ip")
        .args(["netns", "pids", name])
        .output()
        .with_context(|| format!("running ip netns pids {name}"))?;
    ensure!(
        output.status.success(),
        "ip netns pids {name} failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(|pid| {
            pid.parse()
                .with_context(|| format!("ip netns pids {name} printed {pid:?}"))
        })
        .collect()
}

/// Deletes namespaces named `rivet-<pid>-<n>` whose creating process is gone: leftovers of
/// a test run that was killed before its drops ran. Others' namespaces never match.
fn remove_stale_namespaces() -> Result<()> {
    let dir = Path::new("/run/netns");
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = stale_owner(&name) else {
            continue;
        };
        if Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        remove_namespace(&name).with_context(|| {
            format!("removing the stale namespace {name} of dead process {pid}")
        })?;
    }
    Ok(())
}

/// The pid in a name of the form `rivet-<pid>-<n>`, if it has that form.
fn stale_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PREFIX)?;
    let (pid, index) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(pid) && digits(index))
        .then(|| pid.parse().ok())
        .flatten()
}

/// Runs `ip ARGS...`; a failure carries its stderr.
fn ip(args: &[&str]) -> Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| format!("running ip {}", args.join(" ")))?;
    ensure!(
        output.status.success(),
        "ip {} failed with {}: {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_of_this_harness_are_stale_candidates() {
        assert_eq!(stale_owner("rivet-1234-0"), Some(1234));
        assert_eq!(stale_owner("rivet-1-17"), Some(1));
        assert_eq!(stale_owner("rivet-srv-1234"), None);
        assert_eq!(stale_owner("rivet-1234"), None);
        assert_eq!(stale_owner("rivet-12a-0"), None);
        assert_eq!(stale_owner("other-1234-0"), None);
        assert_eq!(stale_owner("rivet--0"), None);
    }
}
