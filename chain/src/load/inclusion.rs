//! Following sent transactions into other nodes' pools (a sample) and into blocks: every new block of the
//! watched node (announced by `newHeads` where the node has a WebSocket, polled otherwise) is read for its
//! transaction hashes; a transaction's inclusion time is when its block was first seen, less its send time, and
//! its confirmation time when the head first stood `confirmations` blocks above it. Memory holds only
//! transactions not yet confirmed.

use std::cell::Cell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::generator::{us, Generator};
use super::record::{Recorder, TxFate};

/// A transfer included, waiting for confirmations.
#[derive(Debug)]
struct Included {
    block: u64,
    seq: u64,
    sent: Instant,
    inclusion_us: u64,
}

/// Sent transfers and where they are.
#[derive(Debug, Default)]
pub struct Tracker {
    pending: HashMap<B256, (u64, Instant)>,
    included: VecDeque<Included>,
    /// The last block read.
    pub last_block: Option<u64>,
    pub sent: u64,
    pub included_count: u64,
    pub confirmed: u64,
    /// Transfers sent since [`Tracker::mark`], and how many of those are included.
    pub window_sent: u64,
    pub window_included: u64,
    window_seqs: std::collections::HashSet<u64>,
    /// Sampled transactions' time to reach another node, until their fate is recorded.
    pool: HashMap<u64, u64>,
    /// How many sampled transactions reached another node.
    pub pool_seen: u64,
    /// The run's start, which records' send times count from.
    start: Option<Instant>,
}

impl Tracker {
    /// A tracker whose records count send times from `start`.
    pub fn new(start: Instant) -> Tracker {
        Tracker {
            start: Some(start),
            ..Tracker::default()
        }
    }

    fn sent_us(&self, sent: Instant) -> u64 {
        self.start
            .map_or(0, |start| sent.saturating_duration_since(start).as_micros() as u64)
    }

    /// A node accepted transfer `seq` with `hash`, sent at `at`.
    pub fn sent(&mut self, hash: B256, seq: u64, at: Instant) {
        self.pending.insert(hash, (seq, at));
        self.sent += 1;
        self.window_sent += 1;
        self.window_seqs.insert(seq);
    }

    /// Transaction `seq` was seen by another node `us` after it was sent.
    pub fn in_pool(&mut self, seq: u64, us: u64) {
        self.pool.insert(seq, us);
        self.pool_seen += 1;
    }

    /// Starts a new window (a step of a breaking-point search).
    pub fn mark(&mut self) {
        self.window_sent = 0;
        self.window_included = 0;
        self.window_seqs.clear();
    }

    /// Block `number`, first seen at `at`, holds `hashes`.
    pub fn block(&mut self, number: u64, hashes: &[B256], at: Instant) {
        for hash in hashes {
            if let Some((seq, sent)) = self.pending.remove(hash) {
                self.included_count += 1;
                if self.window_seqs.remove(&seq) {
                    self.window_included += 1;
                }
                self.included.push_back(Included {
                    block: number,
                    seq,
                    sent,
                    inclusion_us: at.saturating_duration_since(sent).as_micros() as u64,
                });
            }
        }
        self.last_block = Some(self.last_block.map_or(number, |b| b.max(number)));
    }

    /// The head is `head` at `at`: transfers `confirmations` deep are confirmed and recorded.
    pub fn head(&mut self, head: u64, confirmations: u64, at: Instant, recorder: &mut Recorder) {
        while let Some(first) = self.included.front() {
            if first.block + confirmations > head {
                break;
            }
            let done = self.included.pop_front().expect("front exists");
            self.confirmed += 1;
            recorder.tx(TxFate {
                seq: done.seq,
                sent_us: self.sent_us(done.sent),
                inclusion_us: Some(done.inclusion_us),
                confirmation_us: Some(at.saturating_duration_since(done.sent).as_micros() as u64),
                pool_us: self.pool.remove(&done.seq),
            });
        }
    }

    /// Nothing left to follow.
    pub fn settled(&self) -> bool {
        self.pending.is_empty() && self.included.is_empty()
    }

    /// Records what is still open: included but unconfirmed, or never seen.
    pub fn finish(&mut self, recorder: &mut Recorder) {
        let start = self.start;
        let sent_us = |sent: Instant| start.map_or(0, |s| sent.saturating_duration_since(s).as_micros() as u64);
        for done in self.included.drain(..) {
            recorder.tx(TxFate {
                seq: done.seq,
                sent_us: sent_us(done.sent),
                inclusion_us: Some(done.inclusion_us),
                confirmation_us: None,
                pool_us: self.pool.remove(&done.seq),
            });
        }
        for (_, (seq, sent)) in self.pending.drain() {
            recorder.tx(TxFate {
                seq,
                sent_us: sent_us(sent),
                pool_us: self.pool.remove(&seq),
                ..Default::default()
            });
        }
    }
}

/// One transaction in this many is followed into another node's pool.
pub const POOL_SAMPLE: u64 = 10;
/// At most this many are followed at once.
pub const MAX_POOL_PROBES: u32 = 32;
/// A probe gives up after this long.
const POOL_PROBE_LIMIT: Duration = Duration::from_secs(10);

/// Polls node `other` for transaction `hash` (every 25 ms, up to 10 s): when it knows it (in its pool, or
/// already in a block) is the transaction's time to reach another node.
pub async fn pool_probe(generator: Rc<Generator>, hash: alloy_primitives::B256, seq: u64, other: usize, sent: Instant) {
    let node = &generator.targets[other];
    while sent.elapsed() < POOL_PROBE_LIMIT {
        let seen = node
            .rpc("eth_getTransactionByHash", json!([hash]), Duration::from_secs(2))
            .await
            .is_ok_and(|tx| !tx.is_null());
        if seen {
            generator.tracker.borrow_mut().in_pool(seq, us(sent.elapsed()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    generator.pool_probes.set(generator.pool_probes.get() - 1);
}

/// Heads announced by a `newHeads` subscription at `url`, with when each arrived; reconnects after a failure
/// (a second later) until `stop`.
fn subscribe_heads(url: String, stop: CancellationToken) -> mpsc::UnboundedReceiver<(u64, Instant)> {
    let (sender, receiver) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        crate::backend::local::rpc::follow_new_heads(&url, &stop, |text, at| {
            let Ok(value) = serde_json::from_str::<Value>(text) else {
                return true;
            };
            match crate::backend::local::rpc::quantity(&value["params"]["result"]["number"]) {
                Some(number) => sender.send((number, at)).is_ok(),
                None => true,
            }
        })
        .await;
    });
    receiver
}

/// Follows blocks on `target` until `stop`: transactions' inclusion and confirmation. A block is first seen
/// when its `newHeads` notification arrives (with `ws`), or when a poll of the head (every 100 ms without a
/// subscription, every second beside one, in case a notification is missed) finds it.
pub async fn follow_blocks(
    generator: Rc<Generator>,
    target: usize,
    ws: Option<String>,
    confirmations: u64,
    stop: Rc<Cell<bool>>,
) {
    let node = &generator.targets[target];
    let timeout = Duration::from_secs(5);
    let head = |v: &Value| crate::backend::local::rpc::quantity(v);
    let mut last = node
        .rpc("eth_blockNumber", json!([]), timeout)
        .await
        .ok()
        .and_then(|v| head(&v))
        .unwrap_or_default();
    let unsubscribe = CancellationToken::new();
    let _unsubscribe = unsubscribe.clone().drop_guard();
    let mut heads = ws.map(|url| subscribe_heads(url, unsubscribe));
    let poll_every = if heads.is_some() {
        Duration::from_secs(1)
    } else {
        Duration::from_millis(100)
    };
    while !stop.get() {
        let announced = tokio::select! {
            Some(announced) = async {
                match heads.as_mut() {
                    Some(heads) => heads.recv().await,
                    None => std::future::pending().await,
                }
            } => Some(announced),
            _ = tokio::time::sleep(poll_every) => None,
        };
        let (now_head, seen) = match announced {
            Some((number, at)) => (number, at),
            None => {
                let Some(polled) = node
                    .rpc("eth_blockNumber", json!([]), timeout)
                    .await
                    .ok()
                    .and_then(|v| head(&v))
                else {
                    continue;
                };
                (polled, Instant::now())
            }
        };
        for number in last + 1..=now_head {
            let Ok(block) = node
                .rpc("eth_getBlockByNumber", json!([format!("{number:#x}"), false]), timeout)
                .await
            else {
                break;
            };
            let hashes: Vec<alloy_primitives::B256> = block
                .get("transactions")
                .and_then(Value::as_array)
                .map(|txs| txs.iter().filter_map(|h| h.as_str()?.parse().ok()).collect())
                .unwrap_or_default();
            generator.tracker.borrow_mut().block(number, &hashes, seen);
            last = number;
        }
        let mut recorder = generator.recorder.borrow_mut();
        generator
            .tracker
            .borrow_mut()
            .head(last, confirmations, seen, &mut recorder);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn transfers_move_from_sent_to_included_to_confirmed() {
        let mut recorder = Recorder::new(None, &()).unwrap();
        let t0 = Instant::now();
        let mut tracker = Tracker::new(t0);
        let (a, b) = (B256::repeat_byte(1), B256::repeat_byte(2));
        tracker.sent(a, 0, t0);
        tracker.sent(b, 1, t0);
        tracker.block(10, &[a, B256::repeat_byte(9)], t0 + Duration::from_millis(800));
        assert_eq!(tracker.included_count, 1);
        tracker.head(11, 2, t0 + Duration::from_secs(1), &mut recorder);
        assert_eq!(tracker.confirmed, 0);
        tracker.head(12, 2, t0 + Duration::from_secs(2), &mut recorder);
        assert_eq!(tracker.confirmed, 1);
        assert_eq!(recorder.inclusion.len(), 1);
        assert!(
            (799_000..=801_000).contains(&recorder.inclusion.max()),
            "{}",
            recorder.inclusion.max()
        );
        assert!((1_999_000..=2_002_000).contains(&recorder.confirmation.max()));
        assert!(!tracker.settled());
        tracker.finish(&mut recorder);
        assert!(tracker.settled());
        assert_eq!(recorder.inclusion.len(), 1, "the unseen one has no inclusion time");
    }
}
