//! Readiness: every node answers JSON-RPC, has its expected peers and sees new blocks.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::rpc::NodeRpc;
use super::{process, NetworkRecord, NodeRecord, Progress, ReadyReport};
use crate::error::{Error, Result};
use crate::spec::{Client, Consensus, Role};

/// How often nodes are probed.
const POLL: Duration = Duration::from_millis(500);
/// How long one probe call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a waiting line is written to the progress log.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Log lines shown when a node fails.
const TAIL_LINES: usize = 25;
/// geth's default `--maxpeers`.
const MAX_PEERS: usize = 50;

#[derive(Debug, Default, Clone)]
struct Probe {
    first_head: Option<u64>,
    head: Option<u64>,
    peers: Option<u64>,
    last_error: Option<String>,
}

/// What readiness requires of one network.
#[derive(Debug, Clone, Copy)]
struct Expectation {
    peers: usize,
    new_blocks: bool,
}

fn expectation(record: &NetworkRecord) -> Expectation {
    let peers = match record.client {
        Client::Anvil => 0,
        _ => record.nodes.len().saturating_sub(1).min(MAX_PEERS),
    };
    // anvil `instant` and GoQuorum raft only make blocks when transactions arrive.
    let new_blocks = !matches!(record.consensus, Consensus::Instant | Consensus::Raft);
    Expectation { peers, new_blocks }
}

impl Probe {
    /// Why this node is not ready yet, or `None` when it is.
    fn missing(&self, node: &NodeRecord, expect: Expectation) -> Option<String> {
        let Some(head) = self.head else {
            return Some(format!(
                "does not answer JSON-RPC at {}: {}",
                node.rpc,
                self.last_error.as_deref().unwrap_or("no answer yet")
            ));
        };
        let peers = self.peers.unwrap_or(0);
        if (peers as usize) < expect.peers {
            return Some(format!("has {peers} of {} expected peers", expect.peers));
        }
        if expect.new_blocks && Some(head) <= self.first_head {
            return Some(format!("saw no new block after #{head}"));
        }
        None
    }
}

pub(super) async fn wait_ready(
    record: &NetworkRecord,
    timeout: Duration,
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> Result<ReadyReport> {
    let expect = expectation(record);
    // One client per node, reused by every probe.
    let clients: Vec<NodeRpc> = record
        .nodes
        .iter()
        .map(|n| NodeRpc::new(&n.rpc, CALL_TIMEOUT))
        .collect();
    let started = Instant::now();
    let deadline = started + timeout;
    progress(&format!(
        "waiting up to {timeout:?} for {} nodes: RPC, {} peers each{}",
        record.nodes.len(),
        expect.peers,
        if expect.new_blocks { ", new blocks" } else { "" }
    ));
    if record.sealing_deferred {
        // Peers first, then sealing: no signer makes a block alone.
        let peered = Expectation {
            new_blocks: false,
            ..expect
        };
        poll_until(record, &clients, peered, started, timeout, cancel, progress).await?;
        let validators = || {
            record
                .nodes
                .iter()
                .zip(&clients)
                .filter(|(n, _)| n.role == Role::Validator)
        };
        for (node, rpc) in validators() {
            // geth unlocks the signer key after it starts serving RPC; a `miner_start` before that fails its
            // first seal ("authentication needed") and geth does not retry it.
            wait_unlocked(record, node, rpc, deadline, cancel).await?;
        }
        for (node, rpc) in validators() {
            rpc.call("miner_start", json!([]))
                .await
                .map_err(|e| not_ready(record, node, format!("did not start sealing: {e}")))?;
        }
        progress("every node is peered; signers started sealing");
    }
    poll_until(record, &clients, expect, started, timeout, cancel, progress).await
}

/// Starts sealing on one (restarted) Clique signer: waits until it answers and its key is unlocked, then
/// `miner_start`.
pub(super) async fn start_sealing(record: &NetworkRecord, node: &NodeRecord, timeout: Duration) -> Result<()> {
    let rpc = NodeRpc::new(&node.rpc, CALL_TIMEOUT);
    let deadline = Instant::now() + timeout;
    wait_unlocked(record, node, &rpc, deadline, &CancellationToken::new()).await?;
    rpc.call("miner_start", json!([]))
        .await
        .map_err(|e| not_ready(record, node, format!("did not start sealing: {e}")))?;
    Ok(())
}

/// Waits until the node can sign with its own account (its keystore is unlocked).
async fn wait_unlocked(
    record: &NetworkRecord,
    node: &NodeRecord,
    rpc: &NodeRpc,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<()> {
    loop {
        let signed = rpc.call("eth_sign", json!([node.address, "0x00"])).await;
        let last_error = match signed {
            Ok(_) => return Ok(()),
            Err(err) => err.to_string(),
        };
        if cancel.is_cancelled() {
            return Err(Error::Cancelled(format!(
                "waiting for network `{}` to be ready",
                record.name
            )));
        }
        if Instant::now() >= deadline {
            return Err(not_ready(
                record,
                node,
                format!("its signer account is still locked: {last_error}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Probes every node until each meets `expect`, or fails `timeout` after `started`.
async fn poll_until(
    record: &NetworkRecord,
    clients: &[NodeRpc],
    expect: Expectation,
    started: Instant,
    timeout: Duration,
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> Result<ReadyReport> {
    let deadline = started + timeout;
    let mut last_progress = Instant::now();
    let mut probes = vec![Probe::default(); record.nodes.len()];
    loop {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled(format!(
                "waiting for network `{}` to be ready",
                record.name
            )));
        }
        for ((node, rpc), probe) in record.nodes.iter().zip(clients).zip(probes.iter_mut()) {
            let alive = node.pid.is_some_and(|pid| process::is_node_alive(pid, &node.data_dir));
            if !alive {
                return Err(not_ready(record, node, "exited before the network was ready".into()));
            }
            probe_node(rpc, probe, expect).await;
        }
        let missing: Vec<(usize, String)> = record
            .nodes
            .iter()
            .zip(&probes)
            .enumerate()
            .filter_map(|(i, (node, probe))| probe.missing(node, expect).map(|why| (i, why)))
            .collect();
        let Some((first_index, first_reason)) = missing.first().cloned() else {
            return Ok(ReadyReport {
                elapsed: started.elapsed(),
                heads: record
                    .nodes
                    .iter()
                    .zip(&probes)
                    .map(|(n, p)| (n.name.clone(), p.head.unwrap_or(0)))
                    .collect(),
                peers: record
                    .nodes
                    .iter()
                    .zip(&probes)
                    .map(|(n, p)| (n.name.clone(), p.peers))
                    .collect(),
            });
        };
        let now = Instant::now();
        if now >= deadline {
            let reason = format!("{first_reason} after {timeout:?}");
            return Err(not_ready(record, &record.nodes[first_index], reason));
        }
        if now.duration_since(last_progress) >= PROGRESS_EVERY {
            last_progress = now;
            let waiting: Vec<String> = missing
                .iter()
                .map(|(i, why)| format!("{} {why}", record.nodes[*i].name))
                .collect();
            progress(&format!("still waiting: {}", waiting.join("; ")));
        }
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

async fn probe_node(rpc: &NodeRpc, probe: &mut Probe, expect: Expectation) {
    match rpc.block_number().await {
        Ok(head) => {
            probe.first_head.get_or_insert(head);
            probe.head = Some(head);
            probe.last_error = None;
        }
        Err(err) => {
            probe.last_error = Some(err.to_string());
            return;
        }
    }
    if expect.peers > 0 {
        match rpc.peer_count().await {
            Ok(peers) => probe.peers = Some(peers),
            Err(err) => probe.last_error = Some(err.to_string()),
        }
    }
}

fn not_ready(record: &NetworkRecord, node: &NodeRecord, reason: String) -> Error {
    Error::NotReady {
        network: record.name.clone(),
        node: node.name.clone(),
        reason,
        log_tail: process::format_tail(&node.log, TAIL_LINES),
    }
}
