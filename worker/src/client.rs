//! The runner's client of the task execution API: HTTP/1.1 over one kept-alive connection (hyper), the
//! try's token on every call, and bounded retries with backoff while the engine is away (restarting).
//!
//! A 4xx answer is final (the token is refused, the try ended, the body is wrong) and is returned at once;
//! a refused connection, a broken one, or a 5xx is retried until the retry budget is spent. An engine that
//! cannot be reached is left for the next live engine the engines named (failover between schedulers).

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

use crate::execution::ENGINES_HEADER;

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
    /// Total time the report of a try's end may spend retrying: the outcome is kept while the engine (or its
    /// database) is away, and lost only after this.
    pub report_budget: Duration,
    pub first_delay: Duration,
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            budget: Duration::from_secs(300),
            report_budget: Duration::from_secs(3600),
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(5),
        }
    }
}

/// One engine's execution API.
#[derive(Debug, Clone)]
struct Endpoint {
    base: String,
    /// The URL's path, prepended to every call's path.
    prefix: String,
    authority: String,
    host: String,
    port: u16,
}

impl Endpoint {
    fn parse(base_url: &str) -> Result<Endpoint, ClientError> {
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
        Ok(Endpoint {
            base: trimmed.to_string(),
            prefix: uri.path().trim_end_matches('/').to_string(),
            authority: authority.to_string(),
            host: authority
                .host()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: authority.port_u16().unwrap_or(80),
        })
    }
}

/// The engines a runner may report to: the one that started it first, then the live ones it named.
#[derive(Debug)]
struct Engines {
    list: Vec<Endpoint>,
    current: usize,
}

impl Engines {
    fn current(&self) -> Endpoint {
        self.list[self.current].clone()
    }

    /// Moves to the next engine; false when there is no other.
    fn rotate(&mut self) -> bool {
        if self.list.len() < 2 {
            return false;
        }
        self.current = (self.current + 1) % self.list.len();
        true
    }

    /// Takes the live engines an engine named (comma-separated URLs), keeping the first engine and the
    /// current one in place.
    fn learn(&mut self, header: &str) {
        let current = self.list[self.current].base.clone();
        let mut list = vec![self.list[0].clone()];
        for url in header.split(',').map(str::trim).filter(|u| !u.is_empty()) {
            match Endpoint::parse(url) {
                Ok(endpoint) if !list.iter().any(|e| e.base == endpoint.base) => list.push(endpoint),
                Ok(_) => {}
                Err(err) => tracing::debug!(%url, error = %err, "an engine named an unusable execution API address"),
            }
        }
        self.current = list.iter().position(|e| e.base == current).unwrap_or(0);
        self.list = list;
    }
}

struct Inner {
    token: String,
    retry: RetryPolicy,
    engines: std::sync::Mutex<Engines>,
    /// The kept-alive connection and the engine it goes to.
    connection: Mutex<Option<(String, SendRequest<Full<Bytes>>)>>,
}

/// A client of the execution API; cheap to clone (one shared connection).
///
/// When the engine that started the try cannot be reached, calls go to the other live engines its answers
/// named (`x-dagctl-engines`), so a try whose scheduler died reports to a surviving one (which must share the
/// signing key, `secret_key`).
#[derive(Clone)]
pub struct ExecutionClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ExecutionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionClient")
            .field("base", &self.base_url())
            .finish()
    }
}

/// What one attempt came to.
enum Attempt {
    Answer(StatusCode, Bytes),
    /// The engine could not be reached, or broke the connection.
    Transport(String),
}

impl ExecutionClient {
    /// A client of the API at `base_url` (`http://host:port`, optionally with a path prefix); a comma-separated
    /// list names this try's engine first, then other live engines to report to if it is gone.
    pub fn new(base_url: &str, token: &str, retry: RetryPolicy) -> Result<ExecutionClient, ClientError> {
        let mut urls = base_url.split(',').map(str::trim).filter(|u| !u.is_empty());
        let endpoint = Endpoint::parse(urls.next().unwrap_or(base_url))?;
        let mut engines = Engines {
            list: vec![endpoint],
            current: 0,
        };
        engines.learn(&urls.collect::<Vec<_>>().join(","));
        Ok(ExecutionClient {
            inner: Arc::new(Inner {
                token: token.to_string(),
                retry,
                engines: std::sync::Mutex::new(engines),
                connection: Mutex::new(None),
            }),
        })
    }

    /// The engine calls go to now.
    pub fn base_url(&self) -> String {
        self.engine().base
    }

    /// Every engine this client knows, the first one first.
    pub fn engines(&self) -> Vec<String> {
        self.inner
            .engines
            .lock()
            .map(|e| e.list.iter().map(|e| e.base.clone()).collect())
            .unwrap_or_default()
    }

    fn engine(&self) -> Endpoint {
        match self.inner.engines.lock() {
            Ok(engines) => engines.current(),
            Err(poisoned) => poisoned.into_inner().current(),
        }
    }

    /// Moves to the next engine; false when there is no other.
    fn rotate(&self) -> bool {
        self.inner.engines.lock().map(|mut e| e.rotate()).unwrap_or(false)
    }

    /// Calls `method path` with an optional JSON body and decodes the JSON answer (`()` for no body).
    pub async fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.call_within(self.inner.retry.budget, method, path, body).await
    }

    /// Reports a try's end: as [`call`](Self::call), retried for the policy's longer `report_budget`.
    pub async fn report<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        self.call_within(self.inner.retry.report_budget, method, path, body)
            .await
    }

    async fn call_within<B: Serialize, T: DeserializeOwned>(
        &self,
        budget: Duration,
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
        // Engines tried since the last pause: each is tried once before the client waits.
        let mut tried = 0;
        loop {
            let endpoint = self.engine();
            let first = self.engines().first().map(|e| *e == endpoint.base).unwrap_or(true);
            let reason = match self.once(&endpoint, &method, path, payload.clone()).await {
                Attempt::Answer(status, bytes) if status.is_success() => {
                    let bytes = if bytes.is_empty() {
                        Bytes::from_static(b"null")
                    } else {
                        bytes
                    };
                    return serde_json::from_slice(&bytes)
                        .map_err(|e| ClientError::Protocol(format!("{method} {path}: cannot decode the answer: {e}")));
                }
                // Another engine that cannot read this try's token does not share the signing key: try the next.
                Attempt::Answer(status, bytes) if status == StatusCode::UNAUTHORIZED && !first => {
                    let reason = format!(
                        "{} refused this try's token ({}); engines sharing a database must share `secret_key`",
                        endpoint.base,
                        detail_of(&bytes)
                    );
                    tracing::warn!(%reason, "execution API call refused");
                    self.rotate();
                    reason
                }
                Attempt::Answer(status, bytes) if status.is_client_error() => {
                    return Err(ClientError::Refused {
                        status: status.as_u16(),
                        detail: detail_of(&bytes),
                    })
                }
                Attempt::Answer(status, bytes) => format!("{status}: {}", detail_of(&bytes)),
                Attempt::Transport(reason) => {
                    if self.rotate() {
                        tracing::debug!(engine = %endpoint.base, %reason, "engine unreachable; trying the next one");
                    }
                    reason
                }
            };
            tried += 1;
            let engines = self.engines().len();
            if tried < engines {
                continue;
            }
            tried = 0;
            if started.elapsed() + delay > budget {
                return Err(ClientError::Unreachable {
                    url: self.engines().join(", "),
                    reason,
                });
            }
            tracing::debug!(%path, %reason, ?delay, "execution API call failed; retrying");
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(self.inner.retry.max_delay);
        }
    }

    /// One attempt at `endpoint`; a transport failure drops the connection (it is made again next time).
    async fn once(&self, endpoint: &Endpoint, method: &Method, path: &str, body: Option<Bytes>) -> Attempt {
        let mut guard = self.inner.connection.lock().await;
        let kept = match guard.take() {
            Some((base, sender)) if base == endpoint.base && !sender.is_closed() => Some(sender),
            _ => None,
        };
        let mut sender = match kept {
            Some(sender) => sender,
            None => match connect(endpoint).await {
                Ok(sender) => sender,
                Err(reason) => return Attempt::Transport(reason),
            },
        };
        if sender.ready().await.is_err() {
            sender = match connect(endpoint).await {
                Ok(sender) => sender,
                Err(reason) => return Attempt::Transport(reason),
            };
        }
        let mut request = Request::builder()
            .method(method.clone())
            .uri(format!("{}{path}", endpoint.prefix))
            .header(hyper::header::HOST, &endpoint.authority)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", self.inner.token))
            .header(hyper::header::ACCEPT, "application/json");
        if body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let request = match request.body(Full::new(body.unwrap_or_default())) {
            Ok(request) => request,
            Err(err) => return Attempt::Transport(err.to_string()),
        };
        let response = match sender.send_request(request).await {
            Ok(response) => response,
            Err(err) => return Attempt::Transport(err.to_string()),
        };
        let status = response.status();
        if let Some(engines) = response.headers().get(ENGINES_HEADER).and_then(|v| v.to_str().ok()) {
            if let Ok(mut known) = self.inner.engines.lock() {
                known.learn(engines);
            }
        }
        let bytes = match response.into_body().collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) => return Attempt::Transport(err.to_string()),
        };
        *guard = Some((endpoint.base.clone(), sender));
        Attempt::Answer(status, bytes)
    }
}

async fn connect(endpoint: &Endpoint) -> Result<SendRequest<Full<Bytes>>, String> {
    let stream = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| format!("{}: {e}", endpoint.base))?;
    let _ = stream.set_nodelay(true);
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
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
