//! The resilience of a run in its KPIs: for each `chain.chaos` task (and each scenario of a `chain.certify`
//! task) of the run, the faults it applied, its verdict's criteria with their numbers, and the KPIs during its
//! faults against the same span just before them: the network's block rate (from the monitor's `head`
//! samples) and the loads' calls, failures and worst per-second p99 (from their per-second series).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::load::LoadKpis;
use super::network::Points;
use crate::chaos::verdict::Criterion;

/// KPIs over one span.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Span {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Blocks per second of the highest head (none without `head` samples).
    pub blocks_per_second: Option<f64>,
    /// Calls answered and failed by every load in the span.
    pub calls: u64,
    pub failed: u64,
    pub error_rate: Option<f64>,
    /// The worst p99 latency of the loads' one-second buckets in the span.
    pub worst_p99_ms: Option<f64>,
}

/// One chaos task (or certify scenario): its faults, verdict and KPIs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChaosPhase {
    pub task: String,
    pub faults: Vec<String>,
    pub nodes: Vec<String>,
    /// Whether every criterion passed (none without a verdict).
    pub passed: Option<bool>,
    pub criteria: Vec<Criterion>,
    pub during: Span,
    pub before: Span,
}

/// The faults' span of one chaos XCom: from the first step to the last.
fn span_of(faults: &Value) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let times: Vec<DateTime<Utc>> = faults
        .as_array()?
        .iter()
        .flat_map(|f| f["steps"].as_array().cloned().unwrap_or_default())
        .filter_map(|s| s["at"].as_str()?.parse::<DateTime<Utc>>().ok())
        .collect();
    Some((*times.iter().min()?, *times.iter().max()?))
}

/// The value of `points` (time in seconds, value) at `t`, linearly between its neighbours.
fn at(points: &Points, t: f64) -> Option<f64> {
    let after = points.iter().position(|(x, _)| *x >= t)?;
    if after == 0 {
        return (points[0].0 - t < 2.0).then_some(points[0].1);
    }
    let (x0, y0) = points[after - 1];
    let (x1, y1) = points[after];
    Some(if x1 > x0 {
        y0 + (y1 - y0) * (t - x0) / (x1 - x0)
    } else {
        y1
    })
}

fn span(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    heads: Option<&std::collections::BTreeMap<String, Points>>,
    loads: &[LoadKpis],
) -> Span {
    let (f, t) = (from.timestamp_micros() as f64 / 1e6, to.timestamp_micros() as f64 / 1e6);
    let seconds = (t - f).max(0.001);
    let blocks_per_second = heads.and_then(|heads| {
        let highest = |x: f64| {
            heads
                .values()
                .filter_map(|p| at(p, x))
                .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))))
        };
        Some(((highest(t)? - highest(f)?) / seconds).max(0.0))
    });
    let (mut calls, mut failed, mut worst) = (0u64, 0u64, None::<f64>);
    for load in loads {
        let s = &load.series;
        let start = load.started_at.timestamp_micros() as f64 / 1e6;
        for (i, answered) in s.answered_per_s.iter().enumerate() {
            let bucket = start + i as f64 * s.width_s;
            if bucket + s.width_s <= f || bucket >= t {
                continue;
            }
            calls += (answered * s.width_s).round() as u64;
            failed += (s.failed_per_s.get(i).copied().unwrap_or(0.0) * s.width_s).round() as u64;
            if let Some(Some(p99)) = s.p99_ms.get(i) {
                worst = Some(worst.map_or(*p99, |w: f64| w.max(*p99)));
            }
        }
    }
    Span {
        from: Some(from),
        to: Some(to),
        blocks_per_second,
        calls,
        failed,
        error_rate: (calls > 0).then(|| failed as f64 / calls as f64),
        worst_p99_ms: worst,
    }
}

/// The chaos phases of a run from its XComs (`(task, key) -> value`), judged against `heads` (per node `head`
/// series) and `loads` (with their per-second series), in time order.
pub fn phases(
    xcoms: &HashMap<(String, String), Value>,
    heads: Option<&std::collections::BTreeMap<String, Points>>,
    loads: &[LoadKpis],
) -> Vec<ChaosPhase> {
    let mut out = Vec::new();
    for ((task, key), value) in xcoms {
        if key != "return_value" {
            continue;
        }
        // chain.chaos: {faults, verdict}; chain.certify: {scenarios: [{name, criteria, evidence: {faults}}]}.
        let mut parts: Vec<(String, &Value, Vec<Criterion>)> = Vec::new();
        if value.get("faults").is_some() && value.get("seed").is_some() {
            let criteria = serde_json::from_value(value["verdict"]["criteria"].clone()).unwrap_or_default();
            parts.push((task.clone(), &value["faults"], criteria));
        } else if value.get("format").and_then(Value::as_str) == Some(crate::certify::report::FORMAT) {
            for s in value["scenarios"].as_array().into_iter().flatten() {
                let criteria = serde_json::from_value(s["criteria"].clone()).unwrap_or_default();
                let name = format!("{task}.{}", s["name"].as_str().unwrap_or_default());
                parts.push((name, &s["evidence"]["faults"], criteria));
            }
        }
        for (task, faults, criteria) in parts {
            let Some((from, to)) = span_of(faults) else { continue };
            let length = to - from;
            let names = faults
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f["fault"].as_str().map(str::to_string))
                .collect();
            let mut nodes: Vec<String> = faults
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|f| f["nodes"].as_array().cloned().unwrap_or_default())
                .filter_map(|n| n.as_str().map(str::to_string))
                .collect();
            nodes.sort();
            nodes.dedup();
            out.push(ChaosPhase {
                task,
                faults: names,
                nodes,
                passed: (!criteria.is_empty()).then(|| criteria.iter().all(|c| c.passed)),
                criteria,
                during: span(from, to, heads, loads),
                before: span(from - length, from, heads, loads),
            });
        }
    }
    out.sort_by_key(|p| p.during.from);
    out
}

fn figure(value: Option<f64>, digits: usize) -> String {
    value.map_or("-".into(), |v| format!("{v:.digits$}"))
}

/// One line per phase and criterion, for a terminal.
pub fn table(phases: &[ChaosPhase]) -> String {
    let mut out = String::new();
    for p in phases {
        out.push_str(&format!(
            "chaos {} ({} on {}): {}\n  during vs before: blocks/s {} vs {}, calls {} vs {}, errors {} vs {}, worst p99 ms {} vs {}\n",
            p.task,
            p.faults.join("; "),
            p.nodes.join(", "),
            match p.passed {
                Some(true) => "verdict PASS",
                Some(false) => "verdict FAIL",
                None => "no verdict",
            },
            figure(p.during.blocks_per_second, 2),
            figure(p.before.blocks_per_second, 2),
            p.during.calls,
            p.before.calls,
            figure(p.during.error_rate.map(|r| r * 100.0), 2) + "%",
            figure(p.before.error_rate.map(|r| r * 100.0), 2) + "%",
            figure(p.during.worst_p99_ms, 0),
            figure(p.before.worst_p99_ms, 0),
        ));
        for c in &p.criteria {
            out.push_str(&format!(
                "  {} {}: {}\n",
                if c.passed { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    #[test]
    fn a_chaos_xcom_gives_its_window_verdict_and_kpis_against_the_span_before() {
        let t0 = "2026-01-01T00:01:00Z".parse::<DateTime<Utc>>().unwrap();
        let secs = |s: i64| (t0 + chrono::Duration::seconds(s)).to_rfc3339();
        let xcom = json!({"network": "n", "seed": 1, "faults": [{"fault": "pause 20s", "nodes": ["v2"],
            "steps": [{"node": "v2", "at": secs(0), "action": "paused"}, {"node": "v2", "at": secs(20), "action": "resumed"}]}],
            "verdict": {"criteria": [{"name": "progress", "passed": true, "detail": "", "value": null},
                {"name": "converged", "passed": false, "detail": "", "value": null}]}});
        let xcoms = HashMap::from([(("chaos".to_string(), "return_value".to_string()), xcom)]);
        // One block a second before the fault, one every two seconds during it.
        let base = t0.timestamp() as f64;
        let v1: Points = (-30..=20)
            .map(|s| {
                (
                    base + s as f64,
                    if s < 0 {
                        100.0 + s as f64
                    } else {
                        100.0 + s as f64 / 2.0
                    },
                )
            })
            .collect();
        let heads = BTreeMap::from([("v1".to_string(), v1)]);
        let phases = phases(&xcoms, Some(&heads), &[]);
        assert_eq!(phases.len(), 1);
        let p = &phases[0];
        assert_eq!((p.task.as_str(), p.passed), ("chaos", Some(false)));
        assert_eq!(p.nodes, vec!["v2"]);
        assert!((p.during.blocks_per_second.unwrap() - 0.5).abs() < 1e-9, "{p:?}");
        assert!((p.before.blocks_per_second.unwrap() - 1.0).abs() < 1e-9, "{p:?}");
        assert_eq!(p.during.error_rate, None);
    }
}
