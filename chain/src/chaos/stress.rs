//! `stress`: CPU and memory pressure on a node's host with Debian's `stress-ng`, one `stress-ng` per targeted
//! node, pinned (`--taskset`) to the CPUs the node's process may run on. The local backend runs every node on
//! this one host, so the pressure falls on all of them that share those CPUs (said in `docs/chaos.md`).
//!
//! Each `stress-ng` leads a process group of its own and carries `DAGCTL_CHAOS_TAG=<fault id>/<node>` in its
//! environment, recorded in the ledger before it starts ([`Undo::Kill`]: the group of the tagged process), and its own `--timeout` a little past the fault's end: whoever finds the
//! fault's owner dead kills it by that tag, and a `stress-ng` whose owner and engine are both gone still ends.

use std::time::{Duration, Instant};

use chrono::Utc;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::ledger::{Book, FaultLedger, Undo};
use super::process::{FaultReport, Step};
use crate::backend::local::NetworkRecord;
use crate::backend::Progress;
use crate::error::{Error, Result};

/// The environment variable that tags a fault's `stress-ng`.
pub const TAG: &str = "DAGCTL_CHAOS_TAG";

/// Pressure on a node's host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StressFault {
    pub duration: Duration,
    /// CPU workers (0: none).
    pub cpu: u32,
    /// Each CPU worker's load, percent.
    pub cpu_load: u32,
    /// Memory workers (0: none), each touching `vm_bytes` (stress-ng's size: `256M`, `1G`, `50%`).
    pub vm: u32,
    pub vm_bytes: Option<String>,
}

/// `stress` as written: `{duration, cpu?, cpu_load?, memory?, vm?}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StressSpec {
    pub duration: crate::duration::SpecDuration,
    /// CPU workers.
    #[serde(default)]
    pub cpu: Option<u32>,
    /// Each CPU worker's load in percent (default 100).
    #[serde(default)]
    pub cpu_load: Option<u32>,
    /// Memory each memory worker touches: `256M`, `1G`, `50%` (of the host's).
    #[serde(default)]
    pub memory: Option<String>,
    /// Memory workers (default 1 with `memory`).
    #[serde(default)]
    pub vm: Option<u32>,
}

impl StressSpec {
    pub fn fault(&self) -> std::result::Result<StressFault, String> {
        if self.duration.0.is_zero() {
            return Err("`duration` must be more than zero".into());
        }
        let cpu = self.cpu.unwrap_or(0);
        let cpu_load = self.cpu_load.unwrap_or(100);
        if !(1..=100).contains(&cpu_load) {
            return Err(format!("`cpu_load` is a percentage: 1 to 100, not {cpu_load}"));
        }
        if cpu > 1024 {
            return Err(format!("`cpu`: {cpu} workers is more than 1024"));
        }
        if let Some(m) = &self.memory {
            check_size(m).map_err(|e| format!("`memory`: {e}"))?;
        }
        let vm = match (&self.memory, self.vm) {
            (Some(_), None) => 1,
            (Some(_), Some(0)) => return Err("`vm`: memory needs at least one worker".into()),
            (Some(_), Some(n)) => n.min(1024),
            (None, Some(_)) => return Err("`vm` needs `memory` (how much each worker touches)".into()),
            (None, None) => 0,
        };
        if cpu == 0 && vm == 0 {
            return Err("give `cpu` workers, `memory`, or both".into());
        }
        Ok(StressFault {
            duration: self.duration.0,
            cpu,
            cpu_load,
            vm,
            vm_bytes: self.memory.clone(),
        })
    }
}

/// stress-ng's size syntax: a number and an optional b, k, m, g (either case), or a percentage.
fn check_size(text: &str) -> std::result::Result<(), String> {
    let t = text.trim();
    let digits = t.trim_end_matches(['b', 'B', 'k', 'K', 'm', 'M', 'g', 'G', '%']);
    let unit = &t[digits.len()..];
    match (digits.parse::<u64>(), unit.len()) {
        (Ok(n), 0 | 1) if n > 0 => {
            if unit == "%" && n > 100 {
                return Err(format!("`{text}`: at most 100%"));
            }
            Ok(())
        }
        _ => Err(format!("`{text}`: a size such as 256M, 1G or 50%")),
    }
}

impl StressFault {
    pub fn name(&self) -> String {
        let mut parts = Vec::new();
        if self.cpu > 0 {
            parts.push(format!("{} CPU worker(s) at {}%", self.cpu, self.cpu_load));
        }
        if self.vm > 0 {
            parts.push(format!(
                "{} memory worker(s) of {}",
                self.vm,
                self.vm_bytes.as_deref().unwrap_or_default()
            ));
        }
        format!("stress {} for {:?}", parts.join(", "), self.duration)
    }

    fn args(&self, cpus: Option<&str>) -> Vec<String> {
        let mut args = Vec::new();
        if self.cpu > 0 {
            args.extend([
                "--cpu".into(),
                self.cpu.to_string(),
                "--cpu-load".into(),
                self.cpu_load.to_string(),
            ]);
        }
        if self.vm > 0 {
            args.extend([
                "--vm".into(),
                self.vm.to_string(),
                "--vm-bytes".into(),
                self.vm_bytes.clone().unwrap_or_default(),
            ]);
        }
        if let Some(cpus) = cpus {
            args.extend(["--taskset".into(), cpus.to_string()]);
        }
        // Its own end a little past the fault's, should everyone who could stop it be gone.
        args.extend([
            "--timeout".into(),
            format!("{}s", self.duration.as_secs() + 10),
            "--quiet".into(),
        ]);
        args
    }
}

/// The CPUs process `pid` may run on (`Cpus_allowed_list` of `/proc/PID/status`).
fn allowed_cpus(pid: u32) -> Option<String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|v| v.trim().to_string())
}

/// The processes whose environment carries `tag` (`DAGCTL_CHAOS_TAG=<tag>`).
pub fn tagged(tag: &str) -> Vec<u32> {
    let wanted = format!("{TAG}={tag}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .map(|env| env.split(|b| *b == 0).any(|v| v == wanted.as_bytes()))
                .unwrap_or(false)
        })
        .collect()
}

/// Kills every process tagged `tag` with its process group (a `stress-ng` leads its own, and its workers
/// rename themselves, dropping the tag), SIGKILL; how many were tagged.
pub async fn kill_tagged(tag: &str) -> usize {
    let pids = tagged(tag);
    for pid in &pids {
        // SIGTERM lets stress-ng reap its workers; what is left after 3 s is killed with the group.
        let _ = nix::sys::signal::kill(Pid::from_raw(*pid as i32), Signal::SIGTERM);
    }
    for _ in 0..30 {
        if tagged(tag).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for pid in &pids {
        let _ = killpg(Pid::from_raw(*pid as i32), Signal::SIGKILL);
    }
    pids.len()
}

fn stress_ng() -> Result<std::path::PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("stress-ng"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Rejected(
                "stress needs stress-ng on PATH (Debian's `stress-ng` package; scripts/ensure-stress-ng.sh installs it)"
                    .into(),
            )
        })
}

/// Applies `fault` to `nodes` of `record` (one `stress-ng` each), holds it for its duration (or until
/// `cancel`), and stops it.
pub async fn apply<L: FaultLedger>(
    book: &Book<'_, L>,
    record: &NetworkRecord,
    nodes: &[String],
    fault: &StressFault,
    cancel: &CancellationToken,
    progress: Progress<'_>,
) -> Result<FaultReport> {
    let program = stress_ng()?;
    let started = Instant::now();
    let mut report = FaultReport {
        fault: fault.name(),
        nodes: nodes.to_vec(),
        ..Default::default()
    };
    let mut step = |node: &str, action: String| {
        progress(&format!("{node}: {action}"));
        report.steps.push(Step {
            node: node.to_string(),
            at: Utc::now(),
            action,
        });
    };
    let mut children = Vec::new();
    let mut failure = None;
    for node in nodes {
        let tag = format!("{}/{node}", book.id);
        if let Err(err) = book.applying(node, "stress", &Undo::Kill { tag: tag.clone() }).await {
            failure = Some(err);
            break;
        }
        let cpus = record
            .nodes
            .iter()
            .find(|n| &n.name == node)
            .and_then(|n| n.pid)
            .and_then(allowed_cpus);
        let spawned = tokio::process::Command::new(&program)
            .args(fault.args(cpus.as_deref()))
            .env(TAG, &tag)
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn();
        match spawned {
            Ok(child) => {
                step(
                    node,
                    format!(
                        "stress-ng started (pid {}){}",
                        child.id().unwrap_or_default(),
                        cpus.map(|c| format!(" on CPUs {c}")).unwrap_or_default()
                    ),
                );
                children.push((node.clone(), child));
            }
            Err(e) => {
                let _ = book.undone(node, None).await;
                failure = Some(Error::Rejected(format!("cannot start {}: {e}", program.display())));
                break;
            }
        }
    }
    if failure.is_none() {
        report.in_place = Some(Utc::now());
        // Hold, watching for a stress-ng that ends early (a bad size, no memory).
        let until = tokio::time::Instant::now() + fault.duration;
        'hold: loop {
            tokio::select! {
                _ = cancel.cancelled() => { report.cancelled = true; break 'hold; }
                _ = tokio::time::sleep_until(until) => break 'hold,
                _ = tokio::time::sleep(Duration::from_millis(250)) => {
                    for (node, child) in &mut children {
                        if let Ok(Some(status)) = child.try_wait() {
                            let mut text = String::new();
                            if let Some(mut err) = child.stderr.take() {
                                use tokio::io::AsyncReadExt;
                                let _ = err.read_to_string(&mut text).await;
                            }
                            failure = Some(Error::Rejected(format!(
                                "stress-ng on {node} ended early ({status}): {}",
                                text.trim()
                            )));
                            break 'hold;
                        }
                    }
                }
            }
        }
    }
    for (node, mut child) in children {
        // SIGTERM first: stress-ng stops and reaps its workers (killed together they would be left as zombies
        // for init to reap); then SIGKILL for whatever is left of the group.
        if let Some(pid) = child.id() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
            if tokio::time::timeout(Duration::from_secs(3), child.wait())
                .await
                .is_err()
            {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        let _ = child.wait().await;
        step(&node, "stress-ng stopped".into());
        let _ = book.undone(&node, None).await;
    }
    if let Some(err) = failure {
        return Err(err);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> std::result::Result<StressFault, String> {
        super::super::spec::read::<StressSpec>(yaml)?.fault()
    }

    #[test]
    fn stress_reads_and_bad_settings_are_refused() {
        let f = spec("{duration: 30s, cpu: 2, cpu_load: 80, memory: 256M}").unwrap();
        assert_eq!((f.cpu, f.cpu_load, f.vm), (2, 80, 1));
        assert_eq!(
            f.args(Some("0-1")).join(" "),
            "--cpu 2 --cpu-load 80 --vm 1 --vm-bytes 256M --taskset 0-1 --timeout 40s --quiet"
        );
        assert_eq!(spec("{duration: 1m, memory: 50%}").unwrap().cpu, 0);
        for (yaml, needle) in [
            ("{duration: 30s}", "give `cpu`"),
            ("{duration: 0s, cpu: 1}", "more than zero"),
            ("{duration: 30s, cpu: 1, cpu_load: 101}", "1 to 100"),
            ("{duration: 30s, memory: lots}", "a size such as"),
            ("{duration: 30s, memory: 150%}", "at most 100%"),
            ("{duration: 30s, vm: 2}", "needs `memory`"),
            ("{duration: 30s, cpu: 1, disk: 1}", "unknown field"),
        ] {
            let err = spec(yaml).unwrap_err();
            assert!(err.contains(needle), "{yaml}: {err}");
        }
    }
}
