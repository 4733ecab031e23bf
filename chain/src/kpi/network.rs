//! KPIs of a network from the monitor's samples, fed one at a time: block time from arrival times (BFT
//! timestamps have a resolution of a second), empty blocks, gas used against the limit, block propagation per
//! node, peer churn, pool peaks, probe transactions, and each node's resources (mean and peak, and per 1,000
//! TPS of the load).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::stats::{MeanPeak, Spread};

/// Resource metrics reported per node.
pub const RESOURCES: &[&str] = &[
    "cpu_percent",
    "rss_bytes",
    "disk_read_bytes_per_second",
    "disk_write_bytes_per_second",
    "net_in_bytes_per_second",
    "net_out_bytes_per_second",
];
/// Other per-node metrics kept as series.
const KEPT: &[&str] = &[
    "peers",
    "txpool_pending",
    "txpool_queued",
    "up",
    "head",
    "tx_pool_propagation_ms",
    "tx_inclusion_ms",
    "tx_confirmation_ms",
    "block_time_seconds",
];
/// Points kept per series at most (past it, every other one is dropped).
const MAX_POINTS: usize = 200_000;
/// Blocks kept at most.
const MAX_BLOCKS: usize = 1_000_000;
/// Points per series in the report.
pub const CHART_POINTS: usize = 600;

/// Block KPIs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BlockKpis {
    /// Blocks whose arrival was recorded.
    pub blocks: u64,
    /// Seconds between consecutive blocks' first arrivals anywhere (per block, across gaps).
    pub block_time_s: Option<Spread>,
    /// Share of blocks without a transaction.
    pub empty_share: Option<f64>,
    /// Gas used / gas limit per block: mean and peak.
    pub gas_used_ratio: Option<MeanPeak>,
    pub gas_limit: Option<f64>,
}

/// Peers of one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Peers {
    pub min: f64,
    pub max: f64,
    /// Readings where the count differed from the one before.
    pub changes: u64,
}

/// KPIs of one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeKpis {
    pub node: String,
    /// Readings, and the share of them where the node was up.
    pub readings: u64,
    pub up_share: Option<f64>,
    /// Arrival here behind the first arrival anywhere, per block (ms).
    pub propagation_ms: Option<Spread>,
    pub peers: Option<Peers>,
    /// Largest pending (and pending + queued) pool seen.
    pub txpool_pending_peak: Option<f64>,
    pub txpool_peak: Option<f64>,
    /// Probe transactions sent through this node (ms): time to the other nodes' pools, inclusion,
    /// confirmation.
    pub probe_pool_ms: Option<Spread>,
    pub probe_inclusion_ms: Option<Spread>,
    pub probe_confirmation_ms: Option<Spread>,
    /// Each resource over the window: mean and peak.
    pub resources: BTreeMap<String, MeanPeak>,
    /// Each resource's mean while load ran, per 1,000 TPS (or calls per second) of it.
    pub per_1000_tps: BTreeMap<String, f64>,
}

/// A chart series: (seconds since the epoch, value), at most [`CHART_POINTS`] bucket means.
pub type Points = Vec<(f64, f64)>;

/// What the samples gave.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkKpis {
    pub samples: u64,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub blocks: BlockKpis,
    pub nodes: Vec<NodeKpis>,
    /// Per metric, per node, for charts.
    pub charts: BTreeMap<String, BTreeMap<String, Points>>,
    /// Per-block block times (first arrival seconds since the epoch, seconds) and delays (ms) for histograms.
    pub block_times: Vec<f64>,
    pub propagation: Vec<f64>,
}

/// Samples read so far.
#[derive(Default)]
pub struct NetworkAcc {
    samples: u64,
    from: Option<i64>,
    to: Option<i64>,
    /// (node, metric) -> (micros since the epoch, value).
    series: BTreeMap<(String, String), Vec<(i64, f64)>>,
    /// (node, micros) of an arrival -> the block's number, and its hash's first 48 bits.
    arrivals: HashMap<(String, i64), (Option<u64>, Option<u64>)>,
    /// (node, micros) of a first arrival -> (gas used, gas limit, empty).
    gas: HashMap<(String, i64), BlockGas>,
}

/// Gas used, gas limit and emptiness of one block.
type BlockGas = (Option<f64>, Option<f64>, Option<f64>);

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

impl NetworkAcc {
    /// Takes one sample.
    pub fn add(&mut self, node: &str, metric: &str, at: DateTime<Utc>, value: f64) {
        let t = micros(at);
        self.samples += 1;
        self.from = Some(self.from.map_or(t, |f| f.min(t)));
        self.to = Some(self.to.map_or(t, |x| x.max(t)));
        match metric {
            "block_arrival" | "block_hash48"
                if value >= 0.0
                    && value.is_finite()
                    && (self.arrivals.len() < MAX_BLOCKS || self.arrivals.contains_key(&(node.to_string(), t))) =>
            {
                let slot = self.arrivals.entry((node.to_string(), t)).or_default();
                if metric == "block_arrival" {
                    slot.0 = Some(value as u64);
                } else {
                    slot.1 = Some(value as u64);
                }
            }
            "block_gas_used" | "block_gas_limit" | "block_empty" if self.gas.len() < MAX_BLOCKS => {
                let entry = self.gas.entry((node.to_string(), t)).or_default();
                match metric {
                    "block_gas_used" => entry.0 = Some(value),
                    "block_gas_limit" => entry.1 = Some(value),
                    _ => entry.2 = Some(value),
                }
            }
            m if RESOURCES.contains(&m) || KEPT.contains(&m) => {
                let points = self.series.entry((node.to_string(), m.to_string())).or_default();
                if points.len() >= MAX_POINTS {
                    let mut i = 0;
                    points.retain(|_| {
                        i += 1;
                        i % 2 == 0
                    });
                }
                points.push((t, value));
            }
            _ => {}
        }
    }

    /// The KPIs; `load_windows` are the spans (micros since the epoch) when load ran and its rate (TPS
    /// included, or calls per second answered) for resources per 1,000 TPS.
    pub fn finish(mut self, load_windows: &[(i64, i64, f64)]) -> NetworkKpis {
        for points in self.series.values_mut() {
            points.sort_by_key(|(t, _)| *t);
        }
        // Blocks by (number, hash): each node's earliest arrival. Of a number's blocks (a fork, or nodes that
        // do not peer), the canonical one is the one most nodes saw, then the earliest.
        let mut blocks: BTreeMap<(u64, Option<u64>), BTreeMap<String, i64>> = BTreeMap::new();
        for ((node, t), (number, hash)) in &self.arrivals {
            if let Some(number) = number {
                let slot = blocks
                    .entry((*number, *hash))
                    .or_default()
                    .entry(node.clone())
                    .or_insert(*t);
                *slot = (*slot).min(*t);
            }
        }
        let mut canonical: BTreeMap<u64, &BTreeMap<String, i64>> = BTreeMap::new();
        for ((number, _), by_node) in &blocks {
            let first = |m: &BTreeMap<String, i64>| m.values().min().copied().unwrap_or(i64::MAX);
            let better = canonical
                .get(number)
                .is_none_or(|best| (by_node.len(), -first(by_node)) > (best.len(), -first(best)));
            if better {
                canonical.insert(*number, by_node);
            }
        }
        let nodes: Vec<String> = {
            let mut names: Vec<String> = self.series.keys().map(|(n, _)| n.clone()).collect();
            names.extend(self.arrivals.keys().map(|(n, _)| n.clone()));
            names.sort();
            names.dedup();
            names
        };
        // Block time: between consecutive canonical blocks' first arrivals anywhere, per block.
        let firsts: Vec<(u64, i64)> = canonical
            .iter()
            .filter_map(|(n, by_node)| Some((*n, *by_node.values().min()?)))
            .collect();
        let block_times: Vec<f64> = firsts
            .windows(2)
            .map(|w| (w[1].1 - w[0].1) as f64 / 1e6 / (w[1].0 - w[0].0) as f64)
            .collect();
        // Propagation: each node's arrival behind the first, over canonical blocks two nodes or more saw.
        let mut delays: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for by_node in canonical.values().filter(|b| b.len() >= 2) {
            let Some(first) = by_node.values().min() else { continue };
            for (node, at) in by_node.iter() {
                delays
                    .entry(node.clone())
                    .or_default()
                    .push((at - first) as f64 / 1000.0);
            }
        }
        let mut ratios = Vec::new();
        let mut empties = Vec::new();
        let mut limits = Vec::new();
        for (used, limit, empty) in self.gas.values() {
            if let (Some(used), Some(limit)) = (used, limit) {
                if *limit > 0.0 {
                    ratios.push(used / limit);
                }
            }
            if let Some(limit) = limit {
                limits.push(*limit);
            }
            if let Some(empty) = empty {
                empties.push(*empty);
            }
        }
        let blocks = BlockKpis {
            blocks: canonical.len() as u64,
            block_time_s: Spread::of(block_times.clone()),
            empty_share: (!empties.is_empty()).then(|| empties.iter().sum::<f64>() / empties.len() as f64),
            gas_used_ratio: MeanPeak::of(ratios.into_iter()),
            gas_limit: limits.iter().copied().reduce(f64::max),
        };
        let series = &self.series;
        let get = |node: &str, metric: &str| series.get(&(node.to_string(), metric.to_string()));
        let mut node_kpis = Vec::new();
        for node in &nodes {
            let values = |metric: &str| get(node, metric).map(|p| p.iter().map(|(_, v)| *v).collect::<Vec<f64>>());
            let up = values("up").unwrap_or_default();
            let peers = values("peers").filter(|p| !p.is_empty()).map(|p| Peers {
                min: p.iter().copied().fold(f64::MAX, f64::min),
                max: p.iter().copied().fold(f64::MIN, f64::max),
                changes: p.windows(2).filter(|w| w[0] != w[1]).count() as u64,
            });
            let peak = |metric: &str| values(metric).and_then(|v| v.into_iter().reduce(f64::max));
            let pool_total = match (get(node, "txpool_pending"), get(node, "txpool_queued")) {
                (Some(pending), Some(queued)) => {
                    let queued: HashMap<i64, f64> = queued.iter().copied().collect();
                    pending
                        .iter()
                        .map(|(t, v)| v + queued.get(t).copied().unwrap_or(0.0))
                        .reduce(f64::max)
                }
                (Some(pending), None) => pending.iter().map(|(_, v)| *v).reduce(f64::max),
                _ => None,
            };
            let mut resources = BTreeMap::new();
            let mut per_1000 = BTreeMap::new();
            for metric in RESOURCES {
                let Some(points) = get(node, metric) else { continue };
                if let Some(mp) = MeanPeak::of(points.iter().map(|(_, v)| *v)) {
                    resources.insert(metric.to_string(), mp);
                }
                // Mean over the load's spans, weighted by each span's samples, against its rate.
                let (mut sum, mut n, mut rate_sum) = (0.0, 0u64, 0.0);
                for (from, to, rate) in load_windows {
                    for (_, v) in points.iter().filter(|(t, _)| t >= from && t <= to) {
                        sum += v;
                        rate_sum += rate;
                        n += 1;
                    }
                }
                if n > 0 && rate_sum > 0.0 {
                    per_1000.insert(metric.to_string(), (sum / n as f64) / (rate_sum / n as f64 / 1000.0));
                }
            }
            node_kpis.push(NodeKpis {
                node: node.clone(),
                readings: up.len() as u64,
                up_share: (!up.is_empty()).then(|| up.iter().sum::<f64>() / up.len() as f64),
                propagation_ms: delays.get(node).and_then(|d| Spread::of(d.clone())),
                peers,
                txpool_pending_peak: peak("txpool_pending"),
                txpool_peak: pool_total,
                probe_pool_ms: values("tx_pool_propagation_ms").and_then(Spread::of),
                probe_inclusion_ms: values("tx_inclusion_ms").and_then(Spread::of),
                probe_confirmation_ms: values("tx_confirmation_ms").and_then(Spread::of),
                resources,
                per_1000_tps: per_1000,
            });
        }
        let mut charts: BTreeMap<String, BTreeMap<String, Points>> = BTreeMap::new();
        for ((node, metric), points) in &self.series {
            charts
                .entry(metric.clone())
                .or_default()
                .insert(node.clone(), chart_points(points));
        }
        NetworkKpis {
            samples: self.samples,
            from: self.from.and_then(DateTime::from_timestamp_micros),
            to: self.to.and_then(DateTime::from_timestamp_micros),
            blocks,
            nodes: node_kpis,
            charts,
            block_times,
            propagation: delays.into_values().flatten().collect(),
        }
    }
}

/// At most [`CHART_POINTS`] points: means of equal time buckets.
fn chart_points(points: &[(i64, f64)]) -> Points {
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Vec::new();
    };
    if points.len() <= CHART_POINTS {
        return points.iter().map(|(t, v)| (*t as f64 / 1e6, *v)).collect();
    }
    let width = ((last.0 - first.0) / CHART_POINTS as i64).max(1);
    let mut out: Points = Vec::with_capacity(CHART_POINTS + 1);
    let (mut bucket, mut sum, mut n) = (0i64, 0.0, 0u32);
    for (t, v) in points {
        let b = (t - first.0) / width;
        if b != bucket && n > 0 {
            out.push(((first.0 + bucket * width + width / 2) as f64 / 1e6, sum / f64::from(n)));
            (sum, n) = (0.0, 0);
        }
        bucket = b;
        sum += v;
        n += 1;
    }
    if n > 0 {
        out.push(((first.0 + bucket * width + width / 2) as f64 / 1e6, sum / f64::from(n)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(1_800_000_000_000 + ms).unwrap()
    }

    #[test]
    fn block_times_come_from_first_arrivals_and_delays_from_each_node() {
        let mut acc = NetworkAcc::default();
        // Blocks 10, 11, 13 reach a first at 0, 1000, 3100 ms; b 20-50 ms later; b saw block 11 twice.
        for (number, a, b) in [(10, 0, 20), (11, 1000, 1050), (13, 3100, 3130)] {
            acc.add("a", "block_arrival", at(a), number as f64);
            acc.add("b", "block_arrival", at(b), number as f64);
            acc.add("a", "block_gas_used", at(a), if number == 11 { 15e6 } else { 0.0 });
            acc.add("a", "block_gas_limit", at(a), 30e6);
            acc.add("a", "block_empty", at(a), if number == 11 { 0.0 } else { 1.0 });
        }
        acc.add("b", "block_arrival", at(1200), 11.0);
        // Block 12 on a fork only b saw (another hash), and on the chain a and b saw: the latter counts.
        acc.add("b", "block_arrival", at(2000), 12.0);
        acc.add("b", "block_hash48", at(2000), 7.0);
        for (node, t) in [("a", 2050), ("b", 2090)] {
            acc.add(node, "block_arrival", at(t), 12.0);
            acc.add(node, "block_hash48", at(t), 9.0);
        }
        for (i, peers) in [1.0, 1.0, 0.0, 1.0].into_iter().enumerate() {
            acc.add("a", "peers", at(i as i64 * 1000), peers);
            acc.add("a", "cpu_percent", at(i as i64 * 1000), 10.0 * (i + 1) as f64);
            acc.add("a", "up", at(i as i64 * 1000), 1.0);
        }
        acc.add("a", "metric_nobody_reads", at(0), 1.0);
        let window = (at(1000).timestamp_micros(), at(2000).timestamp_micros(), 500.0);
        let kpis = acc.finish(&[window]);
        assert_eq!(kpis.blocks.blocks, 4);
        assert_eq!(kpis.block_times, vec![1.0, 1.05, 1.05]);
        let bt = kpis.blocks.block_time_s.as_ref().unwrap();
        assert!((bt.mean - 1.0333333).abs() < 1e-6, "{bt:?}");
        assert!((kpis.blocks.empty_share.unwrap() - 2.0 / 3.0).abs() < 1e-9);
        let gas = kpis.blocks.gas_used_ratio.unwrap();
        assert_eq!((gas.peak, gas.samples), (0.5, 3));
        let a = &kpis.nodes[0];
        let b = &kpis.nodes[1];
        assert_eq!(a.propagation_ms.as_ref().unwrap().max, 0.0);
        // b's delays: 20, 50, 40 (block 12 of the chain both saw), 30.
        // b's delays: 20, 50, 40 (the block 12 both saw), 30.
        let pb = b.propagation_ms.as_ref().unwrap();
        assert_eq!((pb.count, pb.p50, pb.max), (4, 30.0, 50.0), "{pb:?}");
        assert_eq!(a.peers.as_ref().unwrap().changes, 2);
        assert_eq!(a.resources["cpu_percent"].peak, 40.0);
        // Mean CPU in the load's window (20 and 30) per 1,000 TPS at 500 TPS.
        assert!(
            (a.per_1000_tps["cpu_percent"] - 50.0).abs() < 1e-9,
            "{:?}",
            a.per_1000_tps
        );
        assert_eq!(a.up_share, Some(1.0));
        assert!(b.resources.is_empty() && b.up_share.is_none());
    }

    #[test]
    fn charts_keep_at_most_their_points() {
        let points: Vec<(i64, f64)> = (0..10_000).map(|i| (i * 1000, i as f64)).collect();
        let chart = chart_points(&points);
        assert!(
            chart.len() <= CHART_POINTS + 1 && chart.len() > CHART_POINTS / 2,
            "{}",
            chart.len()
        );
        assert!(chart.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
