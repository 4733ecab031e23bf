//! `dagctl load` and `chain.locust` against a test server of this file, which answers badly on purpose and
//! counts what it gave: each bad answer must land under its own type, and locust's counts must match the
//! server's. (Real nodes: `load.rs` and `load_geth.rs`.)
//!
//! locust is the one in the venv `DAGCTL_PYTHON` names (scripts/install-pytools.sh); without it the locust
//! test fails.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_port, load, stderr, stdout, Home};
use serde_json::Value;

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

/// Out of sockets (an open-file limit of 64 the generator cannot raise) against a server that answers late:
/// the calls that found no socket are `dropped` (never sent), not blamed on the node as resets.
#[test]
fn calls_without_a_socket_are_dropped_not_reset() {
    let (port, _) = serve(|_| ("late", Answer::Late));
    let home = Home::new();
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "ulimit -n 64 && exec {} load http://127.0.0.1:{port} --rate 200 --duration 1s --timeout 1s -o json",
            common::BIN
        ))
        .env("DAGCTL_HOME", home.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let summary: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let errors = &summary["total"]["errors"];
    assert!(errors["dropped"].as_u64().unwrap_or(0) >= 100, "{summary}");
    assert!(errors.get("reset").is_none(), "{summary}");
    assert_eq!(summary["total"]["fail"], 200, "{summary}");
}
