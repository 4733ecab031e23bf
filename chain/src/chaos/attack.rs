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
        (Some(flood), _) => run_flood(flood, nodes, cancel, progress).await?,
        (_, Some(spam)) => run_spam(spam, nodes, cancel, progress).await?,
        _ => run_malformed(nodes, cancel, progress).await,
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

async fn run_flood(
    flood: &FloodSpec,
    nodes: &[(String, String)],
    cancel: &CancellationToken,
    progress: crate::backend::Progress<'_>,
) -> Result<(Value, Vec<Criterion>), String> {
    let workload = flood
        .workload
        .clone()
        .unwrap_or_else(|| BTreeMap::from([("eth_blockNumber".to_string(), json!(1))]));
    let (rate, search) = match &flood.rate {
        FloodRate::Rate(r) => (*r, Value::Null),
        FloodRate::Named(_) => {
            progress("rpc_flood: searching the breaking point (from 500/s, up by 1000 every 2 s)");
            let summary = load(
                json!({"step": {"start": 500, "increase": 1000, "for": "2s", "max_steps": 15,
                    "max_error_rate": 0.01, "max_p99": "1s"}, "workload": workload}),
                nodes,
                cancel,
            )
            .await?;
            let found = summary.sustainable_rate.unwrap_or(200.0).max(1.0);
            let broke = summary.steps.iter().any(|s| s.broke.is_some());
            progress(&format!(
                "rpc_flood: {}",
                if broke {
                    format!("the node broke past {found:.0} calls/s")
                } else {
                    format!("no step broke the node up to {found:.0} calls/s (the generator's limit, or the search's)")
                }
            ));
            let steps: Vec<Value> = summary
                .steps
                .iter()
                .map(|s| json!({"rate": s.rate, "broke": s.broke}))
                .collect();
            (
                found,
                json!({"sustainable_rate": summary.sustainable_rate, "steps": steps}),
            )
        }
    };
    let rate = rate * flood.factor.unwrap_or(1.0);
    progress(&format!(
        "rpc_flood: {rate:.0} calls/s for {:?} at {}",
        flood.duration.0,
        nodes.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
    ));
    let summary = load(
        json!({"rate": rate, "duration": format!("{}ms", flood.duration.0.as_millis()), "workload": workload,
            "timeout": "5s"}),
        nodes,
        cancel,
    )
    .await?;
    let detail = json!({"rate": rate, "breaking_point": search, "load": load_figures(&summary)});
    Ok((detail, Vec::new()))
}

async fn run_spam(
    spam: &SpamSpec,
    nodes: &[(String, String)],
    cancel: &CancellationToken,
    progress: crate::backend::Progress<'_>,
) -> Result<(Value, Vec<Criterion>), String> {
    let key = spam
        .funder_key
        .as_deref()
        .ok_or("low_fee_spam needs a funded key (`funder_key`)")?;
    let funder = crate::load::spec::parse_key(key).map_err(|e| format!("low_fee_spam.funder_key: {e}"))?;
    let url = nodes.first().map(|(_, u)| u.clone()).ok_or("no node to spam")?;
    progress(&format!(
        "low_fee_spam: {:.0} lowest-fee transfers/s for {:?}, a normal-fee probe every 2 s",
        spam.rate, spam.duration.0
    ));
    let spam_cancel = cancel.child_token();
    let flood = load(
        json!({"rate": spam.rate, "duration": format!("{}ms", spam.duration.0.as_millis()),
            "workload": {"transfer_low_fee": 1}, "funder_key": key, "senders": 32,
            "timeout": "5s", "settle": "5s"}),
        nodes,
        &spam_cancel,
    );
    let probes = probe(&funder, &url, spam.duration.0, cancel);
    let (flood, probes) = futures_util::future::join(flood, probes).await;
    let flood = flood?;
    let probes = probes?;
    let max = spam.max_inclusion.map(|d| d.0).unwrap_or(Duration::from_secs(30));
    let included: Vec<f64> = probes.iter().filter_map(|p| p.1).collect();
    let worst = included
        .iter()
        .cloned()
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    let passed = !probes.is_empty() && included.len() == probes.len() && worst.is_some_and(|w| w <= max.as_secs_f64());
    let criteria = vec![Criterion {
        name: "normal_fee_transfers_included".into(),
        passed,
        detail: format!(
            "{} of {} normal-fee transfers sent during the spam were included, the slowest in {} (at most {:?})",
            included.len(),
            probes.len(),
            worst.map_or("-".into(), |w| format!("{w:.1} s")),
            max
        ),
        value: json!({"sent": probes.len(), "included": included.len(), "worst_seconds": worst}),
    }];
    let tx = flood.tx.as_ref().map(|t| serde_json::to_value(t).unwrap_or_default());
    Ok((
        json!({"spam": load_figures(&flood), "spam_transactions": tx, "probes": probes}),
        criteria,
    ))
}

/// Normal-fee transfers from the funder to itself, one every 2 s for `long` (from 5 s in, once the spam's
/// senders are funded), each followed into a block: (hash, seconds to inclusion).
async fn probe(
    funder: &alloy_primitives::B256,
    url: &str,
    long: Duration,
    cancel: &CancellationToken,
) -> Result<Vec<(String, Option<f64>)>, String> {
    use alloy_signer_local::PrivateKeySigner;
    let key = PrivateKeySigner::from_bytes(funder).map_err(|e| e.to_string())?;
    let rpc = |method: &'static str, params: Value| async move {
        call(url, method, params, Duration::from_secs(5))
            .await
            .map_err(|e| e.to_string())
    };
    let quantity = |v: &Value| crate::backend::local::rpc::quantity(v).map(u128::from);
    tokio::select! {
        _ = cancel.cancelled() => return Ok(Vec::new()),
        _ = tokio::time::sleep(Duration::from_secs(5).min(long)) => {}
    }
    let chain_id = quantity(&rpc("eth_chainId", json!([])).await?).ok_or("bad eth_chainId")? as u64;
    let gas_price = rpc("eth_gasPrice", json!([]))
        .await
        .ok()
        .and_then(|v| {
            v.as_str()
                .and_then(|s| u128::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        })
        .unwrap_or(0);
    let head = rpc("eth_getBlockByNumber", json!(["latest", false])).await?;
    let base = head["baseFeePerGas"]
        .as_str()
        .and_then(|s| u128::from_str_radix(s.trim_start_matches("0x"), 16).ok());
    let tip = if gas_price == 0 {
        0
    } else {
        1_000_000_000u128.min(gas_price)
    };
    let fees = crate::load::senders::Fees {
        chain_id,
        gas_price: gas_price.saturating_mul(2),
        eip1559: base.map(|b| (b.saturating_mul(2) + tip, tip)),
    };
    let mut nonce =
        quantity(&rpc("eth_getTransactionCount", json!([key.address(), "pending"])).await?).ok_or("bad nonce")? as u64;
    // Send one every 2 s while the spam lasts, and follow every one sent into a block (polled every 500 ms,
    // so an inclusion time is at most half a second late), for at most 60 s after the last.
    let mut sent: Vec<(String, Instant, Option<f64>)> = Vec::new();
    let sending_until = Instant::now() + long.saturating_sub(Duration::from_secs(5));
    let mut next_send = Instant::now();
    let mut deadline = sending_until + Duration::from_secs(60);
    while Instant::now() < deadline && !cancel.is_cancelled() {
        let now = Instant::now();
        if now < sending_until && now >= next_send && sent.len() < 100 {
            next_send = now + Duration::from_secs(2);
            let signed = crate::load::senders::sign_transfer(
                &key,
                &fees,
                false,
                nonce,
                key.address(),
                alloy_primitives::U256::from(1u64),
            )?;
            if rpc("eth_sendRawTransaction", json!([signed.raw_hex])).await.is_ok() {
                sent.push((format!("{:#x}", signed.hash), Instant::now(), None));
                nonce += 1;
            }
        }
        for (hash, at, included) in sent.iter_mut().filter(|s| s.2.is_none()) {
            if let Ok(receipt) = rpc("eth_getTransactionReceipt", json!([hash.clone()])).await {
                if receipt.get("blockNumber").is_some_and(|b| !b.is_null()) {
                    *included = Some(at.elapsed().as_secs_f64());
                }
            }
        }
        if Instant::now() >= sending_until && sent.iter().all(|s| s.2.is_some()) {
            break;
        }
        if Instant::now() >= sending_until && sent.is_empty() {
            deadline = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(sent.into_iter().map(|(h, _, i)| (h, i)).collect())
}

/// One hostile request.
struct Hostile {
    name: &'static str,
    body: Vec<u8>,
    content_type: &'static str,
    /// Whether serving it (a JSON-RPC `result`) is a finding.
    must_refuse: bool,
}

fn hostile_requests() -> Vec<Hostile> {
    let json = "application/json";
    let padding = "a".repeat(16 << 20);
    let batch: Vec<Value> = (0..10_000)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_blockNumber", "params": []}))
        .collect();
    let h = |name, body: Vec<u8>, content_type, must_refuse| Hostile {
        name,
        body,
        content_type,
        must_refuse,
    };
    vec![
        h("not_json", b"this is not json".to_vec(), json, true),
        h(
            "truncated",
            br#"{"jsonrpc":"2.0","id":1,"method":"eth_block"#.to_vec(),
            json,
            true,
        ),
        h("nested_100k", "[".repeat(100_000).into_bytes(), json, true),
        h(
            "oversized_16mib",
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":["{padding}"]}}"#).into_bytes(),
            json,
            true,
        ),
        h("batch_10k", serde_json::to_vec(&batch).unwrap_or_default(), json, false),
        h(
            "method_1mib",
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"{}","params":[]}}"#,
                "x".repeat(1 << 20)
            )
            .into_bytes(),
            json,
            true,
        ),
        h(
            "wrong_types",
            br#"{"jsonrpc":"2.0","id":{"a":[1,2]},"method":42,"params":"x"}"#.to_vec(),
            json,
            true,
        ),
        h(
            "huge_block_number",
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x{}",false]}}"#,
                "f".repeat(10_000)
            )
            .into_bytes(),
            json,
            true,
        ),
        h(
            "not_utf8",
            vec![0xff, 0xfe, 0x7b, 0x22, 0xc3, 0x28, 0xa0, 0xa1],
            json,
            true,
        ),
        h("empty", Vec::new(), json, true),
        h(
            "wrong_content_type",
            br#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#.to_vec(),
            "text/plain",
            true,
        ),
    ]
}

/// How a node answered one hostile request.
#[derive(Debug, Clone, Serialize)]
struct Answer {
    request: &'static str,
    bytes: usize,
    /// The HTTP status, or the transport error.
    status: Option<u16>,
    error: Option<String>,
    /// Whether the answer held a JSON-RPC `result` (the request was served).
    served: bool,
    ms: f64,
    alive_after: bool,
}

async fn run_malformed(
    nodes: &[(String, String)],
    cancel: &CancellationToken,
    progress: crate::backend::Progress<'_>,
) -> (Value, Vec<Criterion>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_default();
    let requests = hostile_requests();
    let mut answers: BTreeMap<String, Vec<Answer>> = BTreeMap::new();
    let mut down = Vec::new();
    let mut served = Vec::new();
    for (name, url) in nodes {
        progress(&format!("malformed_rpc: {} hostile requests to {name}", requests.len()));
        for req in &requests {
            if cancel.is_cancelled() {
                break;
            }
            let began = Instant::now();
            let sent = http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, req.content_type)
                .body(req.body.clone())
                .send()
                .await;
            let (status, error, was_served) = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body = resp.bytes().await.unwrap_or_default();
                    let value: Option<Value> = serde_json::from_slice(&body).ok();
                    let has_result = |v: &Value| v.get("result").is_some();
                    let was_served = (200..300).contains(&status)
                        && value.as_ref().is_some_and(|v| match v {
                            Value::Array(items) => items.iter().any(has_result),
                            other => has_result(other),
                        });
                    (Some(status), None, was_served)
                }
                Err(e) => (None, Some(e.without_url().to_string()), false),
            };
            let ms = began.elapsed().as_secs_f64() * 1e3;
            let alive_after = alive(url, Duration::from_secs(10)).await;
            if !alive_after {
                down.push(format!("{name} after {}", req.name));
            }
            if was_served && req.must_refuse {
                served.push(format!("{name}: {}", req.name));
            }
            answers.entry(name.clone()).or_default().push(Answer {
                request: req.name,
                bytes: req.body.len(),
                status,
                error,
                served: was_served,
                ms,
                alive_after,
            });
            if !alive_after {
                break;
            }
        }
    }
    let criteria = vec![
        Criterion {
            name: "survives_hostile_requests".into(),
            passed: down.is_empty(),
            detail: if down.is_empty() {
                format!(
                    "every node answered its head after each of {} hostile requests",
                    requests.len()
                )
            } else {
                format!("stopped answering: {}", down.join(", "))
            },
            value: json!(down),
        },
        Criterion {
            name: "refuses_hostile_requests".into(),
            passed: served.is_empty(),
            detail: if served.is_empty() {
                "no malformed or oversized request was served".into()
            } else {
                format!("served: {}", served.join(", "))
            },
            value: json!(served),
        },
    ];
    (json!({"answers": answers}), criteria)
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

    #[test]
    fn hostile_requests_are_what_they_say() {
        let requests = hostile_requests();
        let by = |n: &str| requests.iter().find(|r| r.name == n).unwrap();
        assert!(by("oversized_16mib").body.len() > 16 << 20);
        assert!(serde_json::from_slice::<Value>(&by("not_json").body).is_err());
        assert!(serde_json::from_slice::<Value>(&by("nested_100k").body).is_err());
        assert!(std::str::from_utf8(&by("not_utf8").body).is_err());
        assert_eq!(
            serde_json::from_slice::<Vec<Value>>(&by("batch_10k").body)
                .unwrap()
                .len(),
            10_000
        );
        assert!(!by("batch_10k").must_refuse);
    }
}
