//! Task instances: list, get, tries (their logs are in `logs.rs`, XCom in `xcom.rs`, clearing in `clear.rs`).

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use engine::mapping::UNMAPPED;
use engine::state::TaskState;
use engine::store::{RunRow, TiRow};
use serde_json::{json, Value};

use super::runs::find_run;
use super::shapes::{self, Versions};
use super::MAX_LIMIT;
use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::extract::Params;
use crate::{Principal, WebState};

/// A task instance with its run and the `DagVersionResponse` of the run's version.
pub(super) async fn ti_with_version(
    state: &WebState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i64,
) -> ApiResult<(RunRow, TiRow, Value)> {
    let (run, ti) = find_ti(state, dag_id, run_id, task_id, map_index).await?;
    let version = Versions::default().get(&state.store, dag_id, &run.version_hash).await?;
    Ok((run, ti, version))
}

pub(super) async fn find_ti(
    state: &WebState,
    dag_id: &str,
    run_id: &str,
    task_id: &str,
    map_index: i64,
) -> ApiResult<(RunRow, TiRow)> {
    let run = find_run(state, dag_id, run_id).await?;
    match state.store.get_ti(dag_id, run_id, task_id, map_index).await {
        Ok(ti) => Ok((run, ti)),
        Err(engine::Error::NotFound(_)) => {
            // A mapped task has no instance -1 once expanded: say how to name one.
            let mapped = map_index == UNMAPPED
                && state
                    .store
                    .task_tis(run.id, task_id)
                    .await?
                    .iter()
                    .any(|ti| ti.map_index >= 0);
            Err(ApiError::not_found(if mapped {
                format!("Task instance `{task_id}` of run `{run_id}` is mapped: add the map_index to the URL (…/taskInstances/{task_id}/{{map_index}}) or list them with …/taskInstances/{task_id}/listMapped")
            } else {
                format!("The Task Instance with dag_id: `{dag_id}`, run_id: `{run_id}`, task_id: `{task_id}` and map_index: `{map_index}` was not found")
            }))
        }
        Err(other) => Err(other.into()),
    }
}

pub(super) fn parse_map_index(text: &str) -> ApiResult<i64> {
    text.parse().map_err(|_| {
        ApiError::validation(
            &["path", "map_index"],
            format!("`{text}` is not an integer"),
            "int_parsing",
        )
    })
}

fn parse_task_state(name: &str) -> ApiResult<TaskState> {
    match name {
        "none" | "no_status" | "null" => Ok(TaskState::None),
        other => TaskState::ALL.into_iter().find(|s| s.as_str() == other).ok_or_else(|| {
            ApiError::validation(
                &["query", "state"],
                format!(
                    "`{other}` is not a task state; use one of {}",
                    TaskState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
                "enum",
            )
        }),
    }
}

/// `GET …/dagRuns/{run_id}/taskInstances`.
pub async fn list(
    State(state): State<WebState>,
    who: Principal,
    Path((dag_id, run_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["limit", "offset", "state", "task_id", "order_by", "map_index"])?;
    let limit = params.int("limit", 50, 0, MAX_LIMIT)?;
    let offset = params.int("offset", 0, 0, i64::MAX)?;
    let states = params
        .list("state")
        .iter()
        .map(|s| parse_task_state(s))
        .collect::<ApiResult<Vec<_>>>()?;
    let task_id = params.str("task_id");
    let map_indexes = params
        .list("map_index")
        .iter()
        .map(|m| {
            m.parse::<i64>().map_err(|_| {
                ApiError::validation(
                    &["query", "map_index"],
                    format!("`{m}` is not an integer"),
                    "int_parsing",
                )
            })
        })
        .collect::<ApiResult<Vec<i64>>>()?;
    let run = find_run(&state, &dag_id, &run_id).await?;
    let tis: Vec<TiRow> = state
        .store
        .tis_of_run(run.id)
        .await?
        .into_iter()
        .filter(|ti| states.is_empty() || states.contains(&ti.state))
        .filter(|ti| task_id.is_none_or(|t| ti.task_id == t))
        .filter(|ti| map_indexes.is_empty() || map_indexes.contains(&ti.map_index))
        .collect();
    ordered_page(&state, &params, tis, &run, &dag_id, offset, limit, true).await
}

/// Orders task instances by Airflow's `order_by` (`task_id` and `priority_weight` only when `all_tasks`: a
/// mapped task's instances share them) and answers one page of them.
#[allow(clippy::too_many_arguments)]
async fn ordered_page(
    state: &WebState,
    params: &Params,
    mut tis: Vec<TiRow>,
    run: &RunRow,
    dag_id: &str,
    offset: i64,
    limit: i64,
    all_tasks: bool,
) -> ApiResult<Json<Value>> {
    let (descending, column) = params.order_by("map_index")?;
    match column {
        "id" if all_tasks => {}
        "map_index" => tis.sort_by_key(|t| t.map_index),
        "task_id" if all_tasks => tis.sort_by(|a, b| a.task_id.cmp(&b.task_id)),
        "state" => tis.sort_by(|a, b| a.state.as_str().cmp(b.state.as_str())),
        "start_date" => tis.sort_by_key(|t| t.start_date),
        "end_date" => tis.sort_by_key(|t| t.end_date),
        "duration" => tis.sort_by_key(|t| t.start_date.zip(t.end_date).map(|(s, e)| e - s)),
        "try_number" => tis.sort_by_key(|t| t.try_number),
        "priority_weight" if all_tasks => tis.sort_by_key(|t| t.priority_weight),
        other => {
            let columns = if all_tasks {
                "map_index, task_id, state, start_date, end_date, duration, try_number or priority_weight"
            } else {
                "map_index, state, start_date, end_date, duration or try_number"
            };
            return Err(ApiError::bad_request(format!(
                "cannot order task instances by `{other}`; use {columns}"
            )));
        }
    }
    if descending {
        tis.reverse();
    }
    let version = Versions::default().get(&state.store, dag_id, &run.version_hash).await?;
    Ok(super::collection("task_instances", &tis, offset, limit, |ti| {
        shapes::task_instance(ti, run, version.clone())
    }))
}

/// `GET …/taskInstances/{task_id}`.
pub async fn get(
    State(state): State<WebState>,
    who: Principal,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let (run, ti, version) = ti_with_version(&state, &dag_id, &run_id, &task_id, UNMAPPED).await?;
    Ok(Json(shapes::task_instance(&ti, &run, version)))
}

/// `GET …/taskInstances/{task_id}/{map_index}`: one instance of a mapped task.
pub async fn get_mapped(
    State(state): State<WebState>,
    who: Principal,
    Path((dag_id, run_id, task_id, map_index)): Path<(String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let map_index = parse_map_index(&map_index)?;
    let (run, ti, version) = ti_with_version(&state, &dag_id, &run_id, &task_id, map_index).await?;
    Ok(Json(shapes::task_instance(&ti, &run, version)))
}

/// `GET …/taskInstances/{task_id}/listMapped`: the instances of a mapped task (404 for a task that is not
/// mapped), with Airflow's paging, state filter and ordering.
pub async fn list_mapped(
    State(state): State<WebState>,
    who: Principal,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["limit", "offset", "state", "order_by"])?;
    let limit = params.int("limit", 50, 0, MAX_LIMIT)?;
    let offset = params.int("offset", 0, 0, i64::MAX)?;
    let states = params
        .list("state")
        .iter()
        .map(|s| parse_task_state(s))
        .collect::<ApiResult<Vec<_>>>()?;
    let run = find_run(&state, &dag_id, &run_id).await?;
    let (spec, _, _) = state.store.dag_version(&run.version_hash).await?;
    match spec.task(&task_id) {
        None => return Err(ApiError::not_found(format!("Task id `{task_id}` not found"))),
        Some(task) if !task.is_mapped() => {
            return Err(ApiError::not_found(format!("Task id `{task_id}` is not mapped")))
        }
        Some(_) => {}
    }
    let tis: Vec<TiRow> = state
        .store
        .task_tis(run.id, &task_id)
        .await?
        .into_iter()
        .filter(|ti| states.is_empty() || states.contains(&ti.state))
        .collect();
    ordered_page(&state, &params, tis, &run, &dag_id, offset, limit, false).await
}

/// `GET …/taskInstances/{task_id}/tries`.
pub async fn tries(
    State(state): State<WebState>,
    who: Principal,
    Path((dag_id, run_id, task_id)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    tries_of(state, who, dag_id, run_id, task_id, UNMAPPED).await
}

/// `GET …/taskInstances/{task_id}/{map_index}/tries`.
pub async fn tries_mapped(
    State(state): State<WebState>,
    who: Principal,
    Path((dag_id, run_id, task_id, map_index)): Path<(String, String, String, String)>,
) -> ApiResult<Json<Value>> {
    let map_index = parse_map_index(&map_index)?;
    tries_of(state, who, dag_id, run_id, task_id, map_index).await
}

async fn tries_of(
    state: WebState,
    who: Principal,
    dag_id: String,
    run_id: String,
    task_id: String,
    map_index: i64,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let (_, ti, version) = ti_with_version(&state, &dag_id, &run_id, &task_id, map_index).await?;
    let tries: Vec<Value> = state
        .store
        .tries(ti.id)
        .await?
        .iter()
        .map(|t| shapes::task_try(&ti, t, version.clone()))
        .collect();
    Ok(Json(json!({"total_entries": tries.len(), "task_instances": tries})))
}
