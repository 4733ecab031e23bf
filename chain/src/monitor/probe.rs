//! Probe transactions: every `interval` a 0-value transfer to itself, signed here with a prefunded key
//! ([`crate::tx`]), is sent to one node in turn. Then, polling every 50 ms for at most a minute: when it is in
//! each other node's pool (`eth_getTransactionByHash` answers), when it is included (the sending node has its
//! receipt), and when it has `confirmations` blocks on top. Each probe's times become samples of the node it was
//! sent to: `tx_pool_propagation_ms` (mean over the other nodes that saw it), `tx_inclusion_ms`,
//! `tx_confirmation_ms`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::backend::local::rpc::{quantity, NodeRpc};
use crate::keys::NodeKey;
use crate::tx::{LegacyTx, U256};

/// How long one probe is followed.
const FOLLOW_FOR: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// What one probe measured.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeResult {
    /// The node it was sent to.
    pub node: String,
    pub pool_propagation_ms: Option<f64>,
    pub inclusion_ms: Option<f64>,
    pub confirmation_ms: Option<f64>,
    /// Why it could not be sent or followed, if so.
    pub error: Option<String>,
}

/// Sends probes in the background until dropped.
#[derive(Debug)]
pub struct Prober {
    results: Arc<Mutex<Vec<ProbeResult>>>,
    stop: CancellationToken,
}

impl Drop for Prober {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Prober {
    /// Starts probing `nodes` (name, RPC URL) of chain `chain_id` from `key` every `interval`; within a tokio
    /// runtime.
    pub fn start(
        nodes: Vec<(String, String)>,
        key: NodeKey,
        chain_id: u64,
        interval: Duration,
        confirmations: u64,
    ) -> Self {
        let results = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (out, token) = (results.clone(), stop.clone());
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut turn = 0usize;
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = ticker.tick() => {}
                }
                if nodes.is_empty() {
                    return;
                }
                let sender = turn % nodes.len();
                turn += 1;
                let (nodes, key, out, token) = (nodes.clone(), key.clone(), out.clone(), token.clone());
                tokio::spawn(async move {
                    let result = tokio::select! {
                        _ = token.cancelled() => return,
                        result = probe(&nodes, sender, &key, chain_id, confirmations) => result,
                    };
                    if let Ok(mut out) = out.lock() {
                        out.push(result);
                    }
                });
            }
        });
        Self { results, stop }
    }

    /// The probes finished since the last call.
    pub fn take(&self) -> Vec<ProbeResult> {
        self.results
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default()
    }
}

async fn probe(
    nodes: &[(String, String)],
    sender: usize,
    key: &NodeKey,
    chain_id: u64,
    confirmations: u64,
) -> ProbeResult {
    let rpcs: Vec<NodeRpc> = nodes
        .iter()
        .map(|(_, url)| NodeRpc::new(url, Duration::from_secs(2)))
        .collect();
    let mut result = ProbeResult {
        node: nodes[sender].0.clone(),
        ..ProbeResult::default()
    };
    let from = key.address();
    let rpc = &rpcs[sender];
    let prepared = async {
        let nonce = rpc
            .call("eth_getTransactionCount", json!([from, "pending"]))
            .await
            .map_err(|e| e.to_string())?;
        let nonce = quantity(&nonce).ok_or("eth_getTransactionCount answered no number")?;
        let price = rpc.call("eth_gasPrice", json!([])).await.map_err(|e| e.to_string())?;
        let price = quantity(&price).ok_or("eth_gasPrice answered no number")?;
        LegacyTx::transfer(chain_id, nonce, u128::from(price), from, U256::ZERO)
            .sign(key)
            .map_err(|e| e.to_string())
    };
    let signed = match prepared.await {
        Ok(signed) => signed,
        Err(reason) => {
            result.error = Some(reason);
            return result;
        }
    };
    let hash = format!("{}", signed.hash);
    let sent = Instant::now();
    if let Err(err) = rpc.call("eth_sendRawTransaction", json!([signed.raw_hex()])).await {
        result.error = Some(err.to_string());
        return result;
    }
    let mut in_pool: Vec<Option<f64>> = vec![None; nodes.len()];
    let mut included: Option<u64> = None;
    let deadline = sent + FOLLOW_FOR;
    while Instant::now() < deadline {
        let elapsed = || sent.elapsed().as_secs_f64() * 1000.0;
        for (i, other) in rpcs.iter().enumerate() {
            if i == sender || in_pool[i].is_some() {
                continue;
            }
            if other
                .call("eth_getTransactionByHash", json!([hash]))
                .await
                .is_ok_and(|tx| !tx.is_null())
            {
                in_pool[i] = Some(elapsed());
            }
        }
        if included.is_none() {
            if let Ok(receipt) = rpc.call("eth_getTransactionReceipt", json!([hash])).await {
                if let Some(block) = quantity(&receipt["blockNumber"]) {
                    result.inclusion_ms = Some(elapsed());
                    included = Some(block);
                }
            }
        }
        if let Some(block) = included {
            if rpc.block_number().await.is_ok_and(|head| head >= block + confirmations) {
                result.confirmation_ms = Some(elapsed());
                break;
            }
        }
        tokio::time::sleep(POLL).await;
    }
    let seen: Vec<f64> = in_pool.into_iter().flatten().collect();
    if !seen.is_empty() {
        result.pool_propagation_ms = Some(seen.iter().sum::<f64>() / seen.len() as f64);
    }
    if result.confirmation_ms.is_none() {
        result.error = Some(format!("probe {hash} not confirmed within {FOLLOW_FOR:?}"));
    }
    result
}
