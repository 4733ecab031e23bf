//! Reading a load test's records file (`.calls`, written by [`crate::load::record`]) back, streaming: the
//! header and metadata, then records in chunks, so memory stays the same at any length. A file cut short (a
//! generator killed mid-write) yields every whole record and says how many bytes were left over.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::load::record::{CALL_TAG, MAGIC, PHASE_TAG, RECORD_LEN, TX_TAG};

/// The metadata line of a records file.
#[derive(Debug, Clone, Deserialize)]
pub struct Meta {
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub kinds: Vec<String>,
    #[serde(default)]
    pub nodes: Vec<String>,
    #[serde(default)]
    pub sending_kinds: Vec<String>,
}

/// How one call ended, as a records file says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Answer {
    Ok,
    RpcError(i32),
    Http(i32),
    Timeout,
    Refused,
    Reset,
    Garbage,
    Dropped,
    Unknown(u8),
}

impl Answer {
    fn of(outcome: u8, code: i32) -> Answer {
        match outcome {
            0 => Answer::Ok,
            1 => Answer::RpcError(code),
            2 => Answer::Http(code),
            3 => Answer::Timeout,
            4 => Answer::Refused,
            5 => Answer::Reset,
            6 => Answer::Garbage,
            7 => Answer::Dropped,
            other => Answer::Unknown(other),
        }
    }

    /// The response type's name, as the load's summary writes it: `ok`, `rpc_error(-32000)`, `http_500`, ...
    pub fn name(self) -> String {
        match self {
            Answer::Ok => "ok".into(),
            Answer::RpcError(code) => format!("rpc_error({code})"),
            Answer::Http(status) => format!("http_{status}"),
            Answer::Timeout => "timeout".into(),
            Answer::Refused => "refused".into(),
            Answer::Reset => "reset".into(),
            Answer::Garbage => "garbage".into(),
            Answer::Dropped => "dropped".into(),
            Answer::Unknown(n) => format!("unknown({n})"),
        }
    }
}

/// One record.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Record {
    Call {
        seq: u64,
        kind: u8,
        node: u16,
        intended_us: u32,
        sent_us: u32,
        latency_us: u32,
        answer: Answer,
    },
    /// A sent transaction's fate; times in microseconds after `sent_us`, `None` when not seen.
    Tx {
        seq: u64,
        sent_us: u32,
        inclusion_us: Option<u32>,
        confirmation_us: Option<u32>,
        pool_us: Option<u32>,
    },
    Phase {
        index: u16,
        start_us: u32,
        rate: f64,
    },
    /// A record of a kind this reader does not know (a newer writer).
    Other(u8),
}

/// Decodes one 32-byte record.
pub fn decode(r: &[u8; RECORD_LEN]) -> Record {
    let u32_at = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]);
    let u64_at = |i: usize| u64::from_le_bytes(r[i..i + 8].try_into().expect("8 bytes"));
    let seen = |v: u32| (v != u32::MAX).then_some(v);
    match r[31] {
        CALL_TAG => Record::Call {
            intended_us: u32_at(0),
            sent_us: u32_at(4),
            latency_us: u32_at(8),
            kind: r[12],
            answer: Answer::of(r[13], i32::from_le_bytes([r[16], r[17], r[18], r[19]])),
            node: u16::from_le_bytes([r[14], r[15]]),
            seq: u64_at(20),
        },
        TX_TAG => Record::Tx {
            seq: u64_at(0),
            inclusion_us: seen(u32_at(8)),
            confirmation_us: seen(u32_at(12)),
            pool_us: seen(u32_at(16)),
            sent_us: u32_at(20),
        },
        PHASE_TAG => Record::Phase {
            start_us: u32_at(0),
            rate: f64::from_le_bytes(r[4..12].try_into().expect("8 bytes")),
            index: u16::from_le_bytes([r[12], r[13]]),
        },
        other => Record::Other(other),
    }
}

/// An open records file: its metadata, then its records.
pub struct RecordsFile {
    pub path: PathBuf,
    pub meta: Meta,
    reader: BufReader<File>,
    buffer: Vec<u8>,
    /// Bytes after the last whole record (a file cut short), once the end is reached.
    pub trailing_bytes: usize,
}

impl RecordsFile {
    /// Opens `path` and reads its header; an error says what is wrong with it.
    pub fn open(path: &Path) -> Result<RecordsFile, String> {
        let file = File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut line = String::new();
        let mut read_line = |what: &str, line: &mut String| -> Result<(), String> {
            line.clear();
            let n = reader
                .by_ref()
                .take(1 << 20)
                .read_line(line)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if n == 0 || !line.ends_with('\n') {
                return Err(format!("{}: {what} is missing or cut short", path.display()));
            }
            Ok(())
        };
        read_line("the first line", &mut line)?;
        if line.trim_end() != MAGIC {
            return Err(format!(
                "{}: not a load records file (its first line is not `{MAGIC}`)",
                path.display()
            ));
        }
        read_line("the metadata line", &mut line)?;
        let meta: Meta = serde_json::from_str(&line)
            .map_err(|e| format!("{}: line 2 is not the records' metadata: {e}", path.display()))?;
        Ok(RecordsFile {
            path: path.to_path_buf(),
            meta,
            reader,
            buffer: vec![0; 4096 * RECORD_LEN],
            trailing_bytes: 0,
        })
    }

    /// Calls `each` for every record, in file order. An error is a read error; a last partial record is not
    /// an error (see [`RecordsFile::trailing_bytes`]).
    pub fn for_each(&mut self, mut each: impl FnMut(Record)) -> Result<u64, String> {
        let mut count = 0u64;
        let mut filled = 0usize;
        loop {
            let n = self
                .reader
                .read(&mut self.buffer[filled..])
                .map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
            if n == 0 {
                self.trailing_bytes = filled;
                return Ok(count);
            }
            filled += n;
            let whole = filled / RECORD_LEN * RECORD_LEN;
            for chunk in self.buffer[..whole].chunks_exact(RECORD_LEN) {
                each(decode(chunk.try_into().expect("a whole record")));
                count += 1;
            }
            self.buffer.copy_within(whole..filled, 0);
            filled -= whole;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::record::{Call, Outcome, Recorder, TxFate};

    #[test]
    fn what_the_recorder_writes_reads_back_and_a_cut_file_keeps_its_whole_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.calls");
        let meta = serde_json::json!({"started_at": "2026-12-03T00:00:00Z", "mode": "open", "kinds": ["a", "b"],
            "nodes": ["n1"], "sending_kinds": ["b"]});
        let mut recorder = Recorder::new(Some(&path), &meta).unwrap();
        recorder.phase(0, 0, 100.0);
        recorder.call(Call {
            seq: 7,
            kind: 1,
            node: 0,
            intended_us: 10,
            sent_us: 12,
            latency_us: 900,
            outcome: Outcome::RpcError(-32000),
        });
        recorder.tx(TxFate {
            seq: 7,
            sent_us: 12,
            inclusion_us: Some(500_000),
            confirmation_us: None,
            pool_us: Some(40),
        });
        assert!(recorder.close().is_none());
        let mut file = RecordsFile::open(&path).unwrap();
        assert_eq!(file.meta.kinds, vec!["a", "b"]);
        let mut records = Vec::new();
        assert_eq!(file.for_each(|r| records.push(r)).unwrap(), 3);
        assert_eq!(
            records,
            vec![
                Record::Phase {
                    index: 0,
                    start_us: 0,
                    rate: 100.0
                },
                Record::Call {
                    seq: 7,
                    kind: 1,
                    node: 0,
                    intended_us: 10,
                    sent_us: 12,
                    latency_us: 900,
                    answer: Answer::RpcError(-32000)
                },
                Record::Tx {
                    seq: 7,
                    sent_us: 12,
                    inclusion_us: Some(500_000),
                    confirmation_us: None,
                    pool_us: Some(40)
                },
            ]
        );
        assert_eq!(file.trailing_bytes, 0);
        // Cut in the middle of the last record.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
        let mut file = RecordsFile::open(&path).unwrap();
        assert_eq!(file.for_each(|_| {}).unwrap(), 2);
        assert_eq!(file.trailing_bytes, 27);
        // Not a records file at all, or a header cut short.
        std::fs::write(&path, b"hello\n{}\n").unwrap();
        assert!(RecordsFile::open(&path)
            .err()
            .unwrap()
            .contains("not a load records file"));
        std::fs::write(&path, format!("{MAGIC}\n{{\"started")).unwrap();
        assert!(RecordsFile::open(&path).err().unwrap().contains("cut short"));
        assert!(RecordsFile::open(&dir.path().join("none"))
            .err()
            .unwrap()
            .contains("cannot read"));
    }
}
