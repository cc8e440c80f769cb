//! The listener: shutdown, lifecycle, timeouts, binding.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{loopback_settings, read, Agent, FakeCommands, Gate, TOKEN};
use crate::api::ServeOptions;
use crate::context::Lifecycle;

/// Upper bound for waits that should end by themselves: a guard against a hang, not a
/// performance assertion.
const HANG_GUARD: Duration = Duration::from_secs(60);

async fn post_sync(client: reqwest::Client, url: String) -> (u16, serde_json::Value) {
    let response = client
        .post(url)
        .body(r#"{"name": "standby.sync", "params": {}}"#)
        .send()
        .await
        .expect("POST");
    read(response).await
}

#[tokio::test]
async fn shutdown_completes_the_request_in_flight() {
    let gate = Arc::new(Gate::default());
    let agent = Agent::start(FakeCommands::gated(Arc::clone(&gate))).await;
    let in_flight = tokio::spawn(post_sync(
        agent.client.clone(),
        agent.url(&format!("/v1/commands/?wait=true&agent_token={TOKEN}")),
    ));
    gate.entered.notified().await;

    let addr = agent.server.local_addr();
    let shutdown = tokio::spawn(agent.server.shutdown());
    // Release the command only once the listener is closed, i.e. shutdown is under way.
    tokio::time::timeout(HANG_GUARD, async {
        while TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("listener closed after shutdown");
    gate.release.notify_one();

    let (status, body) = in_flight.await.expect("request task");
    assert_eq!(status, 200);
    assert_eq!(body["command_status"], "SUCCEEDED");
    tokio::time::timeout(HANG_GUARD, shutdown)
        .await
        .expect("shutdown finished")
        .expect("shutdown task")
        .expect("clean shutdown");
}

#[tokio::test]
async fn server_stops_when_the_lifecycle_turns_stopped_after_answering() {
    let agent = Agent::start(FakeCommands::default()).await;
    // As `rescue.finalize_rescue` does: stop serving from inside a command.
    let ctx = Arc::clone(&agent.ctx);
    agent
        .commands
        .on_next_execute(move || ctx.set_lifecycle(Lifecycle::Stopped { lockdown: false }));
    let (status, _) = post_sync(
        agent.client.clone(),
        agent.url(&format!("/v1/commands/?wait=true&agent_token={TOKEN}")),
    )
    .await;
    assert_eq!(status, 200);

    let addr = agent.server.local_addr();
    tokio::time::timeout(HANG_GUARD, agent.server.stopped())
        .await
        .expect("server stopped by itself")
        .expect("clean stop");
    let refused = TcpStream::connect(addr).await;
    assert!(refused.is_err(), "still accepting on {addr} after stopping");
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let options = ServeOptions {
        header_read_timeout: Duration::from_millis(200),
        ..ServeOptions::default()
    };
    let agent = Agent::start_with(
        loopback_settings(Some(TOKEN)),
        FakeCommands::default(),
        options,
    )
    .await;
    let mut stuck = TcpStream::connect(agent.server.local_addr())
        .await
        .expect("connect");
    stuck
        .write_all(b"GET /v1/status HTTP/1.1\r\nHost: agent\r\n")
        .await
        .expect("partial request");
    let mut rest = Vec::new();
    // The server closes the connection: EOF (or a reset) ends the read.
    let _ = tokio::time::timeout(HANG_GUARD, stuck.read_to_end(&mut rest))
        .await
        .expect("server closed the stuck connection");
    assert!(
        !String::from_utf8_lossy(&rest).contains("200 OK"),
        "an incomplete request was answered"
    );

    let (status, _) = agent.get("/v1/status").await;
    assert_eq!(
        status, 200,
        "server still serves after dropping the stuck client"
    );
}

#[tokio::test]
async fn without_listen_host_the_server_takes_ipv4_on_the_wildcard() {
    let settings = crate::settings::Settings {
        listen_host: None,
        listen_port: 0,
        ..loopback_settings(Some(TOKEN))
    };
    let agent = Agent::start_with(settings, FakeCommands::default(), ServeOptions::default()).await;
    let local = agent.server.local_addr();
    assert!(local.ip().is_unspecified(), "bound to {local}");
    let response = reqwest::get(format!("http://127.0.0.1:{}/v1/status", local.port()))
        .await
        .expect("IPv4 loopback reaches the wildcard listener");
    assert_eq!(response.status().as_u16(), 200);
}

#[tokio::test]
async fn binding_a_port_in_use_fails_with_the_address() {
    let agent = Agent::start(FakeCommands::default()).await;
    let taken = agent.server.local_addr();
    let settings = crate::settings::Settings {
        listen_port: taken.port(),
        ..loopback_settings(Some(TOKEN))
    };
    let ctx = Arc::new(crate::context::AgentContext::new(settings));
    let error = crate::api::serve(
        ctx,
        Arc::new(FakeCommands::default()),
        ServeOptions::default(),
    )
    .expect_err("second bind of the same port");
    let message = error.to_string();
    assert!(message.contains(&taken.to_string()), "{message}");
}
