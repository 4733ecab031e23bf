//! KPIs of a run: what its load tests recorded (per-call records files), what its monitor sampled (the store's
//! node samples, block arrivals included) and the alerts its nodes' logs raised, turned into one [`Kpis`]
//! value: throughput, latency per call kind x response type, errors, block time, propagation, resources per
//! node and per 1,000 TPS, a configuration [`recommend`]ation, and, for what could not be computed, the reason.
//! Definitions and their sources are in `docs/kpis.md`.
//!
//! [`Etl`] is fed in any order (records files, then samples one by one, then alerts) and holds only bounded
//! state: records are read streaming ([`records`]), samples go into per-node series with a cap
//! ([`network`]). `dagctl kpi` feeds it from the store; `chain.log_etl` through the task execution API.

pub mod cloudwatch;
pub mod gather;
pub mod load;
pub mod network;
pub mod recommend;
pub mod records;
pub mod report;
pub mod resilience;
pub mod stats;
pub mod svg;
mod table;
pub mod trend;

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use engine::store::NodeAlert;
pub use load::LoadKpis;
pub use network::{NetworkAcc, NetworkKpis};
pub use recommend::{Capacity, Recommendation, Targets};

/// The version of the [`Kpis`] shape.
pub const VERSION: u32 = 1;

/// The run the KPIs are of.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub dag_id: String,
    pub run_id: String,
    pub state: String,
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// A KPI that could not be computed, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Missing {
    pub kpi: String,
    pub reason: String,
}

/// Alerts of one pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertKpi {
    pub node: String,
    pub level: String,
    pub pattern: String,
    pub count: i64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
}

/// Every KPI of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kpis {
    pub version: u32,
    pub run: RunInfo,
    pub computed_at: DateTime<Utc>,
    pub network: Option<String>,
    pub loads: Vec<LoadKpis>,
    pub blocks: Option<network::BlockKpis>,
    pub nodes: Vec<network::NodeKpis>,
    /// Alert counts by level (`warn`, `error`).
    pub alerts_by_level: BTreeMap<String, i64>,
    pub alerts: Vec<AlertKpi>,
    /// Where alerts came from: `monitor` (its stored alerts) or `cloudwatch <log group>`.
    #[serde(default)]
    pub logs_from: String,
    /// Log lines by node and level (when read from CloudWatch Logs).
    #[serde(default)]
    pub log_lines: Vec<LogLines>,
    pub recommendation: Recommendation,
    pub not_computed: Vec<Missing>,
    /// Series for charts (node metrics by node; block times and propagation delays).
    pub charts: Charts,
    /// The headline figures trends and regressions are judged on ([`trend::scalars`]).
    #[serde(default)]
    pub scalars: BTreeMap<String, f64>,
    /// This DAG's earlier runs, oldest first, then this one (when a history was given).
    #[serde(default)]
    pub trend: Vec<trend::TrendPoint>,
    /// Figures worse than the last runs' noise allows.
    #[serde(default)]
    pub regressions: Vec<trend::Regression>,
    /// The run's chaos tasks: faults, verdicts, and KPIs during the faults against the span before them.
    #[serde(default)]
    pub resilience: Vec<resilience::ChaosPhase>,
}

/// What the report draws beyond the loads' own series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Charts {
    pub nodes: BTreeMap<String, BTreeMap<String, network::Points>>,
    pub block_times_s: Vec<f64>,
    pub propagation_ms: Vec<f64>,
}

/// What the recommendation aims for, what a node's host has, and where node logs are read from.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub targets: Targets,
    pub capacity: Option<Capacity>,
    /// Read the network's node logs back from CloudWatch Logs (where `chain.monitor` shipped them): alerts and
    /// line counts then come from there, not from the monitor's stored alerts.
    pub cloudwatch: Option<crate::monitor::cloudwatch::CloudWatchSettings>,
}

/// Log lines of one node at one level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogLines {
    pub node: String,
    pub level: String,
    pub count: u64,
}

/// The KPI computation, fed piece by piece.
pub struct Etl {
    run: RunInfo,
    network: Option<String>,
    expected_nodes: Vec<String>,
    loads: Vec<LoadKpis>,
    acc: NetworkAcc,
    alerts: Vec<NodeAlert>,
    missing: Vec<Missing>,
    /// Lines read from a log store, when alerts come from there.
    book: Option<LogBook>,
}

/// Node log lines read from a log store: where from, their alerts, and counts by (node, level).
struct LogBook {
    source: String,
    alerts: crate::monitor::logs::AlertBook,
    counts: BTreeMap<(String, String), u64>,
}

fn missing(kpi: &str, reason: impl Into<String>) -> Missing {
    Missing {
        kpi: kpi.into(),
        reason: reason.into(),
    }
}

impl Etl {
    /// KPIs of `run`, whose network (if any) is `network` with `nodes`.
    pub fn new(run: RunInfo, network: Option<String>, nodes: Vec<String>) -> Etl {
        Etl {
            run,
            network,
            expected_nodes: nodes,
            loads: Vec::new(),
            acc: NetworkAcc::default(),
            alerts: Vec::new(),
            missing: Vec::new(),
            book: None,
        }
    }

    /// Alerts and line counts come from lines read from `source` (e.g. `cloudwatch <group>`), fed by
    /// [`Etl::add_log_line`], instead of the monitor's stored alerts.
    pub fn logs_from(&mut self, source: &str) {
        self.book = Some(LogBook {
            source: source.to_string(),
            alerts: Default::default(),
            counts: BTreeMap::new(),
        });
    }

    /// One node log line read at `at`.
    pub fn add_log_line(&mut self, node: &str, at: DateTime<Utc>, line: &str) {
        if let Some(LogBook { alerts, counts, .. }) = &mut self.book {
            let level = crate::monitor::logs::parse_line(line).level;
            let level = if level == crate::monitor::logs::Level::Unknown {
                "unknown"
            } else {
                level.as_str()
            };
            *counts.entry((node.to_string(), level.to_string())).or_insert(0) += 1;
            alerts.observe(node, line, at);
        }
    }

    /// Reads one load test's records file; a file that cannot be read is a reason, not an error.
    pub fn add_records(&mut self, path: &Path, task_id: Option<String>) {
        match load::compute(path, task_id.clone()) {
            Ok(kpis) => self.loads.push(kpis),
            Err(reason) => self
                .missing
                .push(missing(&format!("load {}", task_id.as_deref().unwrap_or("?")), reason)),
        }
    }

    /// Notes that a load test left no records file to read.
    pub fn add_missing(&mut self, kpi: &str, reason: impl Into<String>) {
        self.missing.push(missing(kpi, reason));
    }

    /// Takes one monitor sample.
    pub fn add_sample(&mut self, node: &str, metric: &str, at: DateTime<Utc>, value: f64) {
        self.acc.add(node, metric, at, value);
    }

    pub fn add_alerts(&mut self, alerts: impl IntoIterator<Item = NodeAlert>) {
        self.alerts.extend(alerts);
    }

    /// Every KPI.
    pub fn finish(self, options: &Options) -> Kpis {
        let Etl {
            run,
            network,
            expected_nodes,
            loads,
            acc,
            alerts,
            mut missing,
            book,
        } = self;
        let (logs_from, alerts, log_lines) = match book {
            None => ("monitor".to_string(), alerts, Vec::new()),
            Some(LogBook {
                source,
                alerts: mut book,
                counts,
            }) => {
                let network_name = network.clone().unwrap_or_default();
                let rows = book
                    .take()
                    .iter()
                    .map(|a| a.to_row(&network_name, Some(&run.run_id), None))
                    .collect();
                let lines = counts
                    .into_iter()
                    .map(|((node, level), count)| LogLines { node, level, count })
                    .collect();
                (source, rows, lines)
            }
        };
        // The spans load ran, on the wall clock, and their rates, for resources per 1,000 TPS.
        let load_windows: Vec<(i64, i64, f64)> = loads
            .iter()
            .filter(|l| l.end_s > 0.0)
            .map(|l| {
                let from = l.started_at.timestamp_micros();
                (from, from + (l.end_s * 1e6).round() as i64, rate_of(l))
            })
            .collect();
        let net = acc.finish(&load_windows);
        if loads.is_empty() {
            missing.push(self::missing(
                "throughput, latency, errors",
                "the run has no load test's records: no chain.load_test ran, or it kept no records file",
            ));
        }
        let has_samples = net.samples > 0;
        if !has_samples {
            missing.push(self::missing(
                "blocks, propagation, resources",
                match &network {
                    Some(name) => {
                        format!("no monitor samples of network `{name}` in the run's time: no chain.monitor ran")
                    }
                    None => "the run has no network: nothing was monitored".to_string(),
                },
            ));
        } else {
            if net.blocks.blocks == 0 {
                missing.push(self::missing(
                    "block time, empty blocks, gas used, propagation",
                    "the monitor recorded no block arrivals (they need the nodes' WebSocket newHeads)",
                ));
            } else if net.blocks.blocks < 2 {
                missing.push(self::missing("block time", "fewer than two blocks arrived"));
            }
            if net.blocks.blocks > 0 && net.nodes.len() >= 2 && net.propagation.is_empty() {
                missing.push(self::missing(
                    "block propagation",
                    "no block reached two nodes or more (nodes that do not peer, such as anvil's, each make their own)",
                ));
            }
            for node in &expected_nodes {
                if !net.nodes.iter().any(|n| &n.node == node) {
                    missing.push(self::missing(&format!("node {node}"), "no sample of this node"));
                }
            }
            for node in &net.nodes {
                if node.resources.is_empty() {
                    missing.push(self::missing(
                        &format!("resources of {}", node.node),
                        "no CPU or memory sample (its process was not found, or the monitor could not read it)",
                    ));
                }
            }
            // Load and samples must overlap in time, or their clocks disagree.
            if let (Some(from), Some(to)) = (net.from, net.to) {
                for (l, (lf, lt, _)) in loads.iter().zip(&load_windows) {
                    let (sf, st) = (from.timestamp_micros(), to.timestamp_micros());
                    if *lt < sf || *lf > st {
                        missing.push(self::missing(
                            &format!("resources per 1,000 TPS ({})", l.task_id.as_deref().unwrap_or(&l.file)),
                            format!(
                                "the load ran {} to {} but the samples span {} to {}: the clocks disagree, or no monitor ran during the load",
                                fmt_time(*lf),
                                fmt_time(*lt),
                                fmt_time(sf),
                                fmt_time(st)
                            ),
                        ));
                    }
                }
            }
        }
        let windows = windows_of(&loads, &net);
        let inclusion_p50 = loads
            .iter()
            .filter_map(|l| l.transactions.as_ref())
            .find(|t| t.included > 0)
            .map(|t| t.inclusion_ms.p50);
        let pool_growth = pool_growth(&net, &load_windows);
        let capacity = options.capacity;
        let recommendation = recommend::recommend(
            windows,
            capacity,
            options.targets,
            &net.blocks,
            inclusion_p50,
            pool_growth,
        );
        let mut alerts_by_level = BTreeMap::new();
        let mut alert_rows: Vec<AlertKpi> = alerts
            .into_iter()
            .map(|a| {
                *alerts_by_level.entry(a.level.clone()).or_insert(0) += a.count;
                AlertKpi {
                    node: a.node,
                    level: a.level,
                    pattern: a.pattern,
                    count: a.count,
                    first_at: a.first_at,
                    last_at: a.last_at,
                }
            })
            .collect();
        alert_rows.sort_by(|a, b| b.count.cmp(&a.count).then(a.pattern.cmp(&b.pattern)));
        let mut kpis = Kpis {
            version: VERSION,
            run,
            computed_at: Utc::now(),
            network,
            blocks: has_samples.then(|| net.blocks.clone()),
            nodes: net.nodes.clone(),
            alerts_by_level,
            alerts: alert_rows,
            logs_from,
            log_lines,
            recommendation,
            not_computed: missing,
            charts: Charts {
                nodes: net.charts,
                block_times_s: net.block_times,
                propagation_ms: net.propagation,
            },
            loads,
            scalars: BTreeMap::new(),
            trend: Vec::new(),
            regressions: Vec::new(),
            resilience: Vec::new(),
        };
        kpis.scalars = trend::scalars(&kpis);
        kpis
    }
}

fn fmt_time(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// A load's rate for per-TPS figures: transactions included per second when it sent any, else calls answered.
fn rate_of(load: &LoadKpis) -> f64 {
    match &load.transactions {
        Some(t) if t.included > 0 => load.throughput.tps_included,
        _ => load.throughput.throughput,
    }
}

/// The recommendation's windows: each load's phases when it had two or more, else up to ten equal slices of
/// at least 5 s of its sending span.
fn windows_of(loads: &[LoadKpis], net: &NetworkKpis) -> Vec<recommend::Window> {
    let mut windows = Vec::new();
    for load in loads {
        let base = load.started_at.timestamp_micros() as f64 / 1e6;
        let transactions = load.transactions.as_ref().is_some_and(|t| t.included > 0);
        let name = load.task_id.clone().unwrap_or_else(|| "load".into());
        if load.phases.len() >= 2 {
            for phase in &load.phases {
                let seconds = (phase.end_s - phase.start_s).max(1e-9);
                windows.push(recommend::Window {
                    label: format!("{name} phase {} ({:.0}/s)", phase.index, phase.rate),
                    from: base + phase.start_s,
                    to: base + phase.end_s,
                    rate: if transactions {
                        phase.tps_included
                    } else {
                        phase.calls as f64 / seconds
                    },
                    // No successful call: as slow as can be measured.
                    p99_ms: phase.latency_ms.as_ref().map_or(f64::INFINITY, |l| l.p99),
                    error_rate: phase.error_rate,
                    nodes: BTreeMap::new(),
                });
            }
        } else {
            // Slices of the sending span (not the tail where answers and inclusions trickle in).
            let s = &load.series;
            let first = (load.sending_s.0 / s.width_s).floor() as usize;
            let n = ((load.sending_s.1 / s.width_s).floor() as usize + 1).min(s.answered_per_s.len());
            if n <= first {
                continue;
            }
            let per = ((5.0 / s.width_s).ceil() as usize).max((n - first).div_ceil(10)).max(1);
            for start in (first..n).step_by(per) {
                let end = (start + per).min(n);
                let slice = |v: &[f64]| v[start..end].iter().sum::<f64>() / (end - start) as f64;
                let answered: f64 = s.answered_per_s[start..end].iter().sum();
                let failed: f64 = s.failed_per_s[start..end].iter().sum();
                windows.push(recommend::Window {
                    label: format!("{name} {:.0}-{:.0} s", start as f64 * s.width_s, end as f64 * s.width_s),
                    from: base + start as f64 * s.width_s,
                    to: base + end as f64 * s.width_s,
                    rate: if transactions {
                        slice(&s.tps_included)
                    } else {
                        slice(&s.answered_per_s)
                    },
                    p99_ms: s.p99_ms[start..end].iter().flatten().copied().fold(0.0, f64::max),
                    error_rate: if answered > 0.0 { failed / answered } else { 0.0 },
                    nodes: BTreeMap::new(),
                });
            }
        }
    }
    // Each node's mean use in each window, from the chart series.
    let mean_in = |points: &network::Points, from: f64, to: f64| {
        let v: Vec<f64> = points
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
            .map(|(_, v)| *v)
            .collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    for window in &mut windows {
        for node in &net.nodes {
            let cpu = net
                .charts
                .get("cpu_percent")
                .and_then(|m| m.get(&node.node))
                .and_then(|p| mean_in(p, window.from, window.to))
                .map(|p| p / 100.0);
            let memory = net
                .charts
                .get("rss_bytes")
                .and_then(|m| m.get(&node.node))
                .and_then(|p| mean_in(p, window.from, window.to))
                .map(|b| b / f64::from(1u32 << 30));
            if cpu.is_some() || memory.is_some() {
                window.nodes.insert(
                    node.node.clone(),
                    recommend::NodeUse {
                        cpu_cores: cpu,
                        memory_gib: memory,
                    },
                );
            }
        }
    }
    windows
}

/// The node whose pending pool grew most over the load: (node, first, last) in the load's spans.
fn pool_growth(net: &NetworkKpis, load_windows: &[(i64, i64, f64)]) -> Option<(String, f64, f64)> {
    let (from, to) = (
        load_windows.iter().map(|w| w.0).min()? as f64 / 1e6,
        load_windows.iter().map(|w| w.1).max()? as f64 / 1e6,
    );
    net.charts
        .get("txpool_pending")?
        .iter()
        .filter_map(|(node, points)| {
            let inside: Vec<f64> = points
                .iter()
                .filter(|(t, _)| *t >= from && *t <= to)
                .map(|(_, v)| *v)
                .collect();
            Some((node.clone(), *inside.first()?, *inside.last()?))
        })
        .max_by(|a, b| (a.2 - a.1).total_cmp(&(b.2 - b.1)))
}

impl Capacity {
    /// This host's cores and memory (`/proc/meminfo`): the local backend runs nodes here.
    pub fn of_this_host() -> Option<Capacity> {
        let cores = std::thread::available_parallelism().ok()?.get() as f64;
        let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
        let kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(Capacity {
            cores,
            memory_gib: kib / f64::from(1u32 << 20),
        })
    }
}

impl Kpis {
    /// The KPIs without their chart series (per-bucket series of the loads, node series, block times and
    /// delays): what a task pushes as its XCom.
    pub fn headline(&self) -> Kpis {
        let mut kpis = self.clone();
        kpis.charts = Charts::default();
        for load in &mut kpis.loads {
            load.series = load::LoadSeries {
                width_s: load.series.width_s,
                ..Default::default()
            };
        }
        kpis
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::record::{Call, Outcome, Recorder};

    /// A records file of `calls` ok calls started at `started_at`.
    fn records(dir: &Path, started_at: DateTime<Utc>, calls: u64) -> std::path::PathBuf {
        let path = dir.join("r.calls");
        let meta = serde_json::json!({"started_at": started_at, "mode": "open loop, 10 calls/s", "kinds": ["eth_blockNumber"],
            "nodes": ["node-1"], "sending_kinds": []});
        let mut recorder = Recorder::new(Some(&path), &meta).unwrap();
        recorder.phase(0, 0, 10.0);
        for i in 0..calls {
            recorder.call(Call {
                seq: i,
                kind: 0,
                node: 0,
                intended_us: i * 100_000,
                sent_us: i * 100_000,
                latency_us: 500,
                outcome: Outcome::Ok,
            });
        }
        assert!(recorder.close().is_none());
        path
    }

    fn reasons(kpis: &Kpis) -> Vec<String> {
        kpis.not_computed
            .iter()
            .map(|m| format!("{}: {}", m.kpi, m.reason))
            .collect()
    }

    #[test]
    fn what_cannot_be_computed_is_said_and_never_shown_as_a_number() {
        let dir = tempfile::tempdir().unwrap();
        let now = Utc::now();
        let run = RunInfo {
            dag_id: "d".into(),
            run_id: "r".into(),
            state: "success".into(),
            start: Some(now),
            end: Some(now),
        };
        // The load's clock says a day ago; the samples are from now; node-2 has none; no block arrived.
        let mut etl = Etl::new(run.clone(), Some("net".into()), vec!["node-1".into(), "node-2".into()]);
        etl.add_records(
            &records(dir.path(), now - chrono::Duration::days(1), 20),
            Some("load".into()),
        );
        for i in 0..5 {
            let at = now + chrono::Duration::seconds(i);
            etl.add_sample("node-1", "up", at, 1.0);
            etl.add_sample("node-1", "peers", at, 0.0);
        }
        let kpis = etl.finish(&Options::default());
        let said = reasons(&kpis);
        assert!(said.iter().any(|r| r.starts_with("node node-2: no sample")), "{said:?}");
        assert!(
            said.iter()
                .any(|r| r.contains("the monitor recorded no block arrivals")),
            "{said:?}"
        );
        assert!(
            said.iter()
                .any(|r| r.starts_with("resources per 1,000 TPS (load)") && r.contains("the clocks disagree")),
            "{said:?}"
        );
        assert!(said.iter().any(|r| r.starts_with("resources of node-1")), "{said:?}");
        let node = &kpis.nodes[0];
        assert!(node.per_1000_tps.is_empty() && node.resources.is_empty(), "{node:?}");
        let blocks = kpis.blocks.as_ref().unwrap();
        assert!(blocks.block_time_s.is_none() && blocks.empty_share.is_none() && blocks.gas_used_ratio.is_none());
        assert_eq!(kpis.loads[0].errors.calls, 20);
        // No successful call: no latency at all, and "-" where a number would be.
        let mut etl = Etl::new(run, None, vec![]);
        etl.add_missing("load x", "the load test kept no records file");
        let kpis = etl.finish(&Options::default());
        let said = reasons(&kpis);
        assert_eq!(said.len(), 3, "{said:?}");
        let html = report::html(&kpis);
        assert!(html.contains("the load test kept no records file") && html.contains("Not computed"));
        assert!(kpis.scalars.is_empty(), "{:?}", kpis.scalars);
    }
}
