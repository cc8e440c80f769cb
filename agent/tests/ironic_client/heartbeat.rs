//! The heartbeater against FakeIronic, on a manual virtual clock.

use std::sync::Arc;
use std::time::Duration;

use rivet_agent::context::{AgentContext, Lifecycle};
use rivet_agent::ironic::client::IronicClient;
use rivet_agent::ironic::heartbeat::run_heartbeater;
use rivet_agent::ironic::lookup::apply_lookup;
use rivet_agent::pace::FakeClock;
use rivet_agent::settings::Settings;
use rivet_protocol::lookup::LookupResponse;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::fake_ironic::{recorded_lookup_answer, FakeIronic, Reply};
use crate::support::{pacer, settings_for};

const CALLBACK: &str = "https://127.0.0.1:9999";
const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const NODE: &str = "/v1/heartbeat/072a1d4d-2109-4966-9aab-708de8cfa79d";
/// The recorded lookup sets heartbeat_timeout to 20 s; jitter 0.5 picks 0.45 of it.
const SUCCESS_INTERVAL: Duration = Duration::from_secs(9);
/// 5 s × 1.5 with jitter 0.5.
const ERROR_INTERVAL: Duration = Duration::from_millis(7500);

struct Running {
    ironic: FakeIronic,
    ctx: Arc<AgentContext>,
    clock: Arc<FakeClock>,
    commands_done: watch::Sender<u64>,
    task: JoinHandle<()>,
}

/// Starts a heartbeater for the node of the recorded lookup (unless `looked_up` is false).
async fn start(looked_up: bool) -> Running {
    let ironic = FakeIronic::start().await;
    let settings: Settings = settings_for(&[&ironic.url]);
    let client = Arc::new(IronicClient::new(&settings).expect("a client"));
    let ctx = Arc::new(AgentContext::new(settings));
    if looked_up {
        let answer: LookupResponse =
            serde_json::from_value(recorded_lookup_answer()).expect("a lookup answer");
        apply_lookup(&ctx, &answer);
    }
    let clock = FakeClock::manual();
    let (commands_done, done_rx) = watch::channel(0u64);
    let task = tokio::spawn(run_heartbeater(
        ctx.clone(),
        client,
        CALLBACK.to_string(),
        Some(CA.to_string()),
        done_rx,
        pacer(clock.clone(), 0.5),
    ));
    Running {
        ironic,
        ctx,
        clock,
        commands_done,
        task,
    }
}

impl Running {
    async fn stop(self) {
        self.ctx
            .set_lifecycle(Lifecycle::Stopped { lockdown: false });
        self.task.await.expect("the heartbeater ends cleanly");
    }
}

#[tokio::test]
async fn first_heartbeat_at_once_then_after_the_jittered_timeout() {
    let run = start(true).await;
    let first = run.ironic.wait_for(NODE, 1).await.remove(0);
    assert_eq!(first.header("X-OpenStack-Ironic-API-Version"), Some("1.68"));
    let body = first.body.expect("a JSON body");
    assert_eq!(body["callback_url"], CALLBACK);
    assert_eq!(
        body["agent_token"],
        "b1n6iYWKJMPhgynm39scQduWgQuNbgo9_2q4Xr7eLgg"
    );
    assert_eq!(body["agent_version"], "13.0.0");
    assert_eq!(body["agent_verify_ca"], CA);

    assert_eq!(run.clock.nth_sleep(1).await, SUCCESS_INTERVAL);
    run.clock.advance(SUCCESS_INTERVAL - Duration::from_secs(1));
    assert_eq!(run.clock.sleeping().await, Duration::from_secs(1));
    assert_eq!(run.ironic.requests_to(NODE).len(), 1);
    run.clock.advance(Duration::from_secs(1));
    let both = run.ironic.wait_for(NODE, 2).await;
    assert_eq!(
        both[0].body, both[1].body,
        "the same callback URL and CA every time"
    );
    assert_eq!(run.clock.nth_sleep(2).await, SUCCESS_INTERVAL);
    run.stop().await;
}

#[tokio::test]
async fn errors_retry_after_five_to_ten_seconds() {
    let run = start(true).await;
    run.ironic.script_heartbeat([
        Reply::ironic_error(409, "Node is locked by host conductor-1"),
        Reply::ironic_error(400, "Invalid or missing agent token received."),
    ]);
    run.ironic.wait_for(NODE, 1).await;
    assert_eq!(run.clock.nth_sleep(1).await, ERROR_INTERVAL);
    run.clock.advance(ERROR_INTERVAL);
    run.ironic.wait_for(NODE, 2).await;
    assert_eq!(run.clock.nth_sleep(2).await, ERROR_INTERVAL);
    run.clock.advance(ERROR_INTERVAL);
    run.ironic.wait_for(NODE, 3).await;
    assert_eq!(run.clock.nth_sleep(3).await, SUCCESS_INTERVAL);
    run.stop().await;
}

#[tokio::test]
async fn a_finished_command_forces_a_heartbeat_five_seconds_after_the_previous() {
    let run = start(true).await;
    run.ironic.wait_for(NODE, 1).await;
    assert_eq!(run.clock.nth_sleep(1).await, SUCCESS_INTERVAL);
    run.clock.advance(Duration::from_secs(2));
    run.commands_done.send_modify(|count| *count += 1);
    // 5 s since the previous heartbeat: 3 s to go.
    assert_eq!(run.clock.nth_sleep(2).await, Duration::from_secs(3));
    run.clock.advance(Duration::from_secs(3));
    run.ironic.wait_for(NODE, 2).await;
    // Back to the regular interval.
    assert_eq!(run.clock.nth_sleep(3).await, SUCCESS_INTERVAL);

    // Long after the previous heartbeat, a forced one goes out at once.
    run.clock.advance(Duration::from_secs(6));
    assert_eq!(run.clock.sleeping().await, Duration::from_secs(3));
    run.commands_done.send_modify(|count| *count += 1);
    run.ironic.wait_for(NODE, 3).await;
    assert_eq!(run.clock.nth_sleep(4).await, SUCCESS_INTERVAL);
    run.stop().await;
}

#[tokio::test]
async fn without_a_node_it_retries_without_calling_ironic() {
    let run = start(false).await;
    assert_eq!(run.clock.nth_sleep(1).await, ERROR_INTERVAL);
    assert!(run.ironic.requests_to("/v1/heartbeat").is_empty());
    run.stop().await;
}

#[tokio::test]
async fn stops_when_the_lifecycle_stops() {
    let run = start(true).await;
    run.ironic.wait_for(NODE, 1).await;
    run.clock.nth_sleep(1).await;
    run.ctx.set_lifecycle(Lifecycle::Stopped { lockdown: true });
    run.task.await.expect("the heartbeater ends cleanly");
    run.clock.advance(Duration::from_secs(3600));
    assert_eq!(run.ironic.requests_to(NODE).len(), 1);
}

#[tokio::test]
async fn never_starts_when_already_stopped() {
    let ironic = FakeIronic::start().await;
    let settings = settings_for(&[&ironic.url]);
    let client = Arc::new(IronicClient::new(&settings).expect("a client"));
    let ctx = Arc::new(AgentContext::new(settings));
    ctx.set_lifecycle(Lifecycle::Stopped { lockdown: false });
    let (_done, done_rx) = watch::channel(0u64);
    run_heartbeater(
        ctx,
        client,
        CALLBACK.into(),
        None,
        done_rx,
        pacer(FakeClock::manual(), 0.5),
    )
    .await;
    assert!(ironic.requests().is_empty());
}
