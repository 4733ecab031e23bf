//! The runner's client of the task execution API: HTTP/1.1 over one kept-alive connection (hyper), the
//! try's token on every call, and bounded retries with backoff while the engine is away (restarting).
//!
//! A 4xx answer is final (the token is refused, the try ended, the body is wrong) and is returned at once;
//! a refused connection, a broken one, or a 5xx is retried until the retry budget is spent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::Mutex;

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The engine answered with a 4xx: final.
    #[error("the engine refused the call ({status}): {detail}")]
    Refused { status: u16, detail: String },
    /// The engine could not be reached (or kept failing) for the whole retry budget.
    #[error("the engine's execution API at {url} is unreachable: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("bad answer from the engine: {0}")]
    Protocol(String),
}

impl ClientError {
    /// A 403/404/409: the try is no longer this runner's to report.
    pub fn try_is_gone(&self) -> bool {
        matches!(
            self,
            ClientError::Refused {
                status: 403 | 404 | 409,
                ..
            }
        )
    }
}

/// How long and how often calls are retried.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Total time one call may spend retrying.
    pub budget: Duration,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            budget: Duration::from_secs(300),
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
        }
    }
}

struct Inner {
    base: String,
    /// The URL's path, prepended to every call's path.
    prefix: String,
    authority: String,
    host: String,
    port: u16,
    token: String,
    retry: RetryPolicy,
    connection: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

/// A client of the execution API; cheap to clone (one shared connection).
#[derive(Clone)]
pub struct ExecutionClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ExecutionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionClient")
            .field("base", &self.inner.base)
            .finish()
    }
}

impl ExecutionClient {
    /// A client of the API at `base_url` (`http://host:port`, optionally with a path prefix).
    pub fn new(base_url: &str, token: &str, retry: RetryPolicy) -> Result<ExecutionClient, ClientError> {
        let trimmed = base_url.trim_end_matches('/');
        let uri: Uri = trimmed
            .parse()
            .map_err(|e| ClientError::Protocol(format!("`{base_url}` is not a URL: {e}")))?;
        if uri.scheme_str() != Some("http") {
            return Err(ClientError::Protocol(format!(
                "`{base_url}`: the execution API is reached over http:// (loopback or the cluster network)"
            )));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| ClientError::Protocol(format!("`{base_url}` has no host")))?;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = authority.port_u16().unwrap_or(80);
        Ok(ExecutionClient {
            inner: Arc::new(Inner {
                base: trimmed.to_string(),
                prefix: uri.path().trim_end_matches('/').to_string(),
                authority: authority.to_string(),
                host,
                port,
                token: token.to_string(),
                retry,
                connection: Mutex::new(None),
            }),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.inner.base
    }

    /// Calls `method path` with an optional JSON body and decodes the JSON answer (`()` for no body).
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let payload = match body {
            Some(body) => Some(Bytes::from(
                serde_json::to_vec(body).map_err(|e| ClientError::Protocol(e.to_string()))?,
            )),
            None => None,
        };
        let started = Instant::now();
        let mut delay = self.inner.retry.first_delay;
        loop {
            let reason = match self.once(&method, path, payload.clone()).await {
                Ok((status, bytes)) if status.is_success() => {
                    let bytes = if bytes.is_empty() {
                        Bytes::from_static(b"null")
                    } else {
                        bytes
                    };
                    return serde_json::from_slice(&bytes)
                        .map_err(|e| ClientError::Protocol(format!("{method} {path}: cannot decode the answer: {e}")));
                }
                Ok((status, bytes)) if status.is_client_error() => {
                    return Err(ClientError::Refused {
                        status: status.as_u16(),
                        detail: detail_of(&bytes),
                    })
                }
                Ok((status, bytes)) => format!("{status}: {}", detail_of(&bytes)),
                Err(reason) => reason,
            };
            if started.elapsed() + delay > self.inner.retry.budget {
                return Err(ClientError::Unreachable {
                    url: self.inner.base.clone(),
                    reason,
                });
            }
            tracing::debug!(%path, %reason, ?delay, "execution API call failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.inner.retry.max_delay);
        }
    }

    /// One attempt; an error is a transport failure (the connection is dropped and made again next time).
    async fn once(&self, method: &Method, path: &str, body: Option<Bytes>) -> Result<(StatusCode, Bytes), String> {
        let mut guard = self.inner.connection.lock().await;
        let mut sender = match guard.take() {
            Some(sender) if !sender.is_closed() => sender,
            _ => self.connect().await?,
        };
        if sender.ready().await.is_err() {
            sender = self.connect().await?;
        }
        let mut request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", self.inner.prefix))
            .header(hyper::header::HOST, &self.inner.authority)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", self.inner.token))
            .header(hyper::header::ACCEPT, "application/json");
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(Full::new(body.unwrap_or_default()))
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        *guard = Some(sender);
        Ok((status, bytes))
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, String> {
        let stream = tokio::net::TcpStream::connect((self.inner.host.as_str(), self.inner.port))
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(sender)
    }
}

/// The `detail` of a JSON error body, or the body itself.
fn detail_of(bytes: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| {
            v.get("detail")
                .map(|d| d.as_str().map(str::to_string).unwrap_or_else(|| d.to_string()))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).chars().take(500).collect())
}
