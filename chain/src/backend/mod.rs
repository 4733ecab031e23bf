//! Node backends: where a network's nodes run. [`NodeBackend`] is everything [`crate::lifecycle`] and
//! [`crate::operators`] (and the chaos operators to come) ask of one: start a network from its spec,
//! wait until it is ready, stop it, describe its endpoints and send a signal to one node.
//!
//! - [`local`]: real client processes on this machine ([`local::LocalBackend`]).
//! - [`any`]: [`any::Backends`], which runs each spec on the backend it names.
//! - [`kubernetes`]: pods of the clients' official images in configured regions ([`kubernetes::KubeBackend`]).
//!
//! A backend keeps what it started in its own [`NodeBackend::Record`]; the store holds that record as
//! JSON, so a later process (a teardown task, a restarted engine) can find the nodes again.

pub mod any;
pub mod kubernetes;
pub mod local;
pub(crate) mod ready;

use std::fmt::Debug;
use std::future::Future;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::spec::NetworkSpec;

/// A progress callback: one human-readable line at a time (a task log, or stderr for the CLI).
pub type Progress<'a> = &'a (dyn Fn(&str) + Send + Sync);

/// How the network looked when it became ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyReport {
    /// Time from the first probe until ready.
    pub elapsed: Duration,
    /// Head block number per node.
    pub heads: Vec<(String, u64)>,
    /// Peer count per node (`None` where peers are not checked).
    pub peers: Vec<(String, Option<u64>)>,
}

/// What stopping a network did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeardownReport {
    /// Nodes that were running and were stopped.
    pub stopped: usize,
    /// Whether the network's files (the local backend: its directory) were removed.
    pub removed_dir: bool,
}

/// A signal for one node, named after the POSIX signal the local backend sends. Other backends map
/// each to their nearest equivalent (e.g. pausing a container for [`NodeSignal::Stop`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum NodeSignal {
    /// Pause the node (SIGSTOP): it keeps its state and sockets but answers nothing.
    Stop,
    /// Resume a paused node (SIGCONT).
    Continue,
    /// Ask the node to shut down (SIGTERM).
    Terminate,
    /// Kill the node at once (SIGKILL).
    Kill,
}

impl NodeSignal {
    /// The POSIX name, e.g. `SIGSTOP`.
    pub fn posix_name(self) -> &'static str {
        match self {
            NodeSignal::Stop => "SIGSTOP",
            NodeSignal::Continue => "SIGCONT",
            NodeSignal::Terminate => "SIGTERM",
            NodeSignal::Kill => "SIGKILL",
        }
    }
}

impl std::fmt::Display for NodeSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.posix_name())
    }
}

/// Where a network's nodes run. Used with static dispatch (`B: NodeBackend`); every future it returns is
/// `Send`, so operators can run them on their own tokio task.
pub trait NodeBackend: Send + Sync {
    /// What [`NodeBackend::start`] returns: everything needed to probe, signal, re-attach to or stop the
    /// network later, possibly from another process. The store keeps it as JSON.
    type Record: Serialize + DeserializeOwned + Clone + Debug + Send + Sync + 'static;

    /// The backend's name in the store's `backend` column (e.g. `local`).
    const KIND: &'static str;

    /// Where this backend's networks run (the local backend: this machine's name). A network recorded
    /// with another host is not this backend's to stop or recover.
    fn host_id(&self) -> &str;

    /// Creates and starts every node of `spec`. Does not wait for readiness. On failure everything
    /// started so far is stopped and removed before the error is returned.
    fn start(
        &self,
        spec: &NetworkSpec,
        cancel: &CancellationToken,
        progress: Progress<'_>,
    ) -> impl Future<Output = Result<Self::Record>> + Send;

    /// Waits until every node answers RPC, has its expected peers and sees new blocks; fails early,
    /// naming the node, when one of them is gone, and at `timeout` or on `cancel`.
    fn wait_ready(
        &self,
        record: &Self::Record,
        timeout: Duration,
        cancel: &CancellationToken,
        progress: Progress<'_>,
    ) -> impl Future<Output = Result<ReadyReport>> + Send;

    /// Stops every node of `record` and removes what [`NodeBackend::start`] created. Safe to call again.
    fn stop(&self, record: &Self::Record) -> impl Future<Output = Result<TeardownReport>> + Send;

    /// The backend name the store records for a network of `spec` (its `backend` column): [`Self::KIND`]
    /// unless this backend dispatches to others.
    fn kind_of(&self, spec: &NetworkSpec) -> Result<&'static str> {
        let _ = spec;
        Ok(Self::KIND)
    }

    /// Whether stored networks of backend `kind` are this backend's to act on.
    fn serves(&self, kind: &str) -> bool {
        kind == Self::KIND
    }

    /// The host recorded with a network of backend `kind`: where its nodes run ([`Self::host_id`]).
    fn host_for(&self, kind: &str) -> &str {
        let _ = kind;
        self.host_id()
    }

    /// Removes whatever a deploy of network `name` (of backend `kind`) that was interrupted before it had a
    /// record may have left behind. Nothing left is not an error.
    fn discard(&self, name: &str, kind: &str) -> impl Future<Output = Result<()>> + Send;

    /// The network's endpoints as JSON (pushed as XCom by `chain.deploy_network`): `name`, `client`,
    /// `consensus`, `chain_id`, `rpc` (the first node's) and `nodes` (each with `name` and `rpc`).
    fn describe(&self, record: &Self::Record) -> serde_json::Value;

    /// Sends `signal` to the one node of `record` named `node`. A node the record does not have, or
    /// whose process is gone, is an error.
    fn signal(&self, record: &Self::Record, node: &str, signal: NodeSignal) -> impl Future<Output = Result<()>> + Send;

    /// Starts one node again with the command line it was started with, on the same data and ports, after
    /// stopping it if it still runs: how a node comes back after a crash, a kill or a fault. Returns the
    /// record with the node's new process; the caller stores it.
    fn restart_node(
        &self,
        record: &Self::Record,
        node: &str,
        progress: Progress<'_>,
    ) -> impl Future<Output = Result<Self::Record>> + Send;

    /// Names of the nodes of `record` that are gone.
    fn dead_nodes(&self, record: &Self::Record) -> impl Future<Output = Result<Vec<String>>> + Send;

    /// Creates or updates `object` (server-side apply) in region `region`'s namespace: a Chaos Mesh fault on a
    /// network on Kubernetes. Backends without a cluster refuse.
    fn apply_cluster_object(
        &self,
        region: &str,
        object: &serde_json::Value,
    ) -> impl Future<Output = Result<()>> + Send {
        let _ = object;
        let region = region.to_string();
        async move {
            Err(crate::error::Error::Rejected(format!(
                "this backend has no Kubernetes region `{region}` to create objects in"
            )))
        }
    }

    /// Deletes `object` (made by [`NodeBackend::apply_cluster_object`]); one already gone is fine.
    fn delete_cluster_object(&self, object: &kubernetes::ClusterObject) -> impl Future<Output = Result<()>> + Send {
        let region = object.region.clone();
        async move {
            Err(crate::error::Error::Rejected(format!(
                "this backend has no Kubernetes region `{region}` to delete objects in"
            )))
        }
    }

    /// The pods of `record` for a monitor (usage from the metrics API, logs from the pod log API); `None` for a
    /// backend whose nodes are processes here.
    fn pod_watch(&self, record: &Self::Record) -> impl Future<Output = Result<Option<kubernetes::PodWatch>>> + Send {
        let _ = record;
        async { Ok(None) }
    }

    /// Whether a network of backend `kind` (with `record`, once it has one) may be deployed by a process on
    /// another machine, which this one cannot see (its nodes run somewhere shared, like a cluster).
    fn deploy_may_be_elsewhere(&self, kind: &str, record: Option<&Self::Record>) -> bool {
        let _ = (kind, record);
        false
    }

    /// Whether the deploy that made `record` is still going on elsewhere (another live process), so a
    /// recovery must leave the network alone.
    fn deploy_in_progress(&self, record: &Self::Record) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_read_and_print_by_name() {
        assert_eq!(serde_json::to_value(NodeSignal::Stop).unwrap(), "stop");
        let kill: NodeSignal = serde_json::from_str("\"kill\"").unwrap();
        assert_eq!(kill, NodeSignal::Kill);
        assert!(serde_json::from_str::<NodeSignal>("\"hup\"").is_err());
        assert_eq!(NodeSignal::Continue.to_string(), "SIGCONT");
        assert_eq!(NodeSignal::Terminate.posix_name(), "SIGTERM");
    }
}
