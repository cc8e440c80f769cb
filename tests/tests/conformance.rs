//! Conformance of the agent's command API with what Ironic 39's conductor needs
//! (`tests/fixtures/ironic-39/RECORDING.md`, spec §3-§6).
//!
//! Each recording's conductor requests are replayed against the real API and command engine,
//! in process, over HTTPS with an auto-TLS certificate for 127.0.0.1 that the client pins
//! (TLS 1.3 at least, as the conductor). The host is faked: no disk, no power action.
//! Then the error replies the conductor relies on: 401, 409, 400, 404, 308, and the TLS floor
//! that lookup sets.

use reqwest::tls::Version;
use reqwest::StatusCode;
use rivet_agent::power::PowerAction;
use rivet_agent::settings::TlsVersion;
use rivet_tests::conductor_view::{
    check_command_result, check_fault, step_progress, unpack_system_logs, StepProgress,
};
use rivet_tests::in_process::{InProcessAgent, LOG_MARKER};
use rivet_tests::or_panic;
use rivet_tests::recording::Recording;
use rivet_tests::replay::{wait_until_idle, Outcome, Replay, ReplayOptions};
use serde_json::{json, Value};

const DEPLOY: &str = "deploy-whole-disk";
const CLEAN: &str = "manual-clean";

/// Disk steps the recorded agent ran that this build does not implement yet: they must fail
/// with "<step> is not supported by this build". Take a step out when it is implemented, and
/// before that give `InProcessAgent` a fake for its disk access: the replay runs the step in
/// the test process, on this machine.
const NOT_YET_IMPLEMENTED: &[&str] = &[];

/// Disk steps this build implements: `InProcessAgent` lists no block devices, so they must
/// fail with this IPA error before touching anything.
const NO_DISK: &[(&str, &str)] = &[("write_image", "DeviceNotFound")];

/// rivet's own steps, which the recorded (IPA-shaped) agent did not advertise.
const RIVET_STEPS: &[&str] = &["sleep", "verify_wiring"];

/// IPA's reply to a missing or wrong token, as the conductor recorded it (faults.jsonl,
/// `reject-token`).
const TOKEN_INVALID: &str = "401 Unauthorized: Token invalid.";

/// A fresh token, as long as Ironic's.
fn new_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn options(step_override: Option<Value>) -> ReplayOptions {
    ReplayOptions {
        step_override,
        not_yet_implemented: NOT_YET_IMPLEMENTED.iter().map(|s| s.to_string()).collect(),
        no_disk: NO_DISK
            .iter()
            .map(|(step, error)| (step.to_string(), error.to_string()))
            .collect(),
        rivet_steps: RIVET_STEPS.iter().map(|s| s.to_string()).collect(),
    }
}

/// Replays `name` against a fresh agent, checks that every conductor request was replayed,
/// then collects the system logs as the conductor does after a failed step. Returns the agent,
/// the outcome of every posted command and the system log archive's members.
async fn replay(
    name: &str,
    step_override: Option<Value>,
) -> (InProcessAgent, Vec<Outcome>, Vec<(String, Vec<u8>)>) {
    let recording = or_panic(Recording::load(name));
    let token = new_token();
    let lookup = or_panic(recording.lookup_answer(Some(&token)));
    let agent = or_panic(InProcessAgent::start(Some(&lookup)).await);
    let mut replay = or_panic(Replay::new(
        &recording,
        &agent,
        &token,
        options(step_override),
    ));
    let replayed = or_panic(replay.run().await);
    let recorded = or_panic(recording.conductor_requests()).len();
    assert!(recorded > 0, "{name} holds no conductor->agent request");
    assert_eq!(
        replayed, recorded,
        "{name}: replayed {replayed} of the {recorded} conductor requests"
    );
    or_panic(replay.wait_until_idle().await);
    let members = collect_system_logs(&agent, &token).await;
    let outcomes = replay.posted().iter().map(|p| p.outcome.clone()).collect();
    (agent, outcomes, members)
}

/// `log.collect_system_logs` (sync, `wait=true`, `{}`): a base64 tar.gz that unpacks and
/// holds the agent's log. Returns the archive's members.
async fn collect_system_logs(agent: &InProcessAgent, token: &str) -> Vec<(String, Vec<u8>)> {
    let client = or_panic(agent.conductor_client());
    let response = client
        .post(agent.url("/v1/commands/"))
        .query(&[("wait", "true"), ("agent_token", token)])
        .json(&json!({"name": "log.collect_system_logs", "params": {}}))
        .send()
        .await
        .expect("posting log.collect_system_logs");
    assert_eq!(response.status(), StatusCode::OK);
    let result: Value = response.json().await.expect("a JSON command result");
    or_panic(check_command_result(&result));
    assert_eq!(result["command_name"], "collect_system_logs");
    assert_eq!(result["command_status"], "SUCCEEDED", "{result}");
    let members = or_panic(unpack_system_logs(&result["command_result"]));
    let log = members
        .iter()
        .find(|(name, _)| name == "rivet-agent.log")
        .unwrap_or_else(|| panic!("no rivet-agent.log in the archive: {members:?}"));
    assert!(
        String::from_utf8_lossy(&log.1).contains(LOG_MARKER),
        "rivet-agent.log lacks the agent's log lines"
    );
    members
}

fn status(status: &str) -> Outcome {
    Outcome::Status(status.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_whole_disk_replays_as_the_conductor_needs() {
    let (agent, outcomes, _) = replay(DEPLOY, None).await;
    assert_eq!(
        outcomes,
        [
            status("SUCCEEDED"),
            Outcome::FailsWith {
                step: "write_image".into(),
                error_type: "DeviceNotFound".into()
            },
            status("SUCCEEDED"),
            status("SUCCEEDED"),
            status("SUCCEEDED"),
        ],
        "get_deploy_steps, write_image, get_partition_uuids, install_bootloader, power_off"
    );
    assert_eq!(
        agent.power.calls(),
        [PowerAction::PowerOff],
        "standby.power_off must reach the power control once"
    );
    assert!(
        agent.fs_sync.calls().iter().any(|c| c == "sync"),
        "power_off must flush file systems first: {:?}",
        agent.fs_sync.calls()
    );
    or_panic(agent.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_clean_replays_as_the_conductor_needs() {
    let (agent, outcomes, members) = replay(CLEAN, None).await;
    assert_eq!(
        outcomes,
        [status("SUCCEEDED"), status("SUCCEEDED")],
        "get_clean_steps, erase_devices_metadata"
    );
    assert!(agent.power.calls().is_empty(), "cleaning powers nothing");
    let disk = agent.disk.contents();
    assert!(
        disk[..4 << 20].iter().all(|&b| b == 0)
            && disk[disk.len() - (4 << 20)..].iter().all(|&b| b == 0),
        "erase_devices_metadata zeroes both ends of the fake disk"
    );
    assert_eq!(disk[8 << 20], 0xAA, "and leaves the middle alone");
    let reports = members
        .iter()
        .find(|(name, _)| name == "erase-reports.json")
        .expect("the system logs carry the erase reports");
    let reports: Value = serde_json::from_slice(&reports.1).expect("erase-reports.json is JSON");
    let vda = &reports["erase_devices_metadata"]["devices"][0];
    assert_eq!(vda["device"], "/dev/vda", "{reports}");
    assert_eq!(vda["outcome"], "erased", "{reports}");
    assert_eq!(vda["verification"]["passed"], true, "{reports}");
    or_panic(agent.shutdown().await);
}

/// The recorded traffic with rivet's `sleep` step in place of the disk step: the step must
/// succeed and be echoed exactly as sent, which the conductor needs to move on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_with_a_step_rivet_implements_is_echoed() {
    let step = json!({"interface": "deploy", "step": "sleep", "args": {"seconds": 1},
                      "priority": 80, "abortable": true, "argsinfo": null});
    let (agent, outcomes, _) = replay(DEPLOY, Some(step)).await;
    assert_eq!(outcomes[1], status("SUCCEEDED"));
    or_panic(agent.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_clean_with_a_step_rivet_implements_is_echoed() {
    let step = json!({"interface": "deploy", "step": "sleep", "args": {"seconds": 1},
                      "abortable": true, "priority": 0});
    let (agent, outcomes, _) = replay(CLEAN, Some(step)).await;
    assert_eq!(outcomes, [status("SUCCEEDED"), status("SUCCEEDED")]);
    or_panic(agent.shutdown().await);
}

// ---- error replies ----

/// An agent set up from the manual-clean lookup, holding `token` (none when `None`).
async fn agent_with(token: Option<&str>) -> (Recording, InProcessAgent) {
    let recording = or_panic(Recording::load(CLEAN));
    let lookup = or_panic(recording.lookup_answer(token));
    let agent = or_panic(InProcessAgent::start(Some(&lookup)).await);
    (recording, agent)
}

/// The recorded `clean.get_clean_steps` body.
fn get_clean_steps_body(recording: &Recording) -> Value {
    or_panic(recording.conductor_requests())
        .into_iter()
        .filter_map(|r| r.body)
        .find(|b| b["name"] == "clean.get_clean_steps")
        .expect("manual-clean holds clean.get_clean_steps")
}

/// Sends a request; returns the status and the body (JSON when there is one).
async fn call(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("sending the request");
    let status = response.status();
    let bytes = response.bytes().await.expect("reading the answer");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "{status}: the body is not JSON ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    };
    (status, body)
}

/// `status` with a `{faultcode, faultstring}` body; returns the faultstring.
fn assert_fault(answer: &(StatusCode, Value), want: StatusCode) -> String {
    assert_eq!(answer.0, want, "{}", answer.1);
    or_panic(check_fault(&answer.1)).to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_or_wrong_token_is_401_token_invalid() {
    let token = new_token();
    let (recording, agent) = agent_with(Some(&token)).await;
    let client = or_panic(agent.conductor_client());
    let commands = agent.url("/v1/commands/");
    let wrong = new_token();
    let body = get_clean_steps_body(&recording);
    let requests = [
        ("GET without a token", client.get(&commands)),
        (
            "GET with a wrong token",
            client.get(&commands).query(&[("agent_token", &wrong)]),
        ),
        (
            "GET with an empty token",
            client.get(&commands).query(&[("agent_token", "")]),
        ),
        (
            "GET with the token as a header",
            client.get(&commands).header("X-Agent-Token", &token),
        ),
        (
            "POST without a token",
            client
                .post(&commands)
                .query(&[("wait", "true")])
                .json(&body),
        ),
        (
            "POST with a wrong token",
            client
                .post(&commands)
                .query(&[("wait", "true"), ("agent_token", &wrong)])
                .json(&body),
        ),
    ];
    for (what, request) in requests {
        let faultstring = assert_fault(&call(request).await, StatusCode::UNAUTHORIZED);
        assert_eq!(faultstring, TOKEN_INVALID, "{what}");
    }
    let (status, listed) = call(client.get(&commands).query(&[("agent_token", &token)])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        listed,
        json!({"commands": []}),
        "a refused POST ran nothing"
    );
    or_panic(agent.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_without_a_token_refuses_every_call() {
    let (recording, agent) = agent_with(None).await;
    assert!(agent.ctx.token().is_none(), "the agent must hold no token");
    let client = or_panic(agent.conductor_client());
    let commands = agent.url("/v1/commands/");
    let recorded_token = or_panic(recording.conductor_requests())[0]
        .query
        .iter()
        .find(|(k, _)| k == "agent_token")
        .map(|(_, v)| v.clone())
        .expect("the recording's token");
    let body = get_clean_steps_body(&recording);
    for token in [recorded_token.as_str(), ""] {
        let listed = call(client.get(&commands).query(&[("agent_token", token)])).await;
        assert_eq!(
            assert_fault(&listed, StatusCode::UNAUTHORIZED),
            TOKEN_INVALID
        );
        let posted = client
            .post(&commands)
            .query(&[("wait", "true"), ("agent_token", token)])
            .json(&body);
        assert_eq!(
            assert_fault(&call(posted).await, StatusCode::UNAUTHORIZED),
            TOKEN_INVALID
        );
    }
    or_panic(agent.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_agent_answers_409_agent_is_busy() {
    let token = new_token();
    let (recording, agent) = agent_with(Some(&token)).await;
    let client = or_panic(agent.conductor_client());
    let commands = agent.url("/v1/commands/");
    let post = |wait: &str, body: &Value| {
        client
            .post(&commands)
            .query(&[("wait", wait), ("agent_token", &token)])
            .json(body)
    };
    let hold = json!({"name": "clean.execute_clean_step", "params": {
        "step": {"interface": "deploy", "step": "sleep", "args": {"seconds": 5},
                 "abortable": true, "priority": 0},
        "node": {}, "ports": [], "clean_version": null}});
    let (status, running) = call(post("false", &hold)).await;
    assert_eq!(status, StatusCode::OK, "{running}");
    assert_eq!(running["command_status"], "RUNNING", "{running}");

    let steps = get_clean_steps_body(&recording);
    let retried = [
        steps.clone(),
        json!({"name": "log.collect_system_logs", "params": {}}),
    ];
    for body in &retried {
        let faultstring = assert_fault(&call(post("true", body)).await, StatusCode::CONFLICT);
        assert!(
            faultstring.contains("Agent is busy"),
            "{}: the conductor retries on 409 or \"agent is busy\": {faultstring:?}",
            body["name"]
        );
    }

    let idle = or_panic(wait_until_idle(&agent, &client, &token).await);
    assert_eq!(idle.len(), 1, "refused commands are not recorded: {idle:?}");
    assert_eq!(idle[0]["command_status"], "SUCCEEDED", "{}", idle[0]);
    let (status, done) = call(post("true", &steps)).await;
    assert_eq!(status, StatusCode::OK, "no longer busy: {done}");
    assert_eq!(done["command_status"], "SUCCEEDED");
    or_panic(agent.shutdown().await);
}

/// A conductor that cached the steps of another agent (the recorded IPA's
/// `hardware_manager_version`) gets CLEAN_VERSION_MISMATCH with IPA's 409 `VersionMismatch`
/// error as the last command, and refreshes its steps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_hardware_manager_version_is_a_version_mismatch() {
    let token = new_token();
    let (_, agent) = agent_with(Some(&token)).await;
    let client = or_panic(agent.conductor_client());
    let step = json!({"interface": "deploy", "step": "sleep", "args": {"seconds": 0},
                      "abortable": true, "priority": 0});
    let recorded_version = json!({"generic_hardware_manager": "1.2"});
    let body = json!({"name": "clean.execute_clean_step", "params": {
        "step": step, "node": {}, "ports": [], "clean_version": recorded_version}});
    let (status, running) = call(
        client
            .post(agent.url("/v1/commands/"))
            .query(&[("wait", "false"), ("agent_token", &token)])
            .json(&body),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{running}");
    let commands = or_panic(wait_until_idle(&agent, &client, &token).await);
    let StepProgress::Done(last) = step_progress(&commands, "clean", &step) else {
        panic!("the conductor would not see the step over: {commands:?}");
    };
    or_panic(check_command_result(&last));
    assert_eq!(last["command_status"], "CLEAN_VERSION_MISMATCH", "{last}");
    assert_eq!(last["command_error"]["type"], "VersionMismatch", "{last}");
    assert_eq!(last["command_error"]["code"], 409, "{last}");
    or_panic(agent.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_body_is_400_with_a_faultstring() {
    let token = new_token();
    let (_, agent) = agent_with(Some(&token)).await;
    let client = or_panic(agent.conductor_client());
    let bodies: [(&str, &[u8]); 5] = [
        ("broken JSON", b"{\"name\": \"clean.get_clean_steps\", "),
        ("not JSON", b"name=clean.get_clean_steps"),
        ("a list", b"[]"),
        ("no params", b"{\"name\": \"standby.get_partition_uuids\"}"),
        (
            "params not an object",
            b"{\"name\": \"standby.get_partition_uuids\", \"params\": []}",
        ),
    ];
    for (what, body) in bodies {
        let request = client
            .post(agent.url("/v1/commands/"))
            .query(&[("wait", "true"), ("agent_token", &token)])
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        let faultstring = assert_fault(&call(request).await, StatusCode::BAD_REQUEST);
        assert!(!faultstring.is_empty(), "{what}: empty faultstring");
    }
    or_panic(agent.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_extension_and_path_are_404() {
    let token = new_token();
    let (_, agent) = agent_with(Some(&token)).await;
    let client = or_panic(agent.conductor_client());
    let request = client
        .post(agent.url("/v1/commands/"))
        .query(&[("wait", "true"), ("agent_token", &token)])
        .json(&json!({"name": "nosuch.get_clean_steps", "params": {}}));
    let faultstring = assert_fault(&call(request).await, StatusCode::NOT_FOUND);
    assert!(faultstring.contains("nosuch"), "{faultstring:?}");
    let unknown_path = client
        .get(agent.url("/v1/nosuch"))
        .query(&[("agent_token", &token)]);
    assert_fault(&call(unknown_path).await, StatusCode::NOT_FOUND);
    or_panic(agent.shutdown().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_without_a_slash_redirect_with_308() {
    let token = new_token();
    let (_, agent) = agent_with(Some(&token)).await;
    let client = or_panic(agent.conductor_client());
    let response = client
        .get(agent.url("/v1/commands"))
        .query(&[("agent_token", &token)])
        .send()
        .await
        .expect("GET /v1/commands");
    assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
    let location = response
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .expect("a Location header");
    assert_eq!(location, format!("/v1/commands/?agent_token={token}"));
    let (status, listed) = call(client.get(agent.url(location))).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed, json!({"commands": []}));
    or_panic(agent.shutdown().await);
}

/// The agent's settings ask for TLS 1.2 at least; the recorded lookup says 1.3, as Ironic's
/// default `[agent]tls_minimum_version`: a TLS 1.2-only client is then refused. With a lookup
/// that says 1.2, the same client gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_floor_comes_from_lookup() {
    let recording = or_panic(Recording::load(CLEAN));
    let token = new_token();
    let lookup = or_panic(recording.lookup_answer(Some(&token)));
    assert_eq!(lookup.config.tls_min_version.as_deref(), Some("1.3"));
    let agent = or_panic(InProcessAgent::start(Some(&lookup)).await);
    assert_eq!(agent.ctx.state().tls_min_version, TlsVersion::Tls13);
    let tls12_only = or_panic(agent.client(Version::TLS_1_2, Some(Version::TLS_1_2)));
    let refused = tls12_only.get(agent.url("/")).send().await;
    assert!(
        refused.is_err(),
        "a TLS 1.2-only client got in: {refused:?}"
    );
    let conductor = or_panic(agent.conductor_client());
    let (status, _) = call(conductor.get(agent.url("/"))).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "TLS 1.3 with the pinned certificate"
    );
    or_panic(agent.shutdown().await);

    let mut lookup12 = lookup.clone();
    lookup12.config.tls_min_version = Some("1.2".into());
    let agent = or_panic(InProcessAgent::start(Some(&lookup12)).await);
    let tls12_only = or_panic(agent.client(Version::TLS_1_2, Some(Version::TLS_1_2)));
    let (status, _) = call(tls12_only.get(agent.url("/"))).await;
    assert_eq!(status, StatusCode::OK, "TLS 1.2 allowed by lookup");
    or_panic(agent.shutdown().await);
}
