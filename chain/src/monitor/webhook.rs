//! Alerts POSTed to a webhook as JSON, off the monitor's path: a bounded queue feeds one sender task, which
//! retries a failed POST with backoff (4 tries: 0.5 s, 1 s, 2 s apart) and then drops it. Dropped alerts (queue
//! full, or every try failed) are counted, never waited for.

use std::time::Duration;

use serde_json::Value;

use super::outbox::{Outbox, Outcome};

/// Alerts waiting for the sender before new ones are dropped.
const QUEUE: usize = 256;
/// Tries per alert.
const TRIES: u32 = 4;

/// The sending side of a webhook.
#[derive(Debug)]
pub struct Webhook(Outbox<Value>);

/// Whether `url` is one a webhook may POST to: `http://` or `https://` with a host.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("`{url}` is not an http:// or https:// URL"))?;
    if rest.split('/').next().is_none_or(str::is_empty) {
        return Err(format!("`{url}` has no host"));
    }
    Ok(())
}

impl Webhook {
    /// Starts the sender for `url` (checked with [`check_url`]).
    pub fn start(url: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self(Outbox::start(
            QUEUE,
            |mut receiver: tokio::sync::mpsc::Receiver<Value>, tally| async move {
                while let Some(body) = receiver.recv().await {
                    let mut delay = Duration::from_millis(500);
                    let mut error = String::new();
                    for attempt in 1..=TRIES {
                        let answer = http
                            .post(&url)
                            .header(reqwest::header::CONTENT_TYPE, "application/json")
                            .body(body.to_string())
                            .send()
                            .await;
                        match answer {
                            Ok(r) if r.status().is_success() => break,
                            Ok(r) => error = format!("the webhook answered {}", r.status()),
                            Err(e) => error = format!("the webhook cannot be reached: {e}"),
                        }
                        if attempt < TRIES {
                            tokio::time::sleep(delay).await;
                            delay *= 2;
                        }
                    }
                    if error.is_empty() {
                        tally.sent(1);
                    } else {
                        tally.failed(1, error);
                    }
                }
            },
        ))
    }

    /// Queues `alert`; a full queue drops it (counted).
    pub fn send(&self, alert: Value) {
        self.0.send(alert);
    }

    /// Stops taking alerts and gives the queued ones up to `grace` to go; what is still queued then is dropped.
    pub async fn finish(self, grace: Duration) -> Outcome {
        self.0.finish(grace).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn urls_are_checked() {
        assert!(check_url("http://127.0.0.1:9/hook").is_ok());
        assert!(check_url("https://hooks.example/x").is_ok());
        assert!(check_url("ftp://x").is_err());
        assert!(check_url("http://").is_err());
    }

    #[tokio::test]
    async fn alerts_are_posted_and_an_unreachable_hook_drops_them_without_blocking() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let seen = received.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let mut buffer = vec![0u8; 8192];
                let n = stream.read(&mut buffer).await.unwrap_or(0);
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buffer[..n]).to_string());
                let _ = stream
                    .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                    .await;
            }
        });
        let hook = Webhook::start(format!("http://127.0.0.1:{port}/hook"));
        hook.send(serde_json::json!({"node": "n1", "level": "warn"}));
        hook.send(serde_json::json!({"node": "n2", "level": "error"}));
        let outcome = hook.finish(Duration::from_secs(10)).await;
        assert_eq!((outcome.sent, outcome.dropped), (2, 0));
        let received = received.lock().unwrap().join("\n");
        assert!(
            received.contains("POST /hook") && received.contains("\"node\":\"n2\""),
            "{received}"
        );

        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let dead = format!("http://127.0.0.1:{}/hook", closed.local_addr().unwrap().port());
        drop(closed);
        let hook = Webhook::start(dead);
        let started = std::time::Instant::now();
        for i in 0..300 {
            hook.send(serde_json::json!({"n": i}));
        }
        assert!(started.elapsed() < Duration::from_millis(200), "sending never waits");
        let outcome = hook.finish(Duration::from_secs(1)).await;
        assert_eq!(outcome.sent, 0);
        assert_eq!(outcome.dropped, 300, "every alert accounted for as dropped");
    }
}
