//! Airflow's connection URI: `conn-type://login:password@host:port/schema?key=value` (parts percent-encoded;
//! `_` in the type written as `-`; an extra that is not flat text as `?__extra__=<JSON>`), as
//! `airflow connections add --conn-uri` reads it and `Connection.get_uri()` writes it.

use serde_json::Value as Json;

use super::Connection;
use crate::{Error, Result};

/// Percent-encodes everything but unreserved characters (Python's `quote(s, safe="")`).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Undoes [`encode`] (and `+` as a space in query values when `plus` is set).
fn decode(text: &str, plus: bool) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = text
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| Error::invalid("a connection URI has a `%` not followed by two hex digits"))?;
                out.push(hex);
                i += 3;
            }
            b'+' if plus => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| Error::invalid("a connection URI decodes to text that is not UTF-8"))
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

pub(super) fn parse(text: &str) -> Result<Connection> {
    let (scheme, rest) = text
        .split_once("://")
        .ok_or_else(|| Error::invalid("a connection URI looks like `type://login:password@host:port/schema`"))?;
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-._".contains(c)) {
        return Err(Error::invalid(format!("`{scheme}` is not a connection type")));
    }
    let conn_type = match scheme.replace('-', "_").as_str() {
        "postgresql" => "postgres".to_string(),
        other => other.to_string(),
    };
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (rest, None),
    };
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (login, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((l, p)) => (non_empty(decode(l, false)?), Some(decode(p, false)?)),
            None => (non_empty(decode(u, false)?), None),
        },
        None => (None, None),
    };
    // `[v6 address]:port`, or `host:port`.
    let split = match hostport.strip_prefix('[') {
        Some(v6) => v6.split_once(']').map(|(h, p)| (h, p.strip_prefix(':'))),
        None => Some(match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }),
    };
    let (host, port) = split.ok_or_else(|| Error::invalid("a connection URI has an unclosed `[`"))?;
    let port = match port.filter(|p| !p.is_empty()) {
        Some(p) => Some(
            p.parse::<i64>()
                .map_err(|_| {
                    Error::invalid(
                        "a connection URI has a port that is not a number (a password with `/`, `?`, `#` or `@` must be percent-encoded)",
                    )
                })?,
        ),
        None => None,
    };
    let mut conn = Connection {
        conn_type,
        host: non_empty(decode(host, false)?),
        schema: match path {
            Some(p) => non_empty(decode(p, false)?),
            None => None,
        },
        login,
        password,
        port,
        ..Default::default()
    };
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        let mut extra = serde_json::Map::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let (k, v) = (decode(k, true)?, decode(v, true)?);
            if k == "__extra__" {
                conn.extra = Some(v);
                extra.clear();
                break;
            }
            extra.insert(k, Json::String(v));
        }
        if conn.extra.is_none() && !extra.is_empty() {
            conn.extra = Some(Json::Object(extra).to_string());
        }
    }
    Ok(conn)
}

pub(super) fn render(conn: &Connection) -> String {
    let mut uri = format!("{}://", conn.conn_type.replace('_', "-"));
    match (&conn.login, &conn.password) {
        (Some(l), Some(p)) => uri.push_str(&format!("{}:{}@", encode(l), encode(p))),
        (Some(l), None) => uri.push_str(&format!("{}@", encode(l))),
        (None, Some(p)) => uri.push_str(&format!(":{}@", encode(p))),
        (None, None) => {}
    }
    if let Some(host) = &conn.host {
        uri.push_str(&encode(host));
    }
    if let Some(port) = conn.port {
        uri.push_str(&format!(":{port}"));
    }
    if let Some(schema) = &conn.schema {
        uri.push('/');
        uri.push_str(&encode(schema));
    }
    let extra = conn.extra_dejson();
    if let Some(map) = extra.as_object().filter(|m| !m.is_empty()) {
        let flat: Option<Vec<String>> = map
            .iter()
            .map(|(k, v)| v.as_str().map(|v| format!("{}={}", encode(k), encode(v))))
            .collect();
        match flat {
            Some(pairs) => {
                uri.push('?');
                uri.push_str(&pairs.join("&"));
            }
            None => uri.push_str(&format!("?__extra__={}", encode(&extra.to_string()))),
        }
    }
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn airflow_uris_read_and_write() {
        let c = Connection::from_uri(
            "db",
            "postgresql://user%40corp:p%3Ass%2Fw@db.example:5432/the%20db?sslmode=require",
        )
        .unwrap();
        assert_eq!(c.conn_type, "postgres");
        assert_eq!(c.login.as_deref(), Some("user@corp"));
        assert_eq!(c.password.as_deref(), Some("p:ss/w"));
        assert_eq!(c.host.as_deref(), Some("db.example"));
        assert_eq!(c.port, Some(5432));
        assert_eq!(c.schema.as_deref(), Some("the db"));
        assert_eq!(c.extra_dejson()["sslmode"], "require");
        let back = Connection::from_uri("db", &c.to_uri()).unwrap();
        assert_eq!(back, c);

        let nested = Connection {
            conn_id: "rpc".into(),
            conn_type: "ethereum".into(),
            host: Some("127.0.0.1".into()),
            port: Some(8545),
            extra: Some(r#"{"chain_id":1337}"#.into()),
            ..Default::default()
        };
        let uri = nested.to_uri();
        assert!(uri.starts_with("ethereum://127.0.0.1:8545?__extra__="), "{uri}");
        assert_eq!(Connection::from_uri("rpc", &uri).unwrap(), nested);

        let typed = Connection::from_uri("x", "google-cloud-platform://").unwrap();
        assert_eq!(typed.conn_type, "google_cloud_platform");
        assert_eq!(typed.host, None);
        for bad in [
            "no scheme",
            "://host",
            "http://h:notaport",
            "http://h/%zz",
            "bad scheme!://h",
        ] {
            assert!(Connection::from_uri("x", bad).is_err(), "{bad}");
        }
    }
}
