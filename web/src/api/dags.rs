//! DAGs: list, get, details, pause/unpause; the grid and graph the UI draws.

use std::collections::{HashMap, HashSet};

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use engine::state::RunState;
use engine::store::{DagRow, RunFilter};
use serde_json::{json, Value};

use super::shapes::{self, Versions};
use super::{like, MAX_LIMIT};
use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Params};
use crate::{Principal, WebState};

/// Files with import errors, to flag their DAGs.
pub(crate) async fn files_with_errors(state: &WebState) -> ApiResult<HashSet<String>> {
    Ok(state
        .store
        .import_errors()
        .await?
        .into_iter()
        .map(|e| e.filename)
        .collect())
}

pub(crate) async fn find_dag(state: &WebState, dag_id: &str) -> ApiResult<DagRow> {
    state.store.get_dag(dag_id).await.map_err(|err| match err {
        engine::Error::NotFound(_) => ApiError::not_found(format!("The Dag with ID: `{dag_id}` was not found")),
        other => other.into(),
    })
}

/// `GET /api/v2/dags`.
pub async fn list(State(state): State<WebState>, who: Principal, RawQuery(query): RawQuery) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&[
        "limit",
        "offset",
        "tags",
        "tags_match_mode",
        "dag_id_pattern",
        "paused",
        "order_by",
        "exclude_stale",
    ])?;
    let limit = params.int("limit", 50, 0, MAX_LIMIT)?;
    let offset = params.int("offset", 0, 0, i64::MAX)?;
    let tags = params.list("tags");
    let match_all = match params.str("tags_match_mode") {
        None | Some("any") => false,
        Some("all") => true,
        Some(other) => {
            return Err(ApiError::validation(
                &["query", "tags_match_mode"],
                format!("`{other}` is not one of any, all"),
                "enum",
            ))
        }
    };
    let paused = params.bool("paused")?;
    let exclude_stale = params.bool("exclude_stale")?.unwrap_or(true);
    let pattern = params.pattern("dag_id_pattern")?;
    let (descending, column) = params.order_by("dag_id")?;
    let errors = files_with_errors(&state).await?;
    let mut dags: Vec<DagRow> = state
        .store
        .list_dags(!exclude_stale)
        .await?
        .into_iter()
        .filter(|d| paused.is_none_or(|p| d.is_paused == p))
        .filter(|d| pattern.as_deref().is_none_or(|p| like(p, &d.dag_id)))
        .filter(|d| {
            tags.is_empty()
                || if match_all {
                    tags.iter().all(|t| d.spec.tags.contains(t))
                } else {
                    tags.iter().any(|t| d.spec.tags.contains(t))
                }
        })
        .collect();
    match column {
        "dag_id" | "dag_display_name" => dags.sort_by(|a, b| a.dag_id.cmp(&b.dag_id)),
        "next_dagrun" => dags.sort_by(|a, b| a.next_dagrun.cmp(&b.next_dagrun).then(a.dag_id.cmp(&b.dag_id))),
        "last_parsed_time" => dags.sort_by_key(|d| d.last_parsed_at),
        "is_paused" => dags.sort_by(|a, b| a.is_paused.cmp(&b.is_paused).then(a.dag_id.cmp(&b.dag_id))),
        other => {
            return Err(ApiError::bad_request(format!(
                "cannot order DAGs by `{other}`; use dag_id, dag_display_name, next_dagrun, last_parsed_time or is_paused (prefix - for descending)"
            )))
        }
    }
    if descending {
        dags.reverse();
    }
    Ok(super::collection("dags", &dags, offset, limit, |d| {
        shapes::dag(d, errors.contains(&d.fileloc))
    }))
}

/// `GET /api/v2/dags/{dag_id}`.
pub async fn get(State(state): State<WebState>, who: Principal, Path(dag_id): Path<String>) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    dag_json(&state, &dag_id).await
}

/// `DAGResponse` of one DAG as stored now.
async fn dag_json(state: &WebState, dag_id: &str) -> ApiResult<Json<Value>> {
    let dag = find_dag(state, dag_id).await?;
    let errors = files_with_errors(state).await?;
    Ok(Json(shapes::dag(&dag, errors.contains(&dag.fileloc))))
}

/// `GET /api/v2/dags/{dag_id}/details`.
pub async fn details(
    State(state): State<WebState>,
    who: Principal,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let dag = find_dag(&state, &dag_id).await?;
    let errors = files_with_errors(&state).await?;
    let version = Versions::default()
        .get(&state.store, &dag.dag_id, &dag.version_hash)
        .await?;
    let (_, active) = state
        .store
        .list_runs(&RunFilter {
            dag_id: Some(dag_id.clone()),
            states: vec![RunState::Queued, RunState::Running],
            limit: 1,
            ..Default::default()
        })
        .await?;
    Ok(Json(shapes::dag_details(
        &dag,
        errors.contains(&dag.fileloc),
        version,
        active,
    )))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DagPatchBody {
    is_paused: bool,
}

/// `PATCH /api/v2/dags/{dag_id}?update_mask=is_paused`.
pub async fn patch(
    State(state): State<WebState>,
    who: Principal,
    Path(dag_id): Path<String>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody<DagPatchBody>,
) -> ApiResult<Json<Value>> {
    who.require(Role::User)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["update_mask"])?;
    if let Some(field) = params.list("update_mask").into_iter().find(|f| f != "is_paused") {
        return Err(ApiError::bad_request(format!(
            "only `is_paused` can be updated, not `{field}`"
        )));
    }
    find_dag(&state, &dag_id).await?;
    state
        .store
        .set_paused(&dag_id, body.is_paused, Some(&who.username))
        .await?;
    dag_json(&state, &dag_id).await
}

/// `GET /api/v2/dagctl/dags/{dag_id}/grid?limit=&offset=`: a page of runs (newest first) with the state of
/// every task, tasks in topological order.
pub async fn grid(
    State(state): State<WebState>,
    who: Principal,
    Path(dag_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["limit", "offset"])?;
    let limit = params.int("limit", 25, 1, 100)?;
    let offset = params.int("offset", 0, 0, i64::MAX)?;
    let dag = find_dag(&state, &dag_id).await?;
    let (runs, total) = state
        .store
        .list_runs(&RunFilter {
            dag_id: Some(dag_id.clone()),
            limit,
            offset,
            descending: true,
            ..Default::default()
        })
        .await?;
    let pks: Vec<i64> = runs.iter().map(|r| r.id).collect();
    let mut by_run: HashMap<i64, serde_json::Map<String, Value>> = HashMap::new();
    let tis = state.store.tis_of_runs(&pks).await?;
    let mut cells: HashMap<(i64, &str), Vec<&engine::store::TiRow>> = HashMap::new();
    for ti in &tis {
        cells.entry((ti.run_pk, ti.task_id.as_str())).or_default().push(ti);
    }
    for ((run_pk, task_id), instances) in cells {
        let plain = instances.len() == 1 && instances[0].map_index < 0;
        let value = if plain {
            let ti = instances[0];
            json!({"state": shapes::task_state(ti.state), "try_number": ti.try_number,
                   "start_date": shapes::opt_ts(ti.start_date), "end_date": shapes::opt_ts(ti.end_date)})
        } else {
            // A mapped task: its instances' summary state, how many there are, and their span.
            let summary = engine::mapping::summary_state(instances.iter().map(|ti| ti.state))
                .unwrap_or(engine::state::TaskState::None);
            json!({"state": shapes::task_state(summary),
                   "map_count": instances.iter().filter(|ti| ti.state != engine::state::TaskState::Removed).count(),
                   "try_number": instances.iter().map(|ti| ti.try_number).max(),
                   "start_date": shapes::opt_ts(instances.iter().filter_map(|ti| ti.start_date).min()),
                   "end_date": shapes::opt_ts(instances.iter().filter_map(|ti| ti.end_date).max())})
        };
        by_run.entry(run_pk).or_default().insert(task_id.to_string(), value);
    }
    Ok(Json(json!({
        "dag_id": dag_id,
        "tasks": task_order(&dag),
        "total_runs": total,
        "runs": runs.iter().map(|r| json!({
            "dag_run_id": r.run_id,
            "state": r.state.as_str(),
            "run_type": r.run_type.as_str(),
            "run_after": shapes::ts(r.run_after),
            "logical_date": shapes::opt_ts(r.logical_date),
            "start_date": shapes::opt_ts(r.start_date),
            "end_date": shapes::opt_ts(r.end_date),
            "task_instances": by_run.remove(&r.id).unwrap_or_default(),
        })).collect::<Vec<_>>(),
    })))
}

/// Task ids of a DAG's latest version in topological order.
pub fn task_order(dag: &DagRow) -> Vec<String> {
    let edges: Vec<(String, Vec<String>)> = dag
        .spec
        .tasks
        .iter()
        .map(|t| (t.task_id.clone(), t.upstream.clone()))
        .collect();
    engine::graph::topological_order(&edges)
        .unwrap_or_else(|_| dag.spec.tasks.iter().map(|t| t.task_id.clone()).collect())
}

/// `GET /api/v2/dagctl/dags/{dag_id}/graph`: nodes (with operator, group, trigger rule) and edges.
pub async fn graph(
    State(state): State<WebState>,
    who: Principal,
    Path(dag_id): Path<String>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let dag = find_dag(&state, &dag_id).await?;
    let order = task_order(&dag);
    let nodes: Vec<Value> = order
        .iter()
        .filter_map(|id| dag.spec.task(id))
        .map(|t| {
            json!({
                "id": t.task_id,
                "operator": shapes::operator_name(&t.operator),
                "task_group": t.task_group,
                "trigger_rule": t.trigger_rule,
                "retries": t.retries,
                "pool": t.pool,
            })
        })
        .collect();
    let edges: Vec<Value> = dag
        .spec
        .tasks
        .iter()
        .flat_map(|t| {
            t.upstream
                .iter()
                .map(move |u| json!({"source_id": u, "target_id": t.task_id}))
        })
        .collect();
    Ok(Json(json!({"dag_id": dag_id, "nodes": nodes, "edges": edges})))
}
