//! Block propagation: a `newHeads` subscription (WebSocket) on every node records when each block first
//! reached that node; a block's propagation to node i is its arrival at i minus its earliest arrival anywhere.
//! A block is settled once every subscribed node has it, or 30 s after its first arrival (a node that never
//! got it then simply has no delay for it).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How long an unsettled block waits for the nodes that have not seen it.
const SETTLE_AFTER: Duration = Duration::from_secs(30);
/// Blocks tracked at most (older ones are dropped first).
const MAX_BLOCKS: usize = 4096;

#[derive(Debug, Default)]
struct Arrivals {
    /// Block hash -> (first seen, arrival per node).
    blocks: BTreeMap<String, (Instant, BTreeMap<String, Instant>)>,
}

/// Subscriptions to every node's new heads, and the arrivals they recorded.
#[derive(Debug)]
pub struct Propagation {
    arrivals: Arc<Mutex<Arrivals>>,
    nodes: usize,
    stop: CancellationToken,
}

impl Drop for Propagation {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Propagation {
    /// Subscribes to `nodes` (name, WebSocket URL); must be called within a tokio runtime. A subscription that
    /// fails or closes is opened again after a second, for as long as this lives.
    pub fn start(nodes: &[(String, String)]) -> Self {
        let arrivals = Arc::new(Mutex::new(Arrivals::default()));
        let stop = CancellationToken::new();
        for (node, url) in nodes {
            tokio::spawn(subscribe(node.clone(), url.clone(), arrivals.clone(), stop.clone()));
        }
        Self {
            arrivals,
            nodes: nodes.len(),
            stop,
        }
    }

    /// The delays (ms) of the blocks settled since the last call, by node.
    pub fn take_delays(&self) -> BTreeMap<String, Vec<f64>> {
        let mut delays: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let Ok(mut arrivals) = self.arrivals.lock() else {
            return delays;
        };
        let settled: Vec<String> = arrivals
            .blocks
            .iter()
            .filter(|(_, (first, seen))| seen.len() >= self.nodes || first.elapsed() >= SETTLE_AFTER)
            .map(|(hash, _)| hash.clone())
            .collect();
        for hash in settled {
            if let Some((first, seen)) = arrivals.blocks.remove(&hash) {
                for (node, at) in seen {
                    delays
                        .entry(node)
                        .or_default()
                        .push(at.duration_since(first).as_secs_f64() * 1000.0);
                }
            }
        }
        delays
    }
}

async fn subscribe(node: String, url: String, arrivals: Arc<Mutex<Arrivals>>, stop: CancellationToken) {
    crate::backend::local::rpc::follow_new_heads(&url, &stop, |text, at| {
        record(&node, text, at, &arrivals);
        true
    })
    .await;
}

/// Records a `newHeads` notification's block as arrived at `node` at `now` (the first time only).
fn record(node: &str, text: &str, now: Instant, arrivals: &Mutex<Arrivals>) {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    if value["method"] != "eth_subscription" {
        return;
    }
    let Some(hash) = value["params"]["result"]["hash"].as_str() else {
        return;
    };
    let Ok(mut arrivals) = arrivals.lock() else { return };
    if arrivals.blocks.len() >= MAX_BLOCKS {
        if let Some(oldest) = arrivals
            .blocks
            .iter()
            .min_by_key(|(_, (first, _))| *first)
            .map(|(h, _)| h.clone())
        {
            arrivals.blocks.remove(&oldest);
        }
    }
    let (_, seen) = arrivals
        .blocks
        .entry(hash.to_string())
        .or_insert_with(|| (now, BTreeMap::new()));
    seen.entry(node.to_string()).or_insert(now);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_are_arrivals_minus_the_first_and_blocks_settle_when_all_nodes_have_them() {
        let propagation = Propagation {
            arrivals: Arc::new(Mutex::new(Arrivals::default())),
            nodes: 2,
            stop: CancellationToken::new(),
        };
        let note = |hash: &str| {
            format!(
                r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"0x1","result":{{"number":"0x5","hash":"{hash}"}}}}}}"#
            )
        };
        record("a", &note("0xaa"), Instant::now(), &propagation.arrivals);
        std::thread::sleep(Duration::from_millis(30));
        assert!(propagation.take_delays().is_empty(), "b has not seen it yet");
        record("b", &note("0xaa"), Instant::now(), &propagation.arrivals);
        record("b", &note("0xaa"), Instant::now(), &propagation.arrivals);
        record(
            "a",
            r#"{"jsonrpc":"2.0","id":1,"result":"0x1"}"#,
            Instant::now(),
            &propagation.arrivals,
        );
        let delays = propagation.take_delays();
        assert_eq!(delays["a"], vec![0.0]);
        assert!(delays["b"][0] >= 25.0, "{delays:?}");
        assert!(propagation.take_delays().is_empty(), "settled once");
    }
}
