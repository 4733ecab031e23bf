//! The resilience verdict, attacknet-style: the heads of every node are watched (JSON-RPC, every 500 ms)
//! before, during and after the faults of one `chain.chaos` task, and judged on criteria, each with its
//! numbers and pass/fail:
//!
//! - `progress`: every node the faults did not target went beyond the best head of the network when the
//!   faults were in place (catching up does not count; blocks made while a partition's links were still being
//!   rerouted do not count either);
//! - `blocks_missed`: blocks the network made during the faults against what its baseline rate would have
//!   made (at most `max_missed` of them, a fraction, may be missing);
//! - `converged`: every node is on one chain (the block at the lowest of their heads is the same everywhere)
//!   within `grace` after the faults end (`recovery_seconds`);
//! - `fork_depth`: how many blocks a node's head at the end of the faults had to give up to the converged
//!   chain (at most `max_fork_depth`);
//! - `recovered`: the converged chain advances again.
//!
//! The baseline is watched for `baseline` before the first fault; during the faults every head is sampled
//! every 500 ms ([`Watch::during`]), so progress is measured from the first sample taken once every fault was
//! in place.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::backend::local::rpc::NodeRpc;
use crate::duration::SpecDuration;

/// What the verdict expects, as written in a DAG file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerdictSpec {
    /// How long to watch before the faults (default 10 s).
    #[serde(default)]
    pub baseline: Option<SpecDuration>,
    /// How long after the faults the nodes have to agree on one head (default 60 s).
    #[serde(default)]
    pub grace: Option<SpecDuration>,
    /// The fraction of the baseline's blocks that may be missing during the faults (default 0.5).
    #[serde(default)]
    pub max_missed: Option<f64>,
    /// The deepest reorganisation allowed after the faults (default 16 blocks).
    #[serde(default)]
    pub max_fork_depth: Option<u64>,
    /// Whether nodes not targeted must keep advancing during the faults (default true).
    #[serde(default)]
    pub expect_progress: Option<bool>,
    /// Whether a failed verdict fails the task (default true; false only reports it).
    #[serde(default)]
    pub fail_task: Option<bool>,
}

impl VerdictSpec {
    pub fn check(&self) -> Result<(), String> {
        if let Some(m) = self.max_missed {
            if !(0.0..=1.0).contains(&m) {
                return Err(format!("`verdict.max_missed` is a fraction from 0 to 1, not {m}"));
            }
        }
        for (key, d) in [("baseline", self.baseline), ("grace", self.grace)] {
            if d.is_some_and(|d| d.0.is_zero()) {
                return Err(format!("`verdict.{key}` must be more than zero"));
            }
        }
        Ok(())
    }

    pub fn baseline(&self) -> Duration {
        self.baseline.map(|d| d.0).unwrap_or(Duration::from_secs(10))
    }
}

/// One criterion's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    pub name: String,
    pub passed: bool,
    pub detail: String,
    pub value: serde_json::Value,
}

/// The verdict: every criterion, and whether all passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    pub passed: bool,
    pub criteria: Vec<Criterion>,
    pub baseline_blocks_per_second: f64,
    pub fault_seconds: f64,
    pub recovery_seconds: Option<f64>,
}

/// A node's head.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Head {
    number: u64,
    hash: String,
}

async fn head(rpc: &NodeRpc) -> Option<Head> {
    let block = rpc.call("eth_getBlockByNumber", json!(["latest", false])).await.ok()?;
    Some(Head {
        number: u64::from_str_radix(block["number"].as_str()?.trim_start_matches("0x"), 16).ok()?,
        hash: block["hash"].as_str()?.to_string(),
    })
}

/// Every node's head (None for a node not answering), by node name.
type Heads = BTreeMap<String, Option<Head>>;

async fn heads(nodes: &[(String, NodeRpc)]) -> Heads {
    let mut out = BTreeMap::new();
    for (name, rpc) in nodes {
        out.insert(name.clone(), head(rpc).await);
    }
    out
}

/// Watches the network's heads: [`Watch::baseline`] before the faults, [`Watch::judge`] after them.
pub struct Watch {
    spec: VerdictSpec,
    nodes: Vec<(String, NodeRpc)>,
    rate: f64,
    at_start: BTreeMap<String, Option<Head>>,
    started: Instant,
    started_at: DateTime<Utc>,
    /// Heads sampled during the faults, with when each round of calls began.
    samples: Vec<(DateTime<Utc>, Heads)>,
}

/// At most this many samples are kept (500 ms apart: more than 13 hours of faults).
const MAX_SAMPLES: usize = 100_000;

impl Watch {
    /// Watches `nodes` (name, RPC URL) for the baseline; returns when it is over (or cancelled).
    pub async fn baseline(spec: &VerdictSpec, nodes: &[(String, String)], cancel: &CancellationToken) -> Watch {
        let nodes: Vec<(String, NodeRpc)> = nodes
            .iter()
            .map(|(n, url)| (n.clone(), NodeRpc::new(url, Duration::from_secs(2))))
            .collect();
        let long = spec.baseline();
        let first = heads(&nodes).await;
        let began = Instant::now();
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(long) => {}
        }
        let last = heads(&nodes).await;
        // The best head's advance: a node catching up (after an earlier fault) advances faster than the chain.
        let best = |heads: &BTreeMap<String, Option<Head>>| heads.values().flatten().map(|h| h.number).max();
        let advanced = match (best(&first), best(&last)) {
            (Some(a), Some(b)) => b.saturating_sub(a),
            _ => 0,
        };
        let rate = advanced as f64 / began.elapsed().as_secs_f64().max(0.001);
        Watch {
            spec: spec.clone(),
            rate,
            at_start: last,
            nodes,
            started: Instant::now(),
            started_at: Utc::now(),
            samples: Vec::new(),
        }
    }

    /// Runs `work` (the faults) while sampling every node's head every 500 ms (all nodes at once, each given
    /// 400 ms: a paused node must not hold a round up); its output.
    pub async fn during<F: Future>(&mut self, work: F) -> F::Output {
        let quick: Vec<(String, NodeRpc)> = self
            .nodes
            .iter()
            .map(|(n, rpc)| (n.clone(), NodeRpc::new(rpc.url(), Duration::from_millis(400))))
            .collect();
        let samples = &mut self.samples;
        let sampler = async {
            loop {
                let at = Utc::now();
                let now: Heads = futures_util::future::join_all(
                    quick.iter().map(|(n, rpc)| async move { (n.clone(), head(rpc).await) }),
                )
                .await
                .into_iter()
                .collect();
                if samples.len() < MAX_SAMPLES {
                    samples.push((at, now));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        };
        tokio::select! {
            out = work => out,
            never = sampler => never,
        }
    }

    /// How long since the baseline ended (the faults' window so far).
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Judges the faults that just ended; `targeted` are the nodes they hit, `in_place` when the last of them
    /// was in place (see [`super::episode::in_place`]).
    pub async fn judge(
        self,
        targeted: &[String],
        in_place: Option<DateTime<Utc>>,
        cancel: &CancellationToken,
    ) -> Verdict {
        let fault_seconds = self.started.elapsed().as_secs_f64();
        let at_end = heads(&self.nodes).await;
        let mut criteria = Vec::new();
        let best = |heads: &BTreeMap<String, Option<Head>>| heads.values().flatten().map(|h| h.number as i64).max();
        let best_at_start = best(&self.at_start).unwrap_or(0);
        // Progress of the nodes not targeted: new heights beyond the best head any node had once the faults
        // were in place (a node that was behind and only catches up has made no progress). Without a sample
        // from then (a fault shorter than a sampling round), from when the faults began.
        let from_sample = in_place.and_then(|t| self.samples.iter().find(|(at, _)| *at >= t));
        let best_in_place = from_sample.and_then(|(_, h)| best(h)).unwrap_or(best_at_start);
        let since = match (from_sample, in_place) {
            (Some((at, _)), Some(_)) => format!(
                "from block {best_in_place}, the best head {:.1} s into the faults when they were all in place",
                (*at - self.started_at).num_milliseconds() as f64 / 1000.0
            ),
            _ => format!("from block {best_in_place}, the best head when the faults began"),
        };
        let advanced: BTreeMap<&str, i64> = self
            .nodes
            .iter()
            .filter(|(n, _)| !targeted.contains(n))
            .map(|(n, _)| {
                let after = at_end.get(n).cloned().flatten().map(|h| h.number as i64);
                (n.as_str(), after.map_or(-1, |a| (a - best_in_place).max(0)))
            })
            .collect();
        let expect_progress = self.spec.expect_progress.unwrap_or(true);
        let all_advanced = !advanced.is_empty() && advanced.values().all(|a| *a > 0);
        criteria.push(Criterion {
            name: "progress".into(),
            passed: !expect_progress || all_advanced,
            detail: if advanced.is_empty() {
                "every node was targeted".into()
            } else {
                format!(
                    "{since}, heads of untargeted nodes advanced by {}",
                    advanced
                        .iter()
                        .map(|(n, a)| format!("{n} {a}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            },
            value: json!(advanced),
        });
        // Blocks made during the faults against the baseline rate.
        // New heights of the network (its best head), not a lagging node catching up.
        let best_at_end = at_end.values().flatten().map(|h| h.number).max().unwrap_or(0);
        let made = best_at_end.saturating_sub(best_at_start.max(0) as u64);
        let expected = self.rate * fault_seconds;
        let missed = (expected - made as f64).max(0.0);
        let allowed = self.spec.max_missed.unwrap_or(0.5);
        let ratio = if expected > 0.0 { missed / expected } else { 0.0 };
        criteria.push(Criterion {
            name: "blocks_missed".into(),
            passed: ratio <= allowed,
            detail: format!(
                "{made} blocks in {fault_seconds:.0} s against {expected:.1} expected at the baseline's {:.2}/s: {:.0}% missed (at most {:.0}%)",
                self.rate,
                ratio * 100.0,
                allowed * 100.0
            ),
            value: json!({"made": made, "expected": expected, "missed_ratio": ratio}),
        });
        // Convergence within the grace period.
        let grace = self.spec.grace.map(|d| d.0).unwrap_or(Duration::from_secs(60));
        let ended = Instant::now();
        let mut agreed: Option<Head> = None;
        let mut last = BTreeMap::new();
        while ended.elapsed() < grace && !cancel.is_cancelled() {
            let now = heads(&self.nodes).await;
            last = now.clone();
            let all: Vec<&Head> = now.values().filter_map(Option::as_ref).collect();
            if all.len() == self.nodes.len() {
                if let Some(common) = one_chain(&self.nodes, &all).await {
                    agreed = Some(common);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let recovery = agreed.as_ref().map(|_| ended.elapsed().as_secs_f64());
        criteria.push(Criterion {
            name: "converged".into(),
            passed: agreed.is_some(),
            detail: match (&agreed, recovery) {
                (Some(h), Some(s)) => format!(
                    "every node on one chain through block {} ({}) {s:.1} s after the faults",
                    h.number,
                    short(&h.hash)
                ),
                _ => format!(
                    "the nodes did not agree on one head within {grace:?}: {}",
                    last.iter()
                        .map(|(n, h)| match h {
                            Some(h) => format!("{n} at {} ({})", h.number, short(&h.hash)),
                            None => format!("{n} not answering"),
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
            value: json!(recovery),
        });
        // Fork depth: how far back each node's end-of-fault head left the converged chain.
        let mut depth = 0u64;
        if agreed.is_some() {
            let canonical = &self.nodes[0].1;
            for (name, h) in &at_end {
                let Some(h) = h else { continue };
                let Some(own) = self.nodes.iter().find(|(n, _)| n == name).map(|(_, rpc)| rpc) else {
                    continue;
                };
                let mut n = h.number;
                let mut hash = h.hash.clone();
                let mut d = 0;
                while d < 256 {
                    let block = canonical
                        .call("eth_getBlockByNumber", json!([format!("0x{n:x}"), false]))
                        .await
                        .ok();
                    if block.as_ref().and_then(|b| b["hash"].as_str()) == Some(hash.as_str()) || n == 0 {
                        break;
                    }
                    // Step back along the node's own chain (it keeps the blocks it gave up).
                    let parent = own
                        .call("eth_getBlockByHash", json!([hash, false]))
                        .await
                        .ok()
                        .and_then(|b| b["parentHash"].as_str().map(str::to_string));
                    match parent {
                        Some(p) => hash = p,
                        None => break,
                    }
                    n -= 1;
                    d += 1;
                }
                depth = depth.max(d);
            }
        }
        let max_depth = self.spec.max_fork_depth.unwrap_or(16);
        criteria.push(Criterion {
            name: "fork_depth".into(),
            passed: agreed.is_some() && depth <= max_depth,
            detail: format!("deepest reorganisation after the faults: {depth} block(s) (at most {max_depth})"),
            value: json!(depth),
        });
        // Liveness after recovery.
        let mut recovered = false;
        if let Some(h) = &agreed {
            let deadline = Instant::now() + grace.max(Duration::from_secs(10));
            while Instant::now() < deadline && !cancel.is_cancelled() {
                if head(&self.nodes[0].1).await.is_some_and(|now| now.number > h.number) {
                    recovered = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        criteria.push(Criterion {
            name: "recovered".into(),
            passed: recovered,
            detail: if recovered {
                "the converged chain advances again".into()
            } else {
                "no new block after the nodes converged".into()
            },
            value: json!(recovered),
        });
        Verdict {
            passed: criteria.iter().all(|c| c.passed),
            criteria,
            baseline_blocks_per_second: self.rate,
            fault_seconds,
            recovery_seconds: recovery,
        }
    }
}

/// Whether every node is on one chain: the block at the lowest of their heads is the same everywhere (the
/// others only ahead of it by propagation, which polling nodes one after another cannot catch at one instant).
/// That block, if so.
async fn one_chain(nodes: &[(String, NodeRpc)], heads: &[&Head]) -> Option<Head> {
    let lowest = heads.iter().min_by_key(|h| h.number)?;
    for (_, rpc) in nodes {
        let block = rpc
            .call("eth_getBlockByNumber", json!([format!("0x{:x}", lowest.number), false]))
            .await
            .ok()?;
        if block["hash"].as_str() != Some(lowest.hash.as_str()) {
            return None;
        }
    }
    Some((*lowest).clone())
}

fn short(hash: &str) -> &str {
    &hash[..hash.len().min(10)]
}
