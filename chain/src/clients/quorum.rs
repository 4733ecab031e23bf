//! GoQuorum (geth 1.10 base): IBFT, QBFT, Raft and Clique.

use serde_json::{json, Map, Value};

use super::{forks_at_genesis, geth_alloc, ISTANBUL_MIX_HASH, ZERO_ADDRESS, ZERO_HASH};
use crate::error::Result;
use crate::keystore::Keystore;
use crate::output::{CommandSpec, GeneratedFile};
use crate::plan::{hex_data, quantity, static_nodes_json, ClientOutput, NodeOutput, Plan, PlannedNode};
use crate::spec::Consensus;

/// Forks of quorum-dev-quickstart's istanbul/raft genesis, plus Petersburg and Istanbul.
const QUORUM_FORKS: &[&str] = &[
    "homesteadBlock",
    "eip150Block",
    "eip155Block",
    "eip158Block",
    "byzantiumBlock",
    "constantinopleBlock",
    "petersburgBlock",
    "istanbulBlock",
];
/// quorum-dev-quickstart's QBFT genesis also activates Berlin and London.
const QUORUM_QBFT_FORKS: &[&str] = &["berlinBlock", "londonBlock"];

pub(crate) fn build(plan: &Plan<'_>) -> Result<ClientOutput> {
    let consensus = plan.spec.consensus;
    let extra_data = match consensus {
        // Raft has no sealers in the header: 32 zero bytes (raft-standard-genesis.json).
        Consensus::Raft => Some(vec![0u8; 32].into()),
        _ => plan.extra_data(),
    };
    let mut config = Map::new();
    config.insert("chainId".into(), Value::from(plan.settings.chain_id));
    forks_at_genesis(&mut config, QUORUM_FORKS);
    match consensus {
        Consensus::Ibft | Consensus::Qbft => {
            // quorum params/config.go BFTConfig: lowercase keys, seconds.
            let bft = json!({
                "epochlength": plan.epoch(),
                "blockperiodseconds": plan.block_time_secs(),
                "requesttimeoutseconds": plan.request_timeout_secs(),
                "policy": 0,
                "ceil2Nby3Block": 0,
            });
            let key = if consensus == Consensus::Ibft { "ibft" } else { "qbft" };
            config.insert(key.into(), bft);
            if consensus == Consensus::Qbft {
                forks_at_genesis(&mut config, QUORUM_QBFT_FORKS);
            }
        }
        Consensus::Clique => {
            config.insert(
                "clique".into(),
                json!({ "period": plan.block_time_secs(), "epoch": plan.epoch() }),
            );
        }
        _ => {}
    }
    config.insert("isQuorum".into(), Value::Bool(true));
    config.insert("txnSizeLimit".into(), Value::from(64));
    config.insert("maxCodeSizeConfig".into(), json!([{ "block": 0, "size": 64 }]));
    let (difficulty, mix_hash) = match consensus {
        Consensus::Ibft | Consensus::Qbft => ("0x1", ISTANBUL_MIX_HASH),
        Consensus::Raft => ("0x0", ZERO_HASH),
        _ => ("0x1", ZERO_HASH),
    };
    let genesis = json!({
        "config": config,
        "nonce": "0x0",
        "timestamp": "0x0",
        "extraData": hex_data(extra_data.as_ref().map(|b| b.as_ref()).unwrap_or_default()),
        "gasLimit": quantity(plan.settings.gas_limit),
        "difficulty": difficulty,
        "mixHash": mix_hash,
        "coinbase": ZERO_ADDRESS,
        "alloc": geth_alloc(plan, false),
        "number": "0x0",
        "gasUsed": "0x0",
        "parentHash": ZERO_HASH,
    });
    let static_nodes = static_nodes_for(plan);
    let mut nodes = Vec::with_capacity(plan.nodes.len());
    for node in &plan.nodes {
        nodes.push(node_output(plan, node, &static_nodes)?);
    }
    Ok(ClientOutput {
        genesis: Some(genesis),
        genesis_file: Some("genesis.json"),
        extra_data,
        nodes,
    })
}

/// Every node, self included, in node order: raft numbers its peers by this list.
fn static_nodes_for(plan: &Plan<'_>) -> Vec<String> {
    plan.nodes
        .iter()
        .map(|n| {
            let (host, port) = n.params.peer_endpoint();
            let enode = n.key.enode(host, port);
            match (plan.spec.consensus, n.params.peer_raft_port()) {
                (Consensus::Raft, Some(raft)) => format!("{enode}&raftport={raft}"),
                _ => enode,
            }
        })
        .collect()
}

/// `[Node.P2P] ListenAddr` only: static peers stay in `static-nodes.json`, which raft numbers its peers by.
/// Raft's own transport cannot be bound: GoQuorum 24.4.1 listens on `0.0.0.0:<raftport>` whatever the
/// flags (raft/handler.go `serveRaft`); see docs/chain.md.
fn listen_toml(host: &str, p2p: u16) -> String {
    format!("[Node.P2P]\nListenAddr = \"{host}:{p2p}\"\n")
}

fn node_output(plan: &Plan<'_>, node: &PlannedNode<'_>, static_nodes: &[String]) -> Result<NodeOutput> {
    let consensus = plan.spec.consensus;
    let ports = node.params.ports;
    let host = node.params.host.as_str();
    let mut files = vec![
        // quorum 1.10 still reads <datadir>/geth/static-nodes.json (raft requires it).
        GeneratedFile::public("geth/static-nodes.json", static_nodes_json(static_nodes)?),
        // `--port` would make devp2p listen on every interface (":port"); the config file binds it to the host.
        GeneratedFile::public("config.toml", listen_toml(host, ports.p2p)),
        GeneratedFile::secret("nodekey", node.key.secret_hex()),
    ];
    let mut init = CommandSpec::new("geth");
    init.args(["init", "--datadir", &node.data_dir(), &node.path("genesis.json")]);
    init.env("PRIVATE_CONFIG", "ignore");

    let apis = match consensus {
        Consensus::Ibft | Consensus::Qbft => "eth,net,web3,txpool,admin,istanbul",
        Consensus::Raft => "eth,net,web3,txpool,admin,raft",
        _ => "eth,net,web3,txpool,admin,clique",
    };
    let gas_limit = plan.settings.gas_limit.to_string();
    let mut command = CommandSpec::new("geth");
    // Without a privacy manager GoQuorum must be told to run without one.
    command.env("PRIVATE_CONFIG", "ignore");
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
        "--nodiscover".to_string(),
        "--nat".to_string(),
        "none".to_string(),
        "--ipcdisable".to_string(),
        "--http".to_string(),
        "--http.addr".to_string(),
        host.to_string(),
        "--http.port".to_string(),
        ports.rpc.to_string(),
        "--http.api".to_string(),
        apis.to_string(),
        "--http.vhosts".to_string(),
        "*".to_string(),
        // geth 1.10: gaslimit is the ceiling, gastarget the floor the miner aims for.
        "--miner.gaslimit".to_string(),
        gas_limit.clone(),
        "--miner.gastarget".to_string(),
        gas_limit,
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
            apis.to_string(),
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
    match consensus {
        Consensus::Raft => {
            command.args([
                "--raft".to_string(),
                "--raftport".to_string(),
                ports.raft.unwrap_or_default().to_string(),
                "--raftblocktime".to_string(),
                plan.block_time_millis().to_string(),
                "--emitcheckpoints".to_string(),
            ]);
        }
        Consensus::Ibft | Consensus::Qbft if node.is_validator() => {
            // Block period and request timeout come from the genesis `ibft`/`qbft` section.
            command.args([
                "--mine",
                "--miner.threads",
                "1",
                "--miner.gasprice",
                "0",
                "--emitcheckpoints",
            ]);
        }
        Consensus::Clique if node.is_validator() => {
            let keystore = Keystore::encrypt(&node.key, &node.password, &plan.source, node.slot.index as u32)?;
            files.push(GeneratedFile::secret(
                format!("keystore/{}", keystore.file_name()),
                keystore.to_json()?,
            ));
            files.push(GeneratedFile::secret("password.txt", node.password.clone()));
            let address = node.key.address().to_checksum(None);
            command.args([
                "--mine".to_string(),
                "--miner.threads".to_string(),
                "1".to_string(),
                "--miner.etherbase".to_string(),
                address.clone(),
                "--unlock".to_string(),
                address,
                "--password".to_string(),
                node.path("password.txt"),
                "--allow-insecure-unlock".to_string(),
            ]);
        }
        _ => {}
    }
    Ok(NodeOutput {
        files,
        init: vec![init],
        command,
    })
}
