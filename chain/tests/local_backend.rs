//! The local backend with real clients: geth 1.13 Clique and anvil.
//!
//! Binaries come from `DAGCTL_GETH` / `DAGCTL_ANVIL`, or from the bin dir of
//! `scripts/install-clients.sh` named by `DAGCTL_CLIENTS_BIN`. A missing client fails the test
//! (CI installs them); nothing is skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chain::lifecycle::{self, DeployRequest};
use chain::local::process::{is_node_alive, HostLauncher, Launcher};
use chain::local::{rpc, ClientBinaries, LocalBackend, LocalOptions, NetworkRecord};
use chain::{Balance, Client, CommandSpec, Consensus, NetworkSpec, Role, SpecDuration};
use engine::testing::TestDb;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

const CALL: Duration = Duration::from_secs(5);

fn client_binary(client: Client) -> PathBuf {
    let variable = match client {
        Client::Geth => "DAGCTL_GETH",
        Client::Anvil => "DAGCTL_ANVIL",
        other => panic!("no test binary for {other}"),
    };
    if let Some(path) = std::env::var_os(variable).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if let Some(dir) = std::env::var_os("DAGCTL_CLIENTS_BIN").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(dir).join(client.program());
        if path.exists() {
            return path;
        }
    }
    panic!(
        "{client} is needed by this test: set {variable} to its binary, or DAGCTL_CLIENTS_BIN to the bin dir printed by `scripts/install-clients.sh CACHE_DIR`"
    );
}

struct Fixture {
    store: engine::store::Store,
    backend: LocalBackend,
    networks: tempfile::TempDir,
    _db: TestDb,
}

async fn fixture(client: Client, launcher: Option<Arc<dyn Launcher>>) -> Fixture {
    let db = TestDb::sqlite().await;
    let networks = tempfile::tempdir().unwrap();
    let mut overrides = BTreeMap::new();
    overrides.insert(client, client_binary(client));
    let binaries = ClientBinaries {
        dir: None,
        overrides,
        path: None,
    };
    let mut options = LocalOptions::new(networks.path().to_path_buf(), binaries, "test-host".into());
    options.kill_grace = Duration::from_secs(5);
    let backend = match launcher {
        Some(launcher) => LocalBackend::with_launcher(options, launcher),
        None => LocalBackend::new(options),
    };
    Fixture {
        store: db.store.clone(),
        backend,
        networks,
        _db: db,
    }
}

fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

fn progress(line: &str) {
    eprintln!("[deploy] {line}");
}

async fn call(url: &str, method: &str, params: Value) -> Value {
    rpc::call(url, method, params, CALL)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn head(url: &str) -> u64 {
    rpc::quantity(&call(url, "eth_blockNumber", json!([])).await).unwrap()
}

/// Stops a network's processes when a test panics half way, so no node outlives the test.
struct Cleanup(NetworkRecord);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let nodes: Vec<(u32, PathBuf)> = self
            .0
            .nodes
            .iter()
            .filter_map(|n| n.pid.map(|pid| (pid, n.data_dir.clone())))
            .collect();
        chain::local::process::stop_all(&nodes, Duration::from_secs(3));
    }
}

/// Heads of every node plus each node's last log lines, for a failure message.
async fn diagnose(record: &NetworkRecord) -> String {
    let mut out = String::new();
    for node in &record.nodes {
        let head = rpc::call(&node.rpc, "eth_blockNumber", json!([]), CALL).await;
        out.push_str(&format!("\n{} head {:?}", node.name, head.map(|h| rpc::quantity(&h))));
        out.push_str(&chain::local::process::format_tail(&node.log, 8));
    }
    out
}

/// Every node of `record` listens only on loopback (RPC, WS, p2p, authrpc, metrics: whatever it opened).
fn assert_loopback_only(record: &NetworkRecord) {
    for node in &record.nodes {
        let listeners = chain::audit::listening_sockets(node.pid.unwrap()).unwrap();
        assert!(
            listeners.iter().any(|l| l.address.port() == node.ports.rpc),
            "{} does not listen on its rpc port: {listeners:?}",
            node.name
        );
        for listener in &listeners {
            assert!(
                listener.is_loopback(),
                "{} listens on {listener} beyond loopback",
                node.name
            );
        }
    }
}

/// Asserts that nothing of `record` is left: no process, no listening port, no directory.
fn assert_gone(record: &NetworkRecord) {
    for node in &record.nodes {
        let pid = node.pid.unwrap();
        assert!(
            !is_node_alive(pid, &node.data_dir),
            "{} (pid {pid}) still runs",
            node.name
        );
        // A freed port may be taken at once by another test's process: only a listener of this network counts.
        let held = chain::local::process::listeners_under(node.ports.rpc, &record.base_dir);
        assert!(
            held.is_empty(),
            "{}'s rpc port {} is still held by pids {held:?}",
            node.name,
            node.ports.rpc
        );
    }
    assert!(
        !record.base_dir.exists(),
        "{} was not removed",
        record.base_dir.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn geth_clique_four_nodes_seal_peer_and_carry_a_transfer() {
    let fx = fixture(Client::Geth, None).await;
    // Three signers and a member: with four or more geth Clique signers, competing out-of-turn blocks can
    // leave every branch with only "recently signed" signers and the chain stalls (docs/chain.md).
    let mut spec = NetworkSpec::new(unique_name("geth4"), Client::Geth, Consensus::Clique, 3);
    spec.members = 1;
    // 2 s leaves the signers slack on a loaded 2-core CI machine.
    spec.block_time = Some(SpecDuration::from_secs(2));
    spec.gas_limit = Some(30_000_000);
    spec.chain_id = Some(4242);
    spec.node_balance = Balance::parse("1000000000000000000000");
    let request = DeployRequest {
        spec,
        ready_timeout: Duration::from_secs(120),
        ttl: None,
        owner: None,
    };
    let started = Instant::now();
    let deployed = lifecycle::deploy(&fx.store, &fx.backend, &request, &CancellationToken::new(), &progress)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("4 geth nodes ready in {:.1}s", started.elapsed().as_secs_f64());
    let record = deployed.record.clone();
    let _cleanup = Cleanup(record.clone());
    assert_eq!(record.nodes.len(), 4);
    assert_eq!(fx.store.get_network(&record.name).await.unwrap().status, "running");
    assert_loopback_only(&record);

    // Block 5 on every node, 3 peers each.
    let deadline = Instant::now() + Duration::from_secs(90);
    for node in &record.nodes {
        while head(&node.rpc).await < 5 {
            if Instant::now() > deadline {
                panic!("{} did not reach block 5:{}", node.name, diagnose(&record).await);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let peers = rpc::quantity(&call(&node.rpc, "net_peerCount", json!([])).await).unwrap();
        assert_eq!(peers, 3, "{} peers", node.name);
        let chain_id = call(&node.rpc, "eth_chainId", json!([])).await;
        assert_eq!(rpc::quantity(&chain_id), Some(4242));
    }

    // More than one signer sealed blocks 1..=5, all of them validators.
    let validators: BTreeSet<String> = record
        .nodes
        .iter()
        .filter(|n| n.role == Role::Validator)
        .map(|n| n.address.to_lowercase())
        .collect();
    let mut signers = BTreeSet::new();
    for number in 1..=5u64 {
        let signer = call(
            &record.nodes[0].rpc,
            "clique_getSigner",
            json!([format!("{number:#x}")]),
        )
        .await;
        let signer = signer.as_str().unwrap().to_lowercase();
        assert!(
            validators.contains(&signer),
            "block {number} signed by outsider {signer}"
        );
        signers.insert(signer);
    }
    assert!(signers.len() > 1, "only {signers:?} sealed blocks 1-5");
    let block = call(&record.nodes[3].rpc, "eth_getBlockByNumber", json!(["latest", false])).await;
    assert_eq!(rpc::quantity(&block["gasLimit"]), Some(30_000_000));

    // A transfer sent to node 1 (its unlocked signer) is included and seen on node 4.
    let recipient = "0x000000000000000000000000000000000000dead";
    let tx_hash = call(
        &record.nodes[0].rpc,
        "eth_sendTransaction",
        json!([{"from": record.nodes[0].address, "to": recipient, "value": "0xde0b6b3a7640000", "gas": "0x5208"}]),
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let receipt = loop {
        let receipt = call(&record.nodes[3].rpc, "eth_getTransactionReceipt", json!([tx_hash])).await;
        if !receipt.is_null() {
            break receipt;
        }
        assert!(Instant::now() < deadline, "transfer {tx_hash} not seen on node 4");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(receipt["status"], json!("0x1"));
    let balance = call(&record.nodes[3].rpc, "eth_getBalance", json!([recipient, "latest"])).await;
    assert_eq!(balance, json!("0xde0b6b3a7640000"));

    lifecycle::teardown(&fx.store, &fx.backend, &record.name, &progress)
        .await
        .unwrap();
    assert_gone(&record);
    assert_eq!(fx.store.get_network(&record.name).await.unwrap().status, "removed");
    assert_eq!(std::fs::read_dir(fx.networks.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn anvil_answers_rpc_and_leaves_nothing_behind() {
    let fx = fixture(Client::Anvil, None).await;
    let mut spec = NetworkSpec::new(unique_name("anvil"), Client::Anvil, Consensus::Interval, 1);
    spec.chain_id = Some(31337);
    let request = DeployRequest {
        spec,
        ready_timeout: Duration::from_secs(60),
        ttl: None,
        owner: None,
    };
    let deployed = lifecycle::deploy(&fx.store, &fx.backend, &request, &CancellationToken::new(), &progress)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let record = deployed.record;
    let _cleanup = Cleanup(record.clone());
    assert_loopback_only(&record);
    let rpc_url = record.endpoints()["rpc"].as_str().unwrap().to_string();
    assert_eq!(
        rpc::quantity(&call(&rpc_url, "eth_chainId", json!([])).await),
        Some(31337)
    );
    assert!(deployed.ready.heads[0].1 >= 1, "interval mining made a block");
    lifecycle::teardown(&fx.store, &fx.backend, &record.name, &progress)
        .await
        .unwrap();
    assert_gone(&record);
}

/// Launches nodes normally, but first replaces the Clique signers in genesis.json with none:
/// `geth init` accepts that genesis, and geth 1.13's miner then panics on it (nobody may seal).
struct NoSignersGenesis;

impl Launcher for NoSignersGenesis {
    fn node_host(&self, node: &str) -> String {
        HostLauncher.node_host(node)
    }

    fn command(&self, node: &str, program: &std::path::Path, spec: &CommandSpec) -> std::process::Command {
        if spec.args.first().map(String::as_str) == Some("init") {
            let genesis_path = spec.args.last().unwrap();
            let text = std::fs::read_to_string(genesis_path).unwrap();
            let mut genesis: Value = serde_json::from_str(&text).unwrap();
            genesis["extraData"] = json!(format!("0x{}", "00".repeat(32 + 65)));
            std::fs::write(genesis_path, genesis.to_string()).unwrap();
        }
        HostLauncher.command(node, program, spec)
    }
}

#[tokio::test]
async fn a_network_that_cannot_get_ready_fails_clearly_and_cleans_up() {
    let fx = fixture(Client::Geth, Some(Arc::new(NoSignersGenesis))).await;
    let mut spec = NetworkSpec::new(unique_name("nosigners"), Client::Geth, Consensus::Clique, 2);
    spec.block_time = Some(SpecDuration::from_secs(1));
    let request = DeployRequest {
        spec,
        ready_timeout: Duration::from_secs(15),
        ttl: None,
        owner: None,
    };
    let err = lifecycle::deploy(&fx.store, &fx.backend, &request, &CancellationToken::new(), &progress)
        .await
        .unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    assert!(matches!(err, chain::Error::NotReady { .. }), "{text}");
    assert!(text.contains("exited before the network was ready"), "{text}");
    assert!(text.contains("panic"), "geth's own panic is in the log tail: {text}");
    // Both signers panic; whichever exits first is named, with its own log's tail.
    let node = ["validator-1", "validator-2"]
        .into_iter()
        .find(|n| text.contains(&format!("node `{n}`")))
        .unwrap_or_else(|| panic!("a node is named: {text}"));
    assert!(
        text.contains("last ") && text.contains(&format!("{node}.log")),
        "log tail shown: {text}"
    );
    let row = fx.store.get_network(&request.spec.name).await.unwrap();
    assert_eq!(row.status, "failed");
    assert!(row.message.as_deref().unwrap_or_default().contains("not ready"));
    let record = lifecycle::record_of(&row).unwrap().expect("processes were recorded");
    assert_gone(&record);
}

#[tokio::test]
async fn a_missing_client_is_a_clear_error_before_anything_starts() {
    let db = TestDb::sqlite().await;
    let networks = tempfile::tempdir().unwrap();
    let binaries = ClientBinaries {
        dir: Some(networks.path().join("clients")),
        overrides: BTreeMap::new(),
        path: Some("/nonexistent".into()),
    };
    let backend = LocalBackend::new(LocalOptions::new(networks.path().join("n"), binaries, "h".into()));
    let request = DeployRequest {
        spec: NetworkSpec::new("needs-besu", Client::Besu, Consensus::Qbft, 4),
        ready_timeout: Duration::from_secs(5),
        ttl: None,
        owner: None,
    };
    let err = lifecycle::deploy(&db.store, &backend, &request, &CancellationToken::new(), &progress)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("besu binary not found"), "{err}");
    assert_eq!(db.store.get_network("needs-besu").await.unwrap().status, "failed");
    assert!(!networks.path().join("n/needs-besu").exists());
}

/// Starts nodes with no static peers, so they never find each other.
struct NoPeers;

impl Launcher for NoPeers {
    fn node_host(&self, node: &str) -> String {
        HostLauncher.node_host(node)
    }

    fn command(&self, node: &str, program: &std::path::Path, spec: &CommandSpec) -> std::process::Command {
        if let Some(config) = spec.flag_value("--config") {
            // Keep the node's own listen address; drop its peers.
            let text = std::fs::read_to_string(config).unwrap();
            let listen = text
                .lines()
                .find(|line| line.starts_with("ListenAddr"))
                .unwrap_or_default();
            std::fs::write(config, format!("[Node.P2P]\n{listen}\nStaticNodes = []\n")).unwrap();
        }
        HostLauncher.command(node, program, spec)
    }
}

#[tokio::test]
async fn a_network_without_peers_times_out_with_the_reason_and_cleans_up() {
    let fx = fixture(Client::Geth, Some(Arc::new(NoPeers))).await;
    let spec = NetworkSpec::new(unique_name("nopeers"), Client::Geth, Consensus::Clique, 2);
    let request = DeployRequest {
        spec,
        ready_timeout: Duration::from_secs(8),
        ttl: None,
        owner: None,
    };
    let started = Instant::now();
    let err = lifecycle::deploy(&fx.store, &fx.backend, &request, &CancellationToken::new(), &progress)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(started.elapsed() < Duration::from_secs(40), "bounded by the timeout");
    assert!(text.contains("has 0 of 1 expected peers after 8s"), "{text}");
    assert!(text.contains("validator-1.log"), "{text}");
    let row = fx.store.get_network(&request.spec.name).await.unwrap();
    assert_eq!(row.status, "failed");
    assert_gone(&lifecycle::record_of(&row).unwrap().unwrap());
}

#[tokio::test]
async fn a_cancelled_deploy_stops_and_removes_everything() {
    let fx = fixture(Client::Geth, Some(Arc::new(NoPeers))).await;
    let spec = NetworkSpec::new(unique_name("cancelled"), Client::Geth, Consensus::Clique, 2);
    let request = DeployRequest {
        spec,
        ready_timeout: Duration::from_secs(120),
        ttl: None,
        owner: None,
    };
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    // Cancel once the nodes run (their processes are recorded), however long a loaded machine takes to get
    // there, and while the network still waits for peers (it never gets any).
    let store = fx.store.clone();
    let name = request.spec.name.clone();
    let cancelled_at = Arc::new(std::sync::Mutex::new(None::<Instant>));
    let stamp = cancelled_at.clone();
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(row) = store.get_network(&name).await {
                if row.nodes.trim() != "[]" {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        *stamp.lock().unwrap() = Some(Instant::now());
        trigger.cancel();
    });
    let err = lifecycle::deploy(&fx.store, &fx.backend, &request, &cancel, &progress)
        .await
        .unwrap_err();
    assert!(matches!(err, chain::Error::Cancelled(_)), "{err}");
    let cancelled_at = cancelled_at
        .lock()
        .unwrap()
        .expect("the deploy ended only after it was cancelled");
    assert!(
        cancelled_at.elapsed() < Duration::from_secs(27),
        "cancellation is prompt"
    );
    let row = fx.store.get_network(&request.spec.name).await.unwrap();
    assert_eq!(row.status, "failed");
    assert_gone(&lifecycle::record_of(&row).unwrap().unwrap());
}
