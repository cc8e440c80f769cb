//! Nothing acknowledged is lost: across a clean restart, and across `kill -9` in the middle of
//! a burst of heartbeats and plan reports.

mod common;

use std::collections::HashMap;
use std::sync::Arc;

use common::{add_node, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Looks up `mac` at 1.62 and returns the node's UUID and its fresh token.
async fn token_for(
    http: &reqwest::Client,
    url: &str,
    mac: &str,
) -> anyhow::Result<(String, String)> {
    let answer: Value = http
        .get(format!("{url}/v1/lookup?addresses={mac}"))
        .header("X-OpenStack-Ironic-API-Version", "1.62")
        .send()
        .await?
        .json()
        .await?;
    let uuid = answer["node"]["uuid"].as_str().expect("a uuid").to_string();
    let token = answer["config"]["agent_token"]
        .as_str()
        .expect("a token")
        .to_string();
    Ok((uuid, token))
}

async fn heartbeat(
    http: &reqwest::Client,
    url: &str,
    uuid: &str,
    token: &str,
    callback: &str,
) -> reqwest::Result<StatusCode> {
    let response = http
        .post(format!("{url}/v1/heartbeat/{uuid}"))
        .header("X-OpenStack-Ironic-API-Version", "1.68")
        .json(&json!({"callback_url": callback, "agent_token": token, "agent_version": "13.0.0"}))
        .send()
        .await?;
    Ok(response.status())
}

async fn report(
    http: &reqwest::Client,
    url: &str,
    uuid: &str,
    token: &str,
    boot: &str,
    seq: u64,
) -> reqwest::Result<StatusCode> {
    let body = json!({"agent_token": token, "boot_id": boot, "reports": [
        {"seq": seq, "kind": "step", "index": 0, "name": "erase_devices", "state": "running",
         "progress": (seq % 100) as f64 / 100.0}
    ]});
    let response = http
        .post(format!("{url}/v1/rivet/nodes/{uuid}/reports"))
        .json(&body)
        .send()
        .await?;
    Ok(response.status())
}

/// The (boot_id, seq) of every agent report of a node.
async fn stored_reports(server: &Server, uuid: &str) -> anyhow::Result<Vec<u64>> {
    let mut seqs = Vec::new();
    let mut after = 0;
    loop {
        let (_, page) = server
            .operator(
                Method::GET,
                &format!("/v1/nodes/{uuid}/events?after={after}&limit=1000"),
                None,
            )
            .await?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for event in &events {
            if let Some(seq) = event["seq"].as_u64() {
                seqs.push(seq);
            }
        }
        match events.last().and_then(|e| e["id"].as_i64()) {
            Some(id) if events.len() == 1000 => after = id,
            _ => return Ok(seqs),
        }
    }
}

#[tokio::test]
async fn a_restart_keeps_everything() -> anyhow::Result<()> {
    let mut server = Server::start()?;
    add_node(&server, "n1", &["52:54:00:00:00:01"]).await?;
    let plan = json!({"version": 1, "name": "p", "steps": [{"step": "inspect"}]});
    server
        .operator(Method::PUT, "/v1/nodes/n1/plan", Some(&plan))
        .await?;
    let http = server.http()?;
    let (uuid, token) = token_for(&http, &server.url(), "52:54:00:00:00:01").await?;
    let callback = "http://127.0.0.1:9999";
    for _ in 0..3 {
        assert_eq!(
            heartbeat(&http, &server.url(), &uuid, &token, callback).await?,
            StatusCode::ACCEPTED
        );
    }
    assert_eq!(
        report(&http, &server.url(), &uuid, &token, "boot1", 1).await?,
        StatusCode::ACCEPTED
    );
    let (_, before) = server.operator(Method::GET, "/v1/nodes/n1", None).await?;
    let (_, events_before) = server
        .operator(Method::GET, "/v1/nodes/n1/events", None)
        .await?;

    server.stop()?;
    server.spawn()?;

    let (_, after) = server.operator(Method::GET, "/v1/nodes/n1", None).await?;
    assert_eq!(after, before);
    assert_eq!(after["agent"]["heartbeats"], 3);
    assert_eq!(after["state"], "running");
    let (_, events_after) = server
        .operator(Method::GET, "/v1/nodes/n1/events", None)
        .await?;
    assert_eq!(events_after, events_before);
    let (_, steps) = server
        .operator(Method::GET, "/v1/nodes/n1/steps", None)
        .await?;
    assert_eq!(steps["steps"][0]["progress"], 0.01);
    // The token survives, is still masked at lookup, and the same report is a duplicate.
    assert_eq!(
        heartbeat(&http, &server.url(), &uuid, &token, callback).await?,
        StatusCode::ACCEPTED
    );
    let (_, masked) = token_for(&http, &server.url(), "52:54:00:00:00:01").await?;
    assert_eq!(masked, "******");
    assert_eq!(stored_reports(&server, &uuid).await?, vec![1]);
    assert_eq!(
        report(&http, &server.url(), &uuid, &token, "boot1", 1).await?,
        StatusCode::ACCEPTED
    );
    assert_eq!(stored_reports(&server, &uuid).await?, vec![1]);
    Ok(())
}

/// What one agent had acknowledged when the server died.
#[derive(Debug, Default)]
struct Acked {
    heartbeats: i64,
    reports: Vec<u64>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_burst_loses_no_acknowledged_report() -> anyhow::Result<()> {
    const AGENTS: usize = 16;
    let mut server = Server::start()?;
    let http = server.http()?;
    let url = server.url();
    let mut agents = Vec::new();
    for index in 0..AGENTS {
        let mac = format!("52:54:00:00:01:{index:02x}");
        add_node(&server, &format!("n{index}"), &[&mac]).await?;
        agents.push(token_for(&http, &url, &mac).await?);
    }
    let acknowledged = Arc::new(tokio::sync::Mutex::new(HashMap::<String, Acked>::new()));
    let (first_acks_tx, mut first_acks) = tokio::sync::mpsc::channel::<()>(AGENTS * 4);
    let mut tasks = tokio::task::JoinSet::new();
    for (index, (uuid, token)) in agents.iter().cloned().enumerate() {
        let http = http.clone();
        let url = url.clone();
        let acknowledged = Arc::clone(&acknowledged);
        let first_acks = first_acks_tx.clone();
        tasks.spawn(async move {
            let callback = format!("http://127.0.0.1:{}", 10_000 + index);
            // Bounded: the server dies long before this many rounds.
            for seq in 1..=100_000u64 {
                let Ok(status) = heartbeat(&http, &url, &uuid, &token, &callback).await else {
                    return;
                };
                assert_eq!(status, StatusCode::ACCEPTED);
                acknowledged
                    .lock()
                    .await
                    .entry(uuid.clone())
                    .or_default()
                    .heartbeats += 1;
                let Ok(status) = report(&http, &url, &uuid, &token, "burst", seq).await else {
                    return;
                };
                assert_eq!(status, StatusCode::ACCEPTED);
                acknowledged
                    .lock()
                    .await
                    .entry(uuid.clone())
                    .or_default()
                    .reports
                    .push(seq);
                let _ = first_acks.try_send(());
            }
        });
    }
    drop(first_acks_tx);
    // Kill once the burst is well under way: a few hundred reports acknowledged.
    for _ in 0..(AGENTS * 20) {
        if first_acks.recv().await.is_none() {
            break;
        }
    }
    server.kill9()?;
    while let Some(joined) = tasks.join_next().await {
        joined?;
    }
    let acknowledged = std::mem::take(&mut *acknowledged.lock().await);
    let total: i64 = acknowledged.values().map(|a| a.heartbeats).sum();
    assert!(
        total >= (AGENTS * 20) as i64,
        "only {total} heartbeats acknowledged before the kill"
    );

    server.spawn()?;
    let (_, nodes) = server.operator(Method::GET, "/v1/nodes", None).await?;
    let stored: HashMap<String, i64> = nodes["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["uuid"].as_str().expect("uuid").to_string(),
                n["agent"]["heartbeats"].as_i64().expect("count"),
            )
        })
        .collect();
    for (uuid, acked) in &acknowledged {
        let stored_heartbeats = stored.get(uuid).copied().unwrap_or(0);
        assert!(
            stored_heartbeats >= acked.heartbeats,
            "node {uuid}: {} heartbeats acknowledged, {stored_heartbeats} stored",
            acked.heartbeats
        );
        let reports = stored_reports(&server, uuid).await?;
        let missing: Vec<&u64> = acked
            .reports
            .iter()
            .filter(|seq| !reports.contains(seq))
            .collect();
        assert!(
            missing.is_empty(),
            "node {uuid}: acknowledged reports {missing:?} not stored"
        );
    }
    Ok(())
}
