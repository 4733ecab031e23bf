//! Genesis `extraData` for each consensus engine, encoded and decoded with alloy-rlp.
//!
//! Layouts (chains.md section 2):
//! - Clique: 32-byte vanity, then 20 bytes per signer, then a 65-byte zero seal (not RLP).
//! - GoQuorum IBFT (istanbul): 32-byte vanity outside the RLP, then
//!   `RLP([validators, seal(65 zero bytes), committed_seals[]])`.
//! - QBFT (GoQuorum and Besu): `RLP([vanity32, validators, vote=[], round=0, seals=[]])`.
//! - Besu IBFT 2.0: `RLP([vanity32, validators, vote=empty string, round=int32(0), seals=[]])`.

use alloy_primitives::{Address, Bytes, FixedBytes, B256};
use alloy_rlp::{RlpDecodable, RlpEncodable};

use crate::error::{Error, Result};
use crate::spec::{Client, Consensus};

/// Length of the vanity prefix every format starts with.
pub const VANITY_LEN: usize = 32;
/// Length of a secp256k1 recoverable signature (the Clique and IBFT seal).
pub const SEAL_LEN: usize = 65;

/// Which `extraData` layout a genesis needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExtraDataFormat {
    /// Clique (geth, GoQuorum, Besu, OpenEthereum).
    Clique,
    /// GoQuorum IBFT 1.0 (istanbul).
    QuorumIbft,
    /// QBFT (GoQuorum and Besu).
    Qbft,
    /// Besu IBFT 2.0.
    BesuIbft2,
}

#[derive(RlpEncodable, RlpDecodable)]
struct IstanbulExtra {
    validators: Vec<Address>,
    seal: Bytes,
    committed_seal: Vec<Bytes>,
}

#[derive(RlpEncodable, RlpDecodable)]
struct QbftExtra {
    vanity: B256,
    validators: Vec<Address>,
    // A genesis carries no vote: GoQuorum encodes the nil *ValidatorVote as an empty list.
    vote: Vec<Bytes>,
    round: u32,
    committed_seals: Vec<Bytes>,
}

#[derive(RlpEncodable, RlpDecodable)]
struct BesuIbft2Extra {
    vanity: B256,
    validators: Vec<Address>,
    // Besu writes "no vote" as the empty string (0x80) ...
    vote: Bytes,
    // ... and the round as a fixed 4-byte integer (0x84 00000000).
    round: FixedBytes<4>,
    committed_seals: Vec<Bytes>,
}

/// The genesis `extraData` for `validators` in the given layout, with a zero vanity.
pub fn encode(format: ExtraDataFormat, validators: &[Address]) -> Bytes {
    match format {
        ExtraDataFormat::Clique => {
            let mut out = Vec::with_capacity(VANITY_LEN + validators.len() * 20 + SEAL_LEN);
            out.extend_from_slice(&[0u8; VANITY_LEN]);
            for validator in validators {
                out.extend_from_slice(validator.as_slice());
            }
            out.extend_from_slice(&[0u8; SEAL_LEN]);
            out.into()
        }
        ExtraDataFormat::QuorumIbft => {
            let extra = IstanbulExtra {
                validators: validators.to_vec(),
                seal: Bytes::from(vec![0u8; SEAL_LEN]),
                committed_seal: Vec::new(),
            };
            let mut out = vec![0u8; VANITY_LEN];
            out.extend_from_slice(&alloy_rlp::encode(&extra));
            out.into()
        }
        ExtraDataFormat::Qbft => alloy_rlp::encode(&QbftExtra {
            vanity: B256::ZERO,
            validators: validators.to_vec(),
            vote: Vec::new(),
            round: 0,
            committed_seals: Vec::new(),
        })
        .into(),
        ExtraDataFormat::BesuIbft2 => alloy_rlp::encode(&BesuIbft2Extra {
            vanity: B256::ZERO,
            validators: validators.to_vec(),
            vote: Bytes::new(),
            round: FixedBytes::ZERO,
            committed_seals: Vec::new(),
        })
        .into(),
    }
}

/// The validator (signer) list in `data`, which must be a complete `extraData` of `format`.
pub fn decode_validators(format: ExtraDataFormat, data: &[u8]) -> Result<Vec<Address>> {
    match format {
        ExtraDataFormat::Clique => {
            let Some(signers_len) = data.len().checked_sub(VANITY_LEN + SEAL_LEN) else {
                return Err(Error::ExtraData(format!(
                    "clique extraData is {} bytes, shorter than vanity + seal ({})",
                    data.len(),
                    VANITY_LEN + SEAL_LEN
                )));
            };
            if signers_len % 20 != 0 {
                return Err(Error::ExtraData(format!(
                    "clique signer section is {signers_len} bytes, not a multiple of 20"
                )));
            }
            let signers = &data[VANITY_LEN..VANITY_LEN + signers_len];
            Ok(signers.chunks_exact(20).map(Address::from_slice).collect())
        }
        ExtraDataFormat::QuorumIbft => {
            if data.len() < VANITY_LEN {
                return Err(Error::ExtraData(format!(
                    "istanbul extraData is {} bytes, shorter than the 32-byte vanity",
                    data.len()
                )));
            }
            let extra: IstanbulExtra = alloy_rlp::decode_exact(&data[VANITY_LEN..]).map_err(rlp_error)?;
            Ok(extra.validators)
        }
        ExtraDataFormat::Qbft => {
            let extra: QbftExtra = alloy_rlp::decode_exact(data).map_err(rlp_error)?;
            Ok(extra.validators)
        }
        ExtraDataFormat::BesuIbft2 => {
            let extra: BesuIbft2Extra = alloy_rlp::decode_exact(data).map_err(rlp_error)?;
            Ok(extra.validators)
        }
    }
}

fn rlp_error(error: alloy_rlp::Error) -> Error {
    Error::ExtraData(error.to_string())
}

/// The extraData layout a client x consensus pair uses, if any.
pub fn extra_data_format(client: Client, consensus: Consensus) -> Option<ExtraDataFormat> {
    match (client, consensus) {
        (Client::Anvil, _) => None,
        (_, Consensus::Clique) => Some(ExtraDataFormat::Clique),
        (Client::Quorum, Consensus::Ibft) => Some(ExtraDataFormat::QuorumIbft),
        (_, Consensus::Qbft) => Some(ExtraDataFormat::Qbft),
        (Client::Besu, Consensus::Ibft2) => Some(ExtraDataFormat::BesuIbft2),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(byte: u8) -> Address {
        Address::repeat_byte(byte)
    }

    #[test]
    fn clique_layout_is_vanity_signers_seal() {
        let data = encode(ExtraDataFormat::Clique, &[addr(1), addr(2)]);
        assert_eq!(data.len(), 32 + 40 + 65);
        assert!(data[..32].iter().all(|b| *b == 0));
        assert_eq!(&data[32..52], addr(1).as_slice());
        assert_eq!(&data[52..72], addr(2).as_slice());
        assert!(data[72..].iter().all(|b| *b == 0));
    }

    #[test]
    fn empty_validator_sets_encode() {
        // besu-docs qbft.md, contract validator selection: RLP([vanity, [], no vote, 0, []]).
        let qbft = encode(ExtraDataFormat::Qbft, &[]);
        let mut expected = vec![0xe5, 0xa0];
        expected.extend_from_slice(&[0u8; 32]);
        expected.extend_from_slice(&[0xc0, 0xc0, 0x80, 0xc0]);
        assert_eq!(qbft.to_vec(), expected);
        assert!(decode_validators(ExtraDataFormat::Qbft, &qbft).unwrap().is_empty());
    }

    #[test]
    fn decoding_rejects_malformed_data() {
        assert!(decode_validators(ExtraDataFormat::Clique, &[0u8; 96]).is_err());
        assert!(decode_validators(ExtraDataFormat::Clique, &[0u8; 32 + 65 + 19]).is_err());
        assert!(decode_validators(ExtraDataFormat::QuorumIbft, &[0u8; 10]).is_err());
        assert!(decode_validators(ExtraDataFormat::Qbft, &[0xc1]).is_err());
        // Trailing bytes after a valid QBFT list are rejected.
        let mut qbft = encode(ExtraDataFormat::Qbft, &[addr(3)]).to_vec();
        qbft.push(0x00);
        assert!(decode_validators(ExtraDataFormat::Qbft, &qbft).is_err());
        // A QBFT payload is not a Besu IBFT 2.0 payload (the round differs).
        let qbft = encode(ExtraDataFormat::Qbft, &[addr(3)]);
        assert!(decode_validators(ExtraDataFormat::BesuIbft2, &qbft).is_err());
    }
}
