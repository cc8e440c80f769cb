//! Plan mode with both real processes on loopback: rivet-server has a node with this host's
//! MACs and a plan (docs/plan.md); `rivet-agent run` looks the node up, finds
//! `config.rivet.plan` in the answer, runs the plan through its plan runner and posts its
//! reports to the server's report endpoint with the token lookup gave it. The server must
//! end with every step `done` and the node `done`, the inspect step's inventory as the
//! node's inventory, and the time it last heard from the agent. The plan is harmless on a host: it
//! inspects and waits, nothing else.
//!
//! Needs `cargo build --workspace --bins` (ci/test does it): the test runs both binaries.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use rivet_tests::agent::{agent_binary, agent_interfaces, spawn_agent};
use rivet_tests::net::free_loopback_port;
use rivet_tests::or_panic;
use rivet_tests::server::Server;
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_runs_the_plan_from_lookup_and_reports_to_rivet_server() {
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
    let plan = json!({
        "version": 1,
        "name": "plan-mode",
        "steps": [
            {"step": "inspect"},
            {"step": "wait", "args": {"seconds": 0.5}},
            {"step": "verify_wiring", "args": {"expected": [
                {"interface": "eth9", "switch_system_name": "nowhere", "port_id": "1"}]},
             "ignore_failure": true}
        ]
    });
    let node = server
        .post(
            "/v1/nodes",
            &json!({"name": "plan-node", "macs": macs, "plan": plan}),
        )
        .await?;
    let uuid = node["uuid"]
        .as_str()
        .context("node without uuid")?
        .to_owned();
    let dir = tempfile::Builder::new()
        .prefix("rivet-agent-")
        .tempdir()
        .context("creating the agent's directory")?;
    let port = free_loopback_port()?;
    let settings = [
        ("ipa-api-url", server.url.clone()),
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
        let node = server.get(&format!("/v1/nodes/{uuid}")).await?;
        if node["state"] == "done" || node["state"] == "failed" {
            break node;
        }
        if Instant::now() >= deadline {
            bail!(
                "the plan did not end within {TIMEOUT:?}; node: {node}\nagent log:\n{}",
                read(&log)
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    ensure!(
        node["state"] == "done",
        "the plan ended as {}: {node}\nagent log:\n{}",
        node["state"],
        read(&log)
    );
    let steps = server.get(&format!("/v1/nodes/{uuid}/steps")).await?;
    let states: Vec<(String, String)> = steps["steps"]
        .as_array()
        .context("no steps list")?
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("?").to_owned(),
                s["state"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("inspect", "done"),
        ("wait", "done"),
        ("verify_wiring", "failed"),
    ]
    .iter()
    .map(|(n, s)| (n.to_string(), s.to_string()))
    .collect();
    ensure!(states == expected, "steps on the server: {steps}");
    let events = server.get(&format!("/v1/nodes/{uuid}/events")).await?;
    let text = events.to_string();
    ensure!(
        text.contains("plan plan-mode report") && text.contains("plan finished"),
        "the server's events lack the final report or the plan's end: {text}"
    );
    ensure!(
        node["agent"]["last_seen"].is_string() && node["agent"]["last_report"].is_string(),
        "the server does not say when it last heard from the agent: {node}"
    );
    let inventory = server.get(&format!("/v1/nodes/{uuid}/inventory")).await?;
    let found: Vec<&str> = inventory["interfaces"]
        .as_array()
        .context("the inventory from the inspect step has no interfaces")?
        .iter()
        .filter_map(|i| i["mac_address"].as_str())
        .collect();
    ensure!(
        found.iter().any(|mac| macs.contains(&mac.to_string())),
        "the inventory's MACs {found:?} are not this host's {macs:?}"
    );
    let agent_log = read(&log);
    ensure!(
        agent_log.contains("plan mode: running the plan from lookup"),
        "the agent did not switch to plan mode:\n{agent_log}"
    );
    Ok(())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
