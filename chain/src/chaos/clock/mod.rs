//! Clock skew of one node: the node is started again under the clock supervisor ([`shim`]), whose wall clock
//! reads `offset` away from the host's, and started again without it at the fault's end.

mod filter;
pub mod shim;

/// A signed offset (`+30s`, `-2m`, `2h`) in whole seconds; not zero.
pub fn parse_offset(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let d = engine::duration::parse_duration_str(rest)
        .map_err(|e| format!("`offset`: {e} (a signed duration: +30s, -2m)"))?;
    if d.is_zero() {
        return Err("`offset` must not be zero".into());
    }
    Ok(sign * d.as_secs() as i64)
}

use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::ledger::{Book, FaultLedger, Undo};
use super::process::{hold, FaultReport, Step};
use crate::backend::{NodeBackend, Progress};
use crate::error::Result;
use crate::lifecycle;
use crate::registry::NetworkStore;

/// The fault's name in reports: `clock +30s for 2m`.
pub fn name(offset_seconds: i64, duration: Duration) -> String {
    format!("clock {offset_seconds:+}s for {duration:?}")
}

/// Why clock skew cannot be applied on this machine, if it cannot: the supervisor is x86_64 Linux only.
pub fn refusal() -> Option<String> {
    if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        None
    } else {
        Some("clock skew needs the clock supervisor, which runs on x86_64 Linux only".into())
    }
}

/// Starts `nodes` of network `name` again under a wall clock `offset_seconds` off, holds for `duration` (or
/// until `cancel`), then starts each again on the host's clock. Each node is recorded in `book` before it is
/// touched; whatever happens, every node is put back.
#[allow(clippy::too_many_arguments)]
pub async fn apply<S: NetworkStore, B: NodeBackend, L: FaultLedger>(
    store: &S,
    backend: &B,
    book: &Book<'_, L>,
    name: &str,
    nodes: &[String],
    offset_seconds: i64,
    duration: Duration,
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> Result<FaultReport> {
    let started = Instant::now();
    let mut report = FaultReport {
        fault: self::name(offset_seconds, duration),
        nodes: nodes.to_vec(),
        ..Default::default()
    };
    let step = |report: &mut FaultReport, node: &str, action: String| {
        progress(&format!("{node}: {action}"));
        report.steps.push(Step {
            node: node.to_string(),
            at: Utc::now(),
            action,
        });
    };
    for (i, node) in nodes.iter().enumerate() {
        if let Err(err) = book.applying(node, "clock", &Undo::Unskew { node: node.clone() }).await {
            for done in &nodes[..i] {
                let _ = book.undone(done, None).await;
            }
            return Err(err);
        }
    }
    let applied: Result<()> = async {
        for node in nodes {
            lifecycle::set_clock_offset(store, name, node, Some(offset_seconds)).await?;
            lifecycle::restart_node(store, backend, name, node, progress).await?;
            step(
                &mut report,
                node,
                format!("started again, its clock {offset_seconds:+} s off"),
            );
        }
        report.in_place = Some(Utc::now());
        report.cancelled = hold(duration, cancel).await;
        Ok(())
    }
    .await;
    let mut undo_errors = Vec::new();
    for node in nodes {
        let undone = unskew(store, backend, name, node, progress).await;
        let error = undone.as_ref().err().map(|e| e.to_string());
        match &undone {
            Ok(true) => step(&mut report, node, "started again on the host's clock".into()),
            Ok(false) => {}
            Err(err) => {
                step(
                    &mut report,
                    node,
                    format!("could not be put back on the host's clock: {err}"),
                );
                undo_errors.push(format!("{node}: {err}"));
            }
        }
        // A ledger out of reach leaves the part open; recovery finds it undone.
        let _ = book.undone(node, error.as_deref()).await;
    }
    report.seconds = started.elapsed().as_secs_f64();
    report.outcome(
        applied.err().map(|e| e.to_string()),
        &undo_errors,
        "not every node could be put back on the host's clock",
    )
}

/// Starts `node` again on the host's clock if it runs skewed; whether it did. Also what recovery does for a
/// clock fault whose owner died.
pub async fn unskew<S: NetworkStore, B: NodeBackend>(
    store: &S,
    backend: &B,
    name: &str,
    node: &str,
    progress: Progress<'_>,
) -> Result<bool> {
    if !lifecycle::set_clock_offset(store, name, node, None).await? {
        return Ok(false);
    }
    lifecycle::restart_node(store, backend, name, node, progress).await?;
    Ok(true)
}
