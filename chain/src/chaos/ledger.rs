//! The fault ledger: each part of a fault (a node paused, a peer link rerouted) is written to the store
//! *before* it is applied, with how to undo it ([`Undo`]), and closed once undone. A fault whose owner died
//! mid-fault (SIGKILL of `dagctl chaos`, of a task runner, or of the engine with its runners) stays open, and
//! [`recover`] (run by the engine at start and once a minute, and by `dagctl chaos recover`) undoes it.
//!
//! The owner is a process on a host; it is gone when no process has its pid, or the one that does started at
//! another time (a reused pid). Only the owner's host can tell, so each host recovers its own faults.

use std::future::Future;
use std::time::Duration;

use chrono::Utc;
use engine::store::{ChaosFaultRow, Store};
use hyper::Method;
use serde::{Deserialize, Serialize};

use crate::backend::{NodeBackend, NodeSignal, Progress};
use crate::error::{Error, Result};
use crate::lifecycle;
use crate::registry::{api_error, ApiNetworks, NetworkStore};

/// How to undo one part of a fault, also when whoever applied it is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Undo {
    /// Nothing (a kill without restart is meant to last).
    Nothing,
    /// SIGCONT to a paused node.
    Resume { node: String },
    /// Start a node again if it is not running.
    Start { node: String },
    /// Put a peer link rerouted through a proxy back on its direct path: on `a`, drop the peer `b` (by id,
    /// whatever address it has) and add it at its own address; on `b`, add `a` at its own.
    Relink { a: LinkEnd, b: LinkEnd },
    /// Kill the processes tagged `tag` (a `stress-ng`, see [`super::stress`]).
    Kill { tag: String },
    /// Start a node whose clock was skewed again on the host's clock ([`super::clock`]).
    Unskew { node: String },
    /// Delete an nftables table (`table ip TABLE`) in a node's network namespace ([`super::netns`]).
    NftTable { namespace: String, table: String },
    /// Delete the root qdisc of `device`, in `namespace` or on the host ([`super::netns`]).
    Qdisc { namespace: Option<String>, device: String },
    /// Delete a Chaos Mesh object in a Kubernetes region ([`super::mesh`]).
    ClusterObject(crate::backend::kubernetes::ClusterObject),
}

/// One end of a peer link: what it takes to rewire it over JSON-RPC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEnd {
    pub node: String,
    pub rpc: String,
    pub enode: String,
}

/// Where fault records go: the store (the CLI, the engine) or the execution API (a task runner).
pub trait FaultLedger: Send + Sync {
    /// Records `row` (owner, DAG, run and task are filled in by the engine for a runner).
    fn record_fault(&self, row: &ChaosFaultRow) -> impl Future<Output = Result<()>> + Send;
    /// Closes a part (`error: None`) or notes why undoing it failed (it stays open).
    fn fault_undone(&self, id: &str, part: &str, error: Option<&str>) -> impl Future<Output = Result<()>> + Send;
}

impl FaultLedger for Store {
    async fn record_fault(&self, row: &ChaosFaultRow) -> Result<()> {
        Ok(self.record_chaos_fault(row).await?)
    }

    async fn fault_undone(&self, id: &str, part: &str, error: Option<&str>) -> Result<()> {
        self.close_chaos_fault(id, part, Utc::now(), error).await?;
        Ok(())
    }
}

impl FaultLedger for ApiNetworks {
    async fn record_fault(&self, row: &ChaosFaultRow) -> Result<()> {
        let undo: serde_json::Value = serde_json::from_str(&row.undo).map_err(|e| Error::Serialize {
            what: "a fault's undo record",
            reason: e.to_string(),
        })?;
        let body = serde_json::json!({
            "id": row.id, "part": row.part, "network": row.network, "kind": row.kind, "undo": undo,
            "owner_host": row.owner_host, "owner_pid": row.owner_pid, "owner_started": row.owner_started,
        });
        self.0
            .call::<_, ()>(Method::POST, "/execution/chaos/faults", Some(&body))
            .await
            .map_err(|err| api_error(err, None))
    }

    async fn fault_undone(&self, id: &str, part: &str, error: Option<&str>) -> Result<()> {
        let body = serde_json::json!({"id": id, "part": part, "error": error});
        self.0
            .call::<_, ()>(Method::POST, "/execution/chaos/faults/undone", Some(&body))
            .await
            .map_err(|err| api_error(err, None))
    }
}

/// The faults of one command or task: every part is recorded under one id, owned by this process.
pub struct Book<'a, L> {
    ledger: &'a L,
    pub id: String,
    network: String,
    host: String,
}

impl<'a, L: FaultLedger> Book<'a, L> {
    /// A new fault id for `network`, owned by this process on `host` (the backend's host id).
    pub fn new(ledger: &'a L, network: &str, host: &str) -> Result<Self> {
        let mut bytes = [0u8; 8];
        getrandom::getrandom(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Book {
            ledger,
            id,
            network: network.to_string(),
            host: host.to_string(),
        })
    }

    /// Records `part` about to be applied; nothing is applied when this fails.
    pub async fn applying(&self, part: &str, kind: &str, undo: &Undo) -> Result<()> {
        let pid = std::process::id();
        let row = ChaosFaultRow {
            id: self.id.clone(),
            part: part.to_string(),
            network: self.network.clone(),
            kind: kind.to_string(),
            undo: serde_json::to_string(undo).map_err(|e| Error::Serialize {
                what: "a fault's undo record",
                reason: e.to_string(),
            })?,
            owner_host: self.host.clone(),
            owner_pid: i64::from(pid),
            owner_started: started_ticks(pid).unwrap_or(-1),
            dag_id: None,
            run_id: None,
            task_id: None,
            applied_at: Utc::now(),
            undone_at: None,
            undo_error: None,
        };
        self.ledger.record_fault(&row).await
    }

    /// Closes `part`, or notes why its undo failed. A ledger that cannot be reached leaves the part open for
    /// [`recover`], which finds it already undone; the error is returned for the report.
    pub async fn undone(&self, part: &str, error: Option<&str>) -> Result<()> {
        self.ledger.fault_undone(&self.id, part, error).await
    }
}

/// When process `pid` started, in clock ticks since boot (`/proc/PID/stat` field 22).
pub fn started_ticks(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name (which may hold spaces): state is field 3, start time 22.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the process that recorded `row` still lives (on this host).
fn owner_alive(row: &ChaosFaultRow) -> bool {
    let Ok(pid) = u32::try_from(row.owner_pid) else {
        return false;
    };
    match started_ticks(pid) {
        Some(started) => row.owner_started < 0 || started == row.owner_started,
        None => false,
    }
}

/// Undoes every open part of a fault on this host whose owner is gone (or, with `all`, every open part on
/// this host, as `dagctl chaos recover --all` after making sure no chaos is running); each is closed when
/// undone, or left open with why. What was undone, as `network: part (kind)`.
pub async fn recover<B: NodeBackend>(
    store: &Store,
    backend: &B,
    all: bool,
    progress: Progress<'_>,
) -> Result<Vec<String>> {
    let mut undone = Vec::new();
    for row in store.open_chaos_faults(None).await? {
        if !ours_to_undo(store, backend, &row, all).await? {
            continue;
        }
        let what = format!("{}: {} ({})", row.network, row.part, row.kind);
        let result = match serde_json::from_str::<Undo>(&row.undo) {
            Ok(undo) => undo_part(store, backend, &row.network, &undo, progress).await,
            Err(err) => Err(Error::Rejected(format!("unreadable undo record: {err}"))),
        };
        match result {
            Ok(()) => {
                store.close_chaos_fault(&row.id, &row.part, Utc::now(), None).await?;
                progress(&format!("undid a fault left by a process that is gone: {what}"));
                undone.push(what);
            }
            Err(err) => {
                let reason = err.to_string();
                store
                    .close_chaos_fault(&row.id, &row.part, Utc::now(), Some(&reason))
                    .await?;
                progress(&format!("cannot undo {what}: {reason}"));
            }
        }
    }
    Ok(undone)
}

/// Whether this engine undoes `row` now: a part of this host whose owner is gone (or any, with `all`), or a
/// Chaos Mesh object made by a task on another host (a task pod of the Kubernetes executor) whose task no longer
/// executes: a cluster object is deleted from wherever the cluster is reached.
async fn ours_to_undo<B: NodeBackend>(store: &Store, backend: &B, row: &ChaosFaultRow, all: bool) -> Result<bool> {
    if row.owner_host == backend.host_id() {
        return Ok(all || !owner_alive(row));
    }
    let cluster_object = matches!(serde_json::from_str::<Undo>(&row.undo), Ok(Undo::ClusterObject(_)));
    match (&row.dag_id, &row.run_id, &row.task_id) {
        (Some(dag_id), Some(run_id), Some(task_id)) if cluster_object => {
            Ok(!crate::registry::task_executing(store, dag_id, run_id, task_id).await?)
        }
        _ => Ok(false),
    }
}

/// Undoes one part. A network that is no longer running has nothing left to undo.
pub async fn undo_part<S: NetworkStore, B: NodeBackend>(
    store: &S,
    backend: &B,
    network: &str,
    undo: &Undo,
    progress: Progress<'_>,
) -> Result<()> {
    // A tagged process is killed, a table or qdisc removed, whatever became of its network (a namespace gone
    // took its tables and qdiscs with it).
    match undo {
        Undo::Kill { tag } => {
            super::stress::kill_tagged(tag).await;
            return Ok(());
        }
        Undo::NftTable { .. } | Undo::Qdisc { .. } => return super::netns::unmake(undo),
        // Deleted whatever became of its network: a fault object outlives it otherwise.
        Undo::ClusterObject(object) => return backend.delete_cluster_object(object).await,
        _ => {}
    }
    let running = match store.get_network(network).await {
        Ok(row) => row.status == "running",
        Err(Error::NotFound(_)) => false,
        Err(err) => return Err(err),
    };
    if !running {
        return Ok(());
    }
    match undo {
        Undo::Nothing => Ok(()),
        Undo::Resume { node } => {
            match lifecycle::signal_node(store, backend, network, node, NodeSignal::Continue).await {
                // A node whose process is gone is not paused.
                Err(Error::Network { reason, .. }) if reason.contains("its process is gone") => Ok(()),
                other => other,
            }
        }
        Undo::Start { node } => {
            let row = store.get_network(network).await?;
            let record = lifecycle::stored_record::<B::Record>(&row)?
                .ok_or_else(|| Error::Rejected(format!("network `{network}` has no nodes recorded")))?;
            if backend.dead_nodes(&record).await?.contains(node) {
                lifecycle::restart_node(store, backend, network, node, progress).await?;
            }
            Ok(())
        }
        Undo::Unskew { node } => super::clock::unskew(store, backend, network, node, progress)
            .await
            .map(|_| ()),
        Undo::Relink { a, b } => relink(a, b).await,
        Undo::Kill { .. } | Undo::NftTable { .. } | Undo::Qdisc { .. } | Undo::ClusterObject(_) => Ok(()),
    }
}

/// Puts the link a-b back on its direct path (see [`Undo::Relink`]).
pub async fn relink(a: &LinkEnd, b: &LinkEnd) -> Result<()> {
    const RPC: Duration = Duration::from_secs(5);
    use crate::backend::local::rpc::call;
    call(&a.rpc, "admin_removePeer", serde_json::json!([b.enode]), RPC).await?;
    call(&b.rpc, "admin_removePeer", serde_json::json!([a.enode]), RPC).await?;
    call(&a.rpc, "admin_addPeer", serde_json::json!([b.enode]), RPC).await?;
    call(&b.rpc, "admin_addPeer", serde_json::json!([a.enode]), RPC).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_its_own_live_owner_and_a_reused_pid_is_not() {
        let pid = std::process::id();
        let started = started_ticks(pid).expect("our own start time");
        let mut row = ChaosFaultRow {
            id: "f".into(),
            part: "n".into(),
            network: "net".into(),
            kind: "pause".into(),
            undo: "{}".into(),
            owner_host: "h".into(),
            owner_pid: i64::from(pid),
            owner_started: started,
            dag_id: None,
            run_id: None,
            task_id: None,
            applied_at: Utc::now(),
            undone_at: None,
            undo_error: None,
        };
        assert!(owner_alive(&row));
        row.owner_started = started + 1;
        assert!(!owner_alive(&row), "same pid, another start: a reused pid");
        row.owner_pid = i64::from(u32::MAX);
        assert!(!owner_alive(&row));
    }

    #[test]
    fn undo_records_read_back() {
        let undo = Undo::Relink {
            a: LinkEnd {
                node: "a".into(),
                rpc: "http://127.0.0.1:1".into(),
                enode: "enode://aa@127.0.0.1:2".into(),
            },
            b: LinkEnd {
                node: "b".into(),
                rpc: "http://127.0.0.1:3".into(),
                enode: "enode://bb@127.0.0.1:4".into(),
            },
        };
        let text = serde_json::to_string(&undo).unwrap();
        assert!(text.starts_with("{\"relink\":"), "{text}");
        assert_eq!(serde_json::from_str::<Undo>(&text).unwrap(), undo);
        assert_eq!(
            serde_json::to_string(&Undo::Resume { node: "n".into() }).unwrap(),
            "{\"resume\":{\"node\":\"n\"}}"
        );
    }
}
