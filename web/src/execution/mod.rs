//! The task execution API (`/execution/...`), as in Airflow 3: task runners hold no database credentials and
//! talk to the engine here, each with a token scoped to its one try and valid only while that try is the
//! task instance's current, executing one. The wire types are in `worker::execution`.
//!
//! A malformed, expired or foreign token is a 401; a token for another try, or a try that has ended, a 403;
//! a body that does not parse (or names a state a try may not report) a 422. Nothing is written then.

mod chaos;
mod kpis;
mod networks;
mod secrets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, post, put};
use axum::{Json, Router};
use chrono::Utc;
use engine::spec::DagSpec;
use engine::store::{Change, FinishedTry, Store, TiRow};
use serde::{Deserialize, Serialize};
use worker::execution::{
    FinishRequest, FinishResponse, LogBatch, StartRequest, TaskContext, TokenMinter, XcomValue, ENGINES_HEADER,
    TOKEN_KIND,
};
use worker::log::{TaskLogs, TryKey};

use crate::auth::{random_token, Keys};
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;

/// The largest body a runner may send (log batches).
const MAX_EXECUTION_BODY: usize = 8 << 20;
/// DAG versions kept parsed.
const SPEC_CACHE: usize = 256;

/// The execution API's state.
#[derive(Clone)]
pub struct ExecState {
    pub store: Store,
    pub keys: Keys,
    pub logs: Arc<dyn TaskLogs>,
    /// How often runners heartbeat.
    pub heartbeat_interval: Duration,
    /// Variables and connections a running try's templates read.
    pub vault: engine::secrets::Vault,
    specs: Arc<Mutex<HashMap<String, Arc<DagSpec>>>>,
    /// The live engines' execution API addresses and when they were read.
    engines: Arc<Mutex<Option<(Instant, HeaderValue)>>>,
}

/// How long the live engines' addresses are reused before the store is asked again.
const ENGINES_TTL: Duration = Duration::from_secs(2);
/// An engine that has not heartbeated for this long is not offered to runners.
const ENGINE_SILENCE: chrono::Duration = chrono::Duration::seconds(60);

impl ExecState {
    pub fn new(store: Store, keys: Keys, logs: Arc<dyn TaskLogs>, vault: engine::secrets::Vault) -> ExecState {
        ExecState {
            store,
            vault,
            keys,
            logs,
            heartbeat_interval: Duration::from_secs(5),
            specs: Arc::new(Mutex::new(HashMap::new())),
            engines: Arc::new(Mutex::new(None)),
        }
    }

    /// The header naming the live engines (none when the store cannot say now: the runner keeps its list).
    async fn engines_header(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some((name, value)) = self.engines().await {
            headers.insert(name, value);
        }
        headers
    }

    async fn engines(&self) -> Option<(HeaderName, HeaderValue)> {
        let name = HeaderName::from_static(ENGINES_HEADER);
        if let Some((at, value)) = self.engines.lock().ok().and_then(|e| e.clone()) {
            if at.elapsed() < ENGINES_TTL {
                return Some((name, value));
            }
        }
        let urls = self.store.live_api_urls(Utc::now() - ENGINE_SILENCE).await.ok()?;
        let value = HeaderValue::from_str(&urls.join(",")).ok()?;
        if let Ok(mut engines) = self.engines.lock() {
            *engines = Some((Instant::now(), value.clone()));
        }
        Some((name, value))
    }

    async fn spec(&self, version_hash: &str) -> ApiResult<Arc<DagSpec>> {
        if let Some(spec) = self.specs.lock().ok().and_then(|s| s.get(version_hash).cloned()) {
            return Ok(spec);
        }
        let (spec, _, _) = self.store.dag_version(version_hash).await?;
        let spec = Arc::new(spec);
        if let Ok(mut specs) = self.specs.lock() {
            if specs.len() >= SPEC_CACHE {
                specs.clear();
            }
            specs.insert(version_hash.to_string(), Arc::clone(&spec));
        }
        Ok(spec)
    }
}

/// The routes of the execution API, with their state.
pub fn router(state: ExecState) -> Router {
    Router::new()
        .route("/execution/task-instances/run", post(start))
        .route("/execution/task-instances/{id}/heartbeat", put(heartbeat))
        .route("/execution/task-instances/{id}/logs", post(logs))
        .route("/execution/task-instances/{id}/state", patch(finish))
        .merge(networks::routes())
        .merge(kpis::routes())
        .merge(chaos::routes())
        .merge(secrets::routes())
        .layer(DefaultBodyLimit::max(MAX_EXECUTION_BODY))
        .with_state(state)
}

/// What an execution token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TryClaims {
    sub: String,
    ti: i64,
    try_number: i64,
    kind: String,
    iat: i64,
    exp: i64,
    jti: String,
}

/// Mints execution tokens with the engine's signing key.
#[derive(Clone)]
pub struct TryTokens(pub Keys);

impl TokenMinter for TryTokens {
    fn mint(&self, ti_id: i64, try_number: i64, ttl: Duration) -> String {
        let now = Utc::now().timestamp();
        self.0.encode_json(&TryClaims {
            sub: format!("ti:{ti_id}:{try_number}"),
            ti: ti_id,
            try_number,
            kind: TOKEN_KIND.to_string(),
            iat: now,
            exp: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
            jti: random_token(12),
        })
    }
}

/// The try a request's token is for (signature, expiry and kind checked; not yet whether it is current).
pub(crate) struct CallerTry {
    ti_id: i64,
    try_number: i64,
}

impl FromRequestParts<ExecState> for CallerTry {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ExecState) -> Result<Self, Self::Rejection> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("the execution API needs the try's token as a bearer token"))?;
        let text = value
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not text"))?;
        let token = text
            .strip_prefix("Bearer ")
            .ok_or_else(|| ApiError::unauthorized("expected `Authorization: Bearer <token>`"))?;
        let claims: TryClaims = state
            .keys
            .decode_json(token.trim())
            .map_err(|err| ApiError::unauthorized(format!("invalid token: {err}")))?;
        if claims.kind != TOKEN_KIND {
            return Err(ApiError::unauthorized("invalid token: not an execution token"));
        }
        Ok(CallerTry {
            ti_id: claims.ti,
            try_number: claims.try_number,
        })
    }
}

impl CallerTry {
    /// The task instance when `ti_id` is the caller's and its try is still the current, executing one.
    pub(crate) async fn authorize(&self, state: &ExecState, ti_id: i64) -> ApiResult<TiRow> {
        if ti_id != self.ti_id {
            return Err(ApiError::forbidden("this token is for another task instance"));
        }
        let ti = match state.store.get_ti_by_id(ti_id).await {
            Ok(ti) => ti,
            Err(engine::Error::NotFound(_)) => {
                return Err(ApiError::forbidden("the task instance of this token no longer exists"))
            }
            Err(err) => return Err(err.into()),
        };
        self.check(&ti)?;
        Ok(ti)
    }

    /// Whether `ti` (read just now) is this token's try, current and executing.
    pub(crate) fn check(&self, ti: &TiRow) -> ApiResult<()> {
        if ti.id != self.ti_id {
            return Err(ApiError::forbidden("this token is for another task instance"));
        }
        if ti.try_number != self.try_number {
            return Err(ApiError::forbidden(format!(
                "this token is for try {} of {}.{}, whose current try is {}",
                self.try_number, ti.dag_id, ti.task_id, ti.try_number
            )));
        }
        if !ti.state.is_executing() {
            return Err(ApiError::forbidden(format!(
                "try {} of {}.{} has ended (state {})",
                self.try_number, ti.dag_id, ti.task_id, ti.state
            )));
        }
        Ok(())
    }

    /// Only that this token is for a try that is executing now (for calls not about the try itself).
    pub(crate) async fn current(&self, state: &ExecState) -> ApiResult<TiRow> {
        self.authorize(state, self.ti_id).await
    }
}

/// `POST /execution/task-instances/run`: records the runner's pid and host and answers the try's context.
async fn start(
    State(state): State<ExecState>,
    caller: CallerTry,
    JsonBody(body): JsonBody<StartRequest>,
) -> ApiResult<Response> {
    if body.try_number.is_some_and(|t| t != caller.try_number) {
        return Err(ApiError::forbidden("the body names another try than this token's"));
    }
    let key = (
        body.dag_id.as_str(),
        body.run_id.as_str(),
        body.task_id.as_str(),
        body.map_index,
    );
    let ti = match state
        .store
        .set_runner(
            caller.ti_id,
            key,
            caller.try_number,
            &body.hostname,
            body.pid,
            Utc::now(),
        )
        .await?
    {
        Some(ti) => ti,
        None => return Err(start_refused(&state, &caller, &body).await),
    };
    // The run and its XCom, read at once.
    let (run, xcoms) = tokio::join!(
        state.store.get_run_by_pk(ti.run_pk),
        state.store.xcom_values_of_run(ti.run_pk)
    );
    let (run, xcoms) = (run?, xcoms?);
    let spec = state.spec(&run.version_hash).await?;
    let Some(task) = spec.task(&ti.task_id).cloned() else {
        return Err(ApiError::conflict(format!(
            "the DAG version of run `{}` has no task `{}`",
            run.run_id, ti.task_id
        )));
    };
    let xcoms = xcoms
        .into_iter()
        .map(|(task_id, key, map_index, value)| XcomValue {
            task_id,
            key,
            map_index,
            value,
        })
        .collect();
    let context = Json(TaskContext {
        ti_id: ti.id,
        dag_id: ti.dag_id,
        run_id: ti.run_id,
        task_id: ti.task_id,
        map_index: ti.map_index,
        try_number: ti.try_number,
        max_tries: ti.max_tries,
        task,
        logical_date: run.logical_date,
        data_interval_start: run.data_interval_start,
        data_interval_end: run.data_interval_end,
        run_after: run.run_after,
        conf: run.conf,
        params: spec.params.clone(),
        render_template_as_native_obj: spec.render_template_as_native_obj,
        xcoms,
        heartbeat_interval_ms: state.heartbeat_interval.as_millis() as u64,
    });
    Ok((state.engines_header().await, context).into_response())
}

/// Why a start was refused (nothing was written): the body's task instance is not the token's, its try is
/// not current or has ended, or another runner holds it.
async fn start_refused(state: &ExecState, caller: &CallerTry, body: &StartRequest) -> ApiError {
    let ti = match state
        .store
        .get_ti(&body.dag_id, &body.run_id, &body.task_id, body.map_index)
        .await
    {
        Ok(ti) => ti,
        Err(engine::Error::NotFound(what)) => return ApiError::forbidden(format!("{what}: not this token's try")),
        Err(err) => return err.into(),
    };
    if ti.id != caller.ti_id {
        return ApiError::forbidden("the body names another try than this token's");
    }
    match caller.check(&ti) {
        Err(err) => err,
        Ok(()) => ApiError::forbidden("the try ended while it was starting, or another runner started it first"),
    }
}

/// `PUT …/heartbeat`: 204 while the try is current, 403 once it is not (the runner then stops).
async fn heartbeat(State(state): State<ExecState>, caller: CallerTry, Path(id): Path<i64>) -> ApiResult<Response> {
    caller.authorize(&state, id).await?;
    if !state.store.heartbeat_try(id, caller.try_number, Utc::now()).await? {
        return Err(ApiError::forbidden("the try is no longer current"));
    }
    Ok((StatusCode::NO_CONTENT, state.engines_header().await).into_response())
}

fn key_of(ti: &TiRow, try_number: i64) -> TryKey {
    TryKey::of(ti, try_number)
}

async fn append(state: &ExecState, ti_id: i64, key: TryKey, lines: Vec<worker::log::LogLine>) -> ApiResult<()> {
    if lines.is_empty() {
        return Ok(());
    }
    let store = state.store.clone();
    let logs = Arc::clone(&state.logs);
    tokio::task::spawn_blocking(move || logs.append(&key, &lines))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "log write interrupted"))?
        .map_err(|err| {
            tracing::error!(error = %err, "cannot write a task log");
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "cannot write the task log now")
        })?;
    // Followers (`tasks logs --follow`, the log page) read the new lines at once.
    store.publish(&[Change::Log(ti_id)]);
    Ok(())
}

/// `POST …/logs`: appends lines to the try's log.
async fn logs(
    State(state): State<ExecState>,
    caller: CallerTry,
    Path(id): Path<i64>,
    JsonBody(batch): JsonBody<LogBatch>,
) -> ApiResult<Response> {
    let ti = caller.authorize(&state, id).await?;
    append(&state, ti.id, key_of(&ti, caller.try_number), batch.lines).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `PATCH …/state`: the try's end, by the task's retry policy, with its XCom and last log lines.
async fn finish(
    State(state): State<ExecState>,
    caller: CallerTry,
    Path(id): Path<i64>,
    JsonBody(body): JsonBody<FinishRequest>,
) -> ApiResult<Json<FinishResponse>> {
    for xcom in &body.xcoms {
        if xcom.key.is_empty() || xcom.key.len() > 512 {
            return Err(ApiError::validation(
                &["body", "xcoms", "key"],
                "an XCom key has 1 to 512 characters",
                "string_too_long",
            ));
        }
    }
    let ti = caller.authorize(&state, id).await?;
    let key = key_of(&ti, caller.try_number);
    // The last log lines are written before the end is recorded (a follower that sees the end has every line);
    // the run is read meanwhile.
    let (appended, run) = tokio::join!(
        append(&state, ti.id, key.clone(), body.logs),
        state.store.get_run_by_pk(ti.run_pk)
    );
    appended?;
    let run = run?;
    let spec = state.spec(&run.version_hash).await.ok();
    let task = spec.as_ref().and_then(|s| s.task(&ti.task_id));
    let done = FinishedTry::by_policy(
        &ti,
        caller.try_number,
        task,
        body.state,
        body.message,
        body.xcoms.into_iter().map(|x| (x.key, x.value)).collect(),
        Utc::now(),
    );
    let changed = state.store.finish_tries(&[done]).await?;
    state.logs.close(&key);
    let Some((_, to)) = changed.first() else {
        return Err(ApiError::conflict(
            "the try is no longer current; its end was not recorded",
        ));
    };
    // The try's end reaches schedulers as a store change (in this process at once, others by notification).
    Ok(Json(FinishResponse { state: to.to_string() }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{Role, TokenError};

    #[test]
    fn tokens_name_one_try_expire_and_are_not_user_tokens() {
        let keys = Keys::from_secret("a-test-secret-of-enough-length").unwrap();
        let tokens = TryTokens(keys.clone());
        let token = tokens.mint(7, 2, Duration::from_secs(60));
        let claims: TryClaims = keys.decode_json(&token).unwrap();
        assert_eq!((claims.ti, claims.try_number, claims.kind.as_str()), (7, 2, TOKEN_KIND));
        let expired = tokens.mint(7, 2, Duration::ZERO);
        assert_eq!(
            keys.decode_json::<TryClaims>(&expired).unwrap_err(),
            TokenError::Expired
        );
        let other = TryTokens(Keys::from_secret("another-secret-of-enough-length").unwrap()).mint(
            7,
            2,
            Duration::from_secs(60),
        );
        assert_eq!(
            keys.decode_json::<TryClaims>(&other).unwrap_err(),
            TokenError::BadSignature
        );
        // A user's API token is not an execution token (and an execution token is not an API token).
        let (api, _) = keys.issue("admin", Role::Admin, "api", 60);
        assert_eq!(keys.decode_json::<TryClaims>(&api).unwrap_err(), TokenError::Malformed);
        assert!(keys.decode(&token).is_err());
    }
}
