//! `clearTaskInstances`: which instances a clear takes (upstream, downstream, failed only, one mapped instance)
//! and clearing them, or saying which it would (dry run).

use std::collections::{BTreeSet, HashMap};

use axum::extract::{Path, State};
use axum::Json;
use engine::state::TaskState;
use engine::store::{RunFilter, RunRow, TiRow, TimeRange};
use serde_json::{json, Value};

use super::dags::find_dag;
use super::runs::find_run;
use super::shapes::{self, Versions};
use super::MAX_LIMIT;
use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::extract::{parse_time, JsonBody};
use crate::{Principal, WebState};

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
