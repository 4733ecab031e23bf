//! `malformed_rpc`: hostile requests one after another, the node asked for its head after each.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::alive;
use crate::chaos::verdict::Criterion;

/// One hostile request.
struct Hostile {
    name: &'static str,
    body: Vec<u8>,
    content_type: &'static str,
    /// Whether serving it (a JSON-RPC `result`) is a finding.
    must_refuse: bool,
}

fn hostile_requests() -> Vec<Hostile> {
    let json = "application/json";
    let padding = "a".repeat(16 << 20);
    let batch: Vec<Value> = (0..10_000)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_blockNumber", "params": []}))
        .collect();
    let h = |name, body: Vec<u8>, content_type, must_refuse| Hostile {
        name,
        body,
        content_type,
        must_refuse,
    };
    vec![
        h("not_json", b"this is not json".to_vec(), json, true),
        h(
            "truncated",
            br#"{"jsonrpc":"2.0","id":1,"method":"eth_block"#.to_vec(),
            json,
            true,
        ),
        h("nested_100k", "[".repeat(100_000).into_bytes(), json, true),
        h(
            "oversized_16mib",
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":["{padding}"]}}"#).into_bytes(),
            json,
            true,
        ),
        h("batch_10k", serde_json::to_vec(&batch).unwrap_or_default(), json, false),
        h(
            "method_1mib",
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"{}","params":[]}}"#,
                "x".repeat(1 << 20)
            )
            .into_bytes(),
            json,
            true,
        ),
        h(
            "wrong_types",
            br#"{"jsonrpc":"2.0","id":{"a":[1,2]},"method":42,"params":"x"}"#.to_vec(),
            json,
            true,
        ),
        h(
            "huge_block_number",
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x{}",false]}}"#,
                "f".repeat(10_000)
            )
            .into_bytes(),
            json,
            true,
        ),
        h(
            "not_utf8",
            vec![0xff, 0xfe, 0x7b, 0x22, 0xc3, 0x28, 0xa0, 0xa1],
            json,
            true,
        ),
        h("empty", Vec::new(), json, true),
        h(
            "wrong_content_type",
            br#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#.to_vec(),
            "text/plain",
            true,
        ),
    ]
}

/// How a node answered one hostile request.
#[derive(Debug, Clone, Serialize)]
struct Answer {
    request: &'static str,
    bytes: usize,
    /// The HTTP status, or the transport error.
    status: Option<u16>,
    error: Option<String>,
    /// Whether the answer held a JSON-RPC `result` (the request was served).
    served: bool,
    ms: f64,
    alive_after: bool,
}

pub(super) async fn run(
    nodes: &[(String, String)],
    cancel: &CancellationToken,
    progress: crate::backend::Progress<'_>,
) -> (Value, Vec<Criterion>) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_default();
    let requests = hostile_requests();
    let mut answers: BTreeMap<String, Vec<Answer>> = BTreeMap::new();
    let mut down = Vec::new();
    let mut served = Vec::new();
    for (name, url) in nodes {
        progress(&format!("malformed_rpc: {} hostile requests to {name}", requests.len()));
        for req in &requests {
            if cancel.is_cancelled() {
                break;
            }
            let began = Instant::now();
            let sent = http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, req.content_type)
                .body(req.body.clone())
                .send()
                .await;
            let (status, error, was_served) = match sent {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body = resp.bytes().await.unwrap_or_default();
                    let value: Option<Value> = serde_json::from_slice(&body).ok();
                    let has_result = |v: &Value| v.get("result").is_some();
                    let was_served = (200..300).contains(&status)
                        && value.as_ref().is_some_and(|v| match v {
                            Value::Array(items) => items.iter().any(has_result),
                            other => has_result(other),
                        });
                    (Some(status), None, was_served)
                }
                Err(e) => (None, Some(e.without_url().to_string()), false),
            };
            let ms = began.elapsed().as_secs_f64() * 1e3;
            let alive_after = alive(url, Duration::from_secs(10)).await;
            if !alive_after {
                down.push(format!("{name} after {}", req.name));
            }
            if was_served && req.must_refuse {
                served.push(format!("{name}: {}", req.name));
            }
            answers.entry(name.clone()).or_default().push(Answer {
                request: req.name,
                bytes: req.body.len(),
                status,
                error,
                served: was_served,
                ms,
                alive_after,
            });
            if !alive_after {
                break;
            }
        }
    }
    let criteria = vec![
        Criterion {
            name: "survives_hostile_requests".into(),
            passed: down.is_empty(),
            detail: if down.is_empty() {
                format!(
                    "every node answered its head after each of {} hostile requests",
                    requests.len()
                )
            } else {
                format!("stopped answering: {}", down.join(", "))
            },
            value: json!(down),
        },
        Criterion {
            name: "refuses_hostile_requests".into(),
            passed: served.is_empty(),
            detail: if served.is_empty() {
                "no malformed or oversized request was served".into()
            } else {
                format!("served: {}", served.join(", "))
            },
            value: json!(served),
        },
    ];
    (json!({"answers": answers}), criteria)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_requests_are_what_they_say() {
        let requests = hostile_requests();
        let by = |n: &str| requests.iter().find(|r| r.name == n).unwrap();
        assert!(by("oversized_16mib").body.len() > 16 << 20);
        assert!(serde_json::from_slice::<Value>(&by("not_json").body).is_err());
        assert!(serde_json::from_slice::<Value>(&by("nested_100k").body).is_err());
        assert!(std::str::from_utf8(&by("not_utf8").body).is_err());
        assert_eq!(
            serde_json::from_slice::<Vec<Value>>(&by("batch_10k").body)
                .unwrap()
                .len(),
            10_000
        );
        assert!(!by("batch_10k").must_refuse);
    }
}
