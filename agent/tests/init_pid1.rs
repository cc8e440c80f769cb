//! `run_as_init` for real, as PID 1 of a new PID and mount namespace, chrooted into a
//! directory holding only this binary and its libraries (so no disk of the machine is visible
//! to the shutdown path, and /lib/modules is absent: coldplug is skipped).
//!
//! The agent it supervises fails on its first attempt (leaving an orphan behind), panics on
//! its second, and on its third checks that the orphan was reaped and powers off, which in
//! a PID namespace ends its init with SIGINT.
//!
//! This file is its own harness (`harness = false`): the same binary is the test driver,
//! the init (`--as-init`) and the orphan maker (`--orphan-maker`). Needs root, `unshare`
//! (util-linux) and `ldd`: missing ones fail the test.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use rivet_agent::init::{self, InitOptions};

const NAME: &str = "init_as_pid1_in_namespaces";
/// Guards against a hang only; the run normally takes a few seconds.
const HANG_GUARD: Duration = Duration::from_secs(120);

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("--as-init") => as_init(),
        Some("--orphan-maker") => orphan_maker(),
        _ => harness(&args[1..]),
    }
}

/// A minimal libtest look-alike: honours name filters and `--list`, prints libtest's lines.
fn harness(args: &[String]) {
    if args.iter().any(|a| a == "--list") {
        // nextest lists twice, the second time with `--ignored`: this test is never ignored.
        if !args.iter().any(|a| a == "--ignored") {
            println!("{NAME}: test");
        }
        return;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| NAME.contains(f.as_str())) {
        println!("\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 1 filtered out; finished in 0.00s\n");
        return;
    }
    println!("\nrunning 1 test");
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(driver);
    let secs = started.elapsed().as_secs_f64();
    match outcome {
        Ok(()) => {
            println!("test {NAME} ... ok\n\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in {secs:.2}s\n");
        }
        Err(_) => {
            println!("test {NAME} ... FAILED\n\ntest result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in {secs:.2}s\n");
            std::process::exit(101);
        }
    }
}

fn require_tool(name: &str, arg: &str) {
    let found = Command::new(name)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "this test needs `{name}` on PATH; it is missing");
}

/// Copies this binary to `root/init` and the shared libraries `ldd` lists to the same paths
/// under `root`.
fn build_root(root: &Path) {
    let exe = std::env::current_exe().expect("current_exe");
    std::fs::copy(&exe, root.join("init")).expect("copying the test binary");
    let ldd = Command::new("ldd").arg(&exe).output().expect("running ldd");
    assert!(ldd.status.success(), "ldd {}", exe.display());
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux... (0x...)"
        let Some(path) = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from)
        else {
            continue;
        };
        let inside = root.join(path.strip_prefix("/").expect("absolute"));
        std::fs::create_dir_all(inside.parent().expect("has a parent")).expect("mkdir");
        std::fs::copy(&path, &inside).unwrap_or_else(|e| panic!("copying {}: {e}", path.display()));
    }
}

fn driver() {
    require_tool("unshare", "--version");
    require_tool("ldd", "--version");
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test creates PID and mount namespaces and needs root"
    );
    let root = tempfile::tempdir().expect("tempdir");
    build_root(root.path());
    let mut child = Command::new("unshare")
        .args(["--pid", "--fork", "--mount", "--propagation", "private"])
        .arg(format!("--root={}", root.path().display()))
        .args(["/init", "--as-init"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting unshare");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for unshare") {
            break status;
        }
        if started.elapsed() > HANG_GUARD {
            let _ = child.kill();
            let _ = child.wait();
            panic!("init did not power off within {HANG_GUARD:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let console = reader.join().expect("reader thread");
    println!("---- console of the PID 1 under test ----\n{console}----");

    // Power-off in a PID namespace ends its init with SIGINT; unshare passes that on.
    assert_eq!(status.signal(), Some(libc::SIGINT), "{status:?}");
    let expect_in_order = [
        "starting as init (pid 1)",
        "mounted /proc",
        "mounted /run",
        "mounted /tmp",
        "boot step mounts: done in",
        "coldplug skipped",
        "boot step coldplug: done in",
        "agent started as process",
        "agent failed: probe attempt 1",
        "caused by: simulated failure",
        "the agent exited with status 1 after",
        "Restarting it in 1 s.",
        "the agent panicked",
        "simulated panic in attempt 2",
        "the agent exited with status 101 after",
        "probe: running_as_init=true",
        "probe: zombies=0",
        "probe: nothing to unmount",
        "power off: stopping processes",
    ];
    let mut from = 0;
    for expected in expect_in_order {
        match console[from..].find(expected) {
            Some(at) => from += at + expected.len(),
            None => panic!("{expected:?} missing (or out of order) on the console"),
        }
    }
    let orphan = console
        .lines()
        .find_map(|l| l.strip_prefix("probe: orphan pid "))
        .expect("the orphan maker reported its orphan");
    assert!(
        console.contains(&format!("probe: orphan {orphan} gone")),
        "orphan {orphan} was not reaped"
    );
}

/// PID 1 under test: the real `run_as_init`, with a short retry delay and the inherited
/// stdio as console (so the driver reads it).
fn as_init() {
    let options = InitOptions {
        retry_delay: Duration::from_secs(1),
        console: None,
        ..InitOptions::default()
    };
    init::run_as_init_with(options, || async { probe_attempt().await })
}

async fn probe_attempt() -> anyhow::Result<()> {
    let counter = Path::new("/run/probe-attempts");
    let attempt = std::fs::read_to_string(counter)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0)
        + 1;
    std::fs::write(counter, attempt.to_string()).context("writing the attempt counter")?;
    match attempt {
        1 => {
            let status = tokio::process::Command::new("/init")
                .arg("--orphan-maker")
                .status()
                .await
                .context("running the orphan maker")?;
            anyhow::ensure!(status.success(), "orphan maker: {status}");
            Err(anyhow::anyhow!("simulated failure")).context("probe attempt 1")
        }
        2 => panic!("simulated panic in attempt 2"),
        _ => {
            eprintln!("probe: running_as_init={}", init::running_as_init());
            let orphan = std::fs::read_to_string("/run/probe-orphan").context("orphan pid")?;
            let orphan = orphan.trim();
            if !Path::new("/proc").join(orphan).exists() {
                eprintln!("probe: orphan {orphan} gone");
            }
            eprintln!("probe: zombies={}", zombies());
            // Safety net for the machine running the test: never let the shutdown path see
            // a real filesystem.
            let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
            let plan = init::mounts::unmount_plan(&mountinfo);
            anyhow::ensure!(
                plan.is_empty(),
                "refusing to power off, would unmount {plan:?}"
            );
            eprintln!("probe: nothing to unmount");
            let error = init::power_off().expect_err("power_off returns only on failure");
            Err(error).context("probe attempt 3")
        }
    }
}

/// Processes in state Z (zombies) in this PID namespace.
fn zombies() -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return usize::MAX;
    };
    entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            stat.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .count()
}

/// Forks a child that outlives us by a moment, so it is re-parented to PID 1 and must be
/// reaped there.
fn orphan_maker() {
    // SAFETY: this process is single-threaded (it runs nothing else before this point), so
    // the child may allocate and use std freely.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            std::fs::write("/run/probe-orphan", child.to_string()).expect("record the orphan");
            eprintln!("probe: orphan pid {child}");
        }
        Ok(nix::unistd::ForkResult::Child) => {
            std::thread::sleep(Duration::from_millis(300));
        }
        Err(e) => panic!("fork: {e}"),
    }
}
