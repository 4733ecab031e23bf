//! `dagctl load` and `chain.load_test` against real anvil nodes (a geth Clique network: `load_geth.rs`; a test
//! server that answers badly on purpose: `load_server.rs`), and `dagctl bench load`. What the generator reports
//! is checked against what the chain holds, read here with plain JSON-RPC, not through dagctl.
//!
//! anvil comes from `DAGCTL_ANVIL` or `DAGCTL_CLIENTS_BIN`; without it the tests fail.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{free_port, stderr, stdout, wait_for, Home};
use serde_json::{json, Value};

/// anvil's first dev account: funded on every anvil.
const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

/// An anvil node on a free port, stopped by PID when dropped.
struct Anvil {
    child: std::process::Child,
    port: u16,
}

impl Anvil {
    fn start(block_time: u32) -> Anvil {
        let port = free_port();
        let child = std::process::Command::new(common::client_binary("anvil", "DAGCTL_ANVIL"))
            .args(["--port", &port.to_string(), "--block-time", &block_time.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let anvil = Anvil { child, port };
        wait_for(Duration::from_secs(30), "anvil to answer", || {
            anvil.try_rpc("eth_blockNumber", json!([]))
        });
        anvil
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn try_rpc(&self, method: &str, params: Value) -> Option<Value> {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
        let (_, _, answer) = common::try_http(
            self.port,
            "POST",
            "/",
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
        .ok()?;
        serde_json::from_slice::<Value>(&answer).ok()?.get("result").cloned()
    }

    fn rpc(&self, method: &str, params: Value) -> Value {
        self.try_rpc(method, params.clone())
            .unwrap_or_else(|| panic!("{method} {params} on anvil failed"))
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        // Only a child not yet reaped: its PID is still ours. A stopped one must be continued to die cleanly.
        if let Ok(None) = self.child.try_wait() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGCONT,
            );
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn hex_u64(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

fn hex_u128(v: &Value) -> u128 {
    u128::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// Transfers from many senders: every accepted transfer is in the chain exactly once, every sender's nonces
/// are gap-free, and each receiver holds exactly what was sent to it; all recomputed from the blocks.
#[test]
fn transfers_are_included_once_with_gap_free_nonces_and_balances_that_add_up() {
    let anvil = Anvil::start(1);
    let home = Home::new();
    let records = home.path().join("run.calls");
    let (summary, _) = common::load(
        &home,
        &[
            &anvil.url(),
            "--rate",
            "300",
            "--duration",
            "5s",
            "--workload",
            "transfer=3,transfer_legacy=1,eth_getBalance=1",
            "--senders",
            "8",
            "--value",
            "7",
            "--funder-key",
            DEV_KEY,
            "--confirmations",
            "1",
            "--records",
            records.to_str().unwrap(),
        ],
    );
    let tx = &summary["tx"];
    let accepted = tx["sent"].as_u64().unwrap();
    assert!(accepted > 1000, "{summary}");
    assert_eq!(tx["included"], tx["sent"], "{summary}");
    assert_eq!(tx["confirmed"], tx["sent"], "{summary}");
    assert_eq!(summary["total"]["fail"], 0, "{summary}");
    let senders: BTreeSet<String> = tx["senders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_lowercase())
        .collect();
    let receivers: Vec<String> = tx["receivers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_lowercase())
        .collect();
    assert_eq!(senders.len(), 8);
    assert_eq!(tx["blocks_from"], "polling", "a URL target has no WebSocket");

    // The chain, block by block.
    let head = hex_u64(&anvil.rpc("eth_blockNumber", json!([])));
    let mut hashes = BTreeSet::new();
    let mut nonces: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut sent_to: BTreeMap<String, u128> = BTreeMap::new();
    let mut types = BTreeSet::new();
    for number in 0..=head {
        let block = anvil.rpc("eth_getBlockByNumber", json!([format!("{number:#x}"), true]));
        for t in block["transactions"].as_array().unwrap() {
            let from = t["from"].as_str().unwrap().to_lowercase();
            if !senders.contains(&from) {
                continue;
            }
            assert!(
                hashes.insert(t["hash"].as_str().unwrap().to_string()),
                "a transaction twice: {t}"
            );
            nonces.entry(from).or_default().push(hex_u64(&t["nonce"]));
            *sent_to.entry(t["to"].as_str().unwrap().to_lowercase()).or_default() += hex_u128(&t["value"]);
            types.insert(t["type"].as_str().unwrap().to_string());
        }
    }
    assert_eq!(hashes.len() as u64, accepted, "every accepted transfer, once");
    for (sender, mut list) in nonces {
        list.sort();
        let expected: Vec<u64> = (0..list.len() as u64).collect();
        assert_eq!(list, expected, "{sender}'s nonces have a gap or a repeat");
    }
    assert!(
        types.contains("0x0") && types.contains("0x2"),
        "legacy and EIP-1559: {types:?}"
    );
    let mut total = 0;
    for receiver in &receivers {
        let balance = hex_u128(&anvil.rpc("eth_getBalance", json!([receiver, "latest"])));
        assert_eq!(balance, sent_to.get(receiver).copied().unwrap_or(0), "{receiver}");
        total += balance;
    }
    assert_eq!(total, 7 * u128::from(accepted));

    // The records file holds one record per call and one per accepted transfer, and agrees with the summary.
    let bytes = std::fs::read(&records).unwrap();
    let text_end = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(1).unwrap().0 + 1;
    assert!(bytes.starts_with(b"dagctl-load-calls 1\n"));
    let body = &bytes[text_end..];
    assert_eq!(body.len() % 32, 0);
    let (calls, rest): (Vec<&[u8]>, Vec<&[u8]>) = body.chunks(32).partition(|r| r[31] == 0);
    let (txs, phases): (Vec<&[u8]>, Vec<&[u8]>) = rest.into_iter().partition(|r| r[31] == 1);
    assert_eq!(phases.len(), 1, "one phase marker for one rate");
    assert!(
        txs.iter()
            .all(|r| u32::from_le_bytes(r[20..24].try_into().unwrap()) < 10_000_000),
        "each transfer's send time is in the run"
    );
    let total_calls = summary["total"]["succ"].as_u64().unwrap() + summary["total"]["fail"].as_u64().unwrap();
    assert_eq!(calls.len() as u64, total_calls);
    assert_eq!(txs.len() as u64, accepted);
    assert!(
        txs.iter()
            .all(|r| u32::from_le_bytes(r[8..12].try_into().unwrap()) != u32::MAX),
        "every transfer has an inclusion time"
    );
}

/// A node stopped with SIGSTOP mid-run: open-loop latencies show the stall (they are measured from when each
/// call was meant to start), and with a timeout shorter than the stall the calls it swallows are timeouts.
#[test]
fn a_stalled_node_shows_in_open_loop_latency_and_as_timeouts() {
    let anvil = Anvil::start(1);
    let home = Home::new();
    let stall = |pause: Duration| {
        let pid = anvil.child.id() as i32;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1500));
            let pid = nix::unistd::Pid::from_raw(pid);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
            std::thread::sleep(pause);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
        })
    };
    // A 2 s stall under a 5 s timeout: nothing fails, but the stall is in the latencies.
    let stopper = stall(Duration::from_secs(2));
    let (summary, _) = common::load(&home, &[&anvil.url(), "--rate", "200", "--duration", "5s"]);
    stopper.join().unwrap();
    let latency = &summary["total"]["latency_ms"];
    assert_eq!(summary["total"]["fail"], 0, "{summary}");
    assert!(latency["max"].as_f64().unwrap() >= 1900.0, "{latency}");
    assert!(
        latency["p99"].as_f64().unwrap() >= 1800.0,
        "p99 shows the stall: {latency}"
    );
    assert!(latency["p50"].as_f64().unwrap() < 100.0, "{latency}");

    // A 3 s stall under a 1 s timeout: at least the calls started in its first 2 s time out; those of its last
    // second may too (new connections wait in the stopped node's backlog, answers to dead ones come first).
    let stopper = stall(Duration::from_secs(3));
    let (summary, _) = common::load(
        &home,
        &[&anvil.url(), "--rate", "200", "--duration", "5s", "--timeout", "1s"],
    );
    stopper.join().unwrap();
    let timeouts = summary["total"]["errors"]["timeout"].as_u64().unwrap_or(0);
    assert!((380..=800).contains(&timeouts), "2 to 4 s x 200/s timeouts: {summary}");
    assert_eq!(
        summary["total"]["errors"].as_object().unwrap().len(),
        1,
        "only timeouts: {summary}"
    );
    assert_eq!(anvil.rpc("eth_chainId", json!([])), json!("0x7a69"), "anvil is back");
    drop(anvil);
}

/// A node killed mid-run: the generator records what it gets (refused, reset) and ends on time.
#[test]
fn a_node_that_dies_mid_run_is_recorded_and_the_run_ends_on_time() {
    let mut anvil = Anvil::start(1);
    let home = Home::new();
    let pid = anvil.child.id() as i32;
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1500));
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    });
    let started = std::time::Instant::now();
    let (summary, _) = common::load(
        &home,
        &[&anvil.url(), "--rate", "200", "--duration", "4s", "--timeout", "1s"],
    );
    killer.join().unwrap();
    let _ = anvil.child.wait();
    assert!(started.elapsed() < Duration::from_secs(8), "{:?}", started.elapsed());
    let total = &summary["total"];
    assert!(total["succ"].as_u64().unwrap() >= 250, "{summary}");
    let errors = total["errors"].as_object().unwrap();
    assert!(
        errors
            .keys()
            .all(|k| ["refused", "reset", "timeout"].contains(&k.as_str())),
        "{summary}"
    );
    assert!(
        errors.get("refused").and_then(Value::as_u64).unwrap_or(0) >= 400,
        "{summary}"
    );
    assert_eq!(
        total["succ"].as_u64().unwrap() + total["fail"].as_u64().unwrap(),
        800,
        "{summary}"
    );
}

/// Closed loop: N users, each waiting for its answer; max_calls bounds the run exactly.
#[test]
fn closed_loop_users_make_exactly_max_calls() {
    let anvil = Anvil::start(1);
    let home = Home::new();
    let (summary, _) = common::load(
        &home,
        &[
            &anvil.url(),
            "--users",
            "4",
            "--max-calls",
            "2000",
            "--workload",
            "eth_blockNumber=1,eth_getBlockByNumber=1",
        ],
    );
    assert_eq!(summary["total"]["succ"], 2000, "{summary}");
    assert_eq!(summary["kinds"].as_array().unwrap().len(), 2);
    assert!(summary["mode"].as_str().unwrap().starts_with("closed loop, 4 users"));
}

/// Bad flags: one readable line naming the argument, a non-zero exit, nothing sent.
#[test]
fn bad_arguments_are_one_line_naming_the_key() {
    let home = Home::new();
    let cases: &[(&[&str], &str)] = &[
        (&["http://127.0.0.1:9", "--rate", "0", "--duration", "1s"], "`rate`"),
        (&["http://127.0.0.1:9", "--rate=-3", "--duration", "1s"], "`rate`"),
        (
            &[
                "http://127.0.0.1:9",
                "--rate",
                "5",
                "--duration",
                "1s",
                "--workload",
                "eth_mine=1",
            ],
            "`workload.eth_mine`",
        ),
        (
            &[
                "http://127.0.0.1:9",
                "--rate",
                "5",
                "--duration",
                "1s",
                "--workload",
                "eth_call=lots",
            ],
            "`workload.eth_call`",
        ),
        (
            &[
                "http://127.0.0.1:9",
                "--rate",
                "5",
                "--duration",
                "1s",
                "--workload",
                "transfer=1",
                "--funder-key",
                "0x12",
            ],
            "`funder_key`",
        ),
        (&["https://127.0.0.1:9", "--rate", "5", "--duration", "1s"], "`url`"),
        (&["ftp://127.0.0.1:9", "--rate", "5", "--duration", "1s"], "`url`"),
        (&["http://127.0.0.1:9", "--rate", "5"], "`duration`"),
        (
            &["no-such-network", "--rate", "5", "--duration", "1s"],
            "no-such-network",
        ),
    ];
    for (args, key) in cases {
        let output = home.run(&[&["load"], *args].concat());
        let err = stderr(&output);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(err.contains(key), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
}

/// `chain.load_test` in a DAG on two anvil nodes: round robin over both, the summary as XCom, the records
/// file under the data dir; bad arguments are import errors with their line.
#[test]
fn the_load_test_operator_runs_in_a_dag_and_keeps_its_records() {
    let home = Home::new();
    home.write_dag(
        "loaded.yaml",
        &r#"loaded:
  schedule: null
  default_args: {owner: qa, start_date: 2026-11-01}
  tasks:
    deploy:
      operator: chain.deploy_network
      client: anvil
      consensus: interval
      nodes: 2
      block_time: 1s
    load:
      operator: chain.load_test
      dependencies: [deploy]
      network: deploy
      rate: 100
      duration: 3s
      workload: {eth_blockNumber: 1, eth_getBalance: 1}
    check:
      operator: bash
      dependencies: [load]
      bash_command: |
        echo '{{ ti.xcom_pull("load") | tojson }}' > SUMMARY
    teardown:
      operator: chain.teardown
      network: deploy
      trigger_rule: all_done
      dependencies: [check]
"#
        .replace("SUMMARY", home.path().join("summary.json").to_str().unwrap()),
    );
    let output = home
        .command()
        .env("DAGCTL_ANVIL", common::client_binary("anvil", "DAGCTL_ANVIL"))
        .args(["dags", "test", "loaded"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(output.status.success(), "{text}");
    assert!(
        text.contains("{load} INFO - load on 2 node(s): node-1, node-2"),
        "{text}"
    );
    assert!(text.contains("eth_getBalance"), "{text}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["targets"], json!(["node-1", "node-2"]));
    assert_eq!(summary["total"]["fail"], 0, "{summary}");
    assert_eq!(summary["total"]["succ"], 300, "{summary}");
    let records = summary["records_file"].as_str().unwrap();
    assert!(
        records.starts_with(home.path().join("load").join("loaded").to_str().unwrap()),
        "{records}"
    );
    assert!(records.ends_with("load-try1.calls"), "{records}");
    // Round robin: the records say each node had half the calls.
    let bytes = std::fs::read(records).unwrap();
    let body_at = bytes.iter().enumerate().filter(|(_, b)| **b == b'\n').nth(1).unwrap().0 + 1;
    let mut per_node = [0u64; 2];
    for record in bytes[body_at..].chunks(32).filter(|r| r[31] == 0) {
        per_node[usize::from(u16::from_le_bytes([record[14], record[15]]))] += 1;
    }
    assert_eq!(per_node, [150, 150]);

    let dag = home.write_dag(
        "bad.yaml",
        "bad:\n  tasks:\n    l:\n      operator: chain.load_test\n      network: n\n      rate: 0\n      duration: 1s\n    l2:\n      operator: chain.load_test\n      network: n\n      rate: 5\n      duration: 1s\n      workload: {eth_foo: 1}\n",
    );
    let output = home.run(&["dags", "validate", dag.to_str().unwrap()]);
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(!output.status.success());
    assert!(text.contains("bad.yaml:6") && text.contains("key `rate`"), "{text}");
    assert!(
        text.contains("key `workload.eth_foo`: unknown workload `eth_foo`"),
        "{text}"
    );
}

/// Step mode: rates go up step by step while the node holds; a step breaks on its error rate, or when its
/// transfers stop reaching blocks (mining switched off), and the last rate that held is reported.
#[test]
fn step_mode_reports_the_last_sustainable_rate_and_what_broke() {
    let anvil = Anvil::start(1);
    let home = Home::new();
    let (summary, _) = common::load(
        &home,
        &[&anvil.url(), "--step", "start=100,increase=100,for=1s,max_steps=3"],
    );
    let steps = summary["steps"].as_array().unwrap();
    let rates: Vec<f64> = steps.iter().map(|s| s["rate"].as_f64().unwrap()).collect();
    assert_eq!(rates, [100.0, 200.0, 300.0], "{summary}");
    assert!(steps.iter().all(|s| s["broke"].is_null()), "{summary}");
    assert_eq!(steps[1]["sent"], 200, "{summary}");
    assert_eq!(summary["sustainable_rate"], 300.0);

    // Nothing listening: the first step fails every call.
    let (summary, _) = common::load(
        &home,
        &[
            &format!("http://127.0.0.1:{}", free_port()),
            "--step",
            "start=50,increase=50,for=1s",
        ],
    );
    let steps = summary["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{summary}");
    assert!(
        steps[0]["broke"]
            .as_str()
            .unwrap()
            .starts_with("error rate 100.00% above 1.00%"),
        "{summary}"
    );
    assert!(summary["sustainable_rate"].is_null());

    // Senders funded by a first run; then mining stops: transfers are accepted but never included.
    let transfer = [
        "--workload",
        "transfer=1",
        "--funder-key",
        DEV_KEY,
        "--senders",
        "4",
        "--settle",
        "1s",
    ];
    common::load(
        &home,
        &[
            &[anvil.url().as_str(), "--rate", "20", "--duration", "1s"],
            &transfer[..],
        ]
        .concat(),
    );
    anvil.rpc("evm_setIntervalMining", json!([0]));
    anvil.rpc("evm_setAutomine", json!([false]));
    let (summary, _) = common::load(
        &home,
        &[
            &[anvil.url().as_str(), "--step", "start=50,increase=50,for=1s"],
            &transfer[..],
        ]
        .concat(),
    );
    let steps = summary["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 1, "{summary}");
    assert_eq!(steps[0]["tx_included"], 0, "{summary}");
    assert!(
        steps[0]["broke"]
            .as_str()
            .unwrap()
            .starts_with("inclusion fell behind: 0 of 50"),
        "{summary}"
    );
    assert_eq!(
        steps[0]["pool_after"].as_u64(),
        Some(50),
        "the pool grew by the step's transfers: {summary}"
    );
}

/// `dagctl bench load`: every figure with its baseline from the same run (wrk and locust against the same
/// anvil, signing alone, the generator's first-second memory). Speed is not asserted; that each figure is
/// measured, and that no generator failed, is.
#[test]
fn bench_load_reports_every_figure_with_a_baseline() {
    let home = Home::new();
    let output = home
        .command()
        .env("DAGCTL_ANVIL", common::client_binary("anvil", "DAGCTL_ANVIL"))
        .args([
            "bench",
            "load",
            "--seconds",
            "2",
            "--connections",
            "16",
            "--memory-calls",
            "20000",
            "-o",
            "json",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let rows: Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    let baselines: Vec<&str> = rows.iter().map(|r| r["baseline"].as_str().unwrap()).collect();
    assert_eq!(
        baselines,
        [
            "wrk -t1",
            "locust FastHttpUser, 1 process",
            "signing and encoding only, 1 core",
            "signing and encoding only, 1 core",
            "RSS at its first sample"
        ]
    );
    for row in rows {
        assert!(row["value"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["baseline_value"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["ratio_to_baseline"].as_f64().unwrap() > 0.0, "{row}");
    }
    assert!(
        rows[0]["note"].as_str().unwrap().contains("dagctl failures 0"),
        "{rows:?}"
    );
    assert!(
        rows[1]["note"].as_str().unwrap().contains("locust failures 0"),
        "{rows:?}"
    );
    assert!(rows[3]["note"].as_str().unwrap().contains("0 failed"), "{rows:?}");
    assert!(rows[4]["note"].as_str().unwrap().starts_with("20000 calls"), "{rows:?}");
}
