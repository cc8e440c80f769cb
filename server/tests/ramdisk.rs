//! The ramdisk endpoints of a real rivet-server process, driven by the agent's own
//! `IronicClient` (the code that talks to Ironic in the ramdisk).

mod common;

use common::{add_node, Server};
use reqwest::{Method, StatusCode};
use rivet_agent::ironic::client::IronicClient;
use rivet_agent::settings::{Secret, Settings};
use rivet_protocol::lookup::{TokenDecision, MASKED_TOKEN};
use rivet_protocol::version::MicroVersion;
use serde_json::{json, Value};

const MAC: &str = "52:54:00:12:34:56";
const CALLBACK: &str = "http://127.0.0.1:9999";

fn client_for(server: &Server) -> IronicClient {
    let settings = Settings {
        api_urls: vec![url::Url::parse(&server.url()).expect("a URL")],
        cafile: server.tls.then(|| server.data_dir().join("server.crt")),
        ..Settings::default()
    };
    IronicClient::new(&settings).expect("the agent's client")
}

#[tokio::test]
async fn the_agent_looks_up_and_heartbeats() -> anyhow::Result<()> {
    let server = Server::start()?;
    let node = add_node(&server, "n1", &[MAC]).await?;
    let uuid = node["uuid"].as_str().expect("a uuid").to_string();
    let client = client_for(&server);

    assert_eq!(client.api_version().await, MicroVersion::new(1, 84));
    let first = client.lookup(&[MAC.to_uppercase()], None).await?;
    assert_eq!(first.node.uuid, uuid);
    let TokenDecision::Adopt(token) = first.config.token_decision() else {
        panic!("the first lookup must hand out a token: {:?}", first.config);
    };
    assert_eq!(token.len(), 43);
    assert_eq!(first.config.heartbeat_timeout, Some(300));
    assert_eq!(first.config.extra["rivet"]["plan"], Value::Null);

    let again = client.lookup(&[MAC.to_string()], Some(&uuid)).await?;
    assert_eq!(again.config.agent_token.as_deref(), Some(MASKED_TOKEN));

    let token = Secret(token);
    client
        .heartbeat(&uuid, CALLBACK, Some(&token), None)
        .await?;
    client
        .heartbeat(&uuid, CALLBACK, Some(&token), None)
        .await?;

    let wrong = Secret("x".repeat(43));
    let error = client
        .heartbeat(&uuid, CALLBACK, Some(&wrong), None)
        .await
        .expect_err("a wrong token must be refused");
    assert_eq!(error.status(), Some(StatusCode::BAD_REQUEST));
    assert!(
        error
            .to_string()
            .contains("Invalid or missing agent token received."),
        "{error}"
    );

    let error = client
        .heartbeat(&uuid, "http://127.0.0.1:8888", Some(&token), None)
        .await
        .expect_err("a changed callback URL must be refused");
    assert_eq!(error.status(), Some(StatusCode::BAD_REQUEST));
    assert!(
        error
            .to_string()
            .contains(r#"Detected change in ramdisk provided "callback_url""#),
        "{error}"
    );

    let error = client
        .heartbeat(&uuid, CALLBACK, None, None)
        .await
        .expect_err("a missing token must be refused");
    assert!(
        error.to_string().contains("Agent token is required"),
        "{error}"
    );

    let (_, shown) = server
        .operator(Method::GET, &format!("/v1/nodes/{uuid}"), None)
        .await?;
    assert_eq!(shown["agent"]["url"], CALLBACK);
    assert_eq!(shown["agent"]["version"], "13.0.0");
    assert_eq!(shown["agent"]["heartbeats"], 2);
    assert_eq!(shown["agent"]["token"], "issued");
    Ok(())
}

#[tokio::test]
async fn lookup_errors_are_ironics() -> anyhow::Result<()> {
    let server = Server::start()?;
    add_node(&server, "n1", &[MAC]).await?;
    let http = server.http()?;
    let get = |path: &str, version: Option<&str>| {
        let mut request = http.get(format!("{}{path}", server.url()));
        if let Some(version) = version {
            request = request.header("X-OpenStack-Ironic-API-Version", version);
        }
        request.send()
    };
    let fault = |body: &Value| -> Value {
        serde_json::from_str(body["error_message"].as_str().expect("error_message")).expect("JSON")
    };
    // No version header means 1.1, below the ramdisk endpoints: 404, as Ironic.
    let response = get(&format!("/v1/lookup?addresses={MAC}"), None).await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        response.headers()["X-OpenStack-Ironic-API-Maximum-Version"],
        "1.84"
    );
    let body: Value = response.json().await?;
    assert_eq!(
        fault(&body),
        json!({"faultcode": "Client", "faultstring": "Resource could not be found.", "debuginfo": null})
    );
    let response = get("/v1/lookup?addresses=02:00:00:00:00:99", Some("1.62")).await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = get("/v1/lookup?addresses=bogus", Some("1.62")).await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await?;
    assert_eq!(
        fault(&body)["faultstring"],
        "At least one of 'addresses' and 'node_uuid' parameters is required"
    );
    let response = get(&format!("/v1/lookup?addresses={MAC}"), Some("1.99")).await?;
    assert_eq!(response.status(), StatusCode::NOT_ACCEPTABLE);
    Ok(())
}

#[tokio::test]
async fn tls_callbacks_and_certificate_pinning() -> anyhow::Result<()> {
    let server = Server::start_with(true, &[])?;
    let node = add_node(&server, "n1", &[MAC]).await?;
    let uuid = node["uuid"].as_str().expect("a uuid").to_string();
    let client = client_for(&server);
    let answer = client.lookup(&[MAC.to_string()], None).await?;
    let TokenDecision::Adopt(token) = answer.config.token_decision() else {
        panic!("no token");
    };
    let token = Secret(token);
    let error = client
        .heartbeat(&uuid, CALLBACK, Some(&token), None)
        .await
        .expect_err("http:// callbacks are refused by default");
    assert!(
        error
            .to_string()
            .contains("TLS is required by configuration"),
        "{error}"
    );

    let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let https = "https://127.0.0.1:9999";
    client
        .heartbeat(&uuid, https, Some(&token), Some(pem))
        .await?;
    client
        .heartbeat(&uuid, https, Some(&token), Some(pem))
        .await?;
    let other = "-----BEGIN CERTIFICATE-----\nBBBB\n-----END CERTIFICATE-----\n";
    let error = client
        .heartbeat(&uuid, https, Some(&token), Some(other))
        .await
        .expect_err("a different certificate must be refused");
    assert!(
        error.to_string().contains(r#"provided "agent_verify_ca""#),
        "{error}"
    );
    let (_, shown) = server
        .operator(Method::GET, &format!("/v1/nodes/{uuid}"), None)
        .await?;
    assert_eq!(shown["agent"]["verify_ca"], pem);
    Ok(())
}

fn inventory(mac: &str, serial: &str) -> Value {
    json!({
        "inventory": {
            "interfaces": [{"name": "eth0", "mac_address": mac, "ipv4_address": "192.0.2.10"}],
            "cpu": {"architecture": "x86_64", "count": 2},
            "disks": [{"name": "/dev/vda", "size": 10737418240u64}],
            "memory": {"total": 4294967296u64, "physical_mb": 4096},
            "bmc_address": null, "bmc_v6address": null,
            "system_vendor": {"serial_number": serial, "manufacturer": "QEMU"},
            "boot": {"current_boot_mode": "uefi", "pxe_interface": mac},
            "hostname": "h",
        },
        "root_disk": {"name": "/dev/vda"},
        "error": null,
    })
}

#[tokio::test]
async fn inspection_stores_the_inventory_and_registers_when_allowed() -> anyhow::Result<()> {
    let server = Server::start_with(false, &["--allow-insecure-callbacks", "--auto-register"])?;
    let enrolled = add_node(&server, "known", &[]).await?;
    let http = server.http()?;
    let post = |body: Value, version: Option<&str>| {
        let mut request = http
            .post(format!("{}/v1/continue_inspection", server.url()))
            .json(&body);
        if let Some(version) = version {
            request = request.header("X-OpenStack-Ironic-API-Version", version);
        }
        request.send()
    };

    // An unknown machine registers itself; IPA sends no version header and gets {"uuid"}.
    let response = post(inventory(MAC, "SER-1"), None).await?;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let answer: Value = response.json().await?;
    let uuid = answer["uuid"].as_str().expect("a uuid").to_string();
    assert_eq!(answer.as_object().map(|o| o.len()), Some(1));
    let (_, node) = server
        .operator(Method::GET, &format!("/v1/nodes/{uuid}"), None)
        .await?;
    assert_eq!(node["state"], "inspected");
    assert_eq!(node["auto_registered"], true);
    assert_eq!(node["macs"], json!([MAC]));
    assert_eq!(node["serial"], "SER-1");
    let (_, stored) = server
        .operator(Method::GET, &format!("/v1/nodes/{uuid}/inventory"), None)
        .await?;
    assert_eq!(stored["hostname"], "h");

    // The enrolled node, found by node_uuid at 1.84, gets node, config and a token.
    let known = enrolled["uuid"].as_str().expect("a uuid");
    let body = inventory("52:54:00:00:00:77", "SER-2");
    let response = http
        .post(format!(
            "{}/v1/continue_inspection?node_uuid={known}",
            server.url()
        ))
        .header("X-OpenStack-Ironic-API-Version", "1.84")
        .json(&body)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let answer: Value = response.json().await?;
    assert_eq!(answer["node"]["uuid"], known);
    assert_eq!(
        answer["config"]["agent_token"].as_str().map(str::len),
        Some(43)
    );
    // node_uuid below 1.84 is refused as Ironic does.
    let response = http
        .post(format!(
            "{}/v1/continue_inspection?node_uuid={known}",
            server.url()
        ))
        .json(&body)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // Matching by serial: a second NIC of the first machine.
    let response = post(inventory("52:54:00:00:00:88", "SER-1"), None).await?;
    let answer: Value = response.json().await?;
    assert_eq!(answer["uuid"], uuid);
    let response = post(json!({"inventory": {"interfaces": []}}), None).await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    Ok(())
}

#[tokio::test]
async fn inspection_of_unknown_machines_is_refused_by_default() -> anyhow::Result<()> {
    let server = Server::start()?;
    let response = server
        .http()?
        .post(format!("{}/v1/continue_inspection", server.url()))
        .json(&inventory(MAC, "S"))
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let (_, nodes) = server.operator(Method::GET, "/v1/nodes", None).await?;
    assert_eq!(nodes["nodes"], json!([]));
    Ok(())
}

#[tokio::test]
async fn lookup_matches_system_uuid_and_serial() -> anyhow::Result<()> {
    let server = Server::start()?;
    let system_uuid = "4c4c4544-0042-3510-8052-b4c04f384d32";
    let mut uuids = Vec::new();
    for (name, serial, system) in [
        ("by-uuid", "SN-A", Some(system_uuid)),
        ("twin-1", "SN-TWIN", None),
        ("twin-2", "SN-TWIN", None),
    ] {
        let body = json!({"name": name, "serial": serial, "system_uuid": system});
        let (status, node) = server
            .operator(Method::POST, "/v1/nodes", Some(&body))
            .await?;
        assert_eq!(status, 201, "{node}");
        uuids.push(node["uuid"].as_str().expect("a uuid").to_string());
    }
    let http = server.http()?;
    let lookup = |query: String| {
        http.get(format!("{}/v1/lookup?{query}", server.url()))
            .header("X-OpenStack-Ironic-API-Version", "1.62")
            .send()
    };
    // A MAC nobody owns, then the system UUID: the system UUID decides.
    let response = lookup(format!(
        "addresses=02:00:00:00:00:77&system_uuid={system_uuid}"
    ))
    .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await?;
    assert_eq!(body["node"]["uuid"], uuids[0].as_str());
    let response = lookup("serial=SN-A".into()).await?;
    let body: Value = response.json().await?;
    assert_eq!(body["node"]["uuid"], uuids[0].as_str());
    // Two nodes with one serial: Ironic's answer for "several nodes" is "not found".
    let response = lookup("serial=SN-TWIN".into()).await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = lookup("serial=SN-NONE".into()).await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    Ok(())
}
