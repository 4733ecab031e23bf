//! Hyperledger Besu: IBFT 2.0, QBFT and Clique (Clique sealing needs < 25.12).

use serde_json::{json, Map, Value};

use super::{forks_at_genesis, geth_alloc, ISTANBUL_MIX_HASH, ZERO_ADDRESS, ZERO_HASH};
use crate::error::Result;
use crate::output::{CommandSpec, GeneratedFile};
use crate::plan::{hex_data, quantity, static_nodes_json, ClientOutput, NodeOutput, Plan, PlannedNode};
use crate::spec::Consensus;

const BESU_FORKS: &[&str] = &[
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
];

pub(crate) fn build(plan: &Plan<'_>) -> Result<ClientOutput> {
    let consensus = plan.spec.consensus;
    let extra_data = plan.extra_data();
    let mut config = Map::new();
    config.insert("chainId".into(), Value::from(plan.settings.chain_id));
    forks_at_genesis(&mut config, BESU_FORKS);
    let (engine_key, engine) = match consensus {
        Consensus::Clique => (
            "clique",
            json!({
                "blockperiodseconds": plan.block_time_secs(),
                "epochlength": plan.epoch(),
            }),
        ),
        Consensus::Qbft => ("qbft", bft_section(plan)),
        _ => ("ibft2", bft_section(plan)),
    };
    config.insert(engine_key.into(), engine);
    let mix_hash = if consensus == Consensus::Clique {
        ZERO_HASH
    } else {
        ISTANBUL_MIX_HASH
    };
    let genesis = json!({
        "config": config,
        "nonce": "0x0",
        "timestamp": "0x0",
        "extraData": hex_data(extra_data.as_ref().map(|b| b.as_ref()).unwrap_or_default()),
        "gasLimit": quantity(plan.settings.gas_limit),
        "difficulty": "0x1",
        "mixHash": mix_hash,
        "coinbase": ZERO_ADDRESS,
        "alloc": geth_alloc(plan, true),
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

fn bft_section(plan: &Plan<'_>) -> Value {
    json!({
        "blockperiodseconds": plan.block_time_secs(),
        "epochlength": plan.epoch(),
        "requesttimeoutseconds": plan.request_timeout_secs(),
    })
}

fn node_output(plan: &Plan<'_>, index: usize, node: &PlannedNode<'_>) -> Result<NodeOutput> {
    let files = vec![
        GeneratedFile::public("static-nodes.json", static_nodes_json(&plan.peer_enodes(index))?),
        // Besu's key file: the 0x-prefixed private key; it signs blocks for validators.
        GeneratedFile::secret("key", format!("0x{}", node.key.secret_hex())),
    ];
    let apis = match plan.spec.consensus {
        Consensus::Clique => "ETH,NET,WEB3,TXPOOL,ADMIN,CLIQUE",
        Consensus::Qbft => "ETH,NET,WEB3,TXPOOL,ADMIN,QBFT",
        _ => "ETH,NET,WEB3,TXPOOL,ADMIN,IBFT",
    };
    let ports = node.params.ports;
    let host = node.params.host.as_str();
    let mut command = CommandSpec::new("besu");
    command.args([
        format!("--data-path={}", node.data_dir()),
        format!("--genesis-file={}", node.path("genesis.json")),
        format!("--node-private-key-file={}", node.path("key")),
        format!("--network-id={}", plan.settings.chain_id),
        format!("--p2p-host={host}"),
        format!("--p2p-port={}", ports.p2p),
        "--discovery-enabled=false".to_string(),
        format!("--static-nodes-file={}", node.path("static-nodes.json")),
        "--nat-method=NONE".to_string(),
        "--sync-mode=FULL".to_string(),
        "--rpc-http-enabled".to_string(),
        format!("--rpc-http-host={host}"),
        format!("--rpc-http-port={}", ports.rpc),
        format!("--rpc-http-api={apis}"),
        "--host-allowlist=*".to_string(),
        "--min-gas-price=0".to_string(),
        format!("--target-gas-limit={}", plan.settings.gas_limit),
    ]);
    if let Some(ws) = ports.ws {
        command.args([
            "--rpc-ws-enabled".to_string(),
            format!("--rpc-ws-host={host}"),
            format!("--rpc-ws-port={ws}"),
            format!("--rpc-ws-api={apis}"),
        ]);
    }
    if let Some(metrics) = ports.metrics {
        command.args([
            "--metrics-enabled".to_string(),
            format!("--metrics-host={host}"),
            format!("--metrics-port={metrics}"),
        ]);
    }
    Ok(NodeOutput {
        files,
        init: Vec::new(),
        command,
    })
}
