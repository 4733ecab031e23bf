//! `/api/v2/assets`: the assets DAGs name (which DAGs they schedule, which tasks update them, their last
//! event), their events (filtered as Airflow filters them), events created by hand (`POST
//! /api/v2/assets/events`, which queue the DAGs scheduled by the asset like a task's success does), and the
//! events that went into a run (`…/dagRuns/{id}/upstreamAssetEvents`).

use std::collections::HashMap;

use axum::extract::{Path, RawQuery, State};
use axum::Json;
use chrono::Utc;
use engine::store::{AssetEventFilter, AssetEventRow, AssetRefRow, AssetRow, NewAssetEvent};
use serde::Deserialize;
use serde_json::{json, Value};

use super::shapes::{opt_ts, ts};
use super::{like, MAX_LIMIT};
use crate::auth::Role;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonBody, Params};
use crate::{Principal, WebState};

pub(crate) fn asset(row: &AssetRow, refs: &[AssetRefRow], last: Option<&(i64, chrono::DateTime<Utc>)>) -> Value {
    let mine = refs.iter().filter(|r| r.asset_id == row.id);
    let scheduled: Vec<Value> = mine
        .clone()
        .filter(|r| r.task_id.is_none())
        .map(|r| json!({"dag_id": r.dag_id, "created_at": ts(r.created_at), "updated_at": ts(r.created_at)}))
        .collect();
    let producing: Vec<Value> = mine
        .filter_map(|r| {
            r.task_id.as_ref().map(|task| {
                json!({"dag_id": r.dag_id, "task_id": task, "created_at": ts(r.created_at), "updated_at": ts(r.created_at)})
            })
        })
        .collect();
    json!({
        "id": row.id,
        "name": row.name,
        "uri": row.uri,
        "group": row.group,
        "extra": {},
        "created_at": ts(row.created_at),
        "updated_at": ts(row.updated_at),
        "scheduled_dags": scheduled,
        "producing_tasks": producing,
        "consuming_tasks": [],
        "aliases": [],
        "watchers": [],
        "last_asset_event": last.map(|(id, at)| json!({"id": id, "timestamp": ts(*at)})),
    })
}

/// `AssetEventResponse`. A run not started yet shows when it was queued as its `start_date` (the client's
/// model requires one).
pub fn event(row: &AssetEventRow) -> Value {
    let runs: Vec<Value> = row
        .created_runs
        .iter()
        .map(|r| {
            let run = &r.run;
            json!({
                "run_id": run.run_id,
                "dag_id": run.dag_id,
                "logical_date": opt_ts(run.logical_date),
                "start_date": ts(run.start_date.or(run.queued_at).unwrap_or(run.run_after)),
                "end_date": opt_ts(run.end_date),
                "state": run.state.as_str(),
                "data_interval_start": opt_ts(run.data_interval_start),
                "data_interval_end": opt_ts(run.data_interval_end),
                "partition_key": null,
                "triggering": r.triggering,
            })
        })
        .collect();
    json!({
        "id": row.id,
        "asset_id": row.asset_id,
        "uri": row.uri,
        "name": row.name,
        "group": row.group,
        "extra": row.extra.clone().unwrap_or_else(|| json!({})),
        "source_dag_id": row.source_dag_id,
        "source_task_id": row.source_task_id,
        "source_run_id": row.source_run_id,
        "source_map_index": row.source_map_index,
        "created_dagruns": runs,
        "timestamp": ts(row.timestamp),
        "partition_key": null,
    })
}

fn asset_id(text: &str) -> ApiResult<i64> {
    text.parse().map_err(|_| {
        ApiError::validation(
            &["path", "asset_id"],
            format!("`{text}` is not an integer"),
            "int_parsing",
        )
    })
}

/// `GET /api/v2/assets`.
pub async fn list(State(state): State<WebState>, who: Principal, RawQuery(query): RawQuery) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&[
        "limit",
        "offset",
        "name_pattern",
        "uri_pattern",
        "dag_ids",
        "only_active",
        "order_by",
    ])?;
    let limit = params.int("limit", 50, 0, MAX_LIMIT)?;
    let offset = params.int("offset", 0, 0, i64::MAX)?;
    let name = params.pattern("name_pattern")?;
    let uri = params.pattern("uri_pattern")?;
    let dag_ids = params.list("dag_ids");
    let only_active = !matches!(params.str("only_active"), Some("false" | "False" | "0"));
    let (descending, field) = params.order_by("id")?;
    let refs = state.store.asset_references().await?;
    let last = state.store.last_asset_events().await?;
    let mut rows: Vec<AssetRow> = state
        .store
        .list_assets()
        .await?
        .into_iter()
        .filter(|a| name.as_deref().is_none_or(|p| like(p, &a.name)))
        .filter(|a| uri.as_deref().is_none_or(|p| like(p, &a.uri)))
        .filter(|a| dag_ids.is_empty() || refs.iter().any(|r| r.asset_id == a.id && dag_ids.contains(&r.dag_id)))
        .filter(|a| !only_active || refs.iter().any(|r| r.asset_id == a.id))
        .collect();
    match field {
        "id" => {}
        "name" => rows.sort_by(|a, b| a.name.cmp(&b.name)),
        "uri" => rows.sort_by(|a, b| a.uri.cmp(&b.uri)),
        "created_at" | "updated_at" => rows.sort_by_key(|a| a.created_at),
        "last_asset_event_timestamp" => rows.sort_by_key(|a| last.get(&a.id).map(|(_, at)| *at)),
        other => {
            return Err(ApiError::bad_request(format!(
                "cannot order assets by `{other}`; use id, name, uri, created_at or last_asset_event_timestamp"
            )))
        }
    }
    if descending {
        rows.reverse();
    }
    Ok(super::collection("assets", &rows, offset, limit, |a| {
        asset(a, &refs, last.get(&a.id))
    }))
}

/// `GET /api/v2/assets/{asset_id}`.
pub async fn get(State(state): State<WebState>, who: Principal, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let id = asset_id(&id)?;
    let row = match state.store.get_asset(id).await {
        Ok(row) => row,
        Err(engine::Error::NotFound(_)) => {
            return Err(ApiError::not_found(format!("The Asset with ID: `{id}` was not found")))
        }
        Err(err) => return Err(err.into()),
    };
    let refs = state.store.asset_references().await?;
    let last: HashMap<i64, _> = state.store.last_asset_events().await?;
    Ok(Json(asset(&row, &refs, last.get(&id))))
}

/// `GET /api/v2/assets/events`.
pub async fn events(
    State(state): State<WebState>,
    who: Principal,
    RawQuery(query): RawQuery,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let params = Params::parse(query.as_deref())?;
    params.allow(&[
        "limit",
        "offset",
        "order_by",
        "asset_id",
        "source_dag_id",
        "source_task_id",
        "source_run_id",
        "source_map_index",
        "name_pattern",
        "timestamp_gte",
        "timestamp_gt",
        "timestamp_lte",
        "timestamp_lt",
    ])?;
    let descending = match params.order_by("timestamp")? {
        (descending, "timestamp" | "id") => descending,
        (_, other) => {
            return Err(ApiError::bad_request(format!(
                "cannot order asset events by `{other}`; use timestamp or id"
            )))
        }
    };
    let map_index = params.int("source_map_index", -1, -1, i64::MAX)?;
    if map_index != -1 {
        // Events come from unmapped tasks only.
        return Ok(Json(json!({"asset_events": [], "total_entries": 0})));
    }
    // The later of the lower bounds and the earlier of the upper ones, each strict or not as given.
    let bound = |inclusive: Option<chrono::DateTime<Utc>>, strict: Option<chrono::DateTime<Utc>>, lower: bool| match (
        inclusive, strict,
    ) {
        (Some(i), Some(s)) if (lower && s >= i) || (!lower && s <= i) => (Some(s), true),
        (Some(i), _) => (Some(i), false),
        (None, Some(s)) => (Some(s), true),
        (None, None) => (None, false),
    };
    let (after, after_strict) = bound(params.time("timestamp_gte")?, params.time("timestamp_gt")?, true);
    let (before, before_strict) = bound(params.time("timestamp_lte")?, params.time("timestamp_lt")?, false);
    let filter = AssetEventFilter {
        asset_id: params.str("asset_id").map(asset_id).transpose()?,
        source_dag_id: params.str("source_dag_id").map(str::to_string),
        source_task_id: params.str("source_task_id").map(str::to_string),
        source_run_id: params.str("source_run_id").map(str::to_string),
        after,
        after_strict,
        before,
        before_strict,
        event_id: None,
        run_pk: None,
        name_pattern: params.pattern("name_pattern")?,
        descending,
        limit: params.int("limit", 50, 0, MAX_LIMIT)?,
        offset: params.int("offset", 0, 0, i64::MAX)?,
    };
    let (rows, total) = state.store.asset_events(&filter).await?;
    Ok(Json(json!({
        "asset_events": rows.iter().map(event).collect::<Vec<_>>(),
        "total_entries": total,
    })))
}

/// `CreateAssetEventsBody`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEventBody {
    asset_id: i64,
    #[serde(default)]
    extra: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    partition_key: Option<String>,
    #[serde(default)]
    access_control: Option<Value>,
}

/// `POST /api/v2/assets/events`: an event made by hand (User and above), queued for the DAGs the asset
/// schedules.
pub async fn create_event(
    State(state): State<WebState>,
    who: Principal,
    JsonBody(body): JsonBody<CreateEventBody>,
) -> ApiResult<Json<Value>> {
    who.require(Role::User)?;
    if body.partition_key.is_some() || body.access_control.is_some() {
        return Err(ApiError::bad_request(
            "partition_key and access_control are not supported by dagctl",
        ));
    }
    let extra = body.extra.map(Value::Object);
    if extra.as_ref().is_some_and(|e| e.to_string().len() > 64 << 10) {
        return Err(ApiError::validation(
            &["body", "extra"],
            "extra is at most 64 KiB",
            "value_error",
        ));
    }
    let mut extra = extra.unwrap_or_else(|| json!({}));
    extra["from_rest_api"] = json!(true);
    let made = state
        .store
        .create_asset_event(
            &NewAssetEvent {
                asset_id: Some(body.asset_id),
                extra: Some(extra),
                at: Utc::now(),
                ..Default::default()
            },
            Some(&who.username),
        )
        .await
        .map_err(|err| match err {
            engine::Error::NotFound(_) => {
                ApiError::not_found(format!("The Asset with ID: `{}` was not found", body.asset_id))
            }
            other => other.into(),
        })?;
    Ok(Json(event(&made)))
}

/// `GET /api/v2/dags/{dag_id}/dagRuns/{run_id}/upstreamAssetEvents`: the events that went into a run.
pub async fn of_run(
    State(state): State<WebState>,
    who: Principal,
    Path((dag_id, run_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    who.require(Role::Viewer)?;
    let run = super::runs::find_run(&state, &dag_id, &run_id).await?;
    let rows = state.store.asset_events_of_run(run.id).await?;
    Ok(Json(json!({
        "asset_events": rows.iter().map(event).collect::<Vec<_>>(),
        "total_entries": rows.len(),
    })))
}
