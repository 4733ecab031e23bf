//! DAG runs: trigger, list (offset or cursor paging, `~` for every DAG), get, set state or note, clear.

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use engine::runs::{ManualRunId, RunKind, RunRequest, RunRequestError, TriggeredBy};
use engine::state::RunState;
use engine::store::{CursorValue, RunFilter, RunOrder, RunRow, RunType, TimeRange};
use serde_json::{json, Value};

use super::dags::find_dag;
use super::shapes::{self, Versions};
use super::MAX_LIMIT;
use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_time, JsonBody, Params};
use crate::{AuthVia, Principal, WebState};

pub(crate) async fn find_run(state: &WebState, dag_id: &str, run_id: &str) -> ApiResult<RunRow> {
    state.store.get_run(dag_id, run_id).await.map_err(|err| match err {
        engine::Error::NotFound(_) => ApiError::not_found(format!(
            "The DagRun with dag_id: `{dag_id}` and run_id: `{run_id}` was not found"
        )),
        other => other.into(),
    })
}

pub(crate) async fn run_json(state: &WebState, versions: &mut Versions, run: &RunRow) -> ApiResult<Value> {
    let version = versions.get(&state.store, &run.dag_id, &run.version_hash).await?;
    Ok(shapes::run(run, version))
}

const LIST_PARAMS: &[&str] = &[
    "limit",
    "offset",
    "cursor",
    "state",
    "run_type",
    "order_by",
    "run_id_pattern",
    "run_after_gte",
    "run_after_gt",
    "run_after_lte",
    "run_after_lt",
    "logical_date_gte",
    "logical_date_gt",
    "logical_date_lte",
    "logical_date_lt",
    "start_date_gte",
    "start_date_gt",
    "start_date_lte",
    "start_date_lt",
    "end_date_gte",
    "end_date_gt",
    "end_date_lte",
    "end_date_lt",
];

fn range(params: &Params, name: &str) -> ApiResult<TimeRange> {
    Ok(TimeRange {
        gte: params.time(&format!("{name}_gte"))?,
        gt: params.time(&format!("{name}_gt"))?,
        lte: params.time(&format!("{name}_lte"))?,
        lt: params.time(&format!("{name}_lt"))?,
    })
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Cursor {
    /// Sort column and direction the cursor was made for.
    o: String,
    v: CursorValue,
    id: i64,
}

fn encode_cursor(order: &str, run: &RunRow, by: RunOrder) -> String {
    let cursor = Cursor {
        o: order.to_string(),
        v: by.value_of(run),
        id: run.id,
    };
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(&cursor).unwrap_or_default())
}

fn decode_cursor(text: &str, order: &str) -> ApiResult<Cursor> {
    let cursor: Cursor = URL_SAFE_NO_PAD
        .decode(text.trim())
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| {
            ApiError::validation(
                &["query", "cursor"],
                "the cursor is not one this server issued",
                "value_error",
            )
        })?;
    if cursor.o != order {
        return Err(ApiError::validation(
            &["query", "cursor"],
            format!("the cursor was made for order_by `{}`, not `{order}`", cursor.o),
            "value_error",
        ));
    }
    Ok(cursor)
}

/// `GET /api/v2/dags/{dag_id}/dagRuns` (`~` = every DAG).
pub async fn list(
    State(state): State<WebState>,
    who: Principal,
    Path(dag_id): Path<String>,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(LIST_PARAMS)?;
    let dag_filter = if dag_id == "~" {
        None
    } else {
        find_dag(&state, &dag_id).await?;
        Some(dag_id.clone())
    };
    let limit = params.int("limit", 50, 0, MAX_LIMIT)?;
    let offset = params.int("offset", 0, 0, i64::MAX)?;
    let mut states = Vec::new();
    for name in params.list("state") {
        states.push(name.parse::<RunState>().map_err(|_| {
            ApiError::validation(
                &["query", "state"],
                format!("`{name}` is not one of queued, running, success, failed"),
                "enum",
            )
        })?);
    }
    // Several run types select their union; asset materializations exist in Airflow but never in dagctl.
    let mut run_types = Vec::new();
    for name in params.list("run_type") {
        match name.as_str() {
            "manual" => run_types.push(RunType::Manual),
            "scheduled" => run_types.push(RunType::Scheduled),
            "backfill" => run_types.push(RunType::Backfill),
            "asset_triggered" => run_types.push(RunType::AssetTriggered),
            "asset_materialization" => {}
            other => {
                return Err(ApiError::validation(
                    &["query", "run_type"],
                    format!(
                        "`{other}` is not one of manual, scheduled, backfill, asset_triggered, asset_materialization"
                    ),
                    "enum",
                ))
            }
        }
    }
    let only_assets = !params.list("run_type").is_empty() && run_types.is_empty();
    let (descending, column) = params.order_by("id")?;
    let order_text = if descending {
        format!("-{column}")
    } else {
        column.to_string()
    };
    let order_by = RunOrder::parse(column).ok_or_else(|| {
        ApiError::bad_request(format!(
            "cannot order runs by `{column}`; use one of {} (prefix - for descending)",
            RunOrder::ALL.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let cursor_text = params.str("cursor");
    let paging_by_cursor = cursor_text.is_some();
    if paging_by_cursor && order_by.nullable() {
        return Err(ApiError::bad_request(format!(
            "cursor paging cannot order by `{column}`, which can be empty; order by id, run_after, dag_id, run_id, state or run_type"
        )));
    }
    if paging_by_cursor && offset != 0 {
        return Err(ApiError::bad_request("use either cursor or offset, not both"));
    }
    let after = match cursor_text {
        Some(text) if !text.is_empty() => {
            let cursor = decode_cursor(text, &order_text)?;
            Some((cursor.v, cursor.id))
        }
        _ => None,
    };
    let filter = RunFilter {
        dag_id: dag_filter,
        states,
        run_types,
        run_id_pattern: params.pattern("run_id_pattern")?.map(|p| format!("%{p}%")),
        run_after: range(&params, "run_after")?,
        logical_date: range(&params, "logical_date")?,
        start_date: range(&params, "start_date")?,
        end_date: range(&params, "end_date")?,
        // One more than asked for tells whether a next page exists.
        limit: if paging_by_cursor { limit + 1 } else { limit },
        offset,
        order_by: Some(order_by),
        descending,
        after,
    };
    let (mut runs, total) = if only_assets {
        (Vec::new(), 0)
    } else if limit == 0 {
        let (_, total) = state.store.list_runs(&RunFilter { limit: 1, ..filter }).await?;
        (Vec::new(), total)
    } else {
        state.store.list_runs(&filter).await?
    };
    let mut next_cursor = Value::Null;
    if paging_by_cursor && runs.len() as i64 > limit {
        runs.truncate(limit as usize);
        if let Some(last) = runs.last() {
            next_cursor = json!(encode_cursor(&order_text, last, order_by));
        }
    }
    let mut versions = Versions::default();
    let mut page = Vec::with_capacity(runs.len());
    for run in &runs {
        page.push(run_json(&state, &mut versions, run).await?);
    }
    let mut body = json!({"dag_runs": page, "total_entries": total});
    if paging_by_cursor {
        body["next_cursor"] = next_cursor;
        body["previous_cursor"] = Value::Null;
    }
    Ok(Json(body))
}

/// `GET /api/v2/dags/{dag_id}/dagRuns/{run_id}`.
pub async fn get(
    State(state): State<WebState>,
    who: Principal,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let run = find_run(&state, &dag_id, &run_id).await?;
    Ok(Json(run_json(&state, &mut Versions::default(), &run).await?))
}

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    #[serde(default)]
    pub dag_run_id: Option<String>,
    #[serde(default)]
    pub logical_date: Option<String>,
    #[serde(default)]
    pub data_interval_start: Option<String>,
    #[serde(default)]
    pub data_interval_end: Option<String>,
    #[serde(default)]
    pub run_after: Option<String>,
    #[serde(default)]
    pub conf: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub partition_key: Option<String>,
}

fn body_time(name: &str, value: &Option<String>) -> ApiResult<Option<DateTime<Utc>>> {
    value
        .as_deref()
        .map(|text| {
            parse_time(text).ok_or_else(|| {
                ApiError::validation(
                    &["body", name],
                    format!("`{text}` is not an ISO 8601 date-time"),
                    "datetime_parsing",
                )
            })
        })
        .transpose()
}

/// The answer to a run request the engine refused: 422 on `dag_run_id` for a run id, 400 for the data interval.
fn request_error(err: RunRequestError) -> ApiError {
    match err {
        RunRequestError::RunId(message) => ApiError::validation(&["body", "dag_run_id"], message, "value_error"),
        RunRequestError::HalfInterval => {
            ApiError::bad_request("give both data_interval_start and data_interval_end, or neither")
        }
        RunRequestError::ReversedInterval => ApiError::bad_request("data_interval_start is after data_interval_end"),
        RunRequestError::IntervalWithoutLogicalDate => ApiError::bad_request("a data interval needs a logical_date"),
    }
}

/// Creates a manual run; shared by the API and the UI's trigger form.
pub async fn create_manual_run(
    state: &WebState,
    who: &Principal,
    dag_id: &str,
    body: TriggerBody,
) -> ApiResult<RunRow> {
    who.require(Role::User)?;
    let dag = find_dag(state, dag_id).await?;
    let run_id = body
        .dag_run_id
        .as_deref()
        .map(ManualRunId::new)
        .transpose()
        .map_err(request_error)?;
    if body.partition_key.is_some() {
        return Err(ApiError::bad_request(
            "partition_key is not supported: dagctl has no partitioned timetables",
        ));
    }
    super::check_note(body.note.as_deref())?;
    let kind = RunKind::Manual {
        run_id,
        logical_date: body_time("logical_date", &body.logical_date)?,
        data_interval_start: body_time("data_interval_start", &body.data_interval_start)?,
        data_interval_end: body_time("data_interval_end", &body.data_interval_end)?,
        run_after: body_time("run_after", &body.run_after)?,
    };
    let via = if who.via == AuthVia::Session {
        TriggeredBy::Ui
    } else {
        TriggeredBy::RestApi
    };
    let request = RunRequest {
        conf: body.conf.unwrap_or_default(),
        user: Some(who.username.clone()),
        note: body.note,
        ..RunRequest::new(kind, via, Utc::now())
    };
    let run = state
        .store
        .create_run(request.new_run(&dag.spec).map_err(request_error)?)
        .await
        .map_err(|err| match err {
            engine::Error::Conflict(_) => ApiError::conflict(format!(
                "A DAG run with dag_run_id `{}` or this logical date already exists for dag `{dag_id}`",
                body.dag_run_id.as_deref().unwrap_or("(generated)")
            )),
            other => other.into(),
        })?;
    Ok(run)
}

/// `POST /api/v2/dags/{dag_id}/dagRuns`: 200 with the new run, 409 when the id is taken.
pub async fn trigger(
    State(state): State<WebState>,
    who: Principal,
    Path(dag_id): Path<String>,
    JsonBody(body): JsonBody<TriggerBody>,
) -> ApiResult<Json<Value>> {
    let run = create_manual_run(&state, &who, &dag_id, body).await?;
    Ok(Json(run_json(&state, &mut Versions::default(), &run).await?))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunPatchBody {
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

/// `PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}`: state (queued clears the run, success/failed mark it)
/// and note, limited by `update_mask`.
pub async fn patch(
    State(state): State<WebState>,
    who: Principal,
    Path((dag_id, run_id)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    JsonBody(body): JsonBody<RunPatchBody>,
) -> ApiResult<Json<Value>> {
    who.require(Role::User)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&["update_mask"])?;
    let mask = params.list("update_mask");
    if let Some(field) = mask.iter().find(|f| *f != "state" && *f != "note") {
        return Err(ApiError::bad_request(format!(
            "`{field}` cannot be updated; use state or note"
        )));
    }
    let wants = |field: &str| mask.is_empty() || mask.iter().any(|f| f == field);
    super::check_note(body.note.as_deref())?;
    let target = match (&body.state, wants("state")) {
        (Some(text), true) => {
            let target: RunState = text.parse().map_err(|_| {
                ApiError::validation(
                    &["body", "state"],
                    format!("`{text}` is not one of queued, success, failed"),
                    "enum",
                )
            })?;
            if target == RunState::Running {
                return Err(ApiError::validation(
                    &["body", "state"],
                    "`running` cannot be set by hand; use queued, success or failed",
                    "enum",
                ));
            }
            Some(target)
        }
        _ => None,
    };
    find_run(&state, &dag_id, &run_id).await?;
    if let Some(target) = target {
        if target == RunState::Queued {
            state
                .store
                .clear_tis(&dag_id, &run_id, None, false, Some(&who.username))
                .await?;
        } else {
            state
                .store
                .mark_run(&dag_id, &run_id, target, Some(&who.username))
                .await?;
        }
    }
    if wants("note") && (body.note.is_some() || mask.iter().any(|f| f == "note")) {
        state
            .store
            .set_run_note(&dag_id, &run_id, body.note.as_deref(), Some(&who.username))
            .await?;
    }
    let run = find_run(&state, &dag_id, &run_id).await?;
    Ok(Json(run_json(&state, &mut Versions::default(), &run).await?))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunClearBody {
    #[serde(default = "super::yes")]
    dry_run: bool,
    #[serde(default)]
    only_failed: bool,
    #[serde(default)]
    run_on_latest_version: bool,
    /// Clear only tasks new in the latest version (3.3); a run keeps its version, so none are new.
    #[serde(default)]
    only_new: bool,
    /// A note for the run, set with the clear.
    #[serde(default)]
    note: Option<String>,
}

/// `POST /api/v2/dags/{dag_id}/dagRuns/{run_id}/clear`: with `dry_run` (the default, as in Airflow) the task
/// instances that would be cleared; otherwise clears them and answers with the run.
pub async fn clear(
    State(state): State<WebState>,
    who: Principal,
    Path((dag_id, run_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<RunClearBody>,
) -> ApiResult<Json<Value>> {
    who.require(Role::User)?;
    if body.run_on_latest_version {
        return Err(ApiError::bad_request(
            "run_on_latest_version is not supported: a cleared run keeps the DAG version it started with",
        ));
    }
    if body.only_new {
        return Err(ApiError::bad_request(
            "only_new is not supported: a cleared run keeps the DAG version it started with, so no task is new",
        ));
    }
    super::check_note(body.note.as_deref())?;
    let run = find_run(&state, &dag_id, &run_id).await?;
    if body.dry_run {
        let tis = state.store.tis_of_run(run.id).await?;
        let mut versions = Versions::default();
        let version = versions.get(&state.store, &dag_id, &run.version_hash).await?;
        let chosen: Vec<Value> = tis
            .iter()
            .filter(|ti| {
                !body.only_failed
                    || matches!(
                        ti.state,
                        engine::state::TaskState::Failed | engine::state::TaskState::UpstreamFailed
                    )
            })
            .map(|ti| shapes::task_instance(ti, &run, version.clone()))
            .collect();
        return Ok(Json(json!({"total_entries": chosen.len(), "task_instances": chosen})));
    }
    state
        .store
        .clear_tis(&dag_id, &run_id, None, body.only_failed, Some(&who.username))
        .await?;
    if let Some(note) = &body.note {
        state
            .store
            .set_run_note(&dag_id, &run_id, Some(note), Some(&who.username))
            .await?;
    }
    let run = find_run(&state, &dag_id, &run_id).await?;
    Ok(Json(run_json(&state, &mut Versions::default(), &run).await?))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use engine::runs::{ManualRunId, RunRequestError};
    use serde_json::json;

    use super::request_error;

    #[test]
    fn refused_run_requests_keep_the_api_s_statuses_and_messages() {
        let run_id = ManualRunId::new("scheduled__x").unwrap_err();
        let err = request_error(run_id.clone());
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            err.detail,
            json!([{"loc": ["body", "dag_run_id"], "msg": run_id.to_string(), "type": "value_error"}])
        );
        for (refused, message) in [
            (
                RunRequestError::HalfInterval,
                "give both data_interval_start and data_interval_end, or neither",
            ),
            (
                RunRequestError::ReversedInterval,
                "data_interval_start is after data_interval_end",
            ),
            (
                RunRequestError::IntervalWithoutLogicalDate,
                "a data interval needs a logical_date",
            ),
        ] {
            let err = request_error(refused);
            assert_eq!(err.status, StatusCode::BAD_REQUEST);
            assert_eq!(err.detail, json!(message));
        }
    }
}
