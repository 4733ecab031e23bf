//! A try's log as its operator writes it: lines are buffered in memory (bounded) and shipped to the engine in
//! batches by the runner; the last ones ride with the try's final state.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::log::LogLine;

/// Lines kept while the engine cannot be reached; older ones are dropped beyond this (and counted).
const MAX_BUFFERED: usize = 100_000;
/// A batch this big is sent without waiting for the flush interval.
pub(crate) const EAGER_BATCH: usize = 2_000;

#[derive(Default)]
struct Buffer {
    lines: VecDeque<LogLine>,
    dropped: u64,
}

/// The log of the running try; cheap to clone and safe to share between tasks and threads.
#[derive(Clone, Default)]
pub struct TaskLog {
    buffer: Arc<Mutex<Buffer>>,
    ready: Arc<Notify>,
}

impl TaskLog {
    pub fn new() -> TaskLog {
        TaskLog::default()
    }

    pub fn line(&self, level: &str, logger: &str, event: &str) {
        let line = LogLine::now(level, logger, event);
        let Ok(mut buffer) = self.buffer.lock() else {
            return;
        };
        if buffer.lines.len() >= MAX_BUFFERED {
            buffer.lines.pop_front();
            buffer.dropped += 1;
        }
        buffer.lines.push_back(line);
        if buffer.lines.len() == EAGER_BATCH {
            self.ready.notify_one();
        }
    }

    pub fn info(&self, event: &str) {
        self.line("info", "dagctl", event);
    }

    pub fn warning(&self, event: &str) {
        self.line("warning", "dagctl", event);
    }

    pub fn error(&self, event: &str) {
        self.line("error", "dagctl", event);
    }

    /// Takes every buffered line (with a note of any that were dropped).
    pub fn take(&self) -> Vec<LogLine> {
        let Ok(mut buffer) = self.buffer.lock() else {
            return Vec::new();
        };
        let mut lines: Vec<LogLine> = Vec::with_capacity(buffer.lines.len() + 1);
        if buffer.dropped > 0 {
            lines.push(LogLine::now(
                "warning",
                "dagctl",
                &format!(
                    "{} log lines were dropped while the engine could not be reached",
                    buffer.dropped
                ),
            ));
            buffer.dropped = 0;
        }
        lines.extend(buffer.lines.drain(..));
        lines
    }

    /// Puts lines that could not be sent back in front (bounded like new ones).
    pub fn put_back(&self, lines: Vec<LogLine>) {
        let Ok(mut buffer) = self.buffer.lock() else {
            return;
        };
        for line in lines.into_iter().rev() {
            if buffer.lines.len() >= MAX_BUFFERED {
                buffer.dropped += 1;
                continue;
            }
            buffer.lines.push_front(line);
        }
    }

    /// Resolves when a big batch is waiting.
    pub(crate) async fn batch_ready(&self) {
        self.ready.notified().await
    }
}
