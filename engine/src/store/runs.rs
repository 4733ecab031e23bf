//! DAG runs: creation (with their task instances, in one transaction), listing, evaluation batches.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{micros, opt_time, placeholders, time, Store, CHUNK};
use crate::spec::DagSpec;
use crate::state::{next_run_state, RunEvent, RunState, TaskState};
use crate::store::dags::spec_hash;
use crate::store::tis::{ti_from_row, TiRow, TI_COLUMNS};
use crate::timetable::DataInterval;
use crate::{Error, Result};

/// Why a run exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunType {
    Scheduled,
    Manual,
    Backfill,
}

impl RunType {
    pub fn as_str(self) -> &'static str {
        match self {
            RunType::Scheduled => "scheduled",
            RunType::Manual => "manual",
            RunType::Backfill => "backfill",
        }
    }

    pub fn parse(text: &str) -> RunType {
        match text {
            "scheduled" => RunType::Scheduled,
            "backfill" => RunType::Backfill,
            _ => RunType::Manual,
        }
    }

    /// Airflow's run id for a run of this type at `at`.
    pub fn run_id(self, at: DateTime<Utc>) -> String {
        // Whole seconds for interval starts, microseconds for trigger times, as Airflow writes them.
        let precision = if at.timestamp_subsec_micros() == 0 {
            SecondsFormat::Secs
        } else {
            SecondsFormat::Micros
        };
        format!("{}__{}", self.as_str(), at.to_rfc3339_opts(precision, false))
    }
}

/// What came of creating a scheduled run.
#[derive(Debug, Clone)]
pub enum ScheduledRun {
    Created(Box<RunRow>),
    /// A run already holds that logical date (or run id).
    Exists {
        run_id: String,
        run_type: RunType,
    },
}

/// Checks a run id chosen by a user: Airflow's default pattern (`^[A-Za-z0-9_.~:+-]+$`), at most 250
/// characters, not `.` or `..`, and not the `scheduled__`/`backfill__` prefixes the engine gives its own runs.
pub fn validate_manual_run_id(run_id: &str) -> Result<()> {
    let legal = |c: char| c.is_ascii_alphanumeric() || "_.~:+-".contains(c);
    if run_id.is_empty() || run_id.len() > 250 || !run_id.chars().all(legal) || run_id == "." || run_id == ".." {
        return Err(Error::invalid(format!(
            "run id `{}` is not allowed: use 1 to 250 of A-Z a-z 0-9 _ . ~ : + -",
            run_id.escape_debug()
        )));
    }
    for reserved in ["scheduled__", "backfill__"] {
        if run_id.starts_with(reserved) {
            return Err(Error::invalid(format!(
                "run ids starting with `{reserved}` are reserved for the scheduler"
            )));
        }
    }
    Ok(())
}

/// A DAG run row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunRow {
    pub id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub run_type: RunType,
    pub state: RunState,
    pub logical_date: Option<DateTime<Utc>>,
    pub data_interval_start: Option<DateTime<Utc>>,
    pub data_interval_end: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub conf: serde_json::Map<String, serde_json::Value>,
    pub version_hash: String,
    pub triggered_by: String,
    pub triggering_user: Option<String>,
    pub note: Option<String>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) const RUN_COLUMNS: &str =
    "id, dag_id, run_id, run_type, state, logical_date, data_interval_start, data_interval_end, \
     run_after, queued_at, start_date, end_date, conf, version_hash, triggered_by, triggering_user, note, updated_at";

pub(crate) fn run_from_row(row: &AnyRow) -> Result<RunRow> {
    let conf_text: String = row.try_get("conf")?;
    Ok(RunRow {
        id: row.try_get("id")?,
        dag_id: row.try_get("dag_id")?,
        run_id: row.try_get("run_id")?,
        run_type: RunType::parse(&row.try_get::<String, _>("run_type")?),
        state: row.try_get::<String, _>("state")?.parse()?,
        logical_date: opt_time(row, "logical_date")?,
        data_interval_start: opt_time(row, "data_interval_start")?,
        data_interval_end: opt_time(row, "data_interval_end")?,
        run_after: time(row, "run_after")?,
        queued_at: opt_time(row, "queued_at")?,
        start_date: opt_time(row, "start_date")?,
        end_date: opt_time(row, "end_date")?,
        conf: serde_json::from_str(&conf_text).unwrap_or_default(),
        version_hash: row.try_get("version_hash")?,
        triggered_by: row.try_get("triggered_by")?,
        triggering_user: row.try_get("triggering_user")?,
        note: row.try_get("note")?,
        updated_at: time(row, "updated_at")?,
    })
}

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub spec: &'a DagSpec,
    pub run_id: Option<String>,
    pub run_type: RunType,
    pub logical_date: Option<DateTime<Utc>>,
    pub data_interval: Option<DataInterval>,
    pub run_after: DateTime<Utc>,
    pub conf: serde_json::Map<String, serde_json::Value>,
    pub triggered_by: String,
    pub triggering_user: Option<String>,
    pub note: Option<String>,
}

/// Filters for listing runs.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub dag_id: Option<String>,
    pub states: Vec<RunState>,
    /// Any of these types (all when empty).
    pub run_types: Vec<RunType>,
    /// SQL LIKE pattern on the run id (`%` and `_` wildcards).
    pub run_id_pattern: Option<String>,
    pub run_after: TimeRange,
    pub logical_date: TimeRange,
    pub start_date: TimeRange,
    pub end_date: TimeRange,
    pub limit: i64,
    pub offset: i64,
    /// Sort column; `run_after` when None.
    pub order_by: Option<RunOrder>,
    /// Newest first when true.
    pub descending: bool,
    /// Keyset paging: only rows after this (sort value, id) in the chosen order.
    pub after: Option<(CursorValue, i64)>,
}

/// An inclusive or exclusive time range; every bound optional.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct TimeRange {
    pub gte: Option<DateTime<Utc>>,
    pub gt: Option<DateTime<Utc>>,
    pub lte: Option<DateTime<Utc>>,
    pub lt: Option<DateTime<Utc>>,
}

/// The columns runs can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOrder {
    Id,
    DagId,
    RunId,
    State,
    RunType,
    RunAfter,
    LogicalDate,
    StartDate,
    EndDate,
}

impl RunOrder {
    pub const ALL: [(&'static str, RunOrder); 9] = [
        ("id", RunOrder::Id),
        ("dag_id", RunOrder::DagId),
        ("run_id", RunOrder::RunId),
        ("state", RunOrder::State),
        ("run_type", RunOrder::RunType),
        ("run_after", RunOrder::RunAfter),
        ("logical_date", RunOrder::LogicalDate),
        ("start_date", RunOrder::StartDate),
        ("end_date", RunOrder::EndDate),
    ];

    pub fn parse(name: &str) -> Option<RunOrder> {
        RunOrder::ALL.iter().find(|(n, _)| *n == name).map(|(_, o)| *o)
    }

    pub fn column(self) -> &'static str {
        RunOrder::ALL
            .iter()
            .find(|(_, o)| *o == self)
            .map(|(n, _)| *n)
            .unwrap_or("id")
    }

    /// Columns that can be NULL cannot carry a keyset cursor.
    pub fn nullable(self) -> bool {
        matches!(self, RunOrder::LogicalDate | RunOrder::StartDate | RunOrder::EndDate)
    }

    fn is_text(self) -> bool {
        matches!(
            self,
            RunOrder::DagId | RunOrder::RunId | RunOrder::State | RunOrder::RunType
        )
    }

    /// The value of this column in a row, for a cursor.
    pub fn value_of(self, run: &RunRow) -> CursorValue {
        match self {
            RunOrder::Id => CursorValue::Int(run.id),
            RunOrder::DagId => CursorValue::Text(run.dag_id.clone()),
            RunOrder::RunId => CursorValue::Text(run.run_id.clone()),
            RunOrder::State => CursorValue::Text(run.state.as_str().to_string()),
            RunOrder::RunType => CursorValue::Text(run.run_type.as_str().to_string()),
            RunOrder::RunAfter => CursorValue::Int(micros(run.run_after)),
            RunOrder::LogicalDate => CursorValue::Int(run.logical_date.map(micros).unwrap_or(0)),
            RunOrder::StartDate => CursorValue::Int(run.start_date.map(micros).unwrap_or(0)),
            RunOrder::EndDate => CursorValue::Int(run.end_date.map(micros).unwrap_or(0)),
        }
    }
}

/// A sort value carried in a keyset cursor.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum CursorValue {
    Int(i64),
    Text(String),
}

enum Bind {
    Int(i64),
    Text(String),
}

/// Runs locked for evaluation, with their task instances; apply plans with [`EvalBatch::apply`].
pub struct EvalBatch {
    tx: Transaction<'static, Any>,
    pub runs: Vec<(RunRow, Vec<TiRow>)>,
}

/// A task-instance state change decided by the scheduler.
#[derive(Debug, Clone, PartialEq)]
pub struct TiChange {
    pub ti_id: i64,
    pub from: TaskState,
    pub to: TaskState,
    pub message: Option<String>,
}

/// What evaluation decided for one run.
#[derive(Debug, Clone, Default)]
pub struct RunPlan {
    pub run_pk: i64,
    pub changes: Vec<TiChange>,
    pub run_event: Option<(RunState, RunEvent)>,
    /// When the run must be looked at again even if nothing changes (a retry delay or timeout ends).
    pub next_eval_at: Option<DateTime<Utc>>,
}

impl EvalBatch {
    /// Writes every plan and commits. Returns how many task instances changed.
    pub async fn apply(mut self, plans: &[RunPlan], now: DateTime<Utc>) -> Result<usize> {
        let mut changed = 0;
        for plan in plans {
            changed += apply_changes(&mut self.tx, &plan.changes, now).await?;
            match plan.run_event {
                Some((from, event)) => {
                    let to = next_run_state(from, event)?;
                    sqlx::query("UPDATE dag_run SET state = $1, end_date = $2, needs_eval = 0, next_eval_at = NULL, updated_at = $2 WHERE id = $3 AND state = $4")
                        .bind(to.as_str())
                        .bind(micros(now))
                        .bind(plan.run_pk)
                        .bind(from.as_str())
                        .execute(&mut *self.tx)
                        .await?;
                }
                None => {
                    sqlx::query("UPDATE dag_run SET needs_eval = 0, next_eval_at = $1 WHERE id = $2")
                        .bind(plan.next_eval_at.map(micros))
                        .bind(plan.run_pk)
                        .execute(&mut *self.tx)
                        .await?;
                }
            }
        }
        self.tx.commit().await?;
        Ok(changed)
    }
}

/// Applies CAS state changes grouped by (from, to); `end_date` is set when a state is final.
pub(crate) async fn apply_changes(
    tx: &mut Transaction<'static, Any>,
    changes: &[TiChange],
    now: DateTime<Utc>,
) -> Result<usize> {
    type Group = (TaskState, TaskState, Option<String>);
    let mut groups: Vec<(Group, Vec<i64>)> = Vec::new();
    for change in changes {
        let key = (change.from, change.to, change.message.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, ids)) => ids.push(change.ti_id),
            None => groups.push((key, vec![change.ti_id])),
        }
    }
    let mut changed = 0;
    for ((from, to, message), ids) in groups {
        for chunk in ids.chunks(CHUNK) {
            let end = if to == TaskState::Success
                && matches!(from, TaskState::None | TaskState::Scheduled | TaskState::Queued)
            {
                // Completed by the scheduler itself (e.g. `empty`): it started and ended now, in one try.
                ", start_date = COALESCE(start_date, $1), end_date = COALESCE(end_date, $1), try_number = CASE WHEN try_number < 1 THEN 1 ELSE try_number END"
            } else if to.is_finished() {
                ", end_date = COALESCE(end_date, $1)"
            } else if to == TaskState::None {
                ", end_date = NULL, start_date = NULL"
            } else {
                ""
            };
            let sql = format!(
                "UPDATE task_instance SET state = $2, updated_at = $1, message = COALESCE($3, message){end} WHERE state = $4 AND id IN ({})",
                placeholders(5, chunk.len())
            );
            let mut query = sqlx::query(&sql)
                .bind(micros(now))
                .bind(to.as_str())
                .bind(message.clone())
                .bind(from.as_str());
            for id in chunk {
                query = query.bind(*id);
            }
            changed += query.execute(&mut **tx).await?.rows_affected() as usize;
        }
    }
    Ok(changed)
}

impl Store {
    /// Creates a run and its task instances (state `none`) in one transaction. A run id or logical date that
    /// already exists for the DAG is a conflict, and nothing is written.
    pub async fn create_run(&self, new: NewRun<'_>) -> Result<RunRow> {
        let mut tx = self.begin().await?;
        let run = insert_run(&mut tx, &new).await?;
        super::misc::log_event(
            &mut tx,
            "trigger",
            Some(&run.dag_id),
            Some(&run.run_id),
            None,
            new.triggering_user.as_deref(),
            Some(&new.triggered_by),
        )
        .await?;
        tx.commit().await?;
        Ok(run)
    }

    /// Creates a scheduled run unless a run exists for its logical date: another scheduler may have made it,
    /// or a manual or backfill run took that date. Returns the run that holds the date in that case.
    pub async fn create_scheduled_run(&self, new: NewRun<'_>) -> Result<ScheduledRun> {
        let mut tx = self.begin().await?;
        let holder = |row: Option<AnyRow>| -> Result<Option<ScheduledRun>> {
            row.map(|row| {
                Ok(ScheduledRun::Exists {
                    run_id: row.try_get(0)?,
                    run_type: RunType::parse(&row.try_get::<String, _>(1)?),
                })
            })
            .transpose()
        };
        let find = "SELECT run_id, run_type FROM dag_run WHERE dag_id = $1 AND (logical_date = $2 OR run_id = $3)";
        let planned_id = new
            .run_id
            .clone()
            .unwrap_or_else(|| new.run_type.run_id(new.logical_date.unwrap_or(new.run_after)));
        let existing = sqlx::query(find)
            .bind(&new.spec.dag_id)
            .bind(new.logical_date.map(micros))
            .bind(&planned_id)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(found) = holder(existing)? {
            return Ok(found);
        }
        match insert_run(&mut tx, &new).await {
            Ok(run) => {
                tx.commit().await?;
                Ok(ScheduledRun::Created(Box::new(run)))
            }
            Err(Error::Conflict(_)) => {
                drop(tx);
                let existing = sqlx::query(find)
                    .bind(&new.spec.dag_id)
                    .bind(new.logical_date.map(micros))
                    .bind(&planned_id)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(holder(existing)?.unwrap_or(ScheduledRun::Exists {
                    run_id: planned_id,
                    run_type: RunType::Scheduled,
                }))
            }
            Err(err) => Err(err),
        }
    }

    pub async fn get_run(&self, dag_id: &str, run_id: &str) -> Result<RunRow> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM dag_run WHERE dag_id = $1 AND run_id = $2");
        let row = sqlx::query(&sql)
            .bind(dag_id)
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| run_from_row(&r))
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("dag run `{run_id}` of dag `{dag_id}`")))
    }

    pub async fn get_run_by_pk(&self, pk: i64) -> Result<RunRow> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM dag_run WHERE id = $1");
        let row = sqlx::query(&sql).bind(pk).fetch_optional(&self.pool).await?;
        row.map(|r| run_from_row(&r))
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("dag run #{pk}")))
    }

    /// Runs matching a filter (one page), and how many match in all (ignoring the page and cursor).
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<(Vec<RunRow>, i64)> {
        let mut conditions = Vec::new();
        let mut binds: Vec<Bind> = Vec::new();
        let bind = |binds: &mut Vec<Bind>, value: Bind| {
            binds.push(value);
            format!("${}", binds.len())
        };
        if let Some(dag_id) = &filter.dag_id {
            let p = bind(&mut binds, Bind::Text(dag_id.clone()));
            conditions.push(format!("dag_id = {p}"));
        }
        if !filter.states.is_empty() {
            let list: Vec<String> = filter
                .states
                .iter()
                .map(|s| bind(&mut binds, Bind::Text(s.as_str().to_string())))
                .collect();
            conditions.push(format!("state IN ({})", list.join(", ")));
        }
        if !filter.run_types.is_empty() {
            let list: Vec<String> = filter
                .run_types
                .iter()
                .map(|t| bind(&mut binds, Bind::Text(t.as_str().to_string())))
                .collect();
            conditions.push(format!("run_type IN ({})", list.join(", ")));
        }
        if let Some(pattern) = &filter.run_id_pattern {
            let p = bind(&mut binds, Bind::Text(pattern.clone()));
            conditions.push(format!("run_id LIKE {p}"));
        }
        for (column, range) in [
            ("run_after", &filter.run_after),
            ("logical_date", &filter.logical_date),
            ("start_date", &filter.start_date),
            ("end_date", &filter.end_date),
        ] {
            for (op, bound) in [(">=", range.gte), (">", range.gt), ("<=", range.lte), ("<", range.lt)] {
                if let Some(at) = bound {
                    let p = bind(&mut binds, Bind::Int(micros(at)));
                    conditions.push(format!("{column} {op} {p}"));
                }
            }
        }
        let where_clause = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let count_sql = format!("SELECT COUNT(*) FROM dag_run {where_clause}");
        let order_by = filter.order_by.unwrap_or(RunOrder::RunAfter);
        let column = order_by.column();
        let (order, cmp) = if filter.descending { ("DESC", "<") } else { ("ASC", ">") };
        let mut page_conditions = conditions.clone();
        let count_binds = binds.len();
        if let Some((value, last_id)) = &filter.after {
            if order_by.nullable() {
                return Err(Error::invalid(format!(
                    "cursor paging cannot order by `{column}`, which can be empty"
                )));
            }
            let value = match (value, order_by.is_text()) {
                (CursorValue::Int(v), false) => Bind::Int(*v),
                (CursorValue::Text(v), true) => Bind::Text(v.clone()),
                _ => return Err(Error::invalid("the cursor does not match the sort order")),
            };
            let v = bind(&mut binds, value);
            let id = bind(&mut binds, Bind::Int(*last_id));
            page_conditions.push(if order_by == RunOrder::Id {
                format!("id {cmp} {id}")
            } else {
                format!("({column} {cmp} {v} OR ({column} = {v} AND id {cmp} {id}))")
            });
        }
        let page_where = if page_conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", page_conditions.join(" AND "))
        };
        let limit = if filter.limit <= 0 { 100 } else { filter.limit };
        let tiebreak = if order_by == RunOrder::Id {
            String::new()
        } else {
            format!(", id {order}")
        };
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM dag_run {page_where} ORDER BY {column} {order}{tiebreak} LIMIT {limit} OFFSET {}",
            filter.offset.max(0)
        );
        let mut query = sqlx::query(&sql);
        for value in &binds {
            query = match value {
                Bind::Int(v) => query.bind(*v),
                Bind::Text(v) => query.bind(v.clone()),
            };
        }
        let runs = query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(run_from_row)
            .collect::<Result<Vec<_>>>()?;
        let mut count_query = sqlx::query(&count_sql);
        for value in &binds[..count_binds] {
            count_query = match value {
                Bind::Int(v) => count_query.bind(*v),
                Bind::Text(v) => count_query.bind(v.clone()),
            };
        }
        let total: i64 = count_query.fetch_one(&self.pool).await?.try_get(0)?;
        Ok((runs, total))
    }

    /// Replaces a run's note (and audits it).
    pub async fn set_run_note(
        &self,
        dag_id: &str,
        run_id: &str,
        note: Option<&str>,
        user: Option<&str>,
    ) -> Result<RunRow> {
        let run = self.get_run(dag_id, run_id).await?;
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE dag_run SET note = $1, updated_at = $2 WHERE id = $3")
            .bind(note.map(str::to_string))
            .bind(micros(Utc::now()))
            .bind(run.id)
            .execute(&mut *tx)
            .await?;
        super::misc::log_event(&mut tx, "set_note", Some(dag_id), Some(run_id), None, user, None).await?;
        tx.commit().await?;
        self.get_run(dag_id, run_id).await
    }

    /// Data interval of the latest scheduled run of a DAG.
    pub async fn latest_scheduled_interval(&self, dag_id: &str) -> Result<Option<DataInterval>> {
        let row = sqlx::query(
            "SELECT data_interval_start, data_interval_end FROM dag_run WHERE dag_id = $1 AND run_type = 'scheduled' \
             AND data_interval_end IS NOT NULL ORDER BY data_interval_end DESC LIMIT 1",
        )
        .bind(dag_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(row) => match (
                opt_time(&row, "data_interval_start")?,
                opt_time(&row, "data_interval_end")?,
            ) {
                (Some(start), Some(end)) => Some(DataInterval { start, end }),
                _ => None,
            },
            None => None,
        })
    }

    /// Number of queued and running runs per DAG.
    pub async fn active_run_counts(&self) -> Result<Vec<(String, RunState, i64)>> {
        let rows = sqlx::query(
            "SELECT dag_id, state, COUNT(*) FROM dag_run WHERE state IN ('queued', 'running') GROUP BY dag_id, state",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get::<String, _>(1)?.parse()?, row.try_get(2)?)))
            .collect()
    }

    /// Queued runs of unpaused DAGs, oldest first (optionally only those in `scope`).
    pub async fn queued_runs(&self, scope: Option<&[i64]>) -> Result<Vec<RunRow>> {
        let scope_clause = match scope {
            Some(ids) if !ids.is_empty() => format!(
                "AND r.id IN ({})",
                ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            ),
            Some(_) => return Ok(Vec::new()),
            None => "AND d.is_paused = 0 AND r.triggered_by <> 'test'".to_string(),
        };
        let columns = RUN_COLUMNS
            .split(", ")
            .map(|c| format!("r.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT {columns} FROM dag_run r JOIN dag d ON d.dag_id = r.dag_id WHERE r.state = 'queued' {scope_clause} ORDER BY r.run_after, r.id LIMIT 1000"
        );
        sqlx::query(&sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(run_from_row)
            .collect()
    }

    /// Moves queued runs to running (compare-and-set). Returns the ids that started.
    pub async fn start_runs(&self, run_pks: &[i64], now: DateTime<Utc>) -> Result<Vec<i64>> {
        let mut started = Vec::new();
        if run_pks.is_empty() {
            return Ok(started);
        }
        let to = next_run_state(RunState::Queued, RunEvent::Start)?;
        let mut tx = self.begin().await?;
        for pk in run_pks {
            let result = sqlx::query("UPDATE dag_run SET state = $1, start_date = COALESCE(start_date, $2), needs_eval = 1, updated_at = $2 WHERE id = $3 AND state = 'queued'")
                .bind(to.as_str())
                .bind(micros(now))
                .bind(*pk)
                .execute(&mut *tx)
                .await?;
            if result.rows_affected() == 1 {
                started.push(*pk);
            }
        }
        tx.commit().await?;
        Ok(started)
    }

    /// Locks up to `limit` running runs that need evaluation (skipping runs another scheduler holds) and
    /// loads their task instances.
    pub async fn lock_runs_for_eval(&self, now: DateTime<Utc>, limit: i64, scope: Option<&[i64]>) -> Result<EvalBatch> {
        let mut tx = self.begin().await?;
        let scope_clause = match scope {
            Some(ids) if !ids.is_empty() => format!(
                " AND id IN ({})",
                ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            ),
            Some(_) => " AND 1 = 0".to_string(),
            // `dags test` runs belong to the process that runs them.
            None => " AND triggered_by <> 'test'".to_string(),
        };
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM dag_run WHERE state = 'running' AND (needs_eval = 1 OR next_eval_at <= $1){scope_clause} ORDER BY id LIMIT {limit}{}",
            self.skip_locked()
        );
        let runs: Vec<RunRow> = sqlx::query(&sql)
            .bind(micros(now))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(run_from_row)
            .collect::<Result<_>>()?;
        let mut out = Vec::with_capacity(runs.len());
        for run in runs {
            let sql = format!("SELECT {TI_COLUMNS} FROM task_instance WHERE run_pk = $1");
            let tis = sqlx::query(&sql)
                .bind(run.id)
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(ti_from_row)
                .collect::<Result<Vec<_>>>()?;
            out.push((run, tis));
        }
        Ok(EvalBatch { tx, runs: out })
    }

    /// Sets a run's state by hand (and audits it).
    pub async fn mark_run(&self, dag_id: &str, run_id: &str, state: RunState, user: Option<&str>) -> Result<RunRow> {
        let run = self.get_run(dag_id, run_id).await?;
        let to = next_run_state(run.state, RunEvent::Mark(state))?;
        let mut tx = self.begin().await?;
        let end = if to.is_finished() {
            Some(micros(Utc::now()))
        } else {
            None
        };
        sqlx::query("UPDATE dag_run SET state = $1, end_date = $2, needs_eval = 1, updated_at = $3 WHERE id = $4")
            .bind(to.as_str())
            .bind(end)
            .bind(micros(Utc::now()))
            .bind(run.id)
            .execute(&mut *tx)
            .await?;
        super::misc::log_event(
            &mut tx,
            "mark_run",
            Some(dag_id),
            Some(run_id),
            None,
            user,
            Some(to.as_str()),
        )
        .await?;
        tx.commit().await?;
        self.get_run(dag_id, run_id).await
    }
}

async fn insert_run(tx: &mut Transaction<'static, Any>, new: &NewRun<'_>) -> Result<RunRow> {
    let now = Utc::now();
    let run_id = new
        .run_id
        .clone()
        .unwrap_or_else(|| new.run_type.run_id(new.logical_date.unwrap_or(new.run_after)));
    if run_id.is_empty() || run_id.len() > 250 {
        return Err(Error::invalid("run id must be 1 to 250 characters"));
    }
    let conf = serde_json::to_string(&new.conf).map_err(|err| Error::invalid(err.to_string()))?;
    let hash = spec_hash(new.spec);
    let sql = format!(
        "INSERT INTO dag_run (dag_id, run_id, run_type, state, logical_date, data_interval_start, data_interval_end, run_after, queued_at, \
         conf, version_hash, triggered_by, triggering_user, note, needs_eval, updated_at) \
         VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $8) RETURNING {RUN_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(&new.spec.dag_id)
        .bind(&run_id)
        .bind(new.run_type.as_str())
        .bind(new.logical_date.map(micros))
        .bind(new.data_interval.map(|i| micros(i.start)))
        .bind(new.data_interval.map(|i| micros(i.end)))
        .bind(micros(new.run_after))
        .bind(micros(now))
        .bind(conf)
        .bind(&hash)
        .bind(&new.triggered_by)
        .bind(new.triggering_user.clone())
        .bind(new.note.clone())
        .fetch_one(&mut **tx)
        .await
        .map_err(|err| match Error::from(err) {
            Error::Conflict(_) => Error::Conflict(match new.logical_date {
                Some(date) if new.run_id.is_none() || run_id.contains("__") => format!(
                    "dag `{}` already has a run `{run_id}` or a run with logical date {}",
                    new.spec.dag_id,
                    date.to_rfc3339_opts(SecondsFormat::Secs, true)
                ),
                _ => format!("dag `{}` already has a run `{run_id}`", new.spec.dag_id),
            }),
            other => other,
        })?;
    let run = run_from_row(&row)?;
    for chunk in new.spec.tasks.chunks(CHUNK / 10) {
        let mut values = Vec::new();
        for i in 0..chunk.len() {
            let b = i * 10;
            values.push(format!(
                "(${}, ${}, ${}, ${}, ${}, 'none', 0, ${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8,
                b + 9,
                b + 10,
                chunk.len() * 10 + 1
            ));
        }
        let sql = format!(
            "INSERT INTO task_instance (uuid, run_pk, dag_id, run_id, task_id, state, try_number, max_tries, operator, pool, pool_slots, priority_weight, updated_at) VALUES {}",
            values.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for task in chunk {
            query = query
                .bind(uuid::Uuid::new_v4().to_string())
                .bind(run.id)
                .bind(&run.dag_id)
                .bind(&run.run_id)
                .bind(&task.task_id)
                .bind(i64::from(task.retries))
                .bind(&task.operator)
                .bind(&task.pool)
                .bind(i64::from(task.pool_slots))
                .bind(task.effective_priority);
        }
        query = query.bind(micros(now));
        query.execute(&mut **tx).await?;
    }
    Ok(run)
}
