//! Transactions signed here with a key we hold, not by a node's unlocked account: what a test or a load
//! generator sends with `eth_sendRawTransaction`. Legacy transactions with EIP-155 replay protection, which
//! every client dagctl runs accepts (GoQuorum's and Besu's free-gas networks at gas price 0).

pub use alloy_primitives::U256;
use alloy_primitives::{keccak256, Address, Bytes, B256};
use alloy_rlp::{Encodable, Header};

use crate::error::Result;
use crate::keys::NodeKey;

/// An EIP-155 legacy transaction before signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyTx {
    pub chain_id: u64,
    pub nonce: u64,
    pub gas_price: u128,
    pub gas: u64,
    /// `None` creates a contract from `data`.
    pub to: Option<Address>,
    pub value: U256,
    pub data: Bytes,
}

/// A signed transaction: the bytes for `eth_sendRawTransaction` and the hash nodes will report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedTx {
    pub raw: Bytes,
    pub hash: B256,
}

impl SignedTx {
    /// `0x`-prefixed hex of the raw bytes, as `eth_sendRawTransaction` takes them.
    pub fn raw_hex(&self) -> String {
        format!("{}", self.raw)
    }
}

impl LegacyTx {
    /// A plain transfer of `value` wei with the intrinsic gas of 21,000.
    pub fn transfer(chain_id: u64, nonce: u64, gas_price: u128, to: Address, value: U256) -> Self {
        Self {
            chain_id,
            nonce,
            gas_price,
            gas: 21_000,
            to: Some(to),
            value,
            data: Bytes::new(),
        }
    }

    /// The EIP-155 signing hash: keccak of `rlp([nonce, gasPrice, gas, to, value, data, chainId, 0, 0])`.
    pub fn signing_hash(&self) -> B256 {
        let to = self.to_field();
        keccak256(rlp_list(&[
            &self.nonce,
            &self.gas_price,
            &self.gas,
            &to,
            &self.value,
            &self.data,
            &self.chain_id,
            &0u8,
            &0u8,
        ]))
    }

    /// Signs with `key`: `v = recovery id + 35 + 2 * chainId`.
    pub fn sign(&self, key: &NodeKey) -> Result<SignedTx> {
        let (r, s, recovery) = key.sign_hash(&self.signing_hash())?;
        let v = u64::from(recovery) + 35 + 2 * self.chain_id;
        let to = self.to_field();
        let raw = rlp_list(&[
            &self.nonce,
            &self.gas_price,
            &self.gas,
            &to,
            &self.value,
            &self.data,
            &v,
            &r,
            &s,
        ]);
        Ok(SignedTx {
            hash: keccak256(&raw),
            raw: raw.into(),
        })
    }

    /// `to` as RLP wants it: the address, or the empty string for a contract creation.
    fn to_field(&self) -> Bytes {
        self.to
            .map(|a| Bytes::copy_from_slice(a.as_slice()))
            .unwrap_or_default()
    }
}

fn rlp_list(fields: &[&dyn Encodable]) -> Vec<u8> {
    let payload_length: usize = fields.iter().map(|f| f.length()).sum();
    let mut out = Vec::with_capacity(payload_length + 9);
    Header {
        list: true,
        payload_length,
    }
    .encode(&mut out);
    for field in fields {
        field.encode(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of EIP-155 itself: its signing data, signing hash and signed transaction.
    #[test]
    fn the_eip155_example_signs_to_the_published_bytes() {
        let key = NodeKey::from_hex(&"46".repeat(32)).unwrap();
        let tx = LegacyTx::transfer(
            1,
            9,
            20_000_000_000,
            Address::repeat_byte(0x35),
            U256::from(1_000_000_000_000_000_000u128),
        );
        assert_eq!(
            format!("{}", tx.signing_hash()),
            "0xdaf5a779ae972f972197303d7b574746c7ef83eadac0f2791ad23db92e4c8e53"
        );
        let signed = tx.sign(&key).unwrap();
        assert_eq!(
            signed.raw_hex(),
            "0xf86c098504a817c800825208943535353535353535353535353535353535353535880de0b6b3a76400008025a028ef61340bd939bc2195fe537567866003e1a15d3c71ff63e1590620aa636276a067cbe9d8997f761aecb703304b3800ccf555c9f3dc64214b297fb1966a3b6d83"
        );
        assert_eq!(signed.hash, keccak256(&signed.raw));
    }

    #[test]
    fn signatures_recover_to_the_key_and_are_low_s() {
        let half_order =
            U256::from_str_radix("7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0", 16).unwrap();
        for i in 1..20u8 {
            let key = NodeKey::from_hex(&format!("{i:02x}").repeat(32)).unwrap();
            let hash = keccak256([i]);
            let (r, s, recovery) = key.sign_hash(&hash).unwrap();
            assert!(s <= half_order, "s is in the lower half");
            let mut bytes = [0u8; 64];
            bytes[..32].copy_from_slice(&r.to_be_bytes::<32>());
            bytes[32..].copy_from_slice(&s.to_be_bytes::<32>());
            let signature = k256::ecdsa::Signature::from_slice(&bytes).unwrap();
            let id = k256::ecdsa::RecoveryId::from_byte(recovery).unwrap();
            let recovered = k256::ecdsa::VerifyingKey::recover_from_prehash(hash.as_slice(), &signature, id).unwrap();
            let point = recovered.to_encoded_point(false);
            assert_eq!(Address::from_raw_public_key(&point.as_bytes()[1..]), key.address());
        }
    }
}
