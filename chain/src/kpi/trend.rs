//! KPIs across runs of one DAG (the nightly benchmark): each run's headline figures ([`scalars`]), the trend
//! of the last runs, and regressions: a figure worse than the median of the last 7 runs by more than 3 median
//! absolute deviations (the run-to-run noise; at least 1% of the median, so a perfectly steady history does not
//! flag a rounding difference). At least 3 earlier runs are needed to judge.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Kpis;

/// Earlier runs a regression is judged against.
pub const WINDOW: usize = 7;
/// Earlier runs needed to judge at all.
pub const MIN_HISTORY: usize = 3;
/// How many deviations away is a regression.
pub const DEVIATIONS: f64 = 3.0;

/// Whether more of a figure is better.
fn higher_is_better(name: &str) -> bool {
    matches!(name, "tps_included" | "throughput" | "reads_per_second")
}

/// A run's headline figures, by name (those it measured).
pub fn scalars(kpis: &Kpis) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let mut put = |name: &str, value: Option<f64>| {
        if let Some(v) = value.filter(|v| v.is_finite()) {
            out.insert(name.to_string(), v);
        }
    };
    if let Some(load) = kpis.loads.first() {
        let tx = load.transactions.as_ref().filter(|t| t.included > 0);
        put("throughput", Some(load.throughput.throughput));
        put("reads_per_second", Some(load.throughput.reads_per_second));
        put("tps_included", tx.map(|_| load.throughput.tps_included));
        put("p50_ms", load.latency_ms.as_ref().map(|l| l.p50));
        put("p99_ms", load.latency_ms.as_ref().map(|l| l.p99));
        put("error_rate", Some(load.errors.rate));
        put("inclusion_p99_ms", tx.map(|t| t.inclusion_ms.p99));
    }
    if let Some(blocks) = &kpis.blocks {
        put("block_time_mean_s", blocks.block_time_s.as_ref().map(|b| b.mean));
        put("block_time_stddev_s", blocks.block_time_s.as_ref().map(|b| b.stddev));
    }
    let worst = |f: &dyn Fn(&super::network::NodeKpis) -> Option<f64>| kpis.nodes.iter().filter_map(f).reduce(f64::max);
    put(
        "propagation_p99_ms",
        worst(&|n| n.propagation_ms.as_ref().map(|p| p.p99)),
    );
    put(
        "cpu_mean_percent",
        worst(&|n| n.resources.get("cpu_percent").map(|c| c.mean)),
    );
    put(
        "rss_peak_mib",
        worst(&|n| n.resources.get("rss_bytes").map(|c| c.peak / 1048576.0)),
    );
    put(
        "cpu_percent_per_1000_tps",
        worst(&|n| n.per_1000_tps.get("cpu_percent").copied()),
    );
    out
}

/// One run in a trend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrendPoint {
    pub run_id: String,
    pub computed_at: DateTime<Utc>,
    pub values: BTreeMap<String, f64>,
}

/// A figure worse than its history allows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    pub kpi: String,
    pub value: f64,
    /// Median and median absolute deviation of the earlier runs (the deviation at least 1% of the median).
    pub median: f64,
    pub mad: f64,
    /// The value past which it is a regression.
    pub limit: f64,
    pub runs: usize,
    pub text: String,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The regressions of `current` against `earlier` runs (newest first; the first [`WINDOW`] that have each
/// figure are used).
pub fn regressions(current: &BTreeMap<String, f64>, earlier: &[TrendPoint]) -> Vec<Regression> {
    let mut out = Vec::new();
    for (name, value) in current {
        let mut history: Vec<f64> = earlier
            .iter()
            .filter_map(|p| p.values.get(name).copied())
            .take(WINDOW)
            .collect();
        if history.len() < MIN_HISTORY {
            continue;
        }
        let runs = history.len();
        let m = median(&mut history);
        let mut deviations: Vec<f64> = history.iter().map(|v| (v - m).abs()).collect();
        let mad = median(&mut deviations).max(m.abs() * 0.01).max(1e-12);
        let (worse, limit) = if higher_is_better(name) {
            (*value < m - DEVIATIONS * mad, m - DEVIATIONS * mad)
        } else {
            (*value > m + DEVIATIONS * mad, m + DEVIATIONS * mad)
        };
        if worse {
            out.push(Regression {
                kpi: name.clone(),
                value: *value,
                median: m,
                mad,
                limit,
                runs,
                text: format!(
                    "{name} is {value:.4} against a median of {m:.4} over the last {runs} runs ({} than {limit:.4}, {DEVIATIONS} median absolute deviations of {mad:.4})",
                    if higher_is_better(name) { "lower" } else { "higher" }
                ),
            });
        }
    }
    out
}

/// Reads the trend points of stored KPIs (`(run_id, computed_at, kpis JSON)`, newest first): their
/// `scalars`, skipping what holds none.
pub fn points_of(rows: impl IntoIterator<Item = (String, DateTime<Utc>, serde_json::Value)>) -> Vec<TrendPoint> {
    rows.into_iter()
        .filter_map(|(run_id, computed_at, value)| {
            let values: BTreeMap<String, f64> = serde_json::from_value(value.get("scalars")?.clone()).ok()?;
            Some(TrendPoint {
                run_id,
                computed_at,
                values,
            })
        })
        .collect()
}

impl Kpis {
    /// Sets the trend (the earlier runs, oldest first, then this one) and the regressions against `earlier`
    /// (newest first).
    pub fn with_history(mut self, earlier: Vec<TrendPoint>) -> Kpis {
        self.regressions = regressions(&self.scalars, &earlier);
        let mut trend: Vec<TrendPoint> = earlier.into_iter().take(30).collect();
        trend.reverse();
        trend.push(TrendPoint {
            run_id: self.run.run_id.clone(),
            computed_at: self.computed_at,
            values: self.scalars.clone(),
        });
        self.trend = trend;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(run: &str, values: &[(&str, f64)]) -> TrendPoint {
        TrendPoint {
            run_id: run.into(),
            computed_at: Utc::now(),
            values: values.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    #[test]
    fn a_figure_beyond_three_deviations_of_the_last_seven_runs_is_a_regression() {
        // p99 history (newest first) 10, 11, 9, 10, 12, 10, 9 and an old outlier 100 beyond the window:
        // median 10, deviations 0,1,1,0,2,0,1 -> MAD 1; limit 13.
        let history: Vec<TrendPoint> = [10.0, 11.0, 9.0, 10.0, 12.0, 10.0, 9.0, 100.0]
            .iter()
            .enumerate()
            .map(|(i, v)| point(&format!("r{i}"), &[("p99_ms", *v), ("tps_included", 500.0)]))
            .collect();
        let now = |p99: f64, tps: f64| BTreeMap::from([("p99_ms".to_string(), p99), ("tps_included".to_string(), tps)]);
        assert!(
            regressions(&now(13.0, 500.0), &history).is_empty(),
            "at the limit is not past it"
        );
        let r = regressions(&now(13.5, 500.0), &history);
        assert_eq!(r.len(), 1);
        assert_eq!(
            (r[0].kpi.as_str(), r[0].median, r[0].mad, r[0].limit, r[0].runs),
            ("p99_ms", 10.0, 1.0, 13.0, 7)
        );
        // A steady history: the deviation is at least 1% of the median (5 TPS): 480 is a regression, 490 not.
        assert!(regressions(&now(10.0, 490.0), &history).is_empty());
        let r = regressions(&now(10.0, 480.0), &history);
        assert_eq!((r.len(), r[0].kpi.as_str(), r[0].limit), (1, "tps_included", 485.0));
        assert!(r[0].text.contains("lower than 485"), "{}", r[0].text);
        // Better is never a regression; too little history judges nothing.
        assert!(regressions(&now(1.0, 900.0), &history).is_empty());
        assert!(regressions(&now(50.0, 1.0), &history[..2]).is_empty());
    }

    #[test]
    fn stored_kpis_without_scalars_are_skipped() {
        let rows = vec![
            (
                "a".to_string(),
                Utc::now(),
                serde_json::json!({"scalars": {"p99_ms": 3.0}}),
            ),
            ("b".to_string(), Utc::now(), serde_json::json!({"version": 1})),
        ];
        let points = points_of(rows);
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].values["p99_ms"], 3.0);
    }
}
