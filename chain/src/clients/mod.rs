//! Per-client genesis and command-line generation.
//!
//! Each module owns one client's field names and flags (chains.md section 2.7 for gas,
//! section 2 for block time and extraData). They share [`Plan`] and return plain data.

mod anvil;
mod besu;
mod geth;
mod openethereum;
mod quorum;

use serde_json::{Map, Value};

use crate::error::Result;
use crate::plan::{bare_address, ClientOutput, Plan};
use crate::spec::Client;

/// ASCII "ctical byzantine fault tolerance": the Istanbul block digest every IBFT/QBFT genesis uses.
pub const ISTANBUL_MIX_HASH: &str = "0x63746963616c2062797a616e74696e65206661756c7420746f6c6572616e6365";
/// A zero 32-byte hash.
pub const ZERO_HASH: &str = "0x0000000000000000000000000000000000000000000000000000000000000000";
/// The zero address.
pub const ZERO_ADDRESS: &str = "0x0000000000000000000000000000000000000000";

pub(crate) fn build(plan: &Plan<'_>) -> Result<ClientOutput> {
    match plan.spec.client {
        Client::Geth => geth::build(plan),
        Client::Quorum => quorum::build(plan),
        Client::Besu => besu::build(plan),
        Client::Openethereum => openethereum::build(plan),
        Client::Anvil => anvil::build(plan),
    }
}

/// `{ "<addr>": { "balance": "0x…" } }` in geth's genesis alloc shape.
pub(crate) fn geth_alloc(plan: &Plan<'_>, prefixed: bool) -> Value {
    let mut alloc = Map::new();
    for (address, balance) in plan.alloc() {
        let key = if prefixed {
            format!("0x{}", bare_address(&address))
        } else {
            bare_address(&address)
        };
        let mut account = Map::new();
        account.insert("balance".into(), Value::String(balance.to_hex()));
        alloc.insert(key, Value::Object(account));
    }
    Value::Object(alloc)
}

/// Fork blocks all at 0, in the order geth's `ChainConfig` lists them.
pub(crate) fn forks_at_genesis(config: &mut Map<String, Value>, forks: &[&str]) {
    for fork in forks {
        config.insert((*fork).to_string(), Value::from(0));
    }
}
