//! `dagctl bench load`: the load generator against the tools users would pick instead, on the same anvil in
//! the same run, one generator core each (anvil pinned to core 0 and every generator to core 1 with
//! `taskset`, where the machine allows it).
//!
//! - **reads**: `eth_blockNumber` for `--seconds` over `--connections` connections: `dagctl load` in closed
//!   loop, `wrk` (one thread, a Lua script for the body), and locust's `FastHttpUser` (one process): calls per
//!   second of each, and dagctl's ratio to each.
//! - **transfers**: signed transfers sent for `--seconds` (closed loop, 256 senders) per second, to anvil and
//!   to a sink that accepts every transaction at once (a loopback JSON-RPC server on core 0 in this process:
//!   the generator's own ceiling, where anvil's is lower). Baseline: the same transfers only signed and
//!   encoded, in this process, per second of one core.
//! - **memory**: `--memory-calls` calls recorded (per-call records file on) and the generator's peak resident
//!   memory, sampled every 100 ms from /proc. Baseline: its resident memory at the first sample.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chain::lifecycle::{self, DeployRequest};
use chain::{Client, Consensus, NetworkSpec, SpecDuration};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::bench::{bench_db, Database};
use crate::config::Config;
use crate::output::{print_rows, Format};
use crate::runtime::scratch_backend;

/// Flags of `dagctl bench load`.
#[derive(clap::Args, Debug, Clone)]
pub struct LoadBenchArgs {
    /// How long each read and transfer run lasts
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent connections (users) of every generator
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// Calls of the memory run
    #[arg(long, default_value_t = 10_000_000)]
    pub memory_calls: u64,
    /// wrk (Debian's package)
    #[arg(long, env = "DAGCTL_WRK", default_value = "wrk")]
    pub wrk: PathBuf,
    /// A Python with locust installed (scripts/install-pytools.sh makes one)
    #[arg(long, env = "DAGCTL_PYTHON", default_value = "python3")]
    pub python: PathBuf,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// The first dev key of anvil, funded on every anvil.
const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

const LUA: &str = r#"wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}'
wrk.headers["Content-Type"] = "application/json"
"#;

const LOCUSTFILE: &str = r#"from locust import task
from locust.contrib.fasthttp import FastHttpUser

BODY = '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}'


class Rpc(FastHttpUser):
    @task
    def block_number(self):
        self.client.post("/", data=BODY, headers={"Content-Type": "application/json"})
"#;

/// A JSON-RPC server that takes every transaction at once: enough of a node for the generator's transfers
/// (chain id, fees, balances, nonces, blocks without transactions), answering on a thread of its own, pinned to
/// core 0 when `pin`. Stops when the token is cancelled.
fn start_sink(pin: bool) -> Result<(String, CancellationToken)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let url = format!("http://{}", listener.local_addr()?);
    listener.set_nonblocking(true)?;
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let (ready, pinned) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if pin {
            // This thread's id: /proc/thread-self links to <pid>/task/<tid>.
            let tid = std::fs::read_link("/proc/thread-self")
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().to_string()));
            if let Some(tid) = tid {
                let _ = Command::new("taskset")
                    .args(["-p", "-c", "0", &tid])
                    .stdout(Stdio::null())
                    .status();
            }
        }
        let _ = ready.send(());
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
            return;
        };
        runtime.block_on(async move {
            let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = stopped.cancelled() => return,
                    accepted = listener.accept() => {
                        if let Ok((stream, _)) = accepted {
                            tokio::spawn(super::bench::serve_json_rpc(stream, stopped.clone(), sink_reply));
                        }
                    }
                }
            }
        });
    });
    pinned.recv().map_err(|_| anyhow!("the sink did not start"))?;
    Ok((url, stop))
}

/// What the sink answers: enough of a node for the generator's transfers, every transaction taken.
fn sink_reply(call: &Value) -> Value {
    let result = match call["method"].as_str().unwrap_or("") {
        "eth_chainId" => json!("0x7a69"),
        "eth_gasPrice" => json!("0x3b9aca00"),
        "eth_getBalance" => json!("0xd3c21bcecceda1000000"),
        "eth_getTransactionCount" | "eth_blockNumber" => json!("0x1"),
        "eth_getBlockByNumber" => json!({"number": "0x1", "baseFeePerGas": "0x3b9aca00", "transactions": []}),
        "eth_sendRawTransaction" => {
            static ACCEPTED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let n = ACCEPTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            json!(format!("0x{n:064x}"))
        }
        _ => Value::Null,
    };
    json!({"jsonrpc": "2.0", "id": call["id"], "result": result})
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Whether `taskset` can pin here (two cores or more, and allowed).
fn can_pin() -> bool {
    std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
        && Command::new("taskset")
            .args(["-c", "1", "true"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// `program args` on core 1 when pinning works.
fn generator_command(pin: bool, program: &Path, args: &[&str]) -> Command {
    if pin {
        let mut command = Command::new("taskset");
        command.arg("-c").arg("1").arg(program).args(args);
        command
    } else {
        let mut command = Command::new(program);
        command.args(args);
        command
    }
}

/// Runs `command` to its end: stdout, or an error with its stderr.
fn output_of(mut command: Command, what: &str) -> Result<String> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).lines().last().unwrap_or("")
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).to_string())
}

/// What one `dagctl load` run measured from outside.
struct Run {
    summary: Value,
    peak_mib: f64,
    first_sample_mib: f64,
    /// CPU seconds (user + system) over wall seconds: the share of one core the generator used.
    core_share: f64,
}

/// `dagctl load` in this binary, on the generator core: its JSON summary, peak RSS and CPU, sampled from /proc.
fn dagctl_load(pin: bool, args: &[&str]) -> Result<Run> {
    let exe = std::env::current_exe()?;
    let mut command = generator_command(pin, &exe, &[&["load"], args, &["-o", "json"]].concat());
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start dagctl load")?;
    // With taskset, the generator is taskset's child: it execs, so the PID is the same process.
    let pid = child.id();
    let started = Instant::now();
    let (mut peak, mut first_sample) = (0u64, 0u64);
    let mut cpu_seconds = 0.0;
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stdout, &mut text);
        text
    });
    loop {
        if let Some(status) = child.try_wait()? {
            if !status.success() {
                bail!("dagctl load failed ({status})");
            }
            break;
        }
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .unwrap_or(0);
        peak = peak.max(rss);
        if let Some(cpu) = chain::monitor::host::cpu_seconds(&format!("/proc/{pid}/stat")) {
            cpu_seconds = cpu;
        }
        // The first sample of the generator itself: not the moment taskset or the loader runs (a few kB).
        if first_sample == 0 && rss > 1024 && started.elapsed() >= Duration::from_millis(100) {
            first_sample = rss;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    if first_sample == 0 {
        // A run too short for a sample past its start: its peak is all there is.
        first_sample = peak;
    }
    let text = reader
        .join()
        .map_err(|_| anyhow!("reading dagctl load's output failed"))?;
    let summary: Value = serde_json::from_str(&text).context("dagctl load's summary")?;
    Ok(Run {
        summary,
        peak_mib: peak as f64 / 1024.0,
        first_sample_mib: first_sample as f64 / 1024.0,
        core_share: cpu_seconds / started.elapsed().as_secs_f64().max(1e-9),
    })
}

/// wrk's requests per second.
fn wrk(args: &LoadBenchArgs, pin: bool, url: &str, script: &Path) -> Result<f64> {
    let text = output_of(
        generator_command(
            pin,
            &args.wrk,
            &[
                "-t1",
                &format!("-c{}", args.connections),
                &format!("-d{}s", args.seconds),
                "-s",
                script.to_str().unwrap_or_default(),
                url,
            ],
        ),
        "wrk (install Debian's `wrk` package, or give --wrk)",
    )?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| anyhow!("no Requests/sec in wrk's output: {text}"))
}

/// locust's requests per second (its Aggregated row), and its failures.
fn locust(args: &LoadBenchArgs, pin: bool, url: &str, dir: &Path) -> Result<(f64, u64)> {
    let file = dir.join("locustfile.py");
    std::fs::write(&file, LOCUSTFILE)?;
    let prefix = dir.join("locust");
    let users = args.connections.to_string();
    output_of(
        generator_command(
            pin,
            &args.python,
            &[
                "-m",
                "locust",
                "-f",
                file.to_str().unwrap_or_default(),
                "--headless",
                "-u",
                &users,
                "-r",
                &users,
                "-t",
                &format!("{}s", args.seconds),
                "--host",
                url,
                "--csv",
                prefix.to_str().unwrap_or_default(),
                "--only-summary",
                "--loglevel",
                "ERROR",
            ],
        ),
        "locust (scripts/install-pytools.sh installs it; give --python)",
    )?;
    let stats = std::fs::read_to_string(dir.join("locust_stats.csv")).context("locust's stats CSV")?;
    let mut lines = stats.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let column = |name: &str| header.iter().position(|h| *h == name);
    let (rps, failures) = (
        column("Requests/s").ok_or_else(|| anyhow!("no Requests/s column"))?,
        column("Failure Count").ok_or_else(|| anyhow!("no Failure Count column"))?,
    );
    let row: Vec<&str> = lines
        .find(|l| l.contains("Aggregated"))
        .ok_or_else(|| anyhow!("no Aggregated row in locust's stats"))?
        .split(',')
        .collect();
    Ok((
        row.get(rps).and_then(|v| v.parse().ok()).unwrap_or(0.0),
        row.get(failures).and_then(|v| v.parse().ok()).unwrap_or(0),
    ))
}

/// Transfers signed and encoded per second on this thread (no network).
fn sign_only(count: u32) -> Result<f64> {
    use chain::load::senders;
    let funder = chain::load::spec::parse_key(DEV_KEY).map_err(|e| anyhow!(e))?;
    let keys = senders::sender_keys(&funder, 16).map_err(|e| anyhow!(e))?;
    let to = senders::receivers(&funder)[0];
    let fees = senders::Fees {
        chain_id: 31337,
        gas_price: 2_000_000_000,
        eip1559: Some((4_000_000_000, 1_000_000_000)),
    };
    let started = Instant::now();
    for i in 0..count {
        let key = &keys[i as usize % keys.len()];
        senders::sign_transfer(key, &fees, false, u64::from(i), to, chain::tx::U256::from(1u64))
            .map_err(|e| anyhow!(e))?;
    }
    Ok(f64::from(count) / started.elapsed().as_secs_f64())
}

pub async fn load(config: &Config, args: &LoadBenchArgs) -> Result<ExitCode> {
    let db = bench_db(config, Database::Sqlite, None).await?;
    let scratch = std::env::temp_dir().join(format!("dagctl-bench-load-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&scratch)?;
    // Clients as the engine finds them; the networks in the scratch dir.
    let backend = scratch_backend(config, &scratch);
    eprintln!("starting anvil ...");
    let mut spec = NetworkSpec::new("bench-load", Client::Anvil, Consensus::Interval, 1);
    spec.block_time = Some(SpecDuration::from_secs(1));
    let request = DeployRequest {
        spec,
        ready_timeout: Duration::from_secs(60),
        ttl: None,
        owner: None,
    };
    let deployed = lifecycle::deploy(&db.store, &backend, &request, &CancellationToken::new(), &|_: &str| {}).await;
    let rows = match deployed {
        Ok(deployed) => {
            let record = deployed.record.clone();
            let args = args.clone();
            let dir = scratch.clone();
            let outcome = tokio::task::spawn_blocking(move || measure(&args, &record, &dir)).await;
            lifecycle::teardown(&db.store, &backend, "bench-load", &|_: &str| {}).await?;
            outcome??
        }
        Err(e) => Err(e)?,
    };
    let _ = std::fs::remove_dir_all(&scratch);
    print_rows(args.output, super::bench::FIGURE_COLUMNS, &rows);
    Ok(ExitCode::SUCCESS)
}

fn measure(args: &LoadBenchArgs, record: &chain::local::NetworkRecord, dir: &Path) -> Result<Vec<Value>> {
    let node = record.nodes.first().ok_or_else(|| anyhow!("anvil has no node"))?;
    let url = node.rpc.clone();
    let pin = can_pin();
    if pin {
        if let Some(pid) = node.pid {
            output_of(
                {
                    let mut c = Command::new("taskset");
                    c.args(["-a", "-c", "-p", "0", &pid.to_string()]);
                    c
                },
                "taskset (pinning anvil)",
            )?;
        }
    }
    let note = if pin {
        "anvil on core 0, generator on core 1"
    } else {
        "not pinned (taskset refused, or one core)"
    };
    let seconds = args.seconds.to_string();
    let users = args.connections.to_string();
    let mut rows = Vec::new();

    eprintln!("reads: dagctl load, {} users, {}s ...", args.connections, args.seconds);
    let reads = dagctl_load(pin, &[&url, "--users", &users, "--duration", &format!("{seconds}s")])?;
    let summary = &reads.summary;
    let total = &summary["total"];
    let dagctl_rps = total["throughput"].as_f64().unwrap_or(0.0);
    eprintln!("reads: wrk ...");
    let script = dir.join("body.lua");
    std::fs::write(&script, LUA)?;
    let wrk_rps = wrk(args, pin, &url, &script)?;
    eprintln!("reads: locust FastHttpUser ...");
    let (locust_rps, locust_failures) = locust(args, pin, &url, dir)?;
    let failed = total["fail"].as_u64().unwrap_or(0);
    rows.push(json!({
        "figure": "eth_blockNumber calls/s, dagctl load",
        "value": round(dagctl_rps, 0), "unit": "calls/s",
        "baseline": "wrk -t1", "baseline_value": round(wrk_rps, 0),
        "ratio_to_baseline": round(dagctl_rps / wrk_rps.max(1e-9), 3),
        "note": format!(
            "{note}; {} connections; dagctl failures {failed}; generator used {:.0}% of its core; goal >= 0.9",
            args.connections,
            reads.core_share * 100.0
        ),
    }));
    rows.push(json!({
        "figure": "eth_blockNumber calls/s, dagctl load",
        "value": round(dagctl_rps, 0), "unit": "calls/s",
        "baseline": "locust FastHttpUser, 1 process", "baseline_value": round(locust_rps, 0),
        "ratio_to_baseline": round(dagctl_rps / locust_rps.max(1e-9), 3),
        "note": format!("{note}; locust failures {locust_failures}; goal >= 6"),
    }));

    eprintln!("transfers: signing only ...");
    let signed = sign_only(20_000)?;
    eprintln!("transfers: dagctl load, 256 senders, {}s ...", args.seconds);
    let node_cpu = || {
        node.pid
            .and_then(|p| chain::monitor::host::cpu_seconds(&format!("/proc/{p}/stat")))
            .unwrap_or(0.0)
    };
    let (node_cpu0, wall0) = (node_cpu(), Instant::now());
    let sent = dagctl_load(
        pin,
        &[
            &url,
            "--users",
            &users,
            "--duration",
            &format!("{seconds}s"),
            "--workload",
            "transfer=1",
            "--funder-key",
            DEV_KEY,
            "--senders",
            "256",
            "--settle",
            "2s",
        ],
    )?;
    let node_share = (node_cpu() - node_cpu0) / wall0.elapsed().as_secs_f64().max(1e-9);
    let summary = &sent.summary;
    let accepted = summary["tx"]["sent"].as_f64().unwrap_or(0.0);
    let transfers_rps = accepted / args.seconds as f64;
    rows.push(json!({
        "figure": "signed transfers accepted/s, dagctl load",
        "value": round(transfers_rps, 0), "unit": "transfers/s",
        "baseline": "signing and encoding only, 1 core", "baseline_value": round(signed, 0),
        "ratio_to_baseline": round(transfers_rps / signed.max(1e-9), 3),
        "note": format!(
            "{note}; {accepted} accepted, {} failed; generator used {:.0}% of its core, anvil {:.0}% of its; goal >= 5000/s",
            summary["total"]["fail"],
            sent.core_share * 100.0,
            node_share * 100.0
        ),
    }));

    eprintln!("transfers: dagctl load against a sink, {}s ...", args.seconds);
    let (sink_url, sink_stop) = start_sink(pin)?;
    let to_sink = dagctl_load(
        pin,
        &[
            &sink_url,
            "--users",
            &users,
            "--duration",
            &format!("{seconds}s"),
            "--workload",
            "transfer=1",
            "--funder-key",
            DEV_KEY,
            "--senders",
            "256",
            "--settle",
            "0s",
        ],
    );
    sink_stop.cancel();
    let to_sink = to_sink?;
    let sunk = to_sink.summary["tx"]["sent"].as_f64().unwrap_or(0.0) / args.seconds as f64;
    rows.push(json!({
        "figure": "signed transfers sent/s to a sink, dagctl load",
        "value": round(sunk, 0), "unit": "transfers/s",
        "baseline": "signing and encoding only, 1 core", "baseline_value": round(signed, 0),
        "ratio_to_baseline": round(sunk / signed.max(1e-9), 3),
        "note": format!(
            "{note}; sink accepts every transaction at once; {} failed; generator used {:.0}% of its core; goal >= 5000/s",
            to_sink.summary["total"]["fail"],
            to_sink.core_share * 100.0
        ),
    }));

    eprintln!("memory: {} calls recorded ...", args.memory_calls);
    let records = dir.join("memory.calls");
    let started = Instant::now();
    let memory = dagctl_load(
        pin,
        &[
            &url,
            "--users",
            &users,
            "--max-calls",
            &args.memory_calls.to_string(),
            "--records",
            records.to_str().unwrap_or_default(),
        ],
    )?;
    let (summary, peak_mib, first_mib) = (&memory.summary, memory.peak_mib, memory.first_sample_mib);
    let calls = summary["total"]["succ"].as_u64().unwrap_or(0) + summary["total"]["fail"].as_u64().unwrap_or(0);
    let file_mib = std::fs::metadata(&records).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
    rows.push(json!({
        "figure": "generator peak RSS",
        "value": round(peak_mib, 1), "unit": "MiB",
        "baseline": "RSS at its first sample", "baseline_value": round(first_mib, 1),
        "ratio_to_baseline": round(peak_mib / first_mib.max(1e-9), 3),
        "note": format!("{calls} calls in {:.0}s, records file {file_mib:.0} MiB; goal < 100 MiB at 10M calls", started.elapsed().as_secs_f64()),
    }));
    let _ = std::fs::remove_file(&records);
    Ok(rows)
}
