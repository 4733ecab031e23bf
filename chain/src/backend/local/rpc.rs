//! JSON-RPC to the nodes on this machine: alloy's provider over its reqwest HTTP transport.
//!
//! Probes only ever talk to nodes the backend started, on loopback, so the HTTP client uses no proxy
//! and every call is bounded by a timeout (the reqwest client's, and the whole call's).
//! Typed calls use alloy's methods; client-specific methods (`miner_start`, `clique_*`, ...) go
//! through [`NodeRpc::call`] as plain JSON.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use alloy_provider::ext::NetApi;
use alloy_provider::transport::{RpcError, TransportError, TransportErrorKind};
use alloy_provider::{Provider, RootProvider};
use alloy_rpc_client::RpcClient;
use alloy_transport_http::Http;
use serde_json::Value;

use engine::error::chain_of;

use crate::error::{Error, Result};

/// Longest excerpt of an HTTP error body kept in an error message.
const BODY_EXCERPT: usize = 200;

/// A JSON-RPC client for one node, reusing its connection between calls.
#[derive(Debug, Clone)]
pub struct NodeRpc {
    url: String,
    timeout: Duration,
    /// The provider, or why `url` cannot have one (reported by every call, as a failed call).
    provider: std::result::Result<RootProvider, String>,
}

impl NodeRpc {
    /// A client for the node at `url` (`http://host:port[/path]`) whose calls each take at most `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Self {
        Self {
            url: url.to_string(),
            timeout,
            provider: provider(url, timeout),
        }
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `eth_blockNumber`: the node's head.
    pub async fn block_number(&self) -> Result<u64> {
        self.bounded("eth_blockNumber", |p| async move { p.get_block_number().await })
            .await
    }

    /// `net_peerCount`: how many peers the node has.
    pub async fn peer_count(&self) -> Result<u64> {
        self.bounded("net_peerCount", |p| async move { p.net_peer_count().await })
            .await
    }

    /// `eth_chainId`: the node's chain id.
    pub async fn chain_id(&self) -> Result<u64> {
        self.bounded("eth_chainId", |p| async move { p.get_chain_id().await })
            .await
    }

    /// Calls `method` with `params` (a JSON array, or `null` for none) and returns its JSON result.
    pub async fn call(&self, method: &str, params: Value) -> Result<Value> {
        let name = Cow::Owned(method.to_string());
        self.bounded(method, |p| async move { p.raw_request::<_, Value>(name, params).await })
            .await
    }

    /// Runs one call on the provider within the timeout, turning failures into [`Error::Rpc`].
    async fn bounded<'a, T, F, Fut>(&'a self, method: &str, call: F) -> Result<T>
    where
        F: FnOnce(&'a RootProvider) -> Fut,
        Fut: Future<Output = std::result::Result<T, TransportError>>,
    {
        let fail = |reason: String| Error::Rpc {
            url: self.url.clone(),
            method: method.to_string(),
            reason,
        };
        let provider = self.provider.as_ref().map_err(|reason| fail(reason.clone()))?;
        match tokio::time::timeout(self.timeout, call(provider)).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(fail(reason(&err, self.timeout))),
            Err(_) => Err(fail(no_answer(self.timeout))),
        }
    }
}

/// Calls `method` with `params` on the node at `url` (`http://host:port[/path]`), within `timeout`.
///
/// A one-off call; a caller that probes the same node repeatedly keeps a [`NodeRpc`].
pub async fn call(url: &str, method: &str, params: Value, timeout: Duration) -> Result<Value> {
    NodeRpc::new(url, timeout).call(method, params).await
}

/// Follows a node's `newHeads` subscription over its WebSocket `url` until `stop`, or until `each` returns
/// false: `each` gets every message's text and when it arrived. A subscription that fails or closes is opened
/// again a second later.
pub async fn follow_new_heads(
    url: &str,
    stop: &tokio_util::sync::CancellationToken,
    mut each: impl FnMut(&str, std::time::Instant) -> bool,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    while !stop.is_cancelled() {
        let connected = tokio::time::timeout(Duration::from_secs(5), tokio_tungstenite::connect_async(url)).await;
        if let Ok(Ok((mut socket, _))) = connected {
            let request = r#"{"jsonrpc":"2.0","id":1,"method":"eth_subscribe","params":["newHeads"]}"#;
            if socket.send(Message::text(request)).await.is_ok() {
                loop {
                    let message = tokio::select! {
                        _ = stop.cancelled() => return,
                        message = socket.next() => message,
                    };
                    let Some(Ok(message)) = message else { break };
                    let Ok(text) = message.to_text() else { continue };
                    if !each(text, std::time::Instant::now()) {
                        return;
                    }
                }
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
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

/// An HTTP provider for `url`: no proxy (the nodes are on loopback), every request bounded by `timeout`.
fn provider(url: &str, timeout: Duration) -> std::result::Result<RootProvider, String> {
    let parsed = reqwest::Url::parse(url)
        .ok()
        .filter(|u| u.scheme() == "http" && u.host().is_some())
        .ok_or_else(|| "not an http:// URL".to_string())?;
    let client = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(timeout)
        .timeout(timeout)
        .build()
        .map_err(|e| format!("cannot make an HTTP client: {}", chain_of(&e)))?;
    Ok(RootProvider::new(RpcClient::new(
        Http::with_client(client, parsed),
        true,
    )))
}

fn no_answer(timeout: Duration) -> String {
    format!("no answer within {timeout:?}")
}

/// Why a call failed, briefly: the node's own JSON-RPC error
/// message, `HTTP <status>: <body>`, `cannot connect: ...`, `no answer within ...`.
fn reason(err: &TransportError, timeout: Duration) -> String {
    match err {
        RpcError::ErrorResp(payload) => payload.message.to_string(),
        RpcError::Transport(TransportErrorKind::HttpError(http)) => {
            let body: String = http.body.chars().take(BODY_EXCERPT).collect();
            format!("HTTP {}: {}", http.status, body.trim())
        }
        RpcError::Transport(TransportErrorKind::Custom(inner)) => match inner.downcast_ref::<reqwest::Error>() {
            Some(e) if e.is_timeout() => no_answer(timeout),
            Some(e) if e.is_connect() => format!("cannot connect: {}", root_cause(e)),
            _ => chain_of(inner.as_ref()),
        },
        RpcError::DeserError { err, text } => {
            let text: String = text.chars().take(BODY_EXCERPT).collect();
            format!("unexpected response ({err}): {}", text.trim())
        }
        other => chain_of(other),
    }
}

/// The innermost source of an error (for a refused connection: `Connection refused (os error 111)`).
fn root_cause(err: &(dyn StdError + 'static)) -> String {
    let mut current = err;
    while let Some(inner) = current.source() {
        current = inner;
    }
    current.to_string()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(2);

    /// A loopback HTTP server answering each request with `reply(request body)`; `None` never answers.
    async fn server(reply: fn(&Value) -> Option<(u16, String)>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(async move {
                    let mut data = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(read) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if read == 0 {
                            return;
                        }
                        data.extend_from_slice(&chunk[..read]);
                        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
                        let length: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse().ok())
                            .unwrap_or(0);
                        if data.len() < end + 4 + length {
                            continue;
                        }
                        let request: Value = serde_json::from_slice(&data[end + 4..end + 4 + length]).unwrap();
                        data.drain(..end + 4 + length);
                        let Some((status, body)) = reply(&request) else {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        };
                        let response = format!(
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if stream.write_all(response.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        url
    }

    fn result(request: &Value, result: Value) -> Option<(u16, String)> {
        Some((
            200,
            json!({"jsonrpc": "2.0", "id": request["id"], "result": result}).to_string(),
        ))
    }

    fn node(request: &Value) -> Option<(u16, String)> {
        match request["method"].as_str().unwrap() {
            "eth_blockNumber" => result(request, json!("0x1a")),
            "net_peerCount" => result(request, json!("0x3")),
            "eth_chainId" => result(request, json!("0x1092")),
            "echo_params" => result(request, request["params"].clone()),
            "miner_start" => Some((
                200,
                json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": -32601, "message": "the method miner_start does not exist/is not available"}}).to_string(),
            )),
            "forbidden" => Some((403, "invalid host specified\n".into())),
            "garbage" => Some((200, "not json".into())),
            _ => None,
        }
    }

    #[tokio::test]
    async fn typed_and_raw_calls() {
        let url = server(node).await;
        let rpc = NodeRpc::new(&url, TIMEOUT);
        assert_eq!(rpc.block_number().await.unwrap(), 26);
        assert_eq!(rpc.peer_count().await.unwrap(), 3);
        assert_eq!(rpc.chain_id().await.unwrap(), 4242);
        let params = json!(["0xdead", "0x00"]);
        assert_eq!(rpc.call("echo_params", params.clone()).await.unwrap(), params);
        assert_eq!(call(&url, "echo_params", json!([]), TIMEOUT).await.unwrap(), json!([]));
    }

    #[tokio::test]
    async fn failures_name_the_call_and_the_reason() {
        let url = server(node).await;
        let rpc = NodeRpc::new(&url, TIMEOUT);
        let err = rpc.call("miner_start", json!([])).await.unwrap_err().to_string();
        assert_eq!(
            err,
            format!("JSON-RPC miner_start at {url}: the method miner_start does not exist/is not available")
        );
        let err = rpc.call("forbidden", json!([])).await.unwrap_err().to_string();
        assert_eq!(
            err,
            format!("JSON-RPC forbidden at {url}: HTTP 403: invalid host specified")
        );
        let err = rpc.call("garbage", json!([])).await.unwrap_err().to_string();
        assert!(err.contains("unexpected response") && err.contains("not json"), "{err}");
        let err = NodeRpc::new("ws://127.0.0.1:1", TIMEOUT)
            .block_number()
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(err, "JSON-RPC eth_blockNumber at ws://127.0.0.1:1: not an http:// URL");
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let err = NodeRpc::new(&format!("http://127.0.0.1:{port}"), TIMEOUT)
            .block_number()
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("eth_blockNumber") && err.contains("cannot connect: "),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_silent_node_is_bounded_by_the_timeout() {
        let url = server(node).await;
        let started = Instant::now();
        let err = NodeRpc::new(&url, Duration::from_millis(300))
            .call("hang", json!([]))
            .await
            .unwrap_err()
            .to_string();
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert!(err.ends_with("no answer within 300ms"), "{err}");
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity(&json!("0x1a")), Some(26));
        assert_eq!(quantity(&json!("0x")), None);
        assert_eq!(quantity(&json!(5)), None);
    }
}
