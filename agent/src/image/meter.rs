//! Progress of an image write (bytes, rate, ETA) for the logs and the control server.

use std::io::Read;
use std::time::{Duration, Instant};

use crate::progress::{Progress, ProgressBoard};

/// Seconds of transfer before a rate (and an ETA) is reported.
const MIN_RATE_WINDOW: f64 = 1.0;
/// Reports at most this often to the board (which logs every few seconds).
const REPORT_EVERY: Duration = Duration::from_millis(500);

/// Where and under which task name progress goes.
#[derive(Clone, Copy)]
pub struct Meter<'a> {
    pub board: &'a ProgressBoard,
    pub task: &'a str,
}

/// A reader that reports how much of the image file went through it.
pub struct Metered<'a, R> {
    inner: R,
    meter: Option<Meter<'a>>,
    phase: &'static str,
    total: Option<u64>,
    done: u64,
    started: Instant,
    reported: Option<Instant>,
}

impl<'a, R> Metered<'a, R> {
    pub fn new(
        inner: R,
        meter: Option<Meter<'a>>,
        phase: &'static str,
        total: Option<u64>,
    ) -> Self {
        Metered {
            inner,
            meter,
            phase,
            total,
            done: 0,
            started: Instant::now(),
            reported: None,
        }
    }

    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// The progress as of now.
    pub fn progress(&self, task: &str) -> Progress {
        let elapsed = self.started.elapsed().as_secs_f64();
        // A rate over the first moments (a few KiB in milliseconds) says nothing and made
        // the first report promise a 20-minute write: no rate, hence no ETA, before then.
        let rate = (elapsed >= MIN_RATE_WINDOW).then(|| self.done as f64 / elapsed);
        let percent = self
            .total
            .filter(|&t| t > 0)
            .map(|t| (self.done as f64 * 100.0 / t as f64).min(100.0));
        let eta = match (self.total, rate) {
            (Some(total), Some(rate)) if rate > 0.0 => {
                Some(total.saturating_sub(self.done) as f64 / rate)
            }
            _ => None,
        };
        Progress {
            task: task.to_string(),
            phase: self.phase.to_string(),
            percent,
            done_bytes: Some(self.done),
            total_bytes: self.total,
            bytes_per_second: rate,
            eta_seconds: eta,
            message: None,
        }
    }

    fn report(&mut self, force: bool) {
        let Some(meter) = self.meter else { return };
        let now = Instant::now();
        if force
            || self
                .reported
                .is_none_or(|at| now.duration_since(at) >= REPORT_EVERY)
        {
            self.reported = Some(now);
            meter.board.update(self.progress(meter.task));
        }
    }
}

impl<R: Read> Read for Metered<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        self.report(n == 0);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_bytes_percent_and_rate_to_the_board() {
        let board = ProgressBoard::default();
        let meter = Meter {
            board: &board,
            task: "write_image img to /dev/sda",
        };
        let data = vec![7u8; 1000];
        let mut metered = Metered::new(&data[..], Some(meter), "download", Some(4000));
        let mut sink = Vec::new();
        metered.read_to_end(&mut sink).unwrap();
        let snapshot = board.snapshot();
        assert_eq!(snapshot.len(), 1);
        let p = &snapshot[0];
        assert_eq!(p.task, "write_image img to /dev/sda");
        assert_eq!(p.phase, "download");
        assert_eq!(p.done_bytes, Some(1000));
        assert_eq!(p.total_bytes, Some(4000));
        assert_eq!(p.percent, Some(25.0));
        assert_eq!(p.bytes_per_second, None, "no rate within the first second");
        assert_eq!(p.eta_seconds, None);
        // Two seconds in: 1000 bytes at 500 B/s, 3000 left, 6 s.
        if let Some(started) = Instant::now().checked_sub(Duration::from_secs(2)) {
            metered.started = started;
            let later = metered.progress("t");
            let rate = later.bytes_per_second.unwrap();
            assert!((rate - 500.0).abs() < 5.0, "{rate}");
            assert!((later.eta_seconds.unwrap() - 6.0).abs() < 0.1);
        }
    }
}
