//! Plan mode: an agent's step reports become steps, events and node states that the CLI's
//! `node watch` follows.

mod common;

use common::{add_node, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

async fn post(server: &Server, uuid: &str, body: &Value) -> anyhow::Result<(StatusCode, Value)> {
    let response = server
        .http()?
        .post(format!("{}/v1/rivet/nodes/{uuid}/reports", server.url()))
        .json(body)
        .send()
        .await?;
    let status = response.status();
    Ok((status, response.json().await?))
}

async fn token(server: &Server, node: &str) -> anyhow::Result<(String, String)> {
    let (_, minted) = server
        .operator(Method::POST, &format!("/v1/nodes/{node}/token"), None)
        .await?;
    Ok((
        minted["uuid"].as_str().expect("uuid").to_string(),
        minted["agent_token"].as_str().expect("token").to_string(),
    ))
}

#[tokio::test]
async fn reports_drive_steps_state_and_watch() -> anyhow::Result<()> {
    let server = Server::start()?;
    add_node(&server, "n1", &[]).await?;
    let (uuid, token) = token(&server, "n1").await?;
    let batch = json!({"agent_token": token, "boot_id": "b1", "reports": [
        {"seq": 1, "kind": "step", "index": 0, "name": "erase_devices", "state": "running", "progress": 0.5},
        {"seq": 2, "kind": "erase", "message": "/dev/vda: nvme format -s 2, verified", "data": {"device": "/dev/vda"}},
        {"seq": 3, "kind": "step", "index": 0, "name": "erase_devices", "state": "done"},
        {"seq": 4, "kind": "step", "index": 1, "name": "write_image", "state": "running"},
        {"seq": 5, "kind": "step", "index": 1, "name": "write_image", "state": "running",
         "progress": 0.25, "message": "512 MiB of 2.0 GiB, 100 MiB/s, ETA 15 s"},
    ]});
    let (_, node) = server.operator(Method::GET, "/v1/nodes/n1", None).await?;
    assert_eq!(node["agent"]["last_seen"], Value::Null, "not heard yet");
    let (status, ack) = post(&server, &uuid, &batch).await?;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(ack, json!({"stored": 5, "duplicates": 0}));
    // Resent after a lost answer: nothing is stored twice.
    let (_, ack) = post(&server, &uuid, &batch).await?;
    assert_eq!(ack, json!({"stored": 0, "duplicates": 5}));
    // A heartbeat is accepted and only moves the time the agent was last heard.
    let heartbeat = json!({"agent_token": token, "boot_id": "b1", "reports": [
        {"seq": 6, "kind": "heartbeat"},
        {"seq": 7, "kind": "inventory", "inventory": {
            "cpu": {"count": 2, "model_name": "QEMU Virtual CPU"},
            "memory": {"physical_mb": 1024},
            "system_vendor": {"manufacturer": "QEMU", "product_name": "Standard PC", "serial_number": ""},
            "disks": [{"name": "/dev/vda", "size": 268435456u64, "serial": "rivet-vd0"}],
            "interfaces": [{"name": "enp0s2", "mac_address": "52:54:00:77:00:01"}]}},
    ]});
    let (_, ack) = post(&server, &uuid, &heartbeat).await?;
    assert_eq!(ack, json!({"stored": 2, "duplicates": 0}));
    let (_, inventory) = server
        .operator(Method::GET, "/v1/nodes/n1/inventory", None)
        .await?;
    assert_eq!(inventory["disks"][0]["serial"], "rivet-vd0");

    let (_, node) = server.operator(Method::GET, "/v1/nodes/n1", None).await?;
    assert_eq!(node["state"], "running");
    assert!(node["agent"]["last_report"].is_string(), "{node}");
    assert_eq!(node["agent"]["last_seen"], node["agent"]["last_report"]);
    let (_, events) = server
        .operator(Method::GET, "/v1/nodes/n1/events", None)
        .await?;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["source"] == "agent")
        .map(|e| e["kind"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(
        kinds,
        [
            "progress",
            "erase",
            "step",
            "step",
            "progress",
            "inspection"
        ],
        "heartbeats are not events"
    );
    let (_, steps) = server
        .operator(Method::GET, "/v1/nodes/n1/steps", None)
        .await?;
    let summary: Vec<(String, String)> = steps["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").into(),
                s["state"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("erase_devices".into(), "done".into()),
            ("write_image".into(), "running".into())
        ]
    );
    assert_eq!(steps["steps"][0]["progress"], 0.5);

    let (ok, out, err) = server.cli(&["node", "show", "n1"])?;
    assert!(ok, "{err}");
    assert!(
        out.contains("write_image") && out.contains("[#####---------------]  25%"),
        "{out}"
    );
    assert!(
        out.contains("512 MiB of 2.0 GiB, 100 MiB/s, ETA 15 s"),
        "the running step's progress line: {out}"
    );
    assert!(
        !out.contains("write_image: running 25%"),
        "progress reports are not listed as events: {out}"
    );
    for fact in [
        "cpu                2 x QEMU Virtual CPU",
        "memory             1024 MiB",
        "disks              /dev/vda 256 MiB (rivet-vd0)",
        "interfaces         enp0s2 52:54:00:77:00:01",
        "system             QEMU / Standard PC",
    ] {
        assert!(out.contains(fact), "no {fact:?} in: {out}");
    }
    let (ok, events, err) = server.cli(&["node", "events", "n1"])?;
    assert!(ok, "{err}");
    assert!(
        events.contains("progress")
            && events.contains("write_image: running 25% (512 MiB of 2.0 GiB"),
        "node events lists progress reports too: {events}"
    );
    let last_seen = out
        .lines()
        .find(|line| line.starts_with("last seen"))
        .unwrap_or_default();
    assert!(last_seen.ends_with(" ago"), "{out}");
    let (ok, out, err) = server.cli(&["node", "list"])?;
    assert!(ok, "{err}");
    assert!(out.contains("LAST SEEN") && out.contains(" ago"), "{out}");

    let done = json!({"agent_token": token, "boot_id": "b1", "reports": [
        {"seq": 8, "kind": "step", "index": 1, "name": "write_image", "state": "done"},
        {"seq": 9, "kind": "plan", "state": "done"},
    ]});
    post(&server, &uuid, &done).await?;
    let (ok, out, err) = server.cli(&["node", "watch", "n1", "--interval", "0.2"])?;
    assert!(ok, "watch must exit 0 on a finished plan: {out}{err}");
    assert!(out.starts_with("state: done"), "{out}");
    assert!(out.contains("step 0 erase_devices: running 50%"), "{out}");
    assert!(
        out.contains("step 1 write_image: running 25% (512 MiB of 2.0 GiB"),
        "watch prints progress as it comes: {out}"
    );
    assert!(out.contains("plan finished"), "{out}");
    Ok(())
}

#[tokio::test]
async fn a_failed_step_fails_the_node_and_watch() -> anyhow::Result<()> {
    let server = Server::start()?;
    add_node(&server, "n1", &[]).await?;
    let (uuid, token) = token(&server, "n1").await?;
    let failed = json!({"agent_token": token, "boot_id": "b1", "reports": [
        {"seq": 1, "kind": "step", "index": 0, "name": "erase_devices", "state": "failed", "message": "frozen drive"},
    ]});
    post(&server, &uuid, &failed).await?;
    let (_, node) = server.operator(Method::GET, "/v1/nodes/n1", None).await?;
    assert_eq!(node["state"], "failed");
    assert_eq!(
        node["last_error"],
        "step erase_devices failed: frozen drive"
    );
    let (ok, out, _) = server.cli(&["node", "watch", "n1"])?;
    assert!(!ok, "watch must exit non-zero on a failed node: {out}");
    assert!(out.contains("frozen drive"), "{out}");

    let (status, body) = post(
        &server,
        &uuid,
        &json!({"agent_token": "x", "boot_id": "b", "reports": []}),
    )
    .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error_message"]
        .as_str()
        .expect("Ironic's shape")
        .contains("Invalid or missing agent token"));
    Ok(())
}
