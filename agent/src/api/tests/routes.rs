//! Every route and status code of spec §3.2-§3.4.

use std::time::UNIX_EPOCH;

use rivet_protocol::command::CommandStatus;
use serde_json::{json, Value};

use super::{fault, loopback_settings, read, result, Agent, Call, FakeCommands, TOKEN};
use crate::api::handlers::{constant_time_eq, CommandQuery};
use crate::api::ServeOptions;
use crate::commands::service::ApiError;

const TOKEN_INVALID: &str = "401 Unauthorized: Token invalid.";
const NOT_FOUND: &str = "404 Not Found: The requested URL was not found on the server. If you \
     entered the URL manually please check your spelling and try again.";
const NOT_ALLOWED: &str =
    "405 Method Not Allowed: The method is not allowed for the requested URL.";
const BAD_COMMAND: &str = "400 Bad Request: Missing or invalid name or params";

fn with_token(path: &str) -> String {
    format!("{path}?agent_token={TOKEN}")
}

#[tokio::test]
async fn root_document_links_to_v1_on_the_requested_host() {
    let agent = Agent::start(FakeCommands::default()).await;
    let (status, body) = agent.get("/").await;
    assert_eq!(status, 200);
    let version = json!({
        "id": "v1",
        "links": [
            {"href": agent.url("/v1"), "rel": "self"},
            {"href": "https://docs.openstack.org/ironic-python-agent/", "rel": "describedby",
             "type": "text/html"},
        ],
    });
    assert_eq!(
        body,
        json!({
            "name": "OpenStack Ironic Python Agent API",
            "description": "Ironic Python Agent is a provisioning agent for OpenStack Ironic",
            "versions": [version.clone()],
            "default_version": version,
        })
    );
}

#[tokio::test]
async fn v1_document_has_resource_links_and_media_types() {
    let agent = Agent::start(FakeCommands::default()).await;
    let (status, body) = agent.get("/v1/").await;
    assert_eq!(status, 200);
    assert_eq!(body["id"], "v1");
    assert_eq!(
        body["media_types"],
        json!([{"base": "application/json",
                "type": "application/vnd.openstack.ironic-python-agent.v1+json"}])
    );
    assert_eq!(
        body["commands"],
        json!([{"href": agent.url("/v1/commands"), "rel": "self"},
               {"href": agent.url("/commands"), "rel": "bookmark"}])
    );
    assert_eq!(
        body["status"],
        json!([{"href": agent.url("/v1/status"), "rel": "self"},
               {"href": agent.url("/status"), "rel": "bookmark"}])
    );
    assert_eq!(body["links"][0]["href"], agent.url("/v1"));
}

#[tokio::test]
async fn status_reports_start_time_and_ipa_version_without_a_token() {
    let agent = Agent::start(FakeCommands::default()).await;
    let started_at = agent
        .ctx
        .started_at
        .duration_since(UNIX_EPOCH)
        .expect("start after the epoch")
        .as_secs_f64();
    for path in ["/v1/status", "/status"] {
        let (status, body) = agent.get(path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body["version"], "13.0.0", "{path}");
        let reported = body["started_at"].as_f64().expect("started_at is a number");
        // serde_json's float parsing may be off in the last digit; a microsecond is plenty.
        assert!(
            (reported - started_at).abs() < 1e-6,
            "{path}: started_at {reported}, expected {started_at}"
        );
        assert_eq!(body.as_object().map(|body| body.len()), Some(2), "{body}");
    }
}

#[tokio::test]
async fn list_commands_returns_results_oldest_first_on_both_prefixes() {
    let results = vec![
        result("a", "get_clean_steps", CommandStatus::Succeeded),
        result("b", "execute_clean_step", CommandStatus::Running),
    ];
    let agent = Agent::start(FakeCommands::with_results(results.clone())).await;
    for path in ["/v1/commands/", "/commands/"] {
        let (status, body) = agent.get(&with_token(path)).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, json!({"commands": results}), "{path}");
    }
}

#[tokio::test]
async fn run_command_passes_name_params_and_wait_to_the_engine() {
    let agent = Agent::start(FakeCommands::default()).await;
    let body = r#"{"name": "clean.execute_clean_step", "params": {"step": {"step": "x"}}}"#;
    let (status, reply) = agent
        .post(
            &format!("/v1/commands/?wait=false&agent_token={TOKEN}"),
            body,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        reply,
        json!({"id": "cmd-0", "command_name": "execute_clean_step", "command_status": "RUNNING",
               "command_error": null, "command_result": null})
    );
    let (status, _) = agent
        .post(
            &format!("/commands/?wait=true&agent_token={TOKEN}"),
            r#"{"name": "standby.sync", "params": {}}"#,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        agent.commands.calls(),
        vec![
            Call::Execute {
                name: "clean.execute_clean_step".into(),
                params: json!({"step": {"step": "x"}}),
                wait: false,
            },
            Call::Execute {
                name: "standby.sync".into(),
                params: json!({}),
                wait: true,
            },
        ]
    );
}

#[tokio::test]
async fn get_command_by_id_and_unknown_id() {
    let found = result("abc-1", "install_bootloader", CommandStatus::Running);
    let agent = Agent::start(FakeCommands::with_results(vec![found.clone()])).await;
    for path in ["/v1/commands/abc-1", "/commands/abc-1"] {
        let (status, body) = agent
            .get(&format!("{path}?wait=true&agent_token={TOKEN}"))
            .await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, serde_json::to_value(&found).expect("result JSON"));
    }
    let (status, body) = agent.get(&with_token("/v1/commands/nope")).await;
    assert_eq!(status, 404);
    assert_eq!(body, fault("Client", "Command nope not found"));
    let wait_flags: Vec<_> = agent
        .commands
        .calls()
        .into_iter()
        .map(|call| match call {
            Call::Get { id, wait } => (id, wait),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        wait_flags,
        vec![
            ("abc-1".to_owned(), true),
            ("abc-1".to_owned(), true),
            ("nope".to_owned(), false)
        ]
    );
}

/// Every command route, with the query `token_query` (`""` or `agent_token=...`).
async fn command_routes(agent: &Agent, token_query: &str) -> Vec<(String, u16, Value)> {
    let mut replies = Vec::new();
    for prefix in ["/v1", ""] {
        for path in [
            format!("{prefix}/commands/"),
            format!("{prefix}/commands/a"),
        ] {
            let (status, body) = agent.get(&format!("{path}?{token_query}")).await;
            replies.push((format!("GET {path}"), status, body));
        }
        let path = format!("{prefix}/commands/");
        let (status, body) = agent
            .post(
                &format!("{path}?wait=true&{token_query}"),
                r#"{"name": "standby.sync", "params": {}}"#,
            )
            .await;
        replies.push((format!("POST {path}"), status, body));
    }
    replies
}

fn assert_all_unauthorized(replies: Vec<(String, u16, Value)>) {
    assert_eq!(replies.len(), 6);
    for (route, status, body) in replies {
        assert_eq!(status, 401, "{route}");
        assert_eq!(body, fault("Client", TOKEN_INVALID), "{route}");
    }
}

#[tokio::test]
async fn missing_token_is_refused() {
    let agent = Agent::start(FakeCommands::default()).await;
    assert_all_unauthorized(command_routes(&agent, "").await);
    assert_eq!(agent.commands.calls(), vec![]);
}

#[tokio::test]
async fn wrong_token_is_refused() {
    let agent = Agent::start(FakeCommands::default()).await;
    let wrong = format!("{}X", &TOKEN[..TOKEN.len() - 1]);
    assert_all_unauthorized(command_routes(&agent, &format!("agent_token={wrong}")).await);
    assert_all_unauthorized(command_routes(&agent, "agent_token=").await);
    assert_eq!(agent.commands.calls(), vec![]);
}

#[tokio::test]
async fn token_in_a_header_is_not_enough() {
    let agent = Agent::start(FakeCommands::default()).await;
    let response = agent
        .client
        .get(agent.url("/v1/commands/"))
        .header("X-Agent-Token", TOKEN)
        .header("agent_token", TOKEN)
        .send()
        .await
        .expect("GET");
    let (status, body) = read(response).await;
    assert_eq!(status, 401);
    assert_eq!(body, fault("Client", TOKEN_INVALID));
}

#[tokio::test]
async fn agent_without_a_token_refuses_every_command() {
    let agent = Agent::start_with(
        loopback_settings(None),
        FakeCommands::default(),
        ServeOptions::default(),
    )
    .await;
    assert_all_unauthorized(command_routes(&agent, &format!("agent_token={TOKEN}")).await);
    assert_all_unauthorized(command_routes(&agent, "agent_token=").await);
    assert_eq!(agent.commands.calls(), vec![]);
}

#[tokio::test]
async fn engine_errors_pass_through_with_their_status() {
    let agent = Agent::start(FakeCommands::default()).await;
    let cases = [
        (
            ApiError::Busy("execute_clean_step".into()),
            409,
            fault(
                "Client",
                "Agent is busy: executing command execute_clean_step",
            ),
        ),
        (
            ApiError::InvalidCommand("no such command".into()),
            400,
            fault("Client", "Invalid command: no such command"),
        ),
        (
            ApiError::UnknownExtension("nope".into()),
            404,
            fault("Client", "Extension nope not found"),
        ),
        (
            ApiError::Internal("disk on fire".into()),
            500,
            fault("Server", "disk on fire"),
        ),
    ];
    for (error, expected_status, expected_body) in cases {
        agent.commands.fail_next(error);
        let (status, body) = agent
            .post(
                &with_token("/v1/commands/"),
                r#"{"name": "clean.execute_clean_step", "params": {}}"#,
            )
            .await;
        assert_eq!((status, body), (expected_status, expected_body));
    }
}

#[tokio::test]
async fn malformed_bodies_are_400_before_the_token_is_checked() {
    let agent = Agent::start(FakeCommands::default()).await;
    for query in [with_token("/v1/commands/"), "/v1/commands/".to_owned()] {
        let (status, body) = agent.post(&query, r#"{"name": "x.y", "params": "#).await;
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["faultcode"], "Client");
        let faultstring = body["faultstring"].as_str().expect("faultstring");
        assert!(
            faultstring.starts_with("400 Bad Request: Failed to decode JSON object: "),
            "{faultstring}"
        );
        for invalid in [
            r#"{"params": {}}"#,
            r#"{"name": "standby.sync"}"#,
            r#"{"name": "standby.sync", "params": []}"#,
            r#"{"name": "standby.sync", "params": "x"}"#,
            r#"{"name": 7, "params": {}}"#,
            r#"["standby.sync"]"#,
        ] {
            let (status, body) = agent.post(&query, invalid).await;
            assert_eq!(
                (status, body),
                (400, fault("Client", BAD_COMMAND)),
                "{invalid}"
            );
        }
    }
    assert_eq!(agent.commands.calls(), vec![]);
}

#[tokio::test]
async fn paths_without_trailing_slash_redirect_with_308_keeping_the_query() {
    let agent = Agent::start(FakeCommands::default()).await;
    let cases = [
        (
            "/v1/commands?wait=true&agent_token=x",
            "/v1/commands/?wait=true&agent_token=x",
        ),
        ("/commands?agent_token=x", "/commands/?agent_token=x"),
        ("/v1/commands", "/v1/commands/"),
        ("/v1", "/v1/"),
    ];
    for (from, to) in cases {
        for method in [reqwest::Method::GET, reqwest::Method::POST] {
            let response = agent
                .client
                .request(method.clone(), agent.url(from))
                .send()
                .await
                .expect("request");
            assert_eq!(response.status().as_u16(), 308, "{method} {from}");
            assert_eq!(
                response
                    .headers()
                    .get("location")
                    .and_then(|v| v.to_str().ok()),
                Some(to),
                "{method} {from}"
            );
        }
    }
}

#[tokio::test]
async fn a_client_following_the_redirect_reaches_the_command() {
    let agent = Agent::start(FakeCommands::default()).await;
    let response = reqwest::Client::new()
        .post(agent.url(&format!("/v1/commands?wait=true&agent_token={TOKEN}")))
        .body(r#"{"name": "standby.sync", "params": {}}"#)
        .send()
        .await
        .expect("POST");
    let (status, body) = read(response).await;
    assert_eq!(status, 200);
    assert_eq!(body["command_status"], "SUCCEEDED");
}

#[tokio::test]
async fn unknown_paths_are_404_with_a_fault_body() {
    let agent = Agent::start(FakeCommands::default()).await;
    for path in [
        "/nope",
        "/v2/",
        "/v1/status/",
        "/v1/commands/a/b",
        "/v1/v1/commands/",
    ] {
        let (status, body) = agent.get(&with_token(path)).await;
        assert_eq!((status, body), (404, fault("Client", NOT_FOUND)), "{path}");
    }
}

#[tokio::test]
async fn wrong_methods_are_405_with_a_fault_body_and_allow_header() {
    let agent = Agent::start(FakeCommands::default()).await;
    let cases = [
        (reqwest::Method::DELETE, "/v1/commands/", "GET,HEAD,POST"),
        (reqwest::Method::PUT, "/commands/", "GET,HEAD,POST"),
        (reqwest::Method::POST, "/v1/status", "GET,HEAD"),
        (reqwest::Method::POST, "/v1/commands/a", "GET,HEAD"),
        (reqwest::Method::DELETE, "/", "GET,HEAD"),
    ];
    for (method, path, allow) in cases {
        let response = agent
            .client
            .request(method.clone(), agent.url(&with_token(path)))
            .send()
            .await
            .expect("request");
        let allowed = response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let (status, body) = read(response).await;
        assert_eq!(
            (status, body),
            (405, fault("Client", NOT_ALLOWED)),
            "{method} {path}"
        );
        assert_eq!(allowed.as_deref(), Some(allow), "{method} {path}");
    }
    assert_eq!(agent.commands.calls(), vec![]);
}

#[tokio::test]
async fn wait_accepts_oslo_boolean_forms_over_http() {
    let agent = Agent::start(FakeCommands::default()).await;
    let forms = [
        ("true", true),
        ("True", true),
        ("1", true),
        ("yes", true),
        ("on", true),
        ("false", false),
        ("False", false),
        ("0", false),
        ("no", false),
    ];
    for (form, _) in forms {
        let (status, _) = agent
            .post(
                &format!("/v1/commands/?wait={form}&agent_token={TOKEN}"),
                r#"{"name": "standby.sync", "params": {}}"#,
            )
            .await;
        assert_eq!(status, 200, "wait={form}");
    }
    let seen: Vec<bool> = agent
        .commands
        .calls()
        .into_iter()
        .map(|call| match call {
            Call::Execute { wait, .. } => wait,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    let expected: Vec<bool> = forms.iter().map(|(_, wait)| *wait).collect();
    assert_eq!(seen, expected);
}

#[test]
fn query_parsing_takes_the_first_value_and_decodes() {
    let parse = |query: &str| CommandQuery::parse(Some(query));
    assert_eq!(CommandQuery::parse(None), CommandQuery::default());
    assert_eq!(
        parse("wait=true&agent_token=a%2Bb&agent_token=other"),
        CommandQuery {
            agent_token: Some("a+b".into()),
            wait: true
        }
    );
    for form in ["t", "y", "ON", " yes "] {
        assert!(parse(&format!("wait={form}")).wait, "{form}");
    }
    for form in ["", "maybe", "2", "f", "off"] {
        assert!(!parse(&format!("wait={form}")).wait, "{form}");
    }
    assert!(!parse("wait=false&wait=true").wait);
}

#[test]
fn constant_time_comparison() {
    assert!(constant_time_eq(b"secret", b"secret"));
    assert!(!constant_time_eq(b"secret", b"secreT"));
    assert!(!constant_time_eq(b"secret", b"secret!"));
    assert!(!constant_time_eq(b"secret", b""));
}

/// Replays what a real Ironic 39 conductor sent during a deploy and a clean
/// (tests/fixtures/ironic-39), and checks each call reaches the engine and answers 200.
#[tokio::test]
async fn recorded_conductor_calls_are_accepted() {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/ironic-39");
    for file in ["deploy-whole-disk.jsonl", "manual-clean.jsonl"] {
        let path = format!("{fixtures}/{file}");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|err| panic!("reading fixture {path}: {err}"));
        let records: Vec<Value> = text
            .lines()
            .map(|line| serde_json::from_str(line).expect("fixture line is JSON"))
            .filter(|record: &Value| record["kind"] == "conductor->agent")
            .collect();
        assert!(
            !records.is_empty(),
            "{path} has no conductor->agent records"
        );

        let agent = Agent::start(FakeCommands::default()).await;
        for record in &records {
            let method = record["method"].as_str().expect("method");
            let recorded_path = record["path"].as_str().expect("path");
            let query = record["query"]
                .as_object()
                .expect("query")
                .iter()
                .map(|(key, value)| (key.clone(), value.as_str().expect("query value").to_owned()))
                .collect::<Vec<_>>();
            let token = query
                .iter()
                .find(|(key, _)| key == "agent_token")
                .map(|(_, value)| value.clone())
                .expect("recorded call carries agent_token");
            // The recorded agent held the recording's token; ours holds TOKEN.
            let query: Vec<_> = query
                .into_iter()
                .map(|(key, value)| {
                    let value = if value == token {
                        TOKEN.to_owned()
                    } else {
                        value
                    };
                    (key, value)
                })
                .collect();
            let mut request = agent
                .client
                .request(method.parse().expect("method"), agent.url(recorded_path))
                .query(&query);
            if method == "POST" {
                request = request
                    .header("Content-Type", "application/json")
                    .body(serde_json::to_vec(&record["body"]).expect("body"));
            }
            let (status, _) = read(request.send().await.expect("request")).await;
            assert_eq!(status, 200, "{file}: {method} {recorded_path}");
        }
        let executed: Vec<String> = agent
            .commands
            .calls()
            .into_iter()
            .filter_map(|call| match call {
                Call::Execute { name, .. } => Some(name),
                Call::Get { .. } => None,
            })
            .collect();
        let recorded: Vec<String> = records
            .iter()
            .filter(|record| record["method"] == "POST")
            .map(|record| record["body"]["name"].as_str().expect("name").to_owned())
            .collect();
        assert_eq!(executed, recorded, "{file}");
    }
}
