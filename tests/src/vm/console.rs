//! The VM's serial console as it is written: each complete line stamped with the time since
//! QEMU started.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// How often the watcher reads new console output.
pub(super) const CONSOLE_POLL: Duration = Duration::from_millis(20);

/// Reads the console file as it grows and stamps each complete line with its arrival time.
pub(super) struct ConsoleWatcher {
    lines: Arc<Mutex<ConsoleLines>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct ConsoleLines {
    lines: Vec<(Duration, String)>,
    partial: Vec<u8>,
    error: Option<String>,
}

impl ConsoleLines {
    fn add_bytes(&mut self, bytes: &[u8], at: Duration) {
        self.partial.extend_from_slice(bytes);
        while let Some(end) = self.partial.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.partial.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            let text = text.trim_end_matches(['\n', '\r']).replace('\r', "");
            self.lines.push((at, text));
        }
    }
}

impl ConsoleWatcher {
    pub(super) fn start(path: PathBuf, started: Instant) -> ConsoleWatcher {
        let lines = Arc::new(Mutex::new(ConsoleLines::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let lines = Arc::clone(&lines);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                if let Err(e) = watch(&path, started, &lines, &stop) {
                    lock(&lines).error = Some(format!("{e:#}"));
                }
            })
        };
        ConsoleWatcher {
            lines,
            stop,
            thread: Some(thread),
        }
    }

    pub(super) fn first_match(&self, pattern: &str) -> Option<(Duration, String)> {
        lock(&self.lines)
            .lines
            .iter()
            .find(|(_, line)| line.contains(pattern))
            .cloned()
    }

    pub(super) fn text(&self) -> String {
        let lines = lock(&self.lines);
        let mut text: Vec<&str> = lines.lines.iter().map(|(_, l)| l.as_str()).collect();
        let partial = String::from_utf8_lossy(&lines.partial);
        text.push(&partial);
        text.join("\n")
    }

    pub(super) fn tail(&self, count: usize) -> String {
        let lines = lock(&self.lines);
        let mut out: Vec<String> = lines.lines[lines.lines.len().saturating_sub(count)..]
            .iter()
            .map(|(at, l)| format!("[{:>7.3}s] {l}", at.as_secs_f64()))
            .collect();
        if !lines.partial.is_empty() {
            out.push(format!(
                "[partial] {}",
                String::from_utf8_lossy(&lines.partial)
            ));
        }
        if let Some(error) = &lines.error {
            out.push(format!("(console watcher failed: {error})"));
        }
        out.join("\n")
    }

    /// Reads what is left and ends the thread.
    pub(super) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                eprintln!("the console watcher thread panicked");
            }
        }
    }
}

fn lock(lines: &Mutex<ConsoleLines>) -> std::sync::MutexGuard<'_, ConsoleLines> {
    lines.lock().unwrap_or_else(PoisonError::into_inner)
}

fn watch(
    path: &Path,
    started: Instant,
    lines: &Mutex<ConsoleLines>,
    stop: &AtomicBool,
) -> Result<()> {
    let mut file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        // Checked before the read, so output written before stop() is still collected.
        let stopping = stop.load(Ordering::Relaxed);
        loop {
            let n = file
                .read(&mut buffer)
                .with_context(|| format!("reading {}", path.display()))?;
            if n == 0 {
                break;
            }
            lock(lines).add_bytes(&buffer[..n], started.elapsed());
        }
        if stopping {
            return Ok(());
        }
        std::thread::sleep(CONSOLE_POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lines_are_split_stamped_and_stripped() {
        let mut lines = ConsoleLines::default();
        lines.add_bytes(b"first\r\nsec", Duration::from_secs(1));
        lines.add_bytes(b"ond\r\n", Duration::from_secs(2));
        assert_eq!(
            lines.lines,
            vec![
                (Duration::from_secs(1), "first".to_owned()),
                (Duration::from_secs(2), "second".to_owned())
            ]
        );
        assert!(lines.partial.is_empty());
    }
}
