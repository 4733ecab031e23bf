//! Load: a generator that drives JSON-RPC calls and signed transfers at a network's nodes (or any node's URL)
//! from one core, in open loop (fixed or Poisson arrivals, ramps, a breaking-point search by steps) or closed
//! loop (N users), and reports Caliper's figures with HDR percentiles, errors by type, and transfers'
//! inclusion and confirmation times. See `docs/load.md`.
//!
//! - `spec.rs` the arguments (shared by `chain.load_test` and `dagctl load`) and the plan they make;
//! - `arrivals.rs` intended start times; `calls.rs` call kinds, the weighted mix, answer classification;
//! - `http.rs` the lean HTTP/1.1 client; `senders.rs` keys, nonces and signing (alloy);
//! - `funding.rs` fees, the senders' funding and the token's deployment before the load;
//! - `generator.rs` the calls themselves; `inclusion.rs` following transactions into pools and blocks;
//! - `token.rs` the bundled token's calls;
//! - `record.rs` outcomes, histograms and the per-call records file; `summary.rs` the result.

pub mod arrivals;
pub mod calls;
pub mod funding;
pub mod generator;
pub mod http;
pub mod inclusion;
pub mod record;
pub mod senders;
pub mod spec;
pub mod summary;
pub mod token;

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use alloy_primitives::B256;
use serde_json::json;
use tokio_util::sync::CancellationToken;

pub use generator::Progress;
use generator::{us, Generator, Picker, Target};
use record::Recorder;
pub use spec::{LoadArgs, Mode, Plan, Targets};
use summary::{Latency, StepResult, Summary, TxSummary};

/// Where a run's calls go and what it keeps.
#[derive(Debug, Clone)]
pub struct Setup {
    /// (node name, JSON-RPC URL), in node order.
    pub nodes: Vec<(String, String)>,
    /// WebSocket URLs by node name, where nodes have one: transactions are followed into blocks over a
    /// `newHeads` subscription on the first target (polling its head otherwise).
    pub ws: std::collections::BTreeMap<String, String>,
    pub targets: Targets,
    pub funder: Option<B256>,
    /// For the `raw` kind.
    pub raw_lines: Vec<Vec<u8>>,
    /// The per-call records file.
    pub records: Option<PathBuf>,
}

impl Setup {
    /// The setup `args` make for `nodes`, keeping records in `records`: the funder's key checked, the raw
    /// bodies read.
    pub fn of(
        args: &LoadArgs,
        nodes: Vec<(String, String)>,
        ws: std::collections::BTreeMap<String, String>,
        records: Option<PathBuf>,
    ) -> Result<Setup, String> {
        let funder = args
            .funder_key
            .as_deref()
            .map(spec::parse_key)
            .transpose()
            .map_err(|e| format!("funder_key: {e}"))?;
        let raw_lines = match &args.raw_file {
            Some(path) => read_raw_file(path)?,
            None => Vec::new(),
        };
        Ok(Setup {
            nodes,
            ws,
            targets: args.targets.clone().unwrap_or_default(),
            funder,
            raw_lines,
            records,
        })
    }
}

/// Reads `raw_file`: one JSON-RPC body per non-empty line.
pub fn read_raw_file(path: &str) -> Result<Vec<Vec<u8>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("raw_file {path}: {e}"))?;
    let mut lines = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        serde_json::from_str::<serde_json::Value>(line)
            .map_err(|e| format!("raw_file {path}:{}: not JSON: {e}", i + 1))?;
        lines.push(line.as_bytes().to_vec());
    }
    if lines.is_empty() {
        return Err(format!("raw_file {path} holds no JSON-RPC bodies"));
    }
    Ok(lines)
}

fn mode_name(mode: &Mode) -> String {
    match mode {
        Mode::Open { phases, spacing } if phases.len() == 1 => {
            format!("open loop, {} calls/s, {spacing:?} arrivals", phases[0].rate)
        }
        Mode::Open { phases, .. } => format!("open loop, ramp of {} phases", phases.len()),
        Mode::Closed { users, think, .. } => format!("closed loop, {users} users, think time {think:?}"),
        Mode::Step(step) => format!(
            "breaking point, from {} calls/s by {} every {:?}",
            step.start, step.increase, step.length
        ),
    }
}

/// The targets and how calls are spread over them.
fn targets(setup: &Setup) -> Result<(Vec<Target>, Picker), String> {
    let names: Vec<&str> = setup.nodes.iter().map(|(n, _)| n.as_str()).collect();
    let unknown = |name: &str| format!("targets: no node `{name}` (nodes: {})", names.join(", "));
    let all = || -> Result<Vec<Target>, String> {
        setup
            .nodes
            .iter()
            .map(|(name, url)| Target::new(name.clone(), url))
            .collect()
    };
    match &setup.targets {
        Targets::RoundRobin => Ok((all()?, Picker::RoundRobin(Cell::new(0)))),
        Targets::Node(name) => {
            let (name, url) = setup
                .nodes
                .iter()
                .find(|(n, _)| n == name)
                .ok_or_else(|| unknown(name))?;
            Ok((vec![Target::new(name.clone(), url)?], Picker::RoundRobin(Cell::new(0))))
        }
        Targets::Weights(weights) => {
            for name in weights.keys() {
                if !names.contains(&name.as_str()) {
                    return Err(unknown(name));
                }
            }
            let total: f64 = weights.values().sum();
            if total <= 0.0 {
                return Err("targets: the weights add up to 0".into());
            }
            let mut sum = 0.0;
            let cumulative = setup
                .nodes
                .iter()
                .map(|(name, _)| {
                    sum += weights.get(name).copied().unwrap_or(0.0) / total;
                    sum
                })
                .collect();
            Ok((
                all()?,
                Picker::Weighted {
                    cumulative,
                    rng: Cell::new(0x2545_F491_4F6C_DD1D),
                },
            ))
        }
    }
}

/// Runs a load test on this thread's runtime, inside a `LocalSet`. `progress` is called every second;
/// `note` says what setup does.
pub async fn run(
    plan: Plan,
    setup: Setup,
    cancel: CancellationToken,
    progress: &mut (dyn FnMut(&Progress) + Send),
    note: &(dyn Fn(&str) + Send + Sync),
) -> Result<Summary, String> {
    let (targets, picker) = targets(&setup)?;
    if targets.is_empty() {
        return Err("no node to send load to".into());
    }
    let funder_address = setup.funder.as_ref().and_then(|f| {
        alloy_signer_local::PrivateKeySigner::from_bytes(f)
            .ok()
            .map(|k| format!("{:#x}", k.address()))
    });
    let uses = |names: &[&str]| {
        plan.weights
            .iter()
            .any(|(k, w)| *w > 0.0 && names.contains(&k.as_str()))
    };
    let transfers = if uses(calls::SENDING) || uses(calls::TOKEN) {
        let funder = setup.funder.ok_or("transfers and token workloads need funder_key")?;
        let with_token = uses(calls::TOKEN);
        let prepared = funding::prepare_transfers(
            &targets[0],
            &funder,
            plan.senders,
            plan.value,
            with_token,
            plan.timeout,
            note,
        )
        .await?;
        Some(prepared)
    } else {
        None
    };
    let token = transfers.as_ref().and_then(|t| {
        let holder = t.senders.senders.borrow().first().map(|s| s.key.address())?;
        Some((t.token?, holder))
    });
    let kinds = calls::kinds(&plan.weights, funder_address.as_deref(), &setup.raw_lines, token);
    let kind_names: Vec<String> = kinds.iter().map(|k| k.name.clone()).collect();
    let meta = json!({
        "started_at": chrono::Utc::now(),
        "mode": mode_name(&plan.mode),
        "kinds": kind_names,
        "nodes": targets.iter().map(|t| t.name.clone()).collect::<Vec<_>>(),
        "outcomes": ["ok", "rpc_error", "http", "timeout", "refused", "reset", "garbage", "dropped"],
        "sending_kinds": kinds.iter().filter(|k| k.sends()).map(|k| k.name.clone()).collect::<Vec<_>>(),
        "confirmations": plan.confirmations,
        "timeout_ms": plan.timeout.as_millis() as u64,
    });
    let recorder = Recorder::new(setup.records.as_deref(), &meta)?;
    let target_names: Vec<String> = targets.iter().map(|t| t.name.clone()).collect();
    let has_transfers = kinds.iter().any(calls::Kind::sends);
    let token_address = token.map(|(t, _)| format!("{t:#x}"));
    let accounts = transfers.as_ref().map(|t| {
        let senders = t
            .senders
            .senders
            .borrow()
            .iter()
            .map(|s| format!("{:#x}", s.key.address()))
            .collect();
        let receivers = t.receivers.iter().map(|r| format!("{r:#x}")).collect();
        (senders, receivers)
    });
    let generator = Rc::new(Generator::new(
        targets,
        picker,
        kinds,
        recorder,
        transfers,
        plan.timeout,
        plan.max_in_flight,
    ));
    let following = Rc::new(Cell::new(false));
    let follow_ws = setup.ws.get(&generator.targets[0].name).cloned();
    if has_transfers {
        tokio::task::spawn_local(inclusion::follow_blocks(
            generator.clone(),
            0,
            follow_ws.clone(),
            plan.confirmations,
            following.clone(),
        ));
    }
    // Stop at max_calls, or at the duration cap: by intended time in open loop, by the clock in closed loop.
    let cap = plan.duration;
    let max_calls = plan.max_calls;
    let stop =
        move |g: &Generator, at: Duration| max_calls.is_some_and(|m| g.calls() >= m) || cap.is_some_and(|c| at >= c);
    let work = async {
        let mut steps = Vec::new();
        let mut sustainable = None;
        match &plan.mode {
            Mode::Open { phases, spacing } => {
                let mut start = Duration::ZERO;
                for (index, phase) in phases.iter().enumerate() {
                    let index = u16::try_from(index).unwrap_or(u16::MAX);
                    generator.recorder.borrow_mut().phase(index, us(start), phase.rate);
                    start += phase.length;
                }
                generator
                    .open_loop(phases.clone(), *spacing, Duration::ZERO, &stop, &cancel)
                    .await;
            }
            Mode::Closed { users, think, length } => {
                generator.recorder.borrow_mut().phase(0, 0, f64::from(*users));
                let until = length.map(|l| generator.start + l);
                let user = || async {
                    while !cancel.is_cancelled()
                        && !stop(&generator, generator.start.elapsed())
                        && until.is_none_or(|u| Instant::now() < u)
                    {
                        generator.call_now().await;
                        if !think.is_zero() {
                            tokio::time::sleep(*think).await;
                        }
                    }
                };
                futures_util::future::join_all((0..*users).map(|_| user())).await;
            }
            Mode::Step(step) => {
                let mut rate = step.start;
                for _ in 0..step.max_steps {
                    if step.max_rate.is_some_and(|m| rate > m)
                        || cancel.is_cancelled()
                        || stop(&generator, generator.start.elapsed())
                    {
                        break;
                    }
                    let pool_before = pending_pool(&generator.targets[0]).await;
                    generator.take_step();
                    generator.tracker.borrow_mut().mark();
                    let offset = generator.start.elapsed();
                    let index = u16::try_from(steps.len()).unwrap_or(u16::MAX);
                    generator.recorder.borrow_mut().phase(index, us(offset), rate);
                    let phase = arrivals::Phase {
                        rate,
                        length: step.length,
                    };
                    generator
                        .open_loop(vec![phase], step.spacing, offset, &stop, &cancel)
                        .await;
                    generator.drain(plan.timeout).await;
                    // Transfers of the step's last moments get the call timeout to be included.
                    let until = Instant::now() + plan.timeout;
                    while has_transfers && Instant::now() < until {
                        let caught_up = {
                            let t = generator.tracker.borrow();
                            t.window_included >= t.window_sent
                        };
                        if caught_up {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    let (sent, ok, failed, p99_ms) = generator.take_step();
                    let (tx_sent, tx_included) = {
                        let t = generator.tracker.borrow();
                        (t.window_sent, t.window_included)
                    };
                    let error_rate = if ok + failed > 0 {
                        failed as f64 / (ok + failed) as f64
                    } else {
                        0.0
                    };
                    let max_p99_ms = step.max_p99.as_secs_f64() * 1000.0;
                    let broke = if error_rate > step.max_error_rate {
                        Some(format!(
                            "error rate {:.2}% above {:.2}%",
                            error_rate * 100.0,
                            step.max_error_rate * 100.0
                        ))
                    } else if p99_ms > max_p99_ms {
                        Some(format!("p99 {p99_ms:.1} ms above {max_p99_ms:.0} ms"))
                    } else if tx_sent > 0 && (tx_included as f64) < 0.9 * tx_sent as f64 {
                        Some(format!(
                            "inclusion fell behind: {tx_included} of {tx_sent} transfers included"
                        ))
                    } else {
                        None
                    };
                    let pool_after = pending_pool(&generator.targets[0]).await;
                    let done = broke.is_some();
                    steps.push(StepResult {
                        rate,
                        sent,
                        ok,
                        error_rate,
                        p99_ms,
                        tx_sent,
                        tx_included,
                        pool_before,
                        pool_after,
                        broke,
                    });
                    if done {
                        break;
                    }
                    sustainable = Some(rate);
                    rate += step.increase;
                }
            }
        }
        (steps, sustainable)
    };
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    ticker.tick().await;
    let (steps, sustainable) = loop {
        tokio::select! {
            result = &mut work => break result,
            _ = ticker.tick() => progress(&generator.progress()),
        }
    };
    generator.drain(plan.timeout + Duration::from_secs(1)).await;
    let ended = if cancel.is_cancelled() {
        "cancelled".to_string()
    } else if max_calls.is_some_and(|m| generator.calls() >= m) {
        format!("max_calls ({}) reached", generator.calls())
    } else if cap.is_some_and(|c| generator.start.elapsed() >= c) {
        "duration reached".to_string()
    } else {
        "done".to_string()
    };
    if has_transfers {
        let until = Instant::now() + plan.settle;
        while !generator.tracker.borrow().settled() && Instant::now() < until && !cancel.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    following.set(true);
    let mut recorder = generator.recorder.borrow_mut();
    let mut tracker = generator.tracker.borrow_mut();
    tracker.finish(&mut recorder);
    if let Some(error) = recorder.close() {
        note(&format!("the records file is incomplete: {error}"));
    }
    let (total, kinds) = summary::rows(&recorder, &kind_names);
    let (senders, receivers) = accounts.unwrap_or_default();
    let tx = has_transfers.then(|| TxSummary {
        sent: tracker.sent,
        included: tracker.included_count,
        confirmed: tracker.confirmed,
        confirmations: plan.confirmations,
        inclusion_ms: Latency::of(&recorder.inclusion),
        confirmation_ms: Latency::of(&recorder.confirmation),
        pool_seen: recorder.pool.len(),
        pool_ms: Latency::of(&recorder.pool),
        senders,
        receivers,
        token: token_address,
        blocks_from: follow_ws.map_or_else(|| "polling".to_string(), |ws| format!("newHeads {ws}")),
    });
    Ok(Summary {
        mode: mode_name(&plan.mode),
        targets: target_names,
        seconds: generator.start.elapsed().as_secs_f64(),
        total,
        kinds,
        tx,
        steps,
        sustainable_rate: sustainable,
        records_file: setup.records.as_ref().map(|p| p.display().to_string()),
        ended,
    })
}

/// One line of live figures.
pub fn progress_line(p: &Progress) -> String {
    let errors: Vec<String> = p.errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
    format!(
        "{:>5.0}s  {:>9} calls  {:>8.0}/s  in flight {:>5}  p50 {:>7.2} ms  p99 {:>8.2} ms  errors: {}",
        p.elapsed.as_secs_f64(),
        p.sent,
        p.rate,
        p.in_flight,
        p.p50_ms,
        p.p99_ms,
        if errors.is_empty() {
            "none".to_string()
        } else {
            errors.join(", ")
        }
    )
}

/// Raises this process's soft limit of open files to its hard limit (best effort): an open loop against a
/// stalled node holds a connection per call in flight, and the usual soft limit of 1,024 is soon reached. A
/// call that still finds no socket is counted as `dropped` (not sent), not as a node's failure.
fn raise_open_files() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < hard {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
        }
    }
}

/// The target's pending transactions, when its client says (`txpool_status`).
async fn pending_pool(target: &Target) -> Option<u64> {
    let status = target
        .rpc("txpool_status", json!([]), Duration::from_secs(2))
        .await
        .ok()?;
    crate::backend::local::rpc::quantity(status.get("pending")?)
}

/// [`run`] on a thread of its own: a single-threaded runtime and a `LocalSet`, so the generator holds one
/// core and nothing else runs on it. Call it from a blocking context (`spawn_blocking`, a thread).
pub fn run_blocking(
    plan: Plan,
    setup: Setup,
    cancel: CancellationToken,
    mut progress: impl FnMut(&Progress) + Send,
    note: impl Fn(&str) + Send + Sync,
) -> Result<Summary, String> {
    raise_open_files();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the generator's runtime: {e}"))?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, run(plan, setup, cancel, &mut progress, &note))
}
