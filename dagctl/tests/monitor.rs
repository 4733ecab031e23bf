//! Watching a network through the real `dagctl` binary, against real anvil nodes: `net watch` (NDJSON and
//! stored samples) and `net samples`. What the monitor stored is checked against values read independently
//! over JSON-RPC; a killed node shows as down at once; a torn-down network ends the watch.
//!
//! anvil comes from `DAGCTL_ANVIL` or the bin dir named by `DAGCTL_CLIENTS_BIN`; without it the tests fail.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{stderr, stdout, Home};
use serde_json::{json, Value};

fn anvil() -> PathBuf {
    if let Some(path) = std::env::var_os("DAGCTL_ANVIL").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if let Some(dir) = std::env::var_os("DAGCTL_CLIENTS_BIN").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(dir).join("anvil");
        if path.exists() {
            return path;
        }
    }
    panic!("anvil is needed by this test: set DAGCTL_ANVIL, or DAGCTL_CLIENTS_BIN to the bin dir of `scripts/install-clients.sh`")
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
    for sample in samples {
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

/// `chain.monitor` in a DAG: it watches while another branch waits, stores samples tied to the network,
/// and ends by itself (successfully) when that branch tears the network down.
#[test]
fn the_monitor_operator_stores_samples_until_the_network_is_torn_down() {
    let home = Home::new();
    home.write_dag(
        "watch.yaml",
        r#"watch:
  schedule: null
  default_args: {owner: qa, start_date: 2026-11-01}
  tasks:
    deploy:
      operator: chain.deploy_network
      client: anvil
      consensus: interval
      nodes: 2
      block_time: 1s
    monitor:
      operator: chain.monitor
      dependencies: [deploy]
      network: deploy
      interval: 300ms
      alert_webhook: http://127.0.0.1:HOOKPORT/hook
      probe_key: "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
      probe_interval: 1s
      probe_confirmations: 1
      execution_timeout: 60
    pause:
      operator: bash
      dependencies: [deploy]
      bash_command: |
        sleep 1
        log='LOGDIR/{{ ti.xcom_pull("deploy").name }}/node-1.log'
        for i in 1 2 3; do echo "WARN [12-02|00:00:0$i.000] Served eth_call                 reqid=$i" >> "$log"; done
        echo "EROR [12-02|00:00:04.000] Database compaction failed   err=\"disk full\"" >> "$log"
        sleep 4
    teardown:
      operator: chain.teardown
      network: deploy
      trigger_rule: all_done
      dependencies: [pause]
"#,
    );
    let dag = home.dags().join("watch.yaml");
    let text = std::fs::read_to_string(&dag).unwrap();
    // A webhook on loopback that records what it is sent.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = hook.local_addr().unwrap().port();
    let posted = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let record = posted.clone();
    std::thread::spawn(move || {
        for stream in hook.incoming().take(20) {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = vec![0u8; 16384];
            let n = std::io::Read::read(&mut stream, &mut buffer).unwrap_or(0);
            record
                .lock()
                .unwrap()
                .push(String::from_utf8_lossy(&buffer[..n]).to_string());
            let _ = std::io::Write::write_all(&mut stream, b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    let text = text
        .replace("LOGDIR", home.path().join("networks").to_str().unwrap())
        .replace("HOOKPORT", &hook_port.to_string());
    std::fs::write(&dag, text).unwrap();
    let started = Instant::now();
    let output = dagctl(&home, &["dags", "test", "watch"]);
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(output.status.success(), "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "the monitor ended with the network, not its timeout"
    );
    assert!(text.contains("(network `watch-"), "{text}");
    assert!(text.contains("0 not stored"), "{text}");
    let networks = home.json(&["net", "ls", "--all"]);
    let name = networks[0]["name"].as_str().unwrap().to_string();
    let up = home.json(&["net", "samples", &name, "--metric", "up"]);
    let up = up.as_array().unwrap();
    // About 3 s at 300 ms, two nodes.
    assert!(up.len() >= 2 * 6, "{} up samples", up.len());
    // Every reading was up, except perhaps the last one, taken while the teardown stopped the nodes.
    let last = up.last().unwrap()["at"].clone();
    assert!(
        up.iter().filter(|s| s["at"] != last).all(|s| s["value"] == 1.0),
        "{up:?}"
    );
    let heads = home.json(&["net", "samples", &name, "--metric", "head", "--node", "node-2"]);
    let heads: Vec<f64> = heads
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["value"].as_f64().unwrap())
        .collect();
    assert!(heads.windows(2).all(|w| w[0] <= w[1]), "{heads:?}");
    assert!(heads.last() > heads.first(), "{heads:?}");

    // The lines appended to node-1's log are alerts: one pattern counted 3 times, and the error once; each
    // said once in the monitor's log.
    assert_eq!(text.matches("{alert} WARNING - node-1 WARN:").count(), 1, "{text}");
    assert_eq!(text.matches("{alert} WARNING - node-1 ERROR:").count(), 1, "{text}");
    let alerts = home.json(&["net", "alerts", &name]);
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    let warn = alerts.iter().find(|a| a["level"] == "warn").unwrap();
    assert_eq!(
        (warn["node"].as_str(), warn["count"].as_i64()),
        (Some("node-1"), Some(3)),
        "{warn}"
    );
    assert_eq!(warn["pattern"], "Served eth_call");
    assert_eq!(warn["task_id"], "monitor");
    let error = alerts.iter().find(|a| a["level"] == "error").unwrap();
    assert_eq!(error["count"], 1);
    assert!(error["message"].as_str().unwrap().contains("disk full"), "{error}");
    // Probe transactions from anvil's first dev account (funded on every anvil node): included and confirmed,
    // confirmation after inclusion, each within seconds; anvil nodes do not peer, so no pool propagation.
    let probe = |metric: &str| -> Vec<f64> {
        home.json(&["net", "samples", &name, "--metric", metric])
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["value"].as_f64().unwrap())
            .collect()
    };
    let included = probe("tx_inclusion_ms");
    let confirmed = probe("tx_confirmation_ms");
    assert!(
        !included.is_empty() && !confirmed.is_empty(),
        "{included:?} {confirmed:?}\n{text}"
    );
    assert!(included.iter().all(|ms| (0.0..5000.0).contains(ms)), "{included:?}");
    assert!(confirmed.iter().all(|ms| (0.0..10000.0).contains(ms)), "{confirmed:?}");
    assert!(confirmed.iter().copied().fold(0.0, f64::max) >= included.iter().copied().fold(f64::MAX, f64::min));
    assert!(probe("tx_pool_propagation_ms").is_empty());
    assert!(
        text.contains("probe transactions from 0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"),
        "{text}"
    );
    // Each announced alert was posted to the webhook once, as JSON naming the network, node and task.
    let posted = posted.lock().unwrap().clone();
    assert_eq!(posted.len(), 2, "{posted:?}");
    assert!(
        posted
            .iter()
            .all(|p| p.starts_with("POST /hook") && p.contains("\"task_id\":\"monitor\"")),
        "{posted:?}"
    );
    assert!(
        posted
            .iter()
            .any(|p| p.contains("disk full") && p.contains("\"level\":\"error\"")),
        "{posted:?}"
    );
}

/// Bad monitor arguments are import errors naming file, line and key.
#[test]
fn bad_monitor_arguments_are_import_errors_with_their_line() {
    let home = Home::new();
    let dag = home.write_dag(
        "bad.yaml",
        "bad:\n  tasks:\n    m:\n      operator: chain.monitor\n      network: n\n      interval: 50ms\n    m2:\n      operator: chain.monitor\n      network: n\n      every: 1s\n    m3:\n      operator: chain.monitor\n      interval: 1s\n    m4:\n      operator: chain.monitor\n      network: n\n      client_series: [\"p2p peers\"]\n    m5:\n      operator: chain.monitor\n      network: n\n      alert_webhook: ftp://x\n",
    );
    let output = home.run(&["dags", "validate", dag.to_str().unwrap()]);
    assert!(!output.status.success());
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        text.contains("bad.yaml:6") && text.contains("below the minimum of 100ms"),
        "{text}"
    );
    assert!(
        text.contains("bad.yaml:10") && text.contains("unknown argument `every`"),
        "{text}"
    );
    assert!(
        text.contains("missing required argument") && text.contains("network"),
        "{text}"
    );
    assert!(
        text.contains("bad.yaml:17") && text.contains("not a Prometheus series name"),
        "{text}"
    );
    assert!(
        text.contains("bad.yaml:21") && text.contains("not an http:// or https:// URL"),
        "{text}"
    );
}

/// The example DAG `monitor-geth-clique` (4 real geth Clique nodes), watched for 5 s instead of 2 min.
#[test]
fn the_monitor_example_runs_end_to_end_on_geth() {
    let geth = std::env::var_os("DAGCTL_GETH")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("DAGCTL_CLIENTS_BIN").map(|d| PathBuf::from(d).join("geth")))
        .filter(|p| p.exists())
        .expect("geth is needed by this test: set DAGCTL_GETH or DAGCTL_CLIENTS_BIN");
    let home = Home::new();
    let dags = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dags");
    std::fs::copy(
        dags.join("monitor-geth-clique.yaml"),
        home.dags().join("monitor-geth-clique.yaml"),
    )
    .unwrap();
    let output = home
        .command()
        .env("DAGCTL_GETH", &geth)
        .args([
            "dags",
            "test",
            "monitor-geth-clique",
            "--conf",
            r#"{"watch_for": "5s"}"#,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("(its duration ended)") && text.contains("0 not stored"),
        "{text}"
    );
    let name = home.json(&["net", "ls", "--all"])[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let mut fastest = f64::MAX;
    for node in ["validator-1", "validator-2", "validator-3", "member-1"] {
        let peers = home.json(&["net", "samples", &name, "--metric", "peers", "--node", node]);
        let peers = peers.as_array().unwrap();
        assert!(peers.len() >= 4, "{node}: {peers:?}");
        assert!(peers.iter().all(|s| s["value"] == 3.0), "{node}: {peers:?}");
        let cpu = home.json(&["net", "samples", &name, "--metric", "cpu_percent", "--node", node]);
        assert!(!cpu.as_array().unwrap().is_empty(), "{node}: cpu sampled");
        // geth's own metrics: its head agrees with the RPC head of the same reading (one block apart at most,
        // the two are read a moment apart), and the p2p byte meters give a data rate.
        let by_time = |metric: &str| -> BTreeMap<String, f64> {
            home.json(&["net", "samples", &name, "--metric", metric, "--node", node])
                .as_array()
                .unwrap()
                .iter()
                .map(|s| (s["at"].as_str().unwrap().to_string(), s["value"].as_f64().unwrap()))
                .collect()
        };
        let rpc_heads = by_time("head");
        let client_heads = by_time("client:chain_head_block");
        assert!(!client_heads.is_empty(), "{node}: geth's chain_head_block stored");
        for (at, head) in &client_heads {
            let rpc_head = rpc_heads[at];
            assert!(
                (head - rpc_head).abs() <= 1.0,
                "{node} at {at}: client {head} vs rpc {rpc_head}"
            );
        }
        let rates = by_time("net_in_bytes_per_second");
        assert!(rates.len() >= 3, "{node}: {rates:?}");
        assert!(
            rates.values().any(|r| *r > 0.0),
            "{node}: peers exchange bytes: {rates:?}"
        );
        assert!(!by_time("block_import_ms").is_empty(), "{node}: block import timing");
        let propagation = by_time("block_propagation_ms");
        assert!(!propagation.is_empty(), "{node}: blocks settled over newHeads");
        assert!(
            propagation.values().all(|ms| (0.0..5000.0).contains(ms)),
            "{node}: {propagation:?}"
        );
        fastest = fastest.min(propagation.values().copied().fold(f64::MAX, f64::min));
    }
    // Some node is first with every block it seals (delay 0): propagation is measured from the first arrival.
    assert!(fastest < 50.0, "the earliest arrivals: {fastest} ms");
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
    assert!(!home.path().join("networks/bench-monitor").exists());
}

/// Probe transactions on a real peered network (geth Clique, 3 signers + 1 member, keys from a seed so the test
/// knows node 1's key, every node prefunded): each probe reaches the other nodes' pools, is included and
/// confirmed, in that order.
#[test]
fn probe_transactions_propagate_and_confirm_on_geth() {
    let geth = std::env::var_os("DAGCTL_GETH")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("DAGCTL_CLIENTS_BIN").map(|d| PathBuf::from(d).join("geth")))
        .filter(|p| p.exists())
        .expect("geth is needed by this test: set DAGCTL_GETH or DAGCTL_CLIENTS_BIN");
    let key = chain::NodeKey::generate(&chain::KeySource::from_seed(Some("probe-test")), 0).unwrap();
    let home = Home::new();
    home.write_dag(
        "probe.yaml",
        &format!(
            r#"probe:
  schedule: null
  default_args: {{owner: qa, start_date: 2026-11-01}}
  tasks:
    deploy:
      operator: chain.deploy_network
      client: geth
      consensus: clique
      nodes: 3
      members: 1
      block_time: 1s
      key_seed: probe-test
      node_balance: "1000000000000000000000"
    monitor:
      operator: chain.monitor
      dependencies: [deploy]
      network: deploy
      duration: 9s
      probe_key: "{}"
      probe_interval: 2s
      probe_confirmations: 1
    teardown:
      operator: chain.teardown
      network: deploy
      trigger_rule: all_done
      dependencies: [monitor]
"#,
            key.secret_hex()
        ),
    );
    let output = home
        .command()
        .env("DAGCTL_GETH", &geth)
        .args(["dags", "test", "probe"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(output.status.success(), "{text}");
    let name = home.json(&["net", "ls", "--all"])[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let values = |metric: &str| -> Vec<f64> {
        home.json(&["net", "samples", &name, "--metric", metric])
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["value"].as_f64().unwrap())
            .collect()
    };
    let pool = values("tx_pool_propagation_ms");
    let included = values("tx_inclusion_ms");
    let confirmed = values("tx_confirmation_ms");
    assert!(
        pool.len() >= 2 && included.len() >= 2 && confirmed.len() >= 2,
        "{pool:?} {included:?} {confirmed:?}\n{text}"
    );
    assert!(pool.iter().all(|ms| (0.0..3000.0).contains(ms)), "{pool:?}");
    assert!(included.iter().all(|ms| (0.0..6000.0).contains(ms)), "{included:?}");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    assert!(
        mean(&pool) <= mean(&included) && mean(&included) <= mean(&confirmed),
        "{pool:?} {included:?} {confirmed:?}"
    );
    assert!(!text.contains("probe via"), "no probe failed: {text}");
}
