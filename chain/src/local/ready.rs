//! Readiness: every node answers JSON-RPC, has its expected peers and sees new blocks.

use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{process, rpc, NetworkRecord, NodeRecord, Progress};
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
        poll_until(record, peered, started, deadline, timeout, cancel, progress).await?;
        for node in record.nodes.iter().filter(|n| n.role == Role::Validator) {
            // geth unlocks the signer key after it starts serving RPC; a `miner_start` before that fails its
            // first seal ("authentication needed") and geth does not retry it.
            wait_unlocked(record, node, deadline, cancel).await?;
        }
        for node in record.nodes.iter().filter(|n| n.role == Role::Validator) {
            rpc::call(&node.rpc, "miner_start", json!([]), CALL_TIMEOUT)
                .await
                .map_err(|e| not_ready(record, node, format!("did not start sealing: {e}")))?;
        }
        progress("every node is peered; signers started sealing");
    }
    poll_until(record, expect, started, deadline, timeout, cancel, progress).await
}

/// Waits until the node can sign with its own account (its keystore is unlocked).
async fn wait_unlocked(
    record: &NetworkRecord,
    node: &NodeRecord,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<()> {
    loop {
        let signed = rpc::call(&node.rpc, "eth_sign", json!([node.address, "0x00"]), CALL_TIMEOUT).await;
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

/// Probes every node until each meets `expect`, or fails at `deadline`.
async fn poll_until(
    record: &NetworkRecord,
    expect: Expectation,
    started: Instant,
    deadline: Instant,
    timeout: Duration,
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> Result<ReadyReport> {
    let mut last_progress = Instant::now();
    let mut probes = vec![Probe::default(); record.nodes.len()];
    loop {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled(format!(
                "waiting for network `{}` to be ready",
                record.name
            )));
        }
        for (node, probe) in record.nodes.iter().zip(probes.iter_mut()) {
            let alive = node.pid.is_some_and(|pid| process::is_node_alive(pid, &node.data_dir));
            if !alive {
                return Err(not_ready(record, node, "exited before the network was ready".into()));
            }
            probe_node(node, probe, expect).await;
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

async fn probe_node(node: &NodeRecord, probe: &mut Probe, expect: Expectation) {
    match rpc::call(&node.rpc, "eth_blockNumber", json!([]), CALL_TIMEOUT).await {
        Ok(value) => match rpc::quantity(&value) {
            Some(head) => {
                probe.first_head.get_or_insert(head);
                probe.head = Some(head);
                probe.last_error = None;
            }
            None => probe.last_error = Some(format!("eth_blockNumber returned {value}")),
        },
        Err(err) => {
            probe.last_error = Some(err.to_string());
            return;
        }
    }
    if expect.peers > 0 {
        match rpc::call(&node.rpc, "net_peerCount", json!([]), CALL_TIMEOUT).await {
            Ok(value) => probe.peers = rpc::quantity(&value),
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
