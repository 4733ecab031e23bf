//! A small JSON-RPC over HTTP/1.1 client for probing nodes on this machine.
//!
//! Probes only ever talk to nodes the backend started, on loopback, so a plain request per call
//! (`Connection: close`) is enough; every call is bounded by a timeout.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{Error, Result};

/// Largest response body read (a block with many transactions fits easily).
const MAX_RESPONSE: usize = 16 * 1024 * 1024;

/// Calls `method` with `params` on the node at `url` (`http://host:port[/path]`).
pub async fn call(url: &str, method: &str, params: Value, timeout: Duration) -> Result<Value> {
    let fail = |reason: String| Error::Rpc {
        url: url.to_string(),
        method: method.to_string(),
        reason,
    };
    let (authority, path) = split_url(url).ok_or_else(|| fail("not an http:// URL".into()))?;
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).to_string();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let exchange = async {
        let mut stream = TcpStream::connect(authority)
            .await
            .map_err(|e| fail(format!("cannot connect: {e}")))?;
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|e| fail(format!("cannot send: {e}")))?;
        let mut response = Vec::new();
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let read = stream
                .read(&mut chunk)
                .await
                .map_err(|e| fail(format!("cannot read: {e}")))?;
            if read == 0 {
                break;
            }
            response.extend_from_slice(&chunk[..read]);
            if response.len() > MAX_RESPONSE {
                return Err(fail(format!("response larger than {MAX_RESPONSE} bytes")));
            }
        }
        Ok(response)
    };
    let response = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| fail(format!("no answer within {timeout:?}")))??;
    let body = http_body(&response).map_err(fail)?;
    let reply: Value = serde_json::from_slice(&body).map_err(|e| fail(format!("response is not JSON: {e}")))?;
    if let Some(error) = reply.get("error").filter(|e| !e.is_null()) {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| error.to_string());
        return Err(fail(message));
    }
    Ok(reply.get("result").cloned().unwrap_or(Value::Null))
}

/// A JSON-RPC quantity (`"0x1a"`) as a number.
pub fn quantity(value: &Value) -> Option<u64> {
    let text = value.as_str()?;
    let digits = text.strip_prefix("0x")?;
    if digits.is_empty() {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// `host:port` and the path of an `http://` URL.
fn split_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("http://")?;
    match rest.find('/') {
        Some(slash) => Some((&rest[..slash], &rest[slash..])),
        None => Some((rest, "/")),
    }
}

/// The body of a raw HTTP/1.x response, de-chunked; an error for non-2xx statuses.
fn http_body(response: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let header_end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("truncated HTTP response")?;
    let head = String::from_utf8_lossy(&response[..header_end]);
    let body = &response[header_end + 4..];
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad HTTP status line `{status_line}`"))?;
    let chunked = lines.any(|line| {
        let lower = line.to_ascii_lowercase();
        lower.starts_with("transfer-encoding:") && lower.contains("chunked")
    });
    let body = if chunked { dechunk(body)? } else { body.to_vec() };
    if !(200..300).contains(&status) {
        let text: String = String::from_utf8_lossy(&body).chars().take(200).collect();
        return Err(format!("HTTP {status}: {}", text.trim()));
    }
    Ok(body)
}

fn dechunk(mut data: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("truncated chunked body")?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size_hex = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16).map_err(|_| format!("bad chunk size `{size_hex}`"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if data.len() < size {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_bodies() {
        let plain = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}";
        assert_eq!(http_body(plain).unwrap(), b"{}");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n5\r\n\":1}\n\r\n0\r\n\r\n";
        assert_eq!(http_body(chunked).unwrap(), b"{\"a\":1}\n");
        let error = b"HTTP/1.1 403 Forbidden\r\n\r\ninvalid host";
        assert!(http_body(error).unwrap_err().contains("403"));
        assert!(http_body(b"HTTP/1.1 200").is_err());
    }

    #[test]
    fn urls_and_quantities() {
        assert_eq!(split_url("http://127.0.0.1:8545"), Some(("127.0.0.1:8545", "/")));
        assert_eq!(split_url("http://h:1/rpc"), Some(("h:1", "/rpc")));
        assert_eq!(split_url("ws://h:1"), None);
        assert_eq!(quantity(&json!("0x1a")), Some(26));
        assert_eq!(quantity(&json!("0x")), None);
        assert_eq!(quantity(&json!(5)), None);
    }
}
