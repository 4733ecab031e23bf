//! secp256k1 node keys: generation (seeded or random), addresses and enode URLs.

use std::fmt;

use alloy_primitives::{hex, keccak256, Address, B256};
use k256::elliptic_curve::sec1::ToEncodedPoint;
use k256::SecretKey;

use crate::error::{Error, Result};

/// Domain separator so dagctl's seeded keys never collide with another tool's.
const KEY_DOMAIN: &[u8] = b"dagctl/chain/node-key/v1";

/// Where keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// The operating system's random source.
    Random,
    /// Derived from this seed: the same seed always gives the same keys.
    Seeded(String),
}

impl KeySource {
    /// A seeded source when a seed is given, random otherwise.
    pub fn from_seed(seed: Option<&str>) -> Self {
        match seed {
            Some(seed) => KeySource::Seeded(seed.to_string()),
            None => KeySource::Random,
        }
    }

    /// 32 bytes for the purpose `label` and item `index`: deterministic when seeded.
    pub(crate) fn bytes32(&self, label: &str, index: u32, attempt: u32) -> Result<[u8; 32]> {
        match self {
            KeySource::Random => {
                let mut bytes = [0u8; 32];
                getrandom::getrandom(&mut bytes).map_err(|e| Error::Random(e.to_string()))?;
                Ok(bytes)
            }
            KeySource::Seeded(seed) => {
                let mut input = Vec::with_capacity(KEY_DOMAIN.len() + seed.len() + label.len() + 16);
                input.extend_from_slice(KEY_DOMAIN);
                // Length prefixes keep ("ab","c") and ("a","bc") apart.
                input.extend_from_slice(&(seed.len() as u64).to_be_bytes());
                input.extend_from_slice(seed.as_bytes());
                input.extend_from_slice(&(label.len() as u64).to_be_bytes());
                input.extend_from_slice(label.as_bytes());
                input.extend_from_slice(&index.to_be_bytes());
                input.extend_from_slice(&attempt.to_be_bytes());
                Ok(keccak256(&input).0)
            }
        }
    }
}

/// A secp256k1 key pair used as a node's p2p identity and, for validators, its signing key.
#[derive(Clone, PartialEq, Eq)]
pub struct NodeKey {
    secret: SecretKey,
    /// Uncompressed public key without the 0x04 prefix.
    public: [u8; 64],
}

impl NodeKey {
    /// The key with this 32-byte private scalar.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let secret = SecretKey::from_slice(bytes)
            .map_err(|_| Error::InvalidKey("not a non-zero scalar below the curve order".into()))?;
        let encoded = secret.public_key().to_encoded_point(false);
        let mut public = [0u8; 64];
        // An uncompressed SEC1 point is 0x04 || x || y.
        let point = encoded.as_bytes();
        if point.len() != 65 {
            return Err(Error::InvalidKey("public key is not 65 bytes".into()));
        }
        public.copy_from_slice(&point[1..]);
        Ok(Self { secret, public })
    }

    /// The key from a hex private key, with or without `0x`.
    pub fn from_hex(text: &str) -> Result<Self> {
        let bytes = hex::decode(text.trim()).map_err(|e| Error::InvalidKey(format!("not hex: {e}")))?;
        if bytes.len() != 32 {
            return Err(Error::InvalidKey(format!("expected 32 bytes, got {}", bytes.len())));
        }
        Self::from_bytes(&bytes)
    }

    /// Key number `index` from `source`.
    pub fn generate(source: &KeySource, index: u32) -> Result<Self> {
        // A hash lands outside the scalar range with probability ~2^-128; retry then.
        for attempt in 0..16 {
            let bytes = source.bytes32("node-key", index, attempt)?;
            if let Ok(key) = Self::from_bytes(&bytes) {
                return Ok(key);
            }
        }
        Err(Error::InvalidKey(
            "could not derive a valid scalar in 16 attempts".into(),
        ))
    }

    /// `count` keys from `source`.
    pub fn generate_many(source: &KeySource, count: u32) -> Result<Vec<Self>> {
        (0..count).map(|i| Self::generate(source, i)).collect()
    }

    /// The 32-byte private key.
    pub fn secret_bytes(&self) -> B256 {
        B256::from_slice(&self.secret.to_bytes())
    }

    /// The private key as 64 hex digits without `0x` (geth/quorum `nodekey` file format).
    pub fn secret_hex(&self) -> String {
        hex::encode(self.secret.to_bytes())
    }

    /// The 64-byte uncompressed public key (no 0x04 prefix), the enode id.
    pub fn public_key(&self) -> [u8; 64] {
        self.public
    }

    /// The public key as 128 hex digits, as it appears in an enode URL.
    pub fn node_id(&self) -> String {
        hex::encode(self.public)
    }

    /// Signs a 32-byte hash (a transaction's signing hash): `(r, s, recovery id)`, with `s` in the lower
    /// half of the curve order as Ethereum requires (EIP-2).
    pub fn sign_hash(&self, hash: &B256) -> Result<(alloy_primitives::U256, alloy_primitives::U256, u8)> {
        let signing = k256::ecdsa::SigningKey::from(&self.secret);
        let (signature, recovery) = signing
            .sign_prehash_recoverable(hash.as_slice())
            .map_err(|e| Error::InvalidKey(format!("cannot sign: {e}")))?;
        // k256 already returns the low-s form; normalizing again is a no-op then, and keeps the rule explicit.
        let (signature, recovery) = match signature.normalize_s() {
            Some(low) => (
                low,
                k256::ecdsa::RecoveryId::new(!recovery.is_y_odd(), recovery.is_x_reduced()),
            ),
            None => (signature, recovery),
        };
        let bytes = signature.to_bytes();
        Ok((
            alloy_primitives::U256::from_be_slice(&bytes[..32]),
            alloy_primitives::U256::from_be_slice(&bytes[32..]),
            recovery.to_byte(),
        ))
    }

    /// The Ethereum address of this key.
    pub fn address(&self) -> Address {
        Address::from_raw_public_key(&self.public)
    }

    /// `enode://<id>@host:port` with no query, the form OpenEthereum parses.
    pub fn enode_plain(&self, host: &str, port: u16) -> String {
        format!("enode://{}@{}:{}", self.node_id(), host, port)
    }

    /// `enode://<id>@host:port?discport=0`: a static peer with discovery off.
    pub fn enode(&self, host: &str, port: u16) -> String {
        format!("{}?discport=0", self.enode_plain(host, port))
    }
}

impl fmt::Debug for NodeKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the private key.
        f.debug_struct("NodeKey")
            .field("address", &self.address())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // go-ethereum's well-known test key (crypto_test.go `testPrivHex` / `testAddrHex`).
    const GETH_TEST_KEY: &str = "289c2857d4598e37fb9647507e47a309d6133539bf21a8b9cb6df88fd5232032";
    const GETH_TEST_ADDR: &str = "0x970E8128AB834E8EAC17Ab8E3812F010678CF791";

    #[test]
    fn derives_the_known_address() {
        let key = NodeKey::from_hex(GETH_TEST_KEY).unwrap();
        assert_eq!(key.address().to_checksum(None), GETH_TEST_ADDR);
        assert_eq!(key.secret_hex(), GETH_TEST_KEY);
    }

    #[test]
    fn seeded_keys_are_stable_and_distinct() {
        let source = KeySource::Seeded("golden".into());
        let first = NodeKey::generate_many(&source, 4).unwrap();
        let again = NodeKey::generate_many(&source, 4).unwrap();
        assert_eq!(first, again);
        let addresses: std::collections::BTreeSet<_> = first.iter().map(NodeKey::address).collect();
        assert_eq!(addresses.len(), 4);
        let other = NodeKey::generate(&KeySource::Seeded("other".into()), 0).unwrap();
        assert_ne!(other, first[0]);
    }

    #[test]
    fn random_keys_differ() {
        let a = NodeKey::generate(&KeySource::Random, 0).unwrap();
        let b = NodeKey::generate(&KeySource::Random, 0).unwrap();
        assert_ne!(a.address(), b.address());
    }

    #[test]
    fn enode_has_the_uncompressed_public_key() {
        let key = NodeKey::from_hex(GETH_TEST_KEY).unwrap();
        let enode = key.enode("127.0.0.1", 30303);
        let id = enode
            .strip_prefix("enode://")
            .and_then(|rest| rest.split('@').next())
            .unwrap();
        assert_eq!(id.len(), 128);
        assert_eq!(Address::from_raw_public_key(&hex::decode(id).unwrap()), key.address());
        assert!(enode.ends_with("@127.0.0.1:30303?discport=0"), "{enode}");
        assert_eq!(key.enode_plain("10.0.0.1", 1), format!("enode://{id}@10.0.0.1:1"));
    }

    #[test]
    fn rejects_bad_private_keys() {
        assert!(NodeKey::from_bytes(&[0u8; 32]).is_err());
        assert!(NodeKey::from_bytes(&[0xffu8; 32]).is_err());
        assert!(NodeKey::from_hex("abcd").is_err());
        assert!(NodeKey::from_hex("zz").is_err());
    }

    #[test]
    fn debug_does_not_leak_the_secret() {
        let key = NodeKey::from_hex(GETH_TEST_KEY).unwrap();
        let shown = format!("{key:?}");
        assert!(!shown.contains(GETH_TEST_KEY), "{shown}");
        assert!(!shown.to_lowercase().contains("289c2857"), "{shown}");
    }
}
