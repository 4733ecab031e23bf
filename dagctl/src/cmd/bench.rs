//! `dagctl bench scheduler`: wall time, task instances per second and per-hop latency for 1,000 independent
//! tasks and a chain of 40, each with `empty` and with `bash true`, against a baseline measured in the same
//! run: for `bash`, a bare `bash -c true` spawned by this plain program with no runner (40 in a row for the
//! chain, 1,000 spread over the cores for the independent tasks); for `empty`, one store round trip.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use chrono::Utc;
use engine::operators::OperatorRegistry;
use engine::parse::parse_text;
use engine::scratch::ScratchDb;
use engine::state::RunState;
use engine::store::runs::NewRun;
use engine::store::{RunType, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::output::{print_rows, Format};
use crate::runtime::{scheduler_options, scoped_scheduler};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Database {
    Sqlite,
    Postgres,
}

struct Scenario {
    name: &'static str,
    tasks: usize,
    chain: bool,
    operator: &'static str,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        name: "independent-1000-empty",
        tasks: 1000,
        chain: false,
        operator: "empty",
    },
    Scenario {
        name: "independent-1000-bash",
        tasks: 1000,
        chain: false,
        operator: "bash",
    },
    Scenario {
        name: "chain-40-empty",
        tasks: 40,
        chain: true,
        operator: "empty",
    },
    Scenario {
        name: "chain-40-bash",
        tasks: 40,
        chain: true,
        operator: "bash",
    },
];

fn dag_yaml(scenario: &Scenario) -> String {
    let mut text = format!(
        "bench_{}:\n  max_active_tasks: 100000\n  tasks:\n",
        scenario.name.replace('-', "_")
    );
    for i in 0..scenario.tasks {
        let op = if scenario.operator == "bash" {
            "{operator: bash, bash_command: 'true', do_xcom_push: false"
        } else {
            "{operator: empty"
        };
        let deps = if scenario.chain && i > 0 {
            format!(", dependencies: [t{}]", i - 1)
        } else {
            String::new()
        };
        text.push_str(&format!("    t{i}: {op}{deps}}}\n"));
    }
    text
}

pub async fn scheduler(
    config: &Config,
    database: Database,
    pg_url: Option<String>,
    only: &[String],
    output: Format,
) -> Result<ExitCode> {
    if let Some(unknown) = only
        .iter()
        .find(|name| !SCENARIOS.iter().any(|s| s.name == name.as_str()))
    {
        let names: Vec<&str> = SCENARIOS.iter().map(|s| s.name).collect();
        bail!("no scenario `{unknown}`; there are {}", names.join(", "));
    }
    let db = bench_db(config, database, pg_url).await?;
    let logs = tempfile_dir()?;
    let mut bench_config = config.clone();
    bench_config.home = logs.clone();
    bench_config.parallelism = config.parallelism.max(16);
    let database_name = format!("{database:?}").to_lowercase();
    eprintln!("measuring baselines ...");
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    // 40 spawns in a row vary by half from one batch to the next on a busy VM: the median of five batches.
    let mut batches = (0..5)
        .map(|_| bare_spawns_seconds(40, 1))
        .collect::<Result<Vec<f64>>>()?;
    batches.sort_by(f64::total_cmp);
    let serial_spawns = batches[2];
    let parallel_spawns = bare_spawns_seconds(1000, cores)?;
    let roundtrip_baseline = store_roundtrip_seconds(&db.store, 200).await?;
    let mut rows = Vec::new();
    for scenario in SCENARIOS
        .iter()
        .filter(|s| only.is_empty() || only.iter().any(|name| name == s.name))
    {
        eprintln!("running {} on {database_name} ...", scenario.name);
        let measured = run_scenario(&bench_config, &db.store, scenario).await?;
        let baseline = match (scenario.operator, scenario.chain) {
            ("bash", true) => serial_spawns * scenario.tasks as f64 / 40.0,
            ("bash", false) => parallel_spawns * scenario.tasks as f64 / 1000.0,
            (_, true) => roundtrip_baseline * scenario.tasks as f64,
            (_, false) => roundtrip_baseline * scenario.tasks as f64 / cores.min(2) as f64,
        };
        rows.push(json!({
            "scenario": scenario.name,
            "database": database_name,
            "tasks": scenario.tasks,
            "wall_s": round(measured.wall, 3),
            "ti_per_s": round(scenario.tasks as f64 / measured.wall, 1),
            "mean_hop_ms": measured.mean_hop.map(|h| round(h * 1000.0, 2)),
            "mean_launch_ms": measured.stages.map(|s| round(s.launch * 1000.0, 2)),
            "mean_run_ms": measured.stages.map(|s| round(s.run * 1000.0, 2)),
            "baseline": match (scenario.operator, scenario.chain) {
                ("bash", true) => "bare bash -c true, in a row",
                ("bash", false) => "bare bash -c true, over the cores",
                _ => "store round trip",
            },
            "baseline_s": round(baseline, 3),
            "ratio_to_baseline": round(measured.wall / baseline.max(1e-9), 2),
            "state": measured.state,
        }));
    }
    let _ = std::fs::remove_dir_all(&logs);
    print_rows(
        output,
        &[
            "scenario",
            "database",
            "tasks",
            "wall_s",
            "ti_per_s",
            "mean_hop_ms",
            "mean_launch_ms",
            "mean_run_ms",
            "baseline_s",
            "ratio_to_baseline",
            "state",
        ],
        &rows,
    );
    if output == Format::Table {
        println!(
            "baselines: bare `bash -c true` {:.2} ms each in a row (median of 5 batches of 40; {:.2}-{:.2}), 1,000 over {cores} cores in {:.3} s; store round trip {:.3} ms",
            serial_spawns * 1000.0 / 40.0,
            batches[0] * 1000.0 / 40.0,
            batches[4] * 1000.0 / 40.0,
            parallel_spawns,
            roundtrip_baseline * 1000.0
        );
        println!(
            "a chain's try: hop = its upstream's end to its claim (finish committed, scheduler woken, run evaluated); \
             launch = claim to the runner's start call (claim committed, runner forked and started); run = start \
             call to the recorded end (context, command, finish call)"
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The columns of a benchmark that prints each figure next to its baseline.
pub const FIGURE_COLUMNS: &[&str] = &[
    "figure",
    "value",
    "unit",
    "baseline",
    "baseline_value",
    "ratio_to_baseline",
    "note",
];

/// A fresh store for a benchmark: a scratch SQLite file, or a new database on a PostgreSQL server (`pg_url`,
/// else the configured database's server, else the local one).
pub async fn bench_db(config: &Config, database: Database, pg_url: Option<String>) -> Result<ScratchDb> {
    Ok(match database {
        Database::Sqlite => ScratchDb::sqlite().await?,
        Database::Postgres => {
            let admin = pg_url
                .or_else(|| {
                    config
                        .database_url
                        .starts_with("postgres")
                        .then(|| config.database_url.clone())
                })
                .unwrap_or_else(|| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_string());
            ScratchDb::postgres(&admin).await.map_err(|err| {
                anyhow::anyhow!(
                    "cannot make a scratch database on {}: {err}",
                    engine::store::redact_url(&admin)
                )
            })?
        }
    })
}

fn round(value: f64, digits: i32) -> f64 {
    let factor = 10f64.powi(digits);
    (value * factor).round() / factor
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("dagctl-bench-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

struct Measured {
    wall: f64,
    mean_hop: Option<f64>,
    /// A chain's tries, stage by stage (mean seconds).
    stages: Option<Stages>,
    state: String,
}

/// Where a chain's time goes, from the times the store recorded for each try (mean seconds per try): the hop
/// (the upstream's end, stamped in its finish call before that commits, to this try's claim, stamped once the
/// claim holds the write lock: the finish committed, the scheduler woken, the run evaluated), the launch (the
/// claim's writes and commit, the runner host's fork, the runner's start-up, its start call reaching the
/// server) and the run (the start call's write and reads, rendering, the operator, the finish call up to its
/// stamp).
#[derive(Debug, Clone, Copy)]
struct Stages {
    launch: f64,
    run: f64,
}

async fn run_scenario(config: &Config, store: &Store, scenario: &Scenario) -> Result<Measured> {
    let parsed = parse_text("bench.yml", &dag_yaml(scenario), &[], &OperatorRegistry::builtin());
    let Some(spec) = parsed.dags.into_iter().next() else {
        bail!("bench DAG did not parse: {:?}", parsed.errors)
    };
    store.put_dag(&spec, false).await?;
    let run = store
        .create_run(NewRun {
            spec: &spec,
            run_id: Some(format!("bench__{}", uuid::Uuid::new_v4().simple())),
            run_type: RunType::Manual,
            logical_date: None,
            data_interval: None,
            run_after: Utc::now(),
            conf: Default::default(),
            triggered_by: "bench".into(),
            triggering_user: None,
            note: None,
        })
        .await?;
    let mut options = scheduler_options(config);
    options.dags_folder = None;
    options.scope = Some(vec![run.id]);
    options.create_scheduled_runs = false;
    let stop = CancellationToken::new();
    let (scheduler, server) = scoped_scheduler(
        config,
        store,
        options,
        Arc::new(scheduler::Metrics::default()),
        stop.clone(),
    )
    .await?;
    let started = Instant::now();
    let result = scheduler.run(CancellationToken::new()).await;
    let wall = started.elapsed().as_secs_f64();
    stop.cancel();
    let _ = server.await;
    result?;
    let run_row = store.get_run_by_pk(run.id).await?;
    let tis = if scenario.chain {
        store.tis_of_run(run.id).await?
    } else {
        Vec::new()
    };
    let mean_hop = if scenario.chain {
        let position = |id: &str| spec.tasks.iter().position(|t| t.task_id == id).unwrap_or(0);
        let mut ordered = tis.clone();
        ordered.sort_by_key(|ti| position(&ti.task_id));
        let hops: Vec<f64> = ordered
            .windows(2)
            .filter_map(|pair| match (pair[0].end_date, pair[1].start_date) {
                (Some(end), Some(start)) => Some(seconds(start - end)),
                _ => None,
            })
            .collect();
        (!hops.is_empty()).then(|| hops.iter().sum::<f64>() / hops.len() as f64)
    } else {
        None
    };
    // None for `empty` tries (no runner) and for independent scenarios (no tries read).
    let stages = stages_of(&tis);
    if run_row.state != RunState::Success {
        eprintln!("warning: {} ended {}", scenario.name, run_row.state);
    }
    Ok(Measured {
        wall,
        mean_hop,
        stages,
        state: run_row.state.to_string(),
    })
}

/// The mean stages of tries whose runner made its start call (which records the runner's pid and its time as
/// the try's heartbeat). A try that ran past a heartbeat has a later heartbeat: only tries shorter than the
/// runner's shortest heartbeat interval are counted (all of a chain of `bash true`); the scheduler's own
/// heartbeat of running tries, every few seconds, can still land inside one and move its split.
fn stages_of(tis: &[engine::store::TiRow]) -> Option<Stages> {
    let each: Vec<(f64, f64)> = tis
        .iter()
        .filter(|ti| ti.pid.is_some())
        .filter_map(|ti| match (ti.start_date, ti.heartbeat_at, ti.end_date) {
            (Some(start), Some(called), Some(end)) if seconds(end - start) < 0.1 => {
                Some((seconds(called - start), seconds(end - called)))
            }
            _ => None,
        })
        .collect();
    if each.is_empty() {
        return None;
    }
    let n = each.len() as f64;
    Some(Stages {
        launch: each.iter().map(|s| s.0).sum::<f64>() / n,
        run: each.iter().map(|s| s.1).sum::<f64>() / n,
    })
}

fn seconds(duration: chrono::Duration) -> f64 {
    duration.num_microseconds().unwrap_or(0) as f64 / 1e6
}

/// Wall seconds of a chain of `tasks` `bash true` run in this process by a scoped scheduler (the in-process
/// baseline of `bench trigger`).
pub async fn chain_in_process(config: &Config, store: &Store, tasks: usize) -> Result<f64> {
    let scenario = Scenario {
        name: "chain-bash",
        tasks,
        chain: true,
        operator: "bash",
    };
    Ok(run_scenario(config, store, &scenario).await?.wall)
}

/// Wall seconds of `count` bare `bash -c true` spawned by this program, `workers` at a time.
fn bare_spawns_seconds(count: usize, workers: usize) -> Result<f64> {
    let started = Instant::now();
    let per_worker = count.div_ceil(workers.max(1));
    let handles: Vec<_> = (0..workers.max(1))
        .map(|_| {
            std::thread::spawn(move || -> std::io::Result<bool> {
                for _ in 0..per_worker {
                    if !std::process::Command::new("/bin/bash")
                        .args(["-c", "true"])
                        .status()?
                        .success()
                    {
                        return Ok(false);
                    }
                }
                Ok(true)
            })
        })
        .collect();
    for handle in handles {
        match handle.join() {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => bail!("baseline `bash -c true` failed"),
            Ok(Err(err)) => bail!("baseline spawn failed: {err}"),
            Err(_) => bail!("baseline thread panicked"),
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Mean seconds of one store round trip.
async fn store_roundtrip_seconds(store: &Store, count: usize) -> Result<f64> {
    let started = Instant::now();
    for _ in 0..count {
        store.ping().await?;
    }
    Ok((started.elapsed().as_secs_f64() / count as f64).max(Duration::from_micros(1).as_secs_f64()))
}

/// Serves JSON-RPC over keep-alive HTTP/1.1 on `stream` until it closes or `stop`: each request's body (by its
/// Content-Length) is parsed as JSON and answered with `reply(&call)` (the whole response object). The
/// benchmarks' loopback nodes (replayed answers, a sink) are made of it.
pub async fn serve_json_rpc(
    mut stream: tokio::net::TcpStream,
    stop: tokio_util::sync::CancellationToken,
    reply: impl Fn(&serde_json::Value) -> serde_json::Value,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // One request: headers, then Content-Length bytes of body.
        let request = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buffer.len() >= end + 4 + length {
                    let body = buffer[end + 4..end + 4 + length].to_vec();
                    buffer.drain(..end + 4 + length);
                    break body;
                }
            }
            let read = tokio::select! {
                _ = stop.cancelled() => return,
                read = stream.read(&mut chunk) => read,
            };
            match read {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let call: serde_json::Value = serde_json::from_slice(&request).unwrap_or(serde_json::Value::Null);
        let answer = reply(&call).to_string();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        if stream.write_all(head.as_bytes()).await.is_err() || stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}
