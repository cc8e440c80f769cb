//! Creating the simulated agents' nodes: through rivet-server's operator API, or through a
//! real Ironic's API (a `fake-hardware` node with one port each).

use anyhow::{bail, Context, Result};
use futures_util::stream::{self, StreamExt, TryStreamExt};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use super::agent::mac_of;
use crate::client::OperatorClient;

/// How many creations run at once against rivet-server.
const RIVET_CONCURRENCY: usize = 32;
/// ... and against Ironic, whose API serializes on its SQLite database.
const IRONIC_CONCURRENCY: usize = 4;
/// The microversion of the Ironic calls (Ironic 39's maximum).
const IRONIC_API_VERSION: &str = "1.115";

/// Node `loadgen-<n>` with MAC `mac_of(n)` for every agent; existing ones are kept.
pub async fn rivet(operator: &OperatorClient, agents: usize) -> Result<()> {
    stream::iter(0..agents)
        .map(|index| async move {
            let body = json!({"name": format!("loadgen-{index}"), "macs": [mac_of(index)]});
            match operator.call(Method::POST, "/v1/nodes", Some(&body)).await {
                Ok(_) => Ok(()),
                Err(error) if error.to_string().contains("HTTP 409") => Ok(()),
                Err(error) => Err(error.context(format!("enrolling loadgen-{index}"))),
            }
        })
        .buffer_unordered(RIVET_CONCURRENCY)
        .try_collect::<()>()
        .await
}

async fn ironic_call(
    http: &reqwest::Client,
    base: &str,
    path: &str,
    body: &Value,
) -> Result<(StatusCode, Value)> {
    let response = http
        .post(format!("{base}{path}"))
        .header("X-OpenStack-Ironic-API-Version", IRONIC_API_VERSION)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {base}{path}"))?;
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// A `fake-hardware` node `loadgen-<n>` (left in `enroll`; lookups need `[deploy]
/// fast_track = true` there) with a port for `mac_of(n)`, for every agent.
pub async fn ironic(http: &reqwest::Client, base: &str, agents: usize) -> Result<()> {
    stream::iter(0..agents)
        .map(|index| async move {
            let node = json!({
                "name": format!("loadgen-{index}"),
                "driver": "fake-hardware",
                "deploy_interface": "direct",
                "network_interface": "noop",
            });
            let (status, created) = ironic_call(http, base, "/v1/nodes", &node).await?;
            let uuid = match status {
                StatusCode::CREATED => created["uuid"].as_str().map(str::to_string),
                StatusCode::CONFLICT => return Ok(()),
                _ => bail!("creating Ironic node loadgen-{index}: HTTP {status}: {created}"),
            };
            let uuid = uuid.with_context(|| format!("Ironic's answer has no uuid: {created}"))?;
            let port = json!({"node_uuid": uuid, "address": mac_of(index)});
            let (status, answer) = ironic_call(http, base, "/v1/ports", &port).await?;
            if status != StatusCode::CREATED {
                bail!("creating the port of Ironic node loadgen-{index}: HTTP {status}: {answer}");
            }
            Ok(())
        })
        .buffer_unordered(IRONIC_CONCURRENCY)
        .try_collect::<()>()
        .await
}
