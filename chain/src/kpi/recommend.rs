//! The configuration recommendation: latency and throughput cross-referenced with each node's resources over
//! windows of the load (its phases, or equal slices of it). Every rule is written here and in `docs/kpis.md`:
//!
//! 1. **Windows**: a window's rate is transactions included per second when the load sent transactions, else
//!    calls answered per second; its p99 and error rate are the load's in that window; each node's CPU (cores)
//!    and memory (GiB) are the means of its samples in the window.
//! 2. **Bottleneck**: in the first window that breaks (error rate above `max_error_rate`, or p99 above the
//!    target) or, if none breaks, the busiest window, the node resource nearest its capacity (CPU against the
//!    host's cores, memory against its RAM). At 80% or more it is named the bottleneck; below, the report says
//!    no node resource was saturated and points at the chain's own limits (below).
//! 3. **Cost per TPS**: per node, a least-squares line `use = a + b x rate` over the windows (at least three
//!    with different rates), with r² and the standard error of `b`.
//! 4. **Sizing**: "to sustain X TPS at p99 < Y, a node needs about N cores and M GiB": the largest node's
//!    fitted use at X, plus 25% headroom, rounded up to half a core and a quarter GiB; the range adds and takes
//!    two standard errors of the fit. X is the target given, else the busiest window that met the p99 target.
//!    Whether a window at X or above met the target is said; beyond 1.5x the largest measured rate it is an
//!    extrapolation, and said so.
//! 5. **Settings that hurt**: blocks more than 90% full (the gas limit caps TPS), inclusion p50 above half the
//!    mean block time with a period of a second or more (the block period sets the latency floor), a pool
//!    growing without bound (inclusion falls behind what is sent).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::network::BlockKpis;

/// How a node used its host in one window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeUse {
    pub cpu_cores: Option<f64>,
    pub memory_gib: Option<f64>,
}

/// One window of the load.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Window {
    pub label: String,
    /// Seconds since the epoch.
    pub from: f64,
    pub to: f64,
    /// Transactions included per second, or calls answered per second.
    pub rate: f64,
    pub p99_ms: f64,
    pub error_rate: f64,
    pub nodes: BTreeMap<String, NodeUse>,
}

/// What a node's host has.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Capacity {
    pub cores: f64,
    pub memory_gib: f64,
}

/// What the sizing aims for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Targets {
    pub tps: Option<f64>,
    pub p99_ms: f64,
    pub max_error_rate: f64,
}

impl Default for Targets {
    fn default() -> Self {
        Targets {
            tps: None,
            p99_ms: 1000.0,
            max_error_rate: 0.01,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bottleneck {
    pub node: String,
    /// `cpu` or `memory`.
    pub resource: String,
    /// Share of the host's capacity.
    pub utilisation: f64,
    pub rate: f64,
    pub window: String,
    pub saturated: bool,
    pub text: String,
}

/// `use = intercept + slope x rate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fit {
    pub node: String,
    pub resource: String,
    pub intercept: f64,
    /// Per 1,000 of the rate.
    pub per_1000: f64,
    /// Standard error of `per_1000`.
    pub per_1000_stderr: f64,
    pub r2: f64,
    pub windows: usize,
}

impl Fit {
    fn at(&self, rate: f64) -> f64 {
        self.intercept + self.per_1000 * rate / 1000.0
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sizing {
    pub target_tps: f64,
    pub target_p99_ms: f64,
    pub cores: f64,
    pub cores_range: (f64, f64),
    pub memory_gib: f64,
    pub memory_range: (f64, f64),
    /// A window at or above the target rate met the p99 target.
    pub met: bool,
    pub extrapolated: bool,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    pub setting: String,
    pub text: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Recommendation {
    pub windows: Vec<Window>,
    pub capacity: Option<Capacity>,
    pub bottleneck: Option<Bottleneck>,
    pub fits: Vec<Fit>,
    pub sizing: Option<Sizing>,
    pub flags: Vec<Flag>,
    /// What could not be said, and why.
    pub notes: Vec<String>,
}

/// Least squares of `y` on `x`: (intercept, slope, r², slope's standard error); `None` with fewer than three
/// points or a single `x`.
pub fn least_squares(points: &[(f64, f64)]) -> Option<(f64, f64, f64, f64)> {
    let n = points.len() as f64;
    if points.len() < 3 {
        return None;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx = points.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>();
    if sxx <= f64::EPSILON * mx.abs().max(1.0) {
        return None;
    }
    let sxy = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>();
    let slope = sxy / sxx;
    let intercept = my - slope * mx;
    let sse = points
        .iter()
        .map(|p| (p.1 - intercept - slope * p.0).powi(2))
        .sum::<f64>();
    let syy = points.iter().map(|p| (p.1 - my).powi(2)).sum::<f64>();
    let r2 = if syy > 0.0 { 1.0 - sse / syy } else { 1.0 };
    let stderr = (sse / (n - 2.0) / sxx).sqrt();
    Some((intercept, slope, r2, stderr))
}

fn round_up(value: f64, step: f64) -> f64 {
    ((value / step - 1e-9).ceil() * step).max(step)
}

/// The recommendation from `windows`.
pub fn recommend(
    windows: Vec<Window>,
    capacity: Option<Capacity>,
    targets: Targets,
    blocks: &BlockKpis,
    inclusion_p50_ms: Option<f64>,
    pool_growth: Option<(String, f64, f64)>,
) -> Recommendation {
    let mut out = Recommendation {
        capacity,
        ..Default::default()
    };
    if windows.is_empty() {
        out.notes
            .push("no load window: without load there is nothing to relate resources to".into());
    }
    let breaks = |w: &Window| w.error_rate > targets.max_error_rate || w.p99_ms > targets.p99_ms;
    // 2. Bottleneck.
    let focus = windows
        .iter()
        .find(|w| breaks(w))
        .or_else(|| windows.iter().max_by(|a, b| a.rate.total_cmp(&b.rate)));
    match (focus, capacity) {
        (Some(window), Some(cap)) => {
            let mut best: Option<(String, &str, f64)> = None;
            for (node, usage) in &window.nodes {
                for (resource, share) in [
                    ("cpu", usage.cpu_cores.map(|c| c / cap.cores)),
                    ("memory", usage.memory_gib.map(|m| m / cap.memory_gib)),
                ] {
                    if let Some(share) = share {
                        if best.as_ref().is_none_or(|b| share > b.2) {
                            best = Some((node.clone(), resource, share));
                        }
                    }
                }
            }
            match best {
                Some((node, resource, share)) => {
                    let saturated = share >= 0.8;
                    let why = if breaks(window) {
                        format!("where the load broke ({})", window.label)
                    } else {
                        format!("at the busiest window ({})", window.label)
                    };
                    let text = if saturated {
                        format!(
                            "bottleneck: {resource} of `{node}` at {:.0}% of its host {why}, {:.1}/s",
                            share * 100.0,
                            window.rate
                        )
                    } else {
                        format!(
                            "no node resource was saturated {why}, {:.1}/s: the busiest was {resource} of `{node}` at {:.0}% of its host, so the limit is elsewhere (block period, gas limit, the client's pool or the load generator)",
                            window.rate,
                            share * 100.0
                        )
                    };
                    out.bottleneck = Some(Bottleneck {
                        node,
                        resource: resource.into(),
                        utilisation: share,
                        rate: window.rate,
                        window: window.label.clone(),
                        saturated,
                        text,
                    });
                }
                None => out
                    .notes
                    .push("no resource samples in the load's windows: was a monitor running?".into()),
            }
        }
        (Some(_), None) => out
            .notes
            .push("the hosts' capacity is unknown: no bottleneck named".into()),
        (None, _) => {}
    }
    // 3. Fits per node and resource.
    let nodes: Vec<String> = {
        let mut n: Vec<String> = windows.iter().flat_map(|w| w.nodes.keys().cloned()).collect();
        n.sort();
        n.dedup();
        n
    };
    for node in &nodes {
        for resource in ["cpu", "memory"] {
            let points: Vec<(f64, f64)> = windows
                .iter()
                .filter_map(|w| {
                    let usage = w.nodes.get(node)?;
                    let value = if resource == "cpu" {
                        usage.cpu_cores
                    } else {
                        usage.memory_gib
                    };
                    Some((w.rate, value?))
                })
                .collect();
            if let Some((intercept, slope, r2, stderr)) = least_squares(&points) {
                out.fits.push(Fit {
                    node: node.clone(),
                    resource: resource.into(),
                    intercept,
                    per_1000: slope * 1000.0,
                    per_1000_stderr: stderr * 1000.0,
                    r2,
                    windows: points.len(),
                });
            }
        }
    }
    if !windows.is_empty() && out.fits.is_empty() {
        out.notes.push(
            "fewer than three windows with different rates and resource samples: no cost per TPS fitted (a ramp or a breaking-point search gives them)"
                .into(),
        );
    }
    // 4. Sizing.
    let max_rate = windows.iter().map(|w| w.rate).fold(0.0, f64::max);
    let target = targets
        .tps
        .or_else(|| windows.iter().filter(|w| !breaks(w)).map(|w| w.rate).reduce(f64::max));
    let worst = |resource: &str, rate: f64| {
        out.fits
            .iter()
            .filter(|f| f.resource == resource)
            .map(|f| (f.at(rate), 2.0 * f.per_1000_stderr * rate / 1000.0))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    };
    if let (Some(x), Some((cpu, cpu_err)), Some((mem, mem_err))) = (
        target,
        target.and_then(|x| worst("cpu", x)),
        target.and_then(|x| worst("memory", x)),
    ) {
        let headroom = 1.25;
        let cores = round_up(cpu * headroom, 0.5);
        let memory = round_up(mem * headroom, 0.25);
        let cores_range = (
            round_up((cpu - cpu_err).max(0.0) * headroom, 0.5),
            round_up((cpu + cpu_err) * headroom, 0.5),
        );
        let memory_range = (
            round_up((mem - mem_err).max(0.0) * headroom, 0.25),
            round_up((mem + mem_err) * headroom, 0.25),
        );
        let met = windows.iter().any(|w| w.rate >= x * 0.95 && !breaks(w));
        let extrapolated = x > max_rate * 1.5;
        let mut text = format!(
            "to sustain {x:.0} TPS at p99 < {:.0} ms, a node needs about {cores} cores ({}-{}) and {memory} GiB ({}-{}), with 25% headroom",
            targets.p99_ms, cores_range.0, cores_range.1, memory_range.0, memory_range.1
        );
        if met {
            text.push_str(&format!("; measured: a window at {x:.0}/s or more met it"));
        } else {
            text.push_str("; not measured: no window at that rate met the p99 target");
        }
        if extrapolated {
            text.push_str(&format!(
                "; extrapolated beyond 1.5x the largest rate measured ({max_rate:.0}/s), treat as a guess"
            ));
        }
        out.sizing = Some(Sizing {
            target_tps: x,
            target_p99_ms: targets.p99_ms,
            cores,
            cores_range,
            memory_gib: memory,
            memory_range,
            met,
            extrapolated,
            text,
        });
    } else if !windows.is_empty() {
        out.notes.push(if target.is_none() {
            format!(
                "no window met p99 < {:.0} ms with an error rate under {:.1}%, and no target rate was given: no sizing",
                targets.p99_ms,
                targets.max_error_rate * 100.0
            )
        } else {
            "no CPU and memory fits: no sizing".into()
        });
    }
    // 5. Settings that hurt.
    if let (Some(ratio), Some(limit)) = (&blocks.gas_used_ratio, blocks.gas_limit) {
        if ratio.peak >= 0.9 {
            let block_time = blocks.block_time_s.as_ref().map_or(1.0, |b| b.mean).max(0.001);
            out.flags.push(Flag {
                setting: "gas_limit".into(),
                text: format!(
                    "blocks were up to {:.0}% full (mean {:.0}%): the gas limit {limit:.0} caps a {block_time:.1} s block at about {:.0} plain transfers per second; raise the gas limit to include more",
                    ratio.peak * 100.0,
                    ratio.mean * 100.0,
                    limit / 21_000.0 / block_time
                ),
            });
        }
    }
    if let (Some(p50), Some(bt)) = (inclusion_p50_ms, &blocks.block_time_s) {
        if bt.mean >= 1.0 && p50 > bt.mean * 1000.0 * 0.5 {
            out.flags.push(Flag {
                setting: "block_period".into(),
                text: format!(
                    "inclusion p50 {p50:.0} ms is above half the mean block time ({:.2} s): the block period sets the latency floor; a shorter period lowers it",
                    bt.mean
                ),
            });
        }
    }
    if let Some((node, first, last)) = pool_growth {
        if last > first * 2.0 && last >= 1000.0 {
            out.flags.push(Flag {
                setting: "txpool".into(),
                text: format!(
                    "the pending pool of `{node}` grew from {first:.0} to {last:.0} under load: the network included fewer transactions than it was sent"
                ),
            });
        }
    }
    out.windows = windows;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kpi::stats::{MeanPeak, Spread};

    /// Windows of a recorded ramp with a known answer: node-1 uses 0.2 + 0.6 cores and 1 + 0.5 GiB per 1,000
    /// TPS, node-2 half of it; the last window breaks (p99 over 1 s) at 2,500 TPS.
    fn ramp() -> Vec<Window> {
        [
            (500.0, 80.0),
            (1000.0, 120.0),
            (1500.0, 200.0),
            (2000.0, 400.0),
            (2500.0, 1800.0),
        ]
        .iter()
        .enumerate()
        .map(|(i, (rate, p99))| Window {
            label: format!("phase {i}"),
            from: i as f64 * 60.0,
            to: (i + 1) as f64 * 60.0,
            rate: *rate,
            p99_ms: *p99,
            error_rate: 0.0,
            nodes: BTreeMap::from([
                (
                    "node-1".to_string(),
                    NodeUse {
                        cpu_cores: Some(0.2 + 0.6 * rate / 1000.0),
                        memory_gib: Some(1.0 + 0.5 * rate / 1000.0),
                    },
                ),
                (
                    "node-2".to_string(),
                    NodeUse {
                        cpu_cores: Some(0.1 + 0.3 * rate / 1000.0),
                        memory_gib: Some(0.5 + 0.25 * rate / 1000.0),
                    },
                ),
            ]),
        })
        .collect()
    }

    #[test]
    fn a_ramp_with_known_costs_gives_the_bottleneck_fits_and_sizing() {
        let capacity = Capacity {
            cores: 2.0,
            memory_gib: 16.0,
        };
        let r = recommend(
            ramp(),
            Some(capacity),
            Targets::default(),
            &BlockKpis::default(),
            None,
            None,
        );
        let b = r.bottleneck.as_ref().unwrap();
        // 0.2 + 0.6 * 2.5 = 1.7 cores of 2 = 85% in the broken window.
        assert_eq!(
            (b.node.as_str(), b.resource.as_str(), b.window.as_str()),
            ("node-1", "cpu", "phase 4")
        );
        assert!(b.saturated && (b.utilisation - 0.85).abs() < 1e-9, "{b:?}");
        let fit = r
            .fits
            .iter()
            .find(|f| f.node == "node-1" && f.resource == "cpu")
            .unwrap();
        assert!((fit.per_1000 - 0.6).abs() < 1e-9 && (fit.intercept - 0.2).abs() < 1e-9 && fit.r2 > 0.999999);
        assert!(fit.per_1000_stderr < 1e-6);
        // Target: the busiest window that held, 2,000 TPS: node-1 needs 1.4 cores * 1.25 = 1.75 -> 2; memory
        // 2 GiB * 1.25 = 2.5.
        let s = r.sizing.as_ref().unwrap();
        assert_eq!(
            (s.target_tps, s.cores, s.memory_gib, s.met, s.extrapolated),
            (2000.0, 2.0, 2.5, true, false)
        );
        assert!(
            s.text
                .starts_with("to sustain 2000 TPS at p99 < 1000 ms, a node needs about 2 cores"),
            "{}",
            s.text
        );
        // Asked for 5,000 TPS: not measured, extrapolated.
        let targets = Targets {
            tps: Some(5000.0),
            ..Targets::default()
        };
        let r = recommend(ramp(), Some(capacity), targets, &BlockKpis::default(), None, None);
        let s = r.sizing.unwrap();
        // 0.2 + 0.6 * 5 = 3.2 cores * 1.25 = 4.
        assert!(!s.met && s.extrapolated && s.cores == 4.0, "{s:?}");
    }

    #[test]
    fn an_unsaturated_run_says_so_and_settings_that_hurt_are_flagged() {
        let mut windows = ramp();
        windows.truncate(2);
        let capacity = Capacity {
            cores: 8.0,
            memory_gib: 64.0,
        };
        let blocks = BlockKpis {
            blocks: 100,
            block_time_s: Spread::of(vec![5.0; 10]),
            empty_share: Some(0.0),
            gas_used_ratio: Some(MeanPeak {
                mean: 0.8,
                peak: 0.97,
                samples: 100,
            }),
            gas_limit: Some(21_000_000.0),
        };
        let r = recommend(
            windows,
            Some(capacity),
            Targets::default(),
            &blocks,
            Some(3100.0),
            Some(("node-1".into(), 10.0, 5000.0)),
        );
        let b = r.bottleneck.unwrap();
        assert!(
            !b.saturated && b.text.starts_with("no node resource was saturated"),
            "{}",
            b.text
        );
        assert!(r.fits.is_empty() && r.sizing.is_none());
        assert!(
            r.notes.iter().any(|n| n.contains("fewer than three windows")),
            "{:?}",
            r.notes
        );
        let settings: Vec<&str> = r.flags.iter().map(|f| f.setting.as_str()).collect();
        assert_eq!(settings, vec!["gas_limit", "block_period", "txpool"]);
        assert!(
            r.flags[0].text.contains("about 200 plain transfers per second"),
            "{}",
            r.flags[0].text
        );
        // Nothing to go on.
        let r = recommend(vec![], None, Targets::default(), &BlockKpis::default(), None, None);
        assert!(r.bottleneck.is_none() && r.notes[0].starts_with("no load window"));
    }
}
