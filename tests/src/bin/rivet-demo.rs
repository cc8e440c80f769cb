//! The README's main job: a real Ironic 39 drives rivet-agent through lookup, a TLS heartbeat
//! and a manual clean, and every stage is printed as it happens.
//!
//! The agent runs on this host as a normal process and only runs its harmless `sleep` step;
//! booting the ISO in a VM joins this job when the image builder lands.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rivet_tests::agent::{agent_binary, agent_interfaces, spawn_agent};
use rivet_tests::ironic::{node_summary, RealIronic};
use rivet_tests::net::free_loopback_port;
use serde_json::{json, Value};

const TIMEOUT: Duration = Duration::from_secs(180);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if let Err(err) = demo().await {
        eprintln!("rivet-demo: FAILED: {err:#}");
        std::process::exit(1);
    }
}

fn say(started: Instant, text: impl AsRef<str>) {
    println!(
        "[{:6.1}s] {}",
        started.elapsed().as_secs_f64(),
        text.as_ref()
    );
}

async fn demo() -> Result<()> {
    let started = Instant::now();
    let binary = agent_binary()?;
    let macs: Vec<String> = agent_interfaces(&binary)?
        .into_iter()
        .map(|i| i.mac_address)
        .collect();
    if macs.is_empty() {
        bail!("rivet-agent found no network interface with a MAC address on this machine");
    }
    say(
        started,
        format!(
            "agent binary {} sees MACs {}",
            binary.display(),
            macs.join(", ")
        ),
    );

    let ironic = RealIronic::start().await?;
    say(
        started,
        format!(
            "real Ironic 39.0.0 is up at {} (TLS required for agent callbacks)",
            ironic.url()
        ),
    );
    let node = ironic.create_node("rivet-demo").await?;
    let uuid = node["uuid"]
        .as_str()
        .context("node without uuid")?
        .to_owned();
    for mac in &macs {
        ironic.create_port(&uuid, mac).await?;
    }
    ironic.manage(&uuid).await?;
    ironic
        .wait_for_provision_state(&uuid, "manageable", TIMEOUT)
        .await?;
    say(
        started,
        format!("node {uuid} enrolled with its ports and manageable"),
    );

    let steps = json!([{"interface": "deploy", "step": "sleep", "args": {"seconds": 2}}]);
    ironic.clean(&uuid, steps).await?;
    ironic
        .wait_for_provision_state(&uuid, "clean wait", TIMEOUT)
        .await?;
    say(
        started,
        "manual clean requested; the conductor waits for the agent",
    );

    let dir = tempfile::Builder::new().prefix("rivet-demo-").tempdir()?;
    let port = free_loopback_port()?;
    let settings = [
        ("ipa-api-url", ironic.url().to_owned()),
        ("ipa-listen-host", Ipv4Addr::LOCALHOST.to_string()),
        ("ipa-listen-port", port.to_string()),
        ("ipa-advertise-host", Ipv4Addr::LOCALHOST.to_string()),
        ("ipa-advertise-port", port.to_string()),
        (
            "rivet-run-dir",
            dir.path().join("run").display().to_string(),
        ),
        ("ipa-insecure", "1".to_owned()),
    ];
    let mut agent = spawn_agent(&binary, &settings, &dir.path().join("agent.log"))?;
    say(
        started,
        format!("rivet-agent started (log: {})", agent.log_path().display()),
    );

    let mut reported_url = false;
    let mut last_state = String::new();
    let done: Value = ironic
        .watch_node(&uuid, TIMEOUT, "the end of cleaning", |node| {
            agent.ensure_running()?;
            if let (false, Some(url)) = (reported_url, node["driver_internal_info"]["agent_url"].as_str()) {
                say(started, format!("heartbeat accepted: agent_url = {url}, certificate pinned by the conductor"));
                reported_url = true;
            }
            let state = node["provision_state"].as_str().unwrap_or("?").to_owned();
            if state != last_state {
                say(started, format!("node provision state: {state}"));
                last_state = state;
            }
            match node["provision_state"].as_str() {
                Some("manageable") => Ok(Some(node.clone())),
                Some("clean failed") => bail!("cleaning failed: {}", node_summary(node)),
                _ => Ok(None),
            }
        })
        .await?;
    if !done["last_error"].is_null() {
        bail!("cleaning ended with an error: {}", node_summary(&done));
    }
    let log = ironic.log_text()?;
    if let Some(line) = log
        .lines()
        .find(|l| l.contains(&format!("Refreshed agent clean step cache for node {uuid}")))
    {
        let count = line.matches("'step': ").count();
        say(
            started,
            format!("the conductor fetched {count} clean steps from the agent"),
        );
    }
    say(
        started,
        "done: lookup -> token -> TLS heartbeat -> clean step run by the agent -> manageable",
    );
    Ok(())
}
