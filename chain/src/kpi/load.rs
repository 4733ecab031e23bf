//! KPIs of one load test, from its records file in one pass: throughput (sent, answered, reads; transactions
//! sent, included and confirmed), latency per call kind x response type (HDR), the CDF, errors by response type
//! and JSON-RPC code, transactions' inclusion, confirmation and time to another node, the same per load phase,
//! and per-second series for charts.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::records::{Answer, Record, RecordsFile};
use super::stats::{coarse_histogram, fine_histogram, Series};
use crate::load::summary::Latency;

/// Time buckets kept per series at most.
const MAX_BUCKETS: usize = 720;
/// Points of the latency CDF.
const CDF_POINTS: usize = 101;

/// Latency of one call kind with one response type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KindLatency {
    pub kind: String,
    pub response: String,
    pub count: u64,
    pub latency_ms: Latency,
}

/// Rates over the load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Calls sent / (last send - first send).
    pub send_rate: f64,
    /// Calls answered, ok or not / (last answer - first send) (Caliper's throughput).
    pub throughput: f64,
    /// Successful calls that send nothing / the same span.
    pub reads_per_second: f64,
    /// Transactions accepted / sending span; included and confirmed / (last inclusion or confirmation - first
    /// send).
    pub tps_sent: f64,
    pub tps_included: f64,
    pub tps_confirmed: f64,
}

/// Errors by response type and JSON-RPC code.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Errors {
    pub calls: u64,
    pub failed: u64,
    /// Failed / calls (dropped ones are calls that failed).
    pub rate: f64,
    pub by_response: BTreeMap<String, u64>,
    /// JSON-RPC error codes.
    pub by_rpc_code: BTreeMap<String, u64>,
}

/// What became of the transactions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Transactions {
    pub sent: u64,
    pub included: u64,
    pub confirmed: u64,
    pub inclusion_ms: Latency,
    pub confirmation_ms: Latency,
    /// Of those followed into another node's pool.
    pub pool_seen: u64,
    pub pool_ms: Latency,
}

/// One load phase: a rate of a ramp, a step of a breaking-point search, the users of a closed loop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub index: u16,
    /// Calls (or users) per second asked for.
    pub rate: f64,
    /// Seconds from the load's start.
    pub start_s: f64,
    pub end_s: f64,
    pub calls: u64,
    pub ok: u64,
    pub failed: u64,
    pub error_rate: f64,
    /// Calls meant to start in the phase, per second of it.
    pub send_rate: f64,
    pub tx_sent: u64,
    pub tx_included: u64,
    /// Transactions sent in the phase and included, per second of it.
    pub tps_included: f64,
    /// Of its successful calls; none when none succeeded.
    pub latency_ms: Option<Latency>,
}

/// Series for charts, one value per bucket of `width_s` from the load's start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadSeries {
    pub width_s: f64,
    pub sent_per_s: Vec<f64>,
    pub answered_per_s: Vec<f64>,
    pub failed_per_s: Vec<f64>,
    pub tps_sent: Vec<f64>,
    pub tps_included: Vec<f64>,
    pub tps_confirmed: Vec<f64>,
    /// Of successful calls answered in the bucket; `null` where none was.
    pub p50_ms: Vec<Option<f64>>,
    pub p99_ms: Vec<Option<f64>>,
}

/// The KPIs of one load test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadKpis {
    /// The task that ran it, when known.
    pub task_id: Option<String>,
    pub file: String,
    pub started_at: DateTime<Utc>,
    /// Seconds from the first send to the last answer or inclusion seen.
    pub seconds: f64,
    /// Seconds from `started_at` to the last answer, inclusion or confirmation: the load's span on the wall
    /// clock is `started_at` to `started_at + end_s`.
    pub end_s: f64,
    /// Seconds from `started_at` to the first and the last call sent.
    pub sending_s: (f64, f64),
    pub mode: String,
    pub nodes: Vec<String>,
    pub records: u64,
    /// What the file could not give, e.g. a last record cut short.
    pub notes: Vec<String>,
    pub throughput: Throughput,
    /// Successful calls of every kind; none when none succeeded.
    pub latency_ms: Option<Latency>,
    pub latency: Vec<KindLatency>,
    /// (milliseconds, share of successful calls at or below).
    pub cdf: Vec<(f64, f64)>,
    pub errors: Errors,
    pub transactions: Option<Transactions>,
    pub phases: Vec<Phase>,
    pub series: LoadSeries,
}

struct PhaseAcc {
    index: u16,
    rate: f64,
    start_us: u64,
    calls: u64,
    ok: u64,
    failed: u64,
    tx_sent: u64,
    tx_included: u64,
    /// The latest intended start of its calls.
    last_intended_us: u64,
    latency: Histogram<u32>,
}

/// Reads `path` and computes its KPIs.
pub fn compute(path: &Path, task_id: Option<String>) -> Result<LoadKpis, String> {
    let mut file = RecordsFile::open(path)?;
    let meta = file.meta.clone();
    let sending: Vec<bool> = meta.kinds.iter().map(|k| meta.sending_kinds.contains(k)).collect();
    let mut by_kind: BTreeMap<(u8, Answer), Histogram<u64>> = BTreeMap::new();
    let mut all_ok = fine_histogram();
    let (mut inclusion, mut confirmation, mut pool) = (fine_histogram(), fine_histogram(), fine_histogram());
    let mut series = Series::new(MAX_BUCKETS);
    let mut phases: Vec<PhaseAcc> = Vec::new();
    let (mut first_sent, mut last_sent, mut last_done) = (u64::MAX, 0u64, 0u64);
    let (mut reads, mut failed, mut total_calls) = (0u64, 0u64, 0u64);
    let (mut tx_sent, mut tx_included, mut tx_confirmed) = (0u64, 0u64, 0u64);
    let (mut tx_first_sent, mut tx_last_sent, mut last_included, mut last_confirmed) = (u64::MAX, 0, 0, 0);
    let mut errors = Errors::default();
    let mut unknown_tags = 0u64;
    // A phase's marker is written when it begins, before any of its calls ends (a breaking-point search drains
    // every call of a step before the next): a call belongs to the last phase known that began by its intended
    // start. Transactions are placed by their send time.
    let count = file.for_each(|record| match record {
        Record::Call {
            kind,
            intended_us,
            sent_us,
            latency_us,
            answer,
            ..
        } => {
            let (intended, sent, latency) = (u64::from(intended_us), u64::from(sent_us), u64::from(latency_us));
            total_calls += 1;
            by_kind
                .entry((kind, answer))
                .or_insert_with(fine_histogram)
                .saturating_record(latency.max(1));
            let done = sent + latency;
            if answer != Answer::Dropped {
                first_sent = first_sent.min(sent);
                last_sent = last_sent.max(sent);
                last_done = last_done.max(done);
                series.at(sent).sent += 1;
                series.at(done).answered += 1;
            }
            if answer == Answer::Ok {
                all_ok.saturating_record(latency.max(1));
                let bucket = series.at(done);
                bucket
                    .latency
                    .get_or_insert_with(coarse_histogram)
                    .saturating_record(latency.max(1));
                if !sending.get(usize::from(kind)).copied().unwrap_or(false) {
                    reads += 1;
                    bucket.reads += 1;
                }
            } else {
                failed += 1;
                series.at(done).failed += 1;
                *errors.by_response.entry(answer.name()).or_insert(0) += 1;
                if let Answer::RpcError(code) = answer {
                    *errors.by_rpc_code.entry(code.to_string()).or_insert(0) += 1;
                }
            }
            if let Some(phase) = phase_of(&mut phases, intended) {
                add_call(phase, answer, latency);
                phase.last_intended_us = phase.last_intended_us.max(intended);
            }
        }
        Record::Tx {
            sent_us,
            inclusion_us,
            confirmation_us,
            pool_us,
            ..
        } => {
            let sent = u64::from(sent_us);
            tx_sent += 1;
            tx_first_sent = tx_first_sent.min(sent);
            tx_last_sent = tx_last_sent.max(sent);
            series.at(sent).tx_sent += 1;
            if let Some(phase) = phase_of(&mut phases, sent) {
                phase.tx_sent += 1;
                phase.tx_included += u64::from(inclusion_us.is_some());
            }
            if let Some(us) = inclusion_us {
                tx_included += 1;
                inclusion.saturating_record(u64::from(us).max(1));
                last_included = last_included.max(sent + u64::from(us));
                series.at(sent + u64::from(us)).tx_included += 1;
            }
            if let Some(us) = confirmation_us {
                tx_confirmed += 1;
                confirmation.saturating_record(u64::from(us).max(1));
                last_confirmed = last_confirmed.max(sent + u64::from(us));
                series.at(sent + u64::from(us)).tx_confirmed += 1;
            }
            if let Some(us) = pool_us {
                pool.saturating_record(u64::from(us).max(1));
            }
        }
        Record::Phase { index, start_us, rate } => {
            phases.push(PhaseAcc {
                index,
                rate,
                start_us: u64::from(start_us),
                calls: 0,
                ok: 0,
                failed: 0,
                tx_sent: 0,
                tx_included: 0,
                last_intended_us: u64::from(start_us),
                latency: coarse_histogram(),
            });
            phases.sort_by_key(|p| p.start_us);
        }
        Record::Other(_) => unknown_tags += 1,
    })?;
    let mut notes = Vec::new();
    if file.trailing_bytes > 0 {
        notes.push(format!(
            "the file ends with {} bytes of a record cut short (the generator stopped mid-write); every whole record was read",
            file.trailing_bytes
        ));
    }
    if unknown_tags > 0 {
        notes.push(format!("{unknown_tags} records of an unknown kind were skipped"));
    }
    if total_calls == 0 {
        notes.push("the file holds no call".into());
    }
    let span = |from: u64, to: u64| {
        if to > from {
            (to - from) as f64 / 1e6
        } else {
            0.0
        }
    };
    let rate = |count: u64, seconds: f64| if seconds > 0.0 { count as f64 / seconds } else { 0.0 };
    let sent_calls = by_kind
        .iter()
        .filter(|((_, a), _)| *a != Answer::Dropped)
        .map(|(_, h)| h.len())
        .sum::<u64>();
    let first = if first_sent == u64::MAX { 0 } else { first_sent };
    let answer_span = span(first, last_done);
    let tx_first = if tx_first_sent == u64::MAX { 0 } else { tx_first_sent };
    let throughput = Throughput {
        send_rate: rate(sent_calls, span(first, last_sent)),
        throughput: rate(sent_calls, answer_span),
        reads_per_second: rate(reads, answer_span),
        tps_sent: rate(tx_sent, span(tx_first, tx_last_sent)),
        tps_included: rate(tx_included, span(tx_first, last_included)),
        tps_confirmed: rate(tx_confirmed, span(tx_first, last_confirmed)),
    };
    errors.calls = total_calls;
    errors.failed = failed;
    errors.rate = if total_calls > 0 {
        failed as f64 / total_calls as f64
    } else {
        0.0
    };
    let kind_name = |k: u8| {
        meta.kinds
            .get(usize::from(k))
            .cloned()
            .unwrap_or_else(|| format!("kind {k}"))
    };
    let latency = by_kind
        .iter()
        .map(|((kind, answer), h)| KindLatency {
            kind: kind_name(*kind),
            response: answer.name(),
            count: h.len(),
            latency_ms: Latency::of(h),
        })
        .collect();
    let cdf = cdf_of(&all_ok);
    let end_us = last_done.max(last_included).max(last_confirmed);
    let phases = finish_phases(phases, !meta.mode.starts_with("closed"));
    let transactions =
        (tx_sent > 0 || meta.sending_kinds.iter().any(|k| meta.kinds.contains(k))).then(|| Transactions {
            sent: tx_sent,
            included: tx_included,
            confirmed: tx_confirmed,
            inclusion_ms: Latency::of(&inclusion),
            confirmation_ms: Latency::of(&confirmation),
            pool_seen: pool.len(),
            pool_ms: Latency::of(&pool),
        });
    let width = series.width_s();
    let per_s = |f: &dyn Fn(&super::stats::Bucket) -> u64| {
        series.buckets.iter().map(|b| f(b) as f64 / width).collect::<Vec<_>>()
    };
    let quantile = |q: f64| {
        series
            .buckets
            .iter()
            .map(|b| {
                b.latency
                    .as_ref()
                    .filter(|h| !h.is_empty())
                    .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
            })
            .collect::<Vec<_>>()
    };
    let load_series = LoadSeries {
        width_s: width,
        sent_per_s: per_s(&|b| b.sent),
        answered_per_s: per_s(&|b| b.answered),
        failed_per_s: per_s(&|b| b.failed),
        tps_sent: per_s(&|b| b.tx_sent),
        tps_included: per_s(&|b| b.tx_included),
        tps_confirmed: per_s(&|b| b.tx_confirmed),
        p50_ms: quantile(0.5),
        p99_ms: quantile(0.99),
    };
    Ok(LoadKpis {
        task_id,
        file: path.display().to_string(),
        started_at: meta.started_at,
        seconds: span(first, end_us),
        end_s: end_us as f64 / 1e6,
        sending_s: (first as f64 / 1e6, last_sent as f64 / 1e6),
        mode: meta.mode,
        nodes: meta.nodes,
        records: count,
        notes,
        throughput,
        latency_ms: (!all_ok.is_empty()).then(|| Latency::of(&all_ok)),
        latency,
        cdf,
        errors,
        transactions,
        phases,
        series: load_series,
    })
}

/// The phase holding time `at_us`: the last one starting at or before it.
fn phase_of(phases: &mut [PhaseAcc], at_us: u64) -> Option<&mut PhaseAcc> {
    phases.iter_mut().rev().find(|p| p.start_us <= at_us)
}

fn add_call(phase: &mut PhaseAcc, answer: Answer, latency: u64) {
    phase.calls += 1;
    if answer == Answer::Ok {
        phase.ok += 1;
        phase.latency.saturating_record(latency.max(1));
    } else {
        phase.failed += 1;
    }
}

/// Each phase ends where the next begins; the last one a call's spacing after its last call's intended start
/// (open loop), or at that start (closed loop).
fn finish_phases(phases: Vec<PhaseAcc>, open_loop: bool) -> Vec<Phase> {
    let starts: Vec<u64> = phases.iter().map(|p| p.start_us).collect();
    phases
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let spacing = if open_loop && p.rate > 0.0 {
                (1e6 / p.rate) as u64
            } else {
                0
            };
            let end = starts
                .get(i + 1)
                .copied()
                .unwrap_or(p.last_intended_us + spacing)
                .max(p.start_us);
            let seconds = (end - p.start_us) as f64 / 1e6;
            let per_s = |n: u64| if seconds > 0.0 { n as f64 / seconds } else { 0.0 };
            Phase {
                index: p.index,
                rate: p.rate,
                start_s: p.start_us as f64 / 1e6,
                end_s: end as f64 / 1e6,
                calls: p.calls,
                ok: p.ok,
                failed: p.failed,
                error_rate: if p.calls > 0 {
                    p.failed as f64 / p.calls as f64
                } else {
                    0.0
                },
                send_rate: per_s(p.calls),
                tx_sent: p.tx_sent,
                tx_included: p.tx_included,
                tps_included: per_s(p.tx_included),
                latency_ms: (!p.latency.is_empty()).then(|| Latency::of(&p.latency)),
            }
        })
        .collect()
}

/// The CDF at `CDF_POINTS` quantiles from 0 to 1 (milliseconds, quantile).
fn cdf_of(h: &Histogram<u64>) -> Vec<(f64, f64)> {
    if h.is_empty() {
        return Vec::new();
    }
    (0..CDF_POINTS)
        .map(|i| {
            let q = i as f64 / (CDF_POINTS - 1) as f64;
            (h.value_at_quantile(q) as f64 / 1000.0, q)
        })
        .collect()
}
