//! A network's life in the store: claimed, started, ready (`running`), torn down (`removed`) or
//! `failed`; torn down after a TTL once its owning DAG run ended; found again after a restart.
//!
//! The store keeps the spec and the backend's record ([`NodeBackend::Record`], e.g. the local
//! [`NetworkRecord`]) as JSON text; this module is the only reader and writer of that JSON. It reaches
//! the records through a [`NetworkStore`]: the engine's store in the engine and the CLI, the task
//! execution API ([`crate::registry::ApiNetworks`]) in a task runner. It reaches the nodes through a
//! [`NodeBackend`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use engine::store::{NetworkRow, NewNetwork};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::backend::local::{LocalBackend, NetworkRecord};
use crate::backend::{NodeBackend, Progress, ReadyReport};
use crate::error::{Error, Result};
use crate::registry::NetworkStore;
use crate::spec::NetworkSpec;

/// Default time a network is kept after its owning run ended.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);
/// Default time a network gets to become ready.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a teardown waits for a deploy of the same network that is still starting.
const STARTING_WAIT: Duration = Duration::from_secs(60);
/// Backend name recorded for local networks.
pub const LOCAL_BACKEND: &str = <LocalBackend as NodeBackend>::KIND;

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

/// A deployed, ready network; `R` is the backend's record.
#[derive(Debug, Clone)]
pub struct Deployed<R = NetworkRecord> {
    pub record: R,
    pub ready: ReadyReport,
}

/// Claims the name, starts the nodes, records their processes, waits until ready. On failure
/// everything is stopped and removed and the network is marked `failed` with the reason.
pub async fn deploy<S: NetworkStore, B: NodeBackend>(
    store: &S,
    backend: &B,
    request: &DeployRequest,
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> Result<Deployed<B::Record>> {
    let spec = &request.spec;
    spec.validate()?;
    let spec_json = serde_json::to_string(spec).map_err(|e| Error::Serialize {
        what: "network spec",
        reason: e.to_string(),
    })?;
    let ttl_seconds = request.ttl.map(|ttl| i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
    let kind = backend.kind_of(spec)?;
    store
        .claim_network(
            &NewNetwork {
                name: &spec.name,
                backend: kind,
                host: backend.host_for(kind),
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
            if store
                .transition_network(&spec.name, &["starting"], "running", None, Utc::now())
                .await?
            {
                return Ok(deployed);
            }
            // Someone else ended the network while it was starting (a teardown, a recovery): leave nothing
            // running behind its back.
            progress(&format!(
                "network `{}` was ended while it was starting; stopping its nodes",
                spec.name
            ));
            let _ = backend.stop(&deployed.record).await;
            Err(Error::Network {
                name: spec.name.clone(),
                reason: "it was ended (torn down or recovered) while it was starting".into(),
            })
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

async fn start_and_wait<S: NetworkStore, B: NodeBackend>(
    store: &S,
    backend: &B,
    request: &DeployRequest,
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> Result<Deployed<B::Record>> {
    let name = &request.spec.name;
    let record = backend.start(&request.spec, cancel, progress).await?;
    // Record the processes before waiting, so a crash while waiting leaves them findable.
    if let Err(err) = save_record(store, name, &record).await {
        stop_after_failure(backend, name, &record, progress).await;
        return Err(err);
    }
    match backend
        .wait_ready(&record, request.ready_timeout, cancel, progress)
        .await
    {
        Ok(ready) => {
            progress(&format!(
                "network `{name}` ready in {:.1}s: heads {}",
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
            progress(&format!("network `{name}` not ready; stopping it"));
            stop_after_failure(backend, name, &record, progress).await;
            Err(err)
        }
    }
}

/// Stops a network that failed to deploy; the deploy's own error is what the caller reports.
async fn stop_after_failure<B: NodeBackend>(backend: &B, name: &str, record: &B::Record, progress: Progress<'_>) {
    if let Err(err) = backend.stop(record).await {
        progress(&format!("cleaning up network `{name}` failed: {err}"));
    }
}

async fn save_record<S: NetworkStore, R: Serialize>(store: &S, name: &str, record: &R) -> Result<()> {
    let json = serde_json::to_string(record).map_err(|e| Error::Serialize {
        what: "network record",
        reason: e.to_string(),
    })?;
    store.set_network_nodes(name, &json, Utc::now()).await?;
    Ok(())
}

/// Sets (or clears, `None`) the clock offset node `node` of the running local network `name` is to run with
/// from its next (re)start (see [`crate::chaos::clock`]); whether it changed.
pub async fn set_clock_offset<S: NetworkStore>(store: &S, name: &str, node: &str, offset: Option<i64>) -> Result<bool> {
    let row = store.get_network(name).await?;
    let mut record = record_of(&row)?.ok_or_else(|| Error::Network {
        name: name.to_string(),
        reason: "it has no nodes recorded".into(),
    })?;
    let index = record.node_index(node)?;
    if record.nodes[index].clock_offset == offset {
        return Ok(false);
    }
    record.nodes[index].clock_offset = offset;
    save_record(store, name, &record).await?;
    Ok(true)
}

/// The local record of a stored network, if its processes were ever started. A network on another backend is
/// an error that says so (what asks for a local record reads processes, files or host interfaces).
pub fn record_of(row: &NetworkRow) -> Result<Option<NetworkRecord>> {
    if row.backend != LOCAL_BACKEND {
        return Err(Error::Network {
            name: row.name.clone(),
            reason: format!(
                "it runs on the `{}` backend, where this needs the local backend (processes on this host)",
                row.backend
            ),
        });
    }
    stored_record(row)
}

/// The record of a stored network on any backend (read as its `backend` column says), if its nodes were ever
/// started.
pub fn any_record_of(row: &NetworkRow) -> Result<Option<crate::backend::any::AnyRecord>> {
    use crate::backend::any::AnyRecord;
    use crate::backend::kubernetes::{KubeBackend, KubeRecord};
    if row.backend == <KubeBackend as NodeBackend>::KIND {
        return Ok(stored_record::<KubeRecord>(row)?.map(AnyRecord::Kubernetes));
    }
    Ok(stored_record::<NetworkRecord>(row)?.map(AnyRecord::Local))
}

/// The backend record (`R` = [`NodeBackend::Record`]) of a stored network, if its nodes were ever started.
pub fn stored_record<R: DeserializeOwned>(row: &NetworkRow) -> Result<Option<R>> {
    if row.nodes.trim() == "[]" {
        return Ok(None);
    }
    serde_json::from_str(&row.nodes).map(Some).map_err(|e| Error::Network {
        name: row.name.clone(),
        reason: format!("stored node data is unreadable: {e}"),
    })
}

/// Stops a network by name and marks it `removed`. A network already gone is not an error.
pub async fn teardown<S: NetworkStore, B: NodeBackend>(
    store: &S,
    backend: &B,
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
    if !backend.serves(&row.backend) {
        return Err(Error::Network {
            name: name.to_string(),
            reason: format!(
                "it runs on the `{}` backend, which this engine does not have",
                row.backend
            ),
        });
    }
    if row.host != backend.host_for(&row.backend) {
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

/// The record of running network `name`, if it is this backend's and this host's to act on.
async fn running_record<S: NetworkStore, B: NodeBackend>(store: &S, backend: &B, name: &str) -> Result<B::Record> {
    let row = store.get_network(name).await?;
    let refuse = |reason: String| Error::Network {
        name: name.to_string(),
        reason,
    };
    if row.status != "running" {
        return Err(refuse(format!(
            "it is {}; only a running network's nodes can be acted on",
            row.status
        )));
    }
    if !backend.serves(&row.backend) {
        return Err(refuse(format!(
            "it runs on the `{}` backend, which this engine does not have",
            row.backend
        )));
    }
    if row.host != backend.host_for(&row.backend) {
        return Err(refuse(format!(
            "its processes run on host `{}`; act on it there",
            row.host
        )));
    }
    stored_record::<B::Record>(&row)?.ok_or_else(|| refuse("no node of it was ever started".into()))
}

/// Sends `signal` to node `node` of running network `name` (e.g. SIGKILL to see the others carry on).
pub async fn signal_node<S: NetworkStore, B: NodeBackend>(
    store: &S,
    backend: &B,
    name: &str,
    node: &str,
    signal: crate::backend::NodeSignal,
) -> Result<()> {
    let record = running_record(store, backend, name).await?;
    backend.signal(&record, node, signal).await
}

/// Starts node `node` of running network `name` again (stopping it first if it runs) and stores its new
/// process, so teardown, recovery and the next restart find it.
pub async fn restart_node<S: NetworkStore, B: NodeBackend>(
    store: &S,
    backend: &B,
    name: &str,
    node: &str,
    progress: Progress<'_>,
) -> Result<B::Record> {
    let record = running_record(store, backend, name).await?;
    let restarted = backend.restart_node(&record, node, progress).await?;
    save_record(store, name, &restarted).await?;
    // A teardown that read the old record while this restart ran would not know the new process.
    let row = store.get_network(name).await?;
    if row.status != "running" {
        backend.stop(&restarted).await?;
        return Err(Error::Network {
            name: name.to_string(),
            reason: format!(
                "it became {} while node `{node}` restarted; stopped it again",
                row.status
            ),
        });
    }
    Ok(restarted)
}

/// Moves `row` from one of `from` to `stopping` and stops it. The move is a compare-and-set: a concurrent
/// teardown, reaper or recovery wins and this does nothing. Returns whether this call stopped it.
async fn stop_if<S: NetworkStore, B: NodeBackend>(
    store: &S,
    backend: &B,
    row: &NetworkRow,
    from: &[&str],
    why: &str,
    progress: Progress<'_>,
) -> Result<bool> {
    if !store
        .transition_network(&row.name, from, "stopping", None, Utc::now())
        .await?
    {
        return Ok(false);
    }
    stop_row(store, backend, row, why, progress).await?;
    Ok(true)
}

async fn stop_row<S: NetworkStore, B: NodeBackend>(
    store: &S,
    backend: &B,
    row: &NetworkRow,
    why: &str,
    progress: Progress<'_>,
) -> Result<()> {
    match stored_record::<B::Record>(row)? {
        Some(record) => {
            let report = backend.stop(&record).await?;
            progress(&format!(
                "network `{}`: stopped {} nodes{}: {why}",
                row.name,
                report.stopped,
                if report.removed_dir { ", removed its files" } else { "" }
            ));
        }
        // Interrupted before any node started: at most some of its files exist.
        None => backend.discard(&row.name, &row.backend).await?,
    }
    store
        .transition_network(&row.name, &["stopping"], "removed", Some(why), Utc::now())
        .await?;
    Ok(())
}

/// Tears down every network on this host whose owning run ended more than its TTL ago, and every network
/// left `starting` by a deploy task that ended without finishing it. Meant to
/// be called periodically (the scheduler loop, `dagctl net reap`). Returns the names torn down.
pub async fn reap<S: NetworkStore, B: NodeBackend>(
    store: &S,
    backend: &B,
    now: DateTime<Utc>,
    progress: Progress<'_>,
) -> Result<Vec<String>> {
    let mut reaped = Vec::new();
    for row in store.networks_past_ttl(now).await? {
        if !backend.serves(&row.backend) || row.host != backend.host_for(&row.backend) {
            continue;
        }
        let ttl = row.ttl_seconds.unwrap_or_default();
        let why = format!("TTL of {ttl}s after its run ended");
        // One network that cannot be stopped now (a region not answering) does not hold up the others.
        match stop_if(store, backend, &row, &["running"], &why, progress).await {
            Ok(true) => reaped.push(row.name),
            Ok(false) => {}
            Err(err) => progress(&format!("cannot tear down network `{}` ({why}): {err}", row.name)),
        }
    }
    // Networks still `starting` whose deploy can no longer finish: the task that deployed them has ended
    // (its runner died and the try was failed) and no live process is deploying them.
    for row in store.list_networks(false).await? {
        if row.status != "starting"
            || row.dag_id.is_none()
            || !backend.serves(&row.backend)
            || row.host != backend.host_for(&row.backend)
        {
            continue;
        }
        let record = stored_record::<B::Record>(&row)?;
        if record.as_ref().is_some_and(|r| backend.deploy_in_progress(r))
            || deployed_elsewhere(backend, &row, record.as_ref())
            || store.owner_executing(&row).await?
        {
            continue;
        }
        let why = "its deploy's task ended while the network was starting";
        match stop_if(store, backend, &row, &["starting"], why, progress).await {
            Ok(true) => reaped.push(row.name),
            Ok(false) => {}
            Err(err) => progress(&format!("cannot tear down network `{}` ({why}): {err}", row.name)),
        }
    }
    Ok(reaped)
}

/// How long a `starting` network whose deploy may run on another machine (its backend is shared, e.g.
/// Kubernetes) is left to that deploy before it counts as interrupted.
const FOREIGN_START_GRACE: chrono::TimeDelta = chrono::TimeDelta::minutes(30);

/// Whether `row`, still starting, may be deployed right now by a process on another machine: this one cannot
/// see that process, so the network is left alone until [`FOREIGN_START_GRACE`] after its last change.
fn deployed_elsewhere<B: NodeBackend>(backend: &B, row: &NetworkRow, record: Option<&B::Record>) -> bool {
    row.status == "starting"
        && backend.deploy_may_be_elsewhere(&row.backend, record)
        && Utc::now() - row.updated_at < FOREIGN_START_GRACE
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
pub async fn recover<S: NetworkStore, B: NodeBackend>(
    store: &S,
    backend: &B,
    progress: Progress<'_>,
) -> Result<Recovery> {
    let mut recovery = Recovery::default();
    for row in store.list_networks(false).await? {
        if !backend.serves(&row.backend) || row.host != backend.host_for(&row.backend) {
            continue;
        }
        let record = stored_record::<B::Record>(&row)?;
        // A deploy's runner outlives a restarted engine and may not have recorded its nodes yet: while its
        // task still executes, it is not ours to judge.
        let deployer_alive = record.as_ref().is_some_and(|r| backend.deploy_in_progress(r))
            || (row.status == "starting"
                && (deployed_elsewhere(backend, &row, record.as_ref()) || store.owner_executing(&row).await?));
        let verdict = match (&record, row.status.as_str()) {
            // A deploy in progress in another live process: not ours to judge.
            (_, "starting") if deployer_alive => continue,
            (None, _) => Some("deploy was interrupted before any node started".to_string()),
            (Some(_), "starting") => Some("deploy was interrupted".to_string()),
            (Some(_), "stopping") => Some("teardown was interrupted".to_string()),
            (Some(record), _) => match backend.dead_nodes(record).await {
                Ok(dead) => (!dead.is_empty()).then(|| format!("node(s) {} were gone", dead.join(", "))),
                // Not known now (a region not answering): judged again at the next recovery.
                Err(err) => {
                    progress(&format!(
                        "network `{}`: cannot tell whether its nodes live: {err}",
                        row.name
                    ));
                    continue;
                }
            },
        };
        match verdict {
            None => {
                progress(&format!("network `{}`: all nodes alive, re-attached", row.name));
                recovery.attached.push(row.name);
            }
            Some(why) => {
                let why = format!("recovered after restart: {why}");
                match stop_if(store, backend, &row, &[row.status.as_str()], &why, progress).await {
                    Ok(true) => recovery.cleaned.push(row.name),
                    Ok(false) => {}
                    Err(err) => progress(&format!("cannot clean up network `{}` ({why}): {err}", row.name)),
                }
            }
        }
    }
    Ok(recovery)
}
