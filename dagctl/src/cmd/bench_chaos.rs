//! `dagctl bench chaos`: what the fault mechanisms cost and how closely they do what they are told, each figure
//! next to a baseline measured in the same run.
//!
//! - **link proxy** (`chain::chaos::link`, the mechanism of delay and rate, and of every network fault on
//!   loopback): the median round trip of a 64-byte message and the throughput of a bulk transfer through an
//!   unshaped proxy, against the same on a direct loopback connection; the delay a proxy set to `--delay-ms`
//!   adds to the round trip, against that setting; the rate a proxy set to `--rate-kbit` delivers, against
//!   that setting.
//! - **clock supervisor** (`dagctl clock-shim`, the mechanism of clock skew): the cost of one wall-clock read
//!   (`SystemTime::now`) in a program under the supervisor, against the same program without it, and the
//!   offset that program sees, against the one asked for.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chain::chaos::link::{Delay, LinkProxy, Shape};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::output::{print_rows, Format};

/// Flags of `dagctl bench chaos`.
#[derive(clap::Args, Debug, Clone)]
pub struct ChaosBenchArgs {
    /// Round trips measured per figure
    #[arg(long, default_value_t = 2000)]
    pub round_trips: u32,
    /// MiB sent for each throughput figure
    #[arg(long, default_value_t = 64)]
    pub mib: u64,
    /// The delay a shaped proxy is set to
    #[arg(long, default_value_t = 20)]
    pub delay_ms: u64,
    /// The rate a shaped proxy is set to
    #[arg(long, default_value_t = 8000)]
    pub rate_kbit: u64,
    /// Wall-clock reads measured in the clock figures
    #[arg(long, default_value_t = 20000)]
    pub clock_reads: u64,
    #[arg(short, long, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

/// An echo server on loopback: what a connection sends comes back; a connection that sends `u64` length N
/// first (bulk mode is chosen by the client) is answered with one byte once N bytes have arrived.
async fn echo_server() -> Result<SocketAddr> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut mode = [0u8; 1];
                if stream.read_exact(&mut mode).await.is_err() {
                    return;
                }
                if mode[0] == b'B' {
                    let Ok(total) = stream.read_u64().await else { return };
                    let mut buffer = vec![0u8; 1 << 16];
                    let mut got = 0u64;
                    while got < total {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got += n as u64,
                        }
                    }
                    let _ = stream.write_all(b"k").await;
                } else {
                    let mut buffer = [0u8; 64];
                    while stream.read_exact(&mut buffer).await.is_ok() {
                        if stream.write_all(&buffer).await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    Ok(address)
}

/// The median round trip of `count` 64-byte messages to `address`, seconds.
async fn round_trip(address: SocketAddr, count: u32) -> Result<f64> {
    let mut stream = TcpStream::connect(address).await?;
    stream.set_nodelay(true)?;
    stream.write_all(b"E").await?;
    let message = [7u8; 64];
    let mut back = [0u8; 64];
    let mut times = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let started = Instant::now();
        stream.write_all(&message).await?;
        stream.read_exact(&mut back).await?;
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Bytes per second of a bulk transfer of `bytes` to `address` (until the server has them all).
async fn throughput(address: SocketAddr, bytes: u64) -> Result<f64> {
    let mut stream = TcpStream::connect(address).await?;
    stream.write_all(b"B").await?;
    stream.write_u64(bytes).await?;
    let chunk = vec![1u8; 1 << 16];
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        let n = chunk.len().min((bytes - sent) as usize);
        stream.write_all(&chunk[..n]).await?;
        sent += n as u64;
    }
    let mut done = [0u8; 1];
    stream.read_exact(&mut done).await?;
    Ok(bytes as f64 / started.elapsed().as_secs_f64())
}

async fn proxy(target: SocketAddr, forward: Shape) -> Result<LinkProxy> {
    LinkProxy::start("127.0.0.1:0".parse()?, target, forward, Shape::default(), 1)
        .await
        .context("cannot start a link proxy")
}

fn figure(figure: &str, value: f64, unit: &str, baseline: &str, baseline_value: f64, note: &str) -> Value {
    json!({
        "figure": figure,
        "value": round3(value),
        "unit": unit,
        "baseline": baseline,
        "baseline_value": round3(baseline_value),
        "ratio_to_baseline": round3(value / baseline_value.max(1e-12)),
        "note": note,
    })
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// `dagctl clock-probe N`: N wall-clock reads; prints the nanoseconds each took on average and how far this
/// program's clock is from the host's (seconds, by the file-system time of a file it writes).
pub fn clock_probe_main() -> ExitCode {
    let count: u64 = std::env::args().nth(2).and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let started = Instant::now();
    let mut last = std::time::SystemTime::UNIX_EPOCH;
    for _ in 0..count {
        last = std::hint::black_box(std::time::SystemTime::now());
    }
    let per_read = started.elapsed().as_nanos() as f64 / count.max(1) as f64;
    // The host's clock: the modification time the kernel stamps on a file (not through this program's clock).
    let file = std::env::temp_dir().join(format!("dagctl-clock-probe-{}", std::process::id()));
    let host = std::fs::write(&file, b"")
        .and_then(|_| std::fs::metadata(&file))
        .and_then(|m| m.modified());
    let _ = std::fs::remove_file(&file);
    let (Ok(host), Ok(own)) = (host, last.duration_since(std::time::UNIX_EPOCH)) else {
        eprintln!("error: cannot read the clocks");
        return ExitCode::FAILURE;
    };
    let host = host.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    println!("{per_read} {}", own.as_secs_f64() - host.as_secs_f64());
    ExitCode::SUCCESS
}

/// Runs the probe (under the supervisor with `offset`, or directly): (ns per read, offset seen in seconds).
fn probe(offset: Option<&str>, reads: u64) -> Result<(f64, f64)> {
    let me = std::env::current_exe()?;
    let mut command = std::process::Command::new(&me);
    if let Some(offset) = offset {
        command.arg("clock-shim").arg(offset).arg(&me);
    }
    let out = command.arg("clock-probe").arg(reads.to_string()).output()?;
    if !out.status.success() {
        bail!("clock probe failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace().map(|p| p.parse::<f64>());
    match (parts.next(), parts.next()) {
        (Some(Ok(ns)), Some(Ok(seen))) => Ok((ns, seen)),
        _ => Err(anyhow!("unreadable clock probe output: {text}")),
    }
}

pub async fn chaos(args: &ChaosBenchArgs) -> Result<ExitCode> {
    let server = echo_server().await?;
    let bytes = args.mib * 1024 * 1024;
    let mut rows = Vec::new();

    eprintln!("round trips and bulk transfers, direct and through an unshaped proxy ...");
    let direct_rtt = round_trip(server, args.round_trips).await?;
    let plain = proxy(server, Shape::default()).await?;
    let proxied_rtt = round_trip(plain.address, args.round_trips).await?;
    rows.push(figure(
        "round trip through an unshaped link proxy (median, 64 B)",
        proxied_rtt * 1e3,
        "ms",
        "direct loopback round trip",
        direct_rtt * 1e3,
        "",
    ));
    let direct_bulk = throughput(server, bytes).await?;
    let proxied_bulk = throughput(plain.address, bytes).await?;
    rows.push(figure(
        "bulk throughput through an unshaped link proxy",
        proxied_bulk / 1e6,
        "MB/s",
        "direct loopback throughput",
        direct_bulk / 1e6,
        &format!("{} MiB each", args.mib),
    ));
    drop(plain);

    eprintln!("a proxy delaying by {} ms ...", args.delay_ms);
    let delayed = proxy(
        server,
        Shape {
            delay: Some(Delay {
                time: Duration::from_millis(args.delay_ms),
                jitter: Duration::ZERO,
                correlation: 0.0,
                distribution: Default::default(),
            }),
            ..Shape::default()
        },
    )
    .await?;
    let delayed_rtt = round_trip(delayed.address, (args.round_trips / 20).max(20)).await?;
    drop(delayed);
    rows.push(figure(
        "delay a link proxy adds to the round trip (median)",
        (delayed_rtt - direct_rtt) * 1e3,
        "ms",
        "the delay it was set to",
        args.delay_ms as f64,
        "netem's delay on what the dialer sends",
    ));

    eprintln!("a proxy limited to {} kbit/s ...", args.rate_kbit);
    let rate = args.rate_kbit * 1000 / 8;
    let limited = proxy(
        server,
        Shape {
            rate: Some(rate),
            ..Shape::default()
        },
    )
    .await?;
    // Three seconds' worth at the set rate.
    let limited_bps = throughput(limited.address, (rate * 3).max(64 * 1024)).await?;
    drop(limited);
    rows.push(figure(
        "rate a limited link proxy delivers",
        limited_bps * 8.0 / 1e3,
        "kbit/s",
        "the rate it was set to",
        args.rate_kbit as f64,
        "",
    ));

    eprintln!("wall-clock reads with and without the clock supervisor ...");
    let reads = args.clock_reads;
    let (direct_ns, direct_seen) = tokio::task::spawn_blocking(move || probe(None, reads)).await??;
    let (shim_ns, shim_seen) = tokio::task::spawn_blocking(move || probe(Some("+1h"), reads)).await??;
    rows.push(figure(
        "one wall-clock read under the clock supervisor",
        shim_ns / 1e3,
        "us",
        "the same read without it (vDSO)",
        direct_ns / 1e3,
        &format!("{reads} reads each"),
    ));
    rows.push(figure(
        "offset the supervised program sees",
        shim_seen,
        "s",
        "the offset asked for (+1h)",
        3600.0,
        &format!("{direct_seen:.3} s without the supervisor"),
    ));
    print_rows(args.output, super::bench::FIGURE_COLUMNS, &rows);
    Ok(ExitCode::SUCCESS)
}
