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
use crate::chaos::network::{NetemSpec, PartitionSpec};
use crate::chaos::verdict::{VerdictSpec, Watch};
use crate::chaos::{process, Fault, ProcessFault, Selector};
use crate::duration::SpecDuration;
use crate::registry::{ApiNetworks, NetworkStore};

/// Canonical name of the chaos operator.
pub const CHAOS: &str = "chain.chaos";

/// `kill`'s settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KillArgs {
    /// SIGKILL (default) or SIGTERM.
    #[serde(default)]
    pub signal: Option<String>,
    /// Start the nodes again after this long.
    #[serde(default)]
    pub restart_after: Option<SpecDuration>,
}

/// A fault that lasts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lasting {
    pub duration: SpecDuration,
}

/// One fault: exactly one of `kill`, `pause`, `stop`, `restart`, `netem`, `partition`, with its target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultArgs {
    /// Which nodes: names, `re2:<regex>`, `random:N`, `P%` or `f`.
    pub target: String,
    /// Wait this long after the task starts.
    #[serde(default)]
    pub offset: Option<SpecDuration>,
    #[serde(default)]
    pub kill: Option<KillArgs>,
    #[serde(default)]
    pub pause: Option<Lasting>,
    #[serde(default)]
    pub stop: Option<Lasting>,
    /// `restart: {}`.
    #[serde(default)]
    pub restart: Option<serde_json::Map<String, serde_json::Value>>,
    /// pumba's netem: `{duration, interface?, direction?, delay|rate: {...}}`.
    #[serde(default)]
    pub netem: Option<NetemSpec>,
    /// `{duration, from?, direction?, mode?}`: the target cut off from `from` (every other node by default).
    #[serde(default)]
    pub partition: Option<PartitionSpec>,
}

impl FaultArgs {
    fn fault(&self) -> Result<Fault, String> {
        let given = [
            self.kill.is_some(),
            self.pause.is_some(),
            self.stop.is_some(),
            self.restart.is_some(),
            self.netem.is_some(),
            self.partition.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err("give exactly one of kill, pause, stop, restart, netem and partition".into());
        }
        if let Some(netem) = &self.netem {
            return netem.fault().map(Fault::Network).map_err(|e| format!("netem: {e}"));
        }
        if let Some(partition) = &self.partition {
            return partition
                .fault()
                .map(Fault::Network)
                .map_err(|e| format!("partition: {e}"));
        }
        self.process_fault().map(Fault::Process)
    }

    fn process_fault(&self) -> Result<ProcessFault, String> {
        let positive = |d: &SpecDuration, key: &str| {
            if d.0.is_zero() {
                Err(format!("`{key}` must be more than zero"))
            } else {
                Ok(d.0)
            }
        };
        Ok(if let Some(kill) = &self.kill {
            ProcessFault::Kill {
                signal: process::kill_signal(kill.signal.as_deref().unwrap_or("SIGKILL"))?,
                restart_after: kill
                    .restart_after
                    .as_ref()
                    .map(|d| positive(d, "restart_after"))
                    .transpose()?,
            }
        } else if let Some(pause) = &self.pause {
            ProcessFault::Pause {
                duration: positive(&pause.duration, "duration")?,
            }
        } else if let Some(stop) = &self.stop {
            ProcessFault::Stop {
                duration: positive(&stop.duration, "duration")?,
            }
        } else {
            if self.restart.as_ref().is_some_and(|r| !r.is_empty()) {
                return Err("`restart` takes no settings: write `restart: {}`".into());
            }
            ProcessFault::Restart
        })
    }
}

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
    let name = super::resolve_network(&ctx, &networks, &args.network)
        .await
        .map_err(|e| e.to_string())?;
    let row = networks.get_network(&name).await.map_err(|e| e.to_string())?;
    let record = match crate::lifecycle::record_of(&row).map_err(|e| e.to_string())? {
        Some(record) if row.status == "running" => record,
        _ => return Err(format!("network `{name}` is {}: no node to fault", row.status)),
    };
    let seed = args
        .seed
        .unwrap_or_else(|| chrono::Utc::now().timestamp_micros() as u64);
    // Every target is chosen before any fault is applied: a bad one applies nothing.
    let mut planned = Vec::new();
    for (i, fault) in args.faults.iter().enumerate() {
        let selector = Selector::parse(&fault.target).map_err(|e| format!("faults.{i}.target: {e}"))?;
        let kind = fault.fault().map_err(|e| format!("faults.{i}: {e}"))?;
        let plan = crate::chaos::plan(&record, &selector, kind, seed.wrapping_add(i as u64)).map_err(|e| {
            let key = if e.target { "target" } else { "fault" };
            format!("faults.{i}.{key}: {}", e.message)
        })?;
        planned.push((fault.offset.map(|d| d.0).unwrap_or_default(), plan));
    }
    let log = ctx.log.clone();
    let progress = move |line: &str| log.line("info", "chaos", line);
    let watch = match &args.verdict {
        Some(spec) => {
            let nodes: Vec<(String, String)> = record.nodes.iter().map(|n| (n.name.clone(), n.rpc.clone())).collect();
            progress(&format!(
                "watching the network for {:?} before the faults",
                spec.baseline()
            ));
            Some(Watch::baseline(spec, &nodes, &ctx.cancel).await)
        }
        None => None,
    };
    let runs = planned.iter().map(|(offset, plan)| {
        let (networks, backend, name, cancel, progress) = (&networks, &backend, &name, &ctx.cancel, &progress);
        async move {
            tokio::select! {
                _ = cancel.cancelled() => return Err("cancelled before it began".to_string()),
                _ = tokio::time::sleep(*offset) => {}
            }
            progress(&format!("{} on {}", plan.fault.name(), plan.nodes.join(", ")));
            crate::chaos::apply(networks, backend.as_ref(), networks, name, plan, cancel, progress)
                .await
                .map_err(|e| e.to_string())
        }
    });
    let results = futures_util::future::join_all(runs).await;
    let mut reports = Vec::new();
    let mut errors = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match result {
            Ok(report) => reports.push(report),
            Err(err) => errors.push(format!("fault {i}: {err}")),
        }
    }
    if !errors.is_empty() {
        return Err(errors.join("; "));
    }
    if ctx.cancel.is_cancelled() {
        return Err("the try was stopped; every fault was undone".into());
    }
    let verdict = match watch {
        Some(watch) => {
            let mut targeted: Vec<String> = planned.iter().flat_map(|(_, p)| p.nodes.clone()).collect();
            targeted.sort();
            targeted.dedup();
            let verdict = watch.judge(&targeted, &ctx.cancel).await;
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
