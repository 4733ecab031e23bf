//! Faults on node processes, through the [`NodeBackend`]: `kill` (a signal, SIGKILL by default; with
//! `restart_after`, the node is started again with its own command line after that long), `pause` (SIGSTOP,
//! then SIGCONT after `duration`), `stop` (SIGTERM, then started again after `duration`) and `restart`. Every
//! targeted node gets the fault at once; what was done is reported with times. A pause or stop is undone at its
//! end, and at once when `cancel` fires (a task stopped or timed out), so no node is left stopped by a fault
//! that ended.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::ledger::{Book, FaultLedger, Undo};
use crate::backend::{NodeBackend, NodeSignal, Progress};
use crate::lifecycle;
use crate::registry::NetworkStore;

/// A fault on node processes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessFault {
    Kill {
        signal: NodeSignal,
        restart_after: Option<Duration>,
    },
    Pause {
        duration: Duration,
    },
    Stop {
        duration: Duration,
    },
    Restart,
}

/// One thing done to one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    pub node: String,
    pub at: DateTime<Utc>,
    pub action: String,
}

/// What a fault did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultReport {
    pub fault: String,
    pub nodes: Vec<String>,
    pub steps: Vec<Step>,
    /// Seconds from the first step to the fault's end (its undoing included).
    pub seconds: f64,
    /// Whether it was cut short by a cancel (and undone then).
    pub cancelled: bool,
    /// When the fault was fully in place (every target hit, every link rerouted), if it ever was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_place: Option<DateTime<Utc>>,
}

impl FaultReport {
    /// The fault's outcome once everything it applied was undone (or tried): the report, or an error naming
    /// the `failure` that stopped it being applied and what was applied and rolled back, or the parts that
    /// could not be undone (`not_undone` says what that means for this kind of fault).
    pub fn outcome(
        self,
        failure: Option<String>,
        undo_errors: &[String],
        not_undone: &str,
    ) -> crate::error::Result<FaultReport> {
        if let Some(failure) = failure {
            let done: Vec<&str> = self.steps.iter().map(|s| s.action.as_str()).collect();
            return Err(crate::error::Error::Rejected(format!(
                "{failure}; rolled back what was applied ({}){}",
                done.join("; "),
                if undo_errors.is_empty() {
                    String::new()
                } else {
                    format!("; left open for recovery: {}", undo_errors.join("; "))
                }
            )));
        }
        if !undo_errors.is_empty() {
            return Err(crate::error::Error::Rejected(format!(
                "the fault ran, but {not_undone}: {}",
                undo_errors.join("; ")
            )));
        }
        Ok(self)
    }
}

impl ProcessFault {
    /// The fault's name in reports: `kill SIGKILL`, `pause 10s`, ...
    pub fn name(&self) -> String {
        match self {
            ProcessFault::Kill { signal, restart_after } => match restart_after {
                Some(d) => format!("kill {signal}, restart after {d:?}"),
                None => format!("kill {signal}"),
            },
            ProcessFault::Pause { duration } => format!("pause {duration:?}"),
            ProcessFault::Stop { duration } => format!("stop {duration:?}"),
            ProcessFault::Restart => "restart".into(),
        }
    }
}

/// The signal of a `kill` fault: SIGKILL or SIGTERM (by name, with or without `SIG`, or number).
pub fn kill_signal(text: &str) -> Result<NodeSignal, String> {
    let wanted = text.trim().to_ascii_uppercase();
    match wanted.strip_prefix("SIG").unwrap_or(&wanted) {
        "KILL" | "9" => Ok(NodeSignal::Kill),
        "TERM" | "15" => Ok(NodeSignal::Terminate),
        _ => Err(format!("`{text}` is not SIGKILL or SIGTERM (pause is its own fault)")),
    }
}

/// Waits `duration`, or less when cancelled; whether it was cancelled.
pub(super) async fn hold(duration: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(duration) => false,
    }
}

/// Applies `fault` to `nodes` of network `name` and undoes it at its end (or at `cancel`). Each node's part is
/// recorded in `book` before it is applied and closed once undone.
#[allow(clippy::too_many_arguments)]
pub async fn apply<S: NetworkStore, B: NodeBackend, L: FaultLedger>(
    store: &S,
    backend: &B,
    book: &Book<'_, L>,
    name: &str,
    nodes: &[String],
    fault: &ProcessFault,
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> crate::error::Result<FaultReport> {
    let started = Instant::now();
    let mut report = FaultReport {
        fault: fault.name(),
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
    let signal_all = |signal: NodeSignal| async move {
        let mut errors = Vec::new();
        for node in nodes {
            if let Err(err) = lifecycle::signal_node(store, backend, name, node, signal).await {
                errors.push(format!("{node}: {err}"));
            }
        }
        errors
    };
    let (kind, undo): (&str, fn(&str) -> Undo) = match fault {
        ProcessFault::Kill {
            restart_after: None, ..
        } => ("kill", |_| Undo::Nothing),
        ProcessFault::Kill { .. } => ("kill", |n| Undo::Start { node: n.to_string() }),
        ProcessFault::Pause { .. } => ("pause", |n| Undo::Resume { node: n.to_string() }),
        ProcessFault::Stop { .. } => ("stop", |n| Undo::Start { node: n.to_string() }),
        ProcessFault::Restart => ("restart", |n| Undo::Start { node: n.to_string() }),
    };
    for (i, node) in nodes.iter().enumerate() {
        if let Err(err) = book.applying(node, kind, &undo(node)).await {
            // Nothing was applied: close what was recorded.
            for done in &nodes[..i] {
                let _ = book.undone(done, None).await;
            }
            return Err(err);
        }
    }
    let result: crate::error::Result<()> = async {
        let report = &mut report;
        match fault {
            ProcessFault::Kill { signal, restart_after } => {
                let errors = signal_all(*signal).await;
                for node in nodes {
                    step(report, node, format!("sent {signal}"));
                }
                if !errors.is_empty() {
                    return Err(crate::error::Error::Rejected(errors.join("; ")));
                }
                report.in_place = Some(Utc::now());
                if let Some(after) = restart_after {
                    report.cancelled = hold(*after, cancel).await;
                    for node in nodes {
                        lifecycle::restart_node(store, backend, name, node, progress).await?;
                        step(report, node, "started again".into());
                    }
                }
            }
            ProcessFault::Pause { duration } => {
                let errors = signal_all(NodeSignal::Stop).await;
                for node in nodes {
                    step(report, node, "paused (SIGSTOP)".into());
                }
                // Undo whatever was applied, even when the pause failed half-way.
                if errors.is_empty() {
                    report.in_place = Some(Utc::now());
                    report.cancelled = hold(*duration, cancel).await;
                }
                let undo = signal_all(NodeSignal::Continue).await;
                for node in nodes {
                    step(report, node, "resumed (SIGCONT)".into());
                }
                if !errors.is_empty() || !undo.is_empty() {
                    return Err(crate::error::Error::Rejected(
                        errors.into_iter().chain(undo).collect::<Vec<_>>().join("; "),
                    ));
                }
            }
            ProcessFault::Stop { duration } => {
                let errors = signal_all(NodeSignal::Terminate).await;
                for node in nodes {
                    step(report, node, "stopped (SIGTERM)".into());
                }
                if errors.is_empty() {
                    report.in_place = Some(Utc::now());
                    report.cancelled = hold(*duration, cancel).await;
                }
                for node in nodes {
                    lifecycle::restart_node(store, backend, name, node, progress).await?;
                    step(report, node, "started again".into());
                }
                if !errors.is_empty() {
                    return Err(crate::error::Error::Rejected(errors.join("; ")));
                }
            }
            ProcessFault::Restart => {
                for node in nodes {
                    lifecycle::restart_node(store, backend, name, node, progress).await?;
                    step(report, node, "restarted".into());
                }
                report.in_place = Some(Utc::now());
            }
        }
        Ok(())
    }
    .await;
    let error = result.as_ref().err().map(|e| e.to_string());
    for node in nodes {
        // A ledger out of reach leaves the part open; recovery finds it undone.
        let _ = book.undone(node, error.as_deref()).await;
    }
    result?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}
