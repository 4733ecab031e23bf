//! `chain.monitor`: watches a network for the task's `duration` (or until the network is torn down, or the try
//! is cancelled): every `interval`, every node's JSON-RPC state and process usage ([`crate::monitor`]), stored
//! as samples through the task execution API in batches, with node-down and node-back lines in the task log.
//!
//! Sampling never waits for the store: batches go to a writer task through a bounded queue; when the queue is
//! full (the engine slow or away) a batch is dropped and counted, and the count is in the log and the XCom.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine::operators::{validate_typed, ArgIssue, OperatorArgs, OperatorDef, Templated};
use engine::store::NodeSample;
use serde::Deserialize;
use serde_json::json;
use worker::operator::{Operator, OperatorContext, OperatorFuture, OperatorResult};

use super::resolve_network;
use crate::backend::any::AnyRecord;
use crate::backend::NodeBackend;
use crate::duration::SpecDuration;
use crate::lifecycle;
use crate::monitor::cloudwatch::{CloudWatchSettings, CloudWatchSink};
use crate::monitor::{Monitor, Schedule, MIN_INTERVAL};
use crate::registry::{ApiNetworks, NetworkStore};

/// Canonical name of the monitor operator.
pub const MONITOR: &str = "chain.monitor";

/// Default time between readings.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// Samples are sent at least this often.
const FLUSH_EVERY: Duration = Duration::from_secs(2);
/// Batches waiting for the writer before new ones are dropped.
const QUEUE: usize = 64;
/// A summary line in the task log this often.
const SUMMARY_EVERY: Duration = Duration::from_secs(30);

/// The arguments of `chain.monitor`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorArgs {
    /// A network name, or the task id of a `chain.deploy_network` task of this run.
    pub network: String,
    /// Time between readings (default 1s, at least 100ms).
    #[serde(default)]
    pub interval: Option<Templated<SpecDuration>>,
    /// How long to watch; without it, until the network is torn down or the try ends.
    #[serde(default)]
    pub duration: Option<Templated<SpecDuration>>,
    /// The client's own Prometheus series to store as `client:<name>` (default
    /// [`crate::monitor::DEFAULT_SERIES`]); names without labels, as the client writes them.
    #[serde(default)]
    pub client_series: Option<Vec<String>>,
    /// POST every announced alert here as JSON (retried, then dropped and counted; never blocking).
    #[serde(default)]
    pub alert_webhook: Option<String>,
    /// Ship every node's log lines to CloudWatch Logs (log group per network, stream per node).
    #[serde(default)]
    pub cloudwatch: Option<CloudWatchSettings>,
    /// A prefunded private key (hex): with it, a probe transaction is sent every `probe_interval` to one node in
    /// turn and followed (pool propagation, inclusion, confirmations).
    #[serde(default)]
    pub probe_key: Option<String>,
    /// Time between probe transactions (default 10s).
    #[serde(default)]
    pub probe_interval: Option<Templated<SpecDuration>>,
    /// Blocks on top of a probe's block before it counts as confirmed (default 2).
    #[serde(default)]
    pub probe_confirmations: Option<Templated<u64>>,
}

impl OperatorArgs for MonitorArgs {
    fn check(&self) -> Result<(), ArgIssue> {
        if self.network.trim().is_empty() {
            return Err(ArgIssue::new(
                "network",
                "`network` must be a network name or the task id of a chain.deploy_network task",
            ));
        }
        if let Some(Templated::Value(interval)) = &self.interval {
            if interval.get() < MIN_INTERVAL {
                return Err(ArgIssue::new(
                    "interval",
                    format!("interval {interval} is below the minimum of 100ms"),
                ));
            }
        }
        for name in self.client_series.iter().flatten() {
            let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
            if !valid {
                return Err(ArgIssue::new(
                    "client_series",
                    format!("`{name}` is not a Prometheus series name (letters, digits, `_` and `:`)"),
                ));
            }
        }
        if let Some(url) = self
            .alert_webhook
            .as_deref()
            .filter(|u| !engine::operators::is_template(u))
        {
            crate::monitor::webhook::check_url(url).map_err(|reason| ArgIssue::new("alert_webhook", reason))?;
        }
        if let Some(settings) = &self.cloudwatch {
            settings.check().map_err(|reason| ArgIssue::new("cloudwatch", reason))?;
        }
        if let Some(key) = self.probe_key.as_deref().filter(|k| !engine::operators::is_template(k)) {
            crate::keys::NodeKey::from_hex(key.trim_start_matches("0x"))
                .map_err(|e| ArgIssue::new("probe_key", format!("not a private key: {e}")))?;
        }
        if let Some(Templated::Value(interval)) = &self.probe_interval {
            if interval.get() < Duration::from_secs(1) {
                return Err(ArgIssue::new("probe_interval", "probe_interval must be at least 1s"));
            }
        }
        if let Some(Templated::Value(duration)) = &self.duration {
            if duration.get().is_zero() {
                return Err(ArgIssue::new("duration", "duration must be more than zero"));
            }
        }
        Ok(())
    }
}

/// What the writer sends to the engine in one go.
struct Batch {
    samples: Vec<NodeSample>,
    alerts: Vec<engine::store::NodeAlert>,
}

fn alert_rows(monitor: &mut Monitor, network: &str, ctx: &OperatorContext) -> Vec<engine::store::NodeAlert> {
    monitor
        .take_alerts()
        .iter()
        .map(|a| a.to_row(network, Some(&ctx.run_id), Some(&ctx.task_id)))
        .collect()
}

/// `chain.monitor`.
pub(super) struct MonitorOperator<B> {
    pub backend: Arc<B>,
}

impl<B: NodeBackend + 'static> Operator for MonitorOperator<B> {
    fn definition(&self) -> OperatorDef {
        OperatorDef {
            name: MONITOR,
            aliases: &[],
            validate: |args| validate_typed::<MonitorArgs>(MONITOR, args),
            completes_in_scheduler: false,
            is_teardown: false,
        }
    }

    fn run(&self, ctx: OperatorContext) -> OperatorFuture {
        let backend = self.backend.clone();
        Box::pin(async move {
            match run(ctx, backend).await {
                Ok(summary) => OperatorResult::Success(Some(summary)),
                Err(reason) => OperatorResult::Failed(reason),
            }
        })
    }
}

async fn run<B: NodeBackend>(ctx: OperatorContext, backend: Arc<B>) -> Result<serde_json::Value, String> {
    let args = ctx.args_as::<MonitorArgs>()?;
    let interval = match &args.interval {
        Some(value) => value.value("interval")?.get(),
        None => DEFAULT_INTERVAL,
    };
    if interval < MIN_INTERVAL {
        return Err(format!("interval {interval:?} is below the minimum of 100ms"));
    }
    let duration = args
        .duration
        .as_ref()
        .map(|d| d.value("duration").map(|d| d.get()))
        .transpose()?;
    let networks = ApiNetworks(ctx.api.clone());
    let name = resolve_network(&ctx, &networks, &args.network)
        .await
        .map_err(|e| e.to_string())?;
    let row = networks.get_network(&name).await.map_err(|e| e.to_string())?;
    if row.status != "running" {
        return Err(format!(
            "network `{name}` is {}; only a running network can be monitored",
            row.status
        ));
    }
    let record = lifecycle::any_record_of(&row)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("network `{name}` has no nodes"))?;
    let nodes = record.rpc_endpoints();
    let pods = match lifecycle::stored_record::<B::Record>(&row).map_err(|e| e.to_string())? {
        Some(own) => backend.pod_watch(&own).await.map_err(|e| e.to_string())?,
        None => None,
    };
    let log = ctx.log.clone();
    log.line(
        "info",
        "chain",
        &format!(
            "monitoring network `{name}` ({} nodes) every {interval:?}{}",
            nodes.len(),
            duration.map(|d| format!(" for {d:?}")).unwrap_or_default()
        ),
    );

    // The writer: batches to the engine, off the sampling path.
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Batch>(QUEUE);
    let stored = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let writer = {
        let (networks, name, stored, failed, log) = (
            networks.clone(),
            name.clone(),
            stored.clone(),
            failed.clone(),
            log.clone(),
        );
        tokio::spawn(async move {
            while let Some(batch) = receiver.recv().await {
                let (samples, alerts) = (batch.samples.len(), batch.alerts.len());
                let mut written = networks.write_samples(&name, &batch.samples).await;
                if written.is_ok() && alerts > 0 {
                    written = networks.write_alerts(&name, &batch.alerts).await;
                }
                match written {
                    Ok(()) => {
                        stored.fetch_add(samples as u64, Ordering::Relaxed);
                    }
                    Err(err) => {
                        failed.fetch_add(samples as u64, Ordering::Relaxed);
                        log.line(
                            "warning",
                            "chain",
                            &format!("{samples} samples and {alerts} alerts not stored: {err}"),
                        );
                    }
                }
            }
        })
    };

    if let Some(url) = &args.alert_webhook {
        crate::monitor::webhook::check_url(url).map_err(|reason| format!("alert_webhook: {reason}"))?;
    }
    let webhook = args.alert_webhook.clone().map(crate::monitor::webhook::Webhook::start);
    let cloudwatch = match &args.cloudwatch {
        Some(settings) => {
            settings.check().map_err(|reason| format!("cloudwatch: {reason}"))?;
            let client = crate::monitor::cloudwatch::client(settings)
                .await
                .map_err(|reason| format!("cloudwatch: {reason}"))?;
            let sink = CloudWatchSink::start(client, settings.log_group(&name));
            log.line(
                "info",
                "chain",
                &format!(
                    "shipping node logs to CloudWatch Logs group `{}`, one stream per node",
                    sink.log_group()
                ),
            );
            Some((settings.clone(), sink))
        }
        None => None,
    };
    let mut ship = |node: &str, at: chrono::DateTime<chrono::Utc>, line: &str| {
        if let Some((settings, sink)) = &cloudwatch {
            if settings.ships(|| crate::monitor::logs::parse_line(line).level) {
                sink.send(node, at, line);
            }
        }
    };
    let series = args
        .client_series
        .clone()
        .unwrap_or_else(|| crate::monitor::DEFAULT_SERIES.iter().map(|s| s.to_string()).collect());
    let mut monitor = match (&record, pods) {
        (AnyRecord::Kubernetes(kube), Some(pods)) => Monitor::of_pods(kube, interval, series, pods),
        (AnyRecord::Local(local), _) => Monitor::with_series(local, interval, series),
        (AnyRecord::Kubernetes(_), None) => {
            return Err(format!(
                "network `{name}` runs on Kubernetes, which this runner has no region of"
            ))
        }
    };
    if let Some(key) = &args.probe_key {
        let key =
            crate::keys::NodeKey::from_hex(key.trim_start_matches("0x")).map_err(|e| format!("probe_key: {e}"))?;
        let every = match &args.probe_interval {
            Some(value) => value.value("probe_interval")?.get(),
            None => Duration::from_secs(10),
        };
        let confirmations = match &args.probe_confirmations {
            Some(value) => *value.value("probe_confirmations")?,
            None => 2,
        };
        log.line(
            "info",
            "chain",
            &format!(
                "probe transactions from {} every {every:?}, confirmed after {confirmations} blocks",
                key.address()
            ),
        );
        monitor = monitor.with_probe(nodes.clone(), record.chain().2, key, every, confirmations);
    }
    let mut schedule = Schedule::new(interval, duration.map(|d| Instant::now() + d));
    let mut pending: Vec<NodeSample> = Vec::new();
    let mut last_flush = Instant::now();
    let mut last_summary = Instant::now();
    let mut was_up: Vec<Option<bool>> = vec![None; nodes.len()];
    let (mut ticks, mut dropped, mut down_readings, mut alerts_raised) = (0u64, 0u64, 0u64, 0u64);
    let mut probe_errors = 0u64;
    let mut usage_warned = false;
    let mut ended = "its duration ended".to_string();
    let started = Instant::now();
    while schedule.next(&ctx.cancel).await {
        let readings = monitor.tick().await;
        ticks += 1;
        if let Some(reason) = monitor.usage_error.as_ref().filter(|_| !usage_warned) {
            usage_warned = true;
            log.line("warning", "chain", &format!("no CPU and memory of the pods: {reason}"));
        }
        for alert in monitor.follow_logs_with(&mut ship) {
            alerts_raised += 1;
            if let Some(webhook) = &webhook {
                webhook.send(json!({
                    "network": name, "node": alert.node, "level": alert.level.as_str(), "pattern": alert.pattern,
                    "message": alert.message, "count": alert.count, "first_at": alert.first_at, "last_at": alert.last_at,
                    "dag_id": ctx.dag_id, "run_id": ctx.run_id, "task_id": ctx.task_id,
                }));
            }
            log.line(
                "warning",
                "alert",
                &format!(
                    "{} {}: {}",
                    alert.node,
                    alert.level.as_str().to_uppercase(),
                    alert.message
                ),
            );
        }
        for (reading, before) in readings.iter().zip(was_up.iter_mut()) {
            if !reading.up {
                down_readings += 1;
            }
            match (*before, reading.up) {
                (Some(true) | None, false) => log.line(
                    "warning",
                    "chain",
                    &format!(
                        "node `{}` is down: {}",
                        reading.node,
                        reading.rpc.error.as_deref().unwrap_or("no answer")
                    ),
                ),
                (Some(false), true) => log.line("info", "chain", &format!("node `{}` is up again", reading.node)),
                _ => {}
            }
            *before = Some(reading.up);
            if let Some(reason) = &reading.probe_error {
                probe_errors += 1;
                if probe_errors <= 3 {
                    log.line("warning", "chain", &format!("probe via `{}`: {reason}", reading.node));
                }
            }
            pending.extend(reading.samples(&name, Some(&ctx.run_id), Some(&ctx.task_id)));
        }
        pending.extend(monitor.take_block_samples(&name, Some(&ctx.run_id), Some(&ctx.task_id), false));
        if last_flush.elapsed() >= FLUSH_EVERY {
            let batch = Batch {
                samples: std::mem::take(&mut pending),
                alerts: alert_rows(&mut monitor, &name, &ctx),
            };
            if let Err(tokio::sync::mpsc::error::TrySendError::Full(batch)) = sender.try_send(batch) {
                dropped += batch.samples.len() as u64;
            }
            last_flush = Instant::now();
        }
        if last_summary.elapsed() >= SUMMARY_EVERY {
            let heads: Vec<String> = readings
                .iter()
                .map(|r| {
                    format!(
                        "{}={}",
                        r.node,
                        r.rpc.head.map_or("down".to_string(), |h| format!("#{h}"))
                    )
                })
                .collect();
            log.line(
                "info",
                "chain",
                &format!("{ticks} readings; heads {}", heads.join(", ")),
            );
            last_summary = Instant::now();
        }
        // Stop once the network is gone (a teardown in another task).
        match networks.get_network(&name).await {
            Ok(row) if row.status == "running" => {}
            Ok(row) => {
                ended = format!("network `{name}` is {}", row.status);
                break;
            }
            Err(err) => {
                ended = format!("network `{name}` cannot be read: {err}");
                break;
            }
        }
    }
    if ctx.cancel.is_cancelled() {
        ended = "the try was stopped".into();
    }
    monitor.follow_logs_with(&mut ship);
    pending.extend(monitor.take_block_samples(&name, Some(&ctx.run_id), Some(&ctx.task_id), true));
    let last = Batch {
        samples: pending,
        alerts: alert_rows(&mut monitor, &name, &ctx),
    };
    if !last.samples.is_empty() || !last.alerts.is_empty() {
        if let Err(tokio::sync::mpsc::error::TrySendError::Full(batch)) = sender.try_send(last) {
            dropped += batch.samples.len() as u64;
        }
    }
    drop(sender);
    // The last batches, bounded: a try being stopped does not wait long.
    let _ = tokio::time::timeout(Duration::from_secs(30), writer).await;
    let stored = stored.load(Ordering::Relaxed);
    let failed = failed.load(Ordering::Relaxed);
    let hooked = match webhook {
        Some(webhook) => webhook.finish(Duration::from_secs(10)).await,
        None => Default::default(),
    };
    if hooked.dropped > 0 {
        log.line(
            "warning",
            "alert",
            &format!(
                "{} alerts could not be posted to the webhook ({} were){}",
                hooked.dropped,
                hooked.sent,
                hooked
                    .last_error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        );
    }
    let shipped = match cloudwatch {
        Some((_, sink)) => {
            let shipped = sink.finish(Duration::from_secs(20)).await;
            log.line(
                if shipped.dropped > 0 { "warning" } else { "info" },
                "chain",
                &format!(
                    "{} log lines shipped to CloudWatch Logs, {} dropped{}",
                    shipped.sent,
                    shipped.dropped,
                    shipped
                        .last_error
                        .as_deref()
                        .map(|e| format!(" (last error: {e})"))
                        .unwrap_or_default()
                ),
            );
            shipped
        }
        None => Default::default(),
    };
    log.line(
        "info",
        "chain",
        &format!(
            "stopped monitoring `{name}` after {:.0}s ({ended}): {ticks} readings, {stored} samples stored, {} not stored, {alerts_raised} alert patterns, {} log lines in no known format",
            started.elapsed().as_secs_f64(),
            dropped + failed,
            monitor.unparsed_lines()
        ),
    );
    Ok(json!({
        "network": name,
        "readings": ticks,
        "samples_stored": stored,
        "samples_dropped": dropped + failed,
        "down_readings": down_readings,
        "alert_patterns": alerts_raised,
        "webhook_sent": hooked.sent,
        "webhook_dropped": hooked.dropped,
        "cloudwatch_sent": shipped.sent,
        "cloudwatch_dropped": shipped.dropped,
        "probe_errors": probe_errors,
        "ended": ended,
    }))
}
