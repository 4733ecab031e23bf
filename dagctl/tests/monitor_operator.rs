//! The `chain.monitor` operator through the real `dagctl` binary: in DAGs on anvil and on geth Clique
//! (samples, alerts from node logs, a webhook, probe transactions, block propagation, the client's own metrics),
//! and its argument checks. The watch CLI, the store, `/metrics` and the REST API are in `monitor.rs`.
//!
//! Clients come from `DAGCTL_ANVIL` / `DAGCTL_GETH` or the bin dir named by `DAGCTL_CLIENTS_BIN`; without them
//! the tests fail.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{stderr, stdout, Home};

fn dagctl(home: &Home, args: &[&str]) -> std::process::Output {
    home.command()
        .env("DAGCTL_ANVIL", common::client_binary("anvil", "DAGCTL_ANVIL"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
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
        "bad:\n  tasks:\n    m:\n      operator: chain.monitor\n      network: n\n      interval: 50ms\n    m2:\n      operator: chain.monitor\n      network: n\n      every: 1s\n    m3:\n      operator: chain.monitor\n      interval: 1s\n    m4:\n      operator: chain.monitor\n      network: n\n      client_series: [\"p2p peers\"]\n    m5:\n      operator: chain.monitor\n      network: n\n      alert_webhook: ftp://x\n    m6:\n      operator: chain.monitor\n      network: n\n      cloudwatch: {region: EU WEST}\n    m7:\n      operator: chain.monitor\n      network: n\n      cloudwatch: {group: x}\n",
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
    assert!(
        text.contains("bad.yaml:25") && text.contains("region `EU WEST` is not an AWS region name"),
        "{text}"
    );
    assert!(
        text.contains("bad.yaml:29: dag `bad`, task `m7`, key `cloudwatch.group`: unknown argument `group` in `cloudwatch`; expected one of log_group, region, endpoint_url, min_level"),
        "{text}"
    );
}

/// The example DAG `monitor-geth-clique` (4 real geth Clique nodes), watched for 5 s instead of 2 min.
#[test]
fn the_monitor_example_runs_end_to_end_on_geth() {
    let geth = common::client_binary("geth", "DAGCTL_GETH");
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

/// Probe transactions on a real peered network (geth Clique, 3 signers + 1 member, keys from a seed so the test
/// knows node 1's key, every node prefunded): each probe reaches the other nodes' pools, is included and
/// confirmed, in that order.
#[test]
fn probe_transactions_propagate_and_confirm_on_geth() {
    let geth = common::client_binary("geth", "DAGCTL_GETH");
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
