//! Watching a network: every interval, for each node, its JSON-RPC state ([`node`]) and its process's host
//! usage ([`host`]), as one [`NodeReading`]; readings become store samples ([`NodeReading::samples`]).
//!
//! [`Monitor::tick`] reads every node concurrently, each call bounded so a tick never outlasts its interval
//! by much; a node that does not answer, or whose process is gone, is `up = 0` for that reading and is
//! read again at the next tick. [`Schedule`] says when to tick: on a fixed schedule until a deadline or a
//! cancellation.

pub mod client_metrics;
pub mod cloudwatch;
pub mod host;
pub mod logs;
pub mod node;
pub mod outbox;
pub mod probe;
pub mod propagation;
pub mod webhook;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use engine::store::NodeSample;
use tokio_util::sync::CancellationToken;

use crate::backend::local::rpc::NodeRpc;
use crate::backend::local::{process, NetworkRecord};
use crate::spec::Client;
pub use client_metrics::{ClientMetrics, Scraper, DEFAULT_SERIES};
pub use host::{HostSampler, HostUsage};
pub use node::RpcState;

/// The shortest interval a monitor accepts.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Settled blocks kept for [`Monitor::take_block_samples`] at most.
const MAX_SETTLED: usize = 10_000;
/// The longest a single JSON-RPC call of a reading may take.
const MAX_CALL: Duration = Duration::from_secs(2);

/// One node's state at one tick.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeReading {
    pub node: String,
    pub at: DateTime<Utc>,
    /// Answers JSON-RPC and its process lives.
    pub up: bool,
    pub pid: Option<u32>,
    #[serde(flatten)]
    pub rpc: RpcState,
    #[serde(flatten)]
    pub host: HostUsage,
    /// From the client's own metrics endpoint (none for anvil).
    #[serde(flatten)]
    pub client: ClientMetrics,
    /// Seconds between the last two distinct heads' timestamps seen by this monitor (the block time).
    pub block_time: Option<f64>,
    /// Mean and largest delay (ms) of the blocks that settled since the last reading, between their first
    /// arrival at any node and their arrival here (`newHeads`).
    pub block_propagation_ms: Option<f64>,
    pub block_propagation_max_ms: Option<f64>,
    /// Probe transactions sent to this node that finished since the last reading (see [`probe`]).
    pub tx_pool_propagation_ms: Option<f64>,
    pub tx_inclusion_ms: Option<f64>,
    pub tx_confirmation_ms: Option<f64>,
    /// Why the last probe sent to this node failed, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub probe_error: Option<String>,
}

impl NodeReading {
    /// The reading as store samples, one per known metric.
    pub fn samples(&self, network: &str, run_id: Option<&str>, task_id: Option<&str>) -> Vec<NodeSample> {
        let as_f64 = |v: Option<u64>| v.map(|v| v as f64);
        let metrics: [(&str, Option<f64>); 25] = [
            ("up", Some(if self.up { 1.0 } else { 0.0 })),
            ("head", as_f64(self.rpc.head)),
            ("peers", as_f64(self.rpc.peers)),
            ("txpool_pending", as_f64(self.rpc.txpool_pending)),
            ("txpool_queued", as_f64(self.rpc.txpool_queued)),
            ("syncing", self.rpc.syncing.map(|s| if s { 1.0 } else { 0.0 })),
            ("head_timestamp", as_f64(self.rpc.head_timestamp)),
            ("head_gas_used", as_f64(self.rpc.head_gas_used)),
            ("head_gas_limit", as_f64(self.rpc.head_gas_limit)),
            ("head_tx_count", as_f64(self.rpc.head_tx_count)),
            ("head_size", as_f64(self.rpc.head_size)),
            ("block_time_seconds", self.block_time),
            ("cpu_percent", self.host.cpu_percent),
            ("rss_bytes", self.host.rss_bytes),
            ("disk_read_bytes_per_second", self.host.disk_read_bytes_per_second),
            ("disk_write_bytes_per_second", self.host.disk_write_bytes_per_second),
            ("net_in_bytes_per_second", self.client.net_in_bytes_per_second),
            ("net_out_bytes_per_second", self.client.net_out_bytes_per_second),
            ("block_import_ms", self.client.block_import_ms),
            ("block_import_p95_ms", self.client.block_import_p95_ms),
            ("block_propagation_ms", self.block_propagation_ms),
            ("block_propagation_max_ms", self.block_propagation_max_ms),
            ("tx_pool_propagation_ms", self.tx_pool_propagation_ms),
            ("tx_inclusion_ms", self.tx_inclusion_ms),
            ("tx_confirmation_ms", self.tx_confirmation_ms),
        ];
        let series = self
            .client
            .series
            .iter()
            .map(|(name, value)| (format!("{CLIENT_PREFIX}{name}"), Some(*value)));
        metrics
            .into_iter()
            .map(|(metric, value)| (metric.to_string(), value))
            .chain(series)
            .filter_map(|(metric, value)| {
                Some(NodeSample {
                    network: network.to_string(),
                    node: self.node.clone(),
                    metric,
                    at: self.at,
                    value: value?,
                    run_id: run_id.map(str::to_string),
                    task_id: task_id.map(str::to_string),
                })
            })
            .collect()
    }
}

impl logs::Alert {
    /// The alert as a store row of `network`.
    pub fn to_row(&self, network: &str, run_id: Option<&str>, task_id: Option<&str>) -> engine::store::NodeAlert {
        engine::store::NodeAlert {
            network: network.to_string(),
            node: self.node.clone(),
            level: self.level.as_str().to_string(),
            pattern: self.pattern.clone(),
            message: self.message.clone(),
            count: self.count as i64,
            first_at: self.first_at,
            last_at: self.last_at,
            run_id: run_id.map(str::to_string),
            task_id: task_id.map(str::to_string),
        }
    }
}

/// The metric names [`NodeReading::samples`] writes.
pub const METRICS: &[&str] = &[
    "up",
    "head",
    "peers",
    "txpool_pending",
    "txpool_queued",
    "syncing",
    "head_timestamp",
    "head_gas_used",
    "head_gas_limit",
    "head_tx_count",
    "head_size",
    "block_time_seconds",
    "cpu_percent",
    "rss_bytes",
    "disk_read_bytes_per_second",
    "disk_write_bytes_per_second",
    "net_in_bytes_per_second",
    "net_out_bytes_per_second",
    "block_import_ms",
    "block_import_p95_ms",
    "block_propagation_ms",
    "block_propagation_max_ms",
    "tx_pool_propagation_ms",
    "tx_inclusion_ms",
    "tx_confirmation_ms",
    "block_arrival",
    "block_hash48",
    "block_gas_used",
    "block_gas_limit",
    "block_empty",
];

/// Client series are stored as `client:<name>` (e.g. `client:chain_head_block`).
pub const CLIENT_PREFIX: &str = "client:";

/// Whether `metric` is one a monitor stores: a [`METRICS`] name or a `client:` series.
pub fn is_metric(metric: &str) -> bool {
    METRICS.contains(&metric) || metric.strip_prefix(CLIENT_PREFIX).is_some_and(|name| !name.is_empty())
}

struct Watched {
    name: String,
    pid: Option<u32>,
    data_dir: PathBuf,
    rpc: NodeRpc,
    scraper: Option<Scraper>,
    /// The last distinct head and its timestamp, for the block time.
    last_head: Option<(u64, u64)>,
}

/// Where a node's log lines come from: its log file (a local node) or its pod's log stream.
enum LineSource {
    File(logs::LogFollower),
    Pod(tokio::sync::mpsc::Receiver<String>),
}

impl LineSource {
    fn read_lines(&mut self) -> Vec<String> {
        match self {
            LineSource::File(follower) => follower.read_lines(),
            LineSource::Pod(receiver) => {
                let mut lines = Vec::new();
                while let Ok(line) = receiver.try_recv() {
                    if !line.trim().is_empty() {
                        lines.push(line);
                    }
                }
                lines
            }
        }
    }
}

/// Reads every node of one network.
pub struct Monitor {
    client: Client,
    nodes: Vec<Watched>,
    host: HostSampler,
    /// A network on Kubernetes: its pods' usage comes from the metrics API.
    pods: Option<crate::backend::kubernetes::PodWatch>,
    /// Why the pods' usage could not be read at the last tick, if it could not.
    pub usage_error: Option<String>,
    /// Each node's log, followed from where it was when watching began.
    logs: Vec<(String, LineSource)>,
    alerts: logs::AlertBook,
    /// `newHeads` subscriptions on the nodes with WebSocket endpoints.
    propagation: Option<propagation::Propagation>,
    /// Probe transactions, when a key was given ([`Monitor::with_probe`]).
    prober: Option<probe::Prober>,
    /// Blocks settled since [`Monitor::take_block_samples`] was last called.
    settled: Vec<propagation::SettledBlock>,
}

impl Monitor {
    /// A monitor of `record`'s nodes whose calls are bounded to suit `interval`, storing the client series
    /// in [`DEFAULT_SERIES`].
    pub fn new(record: &NetworkRecord, interval: Duration) -> Self {
        Self::with_series(record, interval, DEFAULT_SERIES.iter().map(|s| s.to_string()).collect())
    }

    /// A monitor that stores the client series named in `series` (those a client has).
    pub fn with_series(record: &NetworkRecord, interval: Duration, series: Vec<String>) -> Self {
        let call = (interval.mul_f64(0.8)).clamp(MIN_INTERVAL, MAX_CALL);
        Self {
            client: record.client,
            nodes: record
                .nodes
                .iter()
                .map(|n| Watched {
                    name: n.name.clone(),
                    pid: n.pid,
                    data_dir: n.data_dir.clone(),
                    rpc: NodeRpc::new(&n.rpc, call),
                    scraper: n.ports.metrics.and_then(|port| {
                        let host = host_of(&n.rpc)?;
                        let url = client_metrics::metrics_url(record.client, host, port)?;
                        Some(Scraper::new(url, call, series.clone()))
                    }),
                    last_head: None,
                })
                .collect(),
            host: HostSampler::default(),
            pods: None,
            usage_error: None,
            logs: record
                .nodes
                .iter()
                .map(|n| (n.name.clone(), LineSource::File(logs::LogFollower::from_end(&n.log))))
                .collect(),
            alerts: logs::AlertBook::default(),
            propagation: {
                let ws: Vec<(String, String)> = record
                    .nodes
                    .iter()
                    .filter_map(|n| Some((n.name.clone(), n.ws.clone()?)))
                    .collect();
                (!ws.is_empty() && tokio::runtime::Handle::try_current().is_ok())
                    .then(|| propagation::Propagation::start(&ws))
            },
            prober: None,
            settled: Vec::new(),
        }
    }

    /// A monitor of a network on Kubernetes (within a tokio runtime): RPC and client metrics through the nodes'
    /// Services, pod usage from the metrics API and logs from the pod log API ([`PodWatch`]).
    ///
    /// [`PodWatch`]: crate::backend::kubernetes::PodWatch
    pub fn of_pods(
        record: &crate::backend::kubernetes::KubeRecord,
        interval: Duration,
        series: Vec<String>,
        pods: crate::backend::kubernetes::PodWatch,
    ) -> Self {
        let call = (interval.mul_f64(0.8)).clamp(MIN_INTERVAL, MAX_CALL);
        let logs = pods
            .follow_logs()
            .into_iter()
            .map(|(node, receiver)| (node, LineSource::Pod(receiver)))
            .collect();
        let ws: Vec<(String, String)> = record
            .nodes
            .iter()
            .filter_map(|n| Some((n.name.clone(), n.ws.clone()?)))
            .collect();
        Self {
            client: record.client,
            nodes: record
                .nodes
                .iter()
                .map(|n| Watched {
                    name: n.name.clone(),
                    pid: None,
                    data_dir: PathBuf::new(),
                    rpc: NodeRpc::new(&n.rpc, call),
                    scraper: n.metrics.clone().map(|url| Scraper::new(url, call, series.clone())),
                    last_head: None,
                })
                .collect(),
            host: HostSampler::default(),
            pods: Some(pods),
            usage_error: None,
            logs,
            alerts: logs::AlertBook::default(),
            propagation: (!ws.is_empty()).then(|| propagation::Propagation::start(&ws)),
            prober: None,
            settled: Vec::new(),
        }
    }

    /// Also sends a probe transaction from `key` every `interval` to one of `nodes` (name, RPC URL) in turn, on
    /// chain `chain_id` (within a tokio runtime).
    pub fn with_probe(
        mut self,
        nodes: Vec<(String, String)>,
        chain_id: u64,
        key: crate::keys::NodeKey,
        interval: Duration,
        confirmations: u64,
    ) -> Self {
        self.prober = Some(probe::Prober::start(nodes, key, chain_id, interval, confirmations));
        self
    }

    /// Reads what every node logged since the last call and counts its WARN and ERROR lines. Returns the alerts
    /// that are new since the alerts were last taken (one line per pattern, however often it repeats).
    pub fn follow_logs(&mut self) -> Vec<logs::Alert> {
        self.follow_logs_with(|_, _, _| {})
    }

    /// [`Monitor::follow_logs`], handing every new line to `each` (node, when read, line) first.
    pub fn follow_logs_with(&mut self, mut each: impl FnMut(&str, DateTime<Utc>, &str)) -> Vec<logs::Alert> {
        let at = Utc::now();
        let mut new = Vec::new();
        for (node, follower) in &mut self.logs {
            for line in follower.read_lines() {
                each(node, at, &line);
                if let Some(alert) = self.alerts.observe(node, &line, at) {
                    new.push(alert.clone());
                }
            }
        }
        new
    }

    /// The alerts counted since the last call (counts since then, for [`engine::store::Store::add_alerts`]).
    pub fn take_alerts(&mut self) -> Vec<logs::Alert> {
        self.alerts.take()
    }

    /// Log lines no known format read (kept as raw lines, never alerts).
    pub fn unparsed_lines(&self) -> u64 {
        self.alerts.unparsed
    }

    /// The blocks settled since the last call (with `final_take`, every block seen, for when watching ends) as
    /// store samples: `block_arrival` (the block's number) and `block_hash48` (its hash's first 48 bits) for each
    /// node at its arrival there, and at its first arrival, on that node, `block_gas_used`, `block_gas_limit` and
    /// `block_empty` (1 when it holds no transaction).
    pub fn take_block_samples(
        &mut self,
        network: &str,
        run_id: Option<&str>,
        task_id: Option<&str>,
        final_take: bool,
    ) -> Vec<NodeSample> {
        let sample = |node: &str, metric: &str, at: DateTime<Utc>, value: f64| NodeSample {
            network: network.to_string(),
            node: node.to_string(),
            metric: metric.to_string(),
            at,
            value,
            run_id: run_id.map(str::to_string),
            task_id: task_id.map(str::to_string),
        };
        let mut samples = Vec::new();
        if final_take {
            if let Some(propagation) = &self.propagation {
                self.settled.extend(propagation.take_all());
            }
        }
        for block in self.settled.drain(..) {
            let Some(number) = block.header.number else { continue };
            if let Some((node, at)) = block.arrivals.first() {
                let per_block = [
                    ("block_gas_used", block.header.gas_used.map(|v| v as f64)),
                    ("block_gas_limit", block.header.gas_limit.map(|v| v as f64)),
                    ("block_empty", block.header.empty.map(|e| if e { 1.0 } else { 0.0 })),
                ];
                for (metric, value) in per_block {
                    if let Some(value) = value {
                        samples.push(sample(node, metric, *at, value));
                    }
                }
            }
            for (node, at) in &block.arrivals {
                samples.push(sample(node, "block_arrival", *at, number as f64));
                if let Some(hash) = block.header.hash48 {
                    samples.push(sample(node, "block_hash48", *at, hash as f64));
                }
            }
        }
        samples
    }

    /// One reading of every node, in node order.
    pub async fn tick(&mut self) -> Vec<NodeReading> {
        let at = Utc::now();
        let client = self.client;
        let states = futures_util::future::join_all(self.nodes.iter().map(|n| node::read(&n.rpc, client))).await;
        let scraped = futures_util::future::join_all(self.nodes.iter_mut().map(|n| async move {
            match n.scraper.as_mut() {
                Some(scraper) => scraper.scrape().await,
                None => ClientMetrics::default(),
            }
        }))
        .await;
        let settled = self.propagation.as_ref().map(|p| p.take_settled()).unwrap_or_default();
        // One node has nothing to propagate to.
        let mut delays = if self.nodes.len() >= 2 {
            propagation::delays_of(&settled)
        } else {
            Default::default()
        };
        self.settled.extend(settled);
        // Kept until taken; a caller that never takes them keeps the newest only.
        if self.settled.len() > MAX_SETTLED {
            let extra = self.settled.len() - MAX_SETTLED;
            self.settled.drain(..extra);
        }
        let mut probes: std::collections::BTreeMap<String, probe::ProbeResult> = self
            .prober
            .as_ref()
            .map(|p| p.take().into_iter().map(|r| (r.node.clone(), r)).collect())
            .unwrap_or_default();
        let pod_usage = match &self.pods {
            Some(pods) => {
                let (usage, failure) = pods.usage().await;
                self.usage_error = failure;
                Some(usage)
            }
            None => None,
        };
        let mut readings = Vec::with_capacity(self.nodes.len());
        for (index, ((watched, mut state), client)) in self.nodes.iter_mut().zip(states).zip(scraped).enumerate() {
            let alive = watched
                .pid
                .is_none_or(|pid| process::is_node_alive(pid, &watched.data_dir));
            if !alive && state.error.is_none() {
                state.error = Some("its process is gone".into());
            }
            let host = match (&pod_usage, watched.pid.filter(|_| alive)) {
                (Some(usage), _) => usage.get(index).copied().unwrap_or_default(),
                (None, Some(pid)) => self.host.sample(pid),
                (None, None) => HostUsage::default(),
            };
            let mut block_time = None;
            if let (Some(head), Some(timestamp)) = (state.head, state.head_timestamp) {
                match watched.last_head {
                    Some((last, last_ts)) if head > last => {
                        block_time = Some(timestamp.saturating_sub(last_ts) as f64 / (head - last) as f64);
                        watched.last_head = Some((head, timestamp));
                    }
                    None => watched.last_head = Some((head, timestamp)),
                    _ => {}
                }
            }
            let propagated = delays.remove(&watched.name).unwrap_or_default();
            let (block_propagation_ms, block_propagation_max_ms) = if propagated.is_empty() {
                (None, None)
            } else {
                (
                    Some(propagated.iter().sum::<f64>() / propagated.len() as f64),
                    propagated.iter().copied().reduce(f64::max),
                )
            };
            let probed = probes.remove(&watched.name).unwrap_or_default();
            readings.push(NodeReading {
                tx_pool_propagation_ms: probed.pool_propagation_ms,
                tx_inclusion_ms: probed.inclusion_ms,
                tx_confirmation_ms: probed.confirmation_ms,
                probe_error: probed.error,
                block_propagation_ms,
                block_propagation_max_ms,
                node: watched.name.clone(),
                at,
                up: alive && state.error.is_none(),
                pid: watched.pid,
                rpc: state,
                host,
                client,
                block_time,
            });
        }
        readings
    }
}

/// The host of a `http://host:port/...` URL.
fn host_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    Some(authority.rsplit_once(':').map_or(authority, |(host, _)| host))
}

/// When to take the next reading: every `interval` on a fixed schedule (a slow reading delays the next one,
/// never piles them up), until a deadline or a cancellation.
pub struct Schedule {
    ticker: tokio::time::Interval,
    until: Option<Instant>,
}

impl Schedule {
    pub fn new(interval: Duration, until: Option<Instant>) -> Self {
        let mut ticker = tokio::time::interval(interval.max(MIN_INTERVAL));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self { ticker, until }
    }

    /// Waits for the next reading's time; false once past the deadline or cancelled.
    pub async fn next(&mut self, cancel: &CancellationToken) -> bool {
        tokio::select! {
            _ = cancel.cancelled() => return false,
            _ = self.ticker.tick() => {}
        }
        !cancel.is_cancelled() && self.until.is_none_or(|until| Instant::now() < until)
    }
}
