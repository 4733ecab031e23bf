//! Airflow's variables and connections, and what keeps them secret: values are encrypted at rest with a
//! Fernet key that is not in the database ([`fernet`]), names like `password` or `token` mark values that are
//! masked wherever they are shown ([`is_sensitive`]), and connections read and write Airflow's URI form
//! ([`uri`]).

pub mod fernet;
mod uri;
mod vault;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

pub use fernet::Fernet;
pub use uri::encode as percent_encode;
pub use vault::Vault;

use crate::{Error, Result};

/// Key names whose values are secrets, as Airflow's `DEFAULT_SENSITIVE_FIELDS` (a key containing one, in any
/// case, is sensitive).
pub const SENSITIVE_NAMES: &[&str] = &[
    "access_token",
    "api_key",
    "apikey",
    "authorization",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "secret",
    "token",
    "keyfile_dict",
    "service_account",
];

/// What a hidden value is shown as.
pub const MASK: &str = "***";

/// Whether values under `name` are secret (a variable key, a connection extra field, a conf key).
pub fn is_sensitive(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    SENSITIVE_NAMES.iter().any(|s| name.contains(s))
}

/// `value` with everything under sensitive keys (at any depth) replaced by [`MASK`].
pub fn mask_json(value: &Json) -> Json {
    match value {
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_sensitive(k) {
                        Json::String(MASK.into())
                    } else {
                        mask_json(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.iter().map(mask_json).collect()),
        other => other.clone(),
    }
}

/// Every text and number in `value` (all of it is secret).
fn leaves(value: &Json, out: &mut Vec<String>) {
    match value {
        Json::String(text) => out.push(text.clone()),
        Json::Number(n) => out.push(n.to_string()),
        Json::Array(items) => items.iter().for_each(|v| leaves(v, out)),
        Json::Object(map) => map.values().for_each(|v| leaves(v, out)),
        _ => {}
    }
}

/// The texts under sensitive keys of `value`, at any depth (a mapping under a sensitive key is secret as a
/// whole): what a log must never show of conf, params or a JSON variable.
pub fn sensitive_json_values(value: &Json) -> Vec<String> {
    fn walk(value: &Json, out: &mut Vec<String>) {
        match value {
            Json::Object(map) => {
                for (key, value) in map {
                    if is_sensitive(key) {
                        leaves(value, out);
                    } else {
                        walk(value, out);
                    }
                }
            }
            Json::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, &mut out);
    out
}

/// `new` with every `***` that stands where `old` had a secret (under a sensitive key, or the whole value
/// when `whole` is secret) put back to `old`'s value: what someone who saw the masked form sends back keeps
/// the secrets (as Airflow's masker merges).
pub fn unmask_json(new: &Json, old: &Json, whole: bool) -> Json {
    match (new, old) {
        (Json::String(m), _) if m == MASK && whole => old.clone(),
        (Json::Object(n), Json::Object(o)) => Json::Object(
            n.iter()
                .map(|(k, v)| {
                    let v = match o.get(k) {
                        Some(before) => unmask_json(v, before, whole || is_sensitive(k)),
                        None => v.clone(),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        (Json::Array(n), Json::Array(o)) if n.len() == o.len() => {
            Json::Array(n.iter().zip(o).map(|(a, b)| unmask_json(a, b, whole)).collect())
        }
        _ => new.clone(),
    }
}

/// Airflow's limit on a variable key.
pub const MAX_VARIABLE_KEY: usize = 250;
/// Airflow's limit on a connection id.
pub const MAX_CONN_ID: usize = 200;
/// The largest value or extra kept (a variable is configuration, not a blob store).
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// A variable with its value in clear.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Variable {
    pub key: String,
    pub value: String,
    #[serde(default)]
    pub description: Option<String>,
}

impl Variable {
    /// Refuses keys and values Airflow would not take (and values over [`MAX_VALUE_BYTES`]).
    pub fn check(&self) -> Result<()> {
        if self.key.trim().is_empty() || self.key.len() > MAX_VARIABLE_KEY {
            return Err(Error::invalid(format!(
                "a variable key is 1 to {MAX_VARIABLE_KEY} characters"
            )));
        }
        if self.key.chars().any(char::is_control) {
            return Err(Error::invalid("a variable key cannot hold control characters"));
        }
        if self.value.len() > MAX_VALUE_BYTES {
            return Err(Error::invalid(format!(
                "variable `{}`: a value is at most {MAX_VALUE_BYTES} bytes",
                self.key
            )));
        }
        Ok(())
    }

    /// Whether its value is a secret (by its key's name, as Airflow decides).
    pub fn is_sensitive(&self) -> bool {
        is_sensitive(&self.key)
    }

    /// The values that must never reach a log: the whole value (and each part of it, if JSON) under a
    /// sensitive key; else the parts of a JSON value under sensitive keys.
    pub fn secret_values(&self) -> Vec<String> {
        let parsed = serde_json::from_str::<Json>(&self.value).ok();
        let mut out = Vec::new();
        if self.is_sensitive() {
            out.push(self.value.clone());
            if let Some(json) = &parsed {
                leaves(json, &mut out);
            }
        } else if let Some(json) = &parsed {
            out.extend(sensitive_json_values(json));
        }
        out
    }

    /// The value as shown to someone who may not see secrets.
    pub fn shown_value(&self, show_secrets: bool) -> &str {
        if self.is_sensitive() && !show_secrets {
            MASK
        } else {
            &self.value
        }
    }
}

/// A connection with its password and extra in clear.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    pub conn_id: String,
    pub conn_type: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub host: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
    #[serde(default)]
    pub login: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub port: Option<i64>,
    /// A JSON object, as text (Airflow's `extra`).
    #[serde(default)]
    pub extra: Option<String>,
}

impl Connection {
    /// Refuses what Airflow's API refuses: ids outside `^[\w.-]+$` or over 200 characters, an empty type, a
    /// port outside 0-65535, an `extra` that is not a JSON object.
    pub fn check(&self) -> Result<()> {
        let id_ok = !self.conn_id.is_empty()
            && self.conn_id.len() <= MAX_CONN_ID
            && self
                .conn_id
                .chars()
                .all(|c| c.is_alphanumeric() || c == '_' || c == '.' || c == '-');
        if !id_ok {
            return Err(Error::invalid(format!(
                "`{}` is not a connection id: 1 to {MAX_CONN_ID} letters, digits, `_`, `.` or `-`",
                self.conn_id.chars().take(60).collect::<String>()
            )));
        }
        if self.conn_type.trim().is_empty() || self.conn_type.len() > 500 {
            return Err(Error::invalid(format!(
                "connection `{}`: conn_type is 1 to 500 characters",
                self.conn_id
            )));
        }
        if self.port.is_some_and(|p| !(0..=65535).contains(&p)) {
            return Err(Error::invalid(format!(
                "connection `{}`: a port is 0 to 65535",
                self.conn_id
            )));
        }
        let total: usize = [
            &self.host,
            &self.schema,
            &self.login,
            &self.password,
            &self.extra,
            &self.description,
        ]
        .iter()
        .filter_map(|f| f.as_ref().map(String::len))
        .sum();
        if total > MAX_VALUE_BYTES {
            return Err(Error::invalid(format!(
                "connection `{}`: its fields are at most {MAX_VALUE_BYTES} bytes together",
                self.conn_id
            )));
        }
        if let Some(extra) = &self.extra {
            if !extra.trim().is_empty() && !matches!(serde_json::from_str::<Json>(extra), Ok(Json::Object(_))) {
                return Err(Error::invalid(format!(
                    "connection `{}`: extra must be a JSON object",
                    self.conn_id
                )));
            }
        }
        Ok(())
    }

    /// `extra` parsed (Airflow's `extra_dejson`): an empty object when there is none.
    pub fn extra_dejson(&self) -> Json {
        self.extra
            .as_deref()
            .filter(|e| !e.trim().is_empty())
            .and_then(|e| serde_json::from_str(e).ok())
            .unwrap_or_else(|| Json::Object(Default::default()))
    }

    /// The connection as shown to someone who may not see secrets: the password and sensitive extra fields
    /// as [`MASK`].
    pub fn shown(&self, show_secrets: bool) -> Connection {
        if show_secrets {
            return self.clone();
        }
        let mut shown = self.clone();
        shown.password = shown.password.as_ref().map(|_| MASK.to_string());
        if shown.extra.as_deref().is_some_and(|e| !e.trim().is_empty()) {
            shown.extra = Some(mask_json(&self.extra_dejson()).to_string());
        }
        shown
    }

    /// The values that must never reach a log: the password (also percent-encoded, as `rpc_url` and URIs
    /// carry it) and sensitive extra fields.
    pub fn secret_values(&self) -> Vec<String> {
        let mut out: Vec<String> = self.password.iter().cloned().collect();
        if let Some(password) = &self.password {
            let encoded = uri::encode(password);
            if &encoded != password {
                out.push(encoded);
            }
        }
        out.extend(sensitive_json_values(&self.extra_dejson()));
        out
    }

    /// The endpoint of an `ethereum` connection: `extra.url` (or `extra.rpc_url`) if set, else
    /// `schema://host:port` (schema `http` unless given) with the login and password as basic auth.
    pub fn rpc_url(&self) -> Result<String> {
        let extra = self.extra_dejson();
        for key in ["url", "rpc_url"] {
            if let Some(url) = extra.get(key).and_then(Json::as_str) {
                return Ok(url.to_string());
            }
        }
        let host = self.host.as_deref().filter(|h| !h.is_empty()).ok_or_else(|| {
            Error::invalid(format!(
                "connection `{}` has neither a host nor `url` in its extra",
                self.conn_id
            ))
        })?;
        if host.contains("://") {
            return Ok(host.to_string());
        }
        let scheme = self.schema.as_deref().filter(|s| !s.is_empty()).unwrap_or("http");
        let auth = match (&self.login, &self.password) {
            (Some(l), Some(p)) if !l.is_empty() => format!("{}:{}@", uri::encode(l), uri::encode(p)),
            (Some(l), None) if !l.is_empty() => format!("{}@", uri::encode(l)),
            _ => String::new(),
        };
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        Ok(format!("{scheme}://{auth}{host}{port}"))
    }

    /// Reads Airflow's connection URI (`type://login:password@host:port/schema?extra=...`).
    pub fn from_uri(conn_id: &str, text: &str) -> Result<Connection> {
        let mut conn = uri::parse(text)?;
        conn.conn_id = conn_id.to_string();
        conn.check()?;
        Ok(conn)
    }

    /// Airflow's connection URI of this connection.
    pub fn to_uri(&self) -> String {
        uri::render(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_mark_secrets_and_masking_hides_them() {
        assert!(is_sensitive("DB_PASSWORD") && is_sensitive("api_token") && is_sensitive("my_secret_x"));
        assert!(!is_sensitive("rpc_host") && !is_sensitive("chain_id"));
        let v = Variable {
            key: "deploy_private_key".into(),
            value: "0xabc".into(),
            description: None,
        };
        assert_eq!(v.shown_value(false), MASK);
        assert_eq!(v.shown_value(true), "0xabc");
        let c = Connection {
            conn_id: "rpc".into(),
            conn_type: "ethereum".into(),
            password: Some("hunter22".into()),
            extra: Some(r#"{"chain_id": 1337, "auth": {"api_key": "k-123456"}, "headers": {"x": "y"}}"#.into()),
            ..Default::default()
        };
        let shown = c.shown(false);
        assert_eq!(shown.password.as_deref(), Some(MASK));
        let extra: Json = serde_json::from_str(shown.extra.as_deref().unwrap()).unwrap();
        assert_eq!(extra["auth"]["api_key"], MASK);
        assert_eq!(extra["chain_id"], 1337);
        let mut secrets = c.secret_values();
        secrets.sort();
        assert_eq!(secrets, ["hunter22", "k-123456"]);
    }

    #[test]
    fn connections_are_checked_as_airflow_checks_them() {
        let ok = Connection {
            conn_id: "my_rpc.v1-a".into(),
            conn_type: "ethereum".into(),
            ..Default::default()
        };
        ok.check().unwrap();
        for (id, ty, port, extra) in [
            ("", "http", None, None),
            ("a/b", "http", None, None),
            ("a", "", None, None),
            ("a", "http", Some(70000), None),
            ("a", "http", None, Some("[1]")),
            ("a", "http", None, Some("{not json")),
        ] {
            let c = Connection {
                conn_id: id.into(),
                conn_type: ty.into(),
                port,
                extra: extra.map(str::to_string),
                ..Default::default()
            };
            assert!(c.check().is_err(), "{c:?}");
        }
    }

    #[test]
    fn an_ethereum_connection_gives_its_rpc_url() {
        let mut c = Connection {
            conn_id: "rpc".into(),
            conn_type: "ethereum".into(),
            host: Some("127.0.0.1".into()),
            port: Some(8545),
            ..Default::default()
        };
        assert_eq!(c.rpc_url().unwrap(), "http://127.0.0.1:8545");
        c.schema = Some("https".into());
        c.login = Some("user".into());
        c.password = Some("p@ss".into());
        assert_eq!(c.rpc_url().unwrap(), "https://user:p%40ss@127.0.0.1:8545");
        c.extra = Some(r#"{"url": "http://node:8545/rpc"}"#.into());
        assert_eq!(c.rpc_url().unwrap(), "http://node:8545/rpc");
        c.extra = None;
        c.host = None;
        assert!(c.rpc_url().is_err());
    }
}
