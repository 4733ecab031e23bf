//! `/api/v2/dagctl/runs/{dag_id}/{run_id}/kpis` and `.../report.html`: a run's KPIs, computed when asked (a
//! running run's are live); `/api/v2/dagctl/dags/{dag_id}/kpi-trend`: a DAG's KPIs across the runs that kept
//! them. Viewers may read them. See `docs/kpis.md`.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::reports::{DagTrend, RunReport};
use crate::{Principal, WebState};

/// The run's report, once the run is known to exist.
pub async fn report_of(state: &WebState, dag_id: &str, run_id: &str) -> ApiResult<RunReport> {
    super::runs::find_run(state, dag_id, run_id).await?;
    let reports = state
        .reports
        .as_ref()
        .ok_or_else(|| ApiError::not_found("KPI reports are not available on this server"))?;
    reports.run_report(dag_id, run_id).await.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot compute the KPIs: {e}"),
        )
    })
}

/// The DAG's trend, once the DAG is known to exist.
pub async fn trend_of(state: &WebState, dag_id: &str) -> ApiResult<DagTrend> {
    state.store.get_dag(dag_id).await?;
    let reports = state
        .reports
        .as_ref()
        .ok_or_else(|| ApiError::not_found("KPI reports are not available on this server"))?;
    reports.dag_trend(dag_id).await.map_err(|e| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot read the trend: {e}"),
        )
    })
}

/// `GET /api/v2/dagctl/runs/{dag_id}/{run_id}/kpis`.
pub async fn kpis(
    State(state): State<WebState>,
    who: Principal,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    Ok(Json(report_of(&state, &dag_id, &run_id).await?.json))
}

/// `GET /api/v2/dagctl/runs/{dag_id}/{run_id}/report.html`: the self-contained report.
pub async fn report(
    State(state): State<WebState>,
    who: Principal,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Response> {
    who.require(Role::Viewer)?;
    let report = report_of(&state, &dag_id, &run_id).await?;
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], report.html).into_response())
}

/// `GET /api/v2/dagctl/dags/{dag_id}/kpi-trend`.
pub async fn trend(
    State(state): State<WebState>,
    who: Principal,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    Ok(Json(trend_of(&state, &dag_id).await?.json))
}
