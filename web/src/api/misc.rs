//! Pools, import errors, the audit log (`eventLogs`), and who the caller is.

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use engine::store::{EventFilter, PoolRow};
use serde_json::{json, Value};

use super::shapes;
use super::{like, MAX_LIMIT};
use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Params};
use crate::{Principal, WebState};

/// `GET /api/v2/importErrors`.
pub async fn import_errors(
    State(state): State<WebState>,
    who: Principal,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["limit", "offset"])?;
    let limit = params.int("limit", 50, 0, MAX_LIMIT)?;
    let offset = params.int("offset", 0, 0, i64::MAX)?;
    let rows = state.store.import_errors().await?;
    Ok(super::collection(
        "import_errors",
        &rows,
        offset,
        limit,
        shapes::import_error,
    ))
}

/// `GET /api/v2/importErrors/{id}`.
pub async fn import_error(
    State(state): State<WebState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::validation(
            &["path", "import_error_id"],
            format!("`{id}` is not an integer"),
            "int_parsing",
        )
    })?;
    let row = state
        .store
        .import_errors()
        .await?
        .into_iter()
        .find(|e| e.id == id)
        .ok_or_else(|| ApiError::not_found(format!("The ImportError with import_error_id: `{id}` was not found")))?;
    Ok(Json(shapes::import_error(&row)))
}

async fn find_pool(state: &WebState, name: &str) -> ApiResult<PoolRow> {
    state
        .store
        .list_pools()
        .await?
        .into_iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::not_found(format!("The Pool with name: `{name}` was not found")))
}

/// `GET /api/v2/pools`.
pub async fn pools(State(state): State<WebState>, who: Principal, RawQuery(query): RawQuery) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["limit", "offset", "pool_name_pattern"])?;
    let limit = params.int("limit", 50, 0, MAX_LIMIT)?;
    let offset = params.int("offset", 0, 0, i64::MAX)?;
    let pattern = params.pattern("pool_name_pattern")?;
    let rows: Vec<PoolRow> = state
        .store
        .list_pools()
        .await?
        .into_iter()
        .filter(|p| pattern.as_deref().is_none_or(|pat| like(pat, &p.name)))
        .collect();
    Ok(super::collection("pools", &rows, offset, limit, shapes::pool))
}

/// `GET /api/v2/pools/{name}`.
pub async fn pool(State(state): State<WebState>, who: Principal, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    Ok(Json(shapes::pool(&find_pool(&state, &name).await?)))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolBody {
    name: String,
    slots: i64,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    include_deferred: bool,
    #[serde(default)]
    team_name: Option<String>,
}

fn check_pool_fields(
    slots: Option<i64>,
    description: Option<&str>,
    include_deferred: Option<bool>,
    team: Option<&str>,
) -> ApiResult<()> {
    if slots.is_some_and(|s| !(-1..=1_000_000).contains(&s)) {
        return Err(ApiError::validation(
            &["body", "slots"],
            "slots must be between 0 and 1000000",
            "value_error",
        ));
    }
    if slots == Some(-1) {
        return Err(ApiError::validation(
            &["body", "slots"],
            "unlimited pools (-1) are not supported",
            "value_error",
        ));
    }
    if description.is_some_and(|d| d.len() > 1000) {
        return Err(ApiError::validation(
            &["body", "description"],
            "at most 1000 characters",
            "string_too_long",
        ));
    }
    if include_deferred == Some(true) {
        return Err(ApiError::bad_request(
            "include_deferred is not supported: dagctl has no deferred tasks",
        ));
    }
    if team.is_some() {
        return Err(ApiError::bad_request("team_name is not supported by dagctl"));
    }
    Ok(())
}

/// `POST /api/v2/pools`: 201, or 409 when the name is taken. Needs Op.
pub async fn create_pool(
    State(state): State<WebState>,
    who: Principal,
    JsonBody(body): JsonBody<PoolBody>,
) -> ApiResult<Response> {
    who.require(Role::Op)?;
    check_pool_fields(
        Some(body.slots),
        body.description.as_deref(),
        Some(body.include_deferred),
        body.team_name.as_deref(),
    )?;
    if body.name.trim().is_empty() || body.name.len() > 256 {
        return Err(ApiError::validation(
            &["body", "name"],
            "a pool name is 1 to 256 characters",
            "value_error",
        ));
    }
    state
        .store
        .create_pool(&body.name, body.slots, body.description.as_deref(), Some(&who.username))
        .await
        .map_err(|err| match err {
            engine::Error::Conflict(_) => {
                ApiError::conflict(format!("The Pool with name: `{}` already exists", body.name))
            }
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(shapes::pool(&find_pool(&state, &body.name).await?)),
    )
        .into_response())
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolPatchBody {
    #[serde(default)]
    pool: Option<String>,
    #[serde(default)]
    slots: Option<i64>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    include_deferred: Option<bool>,
    #[serde(default)]
    team_name: Option<String>,
}

/// `PATCH /api/v2/pools/{name}` (fields limited by `update_mask`). Needs Op.
pub async fn patch_pool(
    State(state): State<WebState>,
    who: Principal,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody<PoolPatchBody>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Op)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["update_mask"])?;
    let mask = params.list("update_mask");
    if let Some(field) = mask
        .iter()
        .find(|f| !["slots", "description", "include_deferred", "pool", "name"].contains(&f.as_str()))
    {
        return Err(ApiError::bad_request(format!(
            "`{field}` cannot be updated; use slots or description"
        )));
    }
    if body.pool.as_ref().is_some_and(|p| *p != name) {
        return Err(ApiError::bad_request("pools cannot be renamed"));
    }
    check_pool_fields(
        body.slots,
        body.description.as_deref(),
        body.include_deferred,
        body.team_name.as_deref(),
    )?;
    let current = find_pool(&state, &name).await?;
    let wants = |field: &str| mask.is_empty() || mask.iter().any(|f| f == field);
    let slots = if wants("slots") {
        body.slots.unwrap_or(current.slots)
    } else {
        current.slots
    };
    let description = if wants("description") {
        body.description.clone().or(if mask.is_empty() {
            current.description.clone()
        } else {
            None
        })
    } else {
        current.description.clone()
    };
    state
        .store
        .put_pool(&name, slots, description.as_deref(), Some(&who.username))
        .await?;
    Ok(Json(shapes::pool(&find_pool(&state, &name).await?)))
}

/// `DELETE /api/v2/pools/{name}`: 204. Needs Op.
pub async fn delete_pool(
    State(state): State<WebState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    who.require(Role::Op)?;
    find_pool(&state, &name).await?;
    state.store.delete_pool(&name, Some(&who.username)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /api/v2/eventLogs`: who triggered, paused, cleared or changed what.
pub async fn events(
    State(state): State<WebState>,
    who: Principal,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&[
        "limit", "offset", "dag_id", "run_id", "task_id", "event", "owner", "order_by",
    ])?;
    let descending = match params.order_by("id")? {
        (descending, "id" | "event_log_id" | "when") => descending,
        (_, other) => {
            return Err(ApiError::bad_request(format!(
                "cannot order the event log by `{other}`; use id or -id"
            )))
        }
    };
    let filter = EventFilter {
        dag_id: params.str("dag_id").map(str::to_string),
        run_id: params.str("run_id").map(str::to_string),
        task_id: params.str("task_id").map(str::to_string),
        event: params.str("event").map(str::to_string),
        owner: params.str("owner").map(str::to_string),
        limit: params.int("limit", 50, 1, MAX_LIMIT)?,
        offset: params.int("offset", 0, 0, i64::MAX)?,
        descending,
    };
    let (rows, total) = state.store.list_events(&filter).await?;
    Ok(Json(json!({
        "event_logs": rows.iter().map(shapes::event).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

/// `GET /api/v2/eventLogs/{id}`.
pub async fn event(State(state): State<WebState>, who: Principal, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let id: i64 = id.parse().map_err(|_| {
        ApiError::validation(
            &["path", "event_log_id"],
            format!("`{id}` is not an integer"),
            "int_parsing",
        )
    })?;
    let row = state
        .store
        .get_event(id)
        .await
        .map_err(|_| ApiError::not_found(format!("The Event Log with id: `{id}` not found")))?;
    Ok(Json(shapes::event(&row)))
}

/// `GET /api/v2/dagctl/whoami`: the caller's name and role, and the CSRF token of their session.
pub async fn whoami(State(state): State<WebState>, who: Principal) -> Json<Value> {
    Json(json!({
        "username": who.username,
        "role": who.role.as_str(),
        "csrf_token": state.keys.csrf_token(&who.session_id),
    }))
}

/// `POST /api/v2/dagctl/token`: an API token for the signed-in user, so single sign-on users (who have no
/// password for `/auth/token`) can script against the API too. From a browser session it needs the CSRF token.
pub async fn issue_token(State(state): State<WebState>, who: Principal) -> ApiResult<Response> {
    who.require(Role::Viewer)?;
    let ttl = state.config.token_ttl_secs;
    let (token, _) = state.keys.issue(&who.username, who.role, "api", ttl);
    state
        .store
        .audit("token_issued", None, None, Some(&who.username), Some("api token"))
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"access_token": token, "expires_in": ttl})),
    )
        .into_response())
}
