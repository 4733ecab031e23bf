//! Foundry's anvil: a standalone dev node per entry, mining on an interval or per transaction.

use serde_json::json;

use super::{geth_alloc, ZERO_ADDRESS, ZERO_HASH};
use crate::error::Result;
use crate::output::CommandSpec;
use crate::plan::{quantity, ClientOutput, NodeOutput, Plan};

pub(crate) fn build(plan: &Plan<'_>) -> Result<ClientOutput> {
    // anvil funds its own dev accounts; a genesis (`--init`) is only needed to prefund others.
    let prefunded = !plan.alloc().is_empty();
    let genesis = prefunded.then(|| {
        json!({
            "config": { "chainId": plan.settings.chain_id },
            "nonce": "0x0",
            "timestamp": "0x0",
            "extraData": "0x",
            "gasLimit": quantity(plan.settings.gas_limit),
            "difficulty": "0x0",
            "mixHash": ZERO_HASH,
            "coinbase": ZERO_ADDRESS,
            "alloc": geth_alloc(plan, true),
        })
    });
    let mut nodes = Vec::with_capacity(plan.nodes.len());
    for node in &plan.nodes {
        let mut command = CommandSpec::new("anvil");
        command.args([
            "--host".to_string(),
            node.params.host.clone(),
            "--port".to_string(),
            node.params.ports.rpc.to_string(),
            "--chain-id".to_string(),
            plan.settings.chain_id.to_string(),
            "--gas-limit".to_string(),
            plan.settings.gas_limit.to_string(),
        ]);
        if let Some(block_time) = plan.settings.block_time {
            command.args(["--block-time".to_string(), seconds_decimal(block_time.as_millis())]);
        }
        if prefunded {
            command.args(["--init".to_string(), node.path("genesis.json")]);
        }
        nodes.push(NodeOutput {
            files: Vec::new(),
            init: Vec::new(),
            command,
        });
    }
    Ok(ClientOutput {
        genesis,
        genesis_file: prefunded.then_some("genesis.json"),
        extra_data: None,
        nodes,
    })
}

/// Milliseconds as decimal seconds without trailing zeros: 1000 -> "1", 500 -> "0.5".
fn seconds_decimal(millis: u128) -> String {
    let whole = millis / 1000;
    let fraction = millis % 1000;
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:03}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::seconds_decimal;

    #[test]
    fn formats_decimal_seconds() {
        assert_eq!(seconds_decimal(1000), "1");
        assert_eq!(seconds_decimal(500), "0.5");
        assert_eq!(seconds_decimal(1250), "1.25");
        assert_eq!(seconds_decimal(2005), "2.005");
    }
}
