//! The generator: one thread, one single-threaded runtime, calls as local tasks sharing plain cells (no locks,
//! no atomics on the hot path). Open loop starts each call at its intended time whatever the node does, and
//! measures latency from that time; closed loop runs N users, each waiting for its answer (and its think
//! time) before the next call. Calls beyond `max_in_flight` are not sent and count as dropped.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use alloy_primitives::{Bytes, TxKind, U256};
use hdrhistogram::Histogram;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::arrivals::{Arrivals, Phase, Spacing};
use super::calls::{self, Body, Kind, Mix, TxWork};
use super::funding::{pending_nonce, Transfers};
use super::http::{self, Connection, Endpoint, Failure};
use super::inclusion::{pool_probe, Tracker, MAX_POOL_PROBES, POOL_SAMPLE};
use super::record::{Call, Outcome, Recorder};
use super::senders::{self, NonceFate};
use super::token;

/// A node calls go to.
pub struct Target {
    pub name: String,
    pub endpoint: Endpoint,
    pool: RefCell<Vec<Connection>>,
}

impl Target {
    pub fn new(name: String, url: &str) -> Result<Target, String> {
        Ok(Target {
            name,
            endpoint: Endpoint::parse(url)?,
            pool: RefCell::new(Vec::new()),
        })
    }

    /// One JSON-RPC call (setup and following, not load): the result, or why not.
    pub async fn rpc(&self, method: &str, params: Value, timeout: Duration) -> Result<Value, String> {
        let body = calls::request(method, &params.to_string());
        let answer = http::post(&self.endpoint, &self.pool, body.as_bytes(), timeout)
            .await
            .map_err(|f| format!("{method} on `{}`: {f:?}", self.name))?;
        match calls::classify(answer.status, &answer.body) {
            (Outcome::Ok, _) => calls::result(&answer.body).ok_or_else(|| format!("{method}: no result")),
            (outcome, message) => Err(format!(
                "{method} on `{}`: {}{}",
                self.name,
                outcome.name(),
                message.map(|m| format!(": {m}")).unwrap_or_default()
            )),
        }
    }
}

/// Which target the next call goes to.
pub enum Picker {
    RoundRobin(Cell<usize>),
    Weighted { cumulative: Vec<f64>, rng: Cell<u64> },
}

impl Picker {
    pub fn pick(&self, targets: usize) -> usize {
        match self {
            Picker::RoundRobin(next) => {
                let i = next.get() % targets.max(1);
                next.set(i + 1);
                i
            }
            Picker::Weighted { cumulative, rng } => {
                let mut x = rng.get();
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                rng.set(x);
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                cumulative.iter().position(|c| u < *c).unwrap_or(cumulative.len() - 1)
            }
        }
    }
}

/// Progress, for the live line.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub elapsed: Duration,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub in_flight: u32,
    /// Calls answered in the last second.
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Failed calls so far by type.
    pub errors: Vec<(String, u64)>,
}

/// Counts of a window (the last second, or a step).
struct Window {
    sent: u64,
    ok: u64,
    failed: u64,
    latency: Histogram<u64>,
}

impl Window {
    fn new() -> Window {
        Window {
            sent: 0,
            ok: 0,
            failed: 0,
            latency: Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"),
        }
    }
}

/// Everything the calls share.
pub struct Generator {
    pub targets: Vec<Target>,
    pub picker: Picker,
    pub kinds: Vec<Kind>,
    mix: RefCell<Mix>,
    raw_next: Cell<usize>,
    pub recorder: RefCell<Recorder>,
    pub transfers: Option<Transfers>,
    pub tracker: RefCell<Tracker>,
    in_flight: Cell<u32>,
    seq: Cell<u64>,
    pub start: Instant,
    pub timeout: Duration,
    max_in_flight: u32,
    /// Closed loop measures from the send, open loop from the intended time.
    open_loop: Cell<bool>,
    second: RefCell<Window>,
    step: RefCell<Window>,
    totals: Cell<(u64, u64)>,
    /// Pool probes running.
    pub(super) pool_probes: Cell<u32>,
}

/// How close to an arrival the dispatcher stops sleeping and starts yielding.
const SPIN: Duration = Duration::from_micros(1500);

pub(super) fn us(d: Duration) -> u64 {
    d.as_micros() as u64
}

impl Generator {
    pub fn new(
        targets: Vec<Target>,
        picker: Picker,
        kinds: Vec<Kind>,
        recorder: Recorder,
        transfers: Option<Transfers>,
        timeout: Duration,
        max_in_flight: u32,
    ) -> Generator {
        let mix = Mix::new(&kinds, 0x9E37_79B9_7F4A_7C15);
        let start = Instant::now();
        Generator {
            targets,
            picker,
            kinds,
            mix: RefCell::new(mix),
            raw_next: Cell::new(0),
            recorder: RefCell::new(recorder),
            transfers,
            tracker: RefCell::new(Tracker::new(start)),
            in_flight: Cell::new(0),
            seq: Cell::new(0),
            start,
            timeout,
            max_in_flight,
            open_loop: Cell::new(true),
            second: RefCell::new(Window::new()),
            step: RefCell::new(Window::new()),
            totals: Cell::new((0, 0)),
            pool_probes: Cell::new(0),
        }
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.get()
    }

    pub fn calls(&self) -> u64 {
        self.seq.get()
    }

    /// Starts one call meant to start at `intended` (from the run's start), as a local task.
    pub fn launch(self: &Rc<Self>, intended: Duration) {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        let kind = self.mix.borrow_mut().pick();
        let node = self.picker.pick(self.targets.len());
        if self.in_flight.get() >= self.max_in_flight {
            self.finish(seq, kind, node, intended, self.start.elapsed(), Outcome::Dropped);
            return;
        }
        self.in_flight.set(self.in_flight.get() + 1);
        let this = self.clone();
        tokio::task::spawn_local(async move {
            let sent = this.start.elapsed();
            let outcome = this.call(seq, kind, node).await;
            this.in_flight.set(this.in_flight.get() - 1);
            this.finish(seq, kind, node, intended, sent, outcome);
        });
    }

    /// One call, run to its end (closed loop).
    pub async fn call_now(self: &Rc<Self>) {
        self.open_loop.set(false);
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        let kind = self.mix.borrow_mut().pick();
        let node = self.picker.pick(self.targets.len());
        self.in_flight.set(self.in_flight.get() + 1);
        let sent = self.start.elapsed();
        let outcome = self.call(seq, kind, node).await;
        self.in_flight.set(self.in_flight.get() - 1);
        self.finish(seq, kind, node, sent, sent, outcome);
    }

    fn finish(&self, seq: u64, kind: usize, node: usize, intended: Duration, sent: Duration, outcome: Outcome) {
        let now = self.start.elapsed();
        let from = if self.open_loop.get() { intended } else { sent };
        let latency = us(now.saturating_sub(from));
        self.recorder.borrow_mut().call(Call {
            seq,
            kind: kind as u8,
            node: node as u16,
            intended_us: us(intended),
            sent_us: us(sent),
            latency_us: latency,
            outcome,
        });
        let (mut ok, mut failed) = self.totals.get();
        for window in [&self.second, &self.step] {
            let mut w = window.borrow_mut();
            w.sent += u64::from(outcome != Outcome::Dropped);
            if outcome == Outcome::Ok {
                w.ok += 1;
            } else {
                w.failed += 1;
            }
            if outcome != Outcome::Dropped {
                w.latency.saturating_record(latency.max(1));
            }
        }
        if outcome == Outcome::Ok {
            ok += 1;
        } else {
            failed += 1;
        }
        self.totals.set((ok, failed));
    }

    async fn call(self: &Rc<Self>, seq: u64, kind: usize, node: usize) -> Outcome {
        let target = &self.targets[node];
        let body = match &self.kinds[kind].body {
            Body::Fixed(bytes) => return self.post(target, bytes).await.0,
            Body::Raw(lines) if lines.is_empty() => return Outcome::Garbage,
            Body::Raw(lines) => {
                let i = self.raw_next.get();
                self.raw_next.set(i + 1);
                lines[i % lines.len()].clone()
            }
            Body::Tx(work) => {
                let work = *work;
                return match tokio::time::timeout(self.timeout, self.transaction(seq, node, work)).await {
                    Ok(outcome) => outcome,
                    Err(_) => Outcome::Timeout,
                };
            }
        };
        self.post(target, &body).await.0
    }

    /// POSTs `body` to `target`: the outcome, and a JSON-RPC error's message.
    async fn post(&self, target: &Target, body: &[u8]) -> (Outcome, Option<String>) {
        match http::post(&target.endpoint, &target.pool, body, self.timeout).await {
            Ok(answer) => calls::classify(answer.status, &answer.body),
            Err(failure) => (failure_outcome(failure), None),
        }
    }

    /// A signed transaction from the next free sender. Dropped before its end (a timeout), the sender's lease
    /// marks the nonce unknown.
    async fn transaction(self: &Rc<Self>, seq: u64, node: usize, work: TxWork) -> Outcome {
        let target = &self.targets[node];
        let Some(transfers) = &self.transfers else {
            return Outcome::Garbage;
        };
        let mut lease = transfers.senders.lease().await;
        let (key, nonce, needs_sync) = {
            let senders = transfers.senders.senders.borrow();
            let sender = &senders[lease.index];
            (sender.key.clone(), sender.next_nonce, sender.needs_sync)
        };
        let nonce = if needs_sync {
            match pending_nonce(target, &key, self.timeout).await {
                Ok(pending) => {
                    let mut senders = transfers.senders.senders.borrow_mut();
                    senders[lease.index].needs_sync = false;
                    senders[lease.index].next_nonce = pending;
                    pending
                }
                Err(_) => return Outcome::Timeout,
            }
        } else {
            nonce
        };
        let r = transfers.next_receiver.get();
        transfers.next_receiver.set(r + 1);
        let to = transfers.receivers[r % transfers.receivers.len()];
        let token = transfers.token.unwrap_or_default();
        let fees = match work {
            TxWork::LowFeeTransfer => &transfers.low_fees,
            _ => &transfers.fees,
        };
        let (legacy, kind, value, input, gas) = match work {
            TxWork::Transfer { legacy } => (legacy, TxKind::Call(to), transfers.value, Bytes::new(), 21_000),
            TxWork::LowFeeTransfer => (false, TxKind::Call(to), transfers.value, Bytes::new(), 21_000),
            TxWork::TokenTransfer => (
                false,
                TxKind::Call(token),
                U256::ZERO,
                token::transfer_data(&to, U256::from(1u64)),
                token::TRANSFER_GAS,
            ),
            TxWork::TokenDeploy => match token::deploy_data(&[key.address()], U256::from(1u64)) {
                Ok(code) => (false, TxKind::Create, U256::ZERO, code, token::deploy_gas(1)),
                Err(_) => {
                    lease.settle(NonceFate::Free);
                    return Outcome::Garbage;
                }
            },
        };
        let signed = match senders::sign_tx(&key, fees, legacy, nonce, kind, value, input, gas) {
            Ok(signed) => signed,
            Err(_) => {
                lease.settle(NonceFate::Free);
                return Outcome::Garbage;
            }
        };
        let body = calls::request("eth_sendRawTransaction", &format!("[\"{}\"]", signed.raw_hex));
        let sent_at = Instant::now();
        let (outcome, message) = self.post(target, body.as_bytes()).await;
        let fate = match outcome {
            Outcome::Ok => {
                self.tracker.borrow_mut().sent(signed.hash, seq, sent_at);
                // Every tenth transaction, while few are followed: when does another node have it?
                if self.targets.len() > 1 && seq.is_multiple_of(POOL_SAMPLE) && self.pool_probes.get() < MAX_POOL_PROBES
                {
                    self.pool_probes.set(self.pool_probes.get() + 1);
                    let other = (node + 1) % self.targets.len();
                    tokio::task::spawn_local(pool_probe(self.clone(), signed.hash, seq, other, sent_at));
                }
                NonceFate::Used
            }
            Outcome::RpcError(_) => senders::fate_of_error(message.as_deref().unwrap_or_default()),
            // Refused: nothing reached the node.
            Outcome::Refused => NonceFate::Free,
            _ => NonceFate::Unknown,
        };
        lease.settle(fate);
        outcome
    }

    /// The live figures; the last-second window starts again.
    pub fn progress(&self) -> Progress {
        let mut second = self.second.borrow_mut();
        let elapsed = self.start.elapsed();
        let (ok, failed) = self.totals.get();
        let errors = self.error_counts();
        let progress = Progress {
            elapsed,
            sent: self.seq.get(),
            ok,
            failed,
            in_flight: self.in_flight.get(),
            rate: (second.ok + second.failed) as f64,
            p50_ms: second.latency.value_at_quantile(0.5) as f64 / 1000.0,
            p99_ms: second.latency.value_at_quantile(0.99) as f64 / 1000.0,
            errors,
        };
        *second = Window::new();
        progress
    }

    fn error_counts(&self) -> Vec<(String, u64)> {
        let mut errors: std::collections::BTreeMap<String, u64> = Default::default();
        for ((_, outcome), h) in &self.recorder.borrow().calls {
            if *outcome != Outcome::Ok {
                *errors.entry(outcome.name()).or_default() += h.len();
            }
        }
        errors.into_iter().collect()
    }

    /// The step window's (sent, ok, failed, p99 ms); the window starts again.
    pub fn take_step(&self) -> (u64, u64, u64, f64) {
        let mut step = self.step.borrow_mut();
        let figures = (
            step.sent,
            step.ok,
            step.failed,
            step.latency.value_at_quantile(0.99) as f64 / 1000.0,
        );
        *step = Window::new();
        figures
    }

    /// Runs open-loop `phases` until they end, `stop` says so, or `cancel`.
    pub async fn open_loop(
        self: &Rc<Self>,
        phases: Vec<Phase>,
        spacing: Spacing,
        offset: Duration,
        stop: &dyn Fn(&Generator, Duration) -> bool,
        cancel: &CancellationToken,
    ) {
        self.open_loop.set(true);
        let mut arrivals = Arrivals::new(phases, spacing, 0x5DEE_CE66_D1CE_4E5B ^ self.seq.get());
        while let Some((at, _)) = arrivals.peek() {
            let at = at + offset;
            if cancel.is_cancelled() || stop(self, at) {
                return;
            }
            let now = self.start.elapsed();
            if at > now {
                // The runtime's timer ticks in whole milliseconds: sleep to just before the arrival, then
                // yield (answers are read meanwhile) until it is due, so a call starts on time.
                if at - now > SPIN {
                    tokio::select! {
                        _ = tokio::time::sleep_until((self.start + at - SPIN).into()) => {}
                        _ = cancel.cancelled() => return,
                    }
                } else {
                    tokio::task::yield_now().await;
                }
                continue;
            }
            arrivals.advance();
            self.launch(at);
        }
    }

    /// Waits (bounded) for the calls in flight to end.
    pub async fn drain(&self, limit: Duration) {
        let until = Instant::now() + limit;
        while self.in_flight.get() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

fn failure_outcome(failure: Failure) -> Outcome {
    match failure {
        Failure::Refused => Outcome::Refused,
        Failure::Reset => Outcome::Reset,
        Failure::Timeout => Outcome::Timeout,
        Failure::Garbage => Outcome::Garbage,
        Failure::NoSocket => Outcome::Dropped,
    }
}
