//! Block propagation: a `newHeads` subscription (WebSocket) on every node records when each block first
//! reached that node; a block's propagation to node i is its arrival at i minus its earliest arrival anywhere.
//! A block is settled once every subscribed node has it, or 30 s after its first arrival (a node that never
//! got it then simply has no delay for it). Settled blocks keep their number, gas and whether they hold
//! transactions (from the header's transactions root), and their wall-clock arrivals: the KPIs' block times come
//! from arrivals, since BFT clients stamp blocks to the second.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

/// How long an unsettled block waits for the nodes that have not seen it.
const SETTLE_AFTER: Duration = Duration::from_secs(30);
/// Blocks tracked at most (older ones are dropped first).
const MAX_BLOCKS: usize = 4096;

/// The transactions root of a block without transactions: keccak256 of the RLP of an empty list.
const EMPTY_TRIE_ROOT: &str = "0x56e81f171bcc55a6ff8345e692c0f86e5b48e01b996cadc001622fb5e363b421";

/// What a `newHeads` header says of its block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    pub number: Option<u64>,
    /// The hash's first 48 bits (exact in a sample's f64): tells apart blocks of one number (forks, or nodes
    /// that do not peer).
    pub hash48: Option<u64>,
    pub gas_used: Option<u64>,
    pub gas_limit: Option<u64>,
    /// Holds no transaction.
    pub empty: Option<bool>,
}

/// A block every node has (or that waited long enough), with when it reached each.
#[derive(Debug, Clone, PartialEq)]
pub struct SettledBlock {
    pub header: Header,
    /// Arrival at each node, wall clock, earliest first.
    pub arrivals: Vec<(String, chrono::DateTime<chrono::Utc>)>,
}

#[derive(Debug, Default)]
struct Arrivals {
    /// Block hash -> (first seen, header, arrival per node).
    blocks: BTreeMap<String, (Instant, Header, BTreeMap<String, Instant>)>,
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

    /// The blocks settled since the last call, oldest first.
    pub fn take_settled(&self) -> Vec<SettledBlock> {
        self.take(false)
    }

    /// Every block seen and not yet taken, settled or not (when watching ends), oldest first.
    pub fn take_all(&self) -> Vec<SettledBlock> {
        self.take(true)
    }

    fn take(&self, all: bool) -> Vec<SettledBlock> {
        let Ok(mut arrivals) = self.arrivals.lock() else {
            return Vec::new();
        };
        let (now, wall) = (Instant::now(), chrono::Utc::now());
        let to_wall =
            |at: Instant| wall - chrono::Duration::from_std(now.saturating_duration_since(at)).unwrap_or_default();
        let settled: Vec<String> = arrivals
            .blocks
            .iter()
            .filter(|(_, (first, _, seen))| all || seen.len() >= self.nodes || first.elapsed() >= SETTLE_AFTER)
            .map(|(hash, _)| hash.clone())
            .collect();
        let mut blocks: Vec<(Instant, SettledBlock)> = settled
            .into_iter()
            .filter_map(|hash| arrivals.blocks.remove(&hash))
            .map(|(first, header, seen)| {
                let mut arrivals: Vec<(String, Instant)> = seen.into_iter().collect();
                arrivals.sort_by_key(|(_, at)| *at);
                let arrivals = arrivals.into_iter().map(|(node, at)| (node, to_wall(at))).collect();
                (first, SettledBlock { header, arrivals })
            })
            .collect();
        blocks.sort_by_key(|(first, _)| *first);
        blocks.into_iter().map(|(_, block)| block).collect()
    }
}

/// Each node's delays (ms) behind the earliest arrival, over `blocks`.
pub fn delays_of(blocks: &[SettledBlock]) -> BTreeMap<String, Vec<f64>> {
    let mut delays: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for block in blocks {
        let Some((_, first)) = block.arrivals.first() else {
            continue;
        };
        for (node, at) in &block.arrivals {
            let ms = (*at - *first).num_microseconds().unwrap_or(0) as f64 / 1000.0;
            delays.entry(node.clone()).or_default().push(ms);
        }
    }
    delays
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
    let result = &value["params"]["result"];
    let Some(hash) = result["hash"].as_str() else {
        return;
    };
    let quantity = |key: &str| crate::backend::local::rpc::quantity(&result[key]);
    let Ok(mut arrivals) = arrivals.lock() else { return };
    if arrivals.blocks.len() >= MAX_BLOCKS {
        if let Some(oldest) = arrivals
            .blocks
            .iter()
            .min_by_key(|(_, (first, _, _))| *first)
            .map(|(h, _)| h.clone())
        {
            arrivals.blocks.remove(&oldest);
        }
    }
    let (_, _, seen) = arrivals.blocks.entry(hash.to_string()).or_insert_with(|| {
        let header = Header {
            number: quantity("number"),
            hash48: hash
                .strip_prefix("0x")
                .map(|h| h.get(..12).unwrap_or(h))
                .and_then(|h| u64::from_str_radix(h, 16).ok()),
            gas_used: quantity("gasUsed"),
            gas_limit: quantity("gasLimit"),
            empty: result["transactionsRoot"].as_str().map(|root| root == EMPTY_TRIE_ROOT),
        };
        (now, header, BTreeMap::new())
    });
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
                r#"{{"jsonrpc":"2.0","method":"eth_subscription","params":{{"subscription":"0x1","result":{{"number":"0x5","hash":"{hash}","gasUsed":"0x5208","gasLimit":"0x1c9c380","transactionsRoot":"{EMPTY_TRIE_ROOT}"}}}}}}"#
            )
        };
        record("a", &note("0xaa"), Instant::now(), &propagation.arrivals);
        std::thread::sleep(Duration::from_millis(30));
        assert!(propagation.take_settled().is_empty(), "b has not seen it yet");
        record("b", &note("0xaa"), Instant::now(), &propagation.arrivals);
        record("b", &note("0xaa"), Instant::now(), &propagation.arrivals);
        record(
            "a",
            r#"{"jsonrpc":"2.0","id":1,"result":"0x1"}"#,
            Instant::now(),
            &propagation.arrivals,
        );
        let settled = propagation.take_settled();
        assert_eq!(settled.len(), 1);
        let block = &settled[0];
        assert_eq!(
            block.header,
            Header {
                number: Some(5),
                hash48: Some(0xaa),
                gas_used: Some(21_000),
                gas_limit: Some(30_000_000),
                empty: Some(true)
            }
        );
        let delays = delays_of(&settled);
        assert_eq!(delays["a"], vec![0.0]);
        assert!(delays["b"][0] >= 25.0, "{delays:?}");
        assert_eq!(block.arrivals[0].0, "a", "earliest first");
        assert!(propagation.take_settled().is_empty(), "settled once");
    }
}
