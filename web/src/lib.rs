//! dagctl's faces over HTTP: the REST API that Airflow's own clients talk to (`/api/v2`, Airflow 3's paths
//! and JSON shapes), the web UI, sign-in (local users and OpenID Connect) and role checks.
//!
//! Everything but `/health`, `/api/v2/monitor/health`, `/api/v2/version` and `/metrics` needs a signed-in
//! principal: a bearer JWT (`POST /auth/token`) or the UI's session cookie, which also needs a CSRF token
//! on every state-changing request. Roles are checked here, on the server, for every route.

pub mod api;
pub mod auth;
pub mod error;
pub mod execution;
pub mod extract;
pub mod html;
pub mod oidc;
pub mod reports;
pub mod serve;
pub mod session;
pub mod throttle;
pub mod ui;

pub use throttle::Throttle;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{SecondsFormat, Utc};
use engine::store::{Store, UserRow};
use serde_json::json;

use crate::auth::{Keys, Role};
use crate::error::{ApiError, ApiResult};

/// The session cookie of the UI.
pub const SESSION_COOKIE: &str = "dagctl_session";
/// The header the UI's scripts send the CSRF token in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How the web server is set up.
#[derive(Debug, Clone)]
pub struct WebConfig {
    /// The data dir (signing key, admin password file).
    pub home: PathBuf,
    /// Cookies get `Secure` (set when the public URL is https).
    pub secure_cookies: bool,
    /// Lifetime of API tokens.
    pub token_ttl_secs: i64,
    /// Lifetime of UI sessions.
    pub session_ttl_secs: i64,
    /// OpenID Connect sign-in, when configured.
    pub oidc: Option<oidc::OidcConfig>,
}

impl WebConfig {
    pub fn new(home: PathBuf) -> WebConfig {
        WebConfig {
            home,
            secure_cookies: false,
            token_ttl_secs: 24 * 3600,
            session_ttl_secs: 12 * 3600,
            oidc: None,
        }
    }
}

/// Shared state of every handler.
#[derive(Clone)]
pub struct WebState {
    pub store: Store,
    pub keys: Keys,
    pub config: Arc<WebConfig>,
    pub oidc: Option<Arc<oidc::OidcClient>>,
    pub throttle: Arc<Throttle>,
    /// Task logs, read through their trait (files now; pod logs later).
    pub logs: Arc<dyn worker::log::TaskLogs>,
    /// KPI reports, when the binary provides them.
    pub reports: Option<Arc<dyn reports::RunReports>>,
    /// Variables and connections, decrypted with the engine's Fernet key.
    pub vault: engine::secrets::Vault,
}

impl WebState {
    /// With KPI reports computed by `reports`.
    pub fn with_reports(mut self, reports: Arc<dyn reports::RunReports>) -> WebState {
        self.reports = Some(reports);
        self
    }

    pub fn new(
        store: Store,
        keys: Keys,
        config: WebConfig,
        logs: Arc<dyn worker::log::TaskLogs>,
        vault: engine::secrets::Vault,
    ) -> WebState {
        WebState {
            store,
            vault,
            keys,
            logs,
            reports: None,
            throttle: Arc::new(Throttle::default()),
            oidc: config.oidc.clone().map(|c| Arc::new(oidc::OidcClient::new(c))),
            config: Arc::new(config),
        }
    }
}

/// How a principal proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthVia {
    Bearer,
    Session,
}

/// The signed-in caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub username: String,
    pub role: Role,
    pub via: AuthVia,
    /// The token id (the session id for cookies).
    pub session_id: String,
    /// When the token expires (Unix seconds).
    pub expires_at: i64,
}

impl Principal {
    /// Refuses with 403 unless the caller has at least `role`.
    pub fn require(&self, role: Role) -> ApiResult<()> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "forbidden: this needs the {role} role; `{}` has {}",
                self.username, self.role
            )))
        }
    }
}

/// Reads a cookie from request headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Who is calling, from a bearer token or the session cookie; None when neither is present. The token must
/// be of the right kind (API tokens as bearer, session tokens as cookie), not revoked (signed out), and its
/// user must still exist; the role is the user's role now, not the one in the token.
pub async fn authenticate(parts: &Parts, state: &WebState) -> ApiResult<Option<Principal>> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let text = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
        let Some(token) = text.strip_prefix("Bearer ").or_else(|| text.strip_prefix("bearer ")) else {
            return Err(ApiError::unauthorized("expected `Authorization: Bearer <token>`"));
        };
        let claims = state
            .keys
            .decode(token.trim())
            .map_err(|err| ApiError::unauthorized(format!("invalid token: {err}")))?;
        if claims.kind != "api" {
            return Err(ApiError::unauthorized("invalid token: not an API token"));
        }
        return current(state, claims, AuthVia::Bearer).await.map(Some);
    }
    let Some(cookie) = cookie(&parts.headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Ok(claims) = state.keys.decode(cookie) else {
        return Ok(None);
    };
    if claims.kind != "session" {
        return Ok(None);
    }
    match current(state, claims, AuthVia::Session).await {
        Ok(principal) => Ok(Some(principal)),
        Err(err) if err.status == StatusCode::UNAUTHORIZED => Ok(None),
        Err(err) => Err(err),
    }
}

/// The principal of verified claims, as the store knows the user now.
async fn current(state: &WebState, claims: auth::Claims, via: AuthVia) -> ApiResult<Principal> {
    if state.store.token_revoked(&claims.jti).await? {
        return Err(ApiError::unauthorized("invalid token: signed out"));
    }
    let user = state.store.get_user(&claims.sub).await.map_err(|err| match err {
        engine::Error::NotFound(_) => {
            ApiError::unauthorized(format!("invalid token: user `{}` no longer exists", claims.sub))
        }
        other => other.into(),
    })?;
    Ok(Principal {
        username: user.username,
        role: Role::parse(&user.role).unwrap_or(Role::Viewer),
        via,
        session_id: claims.jti,
        expires_at: claims.exp,
    })
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

impl FromRequestParts<WebState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &WebState) -> Result<Self, Self::Rejection> {
        let principal = authenticate(parts, state)
            .await?
            .ok_or_else(|| ApiError::unauthorized("Not authenticated"))?;
        // A cookie rides along on any request the browser makes, so state changes by cookie also need the
        // session's CSRF token; a bearer token is never sent by the browser on its own.
        if principal.via == AuthVia::Session && !is_safe(&parts.method) {
            let token = parts
                .headers
                .get(CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if !state.keys.csrf_ok(&principal.session_id, token) {
                return Err(ApiError::forbidden("missing or invalid CSRF token"));
            }
        }
        Ok(principal)
    }
}

/// The whole HTTP face: API, auth, UI, health. `extra` is merged in (the binary adds `/metrics`).
pub fn router(state: WebState, extra: Router) -> Router {
    let health = health_router(state.store.clone());
    Router::new()
        .route("/auth/token", post(token))
        .merge(api::routes())
        .merge(ui::routes())
        .merge(oidc::routes())
        .layer(DefaultBodyLimit::max(extract::MAX_BODY_BYTES))
        .with_state(state)
        .merge(health)
        .merge(extra)
        .layer(axum::middleware::map_response_with_state((), json_errors))
}

/// API errors are JSON even when axum itself answers (a path that is not UTF-8, a method the route does
/// not have): an empty or plain-text 4xx/5xx under `/api/` or `/auth/token` gets a `{"detail"}` body.
async fn json_errors(State(()): State<()>, uri: axum::http::Uri, response: Response) -> Response {
    let status = response.status();
    let path = uri.path();
    let is_api = path.starts_with("/api/") || path.starts_with("/execution/") || path == "/auth/token";
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_api || is_json || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let detail = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut json = (status, Json(json!({"detail": detail}))).into_response();
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
}

/// The routes that need no login: `/health`, `/api/v2/monitor/health`, `/api/v2/version`.
pub fn health_router(store: Store) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/v2/monitor/health", get(monitor_health))
        .route("/api/v2/version", get(version))
        .with_state(store)
}

/// Airflow's health endpoint answers 200 and reports each part's status in the body.
async fn monitor_health(state: State<Store>) -> Response {
    let mut response = health(state).await;
    *response.status_mut() = StatusCode::OK;
    response
}

/// How long `/health` waits for the database.
const HEALTH_DB_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// `/health`: 503 when the database does not answer (within 3 s), with the reason, for load balancers and
/// probes. The engine keeps running its tasks meanwhile and catches up when the database returns.
async fn health(State(store): State<Store>) -> Response {
    let db_error = match tokio::time::timeout(HEALTH_DB_TIMEOUT, store.ping()).await {
        Ok(Ok(())) => None,
        Ok(Err(err)) => Some(err.to_string()),
        Err(_) => Some(format!(
            "the database did not answer within {} s",
            HEALTH_DB_TIMEOUT.as_secs()
        )),
    };
    let heartbeat = match db_error {
        None => tokio::time::timeout(HEALTH_DB_TIMEOUT, store.latest_scheduler_heartbeat())
            .await
            .ok()
            .and_then(|hb| hb.ok())
            .flatten(),
        Some(_) => None,
    };
    let scheduler_ok = heartbeat
        .map(|hb| Utc::now() - hb < chrono::Duration::seconds(30))
        .unwrap_or(false);
    let status = |ok: bool| if ok { "healthy" } else { "unhealthy" };
    let hb = heartbeat.map(|hb| hb.to_rfc3339_opts(SecondsFormat::Micros, true));
    let mut metadatabase = json!({"status": status(db_error.is_none())});
    if let Some(reason) = &db_error {
        metadatabase["reason"] = json!(reason);
    }
    let body = json!({
        "metadatabase": metadatabase,
        "scheduler": {"status": status(scheduler_ok), "latest_scheduler_heartbeat": hb},
        "triggerer": {"status": null, "latest_triggerer_heartbeat": null},
        "dag_processor": {"status": status(scheduler_ok), "latest_dag_processor_heartbeat": hb},
    });
    let code = if db_error.is_none() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn version() -> Json<serde_json::Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION"), "git_version": null}))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    username: String,
    password: String,
}

/// `POST /auth/token`: a JWT for a local user, from a JSON or form body; 201 `{access_token}`.
async fn token(State(state): State<WebState>, req: axum::extract::Request) -> ApiResult<Response> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let client = client_address(&req);
    let bytes = extract::read_body(req, &()).await?;
    let body: LoginBody = match content_type.as_str() {
        "application/json" => extract::parse_json(&bytes)?,
        "application/x-www-form-urlencoded" => {
            let text = std::str::from_utf8(&bytes).map_err(|_| ApiError::bad_request("the form is not UTF-8"))?;
            let pairs = extract::serde_urlencoded_pairs(text)?;
            let get = |name: &str| pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
            match (get("username"), get("password")) {
                (Some(username), Some(password)) => LoginBody { username, password },
                _ => {
                    return Err(ApiError::validation(
                        &["body"],
                        "username and password are required",
                        "missing",
                    ))
                }
            }
        }
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the credentials as application/json or application/x-www-form-urlencoded",
            ))
        }
    };
    let user = check_local_login(&state, &body.username, &body.password, client).await?;
    let role = Role::parse(&user.role).unwrap_or(Role::Viewer);
    let (token, _) = state
        .keys
        .issue(&user.username, role, "api", state.config.token_ttl_secs);
    let _ = state.store.touch_login(&user.username, Utc::now()).await;
    Ok((StatusCode::CREATED, Json(json!({"access_token": token}))).into_response())
}

/// At most this many password hashes at once (each takes ~19 MiB and a core for a moment), so a flood of
/// login attempts queues instead of exhausting memory and threads.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// Checks a local user's password (the same slow hash runs whether or not the user exists). A name and
/// client address with too many recent failures, or a client with too many, gets 429 without a check (see
/// [`throttle`]); an attempt that can never succeed (over the length limits) is refused without being counted.
pub async fn check_local_login(
    state: &WebState,
    username: &str,
    password: &str,
    client: Option<std::net::IpAddr>,
) -> ApiResult<UserRow> {
    if password.len() > MAX_PASSWORD_BYTES || username.len() > MAX_USERNAME_BYTES {
        return Err(ApiError::unauthorized("invalid username or password"));
    }
    if let Some(wait) = state.throttle.wait(username, client) {
        return Err(ApiError::new(StatusCode::TOO_MANY_REQUESTS, wait.message(username)));
    }
    let result = verify_local_login(&state.store, username, password).await;
    match &result {
        Ok(_) => state.throttle.succeeded(username, client),
        Err(_) => state.throttle.failed(username, client),
    }
    result
}

/// The longest password and user name a sign-in takes: longer ones can never be right.
const MAX_PASSWORD_BYTES: usize = 1024;
const MAX_USERNAME_BYTES: usize = 256;

/// The address a request came from (the TCP peer: headers like `X-Forwarded-For` are not trusted).
pub fn client_address(req: &axum::extract::Request) -> Option<std::net::IpAddr> {
    req.extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip())
}

async fn verify_local_login(store: &Store, username: &str, password: &str) -> ApiResult<UserRow> {
    let user = store.get_user(username).await.ok().filter(|u| u.source == "local");
    let hash = user.as_ref().and_then(|u| u.password_hash.clone());
    let password = password.to_string();
    let _permit = HASHING
        .acquire()
        .await
        .map_err(|_| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "shutting down"))?;
    let ok = tokio::task::spawn_blocking(move || match hash {
        Some(hash) => auth::verify_password(&password, &hash),
        None => {
            // Same cost for unknown users, so timing does not tell which names exist.
            let _ = auth::hash_password(&password);
            false
        }
    })
    .await
    .unwrap_or(false);
    match user {
        Some(user) if ok => Ok(user),
        _ => Err(ApiError::unauthorized("invalid username or password")),
    }
}

/// Where the standalone admin password came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminPassword {
    /// Generated now: printed once and written to this file.
    Generated(PathBuf, String),
    /// From `DAGCTL_ADMIN_PASSWORD`.
    FromEnv,
    /// The user existed already.
    Existing,
}

/// Makes sure the local `admin` user exists: with `env_password` when given (which also resets it),
/// else with a generated password written to `standalone_admin_password.txt` in the data dir.
pub async fn ensure_admin(store: &Store, home: &std::path::Path, env_password: Option<&str>) -> Result<AdminPassword> {
    let existing = store.get_user("admin").await.ok();
    let mut user = existing.clone().unwrap_or(UserRow {
        username: "admin".into(),
        password_hash: None,
        role: Role::Admin.as_str().into(),
        source: "local".into(),
        email: None,
        external_id: None,
        created_at: Utc::now(),
        last_login_at: None,
    });
    if let Some(password) = env_password.filter(|p| !p.is_empty()) {
        let unchanged = existing
            .as_ref()
            .and_then(|u| u.password_hash.as_deref())
            .map(|hash| auth::verify_password(password, hash))
            .unwrap_or(false);
        if !unchanged {
            user.password_hash = Some(auth::hash_password(password)?);
            store.put_user(&user).await?;
        }
        return Ok(AdminPassword::FromEnv);
    }
    if existing.is_some() {
        return Ok(AdminPassword::Existing);
    }
    let password = auth::generate_password();
    let path = home.join("standalone_admin_password.txt");
    auth::write_private(&path, &format!("{password}\n"))?;
    user.password_hash = Some(auth::hash_password(&password)?);
    store.put_user(&user).await?;
    Ok(AdminPassword::Generated(path, password))
}

/// The signing key: a configured secret, else `jwt_secret` in the data dir (created when missing).
pub fn load_keys(home: &std::path::Path, secret: Option<&str>) -> Result<Keys> {
    match secret.filter(|s| !s.is_empty()) {
        Some(secret) => Keys::from_secret(secret),
        None => Keys::load_or_create(&home.join("jwt_secret")),
    }
}
