//! `dagctl bench monitor`: what watching costs and whether it keeps up, each figure next to a baseline
//! measured in the same run.
//!
//! - **real nodes**: `--nodes` anvil nodes (1 s blocks) watched at 1 s for `--seconds`. The monitor runs on a
//!   thread of its own (a current-thread runtime, its HTTP clients included); its CPU is that thread's
//!   utime + stime. Baseline: the CPU of the watched nodes themselves over the same window.
//! - **replay**: `--replay-nodes` nodes served from recordings of a real node's answers (one loopback HTTP
//!   server each, on another thread), watched at 1 s: whether every reading finishes within its interval, and
//!   the monitor thread's CPU. Baseline: one bare JSON-RPC round trip to one recorded node.
//! - **store**: samples written in the operator's batches (2 s of readings of `--replay-nodes` nodes, 20
//!   metrics each) to a scratch store: samples per second. Baseline: one store round trip.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use chain::lifecycle::{self, DeployRequest};
use chain::local::{NetworkRecord, NodeRecord};
use chain::monitor::{Monitor, Schedule};
use chain::{Client, Consensus, NetworkSpec, SpecDuration};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::bench::{bench_db, Database};
use crate::config::Config;
use crate::output::{print_rows, Format};
use crate::runtime::scratch_backend;

/// Flags of `dagctl bench monitor`.
#[derive(clap::Args, Debug, Clone)]
pub struct MonitorBenchArgs {
    /// Real anvil nodes to watch
    #[arg(long, default_value_t = 4)]
    pub nodes: u32,
    /// Replayed nodes to watch
    #[arg(long, default_value_t = 100)]
    pub replay_nodes: usize,
    /// How long each watch lasts
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    #[arg(long, value_enum, default_value_t = Database::Sqlite)]
    pub database: Database,
    /// PostgreSQL server for the scratch database (default: the configured one, else 127.0.0.1)
    #[arg(long)]
    pub pg_url: Option<String>,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

const INTERVAL: Duration = Duration::from_secs(1);

/// CPU seconds (user + system) of the calling thread.
fn thread_cpu_seconds() -> f64 {
    chain::monitor::host::cpu_seconds("/proc/thread-self/stat").unwrap_or(0.0)
}

/// CPU seconds of a process (all threads).
fn process_cpu_seconds(pid: u32) -> f64 {
    chain::monitor::host::cpu_seconds(&format!("/proc/{pid}/stat")).unwrap_or(0.0)
}

/// What one watch measured.
struct Watched {
    readings: u64,
    cpu_seconds: f64,
    wall_seconds: f64,
    tick_ms: Vec<f64>,
    down_readings: u64,
}

/// Watches `record` on a thread of its own for `seconds`, measuring that thread's CPU.
fn watch_on_own_thread(record: NetworkRecord, seconds: u64) -> Result<Watched> {
    std::thread::spawn(move || -> Result<Watched> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async move {
            let mut monitor = Monitor::new(&record, INTERVAL);
            let mut schedule = Schedule::new(INTERVAL, Some(Instant::now() + Duration::from_secs(seconds)));
            let cancel = CancellationToken::new();
            let (cpu0, wall0) = (thread_cpu_seconds(), Instant::now());
            let mut watched = Watched {
                readings: 0,
                cpu_seconds: 0.0,
                wall_seconds: 0.0,
                tick_ms: Vec::new(),
                down_readings: 0,
            };
            while schedule.next(&cancel).await {
                let started = Instant::now();
                let readings = monitor.tick().await;
                monitor.follow_logs();
                watched.tick_ms.push(started.elapsed().as_secs_f64() * 1000.0);
                watched.readings += readings.len() as u64;
                watched.down_readings += readings.iter().filter(|r| !r.up).count() as u64;
            }
            watched.cpu_seconds = thread_cpu_seconds() - cpu0;
            watched.wall_seconds = wall0.elapsed().as_secs_f64();
            Ok(watched)
        })
    })
    .join()
    .map_err(|_| anyhow!("the monitor thread panicked"))?
}

fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted
        .get(((sorted.len() as f64 - 1.0) * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

fn round(value: f64, digits: i32) -> f64 {
    let factor = 10f64.powi(digits);
    (value * factor).round() / factor
}

pub async fn monitor(config: &Config, args: &MonitorBenchArgs) -> Result<ExitCode> {
    let db = bench_db(config, args.database, args.pg_url.clone()).await?;
    let scratch = std::env::temp_dir().join(format!("dagctl-bench-monitor-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch)?;
    // Clients as the engine finds them; the networks in the scratch dir.
    let backend = scratch_backend(config, &scratch);
    let mut rows = Vec::new();
    let result = run(args, &db.store, &backend, &mut rows).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result?;
    print_rows(
        args.output,
        &[
            "scenario",
            "nodes",
            "readings",
            "cpu_pct_of_core",
            "per_node_pct",
            "tick_ms_p50",
            "tick_ms_p99",
            "kept_up",
            "figure",
            "baseline",
            "ratio_to_baseline",
        ],
        &rows,
    );
    Ok(ExitCode::SUCCESS)
}

async fn run(
    args: &MonitorBenchArgs,
    store: &engine::store::Store,
    backend: &chain::local::LocalBackend,
    rows: &mut Vec<Value>,
) -> Result<()> {
    // Real nodes.
    eprintln!("starting {} anvil nodes ...", args.nodes);
    let mut spec = NetworkSpec::new("bench-monitor", Client::Anvil, Consensus::Interval, args.nodes);
    spec.block_time = Some(SpecDuration::from_secs(1));
    let request = DeployRequest {
        spec,
        ready_timeout: Duration::from_secs(60),
        ttl: None,
        owner: None,
    };
    let deployed = lifecycle::deploy(store, backend, &request, &CancellationToken::new(), &|_: &str| {}).await?;
    let record = deployed.record.clone();
    let outcome = real_and_replay(args, store, &record).await;
    lifecycle::teardown(store, backend, &record.name, &|_: &str| {}).await?;
    rows.extend(outcome?);
    Ok(())
}

async fn real_and_replay(
    args: &MonitorBenchArgs,
    store: &engine::store::Store,
    record: &NetworkRecord,
) -> Result<Vec<Value>> {
    let mut rows = Vec::new();
    eprintln!(
        "watching {} anvil nodes at 1s for {}s ...",
        record.nodes.len(),
        args.seconds
    );
    let pids: Vec<u32> = record.nodes.iter().filter_map(|n| n.pid).collect();
    let nodes_cpu0: f64 = pids.iter().map(|p| process_cpu_seconds(*p)).sum();
    let watched = {
        let record = record.clone();
        let seconds = args.seconds;
        tokio::task::spawn_blocking(move || watch_on_own_thread(record, seconds)).await??
    };
    let nodes_cpu = pids.iter().map(|p| process_cpu_seconds(*p)).sum::<f64>() - nodes_cpu0;
    let n = record.nodes.len() as f64;
    let cpu_pct = watched.cpu_seconds / watched.wall_seconds * 100.0;
    let nodes_pct = nodes_cpu / watched.wall_seconds * 100.0;
    rows.push(json!({
        "scenario": "anvil nodes, 1s",
        "nodes": record.nodes.len(),
        "readings": watched.readings,
        "cpu_pct_of_core": round(cpu_pct, 3),
        "per_node_pct": round(cpu_pct / n, 3),
        "tick_ms_p50": round(percentile(&watched.tick_ms, 0.5), 2),
        "tick_ms_p99": round(percentile(&watched.tick_ms, 0.99), 2),
        "kept_up": watched.down_readings == 0 && percentile(&watched.tick_ms, 0.99) < 1000.0,
        "figure": "monitor thread CPU, % of one core",
        "baseline": format!("the watched anvil nodes' own CPU: {:.3}% of one core", nodes_pct),
        "ratio_to_baseline": round(cpu_pct / nodes_pct.max(1e-9), 3),
    }));

    // Replay: every node answers what the first real node answered, from memory.
    let recorded = record_answers(&record.nodes[0].rpc).await?;
    eprintln!(
        "watching {} replayed nodes at 1s for {}s ...",
        args.replay_nodes, args.seconds
    );
    let (ports, server_stop) = start_replay(args.replay_nodes, recorded.clone())?;
    let replay = NetworkRecord {
        name: "replay".into(),
        nodes: ports
            .iter()
            .enumerate()
            .map(|(i, port)| NodeRecord {
                name: format!("node-{}", i + 1),
                rpc: format!("http://127.0.0.1:{port}"),
                pid: None,
                ws: None,
                enode: None,
                log: std::path::PathBuf::from("/nonexistent/replay.log"),
                data_dir: std::path::PathBuf::from("/nonexistent"),
                ..record.nodes[0].clone()
            })
            .collect(),
        ..record.clone()
    };
    let round_trip = {
        let url = replay.nodes[0].rpc.clone();
        let started = Instant::now();
        for _ in 0..50 {
            chain::local::rpc::call(&url, "eth_blockNumber", json!([]), Duration::from_secs(2)).await?;
        }
        started.elapsed().as_secs_f64() / 50.0
    };
    let seconds = args.seconds;
    let watched = tokio::task::spawn_blocking(move || watch_on_own_thread(replay, seconds)).await??;
    server_stop.cancel();
    let cpu_pct = watched.cpu_seconds / watched.wall_seconds * 100.0;
    let p99 = percentile(&watched.tick_ms, 0.99);
    rows.push(json!({
        "scenario": "replayed nodes, 1s",
        "nodes": args.replay_nodes,
        "readings": watched.readings,
        "cpu_pct_of_core": round(cpu_pct, 3),
        "per_node_pct": round(cpu_pct / args.replay_nodes as f64, 4),
        "tick_ms_p50": round(percentile(&watched.tick_ms, 0.5), 2),
        "tick_ms_p99": round(p99, 2),
        "kept_up": watched.down_readings == 0 && p99 < 1000.0,
        "figure": "reading of every node, p50 ms",
        "baseline": format!("one JSON-RPC round trip to a replayed node: {:.3} ms", round_trip * 1000.0),
        "ratio_to_baseline": round(percentile(&watched.tick_ms, 0.5) / (round_trip * 1000.0).max(1e-9), 1),
    }));

    // Store: 2 s of readings of the replayed nodes per batch, 20 metrics each.
    let per_batch = args.replay_nodes * 20 * 2;
    let batch: Vec<engine::store::NodeSample> = (0..per_batch)
        .map(|i| engine::store::NodeSample {
            network: "bench-monitor".into(),
            node: format!("node-{}", i % args.replay_nodes),
            metric: format!("metric-{}", i % 20),
            at: chrono::Utc::now(),
            value: i as f64,
            run_id: Some("bench".into()),
            task_id: Some("monitor".into()),
        })
        .collect();
    let started = Instant::now();
    let mut written = 0usize;
    while started.elapsed() < Duration::from_secs(3) {
        written += store.insert_samples(&batch).await?;
    }
    let rate = written as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for _ in 0..200 {
        store.ping().await?;
    }
    let round_trip = started.elapsed().as_secs_f64() / 200.0;
    let batch_ms = per_batch as f64 / rate * 1000.0;
    rows.push(json!({
        "scenario": format!("store batches of {per_batch} samples"),
        "nodes": args.replay_nodes,
        "readings": written,
        "figure": format!("{:.0} samples/s stored ({:.1} ms per batch)", rate, batch_ms),
        "baseline": format!("store round trip {:.3} ms", round_trip * 1000.0),
        "ratio_to_baseline": round(batch_ms / (round_trip * 1000.0).max(1e-9), 1),
        "kept_up": rate > (args.replay_nodes * 20) as f64,
    }));
    Ok(rows)
}

/// The first real node's answers to the calls one reading makes.
async fn record_answers(url: &str) -> Result<Arc<Vec<(String, Value)>>> {
    let mut answers = Vec::new();
    for (method, params) in [
        ("eth_blockNumber", json!([])),
        ("net_peerCount", json!([])),
        ("txpool_status", json!([])),
        ("eth_syncing", json!([])),
        ("eth_getBlockByNumber", json!(["latest", false])),
    ] {
        // A method the node does not have (anvil: net_peerCount) is replayed as not found, as it answered.
        if let Ok(result) = chain::local::rpc::call(url, method, params, Duration::from_secs(5)).await {
            answers.push((method.to_string(), result));
        }
    }
    Ok(Arc::new(answers))
}

/// One loopback HTTP/1.1 JSON-RPC server per node on a runtime of its own, answering from `answers`.
fn start_replay(nodes: usize, answers: Arc<Vec<(String, Value)>>) -> Result<(Vec<u16>, CancellationToken)> {
    let stop = CancellationToken::new();
    let mut listeners = Vec::new();
    for _ in 0..nodes {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        listeners.push(listener);
    }
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<std::io::Result<Vec<u16>>>()?;
    let token = stop.clone();
    std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        runtime.block_on(async move {
            for listener in listeners {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    continue;
                };
                let (answers, token) = (answers.clone(), token.clone());
                tokio::spawn(async move {
                    loop {
                        let accepted = tokio::select! {
                            _ = token.cancelled() => return,
                            accepted = listener.accept() => accepted,
                        };
                        let Ok((stream, _)) = accepted else { continue };
                        let answers = answers.clone();
                        tokio::spawn(super::bench::serve_json_rpc(stream, token.clone(), move |call| {
                            replay(&answers, call)
                        }));
                    }
                });
            }
            token.cancelled().await;
        });
    });
    Ok((ports, stop))
}

/// Answers a recorded method with what the node answered; others with "method not found".
fn replay(answers: &[(String, Value)], call: &Value) -> Value {
    let method = call["method"].as_str().unwrap_or_default();
    match answers.iter().find(|(m, _)| m == method) {
        Some((_, result)) => json!({"jsonrpc": "2.0", "id": call["id"], "result": result}),
        None => json!({"jsonrpc": "2.0", "id": call["id"], "error": {"code": -32601, "message": "not recorded"}}),
    }
}
