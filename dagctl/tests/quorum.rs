//! GoQuorum 24.4.1 networks through the real `dagctl` binary, one per engine: IBFT, QBFT, Raft and Clique
//! with 4 nodes, IBFT and Raft with 7. Each is deployed with `dagctl net up` (block time and gas limit from
//! the command line) and then checked over JSON-RPC:
//! - every listener of every node is on 127.0.0.1, read both from the kernel's tables and from `ss`
//!   (except GoQuorum's raft transport, which binds every interface whatever its flags: docs/chain.md);
//! - every node has all the others as peers and reaches the same height;
//! - IBFT, QBFT and Clique: the mean block interval over 20 blocks is within 20% of `--block-time`;
//!   the gas limit of the blocks is the one given;
//! - IBFT and QBFT: the validator set is the generated one, and blocks are proposed and committed by it;
//! - a transfer signed here (not by the node) and sent to node 1 is included and seen on the last node
//!   (for Raft, which makes blocks only for transactions, also the liveness check);
//! - the last node, SIGKILLed with `dagctl net kill` and started again with `dagctl net restart`, catches up;
//! - `dagctl net down` leaves no process, listening port or directory.
//!
//! GoQuorum comes from `DAGCTL_QUORUM` or the bin dir named by `DAGCTL_CLIENTS_BIN` (`scripts/test.sh`
//! installs it from ../shared/clients). Without it the tests fail.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chain::audit::{listening_sockets, Protocol};
use chain::local::rpc;
use chain::tx::LegacyTx;
use chain::NodeKey;
use common::Home;
use serde_json::{json, Value};

const CALL: Duration = Duration::from_secs(5);
const GAS_LIMIT: u64 = 12_345_678;
const BLOCK_TIME_SECS: f64 = 1.0;

fn quorum_binary() -> PathBuf {
    common::client_binary("quorum", "DAGCTL_QUORUM")
}

/// One deployed network as `dagctl net show -o json` describes it.
struct Net {
    name: String,
    base_dir: PathBuf,
    nodes: Vec<Value>,
}

impl Net {
    fn rpc(&self, i: usize) -> String {
        self.nodes[i]["rpc"].as_str().unwrap().to_string()
    }

    fn pid(&self, i: usize) -> u32 {
        self.nodes[i]["pid"].as_u64().unwrap() as u32
    }

    fn node(&self, i: usize) -> &str {
        self.nodes[i]["node"].as_str().unwrap()
    }

    fn validators(&self) -> BTreeSet<String> {
        self.nodes
            .iter()
            .filter(|n| n["role"] == "validator")
            .map(|n| n["address"].as_str().unwrap().to_lowercase())
            .collect()
    }
}

/// Stops the network by name if a test fails half way.
struct Down<'a>(&'a Home, String);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["net", "down", &self.1]);
    }
}

fn show(home: &Home, name: &str) -> Net {
    let shown = home.json(&["net", "show", name]);
    Net {
        name: name.to_string(),
        base_dir: PathBuf::from(shown["base_dir"].as_str().unwrap()),
        nodes: shown["nodes"].as_array().unwrap().clone(),
    }
}

async fn call(url: &str, method: &str, params: Value) -> Value {
    rpc::call(url, method, params, CALL)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn head(url: &str) -> u64 {
    rpc::quantity(&call(url, "eth_blockNumber", json!([])).await).unwrap()
}

/// For polling: a node that is starting does not answer yet.
async fn try_quantity(url: &str, method: &str) -> Option<u64> {
    rpc::quantity(&rpc::call(url, method, json!([]), CALL).await.ok()?)
}

async fn block(url: &str, number: u64) -> Value {
    let block = call(url, "eth_getBlockByNumber", json!([format!("{number:#x}"), false])).await;
    assert!(!block.is_null(), "block {number} missing on {url}");
    block
}

/// Polls `check` every 250 ms until it returns Some, failing with `what` after `limit`.
async fn until<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every listening socket of every node, read from the kernel's tables and from `ss`, which must agree; all
/// on loopback except each raft node's raft port.
fn assert_loopback_only(net: &Net, raft: bool) {
    for (i, node) in net.nodes.iter().enumerate() {
        let pid = net.pid(i);
        let listeners = listening_sockets(pid).unwrap();
        assert!(!listeners.is_empty(), "{} listens on nothing?", net.node(i));
        let ss = std::process::Command::new("ss")
            .args(["-Hlntup"])
            .output()
            .expect("run ss");
        assert!(
            ss.status.success(),
            "ss failed: {}",
            String::from_utf8_lossy(&ss.stderr)
        );
        let ss_ports: BTreeSet<u16> = String::from_utf8_lossy(&ss.stdout)
            .lines()
            .filter(|l| l.contains(&format!("pid={pid},")))
            .filter_map(|l| l.split_whitespace().nth(4)?.rsplit_once(':')?.1.parse().ok())
            .collect();
        let ours: BTreeSet<u16> = listeners.iter().map(|l| l.address.port()).collect();
        assert_eq!(ours, ss_ports, "{}: the kernel tables and ss disagree", net.node(i));
        let raft_port = node["ports"]["raft"].as_u64().map(|p| p as u16);
        for listener in &listeners {
            if raft && listener.protocol == Protocol::Tcp && Some(listener.address.port()) == raft_port {
                continue;
            }
            assert!(
                listener.is_loopback(),
                "{} listens on {listener} beyond loopback (all: {listeners:?})",
                net.node(i)
            );
        }
        let rpc_port = node["ports"]["rpc"].as_u64().unwrap() as u16;
        let p2p_port = node["ports"]["p2p"].as_u64().unwrap() as u16;
        for port in [rpc_port, p2p_port] {
            assert!(
                ours.contains(&port),
                "{} does not listen on {port}: {listeners:?}",
                net.node(i)
            );
        }
    }
}

async fn assert_peers(net: &Net, expected: u64) {
    for i in 0..net.nodes.len() {
        let url = net.rpc(i);
        until(
            Duration::from_secs(60),
            &format!("{} to have {expected} peers", net.node(i)),
            || {
                let url = url.clone();
                async move {
                    let peers = try_quantity(&url, "net_peerCount").await?;
                    (peers == expected).then_some(())
                }
            },
        )
        .await;
    }
}

/// Waits until every node is at `height` or beyond.
async fn assert_all_reach(net: &Net, height: u64, limit: Duration) {
    for i in 0..net.nodes.len() {
        let url = net.rpc(i);
        until(limit, &format!("{} to reach block {height}", net.node(i)), || {
            let url = url.clone();
            async move { (try_quantity(&url, "eth_blockNumber").await? >= height).then_some(()) }
        })
        .await;
    }
}

/// Mean block interval over the next 20 blocks must be within 20% of the block time.
async fn assert_block_interval(net: &Net) -> u64 {
    let url = net.rpc(0);
    let start = head(&url).await;
    let end = start + 20;
    until(Duration::from_secs(90), &format!("block {end}"), || {
        let url = url.clone();
        async move { (head(&url).await >= end).then_some(()) }
    })
    .await;
    let time = |b: &Value| rpc::quantity(&b["timestamp"]).unwrap();
    let first = time(&block(&url, start).await);
    let last = time(&block(&url, end).await);
    let mean = (last - first) as f64 / 20.0;
    eprintln!(
        "{}: mean block interval over blocks {start}..{end}: {mean:.2}s",
        net.name
    );
    assert!(
        (mean - BLOCK_TIME_SECS).abs() <= 0.2 * BLOCK_TIME_SECS,
        "mean block interval {mean:.2}s is not within 20% of {BLOCK_TIME_SECS}s"
    );
    start
}

/// Blocks `from..from+5` were proposed and committed by the generated validator set (IBFT/QBFT).
async fn assert_sealed_by_validators(net: &Net, from: u64) {
    let validators = net.validators();
    let url = net.rpc(0);
    let reported: BTreeSet<String> = call(&url, "istanbul_getValidators", json!(["latest"]))
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_lowercase())
        .collect();
    assert_eq!(reported, validators, "istanbul_getValidators is the generated set");
    let quorum = (2 * validators.len()).div_ceil(3);
    let first = from.max(1);
    until(Duration::from_secs(60), &format!("block {}", first + 5), || {
        let url = url.clone();
        async move { (try_quantity(&url, "eth_blockNumber").await? >= first + 5).then_some(()) }
    })
    .await;
    for number in first..first + 5 {
        let signers = call(&url, "istanbul_getSignersFromBlock", json!([format!("{number:#x}")])).await;
        let author = signers["Author"].as_str().unwrap().to_lowercase();
        assert!(
            validators.contains(&author),
            "block {number} proposed by outsider {author}"
        );
        let committers: Vec<String> = signers["Committers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_lowercase())
            .collect();
        assert!(
            committers.len() >= quorum,
            "block {number}: {} committed seals, fewer than {quorum}",
            committers.len()
        );
        for committer in &committers {
            assert!(
                validators.contains(committer),
                "block {number} committed by outsider {committer}"
            );
        }
    }
}

/// Signs a transfer of `wei` to `to` with node 1's key and sends it raw to node 1; returns the hash node 1
/// reports (checked to be ours).
async fn send_from_node_1(net: &Net, chain_id: u64, to: &str, wei: u64) -> Value {
    let key =
        NodeKey::from_hex(&std::fs::read_to_string(net.base_dir.join(net.node(0)).join("nodekey")).unwrap()).unwrap();
    let from = net.nodes[0]["address"].as_str().unwrap();
    assert_eq!(key.address().to_checksum(None), from, "nodekey is node 1's key");
    let first = net.rpc(0);
    let nonce = rpc::quantity(&call(&first, "eth_getTransactionCount", json!([from, "pending"])).await).unwrap();
    let recipient: chain::Address = to.parse().unwrap();
    // GoQuorum's networks are gas-free: price 0.
    let tx = LegacyTx::transfer(chain_id, nonce, 0, recipient, chain::tx::U256::from(wei))
        .sign(&key)
        .unwrap();
    let hash = call(&first, "eth_sendRawTransaction", json!([tx.raw_hex()])).await;
    assert_eq!(
        hash.as_str().unwrap(),
        format!("{}", tx.hash),
        "the node reports our hash"
    );
    hash
}

/// Signs a transfer with node 1's key, sends it raw to node 1 and waits until the last node has it.
async fn transfer(net: &Net, chain_id: u64, to: &str, wei: u64) {
    let last = net.rpc(net.nodes.len() - 1);
    let before = alloy_quantity(&call(&last, "eth_getBalance", json!([to, "latest"])).await);
    let hash = send_from_node_1(net, chain_id, to, wei).await;
    let receipt = until(Duration::from_secs(60), "the transfer on the last node", || {
        let (last, hash) = (last.clone(), hash.clone());
        async move {
            let receipt = rpc::call(&last, "eth_getTransactionReceipt", json!([hash]), CALL)
                .await
                .ok()?;
            (!receipt.is_null()).then_some(receipt)
        }
    })
    .await;
    assert_eq!(receipt["status"], json!("0x1"), "{receipt}");
    let after = alloy_quantity(&call(&last, "eth_getBalance", json!([to, "latest"])).await);
    assert_eq!(
        after - before,
        wei as u128,
        "the recipient got the value on the last node"
    );
}

fn alloy_quantity(value: &Value) -> u128 {
    u128::from_str_radix(value.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

fn alive(pid: u32, data_dir: &Path) -> bool {
    chain::local::process::is_node_alive(pid, data_dir)
}

async fn exercise(consensus: &str, nodes: usize, full: bool) {
    let home = Home::new();
    let quorum = quorum_binary();
    let name = format!("q-{consensus}-{nodes}-{}", std::process::id());
    let chain_id = 4100 + nodes as u64;
    let started = Instant::now();
    let output = home
        .command()
        .env("DAGCTL_QUORUM", &quorum)
        .args([
            "net",
            "up",
            "--client",
            "quorum",
            "--consensus",
            consensus,
            "--nodes",
            &nodes.to_string(),
            "--block-time",
            "1",
            "--gas-limit",
            &GAS_LIMIT.to_string(),
            "--chain-id",
            &chain_id.to_string(),
            "--node-balance",
            "1000000000000000000000",
            "--name",
            &name,
            "--wait-ready-timeout",
            "4m",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _down = Down(&home, name.clone());
    assert!(output.status.success(), "net up failed: {}", common::stderr(&output));
    let progress = common::stderr(&output);
    eprintln!("{consensus} x{nodes} ready in {:.1}s", started.elapsed().as_secs_f64());
    let net = show(&home, &name);
    assert_eq!(net.nodes.len(), nodes);
    let raft = consensus == "raft";

    assert_loopback_only(&net, raft);
    if raft {
        assert!(
            progress.contains("raft transport listens on every interface"),
            "{progress}"
        );
    } else {
        assert!(!progress.contains("warning:"), "{progress}");
    }
    assert_peers(&net, nodes as u64 - 1).await;
    for i in 0..nodes {
        assert_eq!(
            rpc::quantity(&call(&net.rpc(i), "eth_chainId", json!([])).await),
            Some(chain_id)
        );
    }

    if !raft {
        let from = if full {
            assert_block_interval(&net).await
        } else {
            head(&net.rpc(0)).await
        };
        if consensus != "clique" {
            assert_sealed_by_validators(&net, from).await;
        }
    }
    let recipient = "0x000000000000000000000000000000000000dead";
    transfer(&net, chain_id, recipient, 1_000_000_000_000_000_000).await;
    let latest = block(&net.rpc(nodes - 1), head(&net.rpc(nodes - 1)).await).await;
    assert_eq!(
        rpc::quantity(&latest["gasLimit"]),
        Some(GAS_LIMIT),
        "gas limit on the chain"
    );
    let height = head(&net.rpc(0)).await;
    assert_all_reach(&net, height, Duration::from_secs(60)).await;

    if full {
        // The last node is killed; the others carry on; it comes back with its own data and catches up.
        let last = nodes - 1;
        let data_dir = net.base_dir.join(net.node(last));
        let old_pid = net.pid(last);
        home.ok(&["net", "kill", &name, net.node(last)]);
        until(Duration::from_secs(10), "the killed node to be gone", || async {
            (!alive(old_pid, &data_dir)).then_some(())
        })
        .await;
        let shown = show(&home, &name);
        assert_eq!(shown.nodes[last]["alive"], json!(false));
        // Blocks go on without it (Raft: for a transaction).
        let before = head(&net.rpc(0)).await;
        if raft {
            transfer_between_survivors(&net, chain_id).await;
        }
        until(Duration::from_secs(60), "blocks without the killed node", || {
            let url = net.rpc(0);
            async move { (head(&url).await > before + u64::from(!raft) * 2).then_some(()) }
        })
        .await;
        let restarted = home.ok(&["net", "restart", &name, net.node(last)]);
        assert!(restarted.contains("restarted"), "{restarted}");
        let net = show(&home, &name);
        assert_ne!(net.pid(last), old_pid);
        assert!(alive(net.pid(last), &data_dir));
        let target = head(&net.rpc(0)).await;
        assert_all_reach(&net, target, Duration::from_secs(90)).await;
        assert_peers(&net, nodes as u64 - 1).await;
        // It takes part again: a transfer reaches it.
        transfer(&net, chain_id, recipient, 5).await;
        assert_loopback_only(&net, raft);
    }

    // Teardown leaves nothing: no process, no port, no directory.
    let net = show(&home, &name);
    let ports: Vec<u16> = net
        .nodes
        .iter()
        .flat_map(|n| {
            n["ports"]
                .as_object()
                .unwrap()
                .values()
                .filter_map(|p| p.as_u64().map(|p| p as u16))
                .collect::<Vec<_>>()
        })
        .collect();
    home.ok(&["net", "down", &name]);
    for i in 0..nodes {
        assert!(
            !alive(net.pid(i), &net.base_dir.join(net.node(i))),
            "{} still runs",
            net.node(i)
        );
    }
    // A freed port may be taken at once by another test's process: only a listener of this network counts.
    for port in ports {
        let held = chain::local::process::listeners_under(port, &net.base_dir);
        assert!(held.is_empty(), "port {port} is still held by pids {held:?}");
    }
    assert!(!net.base_dir.exists(), "{} left behind", net.base_dir.display());
}

/// For Raft with the last node down: node 1 pays node 2, which makes a block among the survivors.
async fn transfer_between_survivors(net: &Net, chain_id: u64) {
    let to = net.nodes[1]["address"].as_str().unwrap().to_string();
    send_from_node_1(net, chain_id, &to, 7).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_ibft_four_nodes() {
    exercise("ibft", 4, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_qbft_four_nodes() {
    exercise("qbft", 4, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_raft_four_nodes() {
    exercise("raft", 4, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_clique_four_nodes() {
    exercise("clique", 4, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_ibft_seven_nodes() {
    exercise("ibft", 7, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_raft_seven_nodes() {
    exercise("raft", 7, false).await;
}

/// The four GoQuorum example DAGs run end to end with `dags test`: deploy, their own JSON-RPC checks,
/// teardown; every task succeeds and no network is left.
#[test]
fn quorum_example_dags_run_end_to_end() {
    let quorum = quorum_binary();
    let dags = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dags");
    for consensus in ["ibft", "qbft", "raft", "clique"] {
        let home = Home::new();
        let dag = format!("deploy-quorum-{consensus}");
        std::fs::copy(
            dags.join(format!("{dag}.yaml")),
            home.dags().join(format!("{dag}.yaml")),
        )
        .unwrap();
        let output = home
            .command()
            .env("DAGCTL_QUORUM", &quorum)
            .args(["dags", "test", &dag])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        let text = format!("{}{}", common::stdout(&output), common::stderr(&output));
        assert!(output.status.success(), "{dag}: {text}");
        for task in ["deploy", "check_network", "teardown"] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(task) && l.trim_end().ends_with("success")),
                "{dag}: {task} did not succeed: {text}"
            );
        }
        let networks = home.json(&["net", "ls", "--all"]);
        let networks = networks.as_array().unwrap();
        assert_eq!(networks.len(), 1, "{networks:?}");
        assert_eq!(networks[0]["status"], "removed", "{networks:?}");
    }
}

/// `dagctl clients install quorum --from`: a pinned copy installs into the data dir, where `net up` finds it
/// with no `DAGCTL_QUORUM`; a copy that is not pinned installs nothing; a GoQuorum of another version is
/// refused by `net up` with the version found and the one wanted.
#[test]
fn quorum_install_from_a_pinned_copy_and_version_checks() {
    let quorum = quorum_binary();
    let home = Home::new();
    let bin = home.path().join("clients/bin");
    let install = |from: &Path| {
        home.command()
            .env_remove("DAGCTL_QUORUM")
            .args(["clients", "install", "quorum", "--from"])
            .arg(from)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap()
    };

    // Not pinned: refused in one line, nothing installed.
    let fake = home.path().join("geth");
    std::fs::write(&fake, "#!/bin/sh\necho 'Quorum Version: 24.4.1'\n").unwrap();
    let output = install(&fake);
    assert!(!output.status.success());
    let err = common::stderr(&output);
    assert!(
        err.contains("not a pinned GoQuorum 24.4.1 build: refusing to install it"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one readable line: {err}");
    assert!(!bin.join("quorum").exists());

    // The pinned build: installed (checksum and `geth version` checked), and found by `net up`.
    let output = install(&quorum);
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert!(
        common::stdout(&output).contains("installed at"),
        "{}",
        common::stdout(&output)
    );
    let installed = bin.join("quorum");
    assert_eq!(std::fs::read(&installed).unwrap(), std::fs::read(&quorum).unwrap());
    let output = home
        .command()
        .env_remove("DAGCTL_QUORUM")
        .env("PATH", "/usr/bin:/bin")
        .args([
            "net",
            "up",
            "--client",
            "quorum",
            "--consensus",
            "raft",
            "--nodes",
            "2",
            "--name",
            "found",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let _down = Down(&home, "found".into());
    let err = common::stderr(&output);
    assert!(output.status.success(), "{err}");
    assert!(err.contains(&format!("using {}", installed.display())), "{err}");
    home.ok(&["net", "down", "found"]);

    // Another version: refused before anything starts.
    let old = home.path().join("quorum-22");
    std::fs::write(
        &old,
        "#!/bin/sh\necho Geth\necho 'Version: 1.10.3-stable'\necho 'Quorum Version: 22.7.0'\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = home
        .command()
        .env("DAGCTL_QUORUM", &old)
        .args([
            "net",
            "up",
            "--client",
            "quorum",
            "--consensus",
            "ibft",
            "--nodes",
            "4",
            "--name",
            "old",
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = common::stderr(&output);
    assert!(
        err.contains("is GoQuorum 22.7.0, but the network wants GoQuorum 24.4.1"),
        "{err}"
    );
    assert!(!home.path().join("networks/old").exists());
}
