//! Watching a network through the real `dagctl` binary, against real anvil nodes: `net watch` (NDJSON and
//! stored samples) and `net samples`. What the monitor stored is checked against values read independently
//! over JSON-RPC; a killed node shows as down at once; a torn-down network ends the watch; `/metrics`, the REST
//! API, retention, the Grafana dashboard and `dagctl bench monitor`. The operator is in `monitor_operator.rs`.
//!
//! anvil comes from `DAGCTL_ANVIL` or the bin dir named by `DAGCTL_CLIENTS_BIN`; without it the tests fail.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{stderr, stdout, Home};
use serde_json::{json, Value};

fn anvil() -> PathBuf {
    common::client_binary("anvil", "DAGCTL_ANVIL")
}

fn dagctl(home: &Home, args: &[&str]) -> std::process::Output {
    home.command()
        .env("DAGCTL_ANVIL", anvil())
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

/// `net watch` lines, by node.
fn readings(output: &std::process::Output) -> BTreeMap<String, Vec<Value>> {
    let mut by_node: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in stdout(output).lines() {
        let reading: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not NDJSON ({e}): {line}"));
        by_node
            .entry(reading["node"].as_str().unwrap().to_string())
            .or_default()
            .push(reading);
    }
    by_node
}

fn rpc(url: &str, method: &str, params: Value) -> Value {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(chain::local::rpc::call(url, method, params, Duration::from_secs(5)))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn quantity(value: &Value) -> u64 {
    chain::local::rpc::quantity(value).unwrap()
}

struct Down<'a>(&'a Home, &'static str);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["net", "down", self.1]);
    }
}

#[test]
fn net_watch_reads_every_node_stores_samples_and_sees_a_node_go_down() {
    let home = Home::new();
    let up = dagctl(
        &home,
        &[
            "net",
            "up",
            "--client",
            "anvil",
            "--consensus",
            "interval",
            "--nodes",
            "2",
            "--block-time",
            "1",
            "--name",
            "watched",
            "-o",
            "json",
        ],
    );
    assert!(up.status.success(), "{}", stderr(&up));
    let _down = Down(&home, "watched");
    let up: Value = serde_json::from_slice(&up.stdout).unwrap();
    let urls: BTreeMap<String, String> = up["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap().to_string(),
                n["rpc"].as_str().unwrap().to_string(),
            )
        })
        .collect();

    // Bad flags: one readable line, nothing watched.
    let fast = dagctl(&home, &["net", "watch", "watched", "--interval", "50ms"]);
    assert!(!fast.status.success());
    assert!(
        stderr(&fast).contains("below the minimum of 100ms"),
        "{}",
        stderr(&fast)
    );
    let missing = dagctl(&home, &["net", "watch", "nope"]);
    assert!(
        stderr(&missing).contains("network `nope` not found"),
        "{}",
        stderr(&missing)
    );

    // 3 s at 500 ms: about 6 readings of each node, every one up, heads never going back.
    let started = Instant::now();
    let watched = dagctl(
        &home,
        &[
            "net",
            "watch",
            "watched",
            "--interval",
            "500ms",
            "--duration",
            "3s",
            "-o",
            "json",
            "--store",
        ],
    );
    assert!(watched.status.success(), "{}", stderr(&watched));
    assert!(started.elapsed() < Duration::from_secs(10), "bounded by --duration");
    let by_node = readings(&watched);
    assert_eq!(by_node.len(), 2, "{by_node:?}");
    for (node, lines) in &by_node {
        assert!((4..=8).contains(&lines.len()), "{node}: {} readings", lines.len());
        assert!(lines.iter().all(|r| r["up"] == true), "{node}: {lines:?}");
        let heads: Vec<u64> = lines.iter().map(|r| r["head"].as_u64().unwrap()).collect();
        assert!(heads.windows(2).all(|w| w[0] <= w[1]), "{node}: {heads:?}");
        assert!(heads.last() > heads.first(), "blocks every second: {heads:?}");
        assert!(
            lines.iter().all(|r| r["rss_bytes"].as_f64().unwrap() > 1e6),
            "{node}: resident memory"
        );
        assert!(
            lines.iter().skip(1).all(|r| r["cpu_percent"].as_f64().is_some()),
            "{node}: cpu after the first"
        );
        assert!(
            lines
                .iter()
                .any(|r| r["block_time"].as_f64().is_some_and(|t| (0.5..=2.0).contains(&t))),
            "{node}: {lines:?}"
        );
    }
    let stored = stderr(&watched);
    assert!(stored.contains("samples stored"), "{stored}");

    // What was stored equals what an independent walk reads: the block at each stored head has the stored
    // timestamp and gas limit, on the node that reported it.
    let samples = home.json(&["net", "samples", "watched", "--node", "node-1"]);
    let samples = samples.as_array().unwrap();
    let mut at_time: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    // Block arrivals are stored at their own times (checked below); readings at the reading's.
    let per_block = [
        "block_arrival",
        "block_hash48",
        "block_gas_used",
        "block_gas_limit",
        "block_empty",
    ];
    let arrivals: Vec<&Value> = samples.iter().filter(|s| s["metric"] == "block_arrival").collect();
    assert!(
        arrivals.len() >= 2,
        "anvil's 1 s blocks arrived while watching: {arrivals:?}"
    );
    assert!(
        arrivals
            .windows(2)
            .all(|w| w[0]["value"].as_f64() < w[1]["value"].as_f64()),
        "one arrival per block, in order: {arrivals:?}"
    );
    for sample in samples
        .iter()
        .filter(|s| !per_block.contains(&s["metric"].as_str().unwrap()))
    {
        at_time
            .entry(sample["at"].as_str().unwrap().to_string())
            .or_default()
            .insert(
                sample["metric"].as_str().unwrap().to_string(),
                sample["value"].as_f64().unwrap(),
            );
    }
    assert_eq!(
        at_time.len(),
        by_node["node-1"].len(),
        "one stored reading per printed reading"
    );
    for metrics in at_time.values() {
        let head = metrics["head"] as u64;
        let block = rpc(
            &urls["node-1"],
            "eth_getBlockByNumber",
            json!([format!("{head:#x}"), false]),
        );
        assert_eq!(
            quantity(&block["timestamp"]),
            metrics["head_timestamp"] as u64,
            "block {head}"
        );
        assert_eq!(
            quantity(&block["gasLimit"]),
            metrics["head_gas_limit"] as u64,
            "block {head}"
        );
        assert_eq!(metrics["up"], 1.0);
    }
    let heads = home.json(&["net", "samples", "watched", "--metric", "head"]);
    assert_eq!(heads.as_array().unwrap().len(), at_time.len() * 2, "both nodes");
    let bad = dagctl(&home, &["net", "samples", "watched", "--metric", "bogus"]);
    assert!(stderr(&bad).contains("unknown metric `bogus`"), "{}", stderr(&bad));

    // The engine's /metrics shows the newest sample of each node metric of the running network, and the REST
    // API serves the samples and alerts to a signed-in viewer.
    let port = common::free_port();
    let mut standalone = home
        .command()
        .args(["standalone", "--port", &port.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let metrics = common::wait_for(Duration::from_secs(30), "/metrics", || {
        common::http_get(port, "/metrics").filter(|(status, _)| *status == 200)
    })
    .1;
    common::wait_for(Duration::from_secs(30), "the admin password", || {
        home.path().join("standalone_admin_password.txt").exists().then_some(())
    });
    let bearer = format!("Bearer {}", common::admin_token(&home, port));
    let auth = [("Authorization", bearer.as_str())];
    let series = |query: &str| {
        let (status, _, body) = common::http(
            port,
            "GET",
            &format!("/api/v2/dagctl/networks/watched/series{query}"),
            &auth,
            None,
        );
        (status, serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null))
    };
    let (status, heads) = series("?metric=head&node=node-1");
    assert_eq!(status, 200, "{heads}");
    assert_eq!(heads["samples"].as_array().unwrap().len(), at_time.len(), "{heads}");
    assert_eq!(series("?limit=0").0, 422);
    assert_eq!(series("?bogus=1").0, 400, "an unknown parameter");
    assert_eq!(series("?from=yesterday").0, 422);
    let unauthenticated = common::http(port, "GET", "/api/v2/dagctl/networks/watched/series", &[], None).0;
    assert_eq!(unauthenticated, 401);
    let missing = common::http(port, "GET", "/api/v2/dagctl/networks/nope/alerts", &auth, None).0;
    assert_eq!(missing, 404);
    let (status, _, body) = common::http(port, "GET", "/api/v2/dagctl/networks/watched/alerts", &auth, None);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(standalone.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    standalone.wait().unwrap();
    let last_head = by_node["node-1"].last().unwrap()["head"].as_u64().unwrap();
    let line = format!("dagctl_network_node_value{{network=\"watched\",node=\"node-1\",metric=\"head\"}} {last_head}");
    assert!(metrics.contains("# TYPE dagctl_network_node_value gauge"), "{metrics}");
    assert!(metrics.contains(&line), "{line} in {metrics}");
    assert!(metrics.contains("node=\"node-2\",metric=\"up\"} 1"), "{metrics}");

    // node-2 killed: down from the first reading on (within 2 intervals), node-1 still up.
    home.ok(&["net", "kill", "watched", "node-2"]);
    let watched = dagctl(
        &home,
        &[
            "net",
            "watch",
            "watched",
            "--interval",
            "500ms",
            "--duration",
            "1200ms",
            "-o",
            "json",
        ],
    );
    assert!(watched.status.success(), "{}", stderr(&watched));
    let by_node = readings(&watched);
    assert!(
        by_node["node-2"].iter().all(|r| r["up"] == false),
        "{:?}",
        by_node["node-2"]
    );
    assert!(
        by_node["node-2"][0]["error"].as_str().is_some(),
        "{:?}",
        by_node["node-2"]
    );
    assert!(by_node["node-1"].iter().all(|r| r["up"] == true));

    // A watch without an end stops by itself once the network is torn down.
    let mut watch = home
        .command()
        .args(["net", "watch", "watched", "--interval", "200ms", "-o", "json"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    home.ok(&["net", "down", "watched"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = watch.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = watch.kill();
            let _ = watch.wait();
            panic!("net watch did not stop after the network was torn down");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success());
    let mut err = String::new();
    std::io::Read::read_to_string(watch.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(err.contains("stopped watching: network `watched` is"), "{err}");
    let after = dagctl(&home, &["net", "watch", "watched"]);
    assert!(
        stderr(&after).contains("only a running network can be watched"),
        "{}",
        stderr(&after)
    );

    // Retention: a scheduler deletes samples older than `sample_retention` (checked at its start, then every
    // 10 minutes); a retention that is not a duration is refused in one line.
    let bad = home
        .command()
        .env("DAGCTL_SAMPLE_RETENTION", "soon")
        .args(["dags", "list"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("sample_retention"), "{}", stderr(&bad));
    assert!(!home.json(&["net", "samples", "watched"]).as_array().unwrap().is_empty());
    std::thread::sleep(Duration::from_millis(1100));
    let mut scheduler = home
        .command()
        .env("DAGCTL_SAMPLE_RETENTION", "1s")
        .args(["scheduler"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !home.json(&["net", "samples", "watched"]).as_array().unwrap().is_empty() {
        if Instant::now() > deadline {
            let _ = scheduler.kill();
            let _ = scheduler.wait();
            panic!("samples past their retention were not deleted");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(scheduler.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    scheduler.wait().unwrap();
}

/// The Grafana dashboard in docs/ reads only the family the engine's /metrics writes, and only metrics the
/// monitor stores.
#[test]
fn the_grafana_dashboard_asks_for_what_the_engine_exposes() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana/dagctl-networks.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    for panel in panels {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            assert!(expr.starts_with("dagctl_network_node_value{"), "{expr}");
            let metric = expr
                .split("metric=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap();
            assert!(chain::monitor::is_metric(metric), "{metric} is not a stored metric");
        }
    }
}

/// `dagctl bench monitor` runs and reports its three figures with their baselines (the numbers are measured,
/// not asserted: see docs/benchmarks.md).
#[test]
fn bench_monitor_reports_every_figure_with_a_baseline() {
    let home = Home::new();
    let output = dagctl(
        &home,
        &[
            "bench",
            "monitor",
            "--nodes",
            "1",
            "--replay-nodes",
            "5",
            "--seconds",
            "2",
            "-o",
            "json",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let rows: Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for row in rows {
        assert!(row["baseline"].as_str().is_some_and(|b| !b.is_empty()), "{row}");
        assert!(row["ratio_to_baseline"].as_f64().is_some(), "{row}");
        assert_eq!(row["kept_up"], true, "{row}");
    }
    assert!(rows[1]["readings"].as_u64().unwrap() >= 5, "{rows:?}");
}
