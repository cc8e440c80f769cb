//! One simulated agent: optional inspection, lookup, then heartbeats (and plan reports) on
//! a fixed schedule until the deadline.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use reqwest::StatusCode;
use rivet_protocol::report::{Report, ReportAck, ReportBatch, ReportBody, StepState};
use serde_json::{json, Value};

use super::beat::{Beat, Sender};
use super::Target;

/// Counters shared by all agents.
#[derive(Debug, Default)]
pub struct Counters {
    pub lookups_ok: AtomicU64,
    pub lookups_failed: AtomicU64,
    pub inspections_ok: AtomicU64,
    pub inspections_failed: AtomicU64,
    pub heartbeats_sent: AtomicU64,
    pub heartbeats_acked: AtomicU64,
    pub heartbeats_failed: AtomicU64,
    pub reports_acked: AtomicU64,
    pub reports_failed: AtomicU64,
    /// Failures by HTTP status (0 = no answer).
    pub failures: Mutex<std::collections::BTreeMap<u16, u64>>,
}

impl Counters {
    fn fail(&self, status: Option<StatusCode>) {
        let code = status.map(|s| s.as_u16()).unwrap_or(0);
        *self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(code)
            .or_default() += 1;
    }
}

/// What every agent shares.
#[derive(Debug)]
pub struct Shared {
    pub http: reqwest::Client,
    pub heartbeats: Arc<Sender>,
    pub base: String,
    pub target: Target,
    pub interval: Duration,
    /// The end of the heartbeat phase, set when every agent has looked up.
    pub deadline: Mutex<Option<Instant>>,
    pub reports_every: u64,
    pub inspect: bool,
    /// rivet-server's operator API: makes a new token when lookup answers with the mask
    /// (a node looked up by an earlier run).
    pub operator: Option<crate::client::OperatorClient>,
    pub counters: Counters,
    /// Heartbeat latencies in microseconds, sharded to keep lock contention low.
    pub latencies: Vec<Mutex<Histogram<u64>>>,
}

impl Shared {
    /// Starts the heartbeat phase: it ends `duration` from now.
    pub fn start_heartbeats(&self, duration: Duration) {
        *self.deadline.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + duration);
    }

    fn heartbeats_over(&self) -> bool {
        self.deadline
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|deadline| Instant::now() >= deadline)
    }
}

/// What one agent saw: its node and how many of its reports were acknowledged.
#[derive(Debug, Clone, Default)]
pub struct AgentResult {
    pub node_uuid: Option<String>,
    pub heartbeats_acked: u64,
    /// The seqs of acknowledged plan reports (boot id is the agent's).
    pub reports_acked: Vec<u64>,
    pub boot_id: String,
}

/// The MAC of simulated agent `index`: locally administered, unique per index.
pub fn mac_of(index: usize) -> String {
    let b = (index as u32).to_be_bytes();
    format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}

/// A loopback callback URL per agent (nothing ever connects to it in these runs, and if
/// something did, it would stay on this machine).
fn callback_of(index: usize) -> String {
    format!(
        "https://127.0.{}.{}:9999",
        (index / 250) % 256,
        index % 250 + 1
    )
}

fn inventory_of(index: usize) -> Value {
    json!({
        "inventory": {
            "interfaces": [{"name": "eth0", "mac_address": mac_of(index), "ipv4_address": null,
                            "ipv6_address": null, "has_carrier": true, "lldp": null,
                            "vendor": "0x1af4", "product": "0x0001", "client_id": null,
                            "biosdevname": null, "speed_mbps": 1000,
                            "pci_address": "0000:00:03.0", "driver": "virtio_net"}],
            "cpu": {"model_name": "loadgen", "frequency": "2400", "count": 2,
                    "architecture": "x86_64", "flags": [], "socket_count": 1},
            "disks": [{"name": "/dev/vda", "model": "loadgen", "size": 10737418240u64,
                       "rotational": false, "serial": format!("LG{index:08}")}],
            "memory": {"total": 4294967296u64, "physical_mb": 4096},
            "bmc_address": null, "bmc_v6address": null,
            "system_vendor": {"product_name": "loadgen", "serial_number": format!("LG{index:08}"),
                              "manufacturer": "rivet"},
            "boot": {"current_boot_mode": "uefi", "pxe_interface": mac_of(index)},
            "hostname": format!("loadgen-{index}"),
        },
        "root_disk": null, "boot_interface": null,
        "configuration": {"collectors": ["default"], "managers": []},
        "error": null,
    })
}

/// Runs agent `index`: inspection and lookup, then `ready`; heartbeats once `start` turns
/// true, until the deadline.
pub async fn run(
    shared: Arc<Shared>,
    index: usize,
    ready: tokio::sync::mpsc::Sender<()>,
    mut start: tokio::sync::watch::Receiver<bool>,
) -> AgentResult {
    let mut result = AgentResult {
        boot_id: uuid::Uuid::new_v4().simple().to_string(),
        ..AgentResult::default()
    };
    if shared.inspect {
        inspect(&shared, index).await;
    }
    let looked_up = lookup(&shared, index).await;
    drop(ready);
    let Some((uuid, token)) = looked_up else {
        return result;
    };
    if start.wait_for(|start| *start).await.is_err() {
        return result;
    }
    result.node_uuid = Some(uuid.clone());
    // Spread the agents evenly over the first interval, as booting machines would be.
    let offset = shared.interval.mul_f64(index as f64 % 1000.0 / 1000.0);
    let start = tokio::time::Instant::now() + offset;
    let mut ticks = tokio::time::interval_at(start, shared.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shard = &shared.latencies[index % shared.latencies.len()];
    let body = json!({
        "callback_url": callback_of(index),
        "agent_token": token,
        "agent_version": "13.0.0",
    })
    .to_string();
    let beat = Beat::new(&shared.heartbeats, &shared.base, &uuid, body);
    let mut since_report = 0u64;
    let mut seq = 0u64;
    loop {
        ticks.tick().await;
        if shared.heartbeats_over() {
            break;
        }
        shared
            .counters
            .heartbeats_sent
            .fetch_add(1, Ordering::Relaxed);
        let sent = Instant::now();
        match beat.send().await {
            Ok(()) => {
                let micros = sent.elapsed().as_micros() as u64;
                if let Ok(mut histogram) = shard.lock() {
                    histogram.saturating_record(micros.max(1));
                }
                shared
                    .counters
                    .heartbeats_acked
                    .fetch_add(1, Ordering::Relaxed);
                result.heartbeats_acked += 1;
            }
            Err(status) => {
                shared
                    .counters
                    .heartbeats_failed
                    .fetch_add(1, Ordering::Relaxed);
                shared.counters.fail(status);
            }
        }
        since_report += 1;
        if shared.reports_every > 0
            && since_report >= shared.reports_every
            && shared.target == Target::Rivet
        {
            since_report = 0;
            seq += 1;
            if report(&shared, &uuid, &token, &result.boot_id, seq).await {
                result.reports_acked.push(seq);
            }
        }
    }
    result
}

async fn inspect(shared: &Shared, index: usize) {
    let answer = shared
        .http
        .post(format!("{}/v1/continue_inspection", shared.base))
        .json(&inventory_of(index))
        .send()
        .await;
    match answer {
        Ok(response) if response.status() == StatusCode::ACCEPTED => {
            shared
                .counters
                .inspections_ok
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(response) => {
            shared
                .counters
                .inspections_failed
                .fetch_add(1, Ordering::Relaxed);
            shared.counters.fail(Some(response.status()));
        }
        Err(error) => {
            shared
                .counters
                .inspections_failed
                .fetch_add(1, Ordering::Relaxed);
            shared.counters.fail(error.status());
        }
    }
}

/// Lookup with a few retries; the node's UUID and the token.
async fn lookup(shared: &Shared, index: usize) -> Option<(String, String)> {
    let url = format!("{}/v1/lookup?addresses={}", shared.base, mac_of(index));
    for attempt in 0..5u32 {
        let answer = shared
            .http
            .get(&url)
            .header("X-OpenStack-Ironic-API-Version", "1.62")
            .send()
            .await;
        let status = answer.as_ref().ok().map(|r| r.status());
        if let Ok(response) = answer {
            if response.status() == StatusCode::OK {
                if let Ok(body) = response.json::<Value>().await {
                    let uuid = body["node"]["uuid"].as_str().map(str::to_string);
                    let token = body["config"]["agent_token"].as_str().map(str::to_string);
                    if let (Some(uuid), Some(token)) = (uuid, token) {
                        if let Some(token) = usable_token(shared, &uuid, token).await {
                            shared.counters.lookups_ok.fetch_add(1, Ordering::Relaxed);
                            return Some((uuid, token));
                        }
                    }
                }
            }
        }
        shared.counters.fail(status);
        tokio::time::sleep(Duration::from_millis(200) * (attempt + 1)).await;
    }
    shared
        .counters
        .lookups_failed
        .fetch_add(1, Ordering::Relaxed);
    None
}

/// The token to heartbeat with: the one lookup handed out, or, when it answered with the
/// mask, a new one from the operator API (without it, the agent cannot heartbeat).
async fn usable_token(shared: &Shared, uuid: &str, token: String) -> Option<String> {
    if token != rivet_protocol::lookup::MASKED_TOKEN {
        return Some(token);
    }
    let operator = shared.operator.as_ref()?;
    let path = format!("/v1/nodes/{uuid}/token");
    let minted = operator
        .call(reqwest::Method::POST, &path, None)
        .await
        .ok()?;
    minted["agent_token"].as_str().map(str::to_string)
}

/// One plan report (a step's progress); true when acknowledged.
async fn report(shared: &Shared, uuid: &str, token: &str, boot_id: &str, seq: u64) -> bool {
    let batch = ReportBatch {
        agent_token: token.to_string(),
        boot_id: boot_id.to_string(),
        reports: vec![Report {
            seq,
            body: ReportBody::Step {
                index: 0,
                name: "erase_devices".into(),
                state: StepState::Running,
                progress: Some((seq % 100) as f64 / 100.0),
                message: None,
            },
        }],
    };
    let answer = shared
        .http
        .post(format!("{}/v1/rivet/nodes/{uuid}/reports", shared.base))
        .json(&batch)
        .send()
        .await;
    match answer {
        Ok(response) if response.status() == StatusCode::ACCEPTED => {
            if response.json::<ReportAck>().await.is_ok() {
                shared
                    .counters
                    .reports_acked
                    .fetch_add(1, Ordering::Relaxed);
                return true;
            }
            shared
                .counters
                .reports_failed
                .fetch_add(1, Ordering::Relaxed);
            false
        }
        Ok(response) => {
            shared
                .counters
                .reports_failed
                .fetch_add(1, Ordering::Relaxed);
            shared.counters.fail(Some(response.status()));
            false
        }
        Err(error) => {
            shared
                .counters
                .reports_failed
                .fetch_add(1, Ordering::Relaxed);
            shared.counters.fail(error.status());
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_and_callbacks_are_unique_and_local() {
        assert_eq!(mac_of(0), "02:00:00:00:00:00");
        assert_eq!(mac_of(10_001), "02:00:00:00:27:11");
        assert_ne!(callback_of(0), callback_of(250));
        assert!(callback_of(70_000).starts_with("https://127."));
        assert!(crate::store::normalize_mac(&mac_of(123_456)).is_some());
    }
}
