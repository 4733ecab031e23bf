//! A load test's results: per call kind, Caliper's columns (succ, fail, send rate, throughput, latency) with
//! percentiles from the HDR histograms, errors by type, transfers' inclusion and confirmation times, and the
//! steps of a breaking-point search. The same value is printed as a table, as JSON, and is the task's XCom.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::record::{Outcome, Recorder};

/// Latency figures in milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub min: f64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// Of a histogram of microseconds, in milliseconds (all zero when it is empty).
    pub fn of<C: hdrhistogram::Counter>(h: &Histogram<C>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            min: ms(h.min()),
            mean: h.mean() / 1000.0,
            p50: ms(h.value_at_quantile(0.5)),
            p90: ms(h.value_at_quantile(0.9)),
            p99: ms(h.value_at_quantile(0.99)),
            p999: ms(h.value_at_quantile(0.999)),
            max: ms(h.max()),
        }
    }
}

/// One row of the table: a call kind, or all of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    pub succ: u64,
    pub fail: u64,
    /// Calls not sent because too many were in flight (also in `fail`).
    pub dropped: u64,
    /// Calls sent per second over the sending span.
    pub send_rate: f64,
    /// Calls answered (ok or not) per second, from the first send to the last answer (Caliper's).
    pub throughput: f64,
    /// Over successful calls.
    pub latency_ms: Latency,
    /// Failed calls by type (`timeout`, `rpc_error(-32000)`, `http_500`, ...).
    pub errors: BTreeMap<String, u64>,
}

/// What became of the transfers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TxSummary {
    /// Accepted by a node.
    pub sent: u64,
    pub included: u64,
    pub confirmed: u64,
    pub confirmations: u64,
    /// From the send to the first sight of the block holding it.
    pub inclusion_ms: Latency,
    pub confirmation_ms: Latency,
    /// Of the transactions followed into another node (one in ten, with two nodes or more): how many got
    /// there, and when (from the send).
    #[serde(default)]
    pub pool_seen: u64,
    #[serde(default)]
    pub pool_ms: Latency,
    /// The accounts transfers came from and went to.
    pub senders: Vec<String>,
    pub receivers: Vec<String>,
    /// How blocks were followed: `newHeads <ws url>` or `polling`.
    #[serde(default)]
    pub blocks_from: String,
    /// The bundled token's address, when a workload used it.
    #[serde(default)]
    pub token: Option<String>,
}

/// One step of a breaking-point search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub rate: f64,
    pub sent: u64,
    pub ok: u64,
    pub error_rate: f64,
    pub p99_ms: f64,
    /// Transfers sent in the step and included by its end (with a grace of the call timeout).
    pub tx_sent: u64,
    pub tx_included: u64,
    /// The target's pending pool before and after the step, when it says.
    pub pool_before: Option<u64>,
    pub pool_after: Option<u64>,
    /// Why it broke, if it did.
    pub broke: Option<String>,
}

/// The whole result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub mode: String,
    pub targets: Vec<String>,
    pub seconds: f64,
    pub total: Row,
    pub kinds: Vec<Row>,
    pub tx: Option<TxSummary>,
    pub steps: Vec<StepResult>,
    /// The last step's rate that held, in a breaking-point search.
    pub sustainable_rate: Option<f64>,
    pub records_file: Option<String>,
    /// Why the run ended early, if it did.
    pub ended: String,
}

/// Rows per kind and in all, from the recorder's histograms.
pub fn rows(recorder: &Recorder, kinds: &[String]) -> (Row, Vec<Row>) {
    let first = recorder.first_sent_us.unwrap_or(0);
    let send_span = (recorder.last_sent_us.saturating_sub(first)) as f64 / 1e6;
    let done_span = (recorder.last_done_us.saturating_sub(first)) as f64 / 1e6;
    let row_of = |name: &str, filter: &dyn Fn(u8) -> bool| {
        let mut ok = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        let (mut succ, mut fail, mut dropped) = (0, 0, 0);
        let mut errors = BTreeMap::new();
        for ((kind, outcome), h) in &recorder.calls {
            if !filter(*kind) {
                continue;
            }
            if *outcome == Outcome::Ok {
                succ += h.len();
                let _ = ok.add(h);
            } else {
                fail += h.len();
                if *outcome == Outcome::Dropped {
                    dropped += h.len();
                }
                *errors.entry(outcome.name()).or_insert(0) += h.len();
            }
        }
        let sent = (succ + fail - dropped) as f64;
        Row {
            name: name.to_string(),
            succ,
            fail,
            dropped,
            send_rate: if send_span > 0.0 { sent / send_span } else { 0.0 },
            throughput: if done_span > 0.0 { sent / done_span } else { 0.0 },
            latency_ms: Latency::of(&ok),
            errors,
        }
    };
    let total = row_of("all", &|_| true);
    let per_kind = kinds
        .iter()
        .enumerate()
        .map(|(i, name)| row_of(name, &|k| usize::from(k) == i))
        .collect();
    (total, per_kind)
}

impl Summary {
    /// The Caliper-like table, with errors and transfers under it.
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!(
            "{:<26} {:>9} {:>8} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}\n",
            "name", "succ", "fail", "send/s", "thru/s", "min ms", "avg ms", "p50 ms", "p90 ms", "p99 ms", "max ms"
        ));
        let line = |row: &Row| {
            let l = &row.latency_ms;
            format!(
                "{:<26} {:>9} {:>8} {:>10.1} {:>10.1} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>8.2}\n",
                row.name, row.succ, row.fail, row.send_rate, row.throughput, l.min, l.mean, l.p50, l.p90, l.p99, l.max
            )
        };
        for row in &self.kinds {
            out.push_str(&line(row));
        }
        if self.kinds.len() > 1 {
            out.push_str(&line(&self.total));
        }
        for (kind, count) in &self.total.errors {
            out.push_str(&format!("  error {kind}: {count}\n"));
        }
        if let Some(tx) = &self.tx {
            out.push_str(&format!(
                "transfers: {} accepted, {} included (p50 {:.0} ms, p99 {:.0} ms), {} confirmed after {} blocks (p50 {:.0} ms, p99 {:.0} ms)\n",
                tx.sent, tx.included, tx.inclusion_ms.p50, tx.inclusion_ms.p99, tx.confirmed, tx.confirmations,
                tx.confirmation_ms.p50, tx.confirmation_ms.p99
            ));
            if tx.pool_seen > 0 {
                out.push_str(&format!(
                    "  at another node: {} sampled (p50 {:.0} ms, p99 {:.0} ms)\n",
                    tx.pool_seen, tx.pool_ms.p50, tx.pool_ms.p99
                ));
            }
        }
        for step in &self.steps {
            out.push_str(&format!(
                "step {:>8.0}/s: {} sent, error rate {:.2}%, p99 {:.1} ms{}\n",
                step.rate,
                step.sent,
                step.error_rate * 100.0,
                step.p99_ms,
                step.broke
                    .as_deref()
                    .map(|b| format!(": broke ({b})"))
                    .unwrap_or_default()
            ));
        }
        if let Some(rate) = self.sustainable_rate {
            out.push_str(&format!("last sustainable rate: {rate:.0} calls/s\n"));
        }
        out
    }
}
