//! Attacks on a running network's nodes, beside the faults (scenarios of a certify profile, `chain.certify`):
//!
//! - `rpc_flood`: JSON-RPC calls at a node's breaking-point rate (found first by the load generator's step
//!   search, [`crate::load`]) or a given rate, for a duration;
//! - `malformed_rpc`: hostile requests one after another (not JSON, nested 100,000 deep, 16 MiB, a 10,000-call
//!   batch, a 1 MiB method name, wrong types, a 10,000-digit block number, bytes that are not UTF-8, an empty
//!   body, the wrong content type), the node asked for its head after each;
//! - `low_fee_spam`: transfers at the lowest fee a block takes (the load generator's `transfer_low_fee`) for a
//!   duration, while the funder sends a normal-fee transfer every 2 s: those must still be included.
//!
//! Each attack gives criteria of its own (judged with the resilience verdict's): the attacked nodes answer
//! afterwards, and hostile requests are refused, not served.

mod flood;
mod malformed;
mod spam;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::verdict::Criterion;
use super::Selector;
use crate::backend::local::rpc::call;
use crate::duration::SpecDuration;

/// An attack as written in a profile: its target and exactly one kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttackSpec {
    /// Which nodes: a target selector ([`Selector`]).
    pub target: String,
    #[serde(default)]
    pub rpc_flood: Option<FloodSpec>,
    #[serde(default)]
    pub malformed_rpc: Option<MalformedSpec>,
    #[serde(default)]
    pub low_fee_spam: Option<SpamSpec>,
}

/// `low_fee_spam`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpamSpec {
    /// Low-fee transfers per second over all targets.
    pub rate: f64,
    pub duration: SpecDuration,
    /// A funded key (hex): it funds the spamming senders and sends the normal-fee probes (in a certify
    /// profile, the operator's `--funder-key` when not given here).
    #[serde(default)]
    pub funder_key: Option<String>,
    /// How long a normal-fee probe may take to be included (default 30 s).
    #[serde(default)]
    pub max_inclusion: Option<SpecDuration>,
}

/// A flood's rate: calls per second, or `breaking_point`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum FloodRate {
    Rate(f64),
    Named(String),
}

/// `rpc_flood`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloodSpec {
    /// Calls per second over all targets, or `breaking_point` (searched first: from 500/s up by 1000 every 2 s,
    /// until a step fails more than 1 % of calls or its p99 passes 1 s, at most 15 steps).
    pub rate: FloodRate,
    pub duration: SpecDuration,
    /// The breaking point times this (default 1).
    #[serde(default)]
    pub factor: Option<f64>,
    /// Call kinds by weight, as the load generator's `workload` (default `{eth_blockNumber: 1}`).
    #[serde(default)]
    pub workload: Option<BTreeMap<String, Value>>,
}

/// `malformed_rpc: {}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MalformedSpec {}

impl AttackSpec {
    /// What is wrong with it, naming the key.
    pub fn check(&self) -> Result<(), String> {
        Selector::parse(&self.target).map_err(|e| format!("target: {e}"))?;
        if let Some(spam) = &self.low_fee_spam {
            if self.rpc_flood.is_some() || self.malformed_rpc.is_some() {
                return Err("give exactly one of rpc_flood, malformed_rpc and low_fee_spam".into());
            }
            if !(spam.rate > 0.0 && spam.rate.is_finite()) {
                return Err(format!("low_fee_spam.rate: must be more than zero, not {}", spam.rate));
            }
            if spam.duration.0.is_zero() {
                return Err("low_fee_spam.duration: must be more than zero".into());
            }
            if let Some(key) = spam
                .funder_key
                .as_deref()
                .filter(|k| !engine::operators::is_template(k))
            {
                crate::load::spec::parse_key(key).map_err(|e| format!("low_fee_spam.funder_key: {e}"))?;
            }
            return Ok(());
        }
        match (&self.rpc_flood, &self.malformed_rpc) {
            (Some(flood), None) => {
                match &flood.rate {
                    FloodRate::Rate(r) if !(*r > 0.0 && r.is_finite()) => {
                        return Err(format!("rpc_flood.rate: must be more than zero, not {r}"))
                    }
                    FloodRate::Named(n) if n != "breaking_point" => {
                        return Err(format!(
                            "rpc_flood.rate: `{n}`: expected calls per second or breaking_point"
                        ))
                    }
                    _ => {}
                }
                if flood.duration.0.is_zero() {
                    return Err("rpc_flood.duration: must be more than zero".into());
                }
                if flood.factor.is_some_and(|f| !(f > 0.0 && f.is_finite())) {
                    return Err("rpc_flood.factor: must be more than zero".into());
                }
                if let Some(workload) = &flood.workload {
                    let known = crate::load::calls::known();
                    if let Some(bad) = workload.keys().find(|k| !known.contains(&k.as_str())) {
                        return Err(format!("rpc_flood.workload: unknown call kind `{bad}`"));
                    }
                }
                Ok(())
            }
            (None, Some(_)) => Ok(()),
            _ => Err("give exactly one of rpc_flood, malformed_rpc and low_fee_spam".into()),
        }
    }

    pub fn name(&self) -> &'static str {
        if self.rpc_flood.is_some() {
            "rpc_flood"
        } else if self.low_fee_spam.is_some() {
            "low_fee_spam"
        } else {
            "malformed_rpc"
        }
    }
}

/// What an attack did, and its criteria.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttackReport {
    pub attack: String,
    pub nodes: Vec<String>,
    pub detail: Value,
    pub criteria: Vec<Criterion>,
    pub seconds: f64,
}

/// Runs `spec` on `nodes` (name, JSON-RPC URL); returns when it is over or cancelled.
pub async fn run(
    spec: &AttackSpec,
    nodes: &[(String, String)],
    cancel: &CancellationToken,
    progress: crate::backend::Progress<'_>,
) -> Result<AttackReport, String> {
    let began = Instant::now();
    let (detail, mut criteria) = match (&spec.rpc_flood, &spec.low_fee_spam) {
        (Some(flood), _) => flood::run(flood, nodes, cancel, progress).await?,
        (_, Some(spam)) => spam::run(spam, nodes, cancel, progress).await?,
        _ => malformed::run(nodes, cancel, progress).await,
    };
    criteria.push(answering(nodes).await);
    Ok(AttackReport {
        attack: spec.name().into(),
        nodes: nodes.iter().map(|(n, _)| n.clone()).collect(),
        detail,
        criteria,
        seconds: began.elapsed().as_secs_f64(),
    })
}

/// Whether every attacked node answers its head within 15 s of the attack's end.
async fn answering(nodes: &[(String, String)]) -> Criterion {
    let mut silent = Vec::new();
    for (name, url) in nodes {
        if !alive(url, Duration::from_secs(15)).await {
            silent.push(name.clone());
        }
    }
    Criterion {
        name: "attacked_nodes_answer".into(),
        passed: silent.is_empty(),
        detail: if silent.is_empty() {
            "every attacked node answers after the attack".into()
        } else {
            format!("not answering 15 s after the attack: {}", silent.join(", "))
        },
        value: json!(silent),
    }
}

/// Whether the node at `url` answers `eth_blockNumber` within `within`.
async fn alive(url: &str, within: Duration) -> bool {
    let until = Instant::now() + within;
    for _ in 0..60 {
        if call(url, "eth_blockNumber", json!([]), Duration::from_secs(3))
            .await
            .is_ok()
        {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    false
}

/// Runs the load generator with `args` (JSON of [`crate::load::LoadArgs`]) at `nodes` on a thread of its own.
pub async fn load(
    mut args: Value,
    nodes: &[(String, String)],
    cancel: &CancellationToken,
) -> Result<crate::load::summary::Summary, String> {
    // The nodes are given here, not found by a network's name: the name only satisfies the arguments' check.
    if args.get("network").is_none() && args.get("url").is_none() {
        args["network"] = json!("attacked-nodes");
    }
    let args: crate::load::LoadArgs = serde_json::from_value(args).map_err(|e| e.to_string())?;
    let plan = args.plan().map_err(|i| format!("{}: {}", i.key, i.message))?;
    let setup = crate::load::Setup::of(&args, nodes.to_vec(), Default::default(), None)?;
    let cancel = cancel.clone();
    tokio::task::spawn_blocking(move || crate::load::run_blocking(plan, setup, cancel, |_| {}, |_| {}))
        .await
        .map_err(|e| format!("the generator's thread failed: {e}"))?
}

/// The load generator's figures a report keeps.
pub fn load_figures(summary: &crate::load::summary::Summary) -> Value {
    let total = &summary.total;
    let calls = total.succ + total.fail;
    json!({
        "calls": calls,
        "failed": total.fail,
        "dropped": total.dropped,
        "error_rate": if calls > 0 { total.fail as f64 / calls as f64 } else { 0.0 },
        "throughput": total.throughput,
        "p50_ms": total.latency_ms.p50,
        "p99_ms": total.latency_ms.p99,
        "errors": total.errors,
        "seconds": summary.seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> Result<AttackSpec, String> {
        let spec: AttackSpec = super::super::spec::read(yaml)?;
        spec.check().map(|_| spec)
    }

    #[test]
    fn attacks_read_and_bad_ones_name_the_key() {
        let flood =
            spec("{target: 'validators:1', rpc_flood: {rate: breaking_point, duration: 30s, factor: 1.5}}").unwrap();
        assert_eq!(flood.name(), "rpc_flood");
        assert_eq!(flood.rpc_flood.unwrap().rate, FloodRate::Named("breaking_point".into()));
        assert_eq!(
            spec("{target: 're2:.*', malformed_rpc: {}}").unwrap().name(),
            "malformed_rpc"
        );
        for (yaml, needle) in [
            (
                "{target: v1, rpc_flood: {rate: fast, duration: 1s}}",
                "rpc_flood.rate: `fast`",
            ),
            ("{target: v1, rpc_flood: {rate: 0, duration: 1s}}", "more than zero"),
            (
                "{target: v1, rpc_flood: {rate: 10, duration: 0s}}",
                "rpc_flood.duration",
            ),
            (
                "{target: v1, rpc_flood: {rate: 10, duration: 1s, workload: {eth_nothing: 1}}}",
                "eth_nothing",
            ),
            ("{target: v1}", "exactly one"),
            (
                "{target: v1, malformed_rpc: {}, low_fee_spam: {rate: 1, duration: 1s}}",
                "exactly one",
            ),
            (
                "{target: v1, low_fee_spam: {rate: 1, duration: 1s, funder_key: '0x12'}}",
                "low_fee_spam.funder_key",
            ),
            (
                "{target: v1, low_fee_spam: {rate: -1, duration: 1s}}",
                "low_fee_spam.rate",
            ),
            ("{target: 'random:0', malformed_rpc: {}}", "target:"),
            ("{target: v1, malformed_rpc: {depth: 3}}", "unknown field"),
        ] {
            let err = spec(yaml).unwrap_err();
            assert!(err.contains(needle), "{yaml}: {err}");
        }
    }
}
