//! Task logs: one file per try, NDJSON lines `{timestamp, level, logger, event}` like Airflow 3's structured
//! task logs, under `<logs>/dag_id=<d>/run_id=<r>/task_id=<t>/attempt=<n>.log`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// One line of a task log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub timestamp: String,
    pub level: String,
    pub logger: String,
    pub event: String,
}

impl LogLine {
    /// Human form: `[2026-11-22T18:00:00.123Z] {task.stdout} INFO - text`.
    pub fn to_text(&self) -> String {
        format!(
            "[{}] {{{}}} {} - {}",
            self.timestamp,
            self.logger,
            self.level.to_uppercase(),
            self.event
        )
    }
}

/// Path of the log of one try.
pub fn try_log_path(logs_dir: &Path, dag_id: &str, run_id: &str, task_id: &str, try_number: i64) -> PathBuf {
    logs_dir
        .join(format!("dag_id={}", sanitize(dag_id)))
        .join(format!("run_id={}", sanitize(run_id)))
        .join(format!("task_id={}", sanitize(task_id)))
        .join(format!("attempt={try_number}.log"))
}

/// Keeps path components to safe characters (run ids hold `:` and `+`, which are fine; `/` is not).
fn sanitize(part: &str) -> String {
    part.chars()
        .map(|c| if c == '/' || c == '\\' || c == '\0' { '_' } else { c })
        .collect::<String>()
        .replace("..", "__")
}

/// Appends lines to a task log; cheap to clone and safe to share between threads.
#[derive(Clone)]
pub struct LogWriter {
    file: Arc<Mutex<File>>,
}

impl LogWriter {
    pub fn open(path: &Path) -> std::io::Result<LogWriter> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(LogWriter {
            file: Arc::new(Mutex::new(file)),
        })
    }

    pub fn line(&self, level: &str, logger: &str, event: &str) {
        let line = LogLine {
            timestamp: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            level: level.to_string(),
            logger: logger.to_string(),
            event: event.to_string(),
        };
        if let Ok(mut json) = serde_json::to_string(&line) {
            json.push('\n');
            if let Ok(mut file) = self.file.lock() {
                let _ = file.write_all(json.as_bytes());
            }
        }
    }

    pub fn info(&self, event: &str) {
        self.line("info", "dagctl", event);
    }

    pub fn error(&self, event: &str) {
        self.line("error", "dagctl", event);
    }
}

/// Reads a log file into lines; lines that are not JSON (written by something else) are kept as text.
pub fn read_log(path: &Path) -> std::io::Result<Vec<LogLine>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|_| LogLine {
                timestamp: String::new(),
                level: "info".into(),
                logger: "raw".into(),
                event: line.to_string(),
            })
        })
        .collect())
}
