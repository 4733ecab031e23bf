//! Readiness, for every backend: each node answers JSON-RPC, has its expected peers and sees new blocks.
//! A backend says where its nodes answer and whether one is gone through [`Watched`].

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::{Progress, ReadyReport};
use crate::backend::local::rpc::NodeRpc;
use crate::error::{Error, Result};
use crate::spec::{Client, Consensus, Role};

/// How often nodes are probed.
const POLL: Duration = Duration::from_millis(500);
/// How long one probe call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a waiting line is written to the progress log.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// geth's default `--maxpeers`.
const MAX_PEERS: usize = 50;

/// One node as readiness sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WatchedNode<'a> {
    pub name: &'a str,
    pub role: Role,
    pub rpc: &'a str,
    /// The node's own (signer) address.
    pub address: &'a str,
}

/// A started network whose readiness is being waited for.
pub(crate) trait Watched: Sync {
    fn network(&self) -> &str;
    fn client(&self) -> Client;
    fn consensus(&self) -> Consensus;
    /// Clique signers were started without `--mine`: sealing starts over RPC once every node has its peers.
    fn sealing_deferred(&self) -> bool;
    fn nodes(&self) -> Vec<WatchedNode<'_>>;
    /// The first node (by index) that is gone, and why; `None` while every node runs.
    fn gone(&self) -> impl Future<Output = Option<(usize, String)>> + Send;
    /// The last log lines of node `index`, formatted for an error.
    fn log_tail(&self, index: usize) -> impl Future<Output = String> + Send;
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

fn expectation<W: Watched>(record: &W) -> Expectation {
    let peers = match record.client() {
        Client::Anvil => 0,
        _ => record.nodes().len().saturating_sub(1).min(MAX_PEERS),
    };
    // anvil `instant` and GoQuorum raft only make blocks when transactions arrive.
    let new_blocks = !matches!(record.consensus(), Consensus::Instant | Consensus::Raft);
    Expectation { peers, new_blocks }
}

impl Probe {
    /// Why this node is not ready yet, or `None` when it is.
    fn missing(&self, node: &WatchedNode<'_>, expect: Expectation) -> Option<String> {
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

/// Waits until every node of `record` is ready (see the module doc), or fails at `timeout`, on `cancel`, or
/// as soon as a node is gone.
pub(crate) async fn wait_ready<W: Watched>(
    record: &W,
    timeout: Duration,
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> Result<ReadyReport> {
    let expect = expectation(record);
    let nodes = record.nodes();
    // One client per node, reused by every probe.
    let clients: Vec<NodeRpc> = nodes.iter().map(|n| NodeRpc::new(n.rpc, CALL_TIMEOUT)).collect();
    let started = Instant::now();
    let deadline = started + timeout;
    progress(&format!(
        "waiting up to {timeout:?} for {} nodes: RPC, {} peers each{}",
        nodes.len(),
        expect.peers,
        if expect.new_blocks { ", new blocks" } else { "" }
    ));
    if record.sealing_deferred() {
        // Peers first, then sealing: no signer makes a block alone.
        let peered = Expectation {
            new_blocks: false,
            ..expect
        };
        poll_until(record, &clients, peered, started, timeout, cancel, progress).await?;
        let validators = || {
            nodes
                .iter()
                .enumerate()
                .zip(&clients)
                .filter(|((_, n), _)| n.role == Role::Validator)
        };
        for ((index, _), rpc) in validators() {
            // geth unlocks the signer key after it starts serving RPC; a `miner_start` before that fails its
            // first seal ("authentication needed") and geth does not retry it.
            wait_unlocked(record, index, rpc, deadline, cancel).await?;
        }
        for ((index, _), rpc) in validators() {
            if let Err(e) = rpc.call("miner_start", json!([])).await {
                return Err(not_ready(record, index, format!("did not start sealing: {e}")).await);
            }
        }
        progress("every node is peered; signers started sealing");
    }
    poll_until(record, &clients, expect, started, timeout, cancel, progress).await
}

/// Starts sealing on one (restarted) Clique signer, node `index`: waits until it answers and its key is
/// unlocked, then `miner_start`.
pub(crate) async fn start_sealing<W: Watched>(record: &W, index: usize, timeout: Duration) -> Result<()> {
    let nodes = record.nodes();
    let rpc = NodeRpc::new(nodes[index].rpc, CALL_TIMEOUT);
    let deadline = Instant::now() + timeout;
    wait_unlocked(record, index, &rpc, deadline, &CancellationToken::new()).await?;
    if let Err(e) = rpc.call("miner_start", json!([])).await {
        return Err(not_ready(record, index, format!("did not start sealing: {e}")).await);
    }
    Ok(())
}

/// Waits until node `index` can sign with its own account (its keystore is unlocked).
async fn wait_unlocked<W: Watched>(
    record: &W,
    index: usize,
    rpc: &NodeRpc,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<()> {
    let address = record.nodes()[index].address.to_string();
    loop {
        let signed = rpc.call("eth_sign", json!([address, "0x00"])).await;
        let last_error = match signed {
            Ok(_) => return Ok(()),
            Err(err) => err.to_string(),
        };
        if cancel.is_cancelled() {
            return Err(cancelled(record));
        }
        if Instant::now() >= deadline {
            let reason = format!("its signer account is still locked: {last_error}");
            return Err(not_ready(record, index, reason).await);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Probes every node until each meets `expect`, or fails `timeout` after `started`.
async fn poll_until<W: Watched>(
    record: &W,
    clients: &[NodeRpc],
    expect: Expectation,
    started: Instant,
    timeout: Duration,
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> Result<ReadyReport> {
    let deadline = started + timeout;
    let mut last_progress = Instant::now();
    let nodes = record.nodes();
    let mut probes = vec![Probe::default(); nodes.len()];
    loop {
        if cancel.is_cancelled() {
            return Err(cancelled(record));
        }
        if let Some((index, why)) = record.gone().await {
            return Err(not_ready(record, index, why).await);
        }
        for (rpc, probe) in clients.iter().zip(probes.iter_mut()) {
            probe_node(rpc, probe, expect).await;
        }
        let missing: Vec<(usize, String)> = nodes
            .iter()
            .zip(&probes)
            .enumerate()
            .filter_map(|(i, (node, probe))| probe.missing(node, expect).map(|why| (i, why)))
            .collect();
        let Some((first_index, first_reason)) = missing.first().cloned() else {
            let per_node = |f: &dyn Fn(&Probe) -> Option<u64>| -> Vec<(String, Option<u64>)> {
                nodes
                    .iter()
                    .zip(&probes)
                    .map(|(n, p)| (n.name.to_string(), f(p)))
                    .collect()
            };
            return Ok(ReadyReport {
                elapsed: started.elapsed(),
                heads: per_node(&|p| p.head)
                    .into_iter()
                    .map(|(n, h)| (n, h.unwrap_or(0)))
                    .collect(),
                peers: per_node(&|p| p.peers),
            });
        };
        let now = Instant::now();
        if now >= deadline {
            let reason = format!("{first_reason} after {timeout:?}");
            return Err(not_ready(record, first_index, reason).await);
        }
        if now.duration_since(last_progress) >= PROGRESS_EVERY {
            last_progress = now;
            let waiting: Vec<String> = missing
                .iter()
                .map(|(i, why)| format!("{} {why}", nodes[*i].name))
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

fn cancelled<W: Watched>(record: &W) -> Error {
    Error::Cancelled(format!("waiting for network `{}` to be ready", record.network()))
}

async fn not_ready<W: Watched>(record: &W, index: usize, reason: String) -> Error {
    Error::NotReady {
        network: record.network().to_string(),
        node: record.nodes()[index].name.to_string(),
        reason,
        log_tail: record.log_tail(index).await,
    }
}
