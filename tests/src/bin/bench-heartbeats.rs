//! Heartbeat load on rivet-server and on a real Ironic 39, on this machine, in one run
//! (ci/bench/heartbeats). Both get the same load generator (`rivet-server loadgen`), plain
//! HTTP on loopback, every agent heartbeating once per interval:
//!
//! 1. rivet-server (release build) with a fresh database: `--agents` agents (default 10,000)
//!    enrolled, looked up, heartbeating for `--duration`; acknowledged heartbeats are checked
//!    against what the database stored afterwards (lost must be 0).
//! 2. Ironic 39 (SQLite, the combined process, `[deploy] fast_track = true` so nodes in
//!    `enroll` may look up and heartbeat): `--ironic-agents` agents (default 500; enrolling
//!    and looking up 10,000 nodes in Ironic alone takes far longer than the measurement),
//!    the same interval and duration. Ironic answers 202 before its conductor processes a
//!    heartbeat, so "lost" is not measured there.
//!
//! Prints both summaries and the ratio of sustained heartbeats per second, and writes them as
//! JSON to `--out` when given.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rivet_tests::ironic::RealIronic;
use rivet_tests::net::free_loopback_port;
use rivet_tests::process::LoggedChild;
use serde_json::{json, Value};

struct Options {
    agents: usize,
    ironic_agents: usize,
    interval: String,
    duration: String,
    out: Option<PathBuf>,
}

fn options() -> Result<Options> {
    let mut options = Options {
        agents: 10_000,
        ironic_agents: 500,
        interval: "1s".into(),
        duration: "60s".into(),
        out: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--agents" => options.agents = value()?.parse().context("--agents")?,
            "--ironic-agents" => {
                options.ironic_agents = value()?.parse().context("--ironic-agents")?
            }
            "--interval" => options.interval = value()?,
            "--duration" => options.duration = value()?,
            "--out" => options.out = Some(PathBuf::from(value()?)),
            other => bail!(
                "unknown argument {other}; use --agents N --ironic-agents N --interval 1s \
                 --duration 60s --out FILE"
            ),
        }
    }
    Ok(options)
}

/// The release rivet-server: `$RIVET_SERVER_BIN`, else `<checkout>/target/release/rivet-server`.
fn server_binary() -> Result<PathBuf> {
    let path = std::env::var_os("RIVET_SERVER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| rivet_tests::workspace_root().join("target/release/rivet-server"));
    ensure!(
        path.is_file(),
        "no rivet-server binary at {}: run `cargo build --release -p rivet-server` (ci/bench/heartbeats does)",
        path.display()
    );
    Ok(path)
}

/// Runs `rivet-server loadgen` with `args` and returns its JSON summary.
fn loadgen(binary: &PathBuf, args: &[String]) -> Result<Value> {
    let output = Command::new(binary)
        .arg("loadgen")
        .args(args)
        .arg("--json")
        .env("RUST_LOG", "warn")
        .output()
        .context("running rivet-server loadgen")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let Some(line) = stdout.lines().rev().find(|l| l.starts_with('{')) else {
        bail!(
            "loadgen printed no summary ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    };
    serde_json::from_str(line).with_context(|| format!("parsing the loadgen summary: {line}"))
}

async fn wait_listening(port: u16, child: &mut LoggedChild) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        child.ensure_running()?;
        ensure!(
            Instant::now() < deadline,
            "rivet-server did not listen within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn common_args(url: &str, agents: usize, options: &Options) -> Vec<String> {
    [
        "--url",
        url,
        "--agents",
        &agents.to_string(),
        "--interval",
        &options.interval,
        "--duration",
        &options.duration,
        "--enroll",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn describe(name: &str, summary: &Value) -> String {
    let latency = &summary["latency_ms"];
    format!(
        "{name:<13} agents {:>6}  heartbeats/s {:>8.1}  acknowledged {:>7}  failed {:>6}  \
         p50 {:>7.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  lost {}",
        summary["agents"],
        summary["heartbeats_per_s"].as_f64().unwrap_or(0.0),
        summary["heartbeats_acked"],
        summary["heartbeats_failed"],
        latency["p50"].as_f64().unwrap_or(0.0),
        latency["p99"].as_f64().unwrap_or(0.0),
        latency["max"].as_f64().unwrap_or(0.0),
        match &summary["lost"] {
            Value::Null => "not measured".to_string(),
            lost => lost.to_string(),
        }
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(error) = bench().await {
        eprintln!("bench-heartbeats: FAILED: {error:#}");
        std::process::exit(1);
    }
}

async fn bench() -> Result<()> {
    let options = options()?;
    let binary = server_binary()?;

    let data = tempfile::Builder::new()
        .prefix("rivet-bench-")
        .tempdir()
        .context("creating the server's data directory")?;
    let port = free_loopback_port()?;
    let mut command = Command::new(&binary);
    command
        .args([
            "serve",
            "--no-tls",
            "--allow-insecure-callbacks",
            "--listen",
        ])
        .arg(format!("127.0.0.1:{port}"))
        .arg("--data-dir")
        .arg(data.path())
        .env("RUST_LOG", "warn");
    let mut server = LoggedChild::spawn("rivet-server", command, &data.path().join("server.log"))?;
    wait_listening(port, &mut server).await?;
    println!(
        "rivet-server: {} agents, every {} for {}",
        options.agents, options.interval, options.duration
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut args = common_args(&url, options.agents, &options);
    args.push("--data-dir".into());
    args.push(data.path().display().to_string());
    let rivet = loadgen(&binary, &args)?;
    server.ensure_running()?;
    drop(server);
    let db_size = std::fs::metadata(data.path().join("rivet.db"))
        .map(|m| m.len())
        .unwrap_or(0);

    println!(
        "Ironic 39: {} agents, every {} for {}",
        options.ironic_agents, options.interval, options.duration
    );
    let ironic = RealIronic::start_with(&[("deploy", "fast_track", "true")]).await?;
    let args = [
        common_args(ironic.url(), options.ironic_agents, &options),
        vec!["--target".into(), "ironic".into()],
    ]
    .concat();
    let ironic_summary = loadgen(&binary, &args)?;
    drop(ironic);

    let rate = |s: &Value| s["heartbeats_per_s"].as_f64().unwrap_or(0.0);
    let ratio = rate(&rivet) / rate(&ironic_summary).max(f64::MIN_POSITIVE);
    println!();
    println!("{}", describe("rivet-server", &rivet));
    println!("{}", describe("Ironic 39", &ironic_summary));
    println!("sustained heartbeats/s, rivet-server / Ironic 39: {ratio:.1}x");
    println!(
        "rivet-server database after the run: {:.1} MiB",
        db_size as f64 / 1048576.0
    );
    if let Some(out) = &options.out {
        let report =
            json!({"rivet": rivet, "ironic": ironic_summary, "ratio": ratio, "db_bytes": db_size});
        std::fs::write(out, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    ensure!(
        rivet["lost"] == json!(0),
        "rivet-server lost acknowledged reports: {}",
        rivet["lost"]
    );
    ensure!(
        rivet["lookups_failed"] == json!(0),
        "rivet-server lookups failed: {}",
        rivet["lookups_failed"]
    );
    Ok(())
}
