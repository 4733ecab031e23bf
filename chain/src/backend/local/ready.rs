//! What readiness ([`crate::backend::ready`]) asks of a local network: where its nodes answer, whether a
//! node's process is gone, and a node's log tail.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{process, NetworkRecord, Progress, ReadyReport};
use crate::backend::ready::{self, Watched, WatchedNode};
use crate::error::Result;
use crate::spec::{Client, Consensus};

/// Log lines shown when a node fails.
const TAIL_LINES: usize = 25;

impl Watched for NetworkRecord {
    fn network(&self) -> &str {
        &self.name
    }

    fn client(&self) -> Client {
        self.client
    }

    fn consensus(&self) -> Consensus {
        self.consensus
    }

    fn sealing_deferred(&self) -> bool {
        self.sealing_deferred
    }

    fn nodes(&self) -> Vec<WatchedNode<'_>> {
        self.nodes
            .iter()
            .map(|n| WatchedNode {
                name: &n.name,
                role: n.role,
                rpc: &n.rpc,
                address: &n.address,
            })
            .collect()
    }

    async fn gone(&self) -> Option<(usize, String)> {
        let index = self
            .nodes
            .iter()
            .position(|n| !n.pid.is_some_and(|pid| process::is_node_alive(pid, &n.data_dir)))?;
        Some((index, "exited before the network was ready".into()))
    }

    async fn log_tail(&self, index: usize) -> String {
        process::format_tail(&self.nodes[index].log, TAIL_LINES)
    }
}

pub(super) async fn wait_ready(
    record: &NetworkRecord,
    timeout: Duration,
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> Result<ReadyReport> {
    ready::wait_ready(record, timeout, cancel, progress).await
}

/// Starts sealing on one (restarted) Clique signer.
pub(super) async fn start_sealing(record: &NetworkRecord, index: usize, timeout: Duration) -> Result<()> {
    ready::start_sealing(record, index, timeout).await
}
