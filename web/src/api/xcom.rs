//! A task instance's XCom entries.

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde_json::Value;

use super::runs::find_run;
use super::shapes;
use super::tis::find_ti;
use super::MAX_LIMIT;
use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::extract::Params;
use crate::{Principal, WebState};

/// `GET …/taskInstances/{task_id}/xcomEntries`.
pub async fn xcom_list(
    State(state): State<WebState>,
    who: Principal,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["limit", "offset", "xcom_key", "map_index"])?;
    let limit = params.int("limit", 50, 0, MAX_LIMIT)?;
    let offset = params.int("offset", 0, 0, i64::MAX)?;
    let key = params.str("xcom_key");
    // Without map_index: the entries of every instance of the task (as Airflow lists them).
    let map_index = match params.str("map_index") {
        Some(_) => Some(params.int("map_index", -1, -1, i64::MAX)?),
        None => None,
    };
    let run = find_run(&state, &dag_id, &run_id).await?;
    if state.store.task_tis(run.id, &task_id).await?.is_empty() {
        return Err(ApiError::not_found(format!(
            "The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: `{task_id}` was not found"
        )));
    }
    let rows: Vec<_> = state
        .store
        .xcom_entries(run.id, &task_id, map_index)
        .await?
        .into_iter()
        .filter(|x| key.is_none_or(|k| x.key == k))
        .collect();
    Ok(super::collection("xcom_entries", &rows, offset, limit, |x| {
        shapes::xcom(x, &run, false)
    }))
}

/// `GET …/taskInstances/{task_id}/xcomEntries/{key}`.
pub async fn xcom_get(
    State(state): State<WebState>,
    who: Principal,
    Path((dag_id, run_id, task_id, key)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["map_index", "deserialize", "stringify"])?;
    let map_index = params.int("map_index", -1, -1, i64::MAX)?;
    let (run, ti) = find_ti(&state, &dag_id, &run_id, &task_id, map_index).await?;
    let row = state
        .store
        .xcom_entries(run.id, &ti.task_id, Some(map_index))
        .await?
        .into_iter()
        .find(|x| x.key == key)
        .ok_or_else(|| ApiError::not_found(format!("XCom entry with key: `{key}` not found")))?;
    Ok(Json(shapes::xcom(&row, &run, true)))
}
