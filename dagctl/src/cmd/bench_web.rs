//! `dagctl bench web`: how the web face holds up with a big history, 1,000 runs of a 200-task DAG (200,000
//! task instances): the grid page (newest and oldest page), the grid JSON, the DAG list and a page of runs
//! from the REST API, each timed over real HTTP on loopback against `/health` (one store round trip behind
//! the same server) measured in the same run.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use engine::parse::parse_text;
use engine::store::runs::NewRun;
use engine::store::RunType;
use serde_json::json;

use crate::cmd::bench::Database;
use crate::config::Config;
use crate::output::{print_rows, Format};

const TASKS: usize = 200;
const RUNS: usize = 1000;

fn dag_yaml() -> String {
    // 10 layers of 20 tasks, each task after one of the previous layer.
    let mut yaml = String::from("big:\n  schedule: null\n  default_args: {owner: bench}\n  tasks:\n");
    for i in 0..TASKS {
        yaml.push_str(&format!("    t{i:03}:\n      operator: empty\n"));
        if i >= 20 {
            yaml.push_str(&format!("      dependencies: [t{:03}]\n", i - 20));
        }
    }
    yaml
}

/// One GET over a fresh connection; returns the status and the body length.
fn get(addr: SocketAddr, path: &str, cookie: &str) -> Result<(u16, usize)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nCookie: dagctl_session={cookie}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf)?;
    let head = String::from_utf8_lossy(&buf[..buf.len().min(16)]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no HTTP status in `{head}`"))?;
    Ok((status, buf.len()))
}

fn median_ms(addr: SocketAddr, path: &str, cookie: &str, count: usize) -> Result<(f64, usize)> {
    let mut times = Vec::with_capacity(count);
    let mut size = 0;
    for _ in 0..count {
        let started = Instant::now();
        let (status, bytes) = get(addr, path, cookie)?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        if status != 200 {
            bail!("GET {path} answered {status}");
        }
        size = bytes;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    Ok((times[times.len() / 2], size))
}

pub async fn web(config: &Config, database: Database, pg_url: Option<String>, output: Format) -> Result<ExitCode> {
    let db = crate::cmd::bench::bench_db(config, database, pg_url).await?;
    let store = db.store.clone();
    let parsed = parse_text("big.yml", &dag_yaml(), &[], &crate::runtime::registry(config));
    let Some(spec) = parsed.dags.into_iter().next() else {
        bail!("the bench DAG does not parse: {:?}", parsed.errors);
    };
    store.put_dag(&spec, false).await?;
    eprintln!("creating {RUNS} runs of {TASKS} tasks ...");
    let started = Instant::now();
    let base = Utc::now() - chrono::Duration::days(30);
    for i in 0..RUNS {
        store
            .create_run(NewRun {
                spec: &spec,
                run_id: Some(format!("bench-{i:04}")),
                run_type: RunType::Manual,
                logical_date: None,
                data_interval: None,
                run_after: base + chrono::Duration::minutes(i as i64),
                conf: Default::default(),
                triggered_by: "bench".into(),
                triggering_user: None,
                note: None,
            })
            .await?;
    }
    eprintln!("seeded in {:.1} s", started.elapsed().as_secs_f64());
    let home = std::env::temp_dir().join(format!("dagctl-bench-web-{}", uuid::Uuid::new_v4().simple()));
    let keys = web::auth::Keys::from_secret("bench-secret-0123456789")?;
    let (cookie, _) = keys.issue("bench", web::auth::Role::Viewer, "session", 3600);
    let state = web::WebState::new(
        store.clone(),
        keys,
        web::WebConfig::new(home.clone()),
        std::sync::Arc::new(worker::log::FileLogs::new(home.join("logs"))),
        engine::secrets::Vault::new(
            store.clone(),
            engine::secrets::Fernet::new(&engine::secrets::Fernet::generate_key())?,
        ),
    );
    let app = web::router(state, axum::Router::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let probes: [(&str, String, usize); 6] = [
        ("baseline: /health", "/health".into(), 50),
        ("grid page, newest 25 runs", "/dags/big".into(), 20),
        ("grid page, oldest 25 runs", "/dags/big?page=39".into(), 20),
        ("grid JSON, 25 runs", "/api/v2/dagctl/dags/big/grid?limit=25".into(), 20),
        ("DAG list page", "/dags".into(), 20),
        (
            "API dagRuns, 100 runs",
            "/api/v2/dags/big/dagRuns?limit=100&order_by=-run_after".into(),
            20,
        ),
    ];
    let results = tokio::task::spawn_blocking(move || {
        probes
            .iter()
            .map(|(name, path, count)| median_ms(addr, path, &cookie, *count).map(|r| (name.to_string(), r)))
            .collect::<Result<Vec<_>>>()
    })
    .await??;
    server.abort();
    let _ = std::fs::remove_dir_all(&home);
    let baseline = results[0].1 .0.max(1e-6);
    let rows: Vec<_> = results
        .iter()
        .map(|(name, (ms, bytes))| {
            json!({"request": name, "median_ms": (ms * 100.0).round() / 100.0, "bytes": bytes,
                   "ratio_to_baseline": (ms / baseline * 10.0).round() / 10.0})
        })
        .collect();
    print_rows(output, &["request", "median_ms", "bytes", "ratio_to_baseline"], &rows);
    if output == Format::Table {
        println!(
            "{RUNS} runs x {TASKS} tasks = {} task instances on {:?}",
            RUNS * TASKS,
            database
        );
    }
    Ok(ExitCode::SUCCESS)
}
