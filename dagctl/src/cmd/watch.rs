//! `dagctl net watch NAME`: a live view of a network, one row per node refreshed every interval (a terminal
//! redraws in place), or NDJSON with `-o json` (one object per node per interval). `--store` also writes the
//! readings to the store as samples, as the `chain.monitor` operator does.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use chain::lifecycle;
use chain::monitor::{self, Monitor, NodeReading, Schedule};
use serde_json::{json, Value};

use crate::config::Config;
use crate::output::{table, Format};
use crate::runtime::open_store;

/// Flags of `dagctl net watch`.
#[derive(clap::Args, Debug, Clone)]
pub struct WatchArgs {
    pub name: String,
    /// Time between readings (at least 100ms)
    #[arg(long, default_value = "1s")]
    pub interval: String,
    /// Stop after this long (default: until Ctrl-C or the network is torn down)
    #[arg(long)]
    pub duration: Option<String>,
    /// Also write every reading to the store as samples
    #[arg(long)]
    pub store: bool,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

const COLUMNS: &[&str] = &[
    "node",
    "up",
    "head",
    "peers",
    "pending",
    "queued",
    "block_time",
    "gas_used",
    "txs",
    "import_ms",
    "cpu_%",
    "rss_mb",
    "disk_w_kb/s",
    "net_in_kb/s",
    "net_out_kb/s",
];

fn row(reading: &NodeReading) -> Value {
    let round = |v: Option<f64>, scale: f64| v.map(|v| (v / scale * 10.0).round() / 10.0);
    json!({
        "node": reading.node,
        "up": if reading.up { "yes" } else { "DOWN" },
        "head": reading.rpc.head,
        "peers": reading.rpc.peers,
        "pending": reading.rpc.txpool_pending,
        "queued": reading.rpc.txpool_queued,
        "block_time": reading.block_time,
        "gas_used": reading.rpc.head_gas_used,
        "txs": reading.rpc.head_tx_count,
        "cpu_%": round(reading.host.cpu_percent, 1.0),
        "rss_mb": round(reading.host.rss_bytes, 1_048_576.0),
        "disk_w_kb/s": round(reading.host.disk_write_bytes_per_second, 1024.0),
        "import_ms": round(reading.client.block_import_ms, 1.0),
        "net_in_kb/s": round(reading.client.net_in_bytes_per_second, 1024.0),
        "net_out_kb/s": round(reading.client.net_out_bytes_per_second, 1024.0),
    })
}

/// Prints one reading of every node; an error (a closed pipe) ends the watch.
fn print_readings(
    readings: &[NodeReading],
    format: Format,
    redraw: bool,
    name: &str,
    interval: std::time::Duration,
    started: Instant,
) -> std::io::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match format {
        Format::Json => {
            for reading in readings {
                let line = serde_json::to_string(reading).map_err(std::io::Error::other)?;
                writeln!(out, "{line}")?;
            }
        }
        Format::Table => {
            let rows: Vec<Value> = readings.iter().map(row).collect();
            if redraw {
                write!(out, "\x1b[H\x1b[2J")?;
            }
            writeln!(
                out,
                "network {name}, every {}, {:.0}s",
                engine::duration::format_duration(interval),
                started.elapsed().as_secs_f64()
            )?;
            write!(out, "{}", table(COLUMNS, &rows))?;
            if !redraw {
                writeln!(out)?;
            }
        }
    }
    out.flush()
}

/// `dagctl net alerts NAME`: the WARN and ERROR patterns of a network's node logs, most recent first.
pub async fn alerts(config: &Config, name: &str, limit: u32, format: Format) -> Result<ExitCode> {
    let store = open_store(config).await?;
    store.get_network(name).await?;
    let rows: Vec<Value> = store
        .alerts(name, limit)
        .await?
        .iter()
        .map(|a| {
            json!({"node": a.node, "level": a.level, "count": a.count, "pattern": a.pattern, "message": a.message,
                   "first_at": a.first_at.to_rfc3339(), "last_at": a.last_at.to_rfc3339(), "task_id": a.task_id})
        })
        .collect();
    crate::output::print_rows(format, &["last_at", "node", "level", "count", "pattern"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// Flags of `dagctl net samples`.
#[derive(clap::Args, Debug, Clone)]
pub struct SamplesArgs {
    pub name: String,
    /// One metric (e.g. head, peers, cpu_percent); default all
    #[arg(long)]
    pub metric: Option<String>,
    /// One node; default all
    #[arg(long)]
    pub node: Option<String>,
    /// Only samples this recent (e.g. 10m)
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long, default_value_t = 10_000)]
    pub limit: u32,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// `dagctl net samples NAME`: stored samples, oldest first.
pub async fn samples(config: &Config, args: &SamplesArgs) -> Result<ExitCode> {
    if let Some(metric) = &args.metric {
        if !monitor::is_metric(metric) {
            bail!(
                "--metric: unknown metric `{metric}`; expected one of {}, or client:<series>",
                monitor::METRICS.join(", ")
            );
        }
    }
    let since = args
        .since
        .as_deref()
        .map(engine::duration::parse_duration_str)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--since: {e}"))?;
    let store = open_store(config).await?;
    store.get_network(&args.name).await?;
    let from = since
        .and_then(|d| chrono::Duration::from_std(d).ok())
        .map(|d| chrono::Utc::now() - d);
    let samples = store
        .samples(&engine::store::SampleFilter {
            network: &args.name,
            metric: args.metric.as_deref(),
            node: args.node.as_deref(),
            from,
            to: None,
            limit: Some(args.limit),
        })
        .await?;
    let rows: Vec<Value> = samples
        .iter()
        .map(|s| json!({"at": s.at.to_rfc3339(), "node": s.node, "metric": s.metric, "value": s.value}))
        .collect();
    crate::output::print_rows(args.output, &["at", "node", "metric", "value"], &rows);
    Ok(ExitCode::SUCCESS)
}

/// Runs the watch until its duration, Ctrl-C, or the network stops running.
pub async fn watch(config: &Config, args: &WatchArgs) -> Result<ExitCode> {
    let interval =
        engine::duration::parse_duration_str(&args.interval).map_err(|e| anyhow::anyhow!("--interval: {e}"))?;
    if interval < monitor::MIN_INTERVAL {
        bail!("--interval: {} is below the minimum of 100ms", args.interval);
    }
    let duration = args
        .duration
        .as_deref()
        .map(engine::duration::parse_duration_str)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--duration: {e}"))?;
    let store = open_store(config).await?;
    let row_of = store.get_network(&args.name).await?;
    if row_of.status != "running" {
        bail!(
            "network `{}` is {}; only a running network can be watched",
            args.name,
            row_of.status
        );
    }
    let Some(record) = lifecycle::record_of(&row_of)? else {
        bail!("network `{}` has no nodes yet", args.name);
    };
    let mut monitor = Monitor::new(&record, interval);
    let cancel = crate::runtime::cancel_on_ctrl_c();
    let until = duration.map(|d| Instant::now() + d);
    let redraw = args.output == Format::Table && std::io::stdout().is_terminal();
    let name = args.name.as_str();
    let (mut ticks, mut written) = (0u64, 0usize);
    let mut stopped: Option<String> = None;
    let started = Instant::now();
    let mut schedule = Schedule::new(interval, until);
    while schedule.next(&cancel).await {
        let readings = monitor.tick().await;
        ticks += 1;
        for alert in monitor.follow_logs() {
            eprintln!(
                "alert: {} {}: {}",
                alert.node,
                alert.level.as_str().to_uppercase(),
                alert.message
            );
        }
        if print_readings(&readings, args.output, redraw, name, interval, started).is_err() {
            break;
        }
        if args.store {
            let mut samples: Vec<_> = readings.iter().flat_map(|r| r.samples(name, None, None)).collect();
            samples.extend(monitor.take_block_samples(name, None, None, false));
            match store.insert_samples(&samples).await {
                Ok(n) => written += n,
                Err(err) => eprintln!("cannot store samples (kept watching): {err}"),
            }
            let alerts: Vec<_> = monitor
                .take_alerts()
                .iter()
                .map(|a| a.to_row(name, None, None))
                .collect();
            if let Err(err) = store.add_alerts(&alerts).await {
                eprintln!("cannot store alerts (kept watching): {err}");
            }
        }
        // Stop when the network is torn down under us.
        match store.get_network(name).await {
            Ok(row) if row.status == "running" => {}
            Ok(row) => {
                stopped = Some(format!("network `{name}` is {} now", row.status));
                break;
            }
            Err(err) => {
                stopped = Some(err.to_string());
                break;
            }
        }
    }
    if args.store {
        eprintln!("{ticks} readings, {written} samples stored");
    }
    if let Some(reason) = stopped {
        eprintln!("stopped watching: {reason}");
    }
    Ok(ExitCode::SUCCESS)
}
