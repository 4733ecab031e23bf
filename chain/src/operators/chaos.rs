//! `chain.chaos`: faults on the nodes of a running network ([`crate::chaos`]), several at once, each with its
//! target, an optional start offset, and undone at its end, or at once when the try is stopped or times out.
//! The XCom is every fault's report (nodes hit, steps with times) and, with `verdict:`, the resilience verdict.
//!
//! ```yaml
//!     chaos:
//!       operator: chain.chaos
//!       network: deploy
//!       faults:
//!         - {pause: {duration: 10s}, target: validator-2}
//!         - {kill: {signal: SIGKILL, restart_after: 20s}, target: f, offset: 5s}
//! ```

use std::sync::Arc;

use engine::operators::{validate_typed, ArgIssue, OperatorArgs, OperatorDef};
use serde::Deserialize;
use worker::operator::{Operator, OperatorContext, OperatorFuture, OperatorResult};

use crate::backend::NodeBackend;
pub use crate::chaos::spec::FaultArgs;
use crate::chaos::verdict::{VerdictSpec, Watch};
use crate::chaos::{episode, Selector};
use crate::registry::ApiNetworks;

/// Canonical name of the chaos operator.
pub const CHAOS: &str = "chain.chaos";

/// The arguments of `chain.chaos`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChaosArgs {
    /// A network name, or the task id of a `chain.deploy_network` task of this run.
    pub network: String,
    pub faults: Vec<FaultArgs>,
    /// Seed of random, percentage and `f` choices (default: the clock).
    #[serde(default)]
    pub seed: Option<u64>,
    /// Judge the network's resilience around the faults ([`crate::chaos::verdict`]).
    #[serde(default)]
    pub verdict: Option<VerdictSpec>,
}

impl OperatorArgs for ChaosArgs {
    fn check(&self) -> Result<(), ArgIssue> {
        if self.network.trim().is_empty() {
            return Err(ArgIssue::new(
                "network",
                "`network` must be a network name or a deploy task id",
            ));
        }
        if self.faults.is_empty() {
            return Err(ArgIssue::new("faults", "give at least one fault"));
        }
        if let Some(verdict) = &self.verdict {
            verdict.check().map_err(|e| ArgIssue::new("verdict", e))?;
        }
        for (i, fault) in self.faults.iter().enumerate() {
            if !engine::operators::is_template(&fault.target) {
                Selector::parse(&fault.target).map_err(|e| ArgIssue::new(&format!("faults.{i}.target"), e))?;
            }
            fault.fault().map_err(|e| ArgIssue::new(&format!("faults.{i}"), e))?;
            fault.timing().map_err(|e| ArgIssue::new(&format!("faults.{i}"), e))?;
        }
        Ok(())
    }
}

/// `chain.chaos`.
pub(super) struct Chaos<B> {
    pub(super) backend: Arc<B>,
}

impl<B: NodeBackend + 'static> Operator for Chaos<B> {
    fn definition(&self) -> OperatorDef {
        OperatorDef {
            name: CHAOS,
            aliases: &[],
            validate: |args| validate_typed::<ChaosArgs>(CHAOS, args),
            completes_in_scheduler: false,
            is_teardown: false,
        }
    }

    fn run(&self, ctx: OperatorContext) -> OperatorFuture {
        let backend = self.backend.clone();
        Box::pin(async move {
            match run(ctx, backend).await {
                Ok(value) => OperatorResult::Success(Some(value)),
                Err(reason) => OperatorResult::Failed(reason),
            }
        })
    }
}

async fn run<B: NodeBackend>(ctx: OperatorContext, backend: Arc<B>) -> Result<serde_json::Value, String> {
    let args = ctx.args_as::<ChaosArgs>()?;
    let networks = ApiNetworks(ctx.api.clone());
    let (name, record) = super::running_record(&ctx, &networks, &args.network, "no node to fault").await?;
    let seed = args
        .seed
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    // Every target is chosen before any fault is applied: a bad one applies nothing.
    let planned = episode::plan(&record, &args.faults, seed)?;
    let log = ctx.log.clone();
    let progress = move |line: &str| log.line("info", "chaos", line);
    let mut watch = match &args.verdict {
        Some(spec) => {
            let nodes: Vec<(String, String)> = record.rpc_endpoints();
            progress(&format!(
                "watching the network for {:?} before the faults",
                spec.baseline()
            ));
            Some(Watch::baseline(spec, &nodes, &ctx.cancel).await)
        }
        None => None,
    };
    let faults = episode::run(
        &networks,
        backend.as_ref(),
        &networks,
        &name,
        &planned,
        &ctx.cancel,
        &progress,
    );
    let reports = match watch.as_mut() {
        Some(watch) => watch.during(faults).await,
        None => faults.await,
    }?;
    if ctx.cancel.is_cancelled() {
        return Err("the try was stopped; every fault was undone".into());
    }
    let verdict = match watch {
        Some(watch) => {
            let verdict = watch
                .judge(&episode::targeted(&planned), episode::in_place(&reports), &ctx.cancel)
                .await;
            for c in &verdict.criteria {
                let level = if c.passed { "info" } else { "warning" };
                ctx.log.line(
                    level,
                    "verdict",
                    &format!("{} {}: {}", if c.passed { "PASS" } else { "FAIL" }, c.name, c.detail),
                );
            }
            Some(verdict)
        }
        None => None,
    };
    let value = serde_json::json!({"network": name, "seed": seed, "faults": reports, "verdict": verdict});
    if let Some(v) = verdict.as_ref().filter(|v| !v.passed) {
        if args.verdict.as_ref().and_then(|s| s.fail_task).unwrap_or(true) {
            let failed: Vec<String> = v
                .criteria
                .iter()
                .filter(|c| !c.passed)
                .map(|c| format!("{}: {}", c.name, c.detail))
                .collect();
            return Err(format!("the resilience verdict failed: {}", failed.join("; ")));
        }
    }
    Ok(value)
}
