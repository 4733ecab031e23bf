//! Task logs: NDJSON lines `{timestamp, level, logger, event}` like Airflow 3's structured task logs, kept
//! behind the [`TaskLogs`] trait. [`FileLogs`] keeps one file per try under
//! `<logs>/dag_id=<d>/run_id=<r>/task_id=<t>/attempt=<n>.log`; [`DbLogs`] keeps them in the database, so that
//! every scheduler and webserver of an installation (pods each with their own disk) reads the same logs.
//! Runners send their lines through the task execution API, so whichever server receives them writes them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

mod database;

pub use database::DbLogs;

/// One line of a task log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLine {
    pub timestamp: String,
    pub level: String,
    pub logger: String,
    pub event: String,
}

impl LogLine {
    /// A line stamped now.
    pub fn now(level: &str, logger: &str, event: &str) -> LogLine {
        LogLine {
            timestamp: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            level: level.to_string(),
            logger: logger.to_string(),
            event: event.to_string(),
        }
    }

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

/// Path of the log of one try: `.../task_id=<t>/attempt=<n>.log`, and for an instance of a mapped task
/// `.../task_id=<t>/map_index=<i>/attempt=<n>.log` (Airflow's layout).
pub fn try_log_path(logs_dir: &Path, key: &TryKey) -> PathBuf {
    let task = logs_dir
        .join(format!("dag_id={}", sanitize(&key.dag_id)))
        .join(format!("run_id={}", sanitize(&key.run_id)))
        .join(format!("task_id={}", sanitize(&key.task_id)));
    let task = if key.map_index >= 0 {
        task.join(format!("map_index={}", key.map_index))
    } else {
        task
    };
    task.join(format!("attempt={}.log", key.try_number))
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
        let _ = self.write(&[LogLine::now(level, logger, event)]);
    }

    /// Appends whole lines in one write.
    pub fn write(&self, lines: &[LogLine]) -> std::io::Result<()> {
        let mut buf = Vec::new();
        for line in lines {
            serde_json::to_writer(&mut buf, line).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        let mut file = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("log writer poisoned"))?;
        file.write_all(&buf)
    }

    pub fn info(&self, event: &str) {
        self.line("info", "dagctl", event);
    }

    pub fn error(&self, event: &str) {
        self.line("error", "dagctl", event);
    }
}

/// One try's log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TryKey {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    /// The mapped instance; -1 for a task that is not mapped.
    pub map_index: i64,
    pub try_number: i64,
}

impl TryKey {
    pub fn new(dag_id: &str, run_id: &str, task_id: &str, map_index: i64, try_number: i64) -> TryKey {
        TryKey {
            dag_id: dag_id.to_string(),
            run_id: run_id.to_string(),
            task_id: task_id.to_string(),
            map_index,
            try_number,
        }
    }

    /// Try `try_number` of task instance `ti`.
    pub fn of(ti: &engine::store::TiRow, try_number: i64) -> TryKey {
        TryKey::new(&ti.dag_id, &ti.run_id, &ti.task_id, ti.map_index, try_number)
    }
}

/// A page of raw NDJSON lines and the position after the last one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogPage {
    pub lines: Vec<String>,
    /// Where the next read starts (a byte offset for files).
    pub next: u64,
    /// Bytes before the first line that were not read (a tail read of a long log).
    pub skipped: u64,
}

/// Where task logs are kept; the web crate and the CLI read through this, the execution API writes.
pub trait TaskLogs: Send + Sync {
    /// Appends lines to a try's log.
    fn append(&self, key: &TryKey, lines: &[LogLine]) -> std::io::Result<()>;
    /// Complete lines from position `from`, at most `max` bytes. A log that does not exist is empty.
    fn read_from(&self, key: &TryKey, from: u64, max: u64) -> std::io::Result<LogPage>;
    /// The complete lines of the last `max` bytes.
    fn read_tail(&self, key: &TryKey, max: u64) -> std::io::Result<LogPage>;
    /// Whether the try has a log at all.
    fn exists(&self, key: &TryKey) -> bool;
    /// Where the log is, for messages.
    fn describe(&self, key: &TryKey) -> String;
    /// The try ended: nothing more will be appended.
    fn close(&self, _key: &TryKey) {}
}

/// Task logs as files under one directory.
#[derive(Clone)]
pub struct FileLogs {
    dir: PathBuf,
    /// Open appenders, so a stream of batches does not reopen the file each time.
    open: Arc<Mutex<std::collections::HashMap<TryKey, LogWriter>>>,
}

/// Appenders kept open at most; the oldest are closed beyond this.
const OPEN_WRITERS: usize = 256;

impl FileLogs {
    pub fn new(dir: PathBuf) -> FileLogs {
        FileLogs {
            dir,
            open: Arc::new(Mutex::new(std::collections::HashMap::new())),
        }
    }

    pub fn path(&self, key: &TryKey) -> PathBuf {
        try_log_path(&self.dir, key)
    }

    fn writer(&self, key: &TryKey) -> std::io::Result<LogWriter> {
        let mut open = self
            .open
            .lock()
            .map_err(|_| std::io::Error::other("log table poisoned"))?;
        if let Some(writer) = open.get(key) {
            return Ok(writer.clone());
        }
        if open.len() >= OPEN_WRITERS {
            open.clear();
        }
        let writer = LogWriter::open(&self.path(key))?;
        open.insert(key.clone(), writer.clone());
        Ok(writer)
    }
}

impl TaskLogs for FileLogs {
    fn append(&self, key: &TryKey, lines: &[LogLine]) -> std::io::Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        self.writer(key)?.write(lines)
    }

    fn read_from(&self, key: &TryKey, from: u64, max: u64) -> std::io::Result<LogPage> {
        read_page(&self.path(key), Some(from), max)
    }

    fn read_tail(&self, key: &TryKey, max: u64) -> std::io::Result<LogPage> {
        read_page(&self.path(key), None, max)
    }

    fn exists(&self, key: &TryKey) -> bool {
        self.path(key).exists()
    }

    fn describe(&self, key: &TryKey) -> String {
        self.path(key).display().to_string()
    }

    fn close(&self, key: &TryKey) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(key);
        }
    }
}

/// Reads complete lines from `from` (or the tail when `None`), at most `max` bytes.
fn read_page(path: &Path, from: Option<u64>, max: u64) -> std::io::Result<LogPage> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LogPage {
                next: from.unwrap_or(0),
                ..Default::default()
            })
        }
        Err(err) => return Err(err),
    };
    let len = file.metadata()?.len();
    let start = match from {
        Some(offset) if offset >= len => {
            return Ok(LogPage {
                next: offset.min(len),
                ..Default::default()
            })
        }
        Some(offset) => offset,
        None => len.saturating_sub(max),
    };
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::new();
    file.take(max).read_to_end(&mut buf)?;
    Ok(page(&buf, start, from.is_none()))
}

/// The complete lines of `buf`, which starts at byte `start` of a log; a tail read (`tail`) that starts mid-log
/// drops the partial first line.
fn page(buf: &[u8], start: u64, tail: bool) -> LogPage {
    let first = if tail && start > 0 {
        buf.iter().position(|b| *b == b'\n').map(|i| i + 1).unwrap_or(buf.len())
    } else {
        0
    };
    // Only complete lines: a line being written now is read next time.
    let end = buf
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0)
        .max(first);
    let lines = String::from_utf8_lossy(&buf[first..end])
        .lines()
        .map(str::to_string)
        .collect();
    LogPage {
        lines,
        next: start + end as u64,
        skipped: start + first as u64,
    }
}

/// Parses a stored line (a line that is not JSON, written by something else, is kept as text).
pub fn parse_line(line: &str) -> LogLine {
    serde_json::from_str(line).unwrap_or_else(|_| LogLine {
        timestamp: String::new(),
        level: "info".into(),
        logger: "raw".into(),
        event: line.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_tails_hold_only_complete_lines() {
        let dir = tempfile::tempdir().unwrap();
        let logs = FileLogs::new(dir.path().to_path_buf());
        let key = TryKey::new("d", "r", "t", -1, 1);
        assert!(!logs.exists(&key));
        assert_eq!(logs.read_from(&key, 0, 100).unwrap().lines.len(), 0);
        let lines: Vec<LogLine> = (0..10)
            .map(|i| LogLine::now("info", "x", &format!("line {i}")))
            .collect();
        logs.append(&key, &lines).unwrap();
        let all = logs.read_from(&key, 0, 1 << 20).unwrap();
        assert_eq!(all.lines.len(), 10);
        assert_eq!(parse_line(&all.lines[3]).event, "line 3");
        let first = logs.read_from(&key, 0, 150).unwrap();
        assert!(!first.lines.is_empty() && first.lines.len() < 10);
        let rest = logs.read_from(&key, first.next, 1 << 20).unwrap();
        assert_eq!(first.lines.len() + rest.lines.len(), 10);
        let tail = logs.read_tail(&key, 150).unwrap();
        assert!(tail.skipped > 0);
        assert_eq!(parse_line(tail.lines.last().unwrap()).event, "line 9");
        assert_eq!(tail.next, all.next);
    }
}
