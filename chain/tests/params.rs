//! Each spec parameter lands in the field or flag the client reads, for every
//! client x consensus pair (chains.md sections 2.1-2.7).

mod common;

use std::time::Duration;

use chain::{generate, Client, CommandSpec, Consensus, GeneratedNetwork, NetworkSpec, SpecDuration};
use common::{at, params_for};
use serde_json::Value;

const GAS: u64 = 12_345_678;
const CHAIN_ID: u64 = 4242;
const EPOCH: u64 = 1234;

fn network(client: Client, consensus: Consensus, block_time: SpecDuration) -> (GeneratedNetwork, Value) {
    let mut spec = NetworkSpec::new("params", client, consensus, 3);
    spec.block_time = Some(block_time);
    spec.gas_limit = Some(GAS);
    spec.chain_id = Some(CHAIN_ID);
    spec.key_seed = Some("params".into());
    if consensus.has_epoch() {
        spec.epoch = Some(EPOCH);
    }
    if consensus.is_bft() {
        spec.request_timeout = Some(SpecDuration::from_secs(7));
    }
    let params = params_for(&spec, false);
    let generated = generate(&spec, &params).unwrap_or_else(|e| panic!("{client} {consensus}: {e}"));
    let genesis: Value = generated
        .genesis_json
        .as_deref()
        .map(|text| serde_json::from_str(text).unwrap())
        .unwrap_or(Value::Null);
    (generated, genesis)
}

fn flag<'a>(command: &'a CommandSpec, name: &str) -> &'a str {
    command
        .flag_value(name)
        .unwrap_or_else(|| panic!("flag {name} missing from {:?}", command.args))
}

fn assert_each_node(net: &GeneratedNetwork, check: impl Fn(&CommandSpec)) {
    for node in &net.nodes {
        check(&node.command);
    }
}

#[test]
fn geth_clique() {
    let (net, genesis) = network(Client::Geth, Consensus::Clique, SpecDuration::from_secs(3));
    assert_eq!(at(&genesis, "config/clique/period"), 3);
    assert_eq!(at(&genesis, "config/clique/epoch"), EPOCH);
    assert_eq!(at(&genesis, "config/chainId"), CHAIN_ID);
    assert_eq!(at(&genesis, "gasLimit"), "0xbc614e");
    assert!(genesis["config"].get("terminalTotalDifficulty").is_none());
    assert!(genesis["config"].get("shanghaiTime").is_none());
    assert_each_node(&net, |c| {
        assert_eq!(flag(c, "--miner.gaslimit"), GAS.to_string());
        assert_eq!(flag(c, "--networkid"), CHAIN_ID.to_string());
    });
}

#[test]
fn quorum_ibft() {
    let (net, genesis) = network(Client::Quorum, Consensus::Ibft, SpecDuration::from_secs(3));
    assert_eq!(at(&genesis, "config/ibft/blockperiodseconds"), 3);
    assert_eq!(at(&genesis, "config/ibft/epochlength"), EPOCH);
    assert_eq!(at(&genesis, "config/ibft/requesttimeoutseconds"), 7);
    assert_eq!(at(&genesis, "config/chainId"), CHAIN_ID);
    assert_eq!(at(&genesis, "config/isQuorum"), true);
    assert_eq!(at(&genesis, "gasLimit"), "0xbc614e");
    assert_eq!(at(&genesis, "mixHash"), chain::ISTANBUL_MIX_HASH);
    assert_each_node(&net, |c| {
        assert_eq!(flag(c, "--miner.gaslimit"), GAS.to_string());
        assert_eq!(flag(c, "--networkid"), CHAIN_ID.to_string());
        assert!(c.env.contains(&("PRIVATE_CONFIG".into(), "ignore".into())));
    });
}

#[test]
fn quorum_qbft() {
    let (net, genesis) = network(Client::Quorum, Consensus::Qbft, SpecDuration::from_secs(4));
    assert_eq!(at(&genesis, "config/qbft/blockperiodseconds"), 4);
    assert_eq!(at(&genesis, "config/qbft/epochlength"), EPOCH);
    assert_eq!(at(&genesis, "config/qbft/requesttimeoutseconds"), 7);
    assert_eq!(at(&genesis, "config/chainId"), CHAIN_ID);
    assert_eq!(at(&genesis, "gasLimit"), "0xbc614e");
    assert_each_node(&net, |c| {
        assert_eq!(flag(c, "--miner.gaslimit"), GAS.to_string());
        assert!(c.has_flag("--mine"));
    });
}

#[test]
fn quorum_raft_block_time_is_milliseconds() {
    let (net, genesis) = network(Client::Quorum, Consensus::Raft, SpecDuration::from_millis(300));
    assert!(genesis["config"].get("clique").is_none());
    assert!(genesis["config"].get("ibft").is_none());
    assert_eq!(at(&genesis, "difficulty"), "0x0");
    assert_eq!(
        at(&genesis, "extraData").as_str(),
        Some(format!("0x{}", "00".repeat(32)).as_str())
    );
    assert_eq!(at(&genesis, "config/chainId"), CHAIN_ID);
    assert_eq!(at(&genesis, "gasLimit"), "0xbc614e");
    assert_each_node(&net, |c| {
        assert!(c.has_flag("--raft"));
        assert_eq!(flag(c, "--raftblocktime"), "300");
        assert_eq!(flag(c, "--miner.gaslimit"), GAS.to_string());
        assert!(!c.has_flag("--mine"), "raft mints without --mine");
    });
    for (node, port) in net.nodes.iter().zip([31_003, 31_013, 31_023]) {
        assert_eq!(flag(&node.command, "--raftport"), port.to_string());
    }
}

#[test]
fn quorum_clique() {
    let (net, genesis) = network(Client::Quorum, Consensus::Clique, SpecDuration::from_secs(2));
    assert_eq!(at(&genesis, "config/clique/period"), 2);
    assert_eq!(at(&genesis, "config/clique/epoch"), EPOCH);
    assert_eq!(at(&genesis, "config/chainId"), CHAIN_ID);
    assert_eq!(at(&genesis, "gasLimit"), "0xbc614e");
    assert_each_node(&net, |c| {
        assert!(c.has_flag("--unlock"));
        assert_eq!(flag(c, "--miner.gaslimit"), GAS.to_string());
    });
}

#[test]
fn besu_ibft2() {
    let (net, genesis) = network(Client::Besu, Consensus::Ibft2, SpecDuration::from_secs(3));
    assert_eq!(at(&genesis, "config/ibft2/blockperiodseconds"), 3);
    assert_eq!(at(&genesis, "config/ibft2/epochlength"), EPOCH);
    assert_eq!(at(&genesis, "config/ibft2/requesttimeoutseconds"), 7);
    assert_eq!(at(&genesis, "config/chainId"), CHAIN_ID);
    assert_eq!(at(&genesis, "gasLimit"), "0xbc614e");
    assert_eq!(at(&genesis, "mixHash"), chain::ISTANBUL_MIX_HASH);
    assert_each_node(&net, |c| {
        assert_eq!(flag(c, "--target-gas-limit"), GAS.to_string());
        assert_eq!(flag(c, "--network-id"), CHAIN_ID.to_string());
        assert!(flag(c, "--rpc-http-api").contains("IBFT"));
    });
}

#[test]
fn besu_qbft() {
    let (net, genesis) = network(Client::Besu, Consensus::Qbft, SpecDuration::from_secs(3));
    assert_eq!(at(&genesis, "config/qbft/blockperiodseconds"), 3);
    assert_eq!(at(&genesis, "config/qbft/epochlength"), EPOCH);
    assert_eq!(at(&genesis, "config/qbft/requesttimeoutseconds"), 7);
    assert_eq!(at(&genesis, "gasLimit"), "0xbc614e");
    assert_each_node(&net, |c| assert_eq!(flag(c, "--target-gas-limit"), GAS.to_string()));
}

#[test]
fn besu_clique() {
    let (net, genesis) = network(Client::Besu, Consensus::Clique, SpecDuration::from_secs(6));
    assert_eq!(at(&genesis, "config/clique/blockperiodseconds"), 6);
    assert_eq!(at(&genesis, "config/clique/epochlength"), EPOCH);
    assert_eq!(at(&genesis, "config/chainId"), CHAIN_ID);
    assert_eq!(at(&genesis, "gasLimit"), "0xbc614e");
    assert_each_node(&net, |c| assert_eq!(flag(c, "--target-gas-limit"), GAS.to_string()));
}

#[test]
fn openethereum_aura() {
    let (net, spec) = network(Client::Openethereum, Consensus::Aura, SpecDuration::from_secs(5));
    let params = at(&spec, "engine/authorityRound/params");
    assert_eq!(params["stepDuration"], 5);
    let list = params["validators"]["list"].as_array().unwrap();
    let expected: Vec<String> = net.validators.iter().map(|a| format!("{a:#x}")).collect();
    let listed: Vec<String> = list.iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(listed, expected);
    assert_eq!(at(&spec, "params/chainID"), "0x1092");
    assert_eq!(at(&spec, "params/networkID"), "0x1092");
    assert_eq!(at(&spec, "params/minGasLimit"), "0x1388");
    assert_eq!(at(&spec, "genesis/gasLimit"), "0xbc614e");
    assert_eq!(
        at(&spec, "genesis/seal/authorityRound/signature").as_str(),
        Some(format!("0x{}", "00".repeat(65)).as_str())
    );
    assert_each_node(&net, |c| {
        assert_eq!(flag(c, "--gas-floor-target"), GAS.to_string());
        assert_eq!(flag(c, "--gas-cap"), GAS.to_string());
    });
}

#[test]
fn openethereum_clique() {
    let (net, spec) = network(Client::Openethereum, Consensus::Clique, SpecDuration::from_secs(4));
    assert_eq!(at(&spec, "engine/clique/params/period"), 4);
    assert_eq!(at(&spec, "engine/clique/params/epoch"), EPOCH);
    assert_eq!(at(&spec, "params/chainID"), "0x1092");
    assert_eq!(at(&spec, "genesis/gasLimit"), "0xbc614e");
    let extra = at(&spec, "genesis/extraData").as_str().unwrap();
    assert_eq!(extra.len(), 2 + 2 * (32 + 3 * 20 + 65));
    assert_each_node(&net, |c| assert_eq!(flag(c, "--gas-floor-target"), GAS.to_string()));
}

#[test]
fn anvil_interval() {
    let (net, genesis) = network(Client::Anvil, Consensus::Interval, SpecDuration::from_millis(1500));
    assert!(genesis.is_null(), "no prefunding, so no --init genesis");
    assert_each_node(&net, |c| {
        assert_eq!(flag(c, "--block-time"), "1.5");
        assert_eq!(flag(c, "--gas-limit"), GAS.to_string());
        assert_eq!(flag(c, "--chain-id"), CHAIN_ID.to_string());
        assert!(!c.has_flag("--init"));
    });
}

#[test]
fn anvil_instant_has_no_block_time() {
    let mut spec = NetworkSpec::new("instant", Client::Anvil, Consensus::Instant, 1);
    spec.chain_id = Some(CHAIN_ID);
    let net = generate(&spec, &params_for(&spec, false)).unwrap();
    assert!(!net.nodes[0].command.has_flag("--block-time"));
    assert_eq!(flag(&net.nodes[0].command, "--chain-id"), CHAIN_ID.to_string());
    assert_eq!(net.settings.block_time, None::<Duration>);
}

#[test]
fn every_pair_is_covered_above() {
    // Keeps this file honest when a pair is added to Client::supported_consensus.
    let covered = [
        (Client::Geth, Consensus::Clique),
        (Client::Quorum, Consensus::Ibft),
        (Client::Quorum, Consensus::Qbft),
        (Client::Quorum, Consensus::Raft),
        (Client::Quorum, Consensus::Clique),
        (Client::Besu, Consensus::Ibft2),
        (Client::Besu, Consensus::Qbft),
        (Client::Besu, Consensus::Clique),
        (Client::Openethereum, Consensus::Aura),
        (Client::Openethereum, Consensus::Clique),
        (Client::Anvil, Consensus::Interval),
        (Client::Anvil, Consensus::Instant),
    ];
    let all: Vec<(Client, Consensus)> = Client::ALL
        .iter()
        .flat_map(|c| c.supported_consensus().iter().map(move |k| (*c, *k)))
        .collect();
    assert_eq!(all.len(), covered.len());
    for pair in all {
        assert!(covered.contains(&pair), "{pair:?} has no parameter test");
    }
}
