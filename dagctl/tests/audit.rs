//! The node exposure audit (`dagctl audit`, `chain.audit`) against real geth 1.13 nodes in dev mode: one
//! started the way an operator should never start it (`--http.api admin,personal` on every interface, CORS and
//! virtual hosts `*`), one locked down. geth comes from `DAGCTL_GETH` or `DAGCTL_CLIENTS_BIN`; without it the
//! tests fail. Each geth is stopped by PID and its data dir removed.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{free_port, stderr, stdout, wait_for, Home};
use serde_json::Value;

/// A geth in dev mode with `flags`, stopped by PID when dropped.
struct Geth {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Geth {
    fn start(flags: &[&str]) -> Geth {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(common::client_binary("geth", "DAGCTL_GETH"))
            .args(["--dev", "--datadir"])
            .arg(dir.path())
            .args([
                "--ipcdisable",
                "--nodiscover",
                "--port",
                "0",
                "--http",
                "--http.port",
                &port.to_string(),
            ])
            .args([
                "--authrpc.addr",
                "127.0.0.1",
                "--authrpc.port",
                &free_port().to_string(),
            ])
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let geth = Geth { child, port, _dir: dir };
        wait_for(Duration::from_secs(30), "geth --dev to answer", || {
            std::net::TcpStream::connect(("127.0.0.1", geth.port)).ok()
        });
        geth
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Geth {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..50 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (check, severity) of every finding.
fn found(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["check"].as_str().unwrap().to_string(),
                f["severity"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn the_audit_flags_an_exposed_node_and_passes_a_locked_down_one() {
    let home = Home::new();
    let exposed = Geth::start(&[
        "--http.addr",
        "0.0.0.0",
        "--http.api",
        "eth,net,web3,admin,personal",
        "--http.corsdomain",
        "*",
        "--http.vhosts",
        "*",
    ]);
    let report = home.json(&["audit", &exposed.url()]);
    let findings = found(&report);
    for expected in [
        ("rpc_api", "high"),
        ("bind", "high"),
        ("cors", "high"),
        ("vhosts", "medium"),
        ("accounts", "high"),
    ] {
        assert!(
            findings.contains(&(expected.0.to_string(), expected.1.to_string())),
            "{expected:?} not in {findings:?}"
        );
    }
    let details = report["findings"].to_string();
    assert!(details.contains("the `admin` namespace is open") && details.contains("the `personal` namespace is open"));
    // geth binds 0.0.0.0 dual-stack: the kernel shows [::].
    assert!(
        details.contains(&format!("[::]:{}, every interface", exposed.port))
            || details.contains(&format!("0.0.0.0:{}, every interface", exposed.port)),
        "{details}"
    );
    assert!(!details.contains("`debug` namespace"), "{details}");
    assert_eq!(report["findings"][0]["severity"], "high", "worst first");
    // --fail-on: exit 1 and one line.
    let output = home.run(&["audit", &exposed.url(), "--fail-on", "high"]);
    assert!(!output.status.success());
    assert!(stdout(&output).contains("fix: "), "{}", stdout(&output));
    assert_eq!(stderr(&output).trim(), "error: findings at high or worse");

    // Locked down: only the dev account, which --dev always unlocks.
    let locked = Geth::start(&["--http.addr", "127.0.0.1", "--http.api", "eth,net,web3"]);
    let report = home.json(&["audit", &locked.url()]);
    assert_eq!(
        found(&report),
        vec![("accounts".to_string(), "high".to_string())],
        "{report}"
    );
    assert!(report["skipped"].as_array().unwrap().is_empty());

    // The operator, on the exposed node, fails on high findings and logs them.
    home.write_dag(
        "audited.yaml",
        &format!(
            "audited:\n  default_args: {{owner: qa, start_date: 2026-11-01}}\n  tasks:\n    audit:\n      operator: chain.audit\n      url: \"{}\"\n      fail_on: high\n",
            exposed.url()
        ),
    );
    let output = home.run(&["dags", "test", "audited"]);
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(text.contains("{audit} INFO - high"), "{text}");
    assert!(text.contains("finding(s) at high or worse"), "{text}");
    assert!(text.contains("--- audited.audit try 1: failed ---"), "{text}");
}

#[test]
fn bad_audit_targets_and_arguments_are_one_clear_error() {
    let home = Home::new();
    let closed = free_port();
    let report = home.json(&["audit", &format!("http://127.0.0.1:{closed}")]);
    assert!(report["findings"].as_array().unwrap().is_empty());
    assert!(
        report["skipped"][0].as_str().unwrap().contains("it does not answer"),
        "{report}"
    );
    for (args, expected) in [
        (vec!["audit", "nope"], "network `nope` not found"),
        (vec!["audit", "https://x:1"], "is not an http:// URL"),
        (
            vec!["audit", "http://127.0.0.1:1", "--fail-on", "bad"],
            "--fail-on: unknown severity `bad`",
        ),
    ] {
        let output = home.run(&args);
        assert!(!output.status.success(), "{args:?}");
        let err = stderr(&output);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    let dag = home.write_dag(
        "bad.yaml",
        "bad:\n  tasks:\n    a:\n      operator: chain.audit\n      network: n\n      url: http://127.0.0.1:1\n    b:\n      operator: chain.audit\n      url: http://127.0.0.1:1\n      fail_on: worst\n",
    );
    let output = home.run(&["dags", "validate", dag.to_str().unwrap()]);
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(!output.status.success());
    assert!(
        text.contains("bad.yaml:5: dag `bad`, task `a`, key `network`: give exactly one of `network` and `url`"),
        "{text}"
    );
    assert!(text.contains("key `fail_on`: unknown severity `worst`"), "{text}");
}
