//! One node's state over JSON-RPC: head, peers, transaction pool, sync status and the head block's header.
//! Each call is bounded; a node that does not answer is down for this reading, with the reason.

use serde_json::{json, Value};

use crate::backend::local::rpc::{quantity, NodeRpc};
use crate::spec::Client;

/// What one node answered over JSON-RPC at one reading.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
pub struct RpcState {
    pub head: Option<u64>,
    pub peers: Option<u64>,
    pub txpool_pending: Option<u64>,
    pub txpool_queued: Option<u64>,
    pub syncing: Option<bool>,
    pub head_timestamp: Option<u64>,
    pub head_gas_used: Option<u64>,
    pub head_gas_limit: Option<u64>,
    pub head_tx_count: Option<u64>,
    pub head_size: Option<u64>,
    /// Why the node is down (its head could not be read), if it is.
    pub error: Option<String>,
}

/// Reads `rpc`'s state; the calls run concurrently.
pub async fn read(rpc: &NodeRpc, client: Client) -> RpcState {
    let (head, peers, pool, syncing, block) = tokio::join!(
        rpc.block_number(),
        rpc.peer_count(),
        txpool(rpc, client),
        rpc.call("eth_syncing", json!([])),
        rpc.call("eth_getBlockByNumber", json!(["latest", false])),
    );
    let mut state = RpcState::default();
    match head {
        Ok(head) => state.head = Some(head),
        Err(err) => {
            state.error = Some(err.to_string());
            return state;
        }
    }
    state.peers = peers.ok();
    if let Some((pending, queued)) = pool {
        state.txpool_pending = Some(pending);
        state.txpool_queued = queued;
    }
    // `false` when in sync, an object with progress while syncing.
    state.syncing = syncing.ok().map(|v| v != Value::Bool(false));
    if let Some(block) = block.ok().filter(|b| b.is_object()) {
        // The head and its header from one answer: a block made between the two calls would otherwise pair
        // one block's number with the next one's timestamp.
        if let Some(number) = quantity(&block["number"]) {
            state.head = Some(number);
        }
        state.head_timestamp = quantity(&block["timestamp"]);
        state.head_gas_used = quantity(&block["gasUsed"]);
        state.head_gas_limit = quantity(&block["gasLimit"]);
        state.head_size = quantity(&block["size"]);
        state.head_tx_count = block["transactions"].as_array().map(|t| t.len() as u64);
    }
    state
}

/// `(pending, queued)` by the client's own method: `txpool_status` (geth, GoQuorum, anvil),
/// `txpool_besuStatistics` (Besu: local + remote, no queue), `parity_pendingTransactions` (OpenEthereum).
async fn txpool(rpc: &NodeRpc, client: Client) -> Option<(u64, Option<u64>)> {
    match client {
        Client::Besu => {
            let stats = rpc.call("txpool_besuStatistics", json!([])).await.ok()?;
            let count = |key: &str| stats[key].as_u64().or_else(|| quantity(&stats[key]));
            Some((count("localCount")? + count("remoteCount")?, None))
        }
        Client::Openethereum => {
            let pending = rpc.call("parity_pendingTransactions", json!([])).await.ok()?;
            Some((pending.as_array()?.len() as u64, None))
        }
        _ => {
            let status = rpc.call("txpool_status", json!([])).await.ok()?;
            Some((quantity(&status["pending"])?, quantity(&status["queued"])))
        }
    }
}
