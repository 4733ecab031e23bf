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
    /// Values written as `***` wherever they appear in a line (Airflow's secret masker), longest first.
    secrets: Arc<std::sync::RwLock<Vec<String>>>,
    /// Each line is printed on standard output as well, as text (already masked).
    echo: bool,
}

/// Values shorter than this are not masked: they would blank out ordinary words and numbers.
const MIN_SECRET_CHARS: usize = 4;

/// The text values under sensitive keys of `values`, at any depth (a mapping under a sensitive key is
/// secret as a whole).
pub fn sensitive_values(values: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    engine::secrets::sensitive_json_values(&serde_json::Value::Object(values.clone()))
}

impl TaskLog {
    pub fn new() -> TaskLog {
        TaskLog::default()
    }

    /// A log that writes each of `secrets` (of at least 4 characters) as `***`.
    pub fn masking(secrets: Vec<String>) -> TaskLog {
        let log = TaskLog::default();
        log.add_secrets(secrets);
        log
    }

    /// This log, printing each line on standard output as well (masked, as text).
    pub fn echoing(mut self, echo: bool) -> TaskLog {
        self.echo = echo;
        self
    }

    /// Masks `secrets` (of at least 4 characters) in every line written from now on, by this log and its
    /// clones.
    pub fn add_secrets(&self, secrets: Vec<String>) {
        let Ok(mut known) = self.secrets.write() else {
            return;
        };
        known.extend(secrets.into_iter().filter(|s| s.chars().count() >= MIN_SECRET_CHARS));
        known.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        known.dedup();
    }

    /// `text` with every known secret written as `***`.
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        let Ok(secrets) = self.secrets.read() else {
            return out;
        };
        for secret in secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }

    pub fn line(&self, level: &str, logger: &str, event: &str) {
        let line = if self.secrets.read().map(|s| s.is_empty()).unwrap_or(true) {
            LogLine::now(level, logger, event)
        } else {
            LogLine::now(level, logger, &self.mask(event))
        };
        if self.echo {
            use std::io::Write;
            let _ = writeln!(std::io::stdout().lock(), "{}", line.to_text());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_under_sensitive_names_are_masked_at_any_depth() {
        let conf = serde_json::json!({
            "who": "world",
            "API_Token": "tok-123456",
            "db": {"password": "hunter22", "host": "db.local"},
            "private_key": {"pem": "-----BEGIN-----"},
            "pin": "12",
        });
        let mut secrets = sensitive_values(conf.as_object().unwrap());
        secrets.sort();
        assert_eq!(secrets, ["-----BEGIN-----", "hunter22", "tok-123456"]);
        let log = TaskLog::masking(secrets);
        log.info("connecting to db.local as world with hunter22 and tok-123456");
        log.info("short ones like 12 stay");
        let lines = log.take();
        assert_eq!(lines[0].event, "connecting to db.local as world with *** and ***");
        assert_eq!(lines[1].event, "short ones like 12 stay");
    }
}
