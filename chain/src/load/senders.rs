//! The accounts that send transfers: keys derived from the funder's (so a rerun with the same funder reuses
//! them), funded by the funder at the start, each with its nonce kept here. A sender has at most one
//! transaction on the wire, so its nonces stay gap-free: after an answer that leaves the nonce's fate unknown
//! (a timeout, a reset), the sender asks the node for its pending count before its next send; `nonce too low`
//! also resynchronises; `already known` and `replacement transaction underpriced` mean the nonce is taken by
//! our own earlier send, so it is skipped. Transactions are built, signed and encoded with alloy.

use std::cell::RefCell;
use std::collections::VecDeque;

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope, TxLegacy};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{keccak256, Address, Bytes, TxKind, B256, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use tokio::sync::Notify;

/// Fees for transfers: legacy gas price, and EIP-1559 fees when the chain has a base fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fees {
    pub chain_id: u64,
    pub gas_price: u128,
    /// (max fee, priority fee) per gas, when the head block has a base fee.
    pub eip1559: Option<(u128, u128)>,
}

impl Fees {
    /// From what the node says (its chain id, gas price, and the head's base fee if any): the fees transfers
    /// pay (twice the node's price, or twice the base fee plus a tip of 1 gwei or the price if lower: room for
    /// the base fee to rise), and the lowest fees a block takes (a 1 wei tip or price; 0 on a free-gas network).
    pub fn of_node(chain_id: u64, gas_price: u128, base_fee: Option<u128>) -> (Fees, Fees) {
        let priority = if gas_price == 0 {
            0
        } else {
            1_000_000_000u128.min(gas_price)
        };
        let normal = Fees {
            chain_id,
            gas_price: gas_price.saturating_mul(2),
            eip1559: base_fee.map(|base| (base.saturating_mul(2) + priority, priority)),
        };
        let low = Fees {
            chain_id,
            gas_price: gas_price.min(1),
            eip1559: base_fee.map(|base| (base + priority.min(1), priority.min(1))),
        };
        (normal, low)
    }
}

/// A signed transaction: what `eth_sendRawTransaction` takes, and its hash.
#[derive(Debug, Clone)]
pub struct Signed {
    pub raw_hex: String,
    pub hash: B256,
}

/// The key of sender `index` (or receiver, with another label) derived from the funder's key.
fn derive(funder: &B256, label: &[u8], index: u32) -> B256 {
    let mut material = funder.to_vec();
    material.extend_from_slice(label);
    material.extend_from_slice(&index.to_be_bytes());
    keccak256(material)
}

/// The `count` sender keys of `funder`.
pub fn sender_keys(funder: &B256, count: u32) -> Result<Vec<PrivateKeySigner>, String> {
    (0..count)
        .map(|i| {
            PrivateKeySigner::from_bytes(&derive(funder, b"dagctl-load-sender", i))
                .map_err(|e| format!("cannot derive sender key {i}: {e}"))
        })
        .collect()
}

/// The addresses transfers go to: four, derived from the funder's key (no one holds their keys).
pub fn receivers(funder: &B256) -> Vec<Address> {
    (0..4)
        .map(|i| Address::from_slice(&derive(funder, b"dagctl-load-receiver", i)[12..]))
        .collect()
}

/// Signs a transfer of `value` from `key` at `nonce`.
pub fn sign_transfer(
    key: &PrivateKeySigner,
    fees: &Fees,
    legacy: bool,
    nonce: u64,
    to: Address,
    value: U256,
) -> Result<Signed, String> {
    sign_tx(key, fees, legacy, nonce, TxKind::Call(to), value, Bytes::new(), 21_000)
}

/// Signs a transaction from `key` at `nonce`: EIP-1559 where the fees have a base fee and `legacy` is not
/// asked for, else legacy with EIP-155.
#[allow(clippy::too_many_arguments)]
pub fn sign_tx(
    key: &PrivateKeySigner,
    fees: &Fees,
    legacy: bool,
    nonce: u64,
    to: TxKind,
    value: U256,
    input: Bytes,
    gas_limit: u64,
) -> Result<Signed, String> {
    let envelope: TxEnvelope = match (legacy, fees.eip1559) {
        (false, Some((max_fee, priority))) => {
            let tx = TxEip1559 {
                chain_id: fees.chain_id,
                nonce,
                gas_limit,
                max_fee_per_gas: max_fee,
                max_priority_fee_per_gas: priority,
                to,
                value,
                access_list: Default::default(),
                input,
            };
            let signature = key.sign_hash_sync(&tx.signature_hash()).map_err(|e| e.to_string())?;
            tx.into_signed(signature).into()
        }
        _ => {
            let tx = TxLegacy {
                chain_id: Some(fees.chain_id),
                nonce,
                gas_price: fees.gas_price,
                gas_limit,
                to,
                value,
                input,
            };
            let signature = key.sign_hash_sync(&tx.signature_hash()).map_err(|e| e.to_string())?;
            tx.into_signed(signature).into()
        }
    };
    Ok(Signed {
        raw_hex: format!("0x{}", alloy_primitives::hex::encode(envelope.encoded_2718())),
        hash: *envelope.tx_hash(),
    })
}

/// One sender's state.
#[derive(Debug)]
pub struct Sender {
    pub key: PrivateKeySigner,
    pub next_nonce: u64,
    /// The last send's nonce may or may not have reached the node: ask before the next.
    pub needs_sync: bool,
    /// Transfers this sender had accepted by a node.
    pub accepted: u64,
}

/// What a send's answer means for the nonce it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceFate {
    /// The node took the transaction: the nonce is used.
    Used,
    /// Refused for another reason (funds, pool full, ...): the nonce is free again.
    Free,
    /// Already taken by an earlier send of ours: skip it.
    Taken,
    /// Unknown (timeout, reset) or stale (`nonce too low`): ask the node.
    Unknown,
}

/// Reads a JSON-RPC error message for its meaning to the nonce.
pub fn fate_of_error(message: &str) -> NonceFate {
    let message = message.to_ascii_lowercase();
    if message.contains("nonce too low") || message.contains("nonce is too low") {
        NonceFate::Unknown
    } else if message.contains("already known")
        || message.contains("replacement transaction underpriced")
        || message.contains("known transaction")
    {
        NonceFate::Taken
    } else {
        NonceFate::Free
    }
}

/// The senders, and which of them are free to send.
pub struct Senders {
    pub senders: RefCell<Vec<Sender>>,
    idle: RefCell<VecDeque<usize>>,
    freed: Notify,
}

impl Senders {
    pub fn new(senders: Vec<Sender>) -> Senders {
        let idle = (0..senders.len()).collect();
        Senders {
            senders: RefCell::new(senders),
            idle: RefCell::new(idle),
            freed: Notify::new(),
        }
    }

    /// Waits for a free sender. The guard frees it when dropped; a guard dropped before [`Lease::settle`]
    /// (a call cut short by its timeout) leaves the nonce's fate unknown.
    pub async fn lease(&self) -> Lease<'_> {
        loop {
            let notified = self.freed.notified();
            if let Some(index) = self.idle.borrow_mut().pop_front() {
                return Lease {
                    senders: self,
                    index,
                    settled: false,
                };
            }
            notified.await;
        }
    }
}

/// A sender taken for one send.
pub struct Lease<'a> {
    senders: &'a Senders,
    pub index: usize,
    settled: bool,
}

impl Lease<'_> {
    /// Applies what the send's answer means for the nonce it used.
    pub fn settle(&mut self, fate: NonceFate) {
        let mut senders = self.senders.senders.borrow_mut();
        let sender = &mut senders[self.index];
        match fate {
            NonceFate::Used => {
                sender.next_nonce += 1;
                sender.accepted += 1;
            }
            NonceFate::Taken => sender.next_nonce += 1,
            NonceFate::Free => {}
            NonceFate::Unknown => sender.needs_sync = true,
        }
        self.settled = true;
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if !self.settled {
            if let Ok(mut senders) = self.senders.senders.try_borrow_mut() {
                senders[self.index].needs_sync = true;
            }
        }
        self.senders.idle.borrow_mut().push_back(self.index);
        self.senders.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_derive_deterministically_and_transfers_sign() {
        let funder = B256::repeat_byte(7);
        let a = sender_keys(&funder, 3).unwrap();
        let b = sender_keys(&funder, 3).unwrap();
        assert_eq!(a[2].address(), b[2].address());
        assert_ne!(a[0].address(), a[1].address());
        assert_eq!(receivers(&funder).len(), 4);
        let fees = Fees {
            chain_id: 1337,
            gas_price: 2_000_000_000,
            eip1559: Some((3_000_000_000, 1_000_000_000)),
        };
        let to = receivers(&funder)[0];
        let legacy = sign_transfer(&a[0], &fees, true, 0, to, U256::from(1)).unwrap();
        let dynamic = sign_transfer(&a[0], &fees, false, 0, to, U256::from(1)).unwrap();
        assert!(legacy.raw_hex.starts_with("0xf8") || legacy.raw_hex.starts_with("0xf86"));
        assert!(dynamic.raw_hex.starts_with("0x02"), "type 2 envelope");
        assert_ne!(legacy.hash, dynamic.hash);
        // Recovering the signer from the legacy encoding gives the sender back.
        use alloy_eips::eip2718::Decodable2718;
        let bytes = alloy_primitives::hex::decode(&legacy.raw_hex).unwrap();
        let decoded = TxEnvelope::decode_2718(&mut bytes.as_slice()).unwrap();
        use alloy_consensus::transaction::SignerRecoverable;
        assert_eq!(decoded.recover_signer().unwrap(), a[0].address());
    }

    #[test]
    fn error_messages_tell_the_nonce_fate() {
        assert_eq!(
            fate_of_error("nonce too low: next nonce 5, tx nonce 3"),
            NonceFate::Unknown
        );
        assert_eq!(fate_of_error("already known"), NonceFate::Taken);
        assert_eq!(fate_of_error("replacement transaction underpriced"), NonceFate::Taken);
        assert_eq!(
            fate_of_error("insufficient funds for gas * price + value"),
            NonceFate::Free
        );
        assert_eq!(fate_of_error("txpool is full"), NonceFate::Free);
    }

    #[tokio::test]
    async fn a_lease_dropped_unsettled_asks_for_a_resync() {
        let key = sender_keys(&B256::repeat_byte(1), 1).unwrap().remove(0);
        let senders = Senders::new(vec![Sender {
            key,
            next_nonce: 4,
            needs_sync: false,
            accepted: 0,
        }]);
        {
            let mut lease = senders.lease().await;
            lease.settle(NonceFate::Used);
        }
        assert_eq!(senders.senders.borrow()[0].next_nonce, 5);
        {
            let _cut_short = senders.lease().await;
        }
        assert!(senders.senders.borrow()[0].needs_sync);
        // The sender is free again.
        let _again = senders.lease().await;
    }
}
