//! `chain.load_test`: drives load at a network's nodes (or one node's URL) from its own runner process, on a
//! thread of its own ([`crate::load`]), logs progress every 10 s and the summary table at the end, and pushes
//! the summary as its XCom. The per-call records go to `<load dir>/<dag>/<run>/<task>-try<N>.calls`.

use std::path::PathBuf;

use engine::operators::{validate_typed, OperatorDef};
use worker::operator::{Operator, OperatorContext, OperatorFuture, OperatorResult};

use super::resolve_network;
use crate::lifecycle;
use crate::load::{self, LoadArgs, Setup};
use crate::registry::{ApiNetworks, NetworkStore};

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

/// A file name part from any text: what is not a letter, digit, `.`, `_` or `-` becomes `_`.
fn file_part(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

async fn run(ctx: OperatorContext, records_dir: PathBuf) -> Result<serde_json::Value, String> {
    let args = ctx.args_as::<LoadArgs>()?;
    let plan = args
        .plan()
        .map_err(|issue| format!("{}: {}", issue.key, issue.message))?;
    let nodes = match (&args.url, &args.network) {
        (Some(url), _) => vec![(url.clone(), url.clone())],
        (None, Some(reference)) => {
            let networks = ApiNetworks(ctx.api.clone());
            let name = resolve_network(&ctx, &networks, reference)
                .await
                .map_err(|e| e.to_string())?;
            let row = networks.get_network(&name).await.map_err(|e| e.to_string())?;
            if row.status != "running" {
                return Err(format!(
                    "network `{name}` is {}; load needs a running network",
                    row.status
                ));
            }
            let record = lifecycle::record_of(&row)
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("network `{name}` has no nodes"))?;
            record.nodes.iter().map(|n| (n.name.clone(), n.rpc.clone())).collect()
        }
        (None, None) => return Err("give `network` or `url`".into()),
    };
    let funder = args
        .funder_key
        .as_deref()
        .map(load::spec::parse_key)
        .transpose()
        .map_err(|e| format!("funder_key: {e}"))?;
    let raw_lines = match &args.raw_file {
        Some(path) => load::read_raw_file(path)?,
        None => Vec::new(),
    };
    let records = records_dir
        .join(file_part(&ctx.dag_id))
        .join(file_part(&ctx.run_id))
        .join(format!("{}-try{}.calls", file_part(&ctx.task_id), ctx.try_number));
    let setup = Setup {
        nodes,
        targets: args.targets.clone().unwrap_or_default(),
        funder,
        raw_lines,
        records: Some(records),
    };
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
