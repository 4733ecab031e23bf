//! `rpc_flood`: the load generator at the targets, at a given rate or their breaking point (searched first).

use std::collections::BTreeMap;

use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{load, load_figures, FloodRate, FloodSpec};
use crate::chaos::verdict::Criterion;

pub(super) async fn run(
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
