//! The bundled token (`chain/contracts/LoadToken.sol`): its bytecode is what solc makes of its source, and the
//! token workloads (transfers, deployments, balance reads) do on a real anvil what the chain then says.
//!
//! solc is the npm package `scripts/install-node-tools.sh` installs (`DAGCTL_NODE_TOOLS`); anvil comes from
//! `DAGCTL_ANVIL` or `DAGCTL_CLIENTS_BIN`. Without them the tests fail.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{free_port, stderr, stdout, wait_for, Home};
use serde_json::{json, Value};

const DEV_KEY: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// LoadToken.bin is exactly what solc 0.8.28 (npm) compiles LoadToken.sol into, with the settings the
/// compile script pins.
#[test]
fn the_bundled_bytecode_is_what_solc_makes_of_the_source() {
    let tools = std::env::var_os("DAGCTL_NODE_TOOLS").expect(
        "DAGCTL_NODE_TOOLS must name the dir scripts/install-node-tools.sh prints (it holds solc); ./scripts/test.sh sets it",
    );
    let output = std::process::Command::new("node")
        .arg(repo().join("tests/web-harness/compile-token.cjs"))
        .arg(repo().join("chain/contracts/LoadToken.sol"))
        .env("DAGCTL_NODE_TOOLS", tools)
        .output()
        .expect("node runs");
    assert!(output.status.success(), "{}", stderr(&output));
    let compiled: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(
        compiled["version"].as_str().unwrap().starts_with("0.8.28+"),
        "{}",
        compiled["version"]
    );
    let bundled = std::fs::read_to_string(repo().join("chain/contracts/LoadToken.bin")).unwrap();
    assert_eq!(compiled["bytecode"].as_str().unwrap(), bundled.trim());
    let abi: Value =
        serde_json::from_str(&std::fs::read_to_string(repo().join("chain/contracts/LoadToken.abi.json")).unwrap())
            .unwrap();
    assert_eq!(compiled["abi"], abi);
}

fn rpc(port: u16, method: &str, params: Value) -> Option<Value> {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let (_, _, answer) = common::try_http(
        port,
        "POST",
        "/",
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    )
    .ok()?;
    serde_json::from_slice::<Value>(&answer).ok()?.get("result").cloned()
}

fn word(v: &Value) -> u128 {
    u128::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// Token transfers, deployments and balance reads on anvil: every token transfer moved one token to the
/// receiver it names, every deployment made a contract holding one token for its sender, and the totals add
/// up; all read back from the chain.
#[test]
fn token_workloads_do_what_the_chain_says() {
    let port = free_port();
    let _anvil = Stopped(
        std::process::Command::new(common::client_binary("anvil", "DAGCTL_ANVIL"))
            .args(["--port", &port.to_string(), "--block-time", "1"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(Duration::from_secs(30), "anvil", || {
        rpc(port, "eth_blockNumber", json!([]))
    });
    let home = Home::new();
    let output = home.run(&[
        "load",
        &format!("http://127.0.0.1:{port}"),
        "--rate",
        "100",
        "--duration",
        "3s",
        "--workload",
        "token_transfer=2,token_deploy=1,token_balance=1",
        "--funder-key",
        DEV_KEY,
        "--senders",
        "4",
        "--confirmations",
        "1",
        "-o",
        "json",
    ]);
    let text = stderr(&output);
    let summary: Value = serde_json::from_str(&stdout(&output)).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert!(output.status.success(), "{text}");
    assert!(text.contains("token deployed at "), "{text}");
    assert_eq!(summary["total"]["fail"], 0, "{summary}");
    assert_eq!(summary["tx"]["included"], summary["tx"]["sent"], "{summary}");
    let token = summary["tx"]["token"].as_str().unwrap().to_lowercase();
    let senders: Vec<String> = summary["tx"]["senders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_lowercase())
        .collect();
    let kinds: BTreeMap<String, u64> = summary["kinds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| (k["name"].as_str().unwrap().to_string(), k["succ"].as_u64().unwrap()))
        .collect();

    // The blocks: transfers to the token, and contracts the senders made.
    let head = word(&rpc(port, "eth_blockNumber", json!([])).unwrap()) as u64;
    let mut moved: BTreeMap<String, u128> = BTreeMap::new();
    let (mut transfers, mut deployed) = (0u64, Vec::new());
    for number in 0..=head {
        let block = rpc(port, "eth_getBlockByNumber", json!([format!("{number:#x}"), true])).unwrap();
        for t in block["transactions"].as_array().unwrap() {
            let from = t["from"].as_str().unwrap().to_lowercase();
            if !senders.contains(&from) {
                continue;
            }
            let input = t["input"].as_str().unwrap();
            let receipt = rpc(port, "eth_getTransactionReceipt", json!([t["hash"]])).unwrap();
            assert_eq!(receipt["status"], "0x1", "{t}");
            if t["to"].as_str().map(str::to_lowercase) == Some(token.clone()) {
                assert!(input.starts_with("0xa9059cbb"), "{input}");
                let to = format!("0x{}", &input[34..74]);
                *moved.entry(to).or_default() += u128::from_str_radix(&input[74..138], 16).unwrap();
                transfers += 1;
            } else if t["to"].is_null() {
                deployed.push((from, receipt["contractAddress"].as_str().unwrap().to_string()));
            }
        }
    }
    assert_eq!(transfers, kinds["token_transfer"], "{summary}");
    assert_eq!(deployed.len() as u64, kinds["token_deploy"], "{summary}");
    assert!(kinds["token_balance"] > 0);
    let balance_of = |contract: &str, owner: &str| {
        let data = format!("0x70a08231{:0>64}", owner.trim_start_matches("0x"));
        word(&rpc(port, "eth_call", json!([{"to": contract, "data": data}, "latest"])).unwrap())
    };
    for (receiver, amount) in &moved {
        assert_eq!(balance_of(&token, receiver), *amount, "{receiver}");
    }
    let supply = 4 * 10u128.pow(24);
    let held: u128 = senders.iter().map(|s| balance_of(&token, s)).sum();
    assert_eq!(held + moved.values().sum::<u128>(), supply, "the tokens add up");
    for (sender, contract) in &deployed {
        assert_eq!(balance_of(contract, sender), 1, "{contract}");
    }
}

/// A child process killed (by PID) when the test ends, passing or not.
struct Stopped(std::process::Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
