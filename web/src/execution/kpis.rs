//! KPIs for task runners (`chain.log_etl`): keeping the KPIs a try computed for its run, and reading the
//! headline figures of its DAG's earlier runs for trends. The client is `chain::registry::ApiNetworks`.
//!
//! | call | body | answer |
//! |------|------|--------|
//! | `PUT /execution/kpis` | `{kpis: {...}}` (a JSON object) | 204: kept for the caller's DAG, run and task |
//! | `GET /execution/kpis/history?limit=N` | | `[{run_id, computed_at, scalars}]`: the newest KPIs of the caller DAG's other runs, newest first (N at most 100, default 7) |

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use engine::store::RunKpiRow;
use serde::{Deserialize, Serialize};

use super::{CallerTry, ExecState};
use crate::error::ApiResult;
use crate::extract::{JsonBody, Params};

/// Body of `PUT /execution/kpis`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct KpisRequest {
    kpis: serde_json::Map<String, serde_json::Value>,
}

/// One earlier run in `GET /execution/kpis/history`.
#[derive(Debug, Serialize)]
struct HistoryItem {
    run_id: String,
    computed_at: DateTime<Utc>,
    scalars: serde_json::Value,
}

pub(super) fn routes() -> Router<ExecState> {
    Router::new()
        .route("/execution/kpis", put(save))
        .route("/execution/kpis/history", get(history))
}

/// `PUT /execution/kpis`: the caller's KPIs of its run.
async fn save(
    State(state): State<ExecState>,
    caller: CallerTry,
    JsonBody(body): JsonBody<KpisRequest>,
) -> ApiResult<Response> {
    let ti = caller.current(&state).await?;
    let row = RunKpiRow {
        dag_id: ti.dag_id.clone(),
        run_id: ti.run_id.clone(),
        task_id: ti.task_id.clone(),
        computed_at: Utc::now(),
        kpis: serde_json::Value::Object(body.kpis).to_string(),
    };
    state.store.put_run_kpis(&row).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /execution/kpis/history`: the headline figures of the caller DAG's other runs.
async fn history(
    State(state): State<ExecState>,
    caller: CallerTry,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Vec<HistoryItem>>> {
    let ti = caller.current(&state).await?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["limit"])?;
    let limit = params.int("limit", 7, 1, 100)? as u32;
    let rows = state.store.dag_kpis(&ti.dag_id, Some(&ti.run_id), limit).await?;
    let items = rows
        .into_iter()
        .map(|row| {
            let scalars = serde_json::from_str::<serde_json::Value>(&row.kpis)
                .ok()
                .and_then(|v| v.get("scalars").cloned())
                .unwrap_or_else(|| serde_json::json!({}));
            HistoryItem {
                run_id: row.run_id,
                computed_at: row.computed_at,
                scalars,
            }
        })
        .collect();
    Ok(Json(items))
}
