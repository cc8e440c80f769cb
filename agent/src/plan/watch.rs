//! What a running plan step tells the server between its start and its end (and how its
//! tasks ended, at its end): its progress (from the agent's progress board, which the image
//! writer and the erase code feed), looked at every [`LOOK_EVERY`] and posted when it
//! changed: the first at once, then at most every [`PROGRESS_EVERY`]; otherwise a heartbeat
//! every [`HEARTBEAT_EVERY`] so the server knows the agent is alive during a silent step.

use std::time::{Duration, Instant};

use rivet_protocol::report::{ReportBody, StepState};

use crate::progress::Progress;

/// How often a running step's progress board is looked at.
pub const LOOK_EVERY: Duration = Duration::from_secs(1);
/// The shortest time between two progress reports of a step.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(3);
/// The longest silence while a step runs: a heartbeat goes out after it.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(15);

/// Watches one running step.
#[derive(Debug)]
pub struct StepWatch {
    index: u32,
    name: String,
    /// The last report of any kind (the step's start at first).
    last_posted: Instant,
    /// The last progress report: when, and what it said.
    last_progress: Option<(Instant, (Option<f64>, String))>,
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
    /// since the last progress report and that was [`PROGRESS_EVERY`] ago (or there was
    /// none), else a heartbeat when nothing was posted for [`HEARTBEAT_EVERY`], else
    /// nothing.
    pub fn tick(&mut self, tasks: &[Progress], now: Instant) -> Option<ReportBody> {
        if let Some(current) = summarize(tasks) {
            let due = match &self.last_progress {
                None => true,
                Some((at, said)) => {
                    *said != current && now.saturating_duration_since(*at) >= PROGRESS_EVERY
                }
            };
            if due {
                self.last_progress = Some((now, current.clone()));
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

/// How a step's tasks ended, for its end report: the outcome alone for one task, `task:
/// outcome` parts joined by `; ` for several; `None` for none.
pub fn outcomes(finished: &[(String, String)]) -> Option<String> {
    match finished {
        [] => None,
        [(_, outcome)] => Some(outcome.clone()),
        several => Some(
            several
                .iter()
                .map(|(task, outcome)| format!("{task}: {outcome}"))
                .collect::<Vec<_>>()
                .join("; "),
        ),
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
    fn one_outcome_alone_several_by_task() {
        assert_eq!(outcomes(&[]), None);
        let write = ("write_image".to_string(), "192 MiB written".to_string());
        assert_eq!(
            outcomes(std::slice::from_ref(&write)).unwrap(),
            "192 MiB written"
        );
        let erase = (
            "erase /dev/vda".to_string(),
            "erased by metadata".to_string(),
        );
        assert_eq!(
            outcomes(&[write, erase]).unwrap(),
            "write_image: 192 MiB written; erase /dev/vda: erased by metadata"
        );
    }

    #[test]
    fn posts_the_first_progress_at_once_then_changes_every_3_s_and_heartbeats() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut watch = StepWatch::new(2, "write_image", start);
        assert_eq!(watch.tick(&[], at(1000)), None, "nothing to say yet");
        let first = image(1 << 30, None, None);
        match watch.tick(std::slice::from_ref(&first), at(2000)) {
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
        let second = image(3 << 29, None, None);
        assert_eq!(
            watch.tick(std::slice::from_ref(&second), at(4000)),
            None,
            "changed, but 2 s after the last progress report"
        );
        assert!(matches!(
            watch.tick(std::slice::from_ref(&second), at(5000)),
            Some(ReportBody::Step {
                progress: Some(_),
                ..
            })
        ));
        assert_eq!(
            watch.tick(std::slice::from_ref(&second), at(9000)),
            None,
            "the same progress is not posted twice"
        );
        assert_eq!(
            watch.tick(std::slice::from_ref(&second), at(20000)),
            Some(ReportBody::Heartbeat {}),
            "15 s of silence"
        );
        assert_eq!(watch.tick(&[], at(21000)), None);
    }
}
