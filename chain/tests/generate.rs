//! Whole-network generation: files, commands, peers and keys for each client.

mod common;

use std::path::PathBuf;

use chain::extradata::{decode_validators, ExtraDataFormat};
use chain::{
    extra_data_format, generate, generate_with_keys, Address, Balance, Client, Consensus, Error, GeneratedNetwork,
    Keystore, NetworkSpec, NodeKey, NodeParams, NodePorts, Role,
};
use common::{at, params_for};
use serde_json::Value;

fn seeded(client: Client, consensus: Consensus, nodes: u32, members: u32) -> NetworkSpec {
    let mut spec = NetworkSpec::new("testnet", client, consensus, nodes);
    spec.members = members;
    spec.key_seed = Some("golden".into());
    spec
}

fn text(net: &GeneratedNetwork, node: usize, path: &str) -> String {
    let file = net.nodes[node]
        .file(path)
        .unwrap_or_else(|| panic!("{} has no {path}", net.nodes[node].name));
    String::from_utf8(file.contents.clone()).unwrap()
}

fn golden_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

/// Compares with a golden file; `UPDATE_GOLDEN=1` rewrites it (review the diff!).
fn assert_golden(name: &str, actual: &str) {
    let path = golden_path(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1 to create)", path.display()));
    assert_eq!(
        actual, expected,
        "{name} changed; rerun with UPDATE_GOLDEN=1 if intended"
    );
}

#[test]
fn geth_clique_four_signers_golden_genesis_and_command() {
    let mut spec = seeded(Client::Geth, Consensus::Clique, 4, 0);
    spec.block_time = Some(chain::SpecDuration::from_secs(2));
    spec.gas_limit = Some(30_000_000);
    spec.node_balance = Some(Balance::parse("1000000000000000000000").unwrap());
    let net = generate(&spec, &params_for(&spec, true)).unwrap();
    let genesis = net.genesis_json.clone().unwrap();
    assert_golden("geth-clique-4.genesis.json", &format!("{genesis}\n"));
    let command = serde_json::to_string_pretty(&net.nodes[0].command).unwrap();
    assert_golden("geth-clique-4.validator-1.command.json", &format!("{command}\n"));
}

#[test]
fn geth_clique_signers_are_in_extra_data_and_unlocked() {
    let spec = seeded(Client::Geth, Consensus::Clique, 3, 1);
    let net = generate(&spec, &params_for(&spec, false)).unwrap();
    let genesis: Value = serde_json::from_str(net.genesis_json.as_deref().unwrap()).unwrap();
    let extra = chain::Bytes::from(
        (2..genesis["extraData"].as_str().unwrap().len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&genesis["extraData"].as_str().unwrap()[i..i + 2], 16).unwrap())
            .collect::<Vec<u8>>(),
    );
    assert_eq!(Some(&extra), net.extra_data.as_ref());
    let signers = decode_validators(ExtraDataFormat::Clique, &extra).unwrap();
    let mut expected: Vec<Address> = net
        .nodes
        .iter()
        .filter(|n| n.role == Role::Validator)
        .map(|n| n.address)
        .collect();
    expected.sort();
    assert_eq!(signers, expected);
    assert_eq!(net.validators, expected);
    let member = &net.nodes[3];
    assert_eq!(member.role, Role::Member);
    assert!(!signers.contains(&member.address));

    for node in &net.nodes {
        let c = &node.command;
        assert_eq!(c.program, "geth");
        for flag in ["--nodiscover", "--http", "--ipcdisable"] {
            assert!(c.has_flag(flag), "{}: {flag}", node.name);
        }
        assert_eq!(c.flag_value("--syncmode"), Some("full"));
        assert_eq!(c.flag_value("--http.addr"), Some("127.0.0.1"));
        assert_eq!(c.flag_value("--http.port"), Some(node.ports.rpc.to_string().as_str()));
        let apis = c.flag_value("--http.api").unwrap();
        for api in ["eth", "net", "web3", "txpool", "clique"] {
            assert!(apis.split(',').any(|a| a == api), "{apis} lacks {api}");
        }
        // p2p listens on the node's host only: ListenAddr in config.toml, never `--port` (":port" = all interfaces).
        assert!(!c.has_flag("--port"), "{}", node.name);
        let toml = text(&net, node.index, "config.toml");
        assert!(
            toml.contains(&format!("ListenAddr = \"127.0.0.1:{}\"", node.ports.p2p)),
            "{toml}"
        );
        assert_eq!(
            c.flag_value("--authrpc.port"),
            Some(node.ports.authrpc.unwrap().to_string().as_str())
        );
        assert_eq!(c.flag_value("--datadir"), Some(node.data_dir.to_str().unwrap()));
        assert_eq!(node.init.len(), 1);
        assert_eq!(
            node.init[0].args,
            vec![
                "init".to_string(),
                "--datadir".to_string(),
                node.data_dir.display().to_string(),
                node.data_dir.join("genesis.json").display().to_string(),
            ]
        );
        // Every flag value that is a path points inside the node's own data dir.
        for flag in ["--config", "--nodekey"] {
            let path = PathBuf::from(c.flag_value(flag).unwrap());
            assert!(path.starts_with(&node.data_dir), "{flag} {path:?}");
            let rel = path.strip_prefix(&node.data_dir).unwrap().to_str().unwrap();
            assert!(node.file(rel).is_some(), "{flag} points at ungenerated {rel}");
        }
        assert_eq!(text(&net, node.index, "nodekey"), node.key.secret_hex());
        assert!(node.file("nodekey").unwrap().secret);
        assert_eq!(
            text(&net, node.index, "genesis.json"),
            net.genesis_json.clone().unwrap()
        );
    }

    for node in net.nodes.iter().filter(|n| n.role == Role::Validator) {
        let c = &node.command;
        let address = node.address.to_checksum(None);
        assert_eq!(c.flag_value("--unlock"), Some(address.as_str()));
        assert_eq!(c.flag_value("--miner.etherbase"), Some(address.as_str()));
        assert!(c.has_flag("--mine") && c.has_flag("--allow-insecure-unlock"));
        let password = text(&net, node.index, "password.txt");
        assert_eq!(
            PathBuf::from(c.flag_value("--password").unwrap()),
            node.data_dir.join("password.txt")
        );
        let keystore_file = node
            .files
            .iter()
            .find(|f| f.path.starts_with("keystore"))
            .expect("validator has a keystore");
        assert!(keystore_file.secret);
        let keystore: Keystore = serde_json::from_slice(&keystore_file.contents).unwrap();
        assert_eq!(keystore.decrypt(&password).unwrap(), node.key);
    }
    for flag in ["--mine", "--unlock", "--password", "--miner.etherbase"] {
        assert!(!member.command.has_flag(flag), "member has {flag}");
    }
    assert!(member.files.iter().all(|f| !f.path.starts_with("keystore")));
}

#[test]
fn geth_static_peers_are_every_other_node_in_config_toml() {
    let spec = seeded(Client::Geth, Consensus::Clique, 3, 1);
    let net = generate(&spec, &params_for(&spec, false)).unwrap();
    assert_eq!(net.static_nodes.len(), 4);
    for node in &net.nodes {
        let toml = text(&net, node.index, "config.toml");
        assert!(toml.starts_with("[Node.P2P]\nListenAddr = \"127.0.0.1:"), "{toml}");
        let peers = toml
            .split_once("StaticNodes = [")
            .map(|(_, rest)| rest)
            .unwrap_or_default();
        let listed: Vec<&str> = peers.split('"').skip(1).step_by(2).collect();
        let expected: Vec<&str> = net
            .static_nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != node.index)
            .map(|(_, e)| e.as_str())
            .collect();
        assert_eq!(listed, expected, "{}", node.name);
        let own = node.enode.as_deref().unwrap();
        assert_eq!(
            own,
            format!("enode://{}@127.0.0.1:{}?discport=0", node.key.node_id(), node.ports.p2p)
        );
        assert!(!toml.contains(own));
    }
}

#[test]
fn urls_follow_the_ports() {
    let spec = seeded(Client::Geth, Consensus::Clique, 1, 0);
    let net = generate(&spec, &params_for(&spec, true)).unwrap();
    let node = &net.nodes[0];
    assert_eq!(node.rpc_url, "http://127.0.0.1:31001");
    assert_eq!(node.ws_url.as_deref(), Some("ws://127.0.0.1:31004"));
    assert_eq!(
        node.metrics_url.as_deref(),
        Some("http://127.0.0.1:31005/debug/metrics/prometheus")
    );
    assert_eq!(node.command.flag_value("--ws.port"), Some("31004"));
    assert_eq!(node.command.flag_value("--metrics.port"), Some("31005"));
}

#[test]
fn seeded_generation_is_deterministic_and_random_is_not() {
    let spec = seeded(Client::Besu, Consensus::Qbft, 4, 0);
    let params = params_for(&spec, false);
    let a = generate(&spec, &params).unwrap();
    let b = generate(&spec, &params).unwrap();
    assert_eq!(a.genesis_json, b.genesis_json);
    assert_eq!(a.static_nodes, b.static_nodes);
    for (x, y) in a.nodes.iter().zip(&b.nodes) {
        assert_eq!(x.files, y.files);
        assert_eq!(x.command, y.command);
    }
    let mut random = spec.clone();
    random.key_seed = None;
    let r1 = generate(&random, &params).unwrap();
    let r2 = generate(&random, &params).unwrap();
    assert_ne!(r1.nodes[0].address, r2.nodes[0].address);
    assert_ne!(r1.genesis_json, r2.genesis_json);
}

#[test]
fn bft_extra_data_holds_the_sorted_validators_only() {
    for (client, consensus) in [
        (Client::Quorum, Consensus::Ibft),
        (Client::Quorum, Consensus::Qbft),
        (Client::Besu, Consensus::Ibft2),
        (Client::Besu, Consensus::Qbft),
        (Client::Besu, Consensus::Clique),
        (Client::Quorum, Consensus::Clique),
    ] {
        let spec = seeded(client, consensus, 4, 2);
        let net = generate(&spec, &params_for(&spec, false)).unwrap();
        let format = extra_data_format(client, consensus).unwrap();
        let decoded = decode_validators(format, net.extra_data.as_ref().unwrap()).unwrap();
        let mut validators: Vec<Address> = net.nodes[..4].iter().map(|n| n.address).collect();
        validators.sort();
        assert_eq!(decoded, validators, "{client} {consensus}");
        assert_eq!(net.nodes.iter().filter(|n| n.role == Role::Member).count(), 2);
    }
}

#[test]
fn quorum_static_nodes_list_everyone_with_raft_ports() {
    let spec = seeded(Client::Quorum, Consensus::Raft, 3, 0);
    let net = generate(&spec, &params_for(&spec, false)).unwrap();
    for node in &net.nodes {
        let listed: Vec<String> = serde_json::from_str(&text(&net, node.index, "geth/static-nodes.json")).unwrap();
        assert_eq!(listed.len(), 3, "raft peers include the node itself");
        for (i, enode) in listed.iter().enumerate() {
            assert_eq!(
                enode,
                &format!("{}&raftport={}", net.static_nodes[i], net.nodes[i].ports.raft.unwrap())
            );
        }
        assert_eq!(
            node.command.flag_value("--nodekey"),
            Some(node.data_dir.join("nodekey").to_str().unwrap())
        );
        assert_eq!(
            node.init[0].env,
            vec![("PRIVATE_CONFIG".to_string(), "ignore".to_string())]
        );
    }
}

#[test]
fn quorum_ibft_validators_mine_and_members_do_not() {
    let spec = seeded(Client::Quorum, Consensus::Ibft, 4, 1);
    let net = generate(&spec, &params_for(&spec, false)).unwrap();
    for node in &net.nodes {
        assert_eq!(
            node.command.has_flag("--mine"),
            node.role == Role::Validator,
            "{}",
            node.name
        );
        assert_eq!(
            node.command.flag_value("--http.api"),
            Some("eth,net,web3,txpool,admin,istanbul")
        );
    }
}

#[test]
fn besu_files_and_flags() {
    let spec = seeded(Client::Besu, Consensus::Ibft2, 4, 0);
    let net = generate(&spec, &params_for(&spec, true)).unwrap();
    for node in &net.nodes {
        let c = &node.command;
        assert_eq!(c.program, "besu");
        assert!(node.init.is_empty());
        assert_eq!(c.flag_value("--discovery-enabled"), Some("false"));
        assert_eq!(c.flag_value("--p2p-port"), Some(node.ports.p2p.to_string().as_str()));
        assert_eq!(
            c.flag_value("--rpc-http-port"),
            Some(node.ports.rpc.to_string().as_str())
        );
        assert_eq!(
            c.flag_value("--rpc-ws-port"),
            Some(node.ports.ws.unwrap().to_string().as_str())
        );
        assert_eq!(
            c.flag_value("--metrics-port"),
            Some(node.ports.metrics.unwrap().to_string().as_str())
        );
        assert_eq!(text(&net, node.index, "key"), format!("0x{}", node.key.secret_hex()));
        let peers: Vec<String> = serde_json::from_str(&text(&net, node.index, "static-nodes.json")).unwrap();
        assert_eq!(peers.len(), 3);
        assert!(!peers.contains(node.enode.as_ref().unwrap()));
        assert_eq!(node.metrics_url.as_deref().map(|u| u.ends_with("/metrics")), Some(true));
    }
}

#[test]
fn openethereum_signers_and_reserved_peers() {
    let spec = seeded(Client::Openethereum, Consensus::Aura, 3, 1);
    let net = generate(&spec, &params_for(&spec, false)).unwrap();
    assert_eq!(net.genesis_file, Some("spec.json"));
    let chain_spec: Value = serde_json::from_str(net.genesis_json.as_deref().unwrap()).unwrap();
    assert_eq!(at(&chain_spec, "dataDir"), "testnet");
    assert_eq!(
        at(
            &chain_spec,
            "accounts/0x0000000000000000000000000000000000000001/builtin/name"
        ),
        "ecrecover"
    );
    for node in &net.nodes {
        let peers = text(&net, node.index, "reserved-peers.txt");
        let lines: Vec<&str> = peers.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.starts_with("enode://") && !l.contains('?')));
        let c = &node.command;
        assert!(c.has_flag("--no-discovery"));
        assert_eq!(c.flag_value("--node-key"), Some(node.key.secret_hex().as_str()));
        let is_validator = node.role == Role::Validator;
        assert_eq!(c.has_flag("--engine-signer"), is_validator);
        assert_eq!(c.has_flag("--force-sealing"), is_validator);
        if is_validator {
            let password = text(&net, node.index, "password.txt");
            let keystore = node
                .files
                .iter()
                .find(|f| f.path.starts_with("keys/testnet"))
                .expect("keystore under keys/<dataDir>");
            let keystore: Keystore = serde_json::from_slice(&keystore.contents).unwrap();
            assert_eq!(keystore.decrypt(&password).unwrap().address(), node.address);
        }
    }
}

#[test]
fn anvil_prefunding_uses_an_init_genesis() {
    let mut spec = seeded(Client::Anvil, Consensus::Interval, 2, 0);
    let funded: Address = "0xfe3b557e8fb62b89f4916b721be55ceb828dbd73".parse().unwrap();
    spec.accounts = vec![chain::Account {
        address: funded,
        balance: Balance::parse("0x130EE8E7179044400000").unwrap(),
    }];
    let net = generate(&spec, &params_for(&spec, false)).unwrap();
    let genesis: Value = serde_json::from_str(net.genesis_json.as_deref().unwrap()).unwrap();
    assert_eq!(
        at(&genesis, "alloc/0xfe3b557e8fb62b89f4916b721be55ceb828dbd73/balance"),
        "0x130ee8e7179044400000"
    );
    for node in &net.nodes {
        assert!(node.enode.is_none());
        assert_eq!(node.command.program, "anvil");
        assert_eq!(
            node.command.flag_value("--init"),
            Some(node.data_dir.join("genesis.json").to_str().unwrap())
        );
        assert!(node.file("genesis.json").is_some());
        assert_eq!(
            node.ws_url.as_deref(),
            Some(format!("ws://127.0.0.1:{}", node.ports.rpc).as_str())
        );
    }
    assert!(net.static_nodes.is_empty());
}

#[test]
fn alloc_funds_nodes_and_accounts_with_explicit_accounts_winning() {
    let mut spec = seeded(Client::Geth, Consensus::Clique, 2, 0);
    spec.node_balance = Some(Balance::parse("100").unwrap());
    let params = params_for(&spec, false);
    let first = generate(&spec, &params).unwrap();
    let node0 = first.nodes[0].address;
    spec.accounts = vec![chain::Account {
        address: node0,
        balance: Balance::parse("7").unwrap(),
    }];
    let net = generate(&spec, &params).unwrap();
    let genesis: Value = serde_json::from_str(net.genesis_json.as_deref().unwrap()).unwrap();
    let alloc = genesis["alloc"].as_object().unwrap();
    assert_eq!(alloc.len(), 2);
    let key0 = format!("{node0:x}").trim_start_matches("0x").to_string();
    let key1 = format!("{:x}", net.nodes[1].address)
        .trim_start_matches("0x")
        .to_string();
    assert_eq!(alloc[&key0]["balance"], "0x7");
    assert_eq!(alloc[&key1]["balance"], "0x64");
}

#[test]
fn caller_keys_are_used_as_given() {
    // quorum-dev-quickstart's well-known dev account (alloc entry with its private key).
    let key = NodeKey::from_hex("8f2a55949038a9610f50fb23b5883af3b4ecb3c3bb792cbcefbd1542c692be63").unwrap();
    assert_eq!(
        key.address(),
        "0xfe3b557e8fb62b89f4916b721be55ceb828dbd73".parse::<Address>().unwrap()
    );
    let spec = NetworkSpec::new("own", Client::Besu, Consensus::Qbft, 1);
    let net = generate_with_keys(&spec, &params_for(&spec, false), vec![key.clone()]).unwrap();
    assert_eq!(net.validators, vec![key.address()]);
    assert_eq!(net.nodes[0].key, key);
}

#[test]
fn bad_node_params_are_rejected_with_the_node_named() {
    let spec = seeded(Client::Geth, Consensus::Clique, 2, 0);
    let mut params = params_for(&spec, false);
    assert_eq!(
        generate(&spec, &params[..1]).unwrap_err(),
        Error::NodeParamsCount { expected: 2, got: 1 }
    );
    params[1].ports.authrpc = None;
    assert_eq!(
        generate(&spec, &params).unwrap_err().to_string(),
        "node `validator-2`: geth needs a `authrpc` port"
    );
    let raft = seeded(Client::Quorum, Consensus::Raft, 1, 0);
    let mut raft_params = params_for(&raft, false);
    raft_params[0].ports.raft = None;
    assert_eq!(
        generate(&raft, &raft_params).unwrap_err().to_string(),
        "node `validator-1`: quorum needs a `raft` port"
    );
    let besu = seeded(Client::Besu, Consensus::Qbft, 1, 0);
    let relative = vec![NodeParams {
        data_dir: PathBuf::from("relative/dir"),
        host: "127.0.0.1".into(),
        ports: NodePorts::new(1, 2),
        advertise: None,
    }];
    assert_eq!(
        generate(&besu, &relative).unwrap_err().to_string(),
        "invalid `data_dir`: node `validator-1`: `relative/dir` must be an absolute path"
    );
    let bad_host = vec![NodeParams {
        data_dir: PathBuf::from("/d"),
        host: "a b\"".into(),
        ports: NodePorts::new(1, 2),
        advertise: None,
    }];
    assert_eq!(
        generate(&besu, &bad_host).unwrap_err().to_string(),
        "invalid `host`: node `validator-1`: `a b\"` is not a host name or IP address"
    );
    // An invalid spec fails before any key is made.
    let invalid = NetworkSpec::new("x", Client::Geth, Consensus::Qbft, 1);
    assert!(matches!(
        generate(&invalid, &params).unwrap_err(),
        Error::UnsupportedConsensus { .. }
    ));
}
