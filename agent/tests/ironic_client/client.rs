//! IronicClient against FakeIronic: version discovery, the request shape, fail-over, error
//! bodies and heartbeat bodies by microversion.

use reqwest::StatusCode;
use rivet_agent::ironic::client::{ClientError, IronicClient};
use rivet_agent::settings::Secret;
use rivet_protocol::version::MicroVersion;
use serde_json::json;

use crate::fake_ironic::{
    recorded_lookup_answer, recordings, root_with_version, FakeIronic, Reply,
};
use crate::support::{closed_port_url, settings_for, TOKEN};

const MAC: &str = "52:54:00:12:34:56";

#[tokio::test]
async fn version_discovery_reads_the_maximum_and_caches_it() {
    let ironic = FakeIronic::start().await;
    let client = IronicClient::new(&settings_for(&[&ironic.url])).expect("a client");
    assert_eq!(client.api_version().await, MicroVersion::new(1, 115));
    assert_eq!(client.api_version().await, MicroVersion::new(1, 115));
    let roots = ironic.requests_to("/");
    let roots: Vec<_> = roots.iter().filter(|r| r.path == "/").collect();
    assert_eq!(roots.len(), 1, "discovery is cached");
    let root = roots[0];
    assert_eq!(root.header("X-OpenStack-Ironic-API-Version"), None);
    assert_eq!(root.header("Accept"), Some("application/json"));
    assert_eq!(root.header("Content-Type"), Some("application/json"));
}

#[tokio::test]
async fn version_discovery_falls_back_to_1_31_and_tries_again_later() {
    let ironic = FakeIronic::start().await;
    ironic.set_root(Reply::raw(503, "Service Unavailable"));
    let client = IronicClient::new(&settings_for(&[&ironic.url])).expect("a client");
    assert_eq!(client.api_version().await, MicroVersion::new(1, 31));
    ironic.set_root(Reply::json(200, &json!({"default_version": {"id": "v1"}})));
    assert_eq!(client.api_version().await, MicroVersion::new(1, 31));
    ironic.set_root(Reply::json(200, &root_with_version("1.87")));
    assert_eq!(client.api_version().await, MicroVersion::new(1, 87));
}

#[tokio::test]
async fn a_configured_version_skips_discovery() {
    let ironic = FakeIronic::start().await;
    ironic.script_lookup([Reply::json(200, &recorded_lookup_answer())]);
    let mut settings = settings_for(&[&ironic.url]);
    settings.ironic_api_version = Some(MicroVersion::new(1, 50));
    let client = IronicClient::new(&settings).expect("a client");
    client.lookup(&[MAC.into()], None).await.expect("lookup");
    let requests = ironic.requests();
    assert_eq!(requests.len(), 1, "no GET /: {requests:?}");
    assert_eq!(
        requests[0].header("X-OpenStack-Ironic-API-Version"),
        Some("1.50")
    );
}

#[tokio::test]
async fn lookup_request_matches_the_recording() {
    let recorded = recordings::first_agent_call("manual-clean.jsonl", "GET", "/v1/lookup");
    let ironic = FakeIronic::start().await;
    ironic.script_lookup([Reply::json(200, &recorded["resp_body"])]);
    let client = IronicClient::new(&settings_for(&[&ironic.url])).expect("a client");
    let answer = client.lookup(&[MAC.into()], None).await.expect("lookup");
    assert_eq!(answer.node.uuid, "ad027926-c944-48a4-9230-a66134b75211");

    let sent = ironic.requests_to("/v1/lookup").remove(0);
    assert_eq!(sent.method.as_str(), recorded["method"]);
    assert_eq!(sent.path_and_query(), recorded["path"]);
    for (name, value) in recorded["headers"].as_object().expect("headers") {
        assert_eq!(sent.header(name), value.as_str(), "header {name}");
    }
    assert_eq!(sent.header("X-OpenStack-Request-ID"), None);
}

#[tokio::test]
async fn lookup_with_several_macs_a_node_uuid_and_a_request_id() {
    let ironic = FakeIronic::start().await;
    ironic.script_lookup([Reply::json(200, &recorded_lookup_answer())]);
    let mut settings = settings_for(&[&ironic.url]);
    settings.global_request_id = Some("req-4ea9cfcc-de6b-4800-bbfd-59e766f6a3a8".into());
    let client = IronicClient::new(&settings).expect("a client");
    let macs = vec![MAC.to_string(), "52:54:00:12:34:57".to_string()];
    client
        .lookup(&macs, Some("66500126-0c77-4904-ae0d-628029ecb6b9"))
        .await
        .expect("lookup");
    let sent = ironic.requests_to("/v1/lookup").remove(0);
    assert_eq!(
        sent.query.as_deref(),
        Some(
            "addresses=52%3A54%3A00%3A12%3A34%3A56%2C52%3A54%3A00%3A12%3A34%3A57\
             &node_uuid=66500126-0c77-4904-ae0d-628029ecb6b9"
        )
    );
    assert_eq!(
        sent.header("X-OpenStack-Request-ID"),
        Some("req-4ea9cfcc-de6b-4800-bbfd-59e766f6a3a8")
    );
    for request in ironic.requests() {
        assert!(
            request.header("X-OpenStack-Request-ID").is_some(),
            "{request:?}"
        );
    }
}

#[tokio::test]
async fn lookup_asks_for_at_most_1_62() {
    for (server, expected) in [("1.115", "1.62"), ("1.50", "1.50")] {
        let ironic = FakeIronic::start().await;
        ironic.set_root(Reply::json(200, &root_with_version(server)));
        ironic.script_lookup([Reply::json(200, &recorded_lookup_answer())]);
        let client = IronicClient::new(&settings_for(&[&ironic.url])).expect("a client");
        client.lookup(&[MAC.into()], None).await.expect("lookup");
        let sent = ironic.requests_to("/v1/lookup").remove(0);
        assert_eq!(
            sent.header("X-OpenStack-Ironic-API-Version"),
            Some(expected),
            "server {server}"
        );
    }
}

#[tokio::test]
async fn fails_over_to_the_next_url_and_keeps_the_working_one_first() {
    let ironic = FakeIronic::start().await;
    let dead = closed_port_url("127.0.0.1");
    ironic.script_lookup([
        Reply::json(200, &recorded_lookup_answer()),
        Reply::json(200, &recorded_lookup_answer()),
    ]);
    let client = IronicClient::new(&settings_for(&[&dead, &ironic.url])).expect("a client");
    client.lookup(&[MAC.into()], None).await.expect("lookup");
    assert_eq!(client.api_urls(), vec![ironic.url.clone(), dead.clone()]);
    client.lookup(&[MAC.into()], None).await.expect("lookup");
    assert_eq!(client.api_urls(), vec![ironic.url.clone(), dead]);
    assert_eq!(ironic.requests_to("/v1/lookup").len(), 2);
}

#[tokio::test]
async fn every_url_down_is_a_transport_error_naming_the_last_url() {
    let first = closed_port_url("127.0.0.1");
    let second = closed_port_url("127.0.0.1");
    let client = IronicClient::new(&settings_for(&[&first, &second])).expect("a client");
    let err = client
        .lookup(&[MAC.into()], None)
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, ClientError::Transport { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(&second.to_string().trim_end_matches('/').to_string()),
        "{text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert_eq!(client.api_urls(), vec![first, second]);
}

#[tokio::test]
async fn ironic_error_bodies_become_errors_that_keep_the_status() {
    let recorded = recordings::agent_calls("inspect.jsonl", "GET", "/v1/lookup");
    let conflict = recorded
        .iter()
        .find(|record| record["status"] == 409)
        .expect("the inspect recording has a 409");
    let ironic = FakeIronic::start().await;
    ironic.script_lookup([Reply::json(409, &conflict["resp_body"])]);
    ironic.script_heartbeat([Reply::ironic_error(
        400,
        "Invalid or missing agent token received.",
    )]);
    let client = IronicClient::new(&settings_for(&[&ironic.url])).expect("a client");

    let err = client
        .lookup(&[MAC.into()], None)
        .await
        .expect_err("a conflict");
    assert_eq!(err.status(), Some(StatusCode::CONFLICT));
    assert!(
        err.to_string().ends_with(
            "HTTP 409 Conflict: Node 66500126-0c77-4904-ae0d-628029ecb6b9 is locked by host \
             127.0.0.1, please retry after the current operation is completed."
        ),
        "{err}"
    );

    let token = Secret(TOKEN.into());
    let err = client
        .heartbeat("u", "http://127.0.0.1:9999", Some(&token), None)
        .await
        .expect_err("a bad token");
    assert_eq!(err.status(), Some(StatusCode::BAD_REQUEST));
    let text = err.to_string();
    assert!(
        text.ends_with("HTTP 400 Bad Request: Invalid or missing agent token received."),
        "{text}"
    );
    assert!(!text.contains(TOKEN) && !format!("{err:?}").contains(TOKEN));
}

#[tokio::test]
async fn unusable_lookup_answers_are_errors() {
    let ironic = FakeIronic::start().await;
    ironic.script_lookup([
        Reply::raw(200, "<html>proxy page</html>"),
        Reply::json(200, &json!({"node": {"name": "x"}, "config": {}})),
        Reply::json(200, &json!({"node": {"uuid": "u"}})),
    ]);
    let client = IronicClient::new(&settings_for(&[&ironic.url])).expect("a client");
    for expected in ["not JSON", "no node.uuid", "no config"] {
        let err = client
            .lookup(&[MAC.into()], None)
            .await
            .expect_err("unusable");
        assert!(
            matches!(err, ClientError::InvalidResponse { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains(expected), "{err}");
    }
}

#[tokio::test]
async fn heartbeat_matches_the_recording() {
    let recorded = recordings::first_agent_call("manual-clean.jsonl", "POST", "/v1/heartbeat/");
    let body = &recorded["body"];
    let ironic = FakeIronic::start().await;
    let client = IronicClient::new(&settings_for(&[&ironic.url])).expect("a client");
    let token = Secret(body["agent_token"].as_str().expect("a token").into());
    client
        .heartbeat(
            "ad027926-c944-48a4-9230-a66134b75211",
            body["callback_url"].as_str().expect("a callback URL"),
            Some(&token),
            None,
        )
        .await
        .expect("heartbeat accepted");
    let sent = ironic.requests_to("/v1/heartbeat/").remove(0);
    assert_eq!(sent.method.as_str(), recorded["method"]);
    assert_eq!(sent.path_and_query(), recorded["path"]);
    assert_eq!(sent.body.as_ref(), Some(body));
    for (name, value) in recorded["headers"].as_object().expect("headers") {
        assert_eq!(sent.header(name), value.as_str(), "header {name}");
    }
}

#[tokio::test]
async fn heartbeat_fields_and_header_follow_the_server_version() {
    let ca = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let cases = [
        ("1.31", "1.31", vec!["callback_url"]),
        ("1.36", "1.36", vec!["agent_version", "callback_url"]),
        (
            "1.62",
            "1.62",
            vec!["agent_token", "agent_version", "callback_url"],
        ),
        (
            "1.115",
            "1.68",
            vec![
                "agent_token",
                "agent_verify_ca",
                "agent_version",
                "callback_url",
            ],
        ),
    ];
    for (server, header, fields) in cases {
        let ironic = FakeIronic::start().await;
        ironic.set_root(Reply::json(200, &root_with_version(server)));
        let client = IronicClient::new(&settings_for(&[&ironic.url])).expect("a client");
        let token = Secret(TOKEN.into());
        client
            .heartbeat("u", "https://127.0.0.1:9999", Some(&token), Some(ca))
            .await
            .expect("heartbeat accepted");
        let sent = ironic.requests_to("/v1/heartbeat/u").remove(0);
        assert_eq!(
            sent.header("X-OpenStack-Ironic-API-Version"),
            Some(header),
            "server {server}"
        );
        let body = sent.body.expect("a JSON body");
        let mut keys: Vec<&str> = body
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(keys, fields, "server {server}");
        if server == "1.115" {
            assert_eq!(body["agent_verify_ca"], ca);
            assert_eq!(body["agent_token"], TOKEN);
            assert_eq!(body["agent_version"], "13.0.0");
        }
    }
}

#[tokio::test]
async fn heartbeat_conflict_keeps_its_status() {
    let ironic = FakeIronic::start().await;
    ironic.script_heartbeat([Reply::ironic_error(409, "Node is locked by host conductor")]);
    let client = IronicClient::new(&settings_for(&[&ironic.url])).expect("a client");
    let err = client
        .heartbeat("u", "https://127.0.0.1:9999", None, None)
        .await
        .expect_err("a conflict");
    assert_eq!(err.status(), Some(StatusCode::CONFLICT));
    let sent = ironic.requests_to("/v1/heartbeat/u").remove(0);
    assert_eq!(
        sent.body.expect("a body")["agent_token"],
        serde_json::Value::Null
    );
}

#[test]
fn no_api_url_is_an_error() {
    let err = IronicClient::new(&rivet_agent::settings::Settings::default()).expect_err("no URL");
    assert!(err.to_string().contains("ipa-api-url"), "{err}");
}
