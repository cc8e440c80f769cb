//! What a running plan step tells the server between its start and its end: its progress
//! (from the agent's progress board, which the image writer and the erase code feed) at
//! most every [`PROGRESS_EVERY`] when it changed, otherwise a heartbeat every
//! [`HEARTBEAT_EVERY`] so the server knows the agent is alive during a long silent step.

use std::time::{Duration, Instant};

use rivet_protocol::report::{ReportBody, StepState};

use crate::progress::Progress;

/// How often a running step's progress is looked at (and posted when it changed).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(3);
/// The longest silence while a step runs: a heartbeat goes out after it.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);

/// Watches one running step.
#[derive(Debug)]
pub struct StepWatch {
    index: u32,
    name: String,
    last_posted: Instant,
    last_progress: Option<(Option<f64>, String)>,
}

impl StepWatch {
    /// A watch of step `index` `name`, which was just reported running at `now`.
    pub fn new(index: u32, name: &str, now: Instant) -> Self {
        StepWatch {
            index,
            name: name.to_string(),
            last_posted: now,
            last_progress: None,
        }
    }

    /// What to post at `now` given the board's `tasks`: the step's progress when it changed
    /// since the last post, else a heartbeat when nothing was posted for
    /// [`HEARTBEAT_EVERY`], else nothing.
    pub fn tick(&mut self, tasks: &[Progress], now: Instant) -> Option<ReportBody> {
        if let Some(current) = summarize(tasks) {
            if self.last_progress.as_ref() != Some(&current) {
                self.last_progress = Some(current.clone());
                self.last_posted = now;
                let (progress, message) = current;
                return Some(ReportBody::Step {
                    index: self.index,
                    name: self.name.clone(),
                    state: StepState::Running,
                    progress,
                    message: Some(message),
                });
            }
        }
        if now.saturating_duration_since(self.last_posted) >= HEARTBEAT_EVERY {
            self.last_posted = now;
            return Some(ReportBody::Heartbeat {});
        }
        None
    }
}

/// The fraction done (the mean over the tasks that know theirs) and one line per task
/// joined by `; `; `None` when no task runs.
pub fn summarize(tasks: &[Progress]) -> Option<(Option<f64>, String)> {
    if tasks.is_empty() {
        return None;
    }
    let fractions: Vec<f64> = tasks
        .iter()
        .filter_map(|t| t.percent.map(|p| (p / 100.0).clamp(0.0, 1.0)))
        .collect();
    let fraction = (!fractions.is_empty())
        .then(|| fractions.iter().sum::<f64>() / fractions.len() as f64)
        // Two decimals: a message that did not change reads as no change.
        .map(|f| (f * 100.0).round() / 100.0);
    let lines: Vec<String> = tasks.iter().map(|t| describe(t, tasks.len() > 1)).collect();
    Some((fraction, lines.join("; ")))
}

/// "1.2 GiB of 2.0 GiB, 150 MiB/s, ETA 5 s", after the task's name when `named`, with the
/// phase when the bytes are not known.
fn describe(task: &Progress, named: bool) -> String {
    let mut parts = Vec::new();
    match (task.done_bytes, task.total_bytes) {
        (Some(done), Some(total)) => parts.push(format!("{} of {}", size(done), size(total))),
        (Some(done), None) => parts.push(size(done)),
        _ => {
            let mut phase = task.phase.clone();
            if let Some(percent) = task.percent {
                phase.push_str(&format!(" {percent:.0}%"));
            }
            parts.push(phase);
        }
    }
    if let Some(rate) = task.bytes_per_second {
        parts.push(format!("{:.0} MiB/s", rate / f64::from(1u32 << 20)));
    }
    if let Some(eta) = task.eta_seconds {
        parts.push(format!("ETA {eta:.0} s"));
    }
    if let Some(message) = &task.message {
        parts.push(message.clone());
    }
    let text = parts.join(", ");
    if named {
        format!("{}: {text}", task.task)
    } else {
        text
    }
}

/// Bytes in GiB (one decimal) from 1 GiB, else MiB.
fn size(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let bytes = bytes as f64;
    if bytes >= GIB {
        format!("{:.1} GiB", bytes / GIB)
    } else {
        format!("{:.0} MiB", bytes / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(done: u64, rate: Option<f64>, eta: Option<f64>) -> Progress {
        let total = 2u64 << 30;
        Progress {
            task: "write_image to /dev/vda".into(),
            phase: "download".into(),
            percent: Some(done as f64 * 100.0 / total as f64),
            done_bytes: Some(done),
            total_bytes: Some(total),
            bytes_per_second: rate,
            eta_seconds: eta,
            message: None,
        }
    }

    #[test]
    fn an_image_write_reads_as_bytes_rate_and_eta() {
        let done = (12u64 << 30) / 10;
        let (fraction, message) =
            summarize(&[image(done, Some(150.0 * f64::from(1u32 << 20)), Some(5.4))]).unwrap();
        assert_eq!(fraction, Some(0.6));
        assert_eq!(message, "1.2 GiB of 2.0 GiB, 150 MiB/s, ETA 5 s");
        assert_eq!(
            summarize(&[image(3 << 20, None, None)]).unwrap().1,
            "3 MiB of 2.0 GiB",
            "no rate in the first second"
        );
        assert_eq!(summarize(&[]), None);
    }

    #[test]
    fn several_erases_average_and_are_named() {
        let erase = |device: &str, percent: Option<f64>| Progress {
            task: format!("erase {device}"),
            phase: "overwrite".into(),
            percent,
            ..Progress::default()
        };
        let (fraction, message) = summarize(&[
            erase("/dev/nvme0n1", Some(20.0)),
            erase("/dev/sda", Some(60.0)),
            erase("/dev/sdb", None),
        ])
        .unwrap();
        assert_eq!(fraction, Some(0.4));
        assert_eq!(
            message,
            "erase /dev/nvme0n1: overwrite 20%; erase /dev/sda: overwrite 60%; \
             erase /dev/sdb: overwrite"
        );
    }

    #[test]
    fn posts_changes_then_heartbeats_during_silence() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut watch = StepWatch::new(2, "write_image", start);
        assert_eq!(watch.tick(&[], at(3)), None, "nothing to say yet");
        let first = image(1 << 30, None, None);
        match watch.tick(std::slice::from_ref(&first), at(6)) {
            Some(ReportBody::Step {
                index: 2,
                state: StepState::Running,
                progress: Some(p),
                message: Some(m),
                ..
            }) => {
                assert_eq!(p, 0.5);
                assert_eq!(m, "1.0 GiB of 2.0 GiB");
            }
            other => panic!("expected a progress report, got {other:?}"),
        }
        assert_eq!(
            watch.tick(std::slice::from_ref(&first), at(9)),
            None,
            "the same progress is not posted twice"
        );
        assert_eq!(
            watch.tick(std::slice::from_ref(&first), at(21)),
            Some(ReportBody::Heartbeat {}),
            "15 s of silence"
        );
        assert_eq!(watch.tick(&[], at(24)), None);
        assert!(matches!(
            watch.tick(&[image(3 << 29, None, None)], at(27)),
            Some(ReportBody::Step {
                progress: Some(_),
                ..
            })
        ));
    }
}
