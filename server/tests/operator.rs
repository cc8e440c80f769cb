//! The operator API and the CLI against a real rivet-server process.

mod common;

use common::{add_node, Server};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn the_operator_api_needs_the_operator_token() -> anyhow::Result<()> {
    let server = Server::start()?;
    let node = add_node(&server, "n1", &["52:54:00:00:00:01"]).await?;
    let http = server.http()?;
    let nodes = format!("{}/v1/nodes", server.url());
    let response = http.get(&nodes).send().await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body: Value = response.json().await?;
    assert_eq!(body["error"]["code"], 401);
    let response = http.get(&nodes).bearer_auth("not-the-token").send().await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // An agent token is not an operator token.
    let response = http
        .get(format!(
            "{}/v1/lookup?addresses=52:54:00:00:00:01",
            server.url()
        ))
        .header("X-OpenStack-Ironic-API-Version", "1.62")
        .send()
        .await?;
    let lookup: Value = response.json().await?;
    let agent_token = lookup["config"]["agent_token"].as_str().expect("a token");
    let response = http.get(&nodes).bearer_auth(agent_token).send().await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let (status, listed) = server.operator(Method::GET, "/v1/nodes", None).await?;
    assert_eq!(status, 200);
    assert_eq!(listed["nodes"][0]["uuid"], node["uuid"]);
    Ok(())
}

#[tokio::test]
async fn nodes_plans_tokens_and_conflicts() -> anyhow::Result<()> {
    let server = Server::start()?;
    add_node(&server, "n1", &["52:54:00:00:00:01"]).await?;
    let (status, error) = server
        .operator(
            Method::POST,
            "/v1/nodes",
            Some(&json!({"name": "n2", "macs": ["52-54-00-00-00-01"]})),
        )
        .await?;
    assert_eq!(status, 409, "{error}");
    let (status, _) = server
        .operator(
            Method::POST,
            "/v1/nodes",
            Some(&json!({"name": "n3", "colour": "red"})),
        )
        .await?;
    assert_eq!(status, 400);

    let plan = json!({"version": 1, "name": "wipe", "rerun": "always",
                      "steps": [{"step": "erase_devices_metadata"}]});
    let (status, node) = server
        .operator(Method::PUT, "/v1/nodes/n1/plan", Some(&plan))
        .await?;
    assert_eq!(status, 200);
    assert_eq!(node["plan"], plan);
    let (_, shown) = server
        .operator(Method::GET, "/v1/nodes/n1/plan", None)
        .await?;
    assert_eq!(shown, plan);
    let (status, _) = server
        .operator(Method::PUT, "/v1/nodes/n1/plan", Some(&json!([1])))
        .await?;
    assert_eq!(status, 400);
    let (status, body) = server
        .operator(
            Method::PUT,
            "/v1/nodes/n1/plan",
            Some(&json!({"version": 1, "name": "p", "steps": [{"step": "format_c"}]})),
        )
        .await?;
    assert_eq!(status, 400);
    assert!(body.to_string().contains("unknown step"), "{body}");

    let (_, minted) = server
        .operator(Method::POST, "/v1/nodes/n1/token", None)
        .await?;
    let token = minted["agent_token"].as_str().expect("a token");
    assert_eq!(token.len(), 43);
    let (_, node) = server.operator(Method::GET, "/v1/nodes/n1", None).await?;
    assert_eq!(node["agent"]["token"], "pregenerated");
    // A pregenerated token is never handed out at lookup, and works for heartbeats.
    let http = server.http()?;
    let lookup: Value = http
        .get(format!(
            "{}/v1/lookup?addresses=52:54:00:00:00:01",
            server.url()
        ))
        .header("X-OpenStack-Ironic-API-Version", "1.62")
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(lookup["config"]["agent_token"], "******");
    assert_eq!(lookup["config"]["rivet"]["plan"], plan);
    let response = http
        .post(format!("{}/v1/heartbeat/n1", server.url()))
        .header("X-OpenStack-Ironic-API-Version", "1.68")
        .json(&json!({"callback_url": "http://127.0.0.1:9999", "agent_token": token, "agent_version": "13.0.0"}))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::ACCEPTED);

    let (status, _) = server
        .operator(Method::DELETE, "/v1/nodes/n1", None)
        .await?;
    assert_eq!(status, 204);
    let (status, _) = server.operator(Method::GET, "/v1/nodes/n1", None).await?;
    assert_eq!(status, 404);
    Ok(())
}

#[tokio::test]
async fn every_documented_path_is_served() -> anyhow::Result<()> {
    let server = Server::start()?;
    add_node(&server, "n1", &[]).await?;
    let document: Value = server
        .http()?
        .get(format!("{}/v1/openapi.json", server.url()))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(document["openapi"], "3.1.0");
    let paths = document["paths"].as_object().expect("paths");
    let documented: Vec<&str> = paths.keys().map(String::as_str).collect();
    for expected in [
        "/v1/openapi.json",
        "/v1/nodes",
        "/v1/nodes/{node}",
        "/v1/nodes/{node}/plan",
        "/v1/nodes/{node}/events",
        "/v1/nodes/{node}/steps",
        "/v1/nodes/{node}/inventory",
        "/v1/nodes/{node}/token",
        "/v1/nodes/{node}/reset-agent",
        "/v1/nodes/{node}/network-data",
        "/v1/nodes/{node}/iso",
        "/v1/nodes/{node}/iso-url",
        "/v1/isos/{node}",
    ] {
        assert!(
            documented.contains(&expected),
            "{expected} is not documented"
        );
    }
    for (path, operations) in paths {
        for method in ["get", "post", "put", "delete"] {
            if operations.get(method).is_none() {
                continue;
            }
            let concrete = path.replace("{node}", "n1");
            let method = Method::from_bytes(method.to_uppercase().as_bytes())?;
            let body = (method == Method::PUT || method == Method::POST).then(|| json!({}));
            let (status, answer) = server
                .operator(method.clone(), &concrete, body.as_ref())
                .await?;
            // Documented routes exist: the router never answers 404 without a JSON error
            // body or 405 for them.
            assert_ne!(status, 405, "{method} {path}");
            if status == 404 {
                assert!(
                    answer["error"]["message"].is_string(),
                    "{method} {path}: {answer}"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn cli_adds_lists_and_shows_nodes() -> anyhow::Result<()> {
    let server = Server::start()?;
    let (ok, out, err) = server.cli(&[
        "node",
        "add",
        "--name",
        "rack1-01",
        "--mac",
        "52:54:00:AA:00:01",
        "--serial",
        "SN1",
    ])?;
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("added node "), "{out}");
    let (ok, out, err) = server.cli(&["node", "list"])?;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for column in ["UUID", "NAME", "STATE", "MACS", "LAST SEEN"] {
        assert!(lines[0].contains(column), "{out}");
    }
    assert!(
        lines[1].contains("rack1-01")
            && lines[1].contains("enrolled")
            && lines[1].contains("52:54:00:aa:00:01"),
        "{out}"
    );

    let dir = tempfile::tempdir()?;
    let plan = dir.path().join("plan.json");
    std::fs::write(
        &plan,
        r#"{"version": 1, "name": "wipe", "rerun": "always", "steps": [{"step": "erase_devices_metadata"}]}"#,
    )?;
    let (ok, _, err) = server.cli(&["plan", "set", "rack1-01", plan.to_str().expect("UTF-8")])?;
    assert!(ok, "{err}");
    // The same plan in YAML.
    let yaml = dir.path().join("plan.yaml");
    std::fs::write(
        &yaml,
        "# a comment\nversion: 1\nname: wipe-yaml\nrerun: always\nsteps:\n  - step: erase_devices_metadata\n",
    )?;
    let (ok, _, err) = server.cli(&["plan", "set", "rack1-01", yaml.to_str().expect("UTF-8")])?;
    assert!(ok, "{err}");
    let (ok, out, err) = server.cli(&["plan", "show", "rack1-01"])?;
    assert!(ok, "{err}");
    let shown: serde_json::Value = serde_json::from_str(&out)?;
    assert_eq!(shown["name"], "wipe-yaml", "{out}");
    assert_eq!(shown["steps"][0]["step"], "erase_devices_metadata", "{out}");
    std::fs::write(&yaml, "version: 1\nname: [unclosed\n")?;
    let (ok, _, err) = server.cli(&["plan", "set", "rack1-01", yaml.to_str().expect("UTF-8")])?;
    assert!(!ok);
    assert!(err.contains("not a JSON or YAML document"), "{err}");
    let (ok, out, err) = server.cli(&["node", "show", "rack1-01"])?;
    assert!(ok, "{err}");
    assert!(out.contains("serial             SN1"), "{out}");
    assert!(out.contains("plan               set"), "{out}");
    assert!(
        out.contains("node added") && out.contains("plan set"),
        "{out}"
    );

    let (ok, _, err) = server.cli(&["node", "show", "no-such-node"])?;
    assert!(!ok);
    assert!(
        err.contains("404") && err.contains("could not be found"),
        "{err}"
    );
    let (ok, _, err) = server.cli(&["node", "list", "--token", "wrong"])?;
    assert!(!ok);
    assert!(err.contains("401"), "{err}");
    Ok(())
}
