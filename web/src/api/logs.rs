//! A try's log: JSON pages with a continuation token, or NDJSON that follows a running try.

use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use engine::store::TiRow;
use serde_json::{json, Value};

use super::tis::find_ti;
use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::extract::Params;
use crate::{Principal, WebState};

/// At most this much log per JSON page.
const LOG_PAGE_BYTES: u64 = 4 << 20;
/// How long an NDJSON stream follows a running try.
const FOLLOW_LIMIT: Duration = Duration::from_secs(600);

fn decode_token(token: Option<&str>) -> ApiResult<u64> {
    match token {
        None | Some("") => Ok(0),
        Some(text) => URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.strip_prefix("offset:").and_then(|n| n.parse().ok()))
            .ok_or_else(|| {
                ApiError::validation(
                    &["query", "token"],
                    "not a continuation token of this server",
                    "value_error",
                )
            }),
    }
}

fn encode_token(offset: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("offset:{offset}"))
}

/// A stored log line as Airflow's `StructuredLogMessage` (a plain-text line becomes its event).
fn structured(line: &str) -> Value {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(map)) if map.contains_key("event") => Value::Object(map),
        _ => json!({"event": line}),
    }
}

/// `GET …/taskInstances/{task_id}/logs/{try_number}`: JSON `{content, continuation_token}`, or NDJSON when
/// asked for with `Accept: application/x-ndjson` (following the try while it runs).
pub async fn logs(
    State(state): State<WebState>,
    who: Principal,
    Path((dag_id, run_id, task_id, try_number)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    who.require(Role::Viewer)?;
    let try_number: i64 = try_number.parse().map_err(|_| {
        ApiError::validation(
            &["path", "try_number"],
            format!("`{try_number}` is not an integer"),
            "int_parsing",
        )
    })?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["full_content", "map_index", "token"])?;
    let full_content = params.bool("full_content")?.unwrap_or(false);
    let map_index = params.int("map_index", -1, -1, i64::MAX)?;
    let offset = if full_content {
        0
    } else {
        decode_token(params.str("token"))?
    };
    let (_, ti) = find_ti(&state, &dag_id, &run_id, &task_id, map_index).await?;
    if try_number < 1 || try_number > ti.try_number.max(1) {
        return Err(ApiError::not_found(format!(
            "task `{task_id}` has no try {try_number} (it has made {})",
            ti.try_number
        )));
    }
    let key = worker::log::TryKey::of(&ti, try_number);
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if accept.contains("application/x-ndjson") {
        let permit = FOLLOWERS.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                "too many log streams are open; try again later or read the log as JSON pages",
            )
        })?;
        return Ok(ndjson_stream(state, key, offset, ti, try_number, permit));
    }
    let logs = std::sync::Arc::clone(&state.logs);
    let page = tokio::task::spawn_blocking(move || logs.read_from(&key, offset, LOG_PAGE_BYTES))
        .await
        .map_err(|_| ApiError::bad_request("log read interrupted"))?
        .map_err(|err| ApiError::not_found(format!("cannot read the log: {err}")))?;
    let content: Vec<Value> = page.lines.iter().map(|l| structured(l)).collect();
    Ok(Json(json!({"content": content, "continuation_token": encode_token(page.next)})).into_response())
}

/// Log streams open at once (each polls the store while its try runs).
static FOLLOWERS: std::sync::LazyLock<std::sync::Arc<tokio::sync::Semaphore>> =
    std::sync::LazyLock::new(|| std::sync::Arc::new(tokio::sync::Semaphore::new(64)));

fn ndjson_stream(
    state: WebState,
    key: worker::log::TryKey,
    offset: u64,
    ti: TiRow,
    try_number: i64,
    permit: tokio::sync::OwnedSemaphorePermit,
) -> Response {
    let started = std::time::Instant::now();
    let permit = std::sync::Arc::new(permit);
    let stream = futures_util::stream::unfold(Some(offset), move |position| {
        let key = key.clone();
        let state = state.clone();
        let ti_id = ti.id;
        // Held as long as the stream lives.
        let _permit = std::sync::Arc::clone(&permit);
        async move {
            let mut offset = position?;
            loop {
                if started.elapsed() > FOLLOW_LIMIT {
                    return None;
                }
                let logs = std::sync::Arc::clone(&state.logs);
                let k = key.clone();
                let page = tokio::task::spawn_blocking(move || logs.read_from(&k, offset, LOG_PAGE_BYTES))
                    .await
                    .ok()?
                    .ok()?;
                offset = page.next;
                let lines = page.lines;
                if !lines.is_empty() {
                    let mut chunk = String::new();
                    for line in &lines {
                        chunk.push_str(&structured(line).to_string());
                        chunk.push('\n');
                    }
                    return Some((Ok::<_, std::io::Error>(chunk), Some(offset)));
                }
                // Nothing new: stop once this try is over (or the follow budget is spent), else wait.
                let current = state.store.get_ti_by_id(ti_id).await.ok()?;
                let live = current.try_number == try_number && current.state.is_executing();
                if !live {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    });
    let mut response = axum::body::Body::from_stream(stream).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    response
}
