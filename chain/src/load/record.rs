//! What the generator keeps of each call: an outcome (ok, a JSON-RPC error with its code, an HTTP status, a
//! timeout, refused, reset, garbage, or not sent because too many calls were in flight), HDR latency histograms
//! per call kind x outcome, and the raw per-call records streamed to a compact file, so memory stays bounded
//! at any duration.
//!
//! The records file (`.calls`): the line `dagctl-load-calls 1`, one JSON line of metadata (start time, kinds,
//! nodes), then fixed 32-byte little-endian records, one per call in completion order:
//! `intended_us u32 | sent_us u32 | latency_us u32 | kind u8 | outcome u8 | node u16 | code i32 | seq u64 |
//! pad [u8; 3] | tag 0 u8` (times are microseconds from the run's start; latency is from the intended time in
//! open loop, from the send in closed loop), and, for transactions:
//! `seq u64 | inclusion_us u32 | confirmation_us u32 | pool_us u32 | sent_us u32 | pad [u8; 7] | tag 1 u8`
//! (microseconds after the send, `u32::MAX` for what was not seen; `sent_us` from the run's start), and, where a
//! load phase begins (a rate of a ramp, a step of a breaking-point search, the users of a closed loop):
//! `start_us u32 | rate f64 | index u16 | pad [u8; 17] | tag 2 u8` (`rate` is users for a closed loop).
//! [`crate::kpi::calls`] reads it back.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use hdrhistogram::Histogram;
use serde::Serialize;

/// How one call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    Ok,
    /// A JSON-RPC error object, with its code.
    RpcError(i32),
    /// An HTTP status other than 200, with it.
    Http(u16),
    Timeout,
    Refused,
    Reset,
    /// An answer that is not HTTP, or not JSON-RPC.
    Garbage,
    /// Not sent: too many calls were in flight, or no socket could be had.
    Dropped,
}

impl Outcome {
    fn code(self) -> (u8, i32) {
        match self {
            Outcome::Ok => (0, 0),
            Outcome::RpcError(code) => (1, code),
            Outcome::Http(status) => (2, i32::from(status)),
            Outcome::Timeout => (3, 0),
            Outcome::Refused => (4, 0),
            Outcome::Reset => (5, 0),
            Outcome::Garbage => (6, 0),
            Outcome::Dropped => (7, 0),
        }
    }

    /// The outcome's name in reports: `ok`, `rpc_error(-32000)`, `http_500`, `timeout`, ...
    pub fn name(self) -> String {
        match self {
            Outcome::Ok => "ok".into(),
            Outcome::RpcError(code) => format!("rpc_error({code})"),
            Outcome::Http(status) => format!("http_{status}"),
            Outcome::Timeout => "timeout".into(),
            Outcome::Refused => "refused".into(),
            Outcome::Reset => "reset".into(),
            Outcome::Garbage => "garbage".into(),
            Outcome::Dropped => "dropped".into(),
        }
    }
}

/// One finished call.
#[derive(Debug, Clone, Copy)]
pub struct Call {
    pub seq: u64,
    pub kind: u8,
    pub node: u16,
    /// Microseconds from the run's start.
    pub intended_us: u64,
    pub sent_us: u64,
    pub latency_us: u64,
    pub outcome: Outcome,
}

/// What became of one sent transaction (microseconds after it was sent).
#[derive(Debug, Clone, Copy, Default)]
pub struct TxFate {
    pub seq: u64,
    /// Microseconds from the run's start.
    pub sent_us: u64,
    pub inclusion_us: Option<u64>,
    pub confirmation_us: Option<u64>,
    pub pool_us: Option<u64>,
}

/// Latency histograms (1 µs to 1 h, 3 significant digits) and counts, per kind x outcome and for
/// transactions, plus the records file.
pub struct Recorder {
    pub calls: BTreeMap<(u8, Outcome), Histogram<u64>>,
    pub inclusion: Histogram<u64>,
    pub confirmation: Histogram<u64>,
    pub pool: Histogram<u64>,
    pub first_sent_us: Option<u64>,
    pub last_sent_us: u64,
    pub last_done_us: u64,
    file: Option<std::io::BufWriter<std::fs::File>>,
    file_error: Option<String>,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid histogram bounds")
}

/// The records file's first line.
pub const MAGIC: &str = "dagctl-load-calls 1";
/// The last byte of a record: what it is.
pub const CALL_TAG: u8 = 0;
pub const TX_TAG: u8 = 1;
pub const PHASE_TAG: u8 = 2;
/// A record's length in bytes.
pub const RECORD_LEN: usize = 32;

impl Recorder {
    /// A recorder writing records to `path` (made, with `meta` as its metadata line), or to no file.
    pub fn new(path: Option<&Path>, meta: &impl Serialize) -> Result<Recorder, String> {
        let file = match path {
            Some(path) => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
                }
                let file = std::fs::File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                let mut out = std::io::BufWriter::with_capacity(1 << 16, file);
                let meta = serde_json::to_string(meta).map_err(|e| e.to_string())?;
                writeln!(out, "{MAGIC}\n{meta}").map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                Some(out)
            }
            None => None,
        };
        Ok(Recorder {
            calls: BTreeMap::new(),
            inclusion: histogram(),
            confirmation: histogram(),
            pool: histogram(),
            first_sent_us: None,
            last_sent_us: 0,
            last_done_us: 0,
            file,
            file_error: None,
        })
    }

    pub fn call(&mut self, call: Call) {
        let histogram = self.calls.entry((call.kind, call.outcome)).or_insert_with(histogram);
        histogram.saturating_record(call.latency_us.max(1));
        if call.outcome != Outcome::Dropped {
            self.first_sent_us = Some(self.first_sent_us.map_or(call.sent_us, |f| f.min(call.sent_us)));
            self.last_sent_us = self.last_sent_us.max(call.sent_us);
            self.last_done_us = self.last_done_us.max(call.sent_us + call.latency_us);
        }
        let (outcome, code) = call.outcome.code();
        let clamp = |v: u64| v.min(u64::from(u32::MAX - 1)) as u32;
        let mut record = [0u8; 32];
        record[0..4].copy_from_slice(&clamp(call.intended_us).to_le_bytes());
        record[4..8].copy_from_slice(&clamp(call.sent_us).to_le_bytes());
        record[8..12].copy_from_slice(&clamp(call.latency_us).to_le_bytes());
        record[12] = call.kind;
        record[13] = outcome;
        record[14..16].copy_from_slice(&call.node.to_le_bytes());
        record[16..20].copy_from_slice(&code.to_le_bytes());
        record[20..28].copy_from_slice(&call.seq.to_le_bytes());
        record[31] = CALL_TAG;
        self.write(&record);
    }

    pub fn tx(&mut self, fate: TxFate) {
        let mut record = [0u8; 32];
        let field = |v: Option<u64>| v.map_or(u32::MAX, |v| v.min(u64::from(u32::MAX - 1)) as u32);
        record[0..8].copy_from_slice(&fate.seq.to_le_bytes());
        record[8..12].copy_from_slice(&field(fate.inclusion_us).to_le_bytes());
        record[12..16].copy_from_slice(&field(fate.confirmation_us).to_le_bytes());
        record[16..20].copy_from_slice(&field(fate.pool_us).to_le_bytes());
        record[20..24].copy_from_slice(&(fate.sent_us.min(u64::from(u32::MAX - 1)) as u32).to_le_bytes());
        record[31] = TX_TAG;
        for (value, histogram) in [
            (fate.inclusion_us, &mut self.inclusion),
            (fate.confirmation_us, &mut self.confirmation),
            (fate.pool_us, &mut self.pool),
        ] {
            if let Some(v) = value {
                histogram.saturating_record(v.max(1));
            }
        }
        self.write(&record);
    }

    /// Load phase `index` (rate per second, or users) begins `start_us` after the run's start.
    pub fn phase(&mut self, index: u16, start_us: u64, rate: f64) {
        let mut record = [0u8; 32];
        record[0..4].copy_from_slice(&(start_us.min(u64::from(u32::MAX - 1)) as u32).to_le_bytes());
        record[4..12].copy_from_slice(&rate.to_le_bytes());
        record[12..14].copy_from_slice(&index.to_le_bytes());
        record[31] = PHASE_TAG;
        self.write(&record);
    }

    fn write(&mut self, record: &[u8; 32]) {
        if let Some(file) = &mut self.file {
            if let Err(e) = file.write_all(record) {
                self.file_error = Some(e.to_string());
                self.file = None;
            }
        }
    }

    /// Flushes the file; the first write error, if any.
    pub fn close(&mut self) -> Option<String> {
        if let Some(file) = &mut self.file {
            if let Err(e) = file.flush() {
                self.file_error = Some(e.to_string());
            }
        }
        self.file = None;
        self.file_error.clone()
    }
}
