//! Task instances: list, get, tries, clear; their logs (JSON pages with a continuation token, or NDJSON that
//! follows a running try) and XCom entries.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use engine::mapping::UNMAPPED;
use engine::state::TaskState;
use engine::store::{RunFilter, RunRow, TiRow, TimeRange};
use serde_json::{json, Value};

use super::dags::find_dag;
use super::runs::find_run;
use super::shapes::{self, Versions};
use super::MAX_LIMIT;
use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_time, JsonBody, Params};
use crate::{Principal, WebState};

/// A task instance with its run and the `DagVersionResponse` of the run's version.
async fn ti_with_version(
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

async fn find_ti(
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

fn parse_map_index(text: &str) -> ApiResult<i64> {
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

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearBody {
    #[serde(default = "super::yes")]
    dry_run: bool,
    #[serde(default)]
    dag_run_id: Option<String>,
    #[serde(default)]
    start_date: Option<String>,
    #[serde(default)]
    end_date: Option<String>,
    #[serde(default = "super::yes")]
    only_failed: bool,
    #[serde(default)]
    only_running: bool,
    #[serde(default = "super::yes")]
    reset_dag_runs: bool,
    #[serde(default)]
    task_ids: Option<Vec<Value>>,
    #[serde(default)]
    include_upstream: bool,
    #[serde(default)]
    include_downstream: bool,
    #[serde(default)]
    include_future: bool,
    #[serde(default)]
    include_past: bool,
    #[serde(default)]
    run_on_latest_version: bool,
    #[serde(default)]
    prevent_running_task: bool,
    /// A note for the runs whose task instances are cleared (dagctl keeps notes on runs).
    #[serde(default)]
    note: Option<String>,
}

/// `POST /api/v2/dags/{dag_id}/clearTaskInstances`: clears (or, with `dry_run`, lists) the chosen task
/// instances of one run or of the runs in a date range; upstream/downstream tasks are added on request.
pub async fn clear(
    State(state): State<WebState>,
    who: Principal,
    Path(dag_id): Path<String>,
    JsonBody(body): JsonBody<ClearBody>,
) -> ApiResult<Json<Value>> {
    who.require(Role::User)?;
    for (flag, name) in [
        (body.include_future, "include_future"),
        (body.include_past, "include_past"),
        (body.run_on_latest_version, "run_on_latest_version"),
        (!body.reset_dag_runs, "reset_dag_runs=false"),
    ] {
        if flag {
            return Err(ApiError::bad_request(format!("`{name}` is not supported by dagctl")));
        }
    }
    super::check_note(body.note.as_deref())?;
    let dag = find_dag(&state, &dag_id).await?;
    let mut wanted: Option<BTreeSet<String>> = None;
    // `[task_id, map_index]` entries: only that instance (of a task named by no plain entry).
    let mut instances: BTreeSet<(String, i64)> = BTreeSet::new();
    if let Some(ids) = &body.task_ids {
        let mut set = BTreeSet::new();
        for (i, id) in ids.iter().enumerate() {
            let (name, map_index) = match id {
                Value::String(s) => (s.clone(), None),
                Value::Array(pair)
                    if pair.len() == 2 && pair[0].is_string() && pair[1].as_i64().is_some_and(|m| m >= -1) =>
                {
                    (pair[0].as_str().unwrap_or_default().to_string(), pair[1].as_i64())
                }
                _ => {
                    return Err(ApiError::validation(
                        &["body", "task_ids", &i.to_string()],
                        "expected a task id, or [task_id, map_index]",
                        "value_error",
                    ))
                }
            };
            if dag.spec.task(&name).is_none() {
                return Err(ApiError::not_found(format!("task `{name}` is not in dag `{dag_id}`")));
            }
            match map_index {
                Some(m) => {
                    instances.insert((name, m));
                }
                None => {
                    set.insert(name);
                }
            }
        }
        // Tasks named whole, plus what is up- or downstream of them and of the instances named alone (an
        // instance named alone does not bring its task's other instances).
        let mut from = set.clone();
        from.extend(instances.iter().map(|(t, _)| t.clone()));
        let mut closure = set;
        if body.include_downstream {
            expand(&dag.spec, &from, &mut closure, true);
        }
        if body.include_upstream {
            expand(&dag.spec, &from, &mut closure, false);
        }
        wanted = Some(closure);
    }
    let runs: Vec<RunRow> = match &body.dag_run_id {
        Some(run_id) => vec![find_run(&state, &dag_id, run_id).await?],
        None => {
            let time = |name: &str, v: &Option<String>| {
                v.as_deref()
                    .map(|t| {
                        parse_time(t).ok_or_else(|| {
                            ApiError::validation(
                                &["body", name],
                                format!("`{t}` is not a date-time"),
                                "datetime_parsing",
                            )
                        })
                    })
                    .transpose()
            };
            let start = time("start_date", &body.start_date)?;
            let end = time("end_date", &body.end_date)?;
            if start.is_none() && end.is_none() {
                return Err(ApiError::bad_request(
                    "give dag_run_id, or start_date and/or end_date to choose runs",
                ));
            }
            state
                .store
                .list_runs(&RunFilter {
                    dag_id: Some(dag_id.clone()),
                    run_after: TimeRange {
                        gte: start,
                        lte: end,
                        ..Default::default()
                    },
                    limit: MAX_LIMIT + 1,
                    ..Default::default()
                })
                .await?
                .0
        }
    };
    if runs.len() as i64 > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "more than {MAX_LIMIT} runs are in that date range; narrow it"
        )));
    }
    let mut versions = Versions::default();
    let mut out = Vec::new();
    for run in &runs {
        let tis = state.store.tis_of_run(run.id).await?;
        let chosen: Vec<&TiRow> = tis
            .iter()
            .filter(|ti| {
                wanted.as_ref().is_none_or(|w| w.contains(&ti.task_id))
                    || instances.contains(&(ti.task_id.clone(), ti.map_index))
            })
            .filter(|ti| !body.only_failed || matches!(ti.state, TaskState::Failed | TaskState::UpstreamFailed))
            .filter(|ti| !body.only_running || ti.state == TaskState::Running)
            .filter(|ti| !body.prevent_running_task || !ti.state.is_executing())
            .collect();
        if chosen.is_empty() {
            continue;
        }
        let version = versions.get(&state.store, &dag_id, &run.version_hash).await?;
        if !body.dry_run {
            let ids: Vec<i64> = chosen.iter().map(|t| t.id).collect();
            state
                .store
                .clear_instances(run, &tis, &ids, Some(&who.username))
                .await?;
            if let Some(note) = &body.note {
                state
                    .store
                    .set_run_note(&dag_id, &run.run_id, Some(note), Some(&who.username))
                    .await?;
            }
        }
        let fresh: HashMap<i64, TiRow> = if body.dry_run {
            HashMap::new()
        } else {
            state
                .store
                .tis_of_run(run.id)
                .await?
                .into_iter()
                .map(|t| (t.id, t))
                .collect()
        };
        for ti in chosen {
            let shown = fresh.get(&ti.id).unwrap_or(ti);
            out.push(shapes::task_instance(shown, run, version.clone()));
        }
    }
    Ok(Json(json!({"task_instances": out, "total_entries": out.len()})))
}

/// Adds every task downstream (or upstream) of `from` to `into`.
fn expand(spec: &engine::spec::DagSpec, from: &BTreeSet<String>, into: &mut BTreeSet<String>, downstream: bool) {
    let mut stack: Vec<String> = from.iter().cloned().collect();
    while let Some(id) = stack.pop() {
        let next: Vec<String> = if downstream {
            spec.downstream_of(&id).map(|t| t.task_id.clone()).collect()
        } else {
            spec.task(&id).map(|t| t.upstream.clone()).unwrap_or_default()
        };
        for n in next {
            if into.insert(n.clone()) {
                stack.push(n);
            }
        }
    }
}
