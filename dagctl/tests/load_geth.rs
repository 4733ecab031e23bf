//! The load example DAGs on real geth 1.13 Clique networks, shortened by `--conf`: `load-test` (4 nodes, reads
//! and transfers round robin) and `breaking-point-geth` (1 node, transfers stepped up). geth comes from
//! `DAGCTL_GETH` or `DAGCTL_CLIENTS_BIN`; without it the tests fail.

mod common;

use common::{stderr, stdout, Home};
use serde_json::Value;

/// Runs example `dag` with `conf`; its output, and the XCom of task `task` (written by an added task).
fn run_example(dag: &str, task: &str, conf: &str) -> (String, Value) {
    let home = Home::new();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../dags")
        .join(format!("{dag}.yaml"));
    let summary = home.path().join("summary.json");
    // The example as shipped, plus one task that writes the load task's XCom to a file.
    let text = std::fs::read_to_string(source).unwrap();
    let text = text.replacen(
        "    teardown:\n",
        &format!(
            "    keep:\n      operator: bash\n      dependencies: [{task}]\n      bash_command: \"echo '{{{{ ti.xcom_pull(\\\"{task}\\\") | tojson }}}}' > {}\"\n    teardown:\n",
            summary.display()
        ),
        1,
    );
    std::fs::write(home.dags().join(format!("{dag}.yaml")), text).unwrap();
    let output = home
        .command()
        .env("DAGCTL_GETH", common::client_binary("geth", "DAGCTL_GETH"))
        .args(["dags", "test", dag, "--conf", conf])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(output.status.success(), "{text}");
    let summary = std::fs::read_to_string(&summary).unwrap_or_else(|e| panic!("{e}\n{text}"));
    (text, serde_json::from_str(&summary).unwrap())
}

/// `load-test` for 6 s at 100 calls/s: every call answered, every transfer included and confirmed, on all four
/// nodes in turn.
#[test]
fn the_load_test_example_runs_on_geth_clique() {
    let (text, summary) = run_example("load-test", "load", r#"{"rate": 100, "length": "6s"}"#);
    assert_eq!(summary["targets"].as_array().unwrap().len(), 4, "{summary}");
    assert_eq!(summary["total"]["fail"], 0, "{summary}");
    assert_eq!(summary["total"]["succ"], 600, "{summary}");
    let tx = &summary["tx"];
    assert!(tx["sent"].as_u64().unwrap() > 100, "{summary}");
    assert_eq!(tx["included"], tx["sent"], "{summary}");
    assert_eq!(tx["confirmed"], tx["sent"], "{summary}");
    // Clique at 2 s: a transfer is in a block within a few seconds.
    assert!(tx["inclusion_ms"]["p99"].as_f64().unwrap() < 8000.0, "{summary}");
    assert!(text.contains("funding 16 senders"), "{text}");
    assert!(
        tx["blocks_from"]
            .as_str()
            .unwrap()
            .starts_with("newHeads ws://127.0.0.1:"),
        "{summary}"
    );
    // One transfer in ten is followed into the next node: geth peers gossip it there within a second or two.
    let pool = &tx["pool_ms"];
    assert!(tx["pool_seen"].as_u64().unwrap() >= 5, "{summary}");
    assert!(
        pool["p50"].as_f64().unwrap() > 0.0 && pool["p99"].as_f64().unwrap() < 5000.0,
        "{summary}"
    );
}

/// `breaking-point-geth` with short steps: each step's rate, error rate, p99 and transfers, and either a break
/// with its reason or the last rate that held.
#[test]
fn the_breaking_point_example_steps_up_on_geth() {
    let (_, summary) = run_example(
        "breaking-point-geth",
        "breaking_point",
        r#"{"start": 100, "increase": 200, "step_for": "2s", "max_steps": 3}"#,
    );
    let steps = summary["steps"].as_array().unwrap();
    assert!(!steps.is_empty(), "{summary}");
    for (i, step) in steps.iter().enumerate() {
        assert_eq!(step["rate"].as_f64().unwrap(), 100.0 + 200.0 * i as f64, "{summary}");
        assert!(step["tx_sent"].as_u64().unwrap() > 0, "{summary}");
    }
    let held: Vec<&Value> = steps.iter().filter(|s| s["broke"].is_null()).collect();
    match steps.last().unwrap()["broke"].as_str() {
        Some(reason) => assert!(!reason.is_empty()),
        None => assert_eq!(steps.len(), 3, "{summary}"),
    }
    // The last rate that held is the last unbroken step's.
    assert_eq!(
        summary["sustainable_rate"].as_f64(),
        held.last().map(|s| s["rate"].as_f64().unwrap()),
        "{summary}"
    );
    // A step that held got its transfers into blocks.
    for step in held {
        assert!(
            step["tx_included"].as_u64().unwrap() * 10 >= step["tx_sent"].as_u64().unwrap() * 9,
            "{summary}"
        );
    }
}
