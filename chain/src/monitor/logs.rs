//! Node logs: followed as they grow (rotation-safe), parsed per client format into level, module, message and
//! fields, and turned into alerts: WARN and ERROR lines counted by pattern (the message with its numbers and
//! hashes blanked), so a flood of one warning is one alert with a count.
//!
//! Formats, tried in order (a node's format does not depend on its client only: geth takes `--log.format`):
//! - JSON (geth `--log.format json`, Besu's JSON layout): `{"lvl"|"level": .., "msg"|"message": .., ...}`;
//! - geth and GoQuorum terminal: `WARN [12-02|21:07:52.343] Message   key=value key2="quoted value"`;
//! - Besu log4j: `2024-01-01 12:00:00.000+00:00 | main | WARN  | Module | Message`;
//! - OpenEthereum: `2024-01-01 12:00:00  IO Worker #0 WARN sync  Message`.
//!
//! A line none of them reads is kept as a raw line of unknown level (never an alert).

use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

/// The most bytes one [`LogFollower::read_lines`] reads, so a huge burst is spread over several readings.
const MAX_READ: u64 = 1 << 20;

/// A log line's level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    /// A line no known format reads.
    Unknown,
}

impl Level {
    fn parse(text: &str) -> Option<Level> {
        match text.trim().to_ascii_uppercase().as_str() {
            "TRACE" | "TRCE" => Some(Level::Trace),
            "DEBUG" | "DBUG" => Some(Level::Debug),
            "INFO" => Some(Level::Info),
            "WARN" | "WARNING" => Some(Level::Warn),
            "ERROR" | "EROR" | "ERR" | "CRIT" | "FATAL" => Some(Level::Error),
            _ => None,
        }
    }

    /// WARN and ERROR lines raise alerts.
    pub fn alerts(self) -> bool {
        matches!(self, Level::Warn | Level::Error)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Unknown => "unknown",
        }
    }
}

/// One parsed log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub level: Level,
    pub module: Option<String>,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

/// Parses one line in whichever known format it is.
pub fn parse_line(line: &str) -> LogRecord {
    let line = line.trim_end();
    parse_json(line)
        .or_else(|| parse_geth(line))
        .or_else(|| parse_log4j(line))
        .or_else(|| parse_openethereum(line))
        .unwrap_or_else(|| LogRecord {
            level: Level::Unknown,
            module: None,
            message: line.to_string(),
            fields: Vec::new(),
        })
}

fn parse_json(line: &str) -> Option<LogRecord> {
    if !line.starts_with('{') {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let object = value.as_object()?;
    let level = ["lvl", "level"]
        .iter()
        .find_map(|k| object.get(*k)?.as_str().and_then(Level::parse))?;
    let message = ["msg", "message"]
        .iter()
        .find_map(|k| object.get(*k)?.as_str())?
        .to_string();
    let module = ["module", "loggerName", "logger"]
        .iter()
        .find_map(|k| object.get(*k)?.as_str())
        .map(str::to_string);
    let fields = object
        .iter()
        .filter(|(k, _)| !["lvl", "level", "msg", "message", "t", "time", "timestamp"].contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_string)))
        .collect();
    Some(LogRecord {
        level,
        module,
        message,
        fields,
    })
}

/// `LEVL [MM-DD|HH:MM:SS.mmm] Message   k=v k2="v 2"`.
fn parse_geth(line: &str) -> Option<LogRecord> {
    let (level, rest) = line.split_once(' ')?;
    let level = Level::parse(level)?;
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('[')?;
    let (stamp, rest) = rest.split_once(']')?;
    if !stamp.contains('|') {
        return None;
    }
    let rest = rest.trim_start();
    // The message is padded to a column; fields follow as k=v.
    let (message, fields) = split_fields(rest);
    Some(LogRecord {
        level,
        module: None,
        message,
        fields,
    })
}

/// Splits `Message text   k=v k2="quoted value"` into the message and its fields.
fn split_fields(text: &str) -> (String, Vec<(String, String)>) {
    let mut fields = Vec::new();
    let mut message_end = text.len();
    // Fields start at the first token `k=` that follows two spaces (geth pads the message) or any space.
    let bytes: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut start_of_fields = None;
    while i < bytes.len() {
        if bytes[i] == ' ' {
            let token_start = i + 1;
            let token: String = bytes[token_start..].iter().take_while(|c| **c != ' ').collect();
            if let Some((key, _)) = token.split_once('=') {
                if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                    start_of_fields = Some(i);
                    break;
                }
            }
        }
        i += 1;
    }
    if let Some(start) = start_of_fields {
        message_end = bytes[..start].iter().collect::<String>().len();
        let mut rest: &str = &text[message_end..];
        while let Some((key, after)) = rest.trim_start().split_once('=') {
            let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
                match quoted.find('"') {
                    Some(end) => (&quoted[..end], &quoted[end + 1..]),
                    None => (quoted, ""),
                }
            } else {
                match after.find(' ') {
                    Some(end) => (&after[..end], &after[end..]),
                    None => (after, ""),
                }
            };
            fields.push((key.trim().to_string(), value.to_string()));
            rest = next;
            if rest.trim().is_empty() {
                break;
            }
        }
    }
    (text[..message_end].trim().to_string(), fields)
}

/// `2024-01-01 12:00:00.000+00:00 | main | WARN  | Module | Message`.
fn parse_log4j(line: &str) -> Option<LogRecord> {
    let parts: Vec<&str> = line.splitn(5, " | ").collect();
    if parts.len() != 5 || !parts[0].starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    Some(LogRecord {
        level: Level::parse(parts[2])?,
        module: Some(parts[3].trim().to_string()),
        message: parts[4].trim().to_string(),
        fields: Vec::new(),
    })
}

/// `2024-01-01 12:00:00  IO Worker #0 WARN sync  Message` (the thread name may hold spaces).
fn parse_openethereum(line: &str) -> Option<LogRecord> {
    if !line.starts_with(|c: char| c.is_ascii_digit()) || line.get(4..5) != Some("-") {
        return None;
    }
    let tokens: Vec<&str> = line.split_whitespace().collect();
    let at = tokens
        .iter()
        .position(|t| Level::parse(t).is_some() && t.chars().all(|c| c.is_ascii_uppercase()))?;
    let level = Level::parse(tokens[at])?;
    let module = tokens.get(at + 1).map(|m| m.to_string());
    let message = tokens.get(at + 2..).map(|m| m.join(" ")).unwrap_or_default();
    Some(LogRecord {
        level,
        module,
        message,
        fields: Vec::new(),
    })
}

/// The message with its variable parts blanked: numbers, hex values and quoted strings become `#`, so
/// `Served eth_call reqid=5` and `… reqid=6` are one pattern.
pub fn pattern_of(record: &LogRecord) -> String {
    let mut out = String::new();
    for word in record.message.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        let variable = word.chars().any(|c| c.is_ascii_digit())
            || (word.starts_with("0x") && word.len() > 2)
            || word.starts_with('"');
        out.push_str(if variable { "#" } else { word });
    }
    if out.len() > 300 {
        out.truncate(300);
    }
    out
}

/// Follows one growing log file from where it was when following began. A file that was replaced (another
/// inode) or truncated is read again from its start.
#[derive(Debug)]
pub struct LogFollower {
    path: PathBuf,
    inode: Option<u64>,
    offset: u64,
    partial: String,
}

impl LogFollower {
    /// Starts at the current end of `path` (older lines are not alerts of this watch).
    pub fn from_end(path: &Path) -> Self {
        let (inode, offset) = match std::fs::metadata(path) {
            Ok(meta) => (Some(std::os::unix::fs::MetadataExt::ino(&meta)), meta.len()),
            Err(_) => (None, 0),
        };
        Self {
            path: path.to_path_buf(),
            inode,
            offset,
            partial: String::new(),
        }
    }

    /// The complete lines added since the last call (at most about 1 MiB of them).
    pub fn read_lines(&mut self) -> Vec<String> {
        let Ok(meta) = std::fs::metadata(&self.path) else {
            return Vec::new();
        };
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        if self.inode != Some(inode) || meta.len() < self.offset {
            self.inode = Some(inode);
            self.offset = 0;
            self.partial.clear();
        }
        if meta.len() == self.offset {
            return Vec::new();
        }
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return Vec::new();
        };
        if file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        let read = file.take(MAX_READ).read_to_end(&mut bytes).unwrap_or(0);
        self.offset += read as u64;
        self.partial.push_str(&String::from_utf8_lossy(&bytes));
        let mut lines: Vec<String> = self.partial.split('\n').map(str::to_string).collect();
        // The last piece has no newline yet: keep it for the next read.
        self.partial = lines.pop().unwrap_or_default();
        lines.retain(|l| !l.trim().is_empty());
        lines
    }
}

/// One alert: a WARN or ERROR pattern of one node, with how often it was seen in a span of time.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Alert {
    pub node: String,
    pub level: Level,
    pub pattern: String,
    /// The first line of this pattern seen in the span, as written.
    pub message: String,
    pub count: u64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
}

/// A pattern is announced (returned by [`AlertBook::observe`]) at most this often.
pub const ANNOUNCE_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Counts alerts by (node, level, pattern) until they are taken, and rate-limits their announcement.
#[derive(Debug, Default)]
pub struct AlertBook {
    open: BTreeMap<(String, Level, String), Alert>,
    announced: BTreeMap<(String, Level, String), std::time::Instant>,
    /// Lines no format read, kept as raw lines (counted, never alerts).
    pub unparsed: u64,
}

impl AlertBook {
    /// Counts `line` of `node` if it is a WARN or ERROR line; returns the alert when its pattern was not
    /// announced in the last [`ANNOUNCE_EVERY`] (so a flood of one warning is said once a minute).
    pub fn observe(&mut self, node: &str, line: &str, at: DateTime<Utc>) -> Option<&Alert> {
        let record = parse_line(line);
        if record.level == Level::Unknown {
            self.unparsed += 1;
            return None;
        }
        if !record.level.alerts() {
            return None;
        }
        let pattern = pattern_of(&record);
        let key = (node.to_string(), record.level, pattern.clone());
        let now = std::time::Instant::now();
        let announce = self
            .announced
            .get(&key)
            .is_none_or(|last| now.duration_since(*last) >= ANNOUNCE_EVERY);
        if announce {
            self.announced.insert(key.clone(), now);
        }
        let alert = self.open.entry(key).or_insert_with(|| Alert {
            node: node.to_string(),
            level: record.level,
            pattern,
            message: line.chars().take(1000).collect(),
            count: 0,
            first_at: at,
            last_at: at,
        });
        alert.count += 1;
        alert.last_at = at;
        announce.then_some(&*alert)
    }

    /// The alerts counted since the last call.
    pub fn take(&mut self) -> Vec<Alert> {
        std::mem::take(&mut self.open).into_values().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_format_parses() {
        let geth = parse_line("WARN [12-02|21:07:52.343] Served eth_call                          reqid=5 duration=\"1.2 ms\" err=\"execution reverted\"");
        assert_eq!(geth.level, Level::Warn);
        assert_eq!(geth.message, "Served eth_call");
        assert_eq!(
            geth.fields,
            vec![
                ("reqid".to_string(), "5".to_string()),
                ("duration".to_string(), "1.2 ms".to_string()),
                ("err".to_string(), "execution reverted".to_string())
            ]
        );
        let quorum = parse_line("EROR[12-02|21:07:52.343] Failed to decode message from payload   address=0x1234");
        assert_eq!(
            quorum.level,
            Level::Unknown,
            "no space after the level: not the terminal format"
        );
        let quorum = parse_line("ERROR[12-02|21:07:52.343] x");
        assert_eq!(quorum.level, Level::Unknown);
        let geth_error = parse_line("EROR [12-02|21:07:52.343] Failed to decode message from payload   address=0x1234");
        assert_eq!(geth_error.level, Level::Error);
        assert_eq!(geth_error.fields, vec![("address".to_string(), "0x1234".to_string())]);
        let json = parse_line(r#"{"t":"2026-12-02T21:07:52Z","lvl":"warn","msg":"Sync failed","peer":"abc","n":5}"#);
        assert_eq!((json.level, json.message.as_str()), (Level::Warn, "Sync failed"));
        assert!(json.fields.contains(&("n".to_string(), "5".to_string())));
        let besu = parse_line(
            "2024-01-01 12:00:00.000+00:00 | EthScheduler-Workers-0 | WARN  | EthPeers | Disconnecting peer 0xabc",
        );
        assert_eq!(besu.level, Level::Warn);
        assert_eq!(besu.module.as_deref(), Some("EthPeers"));
        assert_eq!(besu.message, "Disconnecting peer 0xabc");
        let oe = parse_line("2024-01-01 12:00:00  IO Worker #0 WARN sync  Unexpected block 12");
        assert_eq!(
            (oe.level, oe.module.as_deref(), oe.message.as_str()),
            (Level::Warn, Some("sync"), "Unexpected block 12")
        );
        let raw = parse_line("anvil listening on 127.0.0.1:8545");
        assert_eq!(
            (raw.level, raw.message.as_str()),
            (Level::Unknown, "anvil listening on 127.0.0.1:8545")
        );
        assert_eq!(
            parse_line("INFO [12-02|21:07:52.343] Imported new chain segment number=5").level,
            Level::Info
        );
    }

    #[test]
    fn alerts_count_one_pattern_and_skip_info_and_raw_lines() {
        let mut book = AlertBook::default();
        let at = Utc::now();
        assert!(book
            .observe("n1", "WARN [12-02|21:07:52.343] Served eth_call reqid=5 block 12", at)
            .is_some());
        assert!(book
            .observe("n1", "WARN [12-02|21:07:53.343] Served eth_call reqid=6 block 13", at)
            .is_none());
        assert!(book
            .observe("n2", "WARN [12-02|21:07:53.343] Served eth_call reqid=6 block 13", at)
            .is_some());
        // Numbers in the message itself are blanked in the pattern.
        let record = parse_line("EROR [12-02|21:07:53.343] Block 12 from 0xabc failed");
        assert_eq!(pattern_of(&record), "Block # from # failed");
        assert!(book
            .observe("n1", "INFO [12-02|21:07:53.343] Imported block 13", at)
            .is_none());
        assert!(book.observe("n1", "garbage line", at).is_none());
        assert_eq!(book.unparsed, 1);
        let alerts = book.take();
        assert_eq!(alerts.len(), 2);
        let n1 = alerts.iter().find(|a| a.node == "n1").unwrap();
        assert_eq!((n1.count, n1.pattern.as_str()), (2, "Served eth_call"));
        assert!(book.take().is_empty(), "taken once");
        // Counted again after the taking, but not announced again within the minute.
        assert!(book
            .observe("n1", "WARN [12-02|21:07:54.343] Served eth_call reqid=7", at)
            .is_none());
        assert_eq!(book.take()[0].count, 1);
    }

    #[test]
    fn a_follower_reads_new_complete_lines_and_survives_rotation() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.log");
        std::fs::write(&path, "old line\n").unwrap();
        let mut follower = LogFollower::from_end(&path);
        assert!(follower.read_lines().is_empty(), "starts at the end");
        let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
        write!(file, "one\ntwo\nthr").unwrap();
        assert_eq!(follower.read_lines(), vec!["one", "two"]);
        writeln!(file, "ee").unwrap();
        assert_eq!(follower.read_lines(), vec!["three"]);
        // Rotated: renamed away, a new file in its place.
        std::fs::rename(&path, dir.path().join("node.log.1")).unwrap();
        std::fs::write(&path, "fresh\n").unwrap();
        assert_eq!(follower.read_lines(), vec!["fresh"]);
        // Truncated in place.
        std::fs::write(&path, "").unwrap();
        assert!(follower.read_lines().is_empty());
        std::fs::write(&path, "after truncate\n").unwrap();
        assert_eq!(follower.read_lines(), vec!["after truncate"]);
    }
}
