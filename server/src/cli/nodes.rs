//! `node ...` and `plan ...`: operator API calls shown as tables.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use reqwest::Method;
use serde_json::{json, Value};

use super::{NodeCommand, PlanCommand};
use crate::client::{segment, OperatorClient};
use crate::db::now_ms;
use crate::table::{or_dash, progress_bar, Table};
use crate::time::{ago, parse_rfc3339};

fn read_plan(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the plan {}", path.display()))?;
    let plan = rivet_protocol::plan::document_value(&text)
        .with_context(|| format!("{} is not a JSON or YAML document", path.display()))?;
    if !plan.is_object() {
        bail!(
            "{}: a plan is an object (a mapping in YAML)",
            path.display()
        );
    }
    Ok(plan)
}

fn print_json(value: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}

/// "12s ago" for an RFC 3339 time, `-` for none.
fn since(value: &Value) -> String {
    value
        .as_str()
        .and_then(parse_rfc3339)
        .map(|ms| format!("{} ago", ago(ms, now_ms())))
        .unwrap_or_else(|| "-".into())
}

pub async fn node(client: &OperatorClient, command: NodeCommand) -> Result<ExitCode> {
    match command {
        NodeCommand::Add {
            name,
            macs,
            serial,
            system_uuid,
            uuid,
            plan,
        } => {
            let plan = plan.as_deref().map(read_plan).transpose()?;
            let body = json!({"name": name, "macs": macs, "serial": serial,
                              "system_uuid": system_uuid, "uuid": uuid, "plan": plan});
            let node = client.call(Method::POST, "/v1/nodes", Some(&body)).await?;
            println!(
                "added node {} ({})",
                text(&node, "uuid").unwrap_or("?"),
                text(&node, "name").unwrap_or("no name")
            );
        }
        NodeCommand::List { json } => {
            let answer = client.get("/v1/nodes").await?;
            if json {
                print_json(&answer)?;
            } else {
                print!("{}", node_table(&answer["nodes"]).render());
            }
        }
        NodeCommand::Show { node, json } => {
            let path = format!("/v1/nodes/{}", segment(&node));
            let shown = client.get(&path).await?;
            if json {
                print_json(&shown)?;
            } else {
                let steps = client.get(&format!("{path}/steps")).await?;
                let events = client.get(&format!("{path}/events?limit=1000")).await?;
                let inventory = if shown["inspected_at"].is_string() {
                    Some(client.get(&format!("{path}/inventory")).await?)
                } else {
                    None
                };
                print!(
                    "{}",
                    describe(
                        &shown,
                        inventory.as_ref(),
                        &steps["steps"],
                        &events["events"],
                        10
                    )
                );
            }
        }
        NodeCommand::Watch { node, interval } => return watch(client, &node, interval).await,
        NodeCommand::Events { node, after } => {
            let path = format!(
                "/v1/nodes/{}/events?after={after}&limit=1000",
                segment(&node)
            );
            let events = client.get(&path).await?;
            print!(
                "{}",
                event_table(&events["events"], usize::MAX, true).render()
            );
        }
        NodeCommand::Token { node } => {
            let path = format!("/v1/nodes/{}/token", segment(&node));
            let answer = client.call(Method::POST, &path, None).await?;
            println!("{}", text(&answer, "agent_token").unwrap_or_default());
        }
        NodeCommand::ResetAgent { node } => {
            let path = format!("/v1/nodes/{}/reset-agent", segment(&node));
            client.call(Method::POST, &path, None).await?;
            println!("forgot the agent of node {node}");
        }
        NodeCommand::NetworkData { node, file, clear } => {
            let path = format!("/v1/nodes/{}/network-data", segment(&node));
            if clear {
                client.call(Method::DELETE, &path, None).await?;
                println!("network_data removed from node {node}");
            } else if let Some(file) = file {
                let text = std::fs::read_to_string(&file)
                    .with_context(|| format!("reading {}", file.display()))?;
                let document: Value = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a JSON document", file.display()))?;
                client.call(Method::PUT, &path, Some(&document)).await?;
                println!("network_data set for node {node}");
            } else {
                print_json(&client.get(&path).await?)?;
            }
        }
        NodeCommand::Iso { node, output } => {
            let path = format!("/v1/nodes/{}/iso", segment(&node));
            let bytes = client.download(&path, &output).await?;
            if output != Path::new("-") {
                println!("wrote {} ({bytes} bytes)", output.display());
            }
        }
        NodeCommand::IsoUrl { node, ttl } => {
            let path = format!("/v1/nodes/{}/iso-url?ttl={ttl}", segment(&node));
            let answer = client.call(Method::POST, &path, None).await?;
            println!("{}", text(&answer, "url").unwrap_or_default());
        }
        NodeCommand::Delete { node } => {
            client
                .call(
                    Method::DELETE,
                    &format!("/v1/nodes/{}", segment(&node)),
                    None,
                )
                .await?;
            println!("deleted node {node}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn plan(client: &OperatorClient, command: PlanCommand) -> Result<ExitCode> {
    match command {
        PlanCommand::Set { node, file } => {
            let plan = read_plan(&file)?;
            let path = format!("/v1/nodes/{}/plan", segment(&node));
            client.call(Method::PUT, &path, Some(&plan)).await?;
            println!("plan set for node {node}");
        }
        PlanCommand::Show { node } => {
            let plan = client
                .get(&format!("/v1/nodes/{}/plan", segment(&node)))
                .await?;
            print_json(&plan)?;
        }
        PlanCommand::Clear { node } => {
            let path = format!("/v1/nodes/{}/plan", segment(&node));
            client.call(Method::DELETE, &path, None).await?;
            println!("plan removed from node {node}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn node_table(nodes: &Value) -> Table {
    let mut table = Table::new(&[
        "UUID",
        "NAME",
        "STATE",
        "MACS",
        "AGENT",
        "LAST SEEN",
        "HEARTBEATS",
    ]);
    for node in nodes.as_array().into_iter().flatten() {
        let macs: Vec<&str> = node["macs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let agent = &node["agent"];
        table.row(vec![
            or_dash(text(node, "uuid")),
            or_dash(text(node, "name")),
            or_dash(text(node, "state")),
            if macs.is_empty() {
                "-".into()
            } else {
                macs.join(",")
            },
            or_dash(text(agent, "url")),
            since(&agent["last_seen"]),
            agent["heartbeats"].as_i64().unwrap_or(0).to_string(),
        ]);
    }
    table
}

fn step_table(steps: &Value) -> Table {
    let mut table = Table::new(&["#", "STEP", "STATE", "PROGRESS", "MESSAGE"]);
    for step in steps.as_array().into_iter().flatten() {
        let state = text(step, "state").unwrap_or("?");
        let fraction = match (state, step["progress"].as_f64()) {
            ("done", _) => Some(1.0),
            (_, progress) => progress,
        };
        table.row(vec![
            step["index"].as_i64().unwrap_or(0).to_string(),
            or_dash(text(step, "name")),
            state.to_string(),
            fraction
                .map(|f| progress_bar(f, 20))
                .unwrap_or_else(|| "-".into()),
            or_dash(text(step, "message")),
        ]);
    }
    table
}

/// The last `last` events; without progress reports unless `progress` (`node show` has the
/// latest in its step table).
fn event_table(events: &Value, last: usize, progress: bool) -> Table {
    let mut table = Table::new(&["ID", "TIME", "SOURCE", "KIND", "MESSAGE"]);
    let events: Vec<&Value> = events
        .as_array()
        .into_iter()
        .flatten()
        .filter(|event| progress || text(event, "kind") != Some(PROGRESS_KIND))
        .collect();
    for event in events.iter().skip(events.len().saturating_sub(last)) {
        table.row(vec![
            event["id"].as_i64().unwrap_or(0).to_string(),
            or_dash(text(event, "time")),
            or_dash(text(event, "source")),
            or_dash(text(event, "kind")),
            or_dash(text(event, "message")),
        ]);
    }
    table
}

/// The event kind of a running step's progress report.
const PROGRESS_KIND: &str = "progress";

/// "1.5 GiB" or "256 MiB" for a byte count.
fn size(bytes: u64) -> String {
    const GIB: u64 = 1 << 30;
    if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else {
        format!("{} MiB", bytes >> 20)
    }
}

/// The inventory's facts worth a line each: system, CPU, memory, disks, interfaces.
fn inventory_rows(inventory: &Value) -> Vec<(&'static str, String)> {
    let list = |key: &str, item: &dyn Fn(&Value) -> String| -> String {
        let items: Vec<String> = inventory[key]
            .as_array()
            .into_iter()
            .flatten()
            .map(item)
            .collect();
        if items.is_empty() {
            "-".into()
        } else {
            items.join(", ")
        }
    };
    let system = &inventory["system_vendor"];
    let cpu = &inventory["cpu"];
    vec![
        (
            "system",
            [
                text(system, "manufacturer"),
                text(system, "product_name"),
                text(system, "serial_number").filter(|s| !s.is_empty()),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" / "),
        ),
        (
            "cpu",
            format!(
                "{} x {}",
                cpu["count"].as_u64().unwrap_or(0),
                text(cpu, "model_name").unwrap_or("?")
            ),
        ),
        (
            "memory",
            inventory["memory"]["physical_mb"]
                .as_u64()
                .map(|mb| format!("{mb} MiB"))
                .unwrap_or_else(|| "-".into()),
        ),
        (
            "disks",
            list("disks", &|disk| {
                let mut line = format!(
                    "{} {}",
                    text(disk, "name").unwrap_or("?"),
                    size(disk["size"].as_u64().unwrap_or(0))
                );
                if let Some(serial) = text(disk, "serial").filter(|s| !s.is_empty()) {
                    line.push_str(&format!(" ({serial})"));
                }
                line
            }),
        ),
        (
            "interfaces",
            list("interfaces", &|nic| {
                format!(
                    "{} {}",
                    text(nic, "name").unwrap_or("?"),
                    text(nic, "mac_address").unwrap_or("?")
                )
            }),
        ),
    ]
}

/// `node show`: a summary block (with the inventory's facts when there is one), then steps
/// and the last events.
fn describe(
    node: &Value,
    inventory: Option<&Value>,
    steps: &Value,
    events: &Value,
    last_events: usize,
) -> String {
    let agent = &node["agent"];
    let macs: Vec<&str> = node["macs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut summary = Table::new(&["FIELD", "VALUE"]);
    let pinned = if agent["verify_ca"].is_string() {
        "pinned"
    } else {
        "-"
    };
    for (field, value) in [
        ("uuid", or_dash(text(node, "uuid"))),
        ("name", or_dash(text(node, "name"))),
        ("state", or_dash(text(node, "state"))),
        (
            "macs",
            if macs.is_empty() {
                "-".into()
            } else {
                macs.join(", ")
            },
        ),
        ("serial", or_dash(text(node, "serial"))),
        ("system uuid", or_dash(text(node, "system_uuid"))),
        (
            "plan",
            if node["plan"].is_object() {
                "set".into()
            } else {
                "-".into()
            },
        ),
        ("agent token", or_dash(text(agent, "token"))),
        ("agent url", or_dash(text(agent, "url"))),
        ("agent version", or_dash(text(agent, "version"))),
        ("agent certificate", pinned.into()),
        ("last seen", since(&agent["last_seen"])),
        ("last heartbeat", since(&agent["last_heartbeat"])),
        ("last report", since(&agent["last_report"])),
        (
            "heartbeats",
            agent["heartbeats"].as_i64().unwrap_or(0).to_string(),
        ),
        ("inspected", since(&node["inspected_at"])),
        ("last error", or_dash(text(node, "last_error"))),
    ] {
        summary.row(vec![field.to_string(), value]);
    }
    for (field, value) in inventory.map(inventory_rows).unwrap_or_default() {
        summary.row(vec![field.to_string(), value]);
    }
    let mut out = summary.render();
    if steps.as_array().is_some_and(|s| !s.is_empty()) {
        out.push('\n');
        out.push_str(&step_table(steps).render());
    }
    if events.as_array().is_some_and(|e| !e.is_empty()) {
        out.push('\n');
        out.push_str(&event_table(events, last_events, false).render());
    }
    out
}

/// How many recent events `node watch` shows on a terminal.
const WATCH_EVENTS: usize = 15;

/// Polls the node and redraws it (on a terminal) or prints what changed (in a pipe), until
/// its state is `done` (exit 0) or `failed` (exit 1).
async fn watch(client: &OperatorClient, node: &str, interval: f64) -> Result<ExitCode> {
    if !(interval.is_finite() && interval > 0.0) {
        bail!("--interval must be a positive number of seconds");
    }
    let path = format!("/v1/nodes/{}", segment(node));
    let terminal = std::io::stdout().is_terminal();
    let mut last_event = 0i64;
    let mut recent: Vec<Value> = Vec::new();
    let mut last_state = String::new();
    loop {
        let shown = client.get(&path).await?;
        let steps = client.get(&format!("{path}/steps")).await?;
        let new_events = client
            .get(&format!("{path}/events?after={last_event}&limit=1000"))
            .await?;
        let new_events: Vec<Value> = new_events["events"].as_array().cloned().unwrap_or_default();
        if let Some(id) = new_events.last().and_then(|e| e["id"].as_i64()) {
            last_event = id;
        }
        let state = text(&shown, "state").unwrap_or("?").to_string();
        let mut out = std::io::stdout().lock();
        if terminal {
            recent.extend(
                new_events
                    .into_iter()
                    .filter(|event| text(event, "kind") != Some(PROGRESS_KIND)),
            );
            let keep = recent.len().saturating_sub(WATCH_EVENTS);
            recent.drain(..keep);
            let events = Value::Array(recent.clone());
            write!(
                out,
                "\x1b[H\x1b[2J{}",
                describe(&shown, None, &steps["steps"], &events, WATCH_EVENTS)
            )?;
        } else {
            if state != last_state {
                writeln!(out, "state: {state}")?;
            }
            for event in &new_events {
                writeln!(
                    out,
                    "{}  {}  {}",
                    or_dash(text(event, "time")),
                    or_dash(text(event, "kind")),
                    or_dash(text(event, "message"))
                )?;
            }
        }
        out.flush()?;
        drop(out);
        last_state = state;
        match last_state.as_str() {
            "done" => return Ok(ExitCode::SUCCESS),
            "failed" => {
                println!(
                    "node {node} failed: {}",
                    or_dash(text(&shown, "last_error"))
                );
                return Ok(ExitCode::FAILURE);
            }
            _ => tokio::time::sleep(Duration::from_secs_f64(interval)).await,
        }
    }
}
