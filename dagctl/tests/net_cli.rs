//! Blockchain networks through the real `dagctl` binary: the example DAGs, `dags test` of
//! deploy-geth-clique against a real geth, and `net up|ls|show|down` with anvil.
//!
//! Clients come from `DAGCTL_GETH` / `DAGCTL_ANVIL` or the bin dir named by `DAGCTL_CLIENTS_BIN`
//! (`scripts/install-clients.sh` prints it). A missing client fails the test.

mod common;

use std::path::{Path, PathBuf};

use common::{stderr, stdout, Home};
use serde_json::Value;

fn repo_dags() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../dags")
}

fn client(program: &str, variable: &str) -> PathBuf {
    common::client_binary(program, variable)
}

/// A home whose dagctl finds the test clients.
fn home_with_clients() -> (Home, PathBuf, PathBuf) {
    (
        Home::new(),
        client("geth", "DAGCTL_GETH"),
        client("anvil", "DAGCTL_ANVIL"),
    )
}

fn run_with_clients(home: &Home, geth: &Path, anvil: &Path, args: &[&str]) -> std::process::Output {
    home.command()
        .env("DAGCTL_GETH", geth)
        .env("DAGCTL_ANVIL", anvil)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run dagctl")
}

fn alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}/cwd")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn example_dags_validate_and_bad_specs_are_rejected_with_their_line() {
    let home = Home::new();
    let dags = repo_dags();
    let out = home.ok(&["dags", "validate", dags.to_str().unwrap()]);
    assert!(out.contains("0 error(s)"), "{out}");
    let expected = [
        "deploy-geth-clique",
        "deploy-anvil",
        "deploy-quorum-ibft",
        "deploy-quorum-qbft",
        "deploy-quorum-raft",
        "deploy-quorum-clique",
        "deploy-besu-ibft2",
        "deploy-besu-qbft",
        "deploy-besu-clique",
        "deploy-openethereum-aura",
        "deploy-openethereum-clique",
        "monitor-geth-clique",
        "load-test",
        "breaking-point-geth",
        "nightly-benchmark",
    ];
    for dag in expected {
        assert!(dags.join(format!("{dag}.yaml")).exists(), "{dag}.yaml missing");
    }
    let bad = home.write_dag(
        "bad.yaml",
        "bad:\n  tasks:\n    deploy:\n      operator: chain.deploy_network\n      client: geth\n      consensus: raft\n      nodes: 4\n",
    );
    let output = home.run(&["dags", "validate", bad.to_str().unwrap()]);
    assert!(!output.status.success());
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(text.contains("bad.yaml:6") && text.contains("consensus"), "{text}");
    assert!(text.contains("supported: clique"), "lists the legal engines: {text}");
}

#[test]
fn dags_test_deploy_geth_clique_runs_end_to_end_and_leaves_nothing() {
    let (home, geth, anvil) = home_with_clients();
    let source = std::fs::read_to_string(repo_dags().join("deploy-geth-clique.yaml")).unwrap();
    home.write_dag("deploy-geth-clique.yaml", &source);
    let output = run_with_clients(&home, &geth, &anvil, &["dags", "test", "deploy-geth-clique"]);
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(output.status.success(), "{text}");
    for task in ["deploy", "check_blocks", "teardown"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(task) && l.trim_end().ends_with("success")),
            "{task} did not succeed:\n{text}"
        );
    }
    assert!(text.contains("peers: 3"), "{text}");
    let networks = home.json(&["net", "ls", "--all"]);
    let networks = networks.as_array().unwrap();
    assert_eq!(networks.len(), 1);
    assert_eq!(networks[0]["status"], "removed");
    assert_eq!(networks[0]["nodes"], 4);
    let dir = home.path().join("networks");
    assert_eq!(
        std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0),
        0,
        "data dirs left"
    );
}

#[test]
fn net_up_ls_show_down_with_anvil() {
    let (home, geth, anvil) = home_with_clients();
    let output = run_with_clients(
        &home,
        &geth,
        &anvil,
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
            "--chain-id",
            "31337",
            "--name",
            "cli-anvil",
            "-o",
            "json",
        ],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let up: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(up["name"], "cli-anvil");
    assert_eq!(up["chain_id"], 31337);
    assert!(up["rpc"].as_str().unwrap().starts_with("http://127.0.0.1:"));
    let pids: Vec<i64> = up["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(pids.len(), 2);
    assert!(pids.iter().all(|pid| alive(*pid)));

    let listed = home.json(&["net", "ls"]);
    assert_eq!(listed[0]["status"], "running");
    let shown = home.json(&["net", "show", "cli-anvil"]);
    assert!(shown["nodes"].as_array().unwrap().iter().all(|n| n["alive"] == true));
    let table = home.ok(&["net", "show", "cli-anvil"]);
    assert!(table.contains("node-1") && table.contains("node-2"), "{table}");

    // The name is taken while the network runs.
    let again = run_with_clients(
        &home,
        &geth,
        &anvil,
        &[
            "net",
            "up",
            "--client",
            "anvil",
            "--consensus",
            "interval",
            "--nodes",
            "1",
            "--name",
            "cli-anvil",
        ],
    );
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already exists"), "{}", stderr(&again));

    home.ok(&["net", "down", "cli-anvil"]);
    assert!(pids.iter().all(|pid| !alive(*pid)), "anvil still runs");
    assert!(home.json(&["net", "ls"]).as_array().unwrap().is_empty());
    assert_eq!(home.json(&["net", "ls", "--all"])[0]["status"], "removed");
    assert!(!home.path().join("networks/cli-anvil").exists());
}

#[test]
fn net_up_rejects_an_impossible_network_before_starting_anything() {
    let home = Home::new();
    let output = home.run(&["net", "up", "--client", "geth", "--consensus", "ibft", "--nodes", "4"]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(text.contains("supported: clique"), "{text}");
    let output = home.run(&["net", "up", "--client", "quorum", "--consensus", "pow", "--nodes", "4"]);
    assert!(!output.status.success());
    let text = stderr(&output);
    assert!(
        text.contains("`pow` is not a consensus engine dagctl knows; quorum 24.4.1 runs ibft, qbft, raft, clique"),
        "{text}"
    );
    let output = home.run(&["net", "up", "--client", "quorum", "--consensus", "aura", "--nodes", "4"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("supported: ibft, qbft, raft, clique"),
        "{}",
        stderr(&output)
    );
    let output = home.run(&["net", "up", "--client", "geth", "--consensus", "clique", "--nodes", "0"]);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("nodes"), "{}", stderr(&output));
    assert!(!home.path().join("networks").exists());
}

/// Processes whose working directory is under `dir` (our nodes run in their data dirs).
fn processes_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cwd = entry.path().join("cwd");
        if let Ok(target) = std::fs::read_link(&cwd) {
            if target.starts_with(dir) {
                found.push(format!(
                    "{} in {}",
                    entry.file_name().to_string_lossy(),
                    target.display()
                ));
            }
        }
    }
    found
}

#[test]
fn a_deploy_killed_by_its_execution_timeout_leaves_nothing_running() {
    let (home, geth, anvil) = home_with_clients();
    home.write_dag(
        "slow.yaml",
        "slow:\n  tasks:\n    deploy:\n      operator: chain.deploy_network\n      client: geth\n      consensus: clique\n      nodes: 4\n      execution_timeout: 1s\n    teardown:\n      operator: chain.teardown\n      network: deploy\n      trigger_rule: all_done\n      dependencies: [deploy]\n",
    );
    let output = run_with_clients(&home, &geth, &anvil, &["dags", "test", "slow"]);
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("timed out"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("teardown") && l.trim_end().ends_with("success")),
        "{text}"
    );
    let networks_dir = home.path().join("networks");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !processes_under(&networks_dir).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "left running: {:?}",
            processes_under(&networks_dir)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let listed = home.json(&["net", "ls", "--all"]);
    let status = listed[0]["status"].as_str().unwrap().to_string();
    assert!(status == "removed" || status == "failed", "{listed}");
    assert_eq!(std::fs::read_dir(&networks_dir).map(|d| d.count()).unwrap_or(0), 0);
}
