//! `dagctl bench trigger`: how long a trigger takes to reach its first task, and the end of a run to reach its
//! waiter, through the CLI (`dags trigger --wait`, a process per trigger, as a user runs it) and through the
//! REST API (POST, then the run's event stream), against a `dagctl standalone` started for the benchmark on a
//! scratch store. Each figure is the median and p99 over `--triggers` runs, next to the store's own round trip
//! measured in the same run; `dags trigger chain_20 --wait` end to end is set against the same chain run in
//! process (a scoped scheduler, as `bench scheduler` does).

use std::io::{Read, Write};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use engine::store::Store;
use serde_json::{json, Value};

use super::bench::{bench_db, Database, FIGURE_COLUMNS};
use crate::config::Config;
use crate::output::{print_rows, Format};

/// Flags of `dagctl bench trigger`.
#[derive(clap::Args, Debug, Clone)]
pub struct TriggerBenchArgs {
    /// Triggers per path (CLI, API)
    #[arg(long, default_value_t = 100)]
    pub triggers: usize,
    #[arg(long, value_enum, default_value_t = Database::Sqlite)]
    pub database: Database,
    /// PostgreSQL server for the scratch database (default: the configured one, else 127.0.0.1)
    #[arg(long)]
    pub pg_url: Option<String>,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// The benchmark's engine: stopped (SIGTERM, then SIGKILL) when dropped.
struct Engine(Child);

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        for _ in 0..100 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn trigger(config: &Config, args: &TriggerBenchArgs) -> Result<ExitCode> {
    if args.triggers == 0 || args.triggers > 10_000 {
        bail!("--triggers must be from 1 to 10000");
    }
    let db = bench_db(config, args.database, args.pg_url.clone()).await?;
    let home = std::env::temp_dir().join(format!("dagctl-bench-trigger-{}", uuid::Uuid::new_v4().simple()));
    let dags = home.join("dags");
    std::fs::create_dir_all(&dags)?;
    let cleanup = DirGuard(home.clone());
    std::fs::write(
        dags.join("one.yml"),
        "one:\n  tasks:\n    t: {operator: bash, bash_command: 'true'}\n",
    )?;
    let mut chain = String::from("chain_20:\n  tasks:\n");
    for i in 0..20 {
        let deps = if i == 0 {
            String::new()
        } else {
            format!(", dependencies: [t{}]", i - 1)
        };
        chain.push_str(&format!("    t{i}: {{operator: bash, bash_command: 'true'{deps}}}\n"));
    }
    std::fs::write(dags.join("chain_20.yml"), chain)?;
    let exe = std::env::current_exe().context("cannot find the dagctl binary")?;
    let password = uuid::Uuid::new_v4().simple().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let env: Vec<(&str, String)> = vec![
        ("DAGCTL_HOME", home.display().to_string()),
        ("DAGCTL_DAGS_FOLDER", dags.display().to_string()),
        ("DAGCTL_DATABASE_URL", db.url.clone()),
        ("DAGCTL_DAGS_ARE_PAUSED_AT_CREATION", "false".into()),
        ("DAGCTL_ADMIN_PASSWORD", password.clone()),
    ];
    let log = std::fs::File::create(home.join("engine.log"))?;
    let engine = Engine(
        Command::new(&exe)
            .args(["standalone", "--port", &port.to_string()])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env_remove("DAGCTL_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start the benchmark's engine")?,
    );
    let store = db.store.clone();
    wait_until(Duration::from_secs(60), "the engine and its DAGs", || async {
        let healthy = http(port, "GET", "/health", None, None)
            .map(|(code, _)| code == 200)
            .unwrap_or(false);
        healthy && store.get_dag("one").await.is_ok() && store.get_dag("chain_20").await.is_ok()
    })
    .await?;
    eprintln!("measuring the store's round trip ...");
    let mut pings = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        store.ping().await?;
        pings.push(started.elapsed().as_secs_f64());
    }
    let roundtrip = percentile(&mut pings, 0.5);
    let n = args.triggers;

    eprintln!("{n} CLI triggers (`dags trigger one --wait`) ...");
    let (mut cli_start, mut cli_seen) = (Vec::new(), Vec::new());
    for i in 0..n {
        let run_id = format!("cli-{i}");
        let sent = Utc::now();
        let status = Command::new(&exe)
            .args(["dags", "trigger", "one", "--run-id", &run_id, "--wait"])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        let seen = Utc::now();
        if !status.success() {
            bail!("`dags trigger one --run-id {run_id} --wait` failed ({status})");
        }
        let (start, end) = task_times(&store, "one", &run_id).await?;
        cli_start.push(seconds(start - sent));
        cli_seen.push(seconds(seen - end));
    }

    eprintln!("{n} API triggers (POST dagRuns, then the run's event stream) ...");
    let token = login(port, &password)?;
    let (mut api_start, mut api_seen) = (Vec::new(), Vec::new());
    for i in 0..n {
        let run_id = format!("api-{i}");
        let body = json!({"dag_run_id": run_id, "logical_date": null}).to_string();
        let sent = Utc::now();
        let (code, answer) = http(port, "POST", "/api/v2/dags/one/dagRuns", Some(&token), Some(&body))?;
        if code != 200 && code != 201 {
            bail!("POST dagRuns answered {code}: {answer}");
        }
        let path = format!("/api/v2/dagctl/runs/one/{run_id}/events");
        let (code, events) = http(port, "GET", &path, Some(&token), None)?;
        let seen = Utc::now();
        if code != 200 || !events.contains(":success") {
            bail!("the event stream of {run_id} answered {code}: {events}");
        }
        let (start, end) = task_times(&store, "one", &run_id).await?;
        api_start.push(seconds(start - sent));
        api_seen.push(seconds(seen - end));
    }

    eprintln!("chain_20: 5 x `dags trigger chain_20 --wait`, and the same chain in process ...");
    let mut chain_cli = Vec::new();
    for i in 0..5 {
        let started = Instant::now();
        let status = Command::new(&exe)
            .args([
                "dags",
                "trigger",
                "chain_20",
                "--run-id",
                &format!("chain-{i}"),
                "--wait",
            ])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("`dags trigger chain_20 --wait` failed ({status})");
        }
        chain_cli.push(started.elapsed().as_secs_f64());
    }
    drop(engine);
    let mut in_process = Vec::new();
    let scratch = bench_db(config, args.database, args.pg_url.clone()).await?;
    let mut inner = config.clone();
    inner.home = home.join("in-process");
    std::fs::create_dir_all(&inner.home)?;
    for _ in 0..5 {
        in_process.push(super::bench::chain_in_process(&inner, &scratch.store, 20).await?);
    }

    let ms = |v: f64| v * 1000.0;
    let roundtrip_ms = ms(roundtrip);
    let mut rows = Vec::new();
    for (path, starts, seens) in [
        ("CLI", &mut cli_start, &mut cli_seen),
        ("API", &mut api_start, &mut api_seen),
    ] {
        for (quantile, q) in [("median", 0.5), ("p99", 0.99)] {
            rows.push(figure(
                &format!("{path}: trigger to first task start, {quantile}"),
                ms(percentile(starts, q)),
                roundtrip_ms,
            ));
            rows.push(figure(
                &format!("{path}: last task end to waiter sees success, {quantile}"),
                ms(percentile(seens, q)),
                roundtrip_ms,
            ));
        }
    }
    let cli = percentile(&mut chain_cli, 0.5);
    let inproc = percentile(&mut in_process, 0.5);
    rows.push(json!({
        "figure": "dags trigger chain_20 --wait, end to end (median of 5)",
        "value": round3(ms(cli)),
        "unit": "ms",
        "baseline": "the same chain in process (median of 5)",
        "baseline_value": round3(ms(inproc)),
        "ratio_to_baseline": round3(cli / inproc.max(1e-9)),
        "note": format!("{:?}", args.database).to_lowercase(),
    }));
    print_rows(args.output, FIGURE_COLUMNS, &rows);
    drop(cleanup);
    Ok(ExitCode::SUCCESS)
}

fn figure(name: &str, value_ms: f64, roundtrip_ms: f64) -> Value {
    json!({
        "figure": name,
        "value": round3(value_ms),
        "unit": "ms",
        "baseline": "store round trip (median)",
        "baseline_value": round3(roundtrip_ms),
        "ratio_to_baseline": round3(value_ms / roundtrip_ms.max(1e-9)),
        "note": "",
    })
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_microseconds().unwrap_or(0) as f64 / 1e6
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let index = ((values.len() as f64 - 1.0) * q).round() as usize;
    values[index.min(values.len() - 1)]
}

/// The start of the run's first task and the end of its last one, as recorded.
async fn task_times(store: &Store, dag_id: &str, run_id: &str) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    let run = store.get_run(dag_id, run_id).await?;
    let tis = store.tis_of_run(run.id).await?;
    let start = tis.iter().filter_map(|t| t.start_date).min();
    let end = tis.iter().filter_map(|t| t.end_date).max();
    match (start, end) {
        (Some(start), Some(end)) => Ok((start, end)),
        _ => bail!("run {run_id} has no task times (state {})", run.state),
    }
}

async fn wait_until<F, Fut>(limit: Duration, what: &str, mut check: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while started.elapsed() < limit {
        if check().await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what} not ready within {} s", limit.as_secs())
}

fn login(port: u16, password: &str) -> Result<String> {
    let body = json!({"username": "admin", "password": password}).to_string();
    let (code, answer) = http(port, "POST", "/auth/token", None, Some(&body))?;
    if code != 201 {
        bail!("login answered {code}: {answer}");
    }
    let value: Value = serde_json::from_str(&answer)?;
    value["access_token"]
        .as_str()
        .map(str::to_string)
        .context("no access_token in the login answer")
}

/// One HTTP/1.1 exchange on loopback (`Connection: close`): status and body (a chunked body is decoded).
fn http(port: u16, method: &str, path: &str, token: Option<&str>, body: Option<&str>) -> Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let _ = stream.set_nodelay(true);
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(body) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(body.unwrap_or(""));
    stream.write_all(head.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP header in the answer")?;
    let code: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status in the answer")?;
    let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        chain::audit::exposure::dechunk(body)
    } else {
        body.to_string()
    };
    Ok((code, body))
}

/// Removes the benchmark's data dir when dropped.
struct DirGuard(std::path::PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
