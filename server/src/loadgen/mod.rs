//! `rivet-server loadgen`: thousands of simulated agents against a running rivet-server (or a
//! real Ironic, for comparison): optional inspection, one lookup each, then heartbeats every
//! interval (and plan reports) for a duration. Prints the sustained heartbeat rate, latency
//! percentiles, failures, and, against rivet-server, how many acknowledged reports the
//! server did not store (which must be none).
//!
//! All traffic goes to `--url`; the run is bounded by `--duration` and stops by itself.

mod agent;
mod beat;
mod enroll;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;

pub use agent::mac_of;

use crate::client::{OperatorClient, Trust};
use crate::settings::OPERATOR_TOKEN_FILE;

/// Which server the agents talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Rivet,
    Ironic,
}

#[derive(Debug, Clone, Args)]
pub struct LoadgenArgs {
    /// The server's base URL (loopback or a test network only).
    #[arg(long)]
    pub url: String,
    /// How many agents to simulate.
    #[arg(long, default_value_t = 1000)]
    pub agents: usize,
    /// Time between two heartbeats of one agent (`1s`, `500ms`).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// How long the heartbeat phase lasts (`60s`, `2m`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub duration: Duration,
    /// What kind of server `--url` is.
    #[arg(long, value_enum, default_value_t = Target::Rivet)]
    pub target: Target,
    /// Create the nodes first (`loadgen-<n>` with MAC 02:00:<n as hex>); existing ones are kept.
    #[arg(long)]
    pub enroll: bool,
    /// Each agent first posts inspection data (rivet-server; with `serve --auto-register`
    /// this registers the nodes).
    #[arg(long)]
    pub inspect: bool,
    /// Send a plan report after every K heartbeats (0: none; rivet-server only).
    #[arg(long, default_value_t = 0)]
    pub reports_every: u64,
    /// Operator token for enrolling and verifying (rivet-server; default: from --data-dir).
    #[arg(long, env = "RIVET_SERVER_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The server's data directory, for the operator token file.
    #[arg(long, env = "RIVET_SERVER_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Do not verify the server's TLS certificate.
    #[arg(long)]
    pub insecure: bool,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// `1s`, `250ms`, `2m`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 1s, 500ms or 2m"))?;
    if !(value.is_finite() && value > 0.0) {
        return Err(format!("{text:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(value * scale))
}

/// The measured outcome.
#[derive(Debug, Serialize)]
pub struct Summary {
    pub target: Target,
    pub agents: usize,
    pub interval_s: f64,
    pub duration_s: f64,
    pub lookups_ok: u64,
    pub lookups_failed: u64,
    pub inspections_ok: u64,
    pub inspections_failed: u64,
    pub heartbeats_sent: u64,
    pub heartbeats_acked: u64,
    pub heartbeats_failed: u64,
    /// Acknowledged heartbeats per second of the heartbeat phase.
    pub heartbeats_per_s: f64,
    pub latency_ms: Latency,
    pub reports_acked: u64,
    pub reports_failed: u64,
    /// Failures by HTTP status ("0": no answer).
    pub failures: HashMap<String, u64>,
    /// Acknowledged heartbeats and reports the server did not store (rivet-server only; null
    /// when not checked).
    pub lost: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

pub async fn run(args: LoadgenArgs) -> Result<ExitCode> {
    let summary = measure(&args).await?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        print!("{}", render(&summary));
    }
    let healthy = summary.lost.unwrap_or(0) == 0 && summary.lookups_failed == 0;
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn operator(args: &LoadgenArgs) -> Result<Option<OperatorClient>> {
    if args.target != Target::Rivet {
        return Ok(None);
    }
    let token = match (&args.token, &args.data_dir) {
        (Some(token), _) => token.clone(),
        (None, Some(dir)) => OperatorClient::token_from_file(&dir.join(OPERATOR_TOKEN_FILE))?,
        (None, None) => return Ok(None),
    };
    let trust = if args.insecure {
        Trust::Insecure
    } else {
        Trust::System
    };
    Ok(Some(OperatorClient::new(&args.url, &token, &trust)?))
}

/// Runs the load and returns what it measured.
pub async fn measure(args: &LoadgenArgs) -> Result<Summary> {
    if args.agents == 0 {
        bail!("--agents must be at least 1");
    }
    let base = args.url.trim_end_matches('/').to_string();
    let operator = operator(args)?;
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        // As many idle connections as agents: a closed one is a new TCP connection per
        // heartbeat on both sides.
        .pool_max_idle_per_host(args.agents)
        .danger_accept_invalid_certs(args.insecure)
        .build()
        .context("building the HTTP client")?;
    if args.enroll {
        match args.target {
            Target::Rivet => {
                let operator = operator
                    .as_ref()
                    .context("--enroll against rivet-server needs --token or --data-dir")?;
                enroll::rivet(operator, args.agents).await?;
            }
            Target::Ironic => enroll::ironic(&http, &base, args.agents).await?,
        }
    }
    let before = match &operator {
        Some(operator) => Some(heartbeat_counts(operator).await?),
        None => None,
    };
    // Lookups (and inspections) are not timed: the deadline covers the heartbeat phase, which
    // starts once every agent has its token.
    let shards = 16;
    let mut latencies = Vec::with_capacity(shards);
    for _ in 0..shards {
        latencies.push(Mutex::new(
            Histogram::new_with_bounds(1, 120_000_000, 3)
                .context("creating a latency histogram")?,
        ));
    }
    let shared = Arc::new(agent::Shared {
        heartbeats: Arc::new(beat::Sender::new(&http, &base)),
        http,
        base,
        target: args.target,
        interval: args.interval,
        deadline: Mutex::new(None),
        reports_every: args.reports_every,
        inspect: args.inspect,
        operator: operator.clone(),
        counters: agent::Counters::default(),
        latencies,
    });
    let results = run_agents(&shared, args).await?;
    let counters = &shared.counters;
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)
        .context("creating a latency histogram")?;
    for shard in &shared.latencies {
        let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        histogram
            .add(&*shard)
            .context("merging latency histograms")?;
    }
    let lost = match (&operator, before) {
        (Some(operator), Some(before)) => Some(lost_reports(operator, &before, &results).await?),
        _ => None,
    };
    let failures: HashMap<String, u64> = counters
        .failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(code, count)| (code.to_string(), *count))
        .collect();
    let ms = |q: f64| histogram.value_at_quantile(q) as f64 / 1000.0;
    let acked = counters.heartbeats_acked.load(Ordering::Relaxed);
    Ok(Summary {
        target: args.target,
        agents: args.agents,
        interval_s: args.interval.as_secs_f64(),
        duration_s: args.duration.as_secs_f64(),
        lookups_ok: counters.lookups_ok.load(Ordering::Relaxed),
        lookups_failed: counters.lookups_failed.load(Ordering::Relaxed),
        inspections_ok: counters.inspections_ok.load(Ordering::Relaxed),
        inspections_failed: counters.inspections_failed.load(Ordering::Relaxed),
        heartbeats_sent: counters.heartbeats_sent.load(Ordering::Relaxed),
        heartbeats_acked: acked,
        heartbeats_failed: counters.heartbeats_failed.load(Ordering::Relaxed),
        heartbeats_per_s: acked as f64 / args.duration.as_secs_f64(),
        latency_ms: Latency {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            max: histogram.max() as f64 / 1000.0,
        },
        reports_acked: counters.reports_acked.load(Ordering::Relaxed),
        reports_failed: counters.reports_failed.load(Ordering::Relaxed),
        failures,
        lost,
    })
}

/// Starts every agent, waits until all have looked up, then lets them heartbeat for the
/// duration.
async fn run_agents(
    shared: &Arc<agent::Shared>,
    args: &LoadgenArgs,
) -> Result<Vec<agent::AgentResult>> {
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(args.agents);
    let (start_tx, start_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..args.agents {
        let shared = Arc::clone(shared);
        let ready = ready_tx.clone();
        let start = start_rx.clone();
        tasks.spawn(async move { (index, agent::run(shared, index, ready, start).await) });
    }
    drop(ready_tx);
    // Every agent reports ready once (looked up or given up); a closed channel means all did.
    while ready_rx.recv().await.is_some() {}
    shared.start_heartbeats(args.duration);
    start_tx.send_replace(true);
    let mut results = vec![agent::AgentResult::default(); args.agents];
    while let Some(joined) = tasks.join_next().await {
        let (index, result) = joined.context("a simulated agent panicked")?;
        results[index] = result;
    }
    Ok(results)
}

/// Heartbeats stored per node UUID.
async fn heartbeat_counts(operator: &OperatorClient) -> Result<HashMap<String, i64>> {
    let nodes = operator.get("/v1/nodes").await?;
    Ok(nodes["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|node| {
            Some((
                node["uuid"].as_str()?.to_string(),
                node["agent"]["heartbeats"].as_i64()?,
            ))
        })
        .collect())
}

/// How many acknowledged heartbeats and (on up to 200 nodes) plan reports the server lacks.
async fn lost_reports(
    operator: &OperatorClient,
    before: &HashMap<String, i64>,
    results: &[agent::AgentResult],
) -> Result<u64> {
    let after = heartbeat_counts(operator).await?;
    let mut lost = 0u64;
    for result in results {
        let Some(uuid) = &result.node_uuid else {
            continue;
        };
        let stored = after.get(uuid).copied().unwrap_or(0) - before.get(uuid).copied().unwrap_or(0);
        lost += (result.heartbeats_acked as i64 - stored).max(0) as u64;
    }
    for result in results
        .iter()
        .filter(|r| !r.reports_acked.is_empty())
        .take(200)
    {
        let Some(uuid) = &result.node_uuid else {
            continue;
        };
        let mut stored = std::collections::HashSet::new();
        let mut after_id = 0;
        loop {
            let page = operator
                .get(&format!(
                    "/v1/nodes/{uuid}/events?after={after_id}&limit=1000"
                ))
                .await?;
            let events: Vec<Value> = page["events"].as_array().cloned().unwrap_or_default();
            for event in &events {
                if event["boot_id"].as_str() == Some(result.boot_id.as_str()) {
                    if let Some(seq) = event["seq"].as_u64() {
                        stored.insert(seq);
                    }
                }
            }
            match events.last().and_then(|e| e["id"].as_i64()) {
                Some(id) if events.len() == 1000 => after_id = id,
                _ => break,
            }
        }
        lost += result
            .reports_acked
            .iter()
            .filter(|seq| !stored.contains(seq))
            .count() as u64;
    }
    Ok(lost)
}

fn render(summary: &Summary) -> String {
    let mut out = format!(
        "target {:?}: {} agents, heartbeat every {:.3}s for {:.0}s\n",
        summary.target, summary.agents, summary.interval_s, summary.duration_s
    );
    if summary.inspections_ok + summary.inspections_failed > 0 {
        out.push_str(&format!(
            "inspections: {} ok, {} failed\n",
            summary.inspections_ok, summary.inspections_failed
        ));
    }
    out.push_str(&format!(
        "lookups: {} ok, {} failed\n",
        summary.lookups_ok, summary.lookups_failed
    ));
    out.push_str(&format!(
        "heartbeats: {} sent, {} acknowledged, {} failed: {:.0}/s sustained\n",
        summary.heartbeats_sent,
        summary.heartbeats_acked,
        summary.heartbeats_failed,
        summary.heartbeats_per_s
    ));
    let l = &summary.latency_ms;
    out.push_str(&format!(
        "latency: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms\n",
        l.p50, l.p90, l.p99, l.max
    ));
    if summary.reports_acked + summary.reports_failed > 0 {
        out.push_str(&format!(
            "plan reports: {} acknowledged, {} failed\n",
            summary.reports_acked, summary.reports_failed
        ));
    }
    if !summary.failures.is_empty() {
        out.push_str(&format!("failures by status: {:?}\n", summary.failures));
    }
    match summary.lost {
        Some(lost) => out.push_str(&format!("lost (acknowledged, not stored): {lost}\n")),
        None => out.push_str("lost: not checked (needs rivet-server and an operator token)\n"),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
