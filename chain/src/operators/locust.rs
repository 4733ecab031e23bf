//! `chain.locust`: runs a user's locustfile headless (locust from PyPI, in the venv
//! `scripts/install-pytools.sh` makes, or any `locust` the engine is configured with) against one node of a
//! network or a URL, for `users` users spawned at `spawn_rate` for `duration`, and reads locust's stats into
//! the same summary shape as `chain.load_test` (per request name: succ, fail, send rate, throughput, latency
//! percentiles; failures by error). locust's CSV files are kept under `<load dir>/<dag>/<run>/`.
//!
//! The stats are not read from those CSV files: locust writes them from a greenlet once a second and not again
//! at exit, so the last second is missing (measured: 364 of 516 requests). A small plugin file, loaded beside
//! the user's (`-f plugin.py,theirs.py`, which locust supports), writes the runner's final stats as JSON when
//! locust quits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use engine::operators::{validate_typed, ArgIssue, OperatorArgs, OperatorDef, Templated};
use serde::Deserialize;
use worker::operator::{Operator, OperatorContext, OperatorFuture, OperatorResult};

use super::target_nodes;
use crate::duration::SpecDuration;
use crate::load::summary::{Latency, Row, Summary};

/// Canonical name of the locust operator.
pub const LOCUST: &str = "chain.locust";

/// Grace after `duration` for locust to stop its users and write its stats.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The arguments of `chain.locust`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocustArgs {
    /// The locustfile (a path on the runner's machine).
    pub locustfile: String,
    /// A network (name or deploy task of this run): its `node` (default the first) is locust's host.
    #[serde(default)]
    pub network: Option<String>,
    #[serde(default)]
    pub node: Option<String>,
    /// Or a URL as locust's host.
    #[serde(default)]
    pub url: Option<String>,
    pub users: Templated<u32>,
    /// Users started per second (default: all at once).
    #[serde(default)]
    pub spawn_rate: Option<Templated<f64>>,
    pub duration: Templated<SpecDuration>,
    /// Only these user classes of the file (default: all).
    #[serde(default)]
    pub user_classes: Vec<String>,
}

impl OperatorArgs for LocustArgs {
    fn check(&self) -> Result<(), ArgIssue> {
        if self.locustfile.trim().is_empty() || self.locustfile.contains(',') {
            return Err(ArgIssue::new(
                "locustfile",
                "`locustfile` names the locust file to run (one path, no commas)",
            ));
        }
        match (&self.network, &self.url) {
            (Some(_), Some(_)) => return Err(ArgIssue::new("url", "give `network` or `url`, not both")),
            (None, None) => return Err(ArgIssue::new("network", "give `network` or `url`")),
            (None, Some(url)) if !engine::operators::is_template(url) => {
                crate::load::spec::check_url(url).map_err(|e| ArgIssue::new("url", e))?
            }
            _ => {}
        }
        if self.node.is_some() && self.network.is_none() {
            return Err(ArgIssue::new("node", "`node` picks a node of `network`"));
        }
        if let Templated::Value(users) = &self.users {
            if !(1..=100_000).contains(users) {
                return Err(ArgIssue::new("users", "users must be 1 to 100,000"));
            }
        }
        if let Some(Templated::Value(rate)) = &self.spawn_rate {
            if !(rate.is_finite() && *rate > 0.0) {
                return Err(ArgIssue::new("spawn_rate", "spawn_rate must be more than 0"));
            }
        }
        if let Templated::Value(duration) = &self.duration {
            if duration.get() < Duration::from_secs(1) {
                return Err(ArgIssue::new("duration", "duration must be at least 1s"));
            }
        }
        for class in &self.user_classes {
            if !class.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || class.is_empty() {
                return Err(ArgIssue::new(
                    "user_classes",
                    format!("`{class}` is not a Python class name"),
                ));
            }
        }
        Ok(())
    }
}

/// `chain.locust`.
pub(super) struct Locust {
    pub results_dir: PathBuf,
    pub program: PathBuf,
}

impl Operator for Locust {
    fn definition(&self) -> OperatorDef {
        OperatorDef {
            name: LOCUST,
            aliases: &[],
            validate: |args| validate_typed::<LocustArgs>(LOCUST, args),
            completes_in_scheduler: false,
            is_teardown: false,
        }
    }

    fn run(&self, ctx: OperatorContext) -> OperatorFuture {
        let (dir, program) = (self.results_dir.clone(), self.program.clone());
        Box::pin(async move {
            match run(ctx, dir, program).await {
                Ok(summary) => OperatorResult::Success(Some(summary)),
                Err(reason) => OperatorResult::Failed(reason),
            }
        })
    }
}

async fn run(ctx: OperatorContext, dir: PathBuf, program: PathBuf) -> Result<serde_json::Value, String> {
    let args = ctx.args_as::<LocustArgs>()?;
    let users = *args.users.value("users")?;
    let spawn_rate = match &args.spawn_rate {
        Some(rate) => *rate.value("spawn_rate")?,
        None => f64::from(users),
    };
    let duration = args.duration.value("duration")?.get();
    let (nodes, _) = target_nodes(&ctx, args.url.as_deref(), args.network.as_deref()).await?;
    let (node, host) = match &args.node {
        Some(name) => nodes
            .iter()
            .find(|(n, _)| n == name)
            .cloned()
            .ok_or_else(|| format!("no node `{name}` in the network"))?,
        None => nodes.first().cloned().ok_or("the network has no nodes")?,
    };
    if !Path::new(&args.locustfile).is_file() {
        return Err(format!("locustfile {} does not exist", args.locustfile));
    }
    let out = super::results_path(&dir, &ctx, "locust");
    std::fs::create_dir_all(&out).map_err(|e| format!("cannot make {}: {e}", out.display()))?;
    let prefix = out.join("locust");
    let plugin = out.join("dagctl_stats.py");
    let stats_file = out.join("stats.json");
    std::fs::write(&plugin, PLUGIN).map_err(|e| format!("cannot write {}: {e}", plugin.display()))?;
    let _ = std::fs::remove_file(&stats_file);
    let log = ctx.log.clone();
    log.line(
        "info",
        "load",
        &format!(
            "locust {} with {users} users ({spawn_rate}/s) for {duration:?} against `{node}` ({host})",
            args.locustfile
        ),
    );
    let mut command = tokio::process::Command::new(&program);
    command
        .arg("-f")
        .arg(format!("{},{}", plugin.display(), args.locustfile))
        .env("DAGCTL_LOCUST_STATS", &stats_file)
        .args(["--headless", "--only-summary", "--loglevel", "WARNING"])
        .args(["-u", &users.to_string(), "-r", &spawn_rate.to_string()])
        .args(["-t", &format!("{}s", duration.as_secs().max(1))])
        .args(["--stop-timeout", &STOP_TIMEOUT.as_secs().to_string()])
        .args(["--host", &host])
        .arg("--csv")
        .arg(&prefix)
        .args(&args.user_classes)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = command.spawn().map_err(|e| {
        format!(
            "cannot start {}: {e} (scripts/install-pytools.sh installs locust; set DAGCTL_LOCUST)",
            program.display()
        )
    })?;
    let pid = child.id();
    let limit = duration + STOP_TIMEOUT + Duration::from_secs(30);
    let waited = tokio::select! {
        output = tokio::time::timeout(limit, child.wait_with_output()) => output,
        _ = ctx.cancel.cancelled() => {
            stop_group(pid);
            return Err("stopped".into());
        }
    };
    let output = match waited {
        Ok(output) => output.map_err(|e| format!("waiting for locust failed: {e}"))?,
        Err(_) => {
            stop_group(pid);
            return Err(format!("locust ran past {limit:?}: killed"));
        }
    };
    for line in String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .take(50)
    {
        log.line("info", "locust", line);
    }
    // locust exits 1 when requests failed: that is a result, not a crash; other codes are.
    let code = output.status.code();
    if !matches!(code, Some(0) | Some(1)) {
        return Err(format!("locust failed ({})", output.status));
    }
    let summary = read_stats(&stats_file, &node, duration, &out).map_err(|e| format!("locust's stats: {e}"))?;
    for line in summary.table().lines() {
        log.line("info", "load", line);
    }
    serde_json::to_value(&summary).map_err(|e| e.to_string())
}

/// SIGTERM to locust's process group, then SIGKILL.
fn stop_group(pid: Option<u32>) {
    if let Some(pid) = pid {
        let group = nix::unistd::Pid::from_raw(-(pid as i32));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGTERM);
        std::thread::sleep(Duration::from_millis(500));
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGKILL);
    }
}

/// The plugin loaded beside the user's locustfile: the runner's final stats, as JSON, to the file
/// `DAGCTL_LOCUST_STATS` names, when locust quits (after its users stopped).
const PLUGIN: &str = r#"# Written by dagctl: writes locust's final stats as JSON when it quits.
import json
import os

from locust import events

_environment = {}


@events.init.add_listener
def _dagctl_init(environment, **_kwargs):
    _environment["env"] = environment


@events.quit.add_listener
def _dagctl_quit(**_kwargs):
    environment = _environment.get("env")
    path = os.environ.get("DAGCTL_LOCUST_STATS")
    if environment is None or environment.runner is None or not path:
        return
    stats = environment.runner.stats

    def entry(e):
        return {
            "method": e.method or "",
            "name": e.name,
            "requests": e.num_requests,
            "failures": e.num_failures,
            "min": e.min_response_time or 0,
            "mean": e.avg_response_time,
            "max": e.max_response_time,
            "p50": e.get_response_time_percentile(0.5),
            "p90": e.get_response_time_percentile(0.9),
            "p99": e.get_response_time_percentile(0.99),
            "p999": e.get_response_time_percentile(0.999),
            "rps": e.total_rps,
        }

    out = {
        "entries": [entry(e) for e in stats.entries.values()],
        "total": entry(stats.total),
        "errors": [
            {"method": e.method or "", "name": e.name, "error": e.to_name(), "occurrences": e.occurrences}
            for e in stats.errors.values()
        ],
    }
    with open(path, "w") as f:
        json.dump(out, f)
"#;

/// The plugin's JSON: one entry per request name and the total.
#[derive(Debug, Deserialize)]
struct Stats {
    entries: Vec<Entry>,
    total: Entry,
    errors: Vec<StatsError>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    method: String,
    name: String,
    requests: u64,
    failures: u64,
    min: f64,
    mean: f64,
    max: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    rps: f64,
}

#[derive(Debug, Deserialize)]
struct StatsError {
    method: String,
    name: String,
    error: String,
    occurrences: u64,
}

/// Reads the plugin's stats file into a summary.
pub fn read_stats(path: &Path, node: &str, duration: Duration, kept: &Path) -> Result<Summary, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let stats: Stats = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut errors_by_name: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for error in &stats.errors {
        let label = format!("{} {}", error.method, error.name).trim().to_string();
        let text: String = error.error.chars().take(120).collect();
        *errors_by_name.entry(label).or_default().entry(text).or_default() += error.occurrences;
    }
    let row_of = |e: &Entry, name: String, errors: BTreeMap<String, u64>| Row {
        name,
        succ: e.requests.saturating_sub(e.failures),
        fail: e.failures,
        dropped: 0,
        send_rate: e.rps,
        throughput: e.rps,
        latency_ms: Latency {
            min: e.min,
            mean: e.mean,
            p50: e.p50,
            p90: e.p90,
            p99: e.p99,
            p999: e.p999,
            max: e.max,
        },
        errors,
    };
    let kinds = stats
        .entries
        .iter()
        .map(|e| {
            let label = format!("{} {}", e.method, e.name).trim().to_string();
            let errors = errors_by_name.get(&label).cloned().unwrap_or_default();
            row_of(e, label, errors)
        })
        .collect();
    let mut all: BTreeMap<String, u64> = BTreeMap::new();
    for errors in errors_by_name.values() {
        for (error, n) in errors {
            *all.entry(error.clone()).or_default() += n;
        }
    }
    Ok(Summary {
        mode: "locust".into(),
        targets: vec![node.to_string()],
        seconds: duration.as_secs_f64(),
        total: row_of(&stats.total, "all".into(), all),
        kinds,
        tx: None,
        steps: Vec::new(),
        sustainable_rate: None,
        records_file: Some(kept.display().to_string()),
        ended: "done".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugins_stats_become_a_summary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stats.json");
        let entry = |name: &str, requests: u64, failures: u64| {
            serde_json::json!({"method": if name == "Aggregated" { "" } else { "POST" }, "name": name,
                "requests": requests, "failures": failures, "min": 1.0, "mean": 2.5, "max": 9.0, "p50": 2.0,
                "p90": 4.0, "p99": 8.0, "p999": 9.0, "rps": 50.0})
        };
        let stats = serde_json::json!({
            "entries": [entry("eth_blockNumber", 100, 10)],
            "total": entry("Aggregated", 100, 10),
            "errors": [{"method": "POST", "name": "eth_blockNumber", "error": "BadStatusCode(500)", "occurrences": 10}],
        });
        std::fs::write(&path, stats.to_string()).unwrap();
        let summary = read_stats(&path, "node-1", Duration::from_secs(2), dir.path()).unwrap();
        assert_eq!((summary.total.succ, summary.total.fail), (90, 10));
        assert_eq!(summary.kinds.len(), 1);
        assert_eq!(summary.kinds[0].name, "POST eth_blockNumber");
        assert_eq!(summary.kinds[0].latency_ms.p99, 8.0);
        assert_eq!(summary.kinds[0].errors.get("BadStatusCode(500)"), Some(&10));
        assert_eq!(summary.total.errors.get("BadStatusCode(500)"), Some(&10));
    }
}
