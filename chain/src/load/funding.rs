//! Setting up transactions before the load: fees from the node, the senders derived from the funder's key
//! with their nonces, their funding by the funder, and the bundled token's deployment with every sender a
//! holder.

use std::cell::Cell;
use std::time::{Duration, Instant};

use alloy_primitives::{Address, TxKind, U256};
use alloy_signer_local::PrivateKeySigner;
use serde_json::{json, Value};

use super::generator::Target;
use super::senders::{self, Fees, Sender, Senders};
use super::token;

/// Transfers: who sends, to whom, at what fees.
pub struct Transfers {
    pub senders: Senders,
    pub fees: Fees,
    /// The lowest fees a block takes (`transfer_low_fee`): a 1 wei tip over the base fee, or a 1 wei gas price
    /// (0 on a free-gas network).
    pub low_fees: Fees,
    pub receivers: Vec<Address>,
    pub value: U256,
    pub(super) next_receiver: Cell<usize>,
    /// The bundled token, when a workload uses it.
    pub token: Option<Address>,
}

/// The pending transaction count of `key` at `target`: its next nonce.
pub(super) async fn pending_nonce(target: &Target, key: &PrivateKeySigner, timeout: Duration) -> Result<u64, String> {
    let count = target
        .rpc("eth_getTransactionCount", json!([key.address(), "pending"]), timeout)
        .await?;
    crate::backend::local::rpc::quantity(&count).ok_or_else(|| format!("not a count: {count}"))
}

/// Transfers set up: fees read from `target`, `count` senders derived from `funder`, each with its nonce, and
/// funded by the funder when it holds less than it will spend.
pub async fn prepare_transfers(
    target: &Target,
    funder: &alloy_primitives::B256,
    count: u32,
    value: u64,
    with_token: bool,
    timeout: Duration,
    note: &dyn Fn(&str),
) -> Result<Transfers, String> {
    let quantity = |v: &Value| crate::backend::local::rpc::quantity(v);
    let big = |v: &Value| -> Result<U256, String> {
        v.as_str()
            .and_then(|s| U256::from_str_radix(s.trim_start_matches("0x"), 16).ok())
            .ok_or_else(|| format!("not a quantity: {v}"))
    };
    let chain_id = quantity(&target.rpc("eth_chainId", json!([]), timeout).await?).ok_or("bad eth_chainId")?;
    let gas_price = big(&target.rpc("eth_gasPrice", json!([]), timeout).await?)?.to::<u128>();
    let head = target
        .rpc("eth_getBlockByNumber", json!(["latest", false]), timeout)
        .await?;
    let base_fee = head
        .get("baseFeePerGas")
        .and_then(|v| big(v).ok())
        .map(|v| v.to::<u128>());
    let (fees, low_fees) = Fees::of_node(chain_id, gas_price, base_fee);
    let funder_key = PrivateKeySigner::from_bytes(funder).map_err(|e| format!("funder_key: {e}"))?;
    let keys = senders::sender_keys(funder, count)?;
    let funder_balance = big(&target
        .rpc("eth_getBalance", json!([funder_key.address(), "latest"]), timeout)
        .await?)?;
    let per_tx =
        U256::from(fees.gas_price.max(fees.eip1559.map_or(0, |f| f.0))) * U256::from(21_000u64) + U256::from(value);
    // Each sender gets an equal share of half the funder's balance.
    let share = funder_balance / U256::from(2 * u64::from(count));
    if !per_tx.is_zero() && share < per_tx * U256::from(10u64) {
        return Err(format!(
            "the funder {} holds {funder_balance} wei: too little to fund {count} senders",
            funder_key.address()
        ));
    }
    let mut funder_nonce = pending_nonce(target, &funder_key, timeout).await?;
    let mut senders = Vec::new();
    let mut funding = Vec::new();
    for key in keys {
        let nonce = pending_nonce(target, &key, timeout).await?;
        let balance = big(&target
            .rpc("eth_getBalance", json!([key.address(), "latest"]), timeout)
            .await?)?;
        if !per_tx.is_zero() && balance < share / U256::from(2u64) {
            let signed = senders::sign_transfer(&funder_key, &fees, true, funder_nonce, key.address(), share)?;
            target
                .rpc("eth_sendRawTransaction", json!([signed.raw_hex]), timeout)
                .await
                .map_err(|e| format!("funding sender {}: {e}", key.address()))?;
            funder_nonce += 1;
            funding.push(key.address());
        }
        senders.push(Sender {
            key,
            next_nonce: nonce,
            needs_sync: false,
            accepted: 0,
        });
    }
    if !funding.is_empty() {
        note(&format!(
            "funding {} senders from {}",
            funding.len(),
            funder_key.address()
        ));
        let until = Instant::now() + Duration::from_secs(120);
        for address in funding {
            loop {
                let balance = big(&target
                    .rpc("eth_getBalance", json!([address, "latest"]), timeout)
                    .await?)?;
                if !balance.is_zero() {
                    break;
                }
                if Instant::now() > until {
                    return Err(format!("sender {address} was not funded within 120s"));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let token = if with_token {
        let holders: Vec<Address> = senders.iter().map(|s| s.key.address()).collect();
        let code = token::deploy_data(&holders, U256::from(10u64).pow(U256::from(24u64)))?;
        let signed = senders::sign_tx(
            &funder_key,
            &fees,
            true,
            funder_nonce,
            TxKind::Create,
            U256::ZERO,
            code,
            token::deploy_gas(holders.len()),
        )?;
        target
            .rpc("eth_sendRawTransaction", json!([signed.raw_hex]), timeout)
            .await
            .map_err(|e| format!("deploying the token: {e}"))?;
        let address = receipt_contract(target, &signed.hash, timeout).await?;
        note(&format!("token deployed at {address:#x} for {} senders", holders.len()));
        Some(address)
    } else {
        None
    };
    Ok(Transfers {
        senders: Senders::new(senders),
        fees,
        low_fees,
        receivers: senders::receivers(funder),
        value: U256::from(value),
        next_receiver: Cell::new(0),
        token,
    })
}

/// Waits (up to 120 s) for the receipt of contract creation `hash`: the contract's address.
async fn receipt_contract(
    target: &Target,
    hash: &alloy_primitives::B256,
    timeout: Duration,
) -> Result<Address, String> {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let receipt = target.rpc("eth_getTransactionReceipt", json!([hash]), timeout).await?;
        if !receipt.is_null() {
            if receipt.get("status").and_then(Value::as_str) != Some("0x1") {
                return Err(format!("the token's deployment failed: {receipt}"));
            }
            return receipt
                .get("contractAddress")
                .and_then(Value::as_str)
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| format!("no contract address in {receipt}"));
        }
        if Instant::now() > until {
            return Err("the token's deployment was not in a block within 120s".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
