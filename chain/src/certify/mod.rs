//! Certify: a network run through a versioned resilience profile ("game of stakes", [`profile`]), scenario
//! after scenario: the load during it, its faults ([`crate::chaos::episode`]) and attack
//! ([`crate::chaos::attack`]) side by side, judged by the resilience verdict and the attack's own criteria, or
//! the node exposure audit ([`crate::audit::exposure`]); then a 0-100 score and a report whose inputs and
//! results are hashed and optionally signed ([`report`]). Behind `chain.certify` and `dagctl certify`.

pub mod profile;
pub mod report;

use std::time::Instant;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::audit::exposure::{self, AuditTarget};
use crate::backend::any::AnyRecord;
use crate::backend::local::rpc::call;
use crate::backend::NodeBackend;
use crate::chaos::verdict::{Criterion, Watch};
use crate::chaos::{attack, episode, FaultLedger, Selector};
use crate::registry::NetworkStore;
pub use profile::{Loaded, Profile, Scenario};
pub use report::{Report, ScenarioResult, Status};

/// What a certify run works on.
pub struct Bench<'a, S, B, L> {
    pub store: &'a S,
    pub backend: &'a B,
    pub ledger: &'a L,
    pub record: &'a AnyRecord,
    pub seed: u64,
    /// The operator's funded key (hex), for scenarios that send transactions and name none.
    pub funder_key: Option<String>,
    pub cancel: &'a CancellationToken,
    pub progress: crate::backend::Progress<'a>,
}

/// Runs the scenarios of `loaded` (only those named in `only`, when not empty) and makes the report (not yet
/// sealed: see [`Report::seal`]).
pub async fn run<S, B, L>(bench: &Bench<'_, S, B, L>, loaded: &Loaded, only: &[String]) -> Result<Report, String>
where
    S: NetworkStore,
    B: NodeBackend,
    L: FaultLedger,
{
    if let Some(unknown) = only
        .iter()
        .find(|n| !loaded.profile.scenarios.iter().any(|s| &s.name == *n))
    {
        return Err(format!(
            "profile {} v{} has no scenario `{unknown}`",
            loaded.profile.profile, loaded.profile.version
        ));
    }
    let started = chrono::Utc::now();
    let network = network_facts(bench.record).await;
    let mut results = Vec::new();
    for (i, scenario) in loaded.profile.scenarios.iter().enumerate() {
        if !only.is_empty() && !only.contains(&scenario.name) {
            continue;
        }
        if bench.cancel.is_cancelled() {
            results.push(ScenarioResult::not_run(
                &scenario.name,
                scenario.weight,
                "cancelled".into(),
            ));
            continue;
        }
        (bench.progress)(&format!(
            "scenario {}/{}: {}",
            i + 1,
            loaded.profile.scenarios.len(),
            scenario.name
        ));
        let result = run_scenario(bench, scenario, bench.seed.wrapping_add(1000 * i as u64)).await;
        (bench.progress)(&format!(
            "scenario {}: {:?}, {} ({})",
            scenario.name,
            result.status,
            result
                .points
                .map(|p| format!("{p:.1} of {} points", scenario.weight))
                .unwrap_or_else(|| "outside the score".into()),
            result.detail
        ));
        for c in &result.criteria {
            (bench.progress)(&format!(
                "  {} {}: {}",
                if c.passed { "PASS" } else { "FAIL" },
                c.name,
                c.detail
            ));
        }
        results.push(result);
    }
    let (score, coverage) = report::score(&results);
    Ok(Report {
        format: report::FORMAT.into(),
        profile: json!({
            "name": loaded.profile.profile,
            "version": loaded.profile.version,
            "sha256": loaded.sha256,
            "source": loaded.source,
        }),
        network,
        dagctl_version: env!("CARGO_PKG_VERSION").into(),
        seed: bench.seed,
        started: started.to_rfc3339(),
        ended: chrono::Utc::now().to_rfc3339(),
        scenarios: results,
        score,
        coverage,
        digest: None,
        signature: None,
    })
}

/// The network as the report names it: client and its version (as the first node says), consensus, size.
async fn network_facts(record: &AnyRecord) -> Value {
    let endpoints = record.rpc_endpoints();
    let version = match endpoints.first() {
        Some((_, rpc)) => call(rpc, "web3_clientVersion", json!([]), std::time::Duration::from_secs(5))
            .await
            .ok(),
        None => None,
    };
    let (client, consensus, chain_id) = record.chain();
    let roles = record.roles();
    json!({
        "name": record.name(),
        "client": client,
        "client_version": version,
        "consensus": consensus,
        "chain_id": chain_id,
        "nodes": roles.len(),
        "validators": roles.iter().filter(|(_, role)| *role == crate::spec::Role::Validator).count(),
    })
}

async fn run_scenario<S, B, L>(bench: &Bench<'_, S, B, L>, scenario: &Scenario, seed: u64) -> ScenarioResult
where
    S: NetworkStore,
    B: NodeBackend,
    L: FaultLedger,
{
    let began = Instant::now();
    let (name, weight) = (scenario.name.as_str(), scenario.weight);
    let record = bench.record;
    if let Some(audit) = &scenario.audit {
        let local = match record.local("the exposure audit (it reads this host's listening sockets)") {
            Ok(local) => local,
            Err(reason) => return ScenarioResult::not_run(name, weight, reason.to_string()),
        };
        let found = exposure::audit(&AuditTarget::of_record(local)).await;
        let worst = found.findings.iter().map(|f| f.severity).max();
        let fail_on = audit.fail_on();
        let criterion = Criterion {
            name: "exposure".into(),
            passed: !found.reaches(fail_on),
            detail: format!(
                "{} finding(s) ({}); worst {}; fails at {} or worse",
                found.findings.len(),
                found
                    .counts
                    .iter()
                    .map(|(s, n)| format!("{n} {s}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                worst.map(|s| s.as_str()).unwrap_or("none"),
                fail_on.as_str()
            ),
            value: json!(found.counts),
        };
        let evidence = serde_json::to_value(&found).unwrap_or_default();
        return ScenarioResult::judged(name, weight, vec![criterion], evidence, began.elapsed().as_secs_f64());
    }
    // Everything is chosen before anything is done: what this machine or network cannot express is not run.
    let planned = match episode::plan(record, &scenario.faults, seed) {
        Ok(p) => p,
        Err(reason) => return ScenarioResult::not_run(name, weight, reason),
    };
    // An attack that sends transactions takes the operator's funded key when the profile names none.
    let mut attack_spec = scenario.attack.clone();
    if let Some(spam) = attack_spec.as_mut().and_then(|a| a.low_fee_spam.as_mut()) {
        if spam.funder_key.is_none() {
            match &bench.funder_key {
                Some(key) => spam.funder_key = Some(key.clone()),
                None => {
                    return ScenarioResult::not_run(
                        name,
                        weight,
                        "low_fee_spam needs a funded key: give --funder-key (chain.certify: funder_key)".into(),
                    )
                }
            }
        }
    }
    let attacked: Vec<(String, String)> = match &scenario.attack {
        Some(a) => match Selector::parse(&a.target).and_then(|s| s.select(record, seed)) {
            Ok(picked) => record
                .rpc_endpoints()
                .into_iter()
                .filter(|(n, _)| picked.contains(n))
                .collect(),
            Err(reason) => return ScenarioResult::not_run(name, weight, format!("attack.target: {reason}")),
        },
        None => Vec::new(),
    };
    let nodes: Vec<(String, String)> = record.rpc_endpoints();
    let spec = scenario.pass.clone().unwrap_or_default();
    let load_cancel = bench.cancel.child_token();
    let load = async {
        let l = scenario.load.as_ref()?;
        let mut args = json!({"rate": l.rate, "duration": "24h", "timeout": "5s"});
        if let Some(d) = l.duration {
            args["duration"] = json!(format!("{}ms", d.0.as_millis()));
        }
        if let Some(w) = &l.workload {
            args["workload"] = json!(w);
        }
        Some(attack::load(args, &nodes, &load_cancel).await)
    };
    let acts = async {
        let mut watch = Watch::baseline(&spec, &nodes, bench.cancel).await;
        let faults = async {
            if planned.is_empty() {
                return Ok(Vec::new());
            }
            episode::run(
                bench.store,
                bench.backend,
                bench.ledger,
                record.name(),
                &planned,
                bench.cancel,
                bench.progress,
            )
            .await
        };
        let attack = async {
            match &attack_spec {
                Some(a) => Some(attack::run(a, &attacked, bench.cancel, bench.progress).await),
                None => None,
            }
        };
        let (faults, attack) = watch.during(futures_util::future::join(faults, attack)).await;
        // A load-only scenario runs for its load's duration.
        if planned.is_empty() && scenario.attack.is_none() {
            if let Some(d) = scenario.load.as_ref().and_then(|l| l.duration) {
                tokio::select! {
                    _ = bench.cancel.cancelled() => {}
                    _ = tokio::time::sleep(d.0) => {}
                }
            }
        }
        // The window lasts at least as long as the baseline, so progress and missed blocks are measured over
        // comparable spans (a burst of hostile requests may be over in a fraction of a block time).
        if let Some(rest) = spec.baseline().checked_sub(watch.elapsed()) {
            tokio::select! {
                _ = bench.cancel.cancelled() => {}
                _ = tokio::time::sleep(rest) => {}
            }
        }
        load_cancel.cancel();
        (watch, faults, attack)
    };
    let (load, (watch, faults, attack)) = futures_util::future::join(load, acts).await;
    let mut evidence = json!({});
    let faults = match faults {
        Ok(reports) => reports,
        Err(reason) => {
            return ScenarioResult::error(
                name,
                weight,
                format!("a fault could not be applied (every fault was undone): {reason}"),
                evidence,
                began.elapsed().as_secs_f64(),
            )
        }
    };
    evidence["faults"] = json!(faults);
    let attack = match attack.transpose() {
        Ok(a) => a,
        Err(reason) => {
            return ScenarioResult::error(
                name,
                weight,
                format!("the attack failed: {reason}"),
                evidence,
                began.elapsed().as_secs_f64(),
            )
        }
    };
    if bench.cancel.is_cancelled() {
        return ScenarioResult::error(
            name,
            weight,
            "cancelled; every fault was undone".into(),
            evidence,
            began.elapsed().as_secs_f64(),
        );
    }
    // Attacked nodes are judged like the others: an attack on a node's JSON-RPC must not stop it following
    // (or making) the chain.
    let verdict = watch
        .judge(&episode::targeted(&planned), episode::in_place(&faults), bench.cancel)
        .await;
    let mut criteria = verdict.criteria.clone();
    evidence["verdict"] = json!({
        "baseline_blocks_per_second": verdict.baseline_blocks_per_second,
        "fault_seconds": verdict.fault_seconds,
        "recovery_seconds": verdict.recovery_seconds,
    });
    if let Some(a) = attack {
        criteria.extend(a.criteria.iter().cloned());
        evidence["attack"] = json!(a);
    }
    match load {
        Some(Ok(summary)) => {
            let figures = attack::load_figures(&summary);
            if let Some(max) = scenario.load.as_ref().and_then(|l| l.max_error_rate) {
                let rate = figures["error_rate"].as_f64().unwrap_or(1.0);
                criteria.push(Criterion {
                    name: "load_errors".into(),
                    passed: rate <= max,
                    detail: format!(
                        "{:.2}% of {} calls failed during the scenario (at most {:.2}%), p99 {:.0} ms",
                        rate * 100.0,
                        figures["calls"],
                        max * 100.0,
                        figures["p99_ms"].as_f64().unwrap_or(0.0)
                    ),
                    value: json!(rate),
                });
            }
            evidence["load"] = figures;
        }
        Some(Err(reason)) => {
            return ScenarioResult::error(
                name,
                weight,
                format!("the load could not run: {reason}"),
                evidence,
                began.elapsed().as_secs_f64(),
            )
        }
        None => {}
    }
    ScenarioResult::judged(name, weight, criteria, evidence, began.elapsed().as_secs_f64())
}
