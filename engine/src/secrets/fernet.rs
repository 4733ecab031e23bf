//! Fernet tokens (AES-128-CBC with PKCS#7 padding, authenticated by HMAC-SHA256), the format Airflow encrypts
//! variables and connections with: a key written for Airflow's `[core] fernet_key` works here unchanged, and
//! values encrypted by either can be read by the other. Several keys, comma-separated, rotate as Airflow's
//! MultiFernet does: the first encrypts, any decrypts.

use aes::cipher::{BlockDecrypt, BlockEncrypt, KeyInit};
use aes::Aes128;
use base64::engine::general_purpose::URL_SAFE;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::{Error, Result};

const VERSION: u8 = 0x80;
const BLOCK: usize = 16;
/// Version, timestamp and IV before the ciphertext; the HMAC after it.
const HEADER: usize = 1 + 8 + BLOCK;
const MAC: usize = 32;

/// One Fernet key: 16 bytes that sign, 16 that encrypt.
#[derive(Clone)]
struct Key {
    signing: [u8; 16],
    encryption: [u8; 16],
}

impl Key {
    fn parse(text: &str) -> Result<Key> {
        let bytes = URL_SAFE
            .decode(text.trim())
            .map_err(|_| Error::invalid("a Fernet key is 32 bytes in URL-safe base64 (44 characters)"))?;
        if bytes.len() != 32 {
            return Err(Error::invalid(format!(
                "a Fernet key is 32 bytes in URL-safe base64; this one is {} bytes",
                bytes.len()
            )));
        }
        let mut signing = [0u8; 16];
        let mut encryption = [0u8; 16];
        signing.copy_from_slice(&bytes[..16]);
        encryption.copy_from_slice(&bytes[16..]);
        Ok(Key { signing, encryption })
    }

    fn mac(&self, data: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.signing).expect("HMAC takes any key length");
        mac.update(data);
        mac
    }

    fn encrypt(&self, plain: &[u8], timestamp: u64, iv: [u8; BLOCK]) -> String {
        let cipher = Aes128::new(&self.encryption.into());
        let pad = BLOCK - plain.len() % BLOCK;
        let mut data = Vec::with_capacity(HEADER + plain.len() + pad + MAC);
        data.push(VERSION);
        data.extend_from_slice(&timestamp.to_be_bytes());
        data.extend_from_slice(&iv);
        let mut previous = iv;
        let padded = plain.iter().copied().chain(std::iter::repeat_n(pad as u8, pad));
        let mut block = [0u8; BLOCK];
        for (i, byte) in padded.enumerate() {
            block[i % BLOCK] = byte ^ previous[i % BLOCK];
            if i % BLOCK == BLOCK - 1 {
                let mut b = block.into();
                cipher.encrypt_block(&mut b);
                previous.copy_from_slice(&b);
                data.extend_from_slice(&b);
            }
        }
        let tag = self.mac(&data).finalize().into_bytes();
        data.extend_from_slice(&tag);
        URL_SAFE.encode(data)
    }

    /// The plaintext, or None when this key did not make the token (or it was altered).
    fn decrypt(&self, data: &[u8]) -> Option<Vec<u8>> {
        let (signed, tag) = data.split_at(data.len() - MAC);
        self.mac(signed).verify_slice(tag).ok()?;
        let cipher = Aes128::new(&self.encryption.into());
        let mut previous: [u8; BLOCK] = signed[9..HEADER].try_into().ok()?;
        let body = &signed[HEADER..];
        let mut plain = Vec::with_capacity(body.len());
        for chunk in body.chunks_exact(BLOCK) {
            let mut b = aes::Block::clone_from_slice(chunk);
            cipher.decrypt_block(&mut b);
            plain.extend(b.iter().zip(previous.iter()).map(|(x, p)| x ^ p));
            previous.copy_from_slice(chunk);
        }
        let pad = *plain.last()? as usize;
        if pad == 0 || pad > BLOCK || plain[plain.len() - pad..].iter().any(|b| *b as usize != pad) {
            return None;
        }
        plain.truncate(plain.len() - pad);
        Some(plain)
    }
}

/// Fernet keys: the first encrypts, any of them decrypts. No `Debug`: it holds the keys.
#[derive(Clone)]
pub struct Fernet {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Fernet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fernet({} key(s))", self.keys.len())
    }
}

impl Fernet {
    /// Keys as Airflow's `fernet_key` holds them: one, or several separated by commas (newest first).
    pub fn new(keys: &str) -> Result<Fernet> {
        let keys: Vec<Key> = keys
            .split(',')
            .filter(|k| !k.trim().is_empty())
            .map(Key::parse)
            .collect::<Result<_>>()?;
        if keys.is_empty() {
            return Err(Error::invalid("no Fernet key given"));
        }
        Ok(Fernet { keys })
    }

    /// A new random key, in the text form [`Fernet::new`] reads.
    pub fn generate_key() -> String {
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        URL_SAFE.encode(bytes)
    }

    /// `plain` encrypted with the first key, as URL-safe base64 text.
    pub fn encrypt(&self, plain: &str) -> String {
        let mut iv = [0u8; BLOCK];
        rand::thread_rng().fill_bytes(&mut iv);
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        self.keys[0].encrypt(plain.as_bytes(), now, iv)
    }

    /// The text a token holds, if one of the keys made it.
    pub fn decrypt(&self, token: &str) -> Result<String> {
        let refused = || {
            Error::invalid("a value cannot be decrypted with the configured Fernet key(s): the key changed, or the value was altered")
        };
        let data = URL_SAFE.decode(token.trim()).map_err(|_| refused())?;
        if data.len() < HEADER + BLOCK + MAC || data[0] != VERSION || !(data.len() - HEADER - MAC).is_multiple_of(BLOCK)
        {
            return Err(refused());
        }
        let plain = self.keys.iter().find_map(|k| k.decrypt(&data)).ok_or_else(refused)?;
        String::from_utf8(plain).map_err(|_| refused())
    }

    /// `token` encrypted again with the first key (rotation: after a new key is put first).
    pub fn rotate(&self, token: &str) -> Result<String> {
        Ok(self.encrypt(&self.decrypt(token)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Fernet specification's own vector (github.com/fernet/spec, generate.json).
    const SPEC_KEY: &str = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";
    const SPEC_TOKEN: &str =
        "gAAAAAAdwJ6wAAECAwQFBgcICQoLDA0ODy021cpGVWKZ_eEwCGM4BLLF_5CV9dOPmrhuVUPgJobwOz7JcbmrR64jVmpU4IwqDA==";

    #[test]
    fn the_specification_vector_encrypts_and_decrypts() {
        let key = Key::parse(SPEC_KEY).unwrap();
        let iv: [u8; 16] = std::array::from_fn(|i| i as u8);
        assert_eq!(key.encrypt(b"hello", 499162800, iv), SPEC_TOKEN);
        assert_eq!(Fernet::new(SPEC_KEY).unwrap().decrypt(SPEC_TOKEN).unwrap(), "hello");
    }

    #[test]
    fn a_token_from_pythons_cryptography_decrypts() {
        // Made with `cryptography.fernet.Fernet(SPEC_KEY).encrypt(...)` (what Airflow stores).
        let token = "gAAAAABrEwbZLNc79rTHcl4o76kOf_p6xbl9jzP1iL4EYzLij_27gpSW2m3X6Jk8AAcBrnVCkDyNQ8dFLlJFeGHbemcEXgQ67m5dGw0UWxCUma0z4BbOx142LHY7JUEejCq-z00cE8_S";
        assert_eq!(
            Fernet::new(SPEC_KEY).unwrap().decrypt(token).unwrap(),
            "pässword with 16+ bytes of text"
        );
    }

    #[test]
    fn round_trips_rotation_and_refusals() {
        let old = Fernet::generate_key();
        let new = Fernet::generate_key();
        let f_old = Fernet::new(&old).unwrap();
        for text in ["", "x", "exactly 16 bytes", &"long ".repeat(100)] {
            assert_eq!(f_old.decrypt(&f_old.encrypt(text)).unwrap(), text);
        }
        let token = f_old.encrypt("secret");
        let both = Fernet::new(&format!("{new}, {old}")).unwrap();
        assert_eq!(both.decrypt(&token).unwrap(), "secret");
        let rotated = both.rotate(&token).unwrap();
        assert_eq!(Fernet::new(&new).unwrap().decrypt(&rotated).unwrap(), "secret");
        assert!(
            f_old.decrypt(&rotated).is_err(),
            "the old key alone cannot read a rotated value"
        );
        // Altered tokens, garbage and bad keys are refused, never a panic.
        let mut bytes = URL_SAFE.decode(&token).unwrap();
        bytes[30] ^= 1;
        assert!(f_old.decrypt(&URL_SAFE.encode(&bytes)).is_err());
        for junk in ["", "gAAAAA", "not base64 !", &URL_SAFE.encode([0x80u8; 57])] {
            assert!(f_old.decrypt(junk).is_err(), "{junk}");
        }
        for bad in ["", "short", "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4", ",,"] {
            assert!(Fernet::new(bad).is_err(), "{bad}");
        }
    }
}
