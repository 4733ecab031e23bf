//! `dagctl bench kpi`: the KPIs of a large run against reading its data once, in the same process, on one core
//! (the whole process pinned with `taskset` where the machine allows).
//!
//! The data: a records file of `--calls` calls (three read kinds and transfers, with the transfers' fates, over
//! six load phases of equal length spread over `--minutes`), and `--minutes` of a `--nodes`-node monitor's
//! samples at 1 s (every metric a reading stores) with block arrivals every 2 s, in a scratch store.
//! - **ETL**: `chain::kpi::gather::gather` over them: every KPI, the recommendation. Baseline: reading and
//!   decoding every record and paging through every sample once, doing nothing with them.
//! - **memory**: the largest RSS seen while the ETL ran (sampled every 5 ms), above the RSS before it.
//!   Baseline: the size of the records file; bounded means far below it and flat in `--calls`.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use chain::kpi::{self, Capacity, Options, RunInfo};
use chain::load::record::{Call, Outcome, Recorder, TxFate};
use chrono::{DateTime, Utc};
use engine::store::{NewNetwork, NodeSample, SamplePage, Store};
use serde_json::{json, Value};

use super::bench::{bench_db, Database};
use crate::config::Config;
use crate::output::{print_rows, Format};

/// Flags of `dagctl bench kpi`.
#[derive(clap::Args, Debug, Clone)]
pub struct KpiBenchArgs {
    /// Calls in the records file
    #[arg(long, default_value_t = 10_000_000)]
    pub calls: u64,
    /// Minutes of load and of monitor history
    #[arg(long, default_value_t = 60)]
    pub minutes: u64,
    /// Monitored nodes
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    #[arg(long, value_enum, default_value_t = Database::Sqlite)]
    pub database: Database,
    /// PostgreSQL server for the scratch database (default: the configured one, else 127.0.0.1)
    #[arg(long)]
    pub pg_url: Option<String>,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// A small, fast, deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Writes the records file: `calls` calls over `seconds`, in six phases of rising rate.
fn write_records(path: &Path, calls: u64, seconds: u64, started_at: DateTime<Utc>) -> Result<u64> {
    let meta = json!({
        "started_at": started_at,
        "mode": "open loop, ramp of 6 phases",
        "kinds": ["eth_blockNumber", "eth_getBalance", "eth_call", "transfer"],
        "nodes": ["validator-1", "validator-2", "validator-3", "member-1"],
        "sending_kinds": ["transfer"],
    });
    let mut recorder = Recorder::new(Some(path), &meta).map_err(|e| anyhow!(e))?;
    let span_us = seconds * 1_000_000;
    let phase_us = span_us / 6;
    // Rates rise 1..6 over the phases: phase i holds a share (i+1)/21 of the calls.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut written = 0u64;
    for phase in 0..6u64 {
        let share = calls * (phase + 1) / 21
            + u64::from(phase == 5) * (calls - (0..6).map(|p| calls * (p + 1) / 21).sum::<u64>());
        let start = phase * phase_us;
        recorder.phase(phase as u16, start, share as f64 / (phase_us as f64 / 1e6));
        for i in 0..share {
            let intended = start + i * phase_us / share.max(1);
            let latency = (200.0 * (1.0 + 20.0 * rng.unit().powi(8)) * (1.0 + phase as f64 * 0.3)) as u64;
            let kind = (rng.next() % 4) as u8;
            let roll = rng.unit();
            let outcome = if roll < 0.995 {
                Outcome::Ok
            } else if roll < 0.998 {
                Outcome::RpcError(-32000)
            } else {
                Outcome::Timeout
            };
            let seq = written;
            recorder.call(Call {
                seq,
                kind,
                node: (seq % 4) as u16,
                intended_us: intended,
                sent_us: intended + 3,
                latency_us: latency,
                outcome,
            });
            if kind == 3 && outcome == Outcome::Ok {
                let inclusion = 200_000 + rng.next() % 2_000_000;
                recorder.tx(TxFate {
                    seq,
                    sent_us: intended + 3,
                    inclusion_us: Some(inclusion),
                    confirmation_us: Some(inclusion + 4_000_000),
                    pool_us: seq.is_multiple_of(10).then(|| 20_000 + rng.next() % 100_000),
                });
            }
            written += 1;
        }
    }
    if let Some(error) = recorder.close() {
        return Err(anyhow!("cannot write the records file: {error}"));
    }
    Ok(written)
}

/// Writes `seconds` of `nodes` nodes' samples at 1 s, and block arrivals every 2 s.
async fn write_samples(store: &Store, network: &str, nodes: usize, seconds: u64, start: DateTime<Utc>) -> Result<u64> {
    let mut rng = Rng(42);
    let mut batch: Vec<NodeSample> = Vec::with_capacity(10_000);
    let mut written = 0u64;
    let sample = |node: &str, metric: &str, at: DateTime<Utc>, value: f64| NodeSample {
        network: network.to_string(),
        node: node.to_string(),
        metric: metric.to_string(),
        at,
        value,
        run_id: Some("bench".into()),
        task_id: Some("monitor".into()),
    };
    let names: Vec<String> = (1..=nodes).map(|i| format!("node-{i}")).collect();
    for second in 0..seconds {
        let at = start + chrono::Duration::seconds(second as i64);
        let load = second as f64 / seconds as f64;
        for (n, node) in names.iter().enumerate() {
            for metric in chain::monitor::METRICS
                .iter()
                .filter(|m| !m.starts_with("block_") || **m == "block_time_seconds")
            {
                let value = match *metric {
                    "cpu_percent" => 5.0 + 80.0 * load + 5.0 * rng.unit(),
                    "rss_bytes" => 2e8 + 3e8 * load,
                    "peers" => (nodes - 1) as f64,
                    "up" => 1.0,
                    "head" => (second / 2) as f64,
                    "txpool_pending" => 100.0 * load * rng.unit(),
                    _ => rng.unit() * 1000.0,
                };
                batch.push(sample(node, metric, at, value));
            }
            if second.is_multiple_of(2) {
                let arrival = at + chrono::Duration::milliseconds(n as i64 * 15 + (rng.next() % 10) as i64);
                let number = (second / 2) as f64;
                batch.push(sample(node, "block_arrival", arrival, number));
                batch.push(sample(node, "block_hash48", arrival, number * 7.0 + 1.0));
                if n == 0 {
                    batch.push(sample(node, "block_gas_used", arrival, 21_000.0 * 400.0 * load));
                    batch.push(sample(node, "block_gas_limit", arrival, 30_000_000.0));
                    batch.push(sample(node, "block_empty", arrival, 0.0));
                }
            }
        }
        if batch.len() >= 9_000 {
            written += store.insert_samples(&batch).await? as u64;
            batch.clear();
        }
    }
    written += store.insert_samples(&batch).await? as u64;
    Ok(written)
}

/// Pins this whole process (every thread) to core 1, where the machine allows; whether it did.
fn pin_to_one_core() -> bool {
    let two = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    two && Command::new("taskset")
        .args(["-a", "-p", "-c", "1", &std::process::id().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// This process's resident set, in bytes.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// The largest RSS while `work` runs, sampled every 5 ms on another thread.
async fn peak_rss_during<T>(work: impl std::future::Future<Output = T>) -> (T, u64) {
    let peak = Arc::new(AtomicU64::new(rss_bytes()));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let out = work.await;
    done.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    peak.fetch_max(rss_bytes(), Ordering::Relaxed);
    (out, peak.load(Ordering::Relaxed))
}

fn round(value: f64, digits: i32) -> f64 {
    let factor = 10f64.powi(digits);
    (value * factor).round() / factor
}

/// `dagctl bench kpi`.
pub async fn kpi(config: &Config, args: &KpiBenchArgs) -> Result<ExitCode> {
    if args.calls == 0 || args.minutes == 0 || args.nodes == 0 {
        anyhow::bail!("--calls, --minutes and --nodes must be more than zero");
    }
    let db = bench_db(config, args.database, args.pg_url.clone()).await?;
    let dir = std::env::temp_dir().join(format!("dagctl-bench-kpi-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let outcome = measure(&db.store, &dir, args).await;
    let _ = std::fs::remove_dir_all(&dir);
    drop(db);
    let rows = outcome?;
    print_rows(args.output, super::bench::FIGURE_COLUMNS, &rows);
    Ok(ExitCode::SUCCESS)
}

async fn measure(store: &Store, dir: &Path, args: &KpiBenchArgs) -> Result<Vec<Value>> {
    let seconds = args.minutes * 60;
    let start = Utc::now() - chrono::Duration::seconds(seconds as i64 + 60);
    let records = dir.join("load.calls");
    eprintln!("writing {} calls ...", args.calls);
    let written = write_records(&records, args.calls, seconds, start + chrono::Duration::seconds(10))?;
    let file_mib = std::fs::metadata(&records)?.len() as f64 / 1048576.0;
    let network = "bench-kpi";
    store
        .claim_network(
            &NewNetwork {
                name: network,
                backend: "local",
                host: "bench",
                spec: "{}",
                dag_id: Some("bench"),
                run_id: Some("bench"),
                task_id: Some("deploy"),
                ttl_seconds: None,
            },
            start,
        )
        .await?;
    let nodes: Vec<Value> = (1..=args.nodes).map(|i| json!({"name": format!("node-{i}")})).collect();
    store
        .set_network_nodes(network, &Value::Array(nodes).to_string(), start)
        .await?;
    eprintln!("writing {} minutes of {} nodes' samples ...", args.minutes, args.nodes);
    let samples = write_samples(store, network, args.nodes, seconds, start).await?;
    let run = RunInfo {
        dag_id: "bench".into(),
        run_id: "bench".into(),
        state: "success".into(),
        start: Some(start),
        end: Some(start + chrono::Duration::seconds(seconds as i64 + 30)),
    };
    let xcoms: HashMap<(String, String), Value> = HashMap::from([(
        ("load".to_string(), "return_value".to_string()),
        json!({"records_file": records.display().to_string()}),
    )]);
    let pinned = pin_to_one_core();

    // Baseline: read and decode every record, page through every sample.
    let read = Instant::now();
    let mut file = kpi::records::RecordsFile::open(&records).map_err(|e| anyhow!(e))?;
    let mut checksum = 0u64;
    let count = file
        .for_each(|record| {
            if let kpi::records::Record::Call { latency_us, .. } = record {
                checksum = checksum.wrapping_add(u64::from(latency_us));
            }
        })
        .map_err(|e| anyhow!(e))?;
    let records_seconds = read.elapsed().as_secs_f64();
    let mut page = SamplePage {
        network,
        from: run.start.unwrap_or(start),
        to: run.end.unwrap_or(start),
        cursor: None,
        skip: 0,
        limit: 10_000,
    };
    let mut paged = 0u64;
    for _ in 0..100_000 {
        let got = store.samples_page(&page).await?;
        paged += got.len() as u64;
        checksum = checksum.wrapping_add(got.len() as u64);
        if !page.advance(&got) {
            break;
        }
    }
    let read_seconds = read.elapsed().as_secs_f64();

    // The ETL.
    let rss_before = rss_bytes();
    let options = Options {
        capacity: Capacity::of_this_host(),
        ..Default::default()
    };
    let etl = Instant::now();
    let (result, peak) = peak_rss_during(kpi::gather::gather(store, run, &xcoms, &options)).await;
    let etl_seconds = etl.elapsed().as_secs_f64();
    let (kpis, gathered) = result.map_err(|e| anyhow!(e))?;
    if !pinned {
        eprintln!("not pinned to one core (taskset refused, or one core)");
    }
    let load = kpis.loads.first().ok_or_else(|| anyhow!("the ETL found no load"))?;
    anyhow::ensure!(
        load.errors.calls == written && gathered.samples == samples && paged == samples,
        "the ETL read {} calls and {} samples, the baseline {paged} samples; {written} and {samples} were written",
        load.errors.calls,
        gathered.samples
    );
    let growth_mib = peak.saturating_sub(rss_before) as f64 / 1048576.0;
    let core = if pinned {
        "one core (process pinned)"
    } else {
        "not pinned"
    };
    Ok(vec![
        json!({
            "figure": format!("KPIs of {written} calls + {} min of {} nodes ({paged} samples)", args.minutes, args.nodes),
            "value": round(etl_seconds, 3), "unit": "s",
            "baseline": "reading every record and sample once", "baseline_value": round(read_seconds, 3),
            "ratio_to_baseline": round(etl_seconds / read_seconds.max(1e-9), 2),
            "note": format!(
                "{core}; baseline: {count} records ({file_mib:.0} MiB) read in {records_seconds:.2} s, samples paged in {:.2} s; checksum {}; goal <= 3x and < 10 s",
                read_seconds - records_seconds,
                checksum % 1000
            ),
        }),
        json!({
            "figure": "ETL memory: peak RSS above its start",
            "value": round(growth_mib, 1), "unit": "MiB",
            "baseline": "records file size", "baseline_value": round(file_mib, 1),
            "ratio_to_baseline": round(growth_mib / file_mib.max(1e-9), 3),
            "note": format!("RSS before {:.0} MiB; streaming: flat in --calls", rss_before as f64 / 1048576.0),
        }),
    ])
}
