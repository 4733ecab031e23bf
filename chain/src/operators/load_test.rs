//! `chain.load_test`: drives load at a network's nodes (or one node's URL) from its own runner process, on a
//! thread of its own ([`crate::load`]), logs progress every 10 s and the summary table at the end, and pushes
//! the summary as its XCom. The per-call records go to `<load dir>/<dag>/<run>/<task>-try<N>.calls`.

use std::path::PathBuf;

use engine::operators::{validate_typed, OperatorDef};
use worker::operator::{Operator, OperatorContext, OperatorFuture, OperatorResult};

use super::target_nodes;
use crate::load::{self, LoadArgs, Setup};

/// Canonical name of the load test operator.
pub const LOAD_TEST: &str = "chain.load_test";

/// `chain.load_test`.
pub(super) struct LoadTest {
    /// Where per-call records files go.
    pub records_dir: PathBuf,
}

impl Operator for LoadTest {
    fn definition(&self) -> OperatorDef {
        OperatorDef {
            name: LOAD_TEST,
            aliases: &[],
            validate: |args| validate_typed::<LoadArgs>(LOAD_TEST, args),
            completes_in_scheduler: false,
            is_teardown: false,
        }
    }

    fn run(&self, ctx: OperatorContext) -> OperatorFuture {
        let records_dir = self.records_dir.clone();
        Box::pin(async move {
            match run(ctx, records_dir).await {
                Ok(summary) => OperatorResult::Success(Some(summary)),
                Err(reason) => OperatorResult::Failed(reason),
            }
        })
    }
}

async fn run(ctx: OperatorContext, records_dir: PathBuf) -> Result<serde_json::Value, String> {
    let args = ctx.args_as::<LoadArgs>()?;
    let plan = args
        .plan()
        .map_err(|issue| format!("{}: {}", issue.key, issue.message))?;
    let (nodes, ws) = target_nodes(&ctx, args.url.as_deref(), args.network.as_deref()).await?;
    let records = super::results_path(&records_dir, &ctx, "calls");
    let setup = Setup::of(&args, nodes, ws, Some(records))?;
    let log = ctx.log.clone();
    log.line(
        "info",
        "load",
        &format!(
            "load on {} node(s): {}",
            setup.nodes.len(),
            setup
                .nodes
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    let (progress_log, note_log) = (log.clone(), log.clone());
    let cancel = ctx.cancel.clone();
    let mut ticks = 0u64;
    let summary = tokio::task::spawn_blocking(move || {
        load::run_blocking(
            plan,
            setup,
            cancel,
            move |p| {
                ticks += 1;
                if ticks.is_multiple_of(10) {
                    progress_log.line("info", "load", &load::progress_line(p));
                }
            },
            move |text| note_log.line("info", "load", text),
        )
    })
    .await
    .map_err(|e| format!("the generator's thread failed: {e}"))??;
    for line in summary.table().lines() {
        log.line("info", "load", line);
    }
    log.line("info", "load", &format!("ended: {}", summary.ended));
    serde_json::to_value(&summary).map_err(|e| e.to_string())
}
