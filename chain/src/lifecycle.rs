//! A network's life in the store: claimed, started, ready (`running`), torn down (`removed`) or
//! `failed`; torn down after a TTL once its owning DAG run ended; found again after a restart.
//!
//! The store keeps the spec and the [`NetworkRecord`] as JSON text; this module is the only
//! reader and writer of that JSON. It reaches the records through a [`NetworkStore`]: the engine's
//! store in the engine and the CLI, the task execution API ([`crate::registry::ApiNetworks`]) in a
//! task runner.

use std::time::Duration;

use chrono::{DateTime, Utc};
use engine::store::{NetworkRow, NewNetwork};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::local::{LocalBackend, NetworkRecord, Progress, ReadyReport};
use crate::registry::NetworkStore;
use crate::spec::NetworkSpec;

/// Default time a network is kept after its owning run ended.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Default time a network gets to become ready.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a teardown waits for a deploy of the same network that is still starting.
const STARTING_WAIT: Duration = Duration::from_secs(60);
/// Backend name recorded for local networks.
pub const LOCAL_BACKEND: &str = "local";

/// The DAG task that deployed a network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
}

/// A request to deploy a network.
#[derive(Debug, Clone)]
pub struct DeployRequest {
    pub spec: NetworkSpec,
    pub ready_timeout: Duration,
    /// Kept this long after the owning run ended; `None`: until torn down.
    pub ttl: Option<Duration>,
    pub owner: Option<Owner>,
}

/// A deployed, ready network.
#[derive(Debug, Clone)]
pub struct Deployed {
    pub record: NetworkRecord,
    pub ready: ReadyReport,
}

/// Claims the name, starts the nodes, records their processes, waits until ready. On failure
/// everything is stopped and removed and the network is marked `failed` with the reason.
pub async fn deploy<S: NetworkStore>(
    store: &S,
    backend: &LocalBackend,
    request: &DeployRequest,
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> Result<Deployed> {
    let spec = &request.spec;
    spec.validate()?;
    let spec_json = serde_json::to_string(spec).map_err(|e| Error::Serialize {
        what: "network spec",
        reason: e.to_string(),
    })?;
    let ttl_seconds = request.ttl.map(|ttl| i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
    store
        .claim_network(
            &NewNetwork {
                name: &spec.name,
                backend: LOCAL_BACKEND,
                host: &backend.options().host_id,
                spec: &spec_json,
                dag_id: request.owner.as_ref().map(|o| o.dag_id.as_str()),
                run_id: request.owner.as_ref().map(|o| o.run_id.as_str()),
                task_id: request.owner.as_ref().map(|o| o.task_id.as_str()),
                ttl_seconds,
            },
            Utc::now(),
        )
        .await?;
    let result = start_and_wait(store, backend, request, cancel, progress).await;
    match result {
        Ok(deployed) => {
            store
                .transition_network(&spec.name, &["starting"], "running", None, Utc::now())
                .await?;
            Ok(deployed)
        }
        Err(err) => {
            let message = err.to_string();
            let first_line = message.lines().next().unwrap_or_default();
            store
                .transition_network(&spec.name, &["starting"], "failed", Some(first_line), Utc::now())
                .await?;
            Err(err)
        }
    }
}

async fn start_and_wait<S: NetworkStore>(
    store: &S,
    backend: &LocalBackend,
    request: &DeployRequest,
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> Result<Deployed> {
    let record = backend.start(&request.spec, cancel, progress).await?;
    // Record the processes before waiting, so a crash while waiting leaves them findable.
    if let Err(err) = save_record(store, &record).await {
        stop_after_failure(backend, &record, progress).await;
        return Err(err);
    }
    match backend
        .wait_ready(&record, request.ready_timeout, cancel, progress)
        .await
    {
        Ok(ready) => {
            progress(&format!(
                "network `{}` ready in {:.1}s: heads {}",
                record.name,
                ready.elapsed.as_secs_f64(),
                ready
                    .heads
                    .iter()
                    .map(|(n, h)| format!("{n}=#{h}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            Ok(Deployed { record, ready })
        }
        Err(err) => {
            progress(&format!("network `{}` not ready; stopping it", record.name));
            stop_after_failure(backend, &record, progress).await;
            Err(err)
        }
    }
}

/// Stops a network that failed to deploy; the deploy's own error is what the caller reports.
async fn stop_after_failure(backend: &LocalBackend, record: &NetworkRecord, progress: Progress<'_>) {
    if let Err(err) = backend.teardown(record).await {
        progress(&format!("cleaning up network `{}` failed: {err}", record.name));
    }
}

async fn save_record<S: NetworkStore>(store: &S, record: &NetworkRecord) -> Result<()> {
    let json = serde_json::to_string(record).map_err(|e| Error::Serialize {
        what: "network record",
        reason: e.to_string(),
    })?;
    store.set_network_nodes(&record.name, &json, Utc::now()).await?;
    Ok(())
}

/// The local record of a stored network, if its processes were ever started.
pub fn record_of(row: &NetworkRow) -> Result<Option<NetworkRecord>> {
    if row.nodes.trim() == "[]" {
        return Ok(None);
    }
    serde_json::from_str(&row.nodes).map(Some).map_err(|e| Error::Network {
        name: row.name.clone(),
        reason: format!("stored node data is unreadable: {e}"),
    })
}

/// Stops a network by name and marks it `removed`. A network already gone is not an error.
pub async fn teardown<S: NetworkStore>(
    store: &S,
    backend: &LocalBackend,
    name: &str,
    progress: Progress<'_>,
) -> Result<()> {
    let mut row = store.get_network(name).await?;
    // A deploy still starting (e.g. cancelled by its task's timeout) cleans up after itself:
    // wait for it to end rather than race it, bounded.
    let deadline = std::time::Instant::now() + STARTING_WAIT;
    while row.status == "starting" && std::time::Instant::now() < deadline {
        progress(&format!(
            "network `{name}` is still starting; waiting for its deploy to end"
        ));
        tokio::time::sleep(Duration::from_millis(500)).await;
        row = store.get_network(name).await?;
    }
    if matches!(row.status.as_str(), "removed" | "failed") {
        progress(&format!("network `{name}` is already {}", row.status));
        return Ok(());
    }
    if row.host != backend.options().host_id {
        return Err(Error::Network {
            name: name.to_string(),
            reason: format!("its processes run on host `{}`; tear it down there", row.host),
        });
    }
    store
        .transition_network(name, &["starting", "running", "stopping"], "stopping", None, Utc::now())
        .await?;
    stop_row(store, backend, &row, "torn down", progress).await
}

async fn stop_row<S: NetworkStore>(
    store: &S,
    backend: &LocalBackend,
    row: &NetworkRow,
    why: &str,
    progress: Progress<'_>,
) -> Result<()> {
    match record_of(row)? {
        Some(record) => {
            let report = backend.teardown(&record).await?;
            progress(&format!(
                "network `{}`: stopped {} processes, removed {}: {why}",
                row.name,
                report.stopped,
                record.base_dir.display()
            ));
        }
        None => {
            // Interrupted before any node started: at most its directory exists.
            let dir = backend.options().networks_dir.join(&row.name);
            if dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("cannot remove {}", dir.display()), e))?;
            }
        }
    }
    store
        .transition_network(&row.name, &["stopping"], "removed", Some(why), Utc::now())
        .await?;
    Ok(())
}

/// Tears down every network on this host whose owning run ended more than its TTL ago. Meant to
/// be called periodically (the scheduler loop, `dagctl net reap`). Returns the names torn down.
pub async fn reap<S: NetworkStore>(
    store: &S,
    backend: &LocalBackend,
    now: DateTime<Utc>,
    progress: Progress<'_>,
) -> Result<Vec<String>> {
    let mut reaped = Vec::new();
    for row in store.networks_past_ttl(now).await? {
        if row.host != backend.options().host_id {
            continue;
        }
        // Compare-and-set: a concurrent teardown or reaper wins, we skip.
        if !store
            .transition_network(&row.name, &["running"], "stopping", None, Utc::now())
            .await?
        {
            continue;
        }
        let ttl = row.ttl_seconds.unwrap_or_default();
        stop_row(
            store,
            backend,
            &row,
            &format!("TTL of {ttl}s after its run ended"),
            progress,
        )
        .await?;
        reaped.push(row.name);
    }
    Ok(reaped)
}

/// What [`recover`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Networks whose processes all live: re-attached, nothing to do.
    pub attached: Vec<String>,
    /// Networks that lost a node (or whose deploy was interrupted): stopped and removed.
    pub cleaned: Vec<String>,
}

/// After a restart: for every active network on this host, re-attach when all its node
/// processes live; otherwise stop what is left, remove its directory and mark it.
pub async fn recover<S: NetworkStore>(store: &S, backend: &LocalBackend, progress: Progress<'_>) -> Result<Recovery> {
    let mut recovery = Recovery::default();
    for row in store.list_networks(false).await? {
        if row.host != backend.options().host_id || row.backend != LOCAL_BACKEND {
            continue;
        }
        let record = record_of(&row)?;
        let deployer_alive = record
            .as_ref()
            .is_some_and(|r| r.deployer_pid != std::process::id() && pid_alive(r.deployer_pid));
        let verdict = match (&record, row.status.as_str()) {
            // A deploy in progress in another live process: not ours to judge.
            (_, "starting") if deployer_alive => continue,
            (None, _) => Some("deploy was interrupted before any node started".to_string()),
            (Some(_), "starting") => Some("deploy was interrupted".to_string()),
            (Some(_), "stopping") => Some("teardown was interrupted".to_string()),
            (Some(record), _) => {
                let dead = record.dead_nodes();
                (!dead.is_empty()).then(|| format!("node(s) {} were gone", dead.join(", ")))
            }
        };
        match verdict {
            None => {
                progress(&format!("network `{}`: all nodes alive, re-attached", row.name));
                recovery.attached.push(row.name);
            }
            Some(why) => {
                if !store
                    .transition_network(&row.name, &[row.status.as_str()], "stopping", None, Utc::now())
                    .await?
                {
                    continue;
                }
                stop_row(
                    store,
                    backend,
                    &row,
                    &format!("recovered after restart: {why}"),
                    progress,
                )
                .await?;
                recovery.cleaned.push(row.name);
            }
        }
    }
    Ok(recovery)
}

fn pid_alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|raw| nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None).is_ok())
}
