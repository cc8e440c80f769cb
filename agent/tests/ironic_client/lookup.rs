//! The lookup loop against FakeIronic (virtual time), and applying lookup answers.

use std::time::Duration;

use rivet_agent::context::{AgentContext, Lifecycle};
use rivet_agent::ironic::client::IronicClient;
use rivet_agent::ironic::lookup::{
    apply_lookup, lookup_node, ApplyOutcome, LookupError, LookupPolicy,
};
use rivet_agent::pace::FakeClock;
use rivet_agent::settings::{Secret, Settings, TlsVersion};
use rivet_protocol::lookup::LookupResponse;
use serde_json::{json, Value};

use crate::fake_ironic::{recorded_lookup_answer, recordings, FakeIronic, Reply};
use crate::support::{pacer, secs, settings_for, TOKEN};

fn macs() -> Vec<String> {
    vec!["52:54:00:12:34:56".to_string()]
}

fn policy(timeout_secs: u64) -> LookupPolicy {
    LookupPolicy {
        timeout: Duration::from_secs(timeout_secs),
        min_interval: Duration::from_secs(1),
        max_interval: Duration::from_secs(60),
    }
}

#[tokio::test]
async fn not_found_is_retried_until_the_node_shows_up() {
    let ironic = FakeIronic::start().await;
    ironic.script_lookup([
        Reply::ironic_error(404, "Resource could not be found."),
        Reply::ironic_error(404, "Resource could not be found."),
        Reply::json(200, &recorded_lookup_answer()),
    ]);
    let client = IronicClient::new(&settings_for(&[&ironic.url])).expect("a client");
    let clock = FakeClock::auto();
    let answer = lookup_node(
        &client,
        &macs(),
        None,
        policy(600),
        &pacer(clock.clone(), 1.0),
    )
    .await
    .expect("the node is found");
    assert_eq!(answer.node.uuid, "072a1d4d-2109-4966-9aab-708de8cfa79d");
    assert_eq!(ironic.requests_to("/v1/lookup").len(), 3);
    // Backoff at the top of its range: 1 s, then 2 s.
    assert_eq!(secs(&clock.slept()), vec![1.0, 2.0]);
}

#[tokio::test]
async fn conflicts_add_escalating_pauses_that_never_reset() {
    let ironic = FakeIronic::start().await;
    let locked = Reply::ironic_error(409, "Node is locked by host 127.0.0.1");
    ironic.script_lookup([
        locked.clone(),
        locked.clone(),
        Reply::ironic_error(404, "Resource could not be found."),
        locked.clone(),
        locked,
        Reply::json(200, &recorded_lookup_answer()),
    ]);
    let client = IronicClient::new(&settings_for(&[&ironic.url])).expect("a client");
    let clock = FakeClock::auto();
    lookup_node(
        &client,
        &macs(),
        None,
        policy(600),
        &pacer(clock.clone(), 0.0),
    )
    .await
    .expect("the node is found");
    // Each failure waits the backoff minimum (1 s); each 409 adds 5, 10, 30, 30 s first.
    assert_eq!(
        secs(&clock.slept()),
        vec![5.0, 1.0, 10.0, 1.0, 1.0, 30.0, 1.0, 30.0, 1.0]
    );
    // A later lookup on the same client keeps the escalation.
    assert_eq!(client.next_conflict_pause(), Duration::from_secs(30));
}

#[tokio::test]
async fn unusable_answers_are_retried() {
    let ironic = FakeIronic::start().await;
    ironic.script_lookup([
        Reply::raw(200, "not json"),
        Reply::json(200, &json!({"node": {}, "config": {}})),
        Reply::json(200, &json!({"node": {"uuid": "u"}})),
        Reply::raw(500, "Internal Server Error"),
        Reply::json(200, &recorded_lookup_answer()),
    ]);
    let client = IronicClient::new(&settings_for(&[&ironic.url])).expect("a client");
    let clock = FakeClock::auto();
    lookup_node(&client, &macs(), None, policy(600), &pacer(clock, 0.5))
        .await
        .expect("the node is found");
    assert_eq!(ironic.requests_to("/v1/lookup").len(), 5);
}

#[tokio::test]
async fn gives_up_after_the_timeout_with_a_clear_error() {
    let ironic = FakeIronic::start().await;
    let client = IronicClient::new(&settings_for(&[&ironic.url])).expect("a client");
    let clock = FakeClock::auto();
    let err = lookup_node(
        &client,
        &macs(),
        None,
        policy(20),
        &pacer(clock.clone(), 1.0),
    )
    .await
    .expect_err("never found");
    // 1 + 2 + 4 + 8 s of backoff, then the last 5 s up to the deadline: 6 attempts.
    assert_eq!(secs(&clock.slept()), vec![1.0, 2.0, 4.0, 8.0, 5.0]);
    assert_eq!(clock.elapsed(), Duration::from_secs(20));
    let LookupError::TimedOut { attempts, .. } = &err;
    assert_eq!(*attempts, 6);
    assert_eq!(ironic.requests_to("/v1/lookup").len(), 6);
    let text = err.to_string();
    assert!(text.contains("52:54:00:12:34:56"), "{text}");
    assert!(text.contains("ipa-lookup-timeout"), "{text}");
    assert!(
        text.contains("HTTP 404 Not Found: Resource could not be found."),
        "{text}"
    );
}

#[tokio::test]
async fn connection_errors_are_retried() {
    let dead = crate::support::closed_port_url("127.0.0.1");
    let client = IronicClient::new(&settings_for(&[&dead])).expect("a client");
    let clock = FakeClock::auto();
    let err = lookup_node(
        &client,
        &macs(),
        None,
        policy(3),
        &pacer(clock.clone(), 1.0),
    )
    .await
    .expect_err("nothing listens");
    assert_eq!(secs(&clock.slept()), vec![1.0, 2.0]);
    assert!(err.to_string().to_lowercase().contains("refused"), "{err}");
}

fn answer_with(config_changes: Value) -> LookupResponse {
    let mut answer = recorded_lookup_answer();
    for (key, value) in config_changes.as_object().expect("an object") {
        answer["config"][key] = value.clone();
    }
    serde_json::from_value(answer).expect("a lookup answer")
}

#[test]
fn a_fresh_token_is_adopted_with_the_overrides() {
    let ctx = AgentContext::new(Settings::default());
    let answer = answer_with(json!({}));
    assert_eq!(apply_lookup(&ctx, &answer), ApplyOutcome::TokenAdopted);
    let state = ctx.state();
    assert_eq!(
        state.token.as_ref().map(Secret::expose),
        Some("b1n6iYWKJMPhgynm39scQduWgQuNbgo9_2q4Xr7eLgg")
    );
    assert_eq!(
        state.node.as_ref().map(|node| node.uuid.as_str()),
        Some("072a1d4d-2109-4966-9aab-708de8cfa79d")
    );
    assert_eq!(state.heartbeat_timeout, Duration::from_secs(20));
    assert!(state.md5_enabled);
    assert!(!state.disable_deep_image_inspection);
    assert_eq!(
        state.permitted_image_formats,
        ["raw", "gpt", "qcow2", "iso"]
    );
    assert!(!state.enable_bios_bootloader_install);
    assert_eq!(state.tls_min_version, TlsVersion::Tls13);
    assert_eq!(ctx.lifecycle(), Lifecycle::Serving);
}

#[test]
fn a_masked_token_keeps_the_configured_one() {
    let settings = Settings {
        agent_token: Some(Secret(TOKEN.into())),
        ..Settings::default()
    };
    let ctx = AgentContext::new(settings);
    let outcome = apply_lookup(&ctx, &answer_with(json!({"agent_token": "******"})));
    assert_eq!(outcome, ApplyOutcome::KeptOwnToken);
    assert!(outcome.may_serve());
    assert_eq!(ctx.token().as_ref().map(Secret::expose), Some(TOKEN));
    assert_eq!(ctx.lifecycle(), Lifecycle::Serving);
}

#[test]
fn a_masked_token_without_our_own_refuses_to_serve() {
    let ctx = AgentContext::new(Settings::default());
    // The answer of a second lookup, as in the faults recording "relookup".
    let outcome = apply_lookup(&ctx, &answer_with(json!({"agent_token": "******"})));
    assert_eq!(outcome, ApplyOutcome::RefuseToServe);
    assert!(!outcome.may_serve());
    assert_eq!(
        outcome.to_string(),
        "refusing to serve: token masked and none configured"
    );
    assert_eq!(ctx.lifecycle(), Lifecycle::Stopped { lockdown: false });
    assert!(ctx.token().is_none());
}

#[test]
fn short_or_missing_tokens_are_ignored() {
    for token in [json!("too-short"), Value::Null] {
        let settings = Settings {
            agent_token: Some(Secret(TOKEN.into())),
            ..Settings::default()
        };
        let ctx = AgentContext::new(settings);
        let outcome = apply_lookup(&ctx, &answer_with(json!({"agent_token": token})));
        assert_eq!(outcome, ApplyOutcome::TokenIgnored);
        assert_eq!(ctx.token().as_ref().map(Secret::expose), Some(TOKEN));
    }
    let ctx = AgentContext::new(Settings::default());
    apply_lookup(&ctx, &answer_with(json!({"agent_token": "short"})));
    assert!(ctx.token().is_none());
    assert_eq!(ctx.lifecycle(), Lifecycle::Serving);
}

#[test]
fn overrides_apply_only_when_given() {
    let settings = Settings {
        enable_bios_bootloader_install: true,
        md5_enabled: true,
        ..Settings::default()
    };
    let ctx = AgentContext::new(settings);
    let mut answer = recorded_lookup_answer();
    let config = answer["config"].as_object_mut().expect("a config");
    for key in [
        "agent_md5_checksum_enable",
        "permitted_image_formats",
        "disable_deep_image_inspection",
        "tls_min_version",
    ] {
        config.remove(key);
    }
    config.insert("enable_bios_bootloader_install".into(), json!(false));
    config.insert("agent_skip_bmc_detect".into(), json!(true));
    let answer: LookupResponse = serde_json::from_value(answer).expect("a lookup answer");
    apply_lookup(&ctx, &answer);
    let state = ctx.state();
    assert!(
        state.enable_bios_bootloader_install,
        "false does not override"
    );
    assert!(state.md5_enabled);
    assert_eq!(state.permitted_image_formats, ["raw", "gpt", "qcow2"]);
    assert_eq!(state.tls_min_version, TlsVersion::Tls12);
    let node = state.node.expect("the node");
    assert_eq!(node.extra.get("skip_bmc_detect"), Some(&json!(true)));
}

#[test]
fn every_recorded_lookup_answer_applies() {
    for name in [
        "deploy-whole-disk.jsonl",
        "manual-clean.jsonl",
        "inspect-v184.jsonl",
    ] {
        for record in recordings::agent_calls(name, "GET", "/v1/lookup") {
            if record["status"] != 200 {
                continue;
            }
            let answer: LookupResponse =
                serde_json::from_value(record["resp_body"].clone()).expect("a lookup answer");
            let ctx = AgentContext::new(Settings::default());
            let outcome = apply_lookup(&ctx, &answer);
            let expected = if answer.config.agent_token.as_deref() == Some("******") {
                ApplyOutcome::RefuseToServe
            } else {
                ApplyOutcome::TokenAdopted
            };
            assert_eq!(outcome, expected, "{name} seq {}", record["seq"]);
        }
    }
}
