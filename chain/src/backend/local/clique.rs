//! Start-up measures for geth-family Clique networks, applied to the generated network before any node
//! starts (found under load: signers that seal before they are peered fork and stall).

use crate::output::GeneratedNetwork;
use crate::spec::{Client, Consensus, Role};

/// For geth-family Clique signers: drop `--mine` and serve the `miner` API, so sealing starts only
/// once every node is peered (`miner_start` from readiness). Signers that seal before they have
/// peers each make their own block 1 from the old genesis at once; those forks can leave every
/// signer "recently signed" on a different branch and the chain stalls (seen with 4 signers on a
/// loaded machine). Returns whether anything was deferred.
pub fn defer_clique_sealing(network: &mut GeneratedNetwork) -> bool {
    let geth_family = matches!(network.client, Client::Geth | Client::Quorum);
    if !geth_family || network.consensus != Consensus::Clique {
        return false;
    }
    let mut deferred = false;
    for node in network.nodes.iter_mut().filter(|n| n.role == Role::Validator) {
        let args = &mut node.command.args;
        let before = args.len();
        args.retain(|arg| arg != "--mine");
        if args.len() == before {
            continue;
        }
        deferred = true;
        if let Some(i) = args.iter().position(|arg| arg == "--http.api") {
            if let Some(apis) = args.get_mut(i + 1) {
                if !apis.split(',').any(|api| api == "miner") {
                    apis.push_str(",miner");
                }
            }
        }
    }
    if deferred {
        hold_first_block(network, CLIQUE_FIRST_BLOCK_DELAY);
    }
    deferred
}

/// How long after generation a Clique network's block 1 may be sealed at the earliest.
const CLIQUE_FIRST_BLOCK_DELAY: std::time::Duration = std::time::Duration::from_secs(8);

/// Puts the genesis timestamp `delay` ahead, so no signer can seal block 1 before every signer has
/// been started with `miner_start`. A signer that is not started yet is not "synced" in geth's eyes and
/// drops propagated blocks; if block 1 came before that, it made its own block 1 and the branches
/// deadlocked on "signed recently" (seen under load, about one deploy in three).
fn hold_first_block(network: &mut GeneratedNetwork, delay: std::time::Duration) {
    let Some(text) = &network.genesis_json else { return };
    let Ok(mut genesis) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(delay)
        .as_secs();
    if let Some(object) = genesis.as_object_mut() {
        object.insert("timestamp".into(), serde_json::Value::String(format!("{at:#x}")));
    }
    if let Ok(pretty) = serde_json::to_string_pretty(&genesis) {
        network.genesis_json = Some(pretty);
    }
}
