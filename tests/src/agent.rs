//! The `rivet-agent` binary as tests run it: located next to the test executable, started
//! as a normal process with `--set` overrides of its settings.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};
use serde::Deserialize;

use crate::process::LoggedChild;

/// `target/<profile>/rivet-agent`, found from the running executable: a test
/// (`target/<profile>/deps/<test>-<hash>`) or a binary of this crate (`target/<profile>/<bin>`).
/// Cargo does not build other packages' binaries for a test run: `ci/test` runs
/// `cargo build --workspace --bins` first.
pub fn agent_binary() -> Result<PathBuf> {
    profile_binary("rivet-agent", "cargo build -p rivet-agent")
}

/// Binary `name` of the running executable's profile (see [`agent_binary`]); `build` is the
/// command that builds it, for the error.
pub fn profile_binary(name: &str, build: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the running executable")?;
    let exe_dir = exe
        .parent()
        .with_context(|| format!("executable {} has no directory", exe.display()))?;
    let profile_dir = if exe_dir.file_name().is_some_and(|name| name == "deps") {
        exe_dir.parent().unwrap_or(exe_dir)
    } else {
        exe_dir
    };
    let binary = profile_dir.join(name);
    ensure!(
        binary.is_file(),
        "{name} is not built: {} does not exist. Build it first with `{build}` (ci/test \
         builds every binary before the tests)",
        binary.display()
    );
    Ok(binary)
}

/// One entry of `rivet-agent interfaces`: an interface whose MAC the agent sends at lookup.
#[derive(Debug, Clone, Deserialize)]
pub struct AgentInterface {
    pub name: String,
    pub mac_address: String,
}

/// Runs `rivet-agent interfaces` and parses its JSON list.
pub fn agent_interfaces(binary: &Path) -> Result<Vec<AgentInterface>> {
    let output = Command::new(binary)
        .arg("interfaces")
        .output()
        .with_context(|| format!("running {} interfaces", binary.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        output.status.success(),
        "`{} interfaces` failed with {}:\nstdout: {stdout}\nstderr: {}",
        binary.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(&stdout).with_context(|| {
        format!(
            "parsing the output of `{} interfaces` as a JSON list of {{name, mac_address}}: {stdout:?}",
            binary.display()
        )
    })
}

/// Starts `rivet-agent run --set KEY=VALUE ...` (kernel-parameter names), output to `log`.
pub fn spawn_agent(binary: &Path, settings: &[(&str, String)], log: &Path) -> Result<LoggedChild> {
    let mut command = Command::new(binary);
    command.arg("run");
    for (key, value) in settings {
        command.arg("--set").arg(format!("{key}={value}"));
    }
    LoggedChild::spawn("rivet-agent", command, log)
}
