//! Reports to a URL, queued until it answers (docs/plan.md "Results"): each report gets the
//! next `seq` of this boot, waits in memory, and a background task posts everything not yet
//! accepted as one [`ReportBatch`], again and again with a growing pause while the URL
//! cannot be reached. The receiver stores each `(boot_id, seq)` once, so resending is safe.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rivet_protocol::report::{Report, ReportBatch, ReportBody};
use tokio::sync::Notify;

use crate::settings::Secret;

/// The first and the longest pause between two attempts.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(30);
/// Reports per post at most (rivet-server takes up to 1000).
const MAX_BATCH: usize = 500;

#[derive(Debug, Default)]
struct Pending {
    next_seq: u64,
    reports: Vec<Report>,
}

struct Inner {
    url: String,
    token: Option<Secret>,
    boot_id: String,
    client: reqwest::Client,
    pending: Mutex<Pending>,
    wake: Notify,
}

/// The queue; clones share it.
#[derive(Clone)]
pub struct ReportQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ReportQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReportQueue")
            .field("url", &self.inner.url)
            .field("boot_id", &self.inner.boot_id)
            .finish()
    }
}

impl ReportQueue {
    /// Starts the posting task (on the current tokio runtime).
    pub fn start(
        url: String,
        token: Option<Secret>,
        boot_id: String,
        client: reqwest::Client,
    ) -> Self {
        let queue = ReportQueue {
            inner: Arc::new(Inner {
                url,
                token,
                boot_id,
                client,
                pending: Mutex::new(Pending {
                    next_seq: 1,
                    reports: Vec::new(),
                }),
                wake: Notify::new(),
            }),
        };
        tokio::spawn(post_forever(queue.inner.clone()));
        queue
    }

    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Queues a report.
    pub fn push(&self, body: ReportBody) {
        self.inner.with_pending(|p| {
            let seq = p.next_seq;
            p.next_seq += 1;
            p.reports.push(Report { seq, body });
        });
        self.inner.wake.notify_one();
    }

    /// How many reports wait.
    pub fn waiting(&self) -> usize {
        self.inner.with_pending(|p| p.reports.len())
    }

    /// Waits until every report was accepted or `wait` passed; true when none waits.
    pub async fn flush(&self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        // Cut a pause between attempts short once.
        self.inner.wake.notify_one();
        loop {
            if self.waiting() == 0 {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Inner {
    fn with_pending<R>(&self, f: impl FnOnce(&mut Pending) -> R) -> R {
        match self.pending.lock() {
            Ok(mut p) => f(&mut p),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Posts what waits; `Ok(true)` when something was accepted.
    async fn post_once(&self) -> Result<bool, String> {
        let reports: Vec<Report> =
            self.with_pending(|p| p.reports.iter().take(MAX_BATCH).cloned().collect());
        let Some(last) = reports.last().map(|r| r.seq) else {
            return Ok(false);
        };
        let batch = ReportBatch {
            agent_token: self
                .token
                .as_ref()
                .map(|t| t.expose().to_string())
                .unwrap_or_default(),
            boot_id: self.boot_id.clone(),
            reports,
        };
        let response = self
            .client
            .post(&self.url)
            .json(&batch)
            .send()
            .await
            .map_err(|e| format!("posting reports to {}: {e}", self.url))?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            return Err(format!(
                "posting reports to {}: HTTP {status}: {}",
                self.url,
                body.chars().take(300).collect::<String>()
            ));
        }
        self.with_pending(|p| p.reports.retain(|r| r.seq > last));
        Ok(true)
    }
}

async fn post_forever(inner: Arc<Inner>) {
    let mut pause = FIRST_RETRY;
    let mut last_error = String::new();
    loop {
        if inner.with_pending(|p| p.reports.is_empty()) {
            inner.wake.notified().await;
            continue;
        }
        match inner.post_once().await {
            Ok(_) => {
                if !last_error.is_empty() {
                    tracing::info!("reports reach {} again", inner.url);
                    last_error.clear();
                }
                pause = FIRST_RETRY;
            }
            Err(error) => {
                if error != last_error {
                    tracing::warn!("{error}; keeping the reports and trying again");
                    last_error = error;
                }
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = inner.wake.notified() => {}
                }
                pause = (pause * 2).min(MAX_RETRY);
            }
        }
    }
}
