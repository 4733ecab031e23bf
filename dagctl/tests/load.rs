//! `dagctl load` and `chain.load_test` against real nodes (anvil; a geth Clique network in `load_geth.rs`) and
//! against a test server that answers badly on purpose. What the generator reports is checked against what
//! the chain holds (read here with plain JSON-RPC, not through dagctl) and what the server saw.
//!
//! anvil comes from `DAGCTL_ANVIL` or `DAGCTL_CLIENTS_BIN`; without it the tests fail.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
        // A stopped process must be continued to die cleanly.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGCONT,
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hex_u64(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

fn hex_u128(v: &Value) -> u128 {
    u128::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// `dagctl load` with `args`, its summary (`-o json`) and its stderr.
fn load(home: &Home, args: &[&str]) -> (Value, String) {
    let output = home.run(&[&["load"], args, &["-o", "json"]].concat());
    let err = stderr(&output);
    assert!(output.status.success(), "{}\n{err}", stdout(&output));
    (serde_json::from_str(&stdout(&output)).unwrap(), err)
}

/// A JSON-RPC answer with a result.
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 38\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":\"0x\"}";

/// What the test server does with one request.
enum Answer {
    Send(&'static [u8]),
    /// Close the connection without an answer.
    Close,
    /// Answer nothing for 1.5 s, then close.
    Late,
}

/// Counts by name of what the test server gave.
type Served = Arc<Mutex<BTreeMap<&'static str, u64>>>;

/// A keep-alive HTTP server on loopback that answers request number n (from 0, over all connections) as
/// `answer(n)` says, counting what it gave by name.
fn serve(answer: fn(u64) -> (&'static str, Answer)) -> (u16, Served) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served: Served = Arc::default();
    let next = Arc::new(AtomicU64::new(0));
    let record = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(500) {
            let Ok(mut stream) = stream else { continue };
            let (record, counter) = (record.clone(), next.clone());
            std::thread::spawn(move || loop {
                // One request: headers, then Content-Length bytes.
                let mut data = Vec::new();
                let mut byte = [0u8; 1];
                while !data.ends_with(b"\r\n\r\n") {
                    if stream.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    data.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&data).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map(|v| v.trim().parse().unwrap())
                    .unwrap_or(0);
                let mut body = vec![0u8; length];
                if stream.read_exact(&mut body).is_err() {
                    return;
                }
                let (kind, what) = answer(counter.fetch_add(1, Ordering::SeqCst));
                *record.lock().unwrap().entry(kind).or_default() += 1;
                match what {
                    Answer::Send(bytes) => {
                        if stream.write_all(bytes).is_err() {
                            return;
                        }
                    }
                    Answer::Close => return,
                    Answer::Late => {
                        std::thread::sleep(Duration::from_millis(1500));
                        return;
                    }
                }
            });
        }
    });
    (port, served)
}

/// Transfers from many senders: every accepted transfer is in the chain exactly once, every sender's nonces
/// are gap-free, and each receiver holds exactly what was sent to it; all recomputed from the blocks.
#[test]
fn transfers_are_included_once_with_gap_free_nonces_and_balances_that_add_up() {
    let anvil = Anvil::start(1);
    let home = Home::new();
    let records = home.path().join("run.calls");
    let (summary, _) = load(
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
    let (calls, txs): (Vec<&[u8]>, Vec<&[u8]>) = body.chunks(32).partition(|r| r[31] == 0);
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
    let (summary, _) = load(&home, &[&anvil.url(), "--rate", "200", "--duration", "5s"]);
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
    let (summary, _) = load(
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

/// A server that answers, in turn: ok, HTTP 500, garbage, a JSON-RPC error, nothing (it closes the
/// connection), and too late. Each lands under its own type, as many times as the server gave it.
#[test]
fn every_kind_of_bad_answer_is_counted_under_its_own_type() {
    let (port, served) = serve(|turn| {
        match turn % 6 {
        0 => ("ok", Answer::Send(OK)),
        1 => ("http_500", Answer::Send(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops")),
        2 => ("garbage", Answer::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\n<html>")),
        3 => ("rpc_error", Answer::Send(b"HTTP/1.1 200 OK\r\nContent-Length: 76\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":1,\"error\":{\"code\":-32005,\"message\":\"limit exceeded!\"}}")),
        4 => ("reset", Answer::Close),
        _ => ("timeout", Answer::Late),
    }
    });
    let home = Home::new();
    let (summary, _) = load(
        &home,
        &[
            &format!("http://127.0.0.1:{port}"),
            "--rate",
            "60",
            "--max-calls",
            "60",
            "--timeout",
            "500ms",
        ],
    );
    let served = served.lock().unwrap().clone();
    assert_eq!(served.values().sum::<u64>(), 60, "{served:?}");
    let total = &summary["total"];
    let errors = &total["errors"];
    assert_eq!(total["succ"].as_u64(), served.get("ok").copied(), "{summary}");
    assert_eq!(
        errors["http_500"].as_u64(),
        served.get("http_500").copied(),
        "{summary}"
    );
    assert_eq!(errors["garbage"].as_u64(), served.get("garbage").copied(), "{summary}");
    assert_eq!(
        errors["rpc_error(-32005)"].as_u64(),
        served.get("rpc_error").copied(),
        "{summary}"
    );
    assert_eq!(errors["reset"].as_u64(), served.get("reset").copied(), "{summary}");
    assert_eq!(errors["timeout"].as_u64(), served.get("timeout").copied(), "{summary}");
    assert_eq!(served.get("ok"), Some(&10));

    // Nothing listening: every call refused, and the run still ends on time.
    let closed = free_port();
    let started = Instant::now();
    let (summary, _) = load(
        &home,
        &[
            &format!("http://127.0.0.1:{closed}"),
            "--rate",
            "100",
            "--duration",
            "2s",
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        summary["total"]["errors"]["refused"], summary["total"]["fail"],
        "{summary}"
    );
    assert!(summary["total"]["fail"].as_u64().unwrap() >= 190, "{summary}");
}

/// Closed loop: N users, each waiting for its answer; max_calls bounds the run exactly.
#[test]
fn closed_loop_users_make_exactly_max_calls() {
    let anvil = Anvil::start(1);
    let home = Home::new();
    let (summary, _) = load(
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
    for record in bytes[body_at..].chunks(32) {
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
    let (summary, _) = load(
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
    let (summary, _) = load(
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
    load(
        &home,
        &[
            &[anvil.url().as_str(), "--rate", "20", "--duration", "1s"],
            &transfer[..],
        ]
        .concat(),
    );
    anvil.rpc("evm_setIntervalMining", json!([0]));
    anvil.rpc("evm_setAutomine", json!([false]));
    let (summary, _) = load(
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

/// `chain.locust` runs a locustfile (locust 2.47 from PyPI) headless against a URL; its stats become the
/// load summary, and its counts match what the server saw: every request, every failure.
#[test]
fn the_locust_operator_counts_what_the_server_saw() {
    let python = std::path::PathBuf::from(std::env::var_os("DAGCTL_PYTHON").expect(
        "DAGCTL_PYTHON must name the venv python of scripts/install-pytools.sh (with locust); ./scripts/test.sh sets it",
    ));
    let locust = python.parent().unwrap().join("locust");
    assert!(
        locust.exists(),
        "{} is missing: run scripts/install-pytools.sh",
        locust.display()
    );
    let (port, served) = serve(|turn| {
        if turn % 5 == 4 {
            (
                "fail",
                Answer::Send(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops"),
            )
        } else {
            ("ok", Answer::Send(OK))
        }
    });
    let home = Home::new();
    let locustfile = home.path().join("rpc_locust.py");
    std::fs::write(
        &locustfile,
        r#"from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

BODY = '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}'


class Rpc(FastHttpUser):
    wait_time = constant(0.02)

    @task
    def block_number(self):
        self.client.post("/", data=BODY, name="eth_blockNumber")
"#,
    )
    .unwrap();
    let summary_file = home.path().join("summary.json");
    home.write_dag(
        "swarm.yaml",
        &format!(
            r#"swarm:
  schedule: null
  default_args: {{owner: qa, start_date: 2026-11-01}}
  tasks:
    swarm:
      operator: chain.locust
      url: http://127.0.0.1:{port}
      locustfile: {}
      users: 4
      spawn_rate: 4
      duration: 3s
    keep:
      operator: bash
      dependencies: [swarm]
      bash_command: "echo '{{{{ ti.xcom_pull(\"swarm\") | tojson }}}}' > {}"
"#,
            locustfile.display(),
            summary_file.display()
        ),
    );
    let output = home
        .command()
        .env("DAGCTL_LOCUST", &locust)
        .args(["dags", "test", "swarm"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(output.status.success(), "{text}");
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&summary_file).unwrap()).unwrap();
    let served = served.lock().unwrap().clone();
    let (ok, failed) = (
        served.get("ok").copied().unwrap_or(0),
        served.get("fail").copied().unwrap_or(0),
    );
    assert!(ok > 100, "{served:?}");
    assert_eq!(summary["total"]["succ"].as_u64(), Some(ok), "{summary}\n{served:?}");
    assert_eq!(summary["total"]["fail"].as_u64(), Some(failed), "{summary}\n{served:?}");
    assert_eq!(summary["kinds"][0]["name"], "POST eth_blockNumber", "{summary}");
    let errors = summary["total"]["errors"].as_object().unwrap();
    assert_eq!(
        errors.values().map(|v| v.as_u64().unwrap()).sum::<u64>(),
        failed,
        "{summary}"
    );
    assert!(errors.keys().all(|k| k.contains("500")), "{summary}");
    assert!(
        summary["records_file"].as_str().unwrap().ends_with("swarm-try1.locust"),
        "{summary}"
    );
    assert!(text.contains("{load} INFO - locust "), "{text}");
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
