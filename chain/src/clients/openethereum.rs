//! OpenEthereum 3.3.5 (last release): Authority Round and Clique chain specs.

use serde_json::{json, Map, Value};

use super::{ZERO_ADDRESS, ZERO_HASH};
use crate::error::Result;
use crate::extradata::SEAL_LEN;
use crate::keystore::Keystore;
use crate::output::{CommandSpec, GeneratedFile};
use crate::plan::{bare_address, hex_data, quantity, ClientOutput, NodeOutput, Plan, PlannedNode};
use crate::spec::{Consensus, MIN_GAS_LIMIT};

/// EIPs activated at block 0: Byzantium, Constantinople/Petersburg and Istanbul
/// (as in OpenEthereum's goerli.json, without the net-gas-metering toggles).
const TRANSITIONS: &[&str] = &[
    "eip140Transition",
    "eip145Transition",
    "eip150Transition",
    "eip155Transition",
    "eip160Transition",
    "eip161abcTransition",
    "eip161dTransition",
    "eip211Transition",
    "eip214Transition",
    "eip658Transition",
    "eip1014Transition",
    "eip1052Transition",
    "eip1344Transition",
    "eip1884Transition",
    "eip2028Transition",
];

pub(crate) fn build(plan: &Plan<'_>) -> Result<ClientOutput> {
    let consensus = plan.spec.consensus;
    let validators: Vec<String> = plan
        .validators
        .iter()
        .map(|a| format!("0x{}", bare_address(a)))
        .collect();
    let (engine, seal, extra_data, max_extra) = if consensus == Consensus::Aura {
        (
            json!({ "authorityRound": { "params": {
                "stepDuration": plan.block_time_secs(),
                "validators": { "list": validators },
            } } }),
            json!({ "authorityRound": { "step": "0x0", "signature": hex_data(&[0u8; SEAL_LEN]) } }),
            None,
            "0x20",
        )
    } else {
        let extra = plan.extra_data();
        (
            json!({ "clique": { "params": {
                "period": plan.block_time_secs(),
                "epoch": plan.epoch(),
            } } }),
            json!({ "ethereum": { "nonce": "0x0000000000000000", "mixHash": ZERO_HASH } }),
            extra,
            // Clique's extraData grows with the signer list (goerli.json uses 0xffff).
            "0xffff",
        )
    };
    let mut params = Map::new();
    params.insert("accountStartNonce".into(), json!("0x0"));
    params.insert("chainID".into(), json!(quantity(plan.settings.chain_id)));
    params.insert("networkID".into(), json!(quantity(plan.settings.chain_id)));
    params.insert("gasLimitBoundDivisor".into(), json!("0x400"));
    params.insert("minGasLimit".into(), json!(quantity(MIN_GAS_LIMIT)));
    params.insert("maximumExtraDataSize".into(), json!(max_extra));
    params.insert("maxCodeSize".into(), json!("0x6000"));
    params.insert("maxCodeSizeTransition".into(), json!("0x0"));
    for transition in TRANSITIONS {
        params.insert((*transition).to_string(), json!("0x0"));
    }
    let mut genesis = Map::new();
    genesis.insert("seal".into(), seal);
    genesis.insert(
        "difficulty".into(),
        json!(if consensus == Consensus::Aura { "0x20000" } else { "0x1" }),
    );
    genesis.insert("author".into(), json!(ZERO_ADDRESS));
    genesis.insert("timestamp".into(), json!("0x0"));
    genesis.insert("parentHash".into(), json!(ZERO_HASH));
    genesis.insert("gasLimit".into(), json!(quantity(plan.settings.gas_limit)));
    if let Some(extra) = &extra_data {
        genesis.insert("extraData".into(), json!(hex_data(extra)));
    }
    let spec = json!({
        "name": plan.spec.name,
        // Keys are looked up in <base-path>/keys/<dataDir>/.
        "dataDir": plan.spec.name,
        "engine": engine,
        "params": params,
        "genesis": genesis,
        "accounts": accounts(plan),
    });
    let mut nodes = Vec::with_capacity(plan.nodes.len());
    for (index, node) in plan.nodes.iter().enumerate() {
        nodes.push(node_output(plan, index, node)?);
    }
    Ok(ClientOutput {
        genesis: Some(spec),
        genesis_file: Some("spec.json"),
        extra_data,
        nodes,
    })
}

/// Precompiles (OpenEthereum only has the builtins a spec declares) plus prefunded accounts.
fn accounts(plan: &Plan<'_>) -> Value {
    let linear = |name: &str, base: u64, word: u64| {
        json!({ "balance": "0x1", "builtin": { "name": name,
            "pricing": { "linear": { "base": base, "word": word } } } })
    };
    let mut accounts = Map::new();
    accounts.insert(precompile(1), linear("ecrecover", 3000, 0));
    accounts.insert(precompile(2), linear("sha256", 60, 12));
    accounts.insert(precompile(3), linear("ripemd160", 600, 120));
    accounts.insert(precompile(4), linear("identity", 15, 3));
    accounts.insert(
        precompile(5),
        json!({ "balance": "0x1", "builtin": { "name": "modexp",
            "pricing": { "0": { "price": { "modexp": { "divisor": 20 } } } } } }),
    );
    // Istanbul (EIP-1108) prices from block 0.
    accounts.insert(
        precompile(6),
        json!({ "balance": "0x1", "builtin": { "name": "alt_bn128_add",
            "pricing": { "0": { "price": { "alt_bn128_const_operations": { "price": 150 } } } } } }),
    );
    accounts.insert(
        precompile(7),
        json!({ "balance": "0x1", "builtin": { "name": "alt_bn128_mul",
            "pricing": { "0": { "price": { "alt_bn128_const_operations": { "price": 6000 } } } } } }),
    );
    accounts.insert(
        precompile(8),
        json!({ "balance": "0x1", "builtin": { "name": "alt_bn128_pairing",
            "pricing": { "0": { "price": { "alt_bn128_pairing": { "base": 45000, "pair": 34000 } } } } } }),
    );
    accounts.insert(
        precompile(9),
        json!({ "balance": "0x1", "builtin": { "name": "blake2_f", "activate_at": "0x0",
            "pricing": { "blake2_f": { "gas_per_round": 1 } } } }),
    );
    for (address, balance) in plan.alloc() {
        accounts.insert(
            format!("0x{}", bare_address(&address)),
            json!({ "balance": balance.to_hex() }),
        );
    }
    Value::Object(accounts)
}

fn precompile(n: u8) -> String {
    format!("0x{:040x}", n)
}

fn node_output(plan: &Plan<'_>, index: usize, node: &PlannedNode<'_>) -> Result<NodeOutput> {
    // OpenEthereum parses reserved peers as plain enodes, one per line, no query string.
    let peers: Vec<String> = plan
        .nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != index)
        .map(|(_, n)| {
            let (host, port) = n.params.peer_endpoint();
            n.key.enode_plain(host, port)
        })
        .collect();
    let mut reserved = peers.join("\n");
    reserved.push('\n');
    let mut files = vec![GeneratedFile::public("reserved-peers.txt", reserved)];
    let ports = node.params.ports;
    let host = node.params.host.as_str();
    let apis = "web3,eth,net,parity,personal";
    let gas_limit = plan.settings.gas_limit.to_string();
    let mut command = CommandSpec::new("openethereum");
    command.args([
        "--chain".to_string(),
        node.path("spec.json"),
        "--base-path".to_string(),
        node.data_dir(),
        "--port".to_string(),
        ports.p2p.to_string(),
        "--nat".to_string(),
        "none".to_string(),
        "--no-discovery".to_string(),
        "--reserved-peers".to_string(),
        node.path("reserved-peers.txt"),
        "--reserved-only".to_string(),
        // OpenEthereum has no node key file flag; the key is a throwaway test key.
        "--node-key".to_string(),
        node.key.secret_hex(),
        "--no-ipc".to_string(),
        "--jsonrpc-interface".to_string(),
        host.to_string(),
        "--jsonrpc-port".to_string(),
        ports.rpc.to_string(),
        "--jsonrpc-apis".to_string(),
        apis.to_string(),
        "--jsonrpc-hosts".to_string(),
        "all".to_string(),
        "--min-gas-price".to_string(),
        "0".to_string(),
        "--gas-floor-target".to_string(),
        gas_limit.clone(),
        "--gas-cap".to_string(),
        gas_limit,
    ]);
    match ports.ws {
        Some(ws) => command.args([
            "--ws-interface".to_string(),
            host.to_string(),
            "--ws-port".to_string(),
            ws.to_string(),
            "--ws-apis".to_string(),
            apis.to_string(),
            "--ws-hosts".to_string(),
            "all".to_string(),
            "--ws-origins".to_string(),
            "all".to_string(),
        ]),
        None => command.args(["--no-ws"]),
    };
    if let Some(metrics) = ports.metrics {
        command.args([
            "--metrics".to_string(),
            "--metrics-interface".to_string(),
            host.to_string(),
            "--metrics-port".to_string(),
            metrics.to_string(),
        ]);
    }
    if node.is_validator() {
        let keystore = Keystore::encrypt(&node.key, &node.password, &plan.source, node.slot.index as u32)?;
        files.push(GeneratedFile::secret(
            format!("keys/{}/{}", plan.spec.name, keystore.file_name()),
            keystore.to_json()?,
        ));
        files.push(GeneratedFile::secret("password.txt", node.password.clone()));
        command.args([
            "--engine-signer".to_string(),
            node.key.address().to_checksum(None),
            "--password".to_string(),
            node.path("password.txt"),
            "--force-sealing".to_string(),
        ]);
    }
    Ok(NodeOutput {
        files,
        init: Vec::new(),
        command,
    })
}
