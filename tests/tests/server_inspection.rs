//! rivet-agent inspected by rivet-server, both real processes on loopback: the agent posts
//! its inventory to `<api_url>/v1/continue_inspection` (collectors and an API URL enable
//! inspection, as in IPA), rivet-server registers the unknown machine (`--auto-register`),
//! answers with its UUID, and the agent then looks the node up by that UUID and heartbeats.
//!
//! Needs `cargo build --workspace --bins` (ci/test does it): the test runs both binaries.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rivet_tests::agent::{agent_binary, agent_interfaces, spawn_agent};
use rivet_tests::net::free_loopback_port;
use rivet_tests::or_panic;
use rivet_tests::server::Server;
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_inspected_by_rivet_server_then_looks_up_and_heartbeats() {
    let agent = or_panic(agent_binary());
    let macs: Vec<String> = or_panic(agent_interfaces(&agent))
        .into_iter()
        .map(|i| i.mac_address)
        .collect();
    assert!(!macs.is_empty(), "this host has no interface with a MAC");
    let server = or_panic(Server::start(&agent).await);
    if let Err(e) = scenario(&server, &agent, &macs).await {
        panic!("{e:#}\nrivet-server log:\n{}", server.log());
    }
}

async fn scenario(server: &Server, agent: &Path, macs: &[String]) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("rivet-agent-")
        .tempdir()
        .context("creating the agent's directory")?;
    let port = free_loopback_port()?;
    let settings = [
        ("ipa-api-url", server.url.clone()),
        (
            "ipa-inspection-collectors",
            "default,pci-devices".to_owned(),
        ),
        ("rivet-lldp", "0".to_owned()),
        ("ipa-listen-host", "127.0.0.1".to_owned()),
        ("ipa-listen-port", port.to_string()),
        ("ipa-advertise-host", "127.0.0.1".to_owned()),
        ("ipa-advertise-port", port.to_string()),
        (
            "rivet-run-dir",
            dir.path().join("run").display().to_string(),
        ),
    ];
    let log = dir.path().join("agent.log");
    let mut child = spawn_agent(agent, &settings, &log)?;
    let deadline = Instant::now() + TIMEOUT;
    let node = loop {
        child.ensure_running()?;
        let nodes = server.get("/v1/nodes").await?;
        let heartbeating = nodes["nodes"].as_array().and_then(|list| {
            list.iter()
                .find(|n| n["agent"]["heartbeats"].as_u64().is_some_and(|h| h > 0))
                .cloned()
        });
        if let Some(node) = heartbeating {
            break node;
        }
        if Instant::now() >= deadline {
            bail!(
                "no node heartbeated within {TIMEOUT:?}; nodes: {nodes}\nagent log:\n{}",
                read(&log)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ensure!(
        node["auto_registered"] == true && node["inspected_at"].is_string(),
        "the node was not registered by inspection: {node}"
    );
    let uuid = node["uuid"].as_str().context("node without uuid")?;
    let known: Vec<&str> = node["macs"]
        .as_array()
        .context("node without macs")?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    ensure!(
        macs.iter().all(|m| known.contains(&m.as_str())),
        "node MACs {known:?} lack the agent's {macs:?}"
    );
    let inventory = server.get(&format!("/v1/nodes/{uuid}/inventory")).await?;
    let text = inventory.to_string();
    ensure!(
        text.contains(&macs[0]) && text.contains(std::env::consts::ARCH),
        "the stored inventory lacks the agent's MAC or architecture: {text}"
    );
    let agent_log = read(&log);
    ensure!(
        agent_log.contains("inspection finished"),
        "the agent never finished inspection:\n{agent_log}"
    );
    Ok(())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
