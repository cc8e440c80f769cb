//! Progress of long work (erase, image writing): the latest report per task, logged at a
//! bounded rate, and readable by whatever reports to the control server (with how the last
//! tasks ended); and the signal
//! that asks such work to stop.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// How often one task's progress is logged at most (its last report is always kept).
const LOG_EVERY: Duration = Duration::from_secs(5);

/// One report about one task, e.g. task `erase /dev/nvme0n1`, phase `sanitize`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Progress {
    pub task: String,
    pub phase: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_second: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.task, self.phase)?;
        if let Some(percent) = self.percent {
            write!(f, " {percent:.1}%")?;
        }
        if let (Some(done), Some(total)) = (self.done_bytes, self.total_bytes) {
            write!(f, " ({} / {} MiB)", done >> 20, total >> 20)?;
        } else if let Some(done) = self.done_bytes {
            write!(f, " ({} MiB)", done >> 20)?;
        }
        if let Some(rate) = self.bytes_per_second {
            write!(f, " at {:.1} MiB/s", rate / f64::from(1u32 << 20))?;
        }
        if let Some(eta) = self.eta_seconds {
            write!(f, ", about {eta:.0} s left")?;
        }
        if let Some(message) = &self.message {
            write!(f, ": {message}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Entry {
    progress: Progress,
    logged: Option<Instant>,
}

/// How many ended tasks the board remembers for [`ProgressBoard::take_finished`].
const FINISHED_KEPT: usize = 32;

/// The latest progress of every running task, and how the last tasks ended.
#[derive(Debug, Default)]
pub struct ProgressBoard {
    tasks: Mutex<BTreeMap<String, Entry>>,
    finished: Mutex<VecDeque<(String, String)>>,
}

impl ProgressBoard {
    /// Records `progress` for its task; logs it unless that task was logged less than 5 s ago.
    pub fn update(&self, progress: Progress) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let entry = tasks.entry(progress.task.clone()).or_default();
        let now = Instant::now();
        if entry
            .logged
            .is_none_or(|at| now.duration_since(at) >= LOG_EVERY)
        {
            tracing::info!("progress: {progress}");
            entry.logged = Some(now);
        }
        entry.progress = progress;
    }

    /// Ends a task: logs the outcome, forgets its progress and keeps `(task, outcome)` for
    /// [`Self::take_finished`] (the last [`FINISHED_KEPT`] only).
    pub fn finish(&self, task: &str, outcome: &str) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.remove(task);
        tracing::info!("progress: {task}: {outcome}");
        let mut finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        if finished.len() == FINISHED_KEPT {
            finished.pop_front();
        }
        finished.push_back((task.to_string(), outcome.to_string()));
    }

    /// The tasks that ended since the last call, oldest first, with their outcomes.
    pub fn take_finished(&self) -> Vec<(String, String)> {
        let mut finished = self.finished.lock().unwrap_or_else(|p| p.into_inner());
        finished.drain(..).collect()
    }

    /// The latest report of every running task, by task name.
    pub fn snapshot(&self) -> Vec<Progress> {
        let tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.values().map(|entry| entry.progress.clone()).collect()
    }
}

/// Asks long-running steps to stop at their next check point (the agent is stopping).
/// Work that cannot be interrupted (a drive's own erase) finishes in the drive.
#[derive(Debug, Default)]
pub struct AbortSignal(AtomicBool);

impl AbortSignal {
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_report_per_task_until_finished() {
        let board = ProgressBoard::default();
        for percent in [10.0, 20.0] {
            board.update(Progress {
                task: "erase /dev/sda".into(),
                phase: "overwrite".into(),
                percent: Some(percent),
                ..Progress::default()
            });
        }
        board.update(Progress {
            task: "write_image".into(),
            phase: "download".into(),
            done_bytes: Some(3 << 20),
            ..Progress::default()
        });
        let snapshot = board.snapshot();
        assert_eq!(snapshot.len(), 2);
        assert_eq!(snapshot[0].percent, Some(20.0));
        board.finish("erase /dev/sda", "done");
        assert_eq!(board.snapshot().len(), 1);
        assert_eq!(
            board.take_finished(),
            vec![("erase /dev/sda".to_string(), "done".to_string())]
        );
        assert!(board.take_finished().is_empty(), "taken once");
        for i in 0..FINISHED_KEPT + 3 {
            board.finish(&format!("t{i}"), "ok");
        }
        let kept = board.take_finished();
        assert_eq!(kept.len(), FINISHED_KEPT, "bounded");
        assert_eq!(kept[0].0, "t3", "the oldest are dropped");
    }

    #[test]
    fn display_reads_as_a_sentence() {
        let progress = Progress {
            task: "write_image".into(),
            phase: "download".into(),
            percent: Some(50.0),
            done_bytes: Some(512 << 20),
            total_bytes: Some(1024 << 20),
            bytes_per_second: Some(f64::from(100u32 << 20)),
            eta_seconds: Some(5.0),
            message: None,
        };
        assert_eq!(
            progress.to_string(),
            "write_image: download 50.0% (512 / 1024 MiB) at 100.0 MiB/s, about 5 s left"
        );
    }
}
