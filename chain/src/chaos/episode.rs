//! Several faults as one episode: every target chosen before anything is applied (a bad one applies
//! nothing), then all applied side by side, each after its offset (and again every `interval`, `repeat` times,
//! its targets chosen anew each time), and every one undone at its end or at once when the episode is
//! cancelled. `chain.chaos` and each scenario of a certify profile run their faults so.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::spec::FaultArgs;
use super::{FaultLedger, FaultReport, Planned, Selector};
use crate::backend::any::AnyRecord;
use crate::backend::NodeBackend;
use crate::registry::NetworkStore;

/// The faults of an episode, planned: each application with when it starts (from the episode's start).
pub type Episode = Vec<(Duration, Planned)>;

/// Plans `faults` on `record`; an error names the fault (`faults.N.target` or `faults.N.fault`) and what is
/// wrong, and nothing is applied.
pub fn plan(record: &AnyRecord, faults: &[FaultArgs], seed: u64) -> Result<Episode, String> {
    let mut planned = Vec::new();
    for (i, fault) in faults.iter().enumerate() {
        let selector = Selector::parse(&fault.target).map_err(|e| format!("faults.{i}.target: {e}"))?;
        let kind = fault.fault().map_err(|e| format!("faults.{i}: {e}"))?;
        let (times, every) = fault.timing().map_err(|e| format!("faults.{i}: {e}"))?;
        let offset = fault.offset.map(|d| d.0).unwrap_or_default();
        for k in 0..times {
            let seed = seed.wrapping_add(i as u64).wrapping_add(7919 * u64::from(k));
            let plan = super::plan_any(record, &selector, kind.clone(), seed).map_err(|e| {
                let key = if e.target { "target" } else { "fault" };
                format!("faults.{i}.{key}: {}", e.message)
            })?;
            planned.push((offset + every * k, plan));
        }
    }
    Ok(planned)
}

/// Every node the episode's faults hit, sorted.
pub fn targeted(episode: &Episode) -> Vec<String> {
    let mut nodes: Vec<String> = episode.iter().flat_map(|(_, p)| p.nodes.clone()).collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

/// When the last of `reports` was in place (None when none ever was).
pub fn in_place(reports: &[FaultReport]) -> Option<chrono::DateTime<chrono::Utc>> {
    reports.iter().filter_map(|r| r.in_place).max()
}

/// Applies the episode's faults to network `name` side by side; the reports in order, or every fault's error.
pub async fn run<S, B, L>(
    store: &S,
    backend: &B,
    ledger: &L,
    name: &str,
    episode: &Episode,
    cancel: &CancellationToken,
    progress: crate::backend::Progress<'_>,
) -> Result<Vec<FaultReport>, String>
where
    S: NetworkStore,
    B: NodeBackend,
    L: FaultLedger,
{
    let runs = episode.iter().map(|(offset, plan)| async move {
        tokio::select! {
            _ = cancel.cancelled() => return Err("cancelled before it began".to_string()),
            _ = tokio::time::sleep(*offset) => {}
        }
        progress(&format!("{} on {}", plan.fault.name(), plan.nodes.join(", ")));
        super::apply(store, backend, ledger, name, plan, cancel, progress)
            .await
            .map_err(|e| e.to_string())
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
    if errors.is_empty() {
        Ok(reports)
    } else {
        Err(errors.join("; "))
    }
}
