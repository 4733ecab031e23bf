//! Web3 Secret Storage (V3) keystore files, as geth, GoQuorum and OpenEthereum read them.
//!
//! We write the keystore ourselves instead of running `geth account import` so the
//! generated configuration is plain data (no process runs at generation time) and
//! identical for every client that reads V3 files. The KDF is scrypt with geth's
//! "light" parameters (N=4096, r=8, p=6, the ones `geth --lightkdf` writes): these are
//! throwaway test-network keys, and the light cost keeps unlocking at node start and
//! our tests fast. Any V3 reader accepts them, because the parameters are in the file.

use alloy_primitives::{hex, keccak256, Address};
use ctr::cipher::{KeyIvInit, StreamCipher};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::{KeySource, NodeKey};

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// geth's `LightScryptN` as a power of two.
const LIGHT_SCRYPT_LOG_N: u8 = 12;
/// scrypt block size used by geth.
const SCRYPT_R: u32 = 8;
/// geth's `LightScryptP`.
const LIGHT_SCRYPT_P: u32 = 6;
const DERIVED_KEY_LEN: usize = 32;

/// A V3 keystore document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keystore {
    /// Address of the key, lowercase hex without `0x`.
    pub address: String,
    /// The encrypted key and how to decrypt it.
    pub crypto: KeystoreCrypto,
    /// A random (or seeded) UUID identifying the file.
    pub id: String,
    /// Always 3.
    pub version: u32,
}

/// The `crypto` section of a V3 keystore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeystoreCrypto {
    /// Always `aes-128-ctr`.
    pub cipher: String,
    /// The encrypted private key, hex.
    pub ciphertext: String,
    /// The cipher's IV.
    pub cipherparams: CipherParams,
    /// Always `scrypt` for files we write.
    pub kdf: String,
    /// scrypt parameters.
    pub kdfparams: ScryptParams,
    /// keccak256(derived[16..32] ++ ciphertext), hex.
    pub mac: String,
}

/// AES-CTR parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CipherParams {
    /// 16-byte IV, hex.
    pub iv: String,
}

/// scrypt parameters as the keystore records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScryptParams {
    /// Derived key length (32).
    pub dklen: usize,
    /// CPU/memory cost N.
    pub n: u64,
    /// Parallelism.
    pub p: u32,
    /// Block size.
    pub r: u32,
    /// 32-byte salt, hex.
    pub salt: String,
}

impl Keystore {
    /// Encrypts `key` under `password`; salt, IV and id come from `source` (item `index`).
    pub fn encrypt(key: &NodeKey, password: &str, source: &KeySource, index: u32) -> Result<Self> {
        let salt = source.bytes32("keystore-salt", index, 0)?;
        let iv_bytes = source.bytes32("keystore-iv", index, 0)?;
        let id_bytes = source.bytes32("keystore-id", index, 0)?;
        let iv = &iv_bytes[..16];
        let derived = derive_key(password, &salt, LIGHT_SCRYPT_LOG_N, SCRYPT_R, LIGHT_SCRYPT_P)?;

        let mut ciphertext = key.secret_bytes().to_vec();
        let mut cipher = Aes128Ctr::new_from_slices(&derived[..16], iv)
            .map_err(|e| Error::Keystore(format!("cipher setup: {e}")))?;
        cipher.apply_keystream(&mut ciphertext);
        let mac = mac(&derived, &ciphertext);

        Ok(Self {
            address: hex::encode(key.address()),
            crypto: KeystoreCrypto {
                cipher: "aes-128-ctr".into(),
                ciphertext: hex::encode(&ciphertext),
                cipherparams: CipherParams { iv: hex::encode(iv) },
                kdf: "scrypt".into(),
                kdfparams: ScryptParams {
                    dklen: DERIVED_KEY_LEN,
                    n: 1 << LIGHT_SCRYPT_LOG_N,
                    p: LIGHT_SCRYPT_P,
                    r: SCRYPT_R,
                    salt: hex::encode(salt),
                },
                mac: hex::encode(mac),
            },
            id: uuid_v4(&id_bytes),
            version: 3,
        })
    }

    /// Decrypts the key with `password`; fails on a wrong password (MAC mismatch).
    pub fn decrypt(&self, password: &str) -> Result<NodeKey> {
        if self.version != 3 {
            return Err(Error::Keystore(format!("version {} is not 3", self.version)));
        }
        if self.crypto.kdf != "scrypt" || self.crypto.cipher != "aes-128-ctr" {
            return Err(Error::Keystore(format!(
                "unsupported kdf/cipher {}/{}",
                self.crypto.kdf, self.crypto.cipher
            )));
        }
        let params = &self.crypto.kdfparams;
        if !params.n.is_power_of_two() || params.n < 2 || params.dklen != DERIVED_KEY_LEN {
            return Err(Error::Keystore(format!(
                "unsupported scrypt parameters n={} dklen={}",
                params.n, params.dklen
            )));
        }
        let log_n = params.n.trailing_zeros() as u8;
        let salt = decode_hex("salt", &params.salt)?;
        let iv = decode_hex("iv", &self.crypto.cipherparams.iv)?;
        let mut plaintext = decode_hex("ciphertext", &self.crypto.ciphertext)?;
        let expected_mac = decode_hex("mac", &self.crypto.mac)?;

        let derived = derive_key(password, &salt, log_n, params.r, params.p)?;
        if mac(&derived, &plaintext).as_slice() != expected_mac.as_slice() {
            return Err(Error::Keystore("MAC mismatch: wrong password or corrupt file".into()));
        }
        let mut cipher = Aes128Ctr::new_from_slices(&derived[..16], &iv)
            .map_err(|e| Error::Keystore(format!("cipher setup: {e}")))?;
        cipher.apply_keystream(&mut plaintext);
        let key = NodeKey::from_bytes(&plaintext)?;
        let address: Address = format!("0x{}", self.address)
            .parse()
            .map_err(|_| Error::Keystore(format!("bad address `{}`", self.address)))?;
        if key.address() != address {
            return Err(Error::Keystore(format!(
                "decrypted key belongs to {}, file says {}",
                key.address(),
                address
            )));
        }
        Ok(key)
    }

    /// The file name geth gives this keystore (`UTC--<time>--<address>`), with a fixed time
    /// so the name is reproducible.
    pub fn file_name(&self) -> String {
        format!("UTC--1970-01-01T00-00-00.000000000Z--{}", self.address)
    }

    /// The keystore as pretty JSON bytes.
    pub fn to_json(&self) -> Result<Vec<u8>> {
        serde_json::to_vec_pretty(self).map_err(|e| Error::Serialize {
            what: "keystore",
            reason: e.to_string(),
        })
    }
}

fn derive_key(password: &str, salt: &[u8], log_n: u8, r: u32, p: u32) -> Result<[u8; 32]> {
    let params = scrypt::Params::new(log_n, r, p, DERIVED_KEY_LEN)
        .map_err(|e| Error::Keystore(format!("scrypt parameters: {e}")))?;
    let mut derived = [0u8; DERIVED_KEY_LEN];
    scrypt::scrypt(password.as_bytes(), salt, &params, &mut derived)
        .map_err(|e| Error::Keystore(format!("scrypt: {e}")))?;
    Ok(derived)
}

fn mac(derived: &[u8; 32], ciphertext: &[u8]) -> [u8; 32] {
    let mut input = Vec::with_capacity(16 + ciphertext.len());
    input.extend_from_slice(&derived[16..32]);
    input.extend_from_slice(ciphertext);
    keccak256(&input).0
}

fn decode_hex(what: &str, text: &str) -> Result<Vec<u8>> {
    hex::decode(text).map_err(|e| Error::Keystore(format!("{what} is not hex: {e}")))
}

/// Formats 16 bytes as an RFC 4122 version 4 UUID string.
fn uuid_v4(bytes: &[u8; 32]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&bytes[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_a_wrong_password() {
        let source = KeySource::Seeded("keystore-test".into());
        let key = NodeKey::generate(&source, 0).unwrap();
        let keystore = Keystore::encrypt(&key, "secret", &source, 0).unwrap();
        assert_eq!(keystore.version, 3);
        assert_eq!(keystore.crypto.kdfparams.n, 4096);
        assert_eq!(keystore.address, hex::encode(key.address()));
        let json = keystore.to_json().unwrap();
        let parsed: Keystore = serde_json::from_slice(&json).unwrap();
        assert_eq!(parsed.decrypt("secret").unwrap(), key);
        let wrong = parsed.decrypt("wrong").unwrap_err();
        assert!(wrong.to_string().contains("MAC mismatch"), "{wrong}");
    }

    #[test]
    fn seeded_keystores_are_reproducible() {
        let source = KeySource::Seeded("keystore-test".into());
        let key = NodeKey::generate(&source, 1).unwrap();
        let a = Keystore::encrypt(&key, "pw", &source, 1).unwrap();
        let b = Keystore::encrypt(&key, "pw", &source, 1).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.id.len(), 36);
        assert_eq!(&a.id[14..15], "4");
        assert!(a.file_name().ends_with(&a.address));
    }

    // go-ethereum accounts/keystore/testdata/very-light-scrypt.json, written by geth;
    // its TestKeyEncryptDecrypt opens it with the empty password.
    #[test]
    fn decrypts_a_keystore_written_by_geth() {
        let json = r#"{
            "address": "45dea0fb0bba44f4fcf290bba71fd57d7117cbb8",
            "crypto": {
                "cipher": "aes-128-ctr",
                "ciphertext": "b87781948a1befd247bff51ef4063f716cf6c2d3481163e9a8f42e1f9bb74145",
                "cipherparams": {"iv": "dc4926b48a105133d2f16b96833abf1e"},
                "kdf": "scrypt",
                "kdfparams": {"dklen": 32, "n": 2, "p": 1, "r": 8,
                              "salt": "004244bbdc51cadda545b1cfa43cff9ed2ae88e08c61f1479dbb45410722f8f0"},
                "mac": "39990c1684557447940d4c69e06b1b82b2aceacb43f284df65c956daf3046b85"
            },
            "id": "ce541d8d-c79b-40f8-9f8c-20f59616faba",
            "version": 3
        }"#;
        let keystore: Keystore = serde_json::from_str(json).unwrap();
        let key = keystore.decrypt("").unwrap();
        assert_eq!(
            key.address(),
            "0x45dea0fb0bba44f4fcf290bba71fd57d7117cbb8".parse::<Address>().unwrap()
        );
        assert!(keystore.decrypt("bad").is_err());
    }
}
