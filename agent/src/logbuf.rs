//! The agent's own log, kept in memory for `log.collect_system_logs`.
//!
//! A ramdisk agent often has no journal and no persistent disk, so every tracing event is
//! also formatted into a bounded ring of lines. Set it up next to the console output:
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//!
//! let logs = rivet_agent::logbuf::LogBuffer::new(rivet_agent::logbuf::DEFAULT_LOG_LINES);
//! tracing_subscriber::registry()
//!     .with(tracing_subscriber::fmt::layer())
//!     .with(logs.layer())
//!     .init();
//! ```

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// How many lines are kept by default.
pub const DEFAULT_LOG_LINES: usize = 10_000;

#[derive(Debug)]
struct Ring {
    lines: VecDeque<String>,
    capacity: usize,
    dropped: u64,
}

/// The process's log buffer: the one every subscriber of this process feeds, PID 1's console
/// subscriber included (the agent process it forks inherits it), and the one
/// `log.collect_system_logs` reads.
pub fn global() -> &'static LogBuffer {
    static GLOBAL: std::sync::OnceLock<LogBuffer> = std::sync::OnceLock::new();
    GLOBAL.get_or_init(|| LogBuffer::new(DEFAULT_LOG_LINES))
}

/// A ring of the last N log lines; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct LogBuffer {
    ring: Arc<Mutex<Ring>>,
}

impl LogBuffer {
    /// Keeps the last `capacity` lines (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        LogBuffer {
            ring: Arc::new(Mutex::new(Ring {
                lines: VecDeque::with_capacity(capacity.min(1024)),
                capacity,
                dropped: 0,
            })),
        }
    }

    fn with_ring<R>(&self, f: impl FnOnce(&mut Ring) -> R) -> R {
        match self.ring.lock() {
            Ok(mut ring) => f(&mut ring),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Appends one line, dropping the oldest when full.
    pub fn push(&self, line: String) {
        self.with_ring(|ring| {
            if ring.lines.len() == ring.capacity {
                ring.lines.pop_front();
                ring.dropped += 1;
            }
            ring.lines.push_back(line);
        });
    }

    /// The kept lines, oldest first.
    pub fn lines(&self) -> Vec<String> {
        self.with_ring(|ring| ring.lines.iter().cloned().collect())
    }

    /// The kept lines as text, one per line, preceded by a note when older lines were dropped.
    pub fn text(&self) -> String {
        self.with_ring(|ring| {
            let mut text = String::new();
            if ring.dropped > 0 {
                let _ = writeln!(text, "[{} older lines dropped]", ring.dropped);
            }
            for line in &ring.lines {
                text.push_str(line);
                text.push('\n');
            }
            text
        })
    }

    /// A tracing layer that feeds this buffer.
    pub fn layer(&self) -> LogBufferLayer {
        LogBufferLayer {
            buffer: self.clone(),
        }
    }
}

/// Formats each event as `<UTC time> <LEVEL> <target>: <message> key=value...`.
#[derive(Debug, Clone)]
pub struct LogBufferLayer {
    buffer: LogBuffer,
}

#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: String,
}

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

fn timestamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond()
    )
}

impl<S: Subscriber> Layer<S> for LogBufferLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = LineVisitor::default();
        event.record(&mut visitor);
        let metadata = event.metadata();
        self.buffer.push(format!(
            "{} {:>5} {}: {}{}",
            timestamp(),
            metadata.level(),
            metadata.target(),
            visitor.message,
            visitor.fields
        ));
    }
}

#[cfg(test)]
mod tests {
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;

    #[test]
    fn keeps_the_last_lines() {
        let buffer = LogBuffer::new(3);
        for i in 0..5 {
            buffer.push(format!("line {i}"));
        }
        assert_eq!(buffer.lines(), ["line 2", "line 3", "line 4"]);
        assert_eq!(
            buffer.text(),
            "[2 older lines dropped]\nline 2\nline 3\nline 4\n"
        );
    }

    #[test]
    fn layer_formats_events() {
        let buffer = LogBuffer::new(DEFAULT_LOG_LINES);
        let subscriber = tracing_subscriber::registry().with(buffer.layer());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "rivet::test", disk = "sda", count = 3, "erasing");
            tracing::warn!("plain");
        });
        let lines = buffer.lines();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].ends_with(" INFO rivet::test: erasing disk=\"sda\" count=3"),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains(" WARN "), "{}", lines[1]);
        assert!(lines[1].ends_with(": plain"), "{}", lines[1]);
    }
}
