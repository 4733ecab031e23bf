//! Who is asking and what they may do: roles, local passwords (argon2id hashes only), signed tokens (HS256
//! JWTs for the API and for the UI's session cookie), CSRF tokens bound to a session.

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::Utc;
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Airflow's roles, weakest first: each one may do everything the ones before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Reads DAGs, runs, task instances, logs, pools, the audit log.
    Viewer,
    /// Also triggers, pauses, clears and marks runs and tasks.
    User,
    /// Also manages pools.
    Op,
    /// Everything, including users.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::User, Role::Op, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "Viewer",
            Role::User => "User",
            Role::Op => "Op",
            Role::Admin => "Admin",
        }
    }

    /// Parses a role name, ignoring case.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a signed token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub iat: i64,
    pub exp: i64,
    /// Token id: also the session id that CSRF tokens are bound to.
    pub jti: String,
    /// `api` for bearer tokens, `session` for the UI cookie.
    pub kind: String,
}

/// The server's signing key (HMAC-SHA256), from a configured secret or a file in the data dir.
#[derive(Clone)]
pub struct Keys {
    secret: Vec<u8>,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Keys(<secret>)")
    }
}

type HmacSha256 = Hmac<Sha256>;

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TokenError::Malformed => "the token is malformed",
            TokenError::BadSignature => "the token's signature is invalid",
            TokenError::Expired => "the token has expired",
        })
    }
}

impl Keys {
    /// A key from a configured secret (at least 16 bytes).
    pub fn from_secret(secret: &str) -> Result<Keys> {
        anyhow::ensure!(secret.len() >= 16, "the signing secret must be at least 16 characters");
        Ok(Keys {
            secret: secret.as_bytes().to_vec(),
        })
    }

    /// The key stored at `path`, created (32 random bytes, mode 0600) when missing.
    pub fn load_or_create(path: &Path) -> Result<Keys> {
        match std::fs::read_to_string(path) {
            Ok(text) if text.trim().len() >= 32 => {
                return Ok(Keys {
                    secret: text.trim().as_bytes().to_vec(),
                })
            }
            Ok(_) => anyhow::bail!("signing key file {} is too short", path.display()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("cannot read signing key {}", path.display())),
        }
        let mut bytes = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut bytes);
        let text = hex::encode(bytes);
        write_private(path, &text)?;
        Ok(Keys {
            secret: text.into_bytes(),
        })
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }

    /// Signs claims as a compact HS256 JWT.
    pub fn encode(&self, claims: &Claims) -> String {
        self.encode_json(claims)
    }

    /// Signs any claims as a compact HS256 JWT.
    pub fn encode_json<T: Serialize>(&self, claims: &T) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let signature = URL_SAFE_NO_PAD.encode(self.mac(signing_input.as_bytes()));
        format!("{signing_input}.{signature}")
    }

    /// Checks a JWT's algorithm, signature and expiry, and returns its claims.
    pub fn decode(&self, token: &str) -> Result<Claims, TokenError> {
        self.decode_json(token)
    }

    /// Checks a JWT's algorithm, signature and `exp`, and reads its claims as `T`.
    pub fn decode_json<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, TokenError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let header: serde_json::Value = URL_SAFE_NO_PAD
            .decode(header)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or(TokenError::Malformed)?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err(TokenError::BadSignature);
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(format!("{}.{payload}", token.split('.').next().unwrap_or_default()).as_bytes());
        mac.verify_slice(&signature).map_err(|_| TokenError::BadSignature)?;
        let claims: serde_json::Value = URL_SAFE_NO_PAD
            .decode(payload)
            .ok()
            .and_then(|p| serde_json::from_slice(&p).ok())
            .ok_or(TokenError::Malformed)?;
        let exp = claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
            .ok_or(TokenError::Malformed)?;
        if exp <= Utc::now().timestamp() {
            return Err(TokenError::Expired);
        }
        serde_json::from_value(claims).map_err(|_| TokenError::Malformed)
    }

    /// New claims for `username` with `role`, valid for `ttl_secs`.
    pub fn issue(&self, username: &str, role: Role, kind: &str, ttl_secs: i64) -> (String, Claims) {
        let now = Utc::now().timestamp();
        let claims = Claims {
            sub: username.to_string(),
            role,
            iat: now,
            exp: now + ttl_secs,
            jti: random_token(16),
            kind: kind.to_string(),
        };
        (self.encode(&claims), claims)
    }

    /// The CSRF token of a session: an HMAC of its id, so nothing needs storing.
    pub fn csrf_token(&self, session_id: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(format!("csrf:{session_id}").as_bytes()))
    }

    /// Constant-time check of a CSRF token.
    pub fn csrf_ok(&self, session_id: &str, token: &str) -> bool {
        let Ok(given) = URL_SAFE_NO_PAD.decode(token.trim()) else {
            return false;
        };
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(format!("csrf:{session_id}").as_bytes());
        mac.verify_slice(&given).is_ok()
    }

    /// Signs a short value (the OIDC login state cookie) as `value.signature`.
    pub fn sign_value(&self, value: &str) -> String {
        format!(
            "{value}.{}",
            URL_SAFE_NO_PAD.encode(self.mac(format!("value:{value}").as_bytes()))
        )
    }

    /// The value of a [`Keys::sign_value`] string, if its signature holds.
    pub fn verify_value(&self, signed: &str) -> Option<String> {
        let (value, signature) = signed.rsplit_once('.')?;
        let given = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = HmacSha256::new_from_slice(&self.secret).ok()?;
        mac.update(format!("value:{value}").as_bytes());
        mac.verify_slice(&given).ok()?;
        Some(value.to_string())
    }
}

/// Random URL-safe text from `bytes` random bytes.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// A password people can type: 20 characters from an unambiguous alphabet (~115 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKMNPQRSTUVWXYZ23456789";
    let mut buf = [0u8; 20];
    rand::thread_rng().fill_bytes(&mut buf);
    buf.iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// An argon2id hash of a password, as a PHC string.
pub fn hash_password(password: &str) -> Result<String> {
    let mut salt = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("cannot encode salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("cannot hash password: {e}"))?
        .to_string())
}

/// Whether `password` matches a PHC hash.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|parsed| Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
        .unwrap_or(false)
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // `mode` applies only to a file created here: one that was there keeps its bits unless set.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .with_context(|| format!("cannot make {} private", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let keys = Keys::from_secret("0123456789abcdef0123").unwrap();
        let (token, claims) = keys.issue("alice", Role::Op, "api", 60);
        assert_eq!(keys.decode(&token).unwrap(), claims);
        // Another key, a changed payload, a truncated token and alg=none are all refused.
        let other = Keys::from_secret("another-secret-of-16+").unwrap();
        assert_eq!(other.decode(&token), Err(TokenError::BadSignature));
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut forged = claims.clone();
        forged.role = Role::Admin;
        parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(keys.decode(&parts.join(".")), Err(TokenError::BadSignature));
        assert_eq!(keys.decode("a.b"), Err(TokenError::Malformed));
        let none = format!("{}.{}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#), parts[1]);
        assert_eq!(keys.decode(&none), Err(TokenError::BadSignature));
        let (expired, _) = keys.issue("alice", Role::Op, "api", -1);
        assert_eq!(keys.decode(&expired), Err(TokenError::Expired));
    }

    #[test]
    fn passwords_hash_with_salt_and_verify() {
        let a = hash_password("correct horse").unwrap();
        let b = hash_password("correct horse").unwrap();
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &a));
        assert!(!verify_password("wrong", &a));
        assert!(!verify_password("correct horse", "not a hash"));
        assert_eq!(generate_password().len(), 20);
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session() {
        let keys = Keys::from_secret("0123456789abcdef0123").unwrap();
        let token = keys.csrf_token("session-1");
        assert!(keys.csrf_ok("session-1", &token));
        assert!(!keys.csrf_ok("session-2", &token));
        assert!(!keys.csrf_ok("session-1", "garbage"));
        let signed = keys.sign_value("state-xyz");
        assert_eq!(keys.verify_value(&signed).as_deref(), Some("state-xyz"));
        assert_eq!(keys.verify_value(&signed.replace("xyz", "xyw")), None);
    }

    #[test]
    fn roles_are_ordered_and_parse_any_case() {
        assert!(Role::Viewer < Role::User && Role::User < Role::Op && Role::Op < Role::Admin);
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert_eq!(Role::parse("Public"), None);
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jwt_secret");
        let keys = Keys::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (token, _) = keys.issue("a", Role::Viewer, "api", 60);
        assert!(Keys::load_or_create(&path).unwrap().decode(&token).is_ok());
    }
}
