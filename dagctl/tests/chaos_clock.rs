//! Clock skew (`dagctl chaos clock`) on a real four-signer geth 1.13 Clique network: the skewed signer runs
//! under dagctl's clock supervisor and its own clock (read from the time geth stamps on its log lines) is an
//! hour ahead while the host's is not; at the end it runs on the host's clock again and the network agrees on
//! one chain; a `dagctl chaos` killed with SIGKILL mid-skew leaves the node skewed until `chaos recover` puts
//! it back. geth comes from `DAGCTL_GETH` or `DAGCTL_CLIENTS_BIN`; without it the test fails.

mod common;

use std::time::Duration;

use chrono::Timelike;
use common::{rpc, stderr, stdout, wait_for, Home};
use serde_json::{json, Value};

/// (name, rpc, pid, log) of every node of `network`.
fn nodes(home: &Home, network: &str) -> Vec<(String, String, u32, String)> {
    let shown = home.json(&["net", "show", network]);
    shown["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_string(),
                n["rpc"].as_str().unwrap().to_string(),
                n["pid"].as_u64().unwrap() as u32,
                n["log"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Seconds the clock geth stamped on the last line of `log` written after `after` bytes is ahead of this
/// host's local time of day (geth writes `INFO [MM-DD|HH:MM:SS.mmm]` in local time), in -12 h..12 h.
fn log_clock_ahead(log: &str, after: usize) -> Option<i64> {
    let text = std::fs::read_to_string(log).ok()?;
    let line = text
        .get(after..)?
        .lines()
        .rev()
        .find(|l| l.contains('|') && l.contains('['))?;
    let stamp = line.split('|').nth(1)?.get(..8)?;
    let mut parts = stamp.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (parts.next()??, parts.next()??, parts.next()??);
    let now = chrono::Local::now();
    let host = i64::from(now.hour() * 3600 + now.minute() * 60 + now.second());
    let diff = (h * 3600 + m * 60 + s - host).rem_euclid(86_400);
    Some(if diff > 43_200 { diff - 86_400 } else { diff })
}

/// Waits until every node answers and the block at the lowest head is the same everywhere, and the chain
/// advanced past where it was when called.
fn wait_converged(nodes: &[(String, String, u32, String)]) {
    let start = rpc(&nodes[0].1, "eth_blockNumber", json!([]))
        .and_then(|v| u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok())
        .unwrap_or(0);
    wait_for(Duration::from_secs(90), "every node on one chain", || {
        let heads: Vec<u64> = nodes
            .iter()
            .map(|(_, url, _, _)| {
                rpc(url, "eth_blockNumber", json!([]))
                    .and_then(|v| u64::from_str_radix(v.as_str()?.trim_start_matches("0x"), 16).ok())
            })
            .collect::<Option<_>>()?;
        let low = *heads.iter().min()?;
        if low <= start {
            return None;
        }
        let hashes: Vec<Value> = nodes
            .iter()
            .map(|(_, url, _, _)| rpc(url, "eth_getBlockByNumber", json!([format!("0x{low:x}"), false])))
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .map(|b| b["hash"].clone())
            .collect();
        hashes.windows(2).all(|w| w[0] == w[1]).then_some(())
    });
}

#[test]
fn a_skewed_signer_runs_an_hour_ahead_and_comes_back() {
    let home = Home::new();
    common::geth_clique_network(&home, "skewed", 4);
    let before = nodes(&home, "skewed");
    let (_, _, pid, log) = before.iter().find(|n| n.0 == "validator-2").unwrap().clone();
    assert!(!cmdline(pid).contains("clock-shim"), "{}", cmdline(pid));
    let clock = home.spawn(&[
        "chaos",
        "--network",
        "skewed",
        "clock",
        "--offset",
        "+1h",
        "--duration",
        "15s",
        "--target",
        "validator-2",
        "-o",
        "json",
    ]);
    // Restarted under the supervisor; geth's own clock an hour ahead, the host's not.
    let skewed_pid = wait_for(
        Duration::from_secs(30),
        "validator-2 under the clock supervisor",
        || {
            let now = nodes(&home, "skewed");
            let (_, _, pid, _) = now.iter().find(|n| n.0 == "validator-2")?;
            cmdline(*pid).contains("clock-shim +3600s").then_some(*pid)
        },
    );
    let skew_start = std::fs::metadata(&log).unwrap().len() as usize;
    let ahead = wait_for(Duration::from_secs(20), "a log line from the skewed geth", || {
        log_clock_ahead(&log, skew_start)
    });
    assert!((3590..=3610).contains(&ahead), "validator-2's clock is {ahead} s ahead");
    assert_eq!(home.ok(&["chaos", "faults"]).lines().count(), 1, "one part in place");
    let others_ahead = log_clock_ahead(&before[0].3, 0).unwrap();
    assert!(others_ahead.abs() <= 5, "validator-1's clock is {others_ahead} s off");

    wait_for(Duration::from_secs(60), "the clock fault to end", || {
        (!common::pid_alive(clock.pid())).then_some(())
    });
    let output = clock.output();
    let json = &output[output.find('{').unwrap_or(0)..];
    let report: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {output}"));
    assert_eq!(report["fault"], "clock +3600s for 15s", "{report}");
    let actions: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "started again, its clock +3600 s off",
            "started again on the host's clock"
        ]
    );
    let after = nodes(&home, "skewed");
    let (_, _, pid, _) = after.iter().find(|n| n.0 == "validator-2").unwrap();
    assert_ne!(*pid, skewed_pid);
    assert!(!cmdline(*pid).contains("clock-shim"), "{}", cmdline(*pid));
    assert!(
        !common::pid_alive(skewed_pid as i32),
        "the supervisor ended with its node"
    );
    let back_from = std::fs::metadata(&log).unwrap().len() as usize;
    let ahead = wait_for(Duration::from_secs(60), "a log line from the restarted geth", || {
        log_clock_ahead(&log, back_from)
    });
    assert!(ahead.abs() <= 5, "validator-2's clock is {ahead} s off after the fault");
    assert_eq!(home.ok(&["chaos", "faults"]).trim(), "no fault in place");
    wait_converged(&after);

    // SIGKILL of the command mid-skew: the node stays skewed until `chaos recover` starts it on the host's
    // clock.
    let mut long = home.spawn(&[
        "chaos",
        "--network",
        "skewed",
        "clock",
        "--offset",
        "-30m",
        "--duration",
        "10m",
        "--target",
        "validator-3",
    ]);
    let skewed_pid = wait_for(
        Duration::from_secs(30),
        "validator-3 under the clock supervisor",
        || {
            let now = nodes(&home, "skewed");
            let (_, _, pid, _) = now.iter().find(|n| n.0 == "validator-3")?;
            cmdline(*pid).contains("clock-shim -1800s").then_some(*pid)
        },
    );
    long.kill9();
    assert!(
        common::pid_alive(skewed_pid as i32),
        "the skewed node outlives its owner"
    );
    let out = home.run(&["chaos", "recover"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("undid 1 fault part(s)"), "{}", stdout(&out));
    let recovered = nodes(&home, "skewed");
    let (_, _, pid, _) = recovered.iter().find(|n| n.0 == "validator-3").unwrap();
    assert!(!cmdline(*pid).contains("clock-shim"), "{}", cmdline(*pid));
    assert!(!common::pid_alive(skewed_pid as i32));
    assert_eq!(home.ok(&["chaos", "faults"]).trim(), "no fault in place");
    wait_converged(&recovered);

    // A bad offset is one line naming it, and nothing is touched.
    let bad = home.run(&[
        "chaos",
        "--network",
        "skewed",
        "clock",
        "--offset",
        "+0s",
        "--duration",
        "5s",
        "--target",
        "validator-1",
    ]);
    assert!(!bad.status.success());
    assert_eq!(stderr(&bad).trim().lines().count(), 1, "{}", stderr(&bad));
    assert!(stderr(&bad).contains("`offset` must not be zero"), "{}", stderr(&bad));
    home.ok(&["net", "down", "skewed"]);
}

#[test]
fn bench_chaos_reports_every_figure_with_a_baseline() {
    let home = Home::new();
    let rows = home.json(&[
        "bench",
        "chaos",
        "--round-trips",
        "200",
        "--mib",
        "8",
        "--delay-ms",
        "10",
        "--rate-kbit",
        "4000",
        "--clock-reads",
        "2000",
    ]);
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 6, "{rows:?}");
    for row in rows {
        for key in ["value", "baseline_value", "ratio_to_baseline"] {
            assert!(row[key].as_f64().is_some_and(|v| v > 0.0), "{key}: {row}");
        }
        assert!(!row["baseline"].as_str().unwrap().is_empty(), "{row}");
    }
    // Not a speed: the supervised program's clock is where it was asked to be.
    let offset = rows
        .iter()
        .find(|r| r["figure"] == "offset the supervised program sees")
        .unwrap();
    let seen = offset["value"].as_f64().unwrap();
    assert!((3595.0..=3605.0).contains(&seen), "{offset}");
}
