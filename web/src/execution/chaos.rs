//! The chaos fault ledger for task runners (`chain.chaos`): each part of a fault is recorded before it is
//! applied and closed once undone, so a runner killed mid-fault leaves a record the engine undoes (see
//! `engine::store::ChaosFaultRow`). The client is `chain::registry::ApiNetworks`.
//!
//! | call | body | answer |
//! |------|------|--------|
//! | `POST /execution/chaos/faults` | `{id, part, network, kind, undo, owner_host, owner_pid, owner_started}` | 204: recorded for the caller's try |
//! | `POST /execution/chaos/faults/undone` | `{id, part, error?}` | 204: closed (or, with `error`, left open with why); 404 for a part the caller did not record |

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use engine::store::ChaosFaultRow;
use serde::Deserialize;

use super::{CallerTry, ExecState};
use crate::error::{ApiError, ApiResult};
use crate::extract::JsonBody;

/// The longest `undo` text (a link's undo names two enodes and a proxy).
const MAX_UNDO: usize = 16 << 10;

/// Body of `POST /execution/chaos/faults`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordRequest {
    id: String,
    part: String,
    network: String,
    kind: String,
    undo: serde_json::Value,
    owner_host: String,
    owner_pid: i64,
    owner_started: i64,
}

/// Body of `POST /execution/chaos/faults/undone`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UndoneRequest {
    id: String,
    part: String,
    #[serde(default)]
    error: Option<String>,
}

pub(super) fn routes() -> Router<ExecState> {
    Router::new()
        .route("/execution/chaos/faults", post(record))
        .route("/execution/chaos/faults/undone", post(undone))
}

/// `POST /execution/chaos/faults`: a part of a fault the caller is about to apply.
async fn record(
    State(state): State<ExecState>,
    caller: CallerTry,
    JsonBody(body): JsonBody<RecordRequest>,
) -> ApiResult<Response> {
    let ti = caller.current(&state).await?;
    for (key, value) in [
        ("id", &body.id),
        ("part", &body.part),
        ("network", &body.network),
        ("kind", &body.kind),
        ("owner_host", &body.owner_host),
    ] {
        if value.trim().is_empty() || value.len() > 512 {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("`{key}` must be 1 to 512 characters"),
            ));
        }
    }
    let undo = body.undo.to_string();
    if !body.undo.is_object() || undo.len() > MAX_UNDO {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("`undo` must be a JSON object of at most {MAX_UNDO} bytes"),
        ));
    }
    let row = ChaosFaultRow {
        id: body.id,
        part: body.part,
        network: body.network,
        kind: body.kind,
        undo,
        owner_host: body.owner_host,
        owner_pid: body.owner_pid,
        owner_started: body.owner_started,
        dag_id: Some(ti.dag_id.clone()),
        run_id: Some(ti.run_id.clone()),
        task_id: Some(ti.task_id.clone()),
        applied_at: Utc::now(),
        undone_at: None,
        undo_error: None,
    };
    state.store.record_chaos_fault(&row).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /execution/chaos/faults/undone`: a part the caller recorded is undone (or could not be).
async fn undone(
    State(state): State<ExecState>,
    caller: CallerTry,
    JsonBody(body): JsonBody<UndoneRequest>,
) -> ApiResult<Response> {
    let ti = caller.current(&state).await?;
    let mine = state.store.chaos_fault(&body.id).await?.into_iter().any(|row| {
        row.part == body.part
            && row.dag_id.as_deref() == Some(ti.dag_id.as_str())
            && row.run_id.as_deref() == Some(ti.run_id.as_str())
            && row.task_id.as_deref() == Some(ti.task_id.as_str())
    });
    if !mine {
        return Err(ApiError::not_found(format!(
            "fault {} part {} was not recorded by this task",
            body.id, body.part
        )));
    }
    state
        .store
        .close_chaos_fault(&body.id, &body.part, Utc::now(), body.error.as_deref())
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
