//! go-ethereum 1.11–1.13, Clique only (1.14 cannot seal Clique: chains.md 0.1).

use serde_json::{json, Map, Value};

use super::{forks_at_genesis, geth_alloc, ZERO_ADDRESS, ZERO_HASH};
use crate::error::Result;
use crate::keystore::Keystore;
use crate::output::{CommandSpec, GeneratedFile};
use crate::plan::{hex_data, quantity, ClientOutput, NodeOutput, Plan, PlannedNode};

/// Forks geth 1.13 activates for a Clique chain. No Shanghai (Clique rejects it) and no
/// `terminalTotalDifficulty` (a post-merge genesis stops sealing: go-ethereum#29249).
pub(crate) const GETH_FORKS: &[&str] = &[
    "homesteadBlock",
    "eip150Block",
    "eip155Block",
    "eip158Block",
    "byzantiumBlock",
    "constantinopleBlock",
    "petersburgBlock",
    "istanbulBlock",
    "muirGlacierBlock",
    "berlinBlock",
    "londonBlock",
    "arrowGlacierBlock",
    "grayGlacierBlock",
];

/// JSON-RPC namespaces served over HTTP/WS.
pub(crate) const GETH_APIS: &str = "eth,net,web3,txpool,clique,admin";

pub(crate) fn build(plan: &Plan<'_>) -> Result<ClientOutput> {
    let extra_data = plan.extra_data();
    let mut config = Map::new();
    config.insert("chainId".into(), Value::from(plan.settings.chain_id));
    forks_at_genesis(&mut config, GETH_FORKS);
    config.insert(
        "clique".into(),
        json!({ "period": plan.block_time_secs(), "epoch": plan.epoch() }),
    );
    let genesis = json!({
        "config": config,
        "nonce": "0x0",
        "timestamp": "0x0",
        "extraData": hex_data(extra_data.as_ref().map(|b| b.as_ref()).unwrap_or_default()),
        "gasLimit": quantity(plan.settings.gas_limit),
        "difficulty": "0x1",
        "mixHash": ZERO_HASH,
        "coinbase": ZERO_ADDRESS,
        "alloc": geth_alloc(plan, false),
        "number": "0x0",
        "gasUsed": "0x0",
        "parentHash": ZERO_HASH,
    });
    let mut nodes = Vec::with_capacity(plan.nodes.len());
    for (index, node) in plan.nodes.iter().enumerate() {
        nodes.push(node_output(plan, index, node)?);
    }
    Ok(ClientOutput {
        genesis: Some(genesis),
        genesis_file: Some("genesis.json"),
        extra_data,
        nodes,
    })
}

fn node_output(plan: &Plan<'_>, index: usize, node: &PlannedNode<'_>) -> Result<NodeOutput> {
    let mut files = vec![
        GeneratedFile::public(
            "config.toml",
            config_toml(
                &format!("{}:{}", node.params.host, node.params.ports.p2p),
                &plan.peer_enodes(index),
            ),
        ),
        GeneratedFile::secret("nodekey", node.key.secret_hex()),
    ];
    let mut init = CommandSpec::new("geth");
    init.args(["init", "--datadir", &node.data_dir(), &node.path("genesis.json")]);

    let ports = node.params.ports;
    let host = node.params.host.as_str();
    let mut command = CommandSpec::new("geth");
    command.args([
        "--datadir".to_string(),
        node.data_dir(),
        "--config".to_string(),
        node.path("config.toml"),
        "--nodekey".to_string(),
        node.path("nodekey"),
        "--networkid".to_string(),
        plan.settings.chain_id.to_string(),
        "--syncmode".to_string(),
        "full".to_string(),
        // No `--port`: geth 1.13 turns it into ":port" (every interface); config.toml binds p2p to the host.
        "--nodiscover".to_string(),
        "--nat".to_string(),
        "none".to_string(),
        // The IPC socket path can exceed the 108-byte limit under deep data dirs.
        "--ipcdisable".to_string(),
        "--http".to_string(),
        "--http.addr".to_string(),
        host.to_string(),
        "--http.port".to_string(),
        ports.rpc.to_string(),
        "--http.api".to_string(),
        GETH_APIS.to_string(),
        "--http.vhosts".to_string(),
        "*".to_string(),
        // geth 1.13 always opens the engine API; give every node its own port.
        "--authrpc.addr".to_string(),
        "127.0.0.1".to_string(),
        "--authrpc.port".to_string(),
        ports.authrpc.unwrap_or_default().to_string(),
        "--miner.gaslimit".to_string(),
        plan.settings.gas_limit.to_string(),
        "--verbosity".to_string(),
        "3".to_string(),
    ]);
    if let Some(ws) = ports.ws {
        command.args([
            "--ws".to_string(),
            "--ws.addr".to_string(),
            host.to_string(),
            "--ws.port".to_string(),
            ws.to_string(),
            "--ws.api".to_string(),
            GETH_APIS.to_string(),
        ]);
    }
    if let Some(metrics) = ports.metrics {
        command.args([
            "--metrics".to_string(),
            "--metrics.addr".to_string(),
            host.to_string(),
            "--metrics.port".to_string(),
            metrics.to_string(),
        ]);
    }
    if node.is_validator() {
        let keystore = Keystore::encrypt(&node.key, &node.password, &plan.source, node.slot.index as u32)?;
        files.push(GeneratedFile::secret(
            format!("keystore/{}", keystore.file_name()),
            keystore.to_json()?,
        ));
        files.push(GeneratedFile::secret("password.txt", node.password.clone()));
        let address = node.key.address().to_checksum(None);
        command.args([
            "--mine".to_string(),
            "--miner.etherbase".to_string(),
            address.clone(),
            "--unlock".to_string(),
            address,
            "--password".to_string(),
            node.path("password.txt"),
            "--allow-insecure-unlock".to_string(),
        ]);
    }
    Ok(NodeOutput {
        files,
        init: vec![init],
        command,
    })
}

/// geth ≥1.12 ignores `static-nodes.json`; static peers live in `[Node.P2P] StaticNodes`. The p2p listener is
/// bound here too (`ListenAddr`), because the `--port` flag would listen on every interface.
pub(crate) fn config_toml(listen_addr: &str, peers: &[String]) -> String {
    let quoted: Vec<String> = peers.iter().map(|enode| format!("  \"{enode}\",")).collect();
    let head = format!("[Node.P2P]\nListenAddr = \"{listen_addr}\"\n");
    if quoted.is_empty() {
        return format!("{head}StaticNodes = []\n");
    }
    format!("{head}StaticNodes = [\n{}\n]\n", quoted.join("\n"))
}
