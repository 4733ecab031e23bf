//! Airflow 3's JSON shapes (the `*Response` models of its v2 spec), built from store rows. Every field the
//! official client 3.3.2 requires is always present.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use engine::state::TaskState;
use engine::store::{DagRow, EventRow, ImportErrorRow, PoolRow, RunRow, Store, TiRow, TryRow, VersionInfo, XcomRow};
use engine::timetable::Schedule;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::error::ApiResult;

pub fn ts(at: DateTime<Utc>) -> Value {
    Value::String(at.to_rfc3339_opts(SecondsFormat::Micros, true))
}

pub fn opt_ts(at: Option<DateTime<Utc>>) -> Value {
    at.map(ts).unwrap_or(Value::Null)
}

fn duration(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> Value {
    match (start, end) {
        (Some(s), Some(e)) => json!((e - s).num_microseconds().unwrap_or(0) as f64 / 1e6),
        _ => Value::Null,
    }
}

/// ISO 8601 duration as pydantic writes a timedelta (`PT600S`).
pub fn iso_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs_f64();
    if secs.fract() == 0.0 {
        format!("PT{}S", d.as_secs())
    } else {
        format!("PT{secs}S")
    }
}

/// Versions looked up once per request.
#[derive(Default)]
pub struct Versions {
    seen: HashMap<String, Value>,
}

impl Versions {
    /// `DagVersionResponse` of a stored version.
    pub async fn get(&mut self, store: &Store, dag_id: &str, version_hash: &str) -> ApiResult<Value> {
        if let Some(v) = self.seen.get(version_hash) {
            return Ok(v.clone());
        }
        let value = version(dag_id, &store.version_info(version_hash).await?);
        self.seen.insert(version_hash.to_string(), value.clone());
        Ok(value)
    }
}

/// `DagVersionResponse`: the bundle version is the commit the version came from (a git-synced DAGs folder).
pub fn version(dag_id: &str, info: &VersionInfo) -> Value {
    json!({
        "id": info.id,
        "version_number": info.number,
        "dag_id": dag_id,
        "dag_display_name": dag_id,
        "bundle_name": "dags-folder",
        "bundle_version": info.bundle_version,
        "bundle_url": null,
        "created_at": ts(info.created_at),
    })
}

fn file_token(fileloc: &str) -> String {
    hex::encode(Sha256::digest(fileloc.as_bytes()))
}

fn timetable_description(schedule: &Schedule) -> Option<String> {
    match schedule {
        Schedule::None => Some("Never, external triggers only".into()),
        Schedule::Assets { condition } => Some(format!("Triggered by assets {}", condition.display())),
        Schedule::Once => Some("Once, as soon as possible".into()),
        Schedule::Cron { expr, display, .. } if expr != display => Some(format!("{display} ({expr})")),
        Schedule::Cron { expr, .. } => Some(format!("cron `{expr}`")),
        Schedule::CronTrigger { expr, display, .. } if expr != display => {
            Some(format!("{display} ({expr}), at each time"))
        }
        Schedule::CronTrigger { expr, .. } => Some(format!("cron `{expr}`, at each time")),
        Schedule::DeltaTrigger { seconds, .. } => Some(format!(
            "every {}, at each time",
            engine::timetable::python_timedelta(*seconds)
        )),
        Schedule::Delta { seconds } => Some(format!("every {}", engine::timetable::python_timedelta(*seconds))),
    }
}

/// `DAGResponse`.
pub fn dag(row: &DagRow, has_import_errors: bool) -> Value {
    let spec = &row.spec;
    let periodic = spec.schedule.is_periodic();
    let relative = std::path::Path::new(&row.fileloc)
        .file_name()
        .map(|n| n.to_string_lossy().to_string());
    json!({
        "dag_id": row.dag_id,
        "dag_display_name": row.dag_id,
        "is_paused": row.is_paused,
        "is_stale": row.is_stale,
        "last_parsed_time": ts(row.last_parsed_at),
        "last_parse_duration": null,
        "last_expired": null,
        "bundle_name": "dags-folder",
        "bundle_version": row.bundle_version,
        "relative_fileloc": relative,
        "fileloc": row.fileloc,
        "description": spec.description,
        "timetable_summary": spec.schedule.summary(),
        "timetable_description": timetable_description(&spec.schedule),
        "tags": spec.tags.iter().map(|t| json!({"name": t, "dag_id": row.dag_id, "dag_display_name": row.dag_id})).collect::<Vec<_>>(),
        "max_active_tasks": spec.max_active_tasks,
        "max_active_runs": spec.max_active_runs,
        "max_consecutive_failed_dag_runs": 0,
        "has_task_concurrency_limits": false,
        "has_import_errors": has_import_errors,
        "next_dagrun_logical_date": opt_ts(row.next_dagrun),
        "next_dagrun_data_interval_start": opt_ts(row.next_dagrun),
        "next_dagrun_data_interval_end": opt_ts(row.next_dagrun_create_after),
        "next_dagrun_run_after": opt_ts(row.next_dagrun_create_after),
        "allowed_run_types": null,
        "owners": [spec.owner],
        "file_token": file_token(&row.fileloc),
        "is_backfillable": periodic,
        "timetable_periodic": periodic,
        "timetable_partitioned": false,
    })
}

/// `DAGDetailsResponse`: the DAG plus its settings and latest version.
pub fn dag_details(row: &DagRow, has_import_errors: bool, latest_version: Value, active_runs: i64) -> Value {
    let spec = &row.spec;
    let mut value = dag(row, has_import_errors);
    let extra = json!({
        "catchup": spec.catchup,
        "concurrency": spec.max_active_tasks,
        "render_template_as_native_obj": spec.render_template_as_native_obj,
        "start_date": opt_ts(spec.start_date),
        "end_date": opt_ts(spec.end_date),
        "timezone": spec.timezone,
        "params": spec.params,
        "default_args": spec.default_args,
        "dag_run_timeout": spec.dagrun_timeout.map(iso_duration),
        "doc_md": spec.doc_md,
        "latest_dag_version": latest_version,
        "owner_links": null,
        "template_search_path": null,
        "is_paused_upon_creation": spec.is_paused_upon_creation,
        "active_runs_count": active_runs,
        "is_favorite": false,
        "last_parsed": ts(row.last_parsed_at),
    });
    if let (Value::Object(base), Value::Object(more)) = (&mut value, extra) {
        base.extend(more);
    }
    value
}

fn triggered_by(text: &str) -> Value {
    match text {
        "cli" | "operator" | "rest_api" | "ui" | "test" | "timetable" | "asset" | "backfill" => json!(text),
        _ => Value::Null,
    }
}

/// `DAGRunResponse`.
pub fn run(row: &RunRow, version: Value) -> Value {
    json!({
        "dag_id": row.dag_id,
        "dag_run_id": row.run_id,
        "dag_display_name": row.dag_id,
        "logical_date": opt_ts(row.logical_date),
        "queued_at": opt_ts(row.queued_at),
        "start_date": opt_ts(row.start_date),
        "end_date": opt_ts(row.end_date),
        "duration": duration(row.start_date, row.end_date),
        "data_interval_start": opt_ts(row.data_interval_start),
        "data_interval_end": opt_ts(row.data_interval_end),
        "run_after": ts(row.run_after),
        "last_scheduling_decision": null,
        "run_type": row.run_type.as_str(),
        "state": row.state.as_str(),
        "triggered_by": triggered_by(&row.triggered_by),
        "triggering_user_name": row.triggering_user,
        "conf": row.conf,
        "note": row.note,
        "bundle_version": version["bundle_version"],
        "dag_versions": [version],
        "partition_key": null,
    })
}

/// A task state as Airflow writes it (`null` for a task that has not been scheduled yet).
pub fn task_state(state: TaskState) -> Value {
    match state {
        TaskState::None => Value::Null,
        other => json!(other.as_str()),
    }
}

/// Short class name of an operator (`airflow.providers...BashOperator` -> `BashOperator`).
pub fn operator_name(operator: &str) -> &str {
    operator.rsplit('.').next().unwrap_or(operator)
}

/// `TaskInstanceResponse`.
pub fn task_instance(ti: &TiRow, run: &RunRow, version: Value) -> Value {
    json!({
        "id": ti.uuid,
        "task_id": ti.task_id,
        "dag_id": ti.dag_id,
        "dag_run_id": ti.run_id,
        "map_index": ti.map_index,
        "logical_date": opt_ts(run.logical_date),
        "run_after": ts(run.run_after),
        "start_date": opt_ts(ti.start_date),
        "end_date": opt_ts(ti.end_date),
        "duration": duration(ti.start_date, ti.end_date),
        "state": task_state(ti.state),
        "try_number": ti.try_number,
        "max_tries": ti.max_tries,
        "task_display_name": ti.task_id,
        "dag_display_name": ti.dag_id,
        "hostname": ti.hostname,
        "unixname": null,
        "pool": ti.pool,
        "pool_slots": ti.pool_slots,
        "queue": "default",
        "priority_weight": ti.priority_weight,
        "operator": operator_name(&ti.operator),
        "operator_name": operator_name(&ti.operator),
        "custom_operator_name": null,
        "queued_when": opt_ts(ti.queued_at),
        "scheduled_when": null,
        "pid": ti.pid,
        "executor": "LocalExecutor",
        "executor_config": "{}",
        "note": ti.message,
        "rendered_map_index": null,
        "rendered_fields": {},
        "trigger": null,
        "triggerer_job": null,
        "dag_version": version,
    })
}

/// `TaskInstanceHistoryResponse` of one try.
pub fn task_try(ti: &TiRow, try_row: &TryRow, version: Value) -> Value {
    json!({
        "task_id": ti.task_id,
        "dag_id": ti.dag_id,
        "dag_run_id": ti.run_id,
        "map_index": ti.map_index,
        "start_date": opt_ts(try_row.start_date),
        "end_date": opt_ts(try_row.end_date),
        "duration": duration(try_row.start_date, try_row.end_date),
        "state": task_state(try_row.state),
        "try_number": try_row.try_number,
        "max_tries": ti.max_tries,
        "task_display_name": ti.task_id,
        "dag_display_name": ti.dag_id,
        "hostname": try_row.hostname,
        "unixname": null,
        "pool": ti.pool,
        "pool_slots": ti.pool_slots,
        "queue": "default",
        "priority_weight": ti.priority_weight,
        "operator": operator_name(&ti.operator),
        "operator_name": operator_name(&ti.operator),
        "custom_operator_name": null,
        "queued_when": null,
        "scheduled_when": null,
        "pid": try_row.pid,
        "executor": "LocalExecutor",
        "executor_config": "{}",
        "dag_version": version,
    })
}

/// `PoolResponse`.
pub fn pool(row: &PoolRow) -> Value {
    json!({
        "name": row.name,
        "slots": row.slots,
        "description": row.description,
        "include_deferred": row.include_deferred,
        "occupied_slots": row.occupied_slots(),
        "running_slots": row.running_slots,
        "queued_slots": row.queued_slots,
        "scheduled_slots": row.scheduled_slots,
        "open_slots": row.open_slots(),
        "deferred_slots": 0,
        "team_name": null,
    })
}

/// `ImportErrorResponse`: the message carries file and line, as our parser reports them.
pub fn import_error(row: &ImportErrorRow) -> Value {
    json!({
        "import_error_id": row.id,
        "timestamp": ts(row.created_at),
        "filename": row.filename,
        "bundle_name": "dags-folder",
        "stack_trace": row.message,
        "line": row.line,
        "dag_id": row.dag_id,
        "task_id": row.task_id,
        "key": row.key,
    })
}

/// `EventLogResponse`.
pub fn event(row: &EventRow) -> Value {
    json!({
        "event_log_id": row.id,
        "when": ts(row.ts),
        "dag_id": row.dag_id,
        "dag_display_name": row.dag_id,
        "task_id": row.task_id,
        "task_display_name": row.task_id,
        "run_id": row.run_id,
        "map_index": null,
        "try_number": null,
        "event": row.event,
        "logical_date": null,
        "owner": row.owner,
        "extra": row.extra,
    })
}

/// `XComResponse` (with the value when `with_value`).
pub fn xcom(row: &XcomRow, run: &RunRow, with_value: bool) -> Value {
    let mut value = json!({
        "key": row.key,
        "timestamp": ts(row.created_at),
        "logical_date": opt_ts(run.logical_date),
        "map_index": row.map_index,
        "task_id": row.task_id,
        "dag_id": run.dag_id,
        "run_id": run.run_id,
        "dag_display_name": run.dag_id,
        "task_display_name": row.task_id,
        "run_after": ts(run.run_after),
    });
    if with_value {
        value["value"] = row.value.clone();
    }
    value
}
