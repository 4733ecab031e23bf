//! Task instances: the row, its tries, and the reads. Claiming and starting is in `claim`, the ends of tries
//! in `finish`, where tries run (pids, heartbeats) and orphans in `liveness`, and clearing and marking by hand
//! in `edits`.

mod claim;
mod edits;
mod finish;
mod liveness;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

pub use claim::{Claim, ClaimLimits};
pub use finish::FinishedTry;

use super::{opt_time, placeholders, time, Store, CHUNK};
use crate::state::TaskState;
use crate::{Error, Result};

/// A task instance row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TiRow {
    pub id: i64,
    pub uuid: String,
    pub run_pk: i64,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    /// Which instance of a mapped task this is; -1 for a task that is not mapped (or not yet expanded).
    pub map_index: i64,
    pub state: TaskState,
    pub try_number: i64,
    pub max_tries: i64,
    pub operator: String,
    pub pool: String,
    pub pool_slots: i64,
    pub priority_weight: i64,
    pub queued_at: Option<DateTime<Utc>>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub hostname: Option<String>,
    pub pid: Option<i64>,
    pub scheduler_id: Option<String>,
    pub heartbeat_at: Option<DateTime<Utc>>,
    pub next_retry_at: Option<DateTime<Utc>>,
    pub message: Option<String>,
    pub updated_at: DateTime<Utc>,
}

/// One finished (or running) try of a task instance.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TryRow {
    pub try_number: i64,
    pub state: TaskState,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub hostname: Option<String>,
    pub pid: Option<i64>,
    pub message: Option<String>,
}

pub(crate) const TI_COLUMNS: &str = "id, uuid, run_pk, dag_id, run_id, task_id, map_index, state, try_number, max_tries, operator, pool, pool_slots, \
     priority_weight, queued_at, start_date, end_date, hostname, pid, scheduler_id, heartbeat_at, next_retry_at, message, updated_at";

pub(crate) fn ti_from_row(row: &AnyRow) -> Result<TiRow> {
    Ok(TiRow {
        id: row.try_get("id")?,
        uuid: row.try_get("uuid")?,
        run_pk: row.try_get("run_pk")?,
        dag_id: row.try_get("dag_id")?,
        run_id: row.try_get("run_id")?,
        task_id: row.try_get("task_id")?,
        map_index: row.try_get("map_index")?,
        state: row.try_get::<String, _>("state")?.parse()?,
        try_number: row.try_get("try_number")?,
        max_tries: row.try_get("max_tries")?,
        operator: row.try_get("operator")?,
        pool: row.try_get("pool")?,
        pool_slots: row.try_get("pool_slots")?,
        priority_weight: row.try_get("priority_weight")?,
        queued_at: opt_time(row, "queued_at")?,
        start_date: opt_time(row, "start_date")?,
        end_date: opt_time(row, "end_date")?,
        hostname: row.try_get("hostname")?,
        pid: row.try_get("pid")?,
        scheduler_id: row.try_get("scheduler_id")?,
        heartbeat_at: opt_time(row, "heartbeat_at")?,
        next_retry_at: opt_time(row, "next_retry_at")?,
        message: row.try_get("message")?,
        updated_at: time(row, "updated_at")?,
    })
}

impl Store {
    /// Task instances of a run, in id order.
    pub async fn tis_of_run(&self, run_pk: i64) -> Result<Vec<TiRow>> {
        let sql = format!("SELECT {TI_COLUMNS} FROM task_instance WHERE run_pk = $1 ORDER BY id");
        sqlx::query(&sql)
            .bind(run_pk)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(ti_from_row)
            .collect()
    }

    /// Task instances of several runs at once (for grids), in (run, id) order.
    pub async fn tis_of_runs(&self, run_pks: &[i64]) -> Result<Vec<TiRow>> {
        let mut out = Vec::new();
        for chunk in run_pks.chunks(CHUNK) {
            let sql = format!(
                "SELECT {TI_COLUMNS} FROM task_instance WHERE run_pk IN ({}) ORDER BY run_pk, id",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for pk in chunk {
                query = query.bind(*pk);
            }
            for row in query.fetch_all(&self.pool).await? {
                out.push(ti_from_row(&row)?);
            }
        }
        Ok(out)
    }

    /// One task instance: `map_index` -1 for a task that is not mapped.
    pub async fn get_ti(&self, dag_id: &str, run_id: &str, task_id: &str, map_index: i64) -> Result<TiRow> {
        let sql = format!(
            "SELECT {TI_COLUMNS} FROM task_instance WHERE dag_id = $1 AND run_id = $2 AND task_id = $3 AND map_index = $4"
        );
        let row = sqlx::query(&sql)
            .bind(dag_id)
            .bind(run_id)
            .bind(task_id)
            .bind(map_index)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| ti_from_row(&r)).transpose()?.ok_or_else(|| {
            let instance = if map_index == crate::mapping::UNMAPPED {
                String::new()
            } else {
                format!(" (map_index {map_index})")
            };
            Error::NotFound(format!(
                "task `{task_id}`{instance} in run `{run_id}` of dag `{dag_id}`"
            ))
        })
    }

    /// The instances of one task in a run, by map_index (one, -1, for a task that is not mapped).
    pub async fn task_tis(&self, run_pk: i64, task_id: &str) -> Result<Vec<TiRow>> {
        let sql =
            format!("SELECT {TI_COLUMNS} FROM task_instance WHERE run_pk = $1 AND task_id = $2 ORDER BY map_index");
        sqlx::query(&sql)
            .bind(run_pk)
            .bind(task_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(ti_from_row)
            .collect()
    }

    pub async fn get_ti_by_id(&self, ti_id: i64) -> Result<TiRow> {
        let sql = format!("SELECT {TI_COLUMNS} FROM task_instance WHERE id = $1");
        let row = sqlx::query(&sql).bind(ti_id).fetch_optional(&self.pool).await?;
        row.map(|r| ti_from_row(&r))
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("task instance #{ti_id}")))
    }

    /// Task instances by id (missing ids are left out).
    pub async fn tis_by_ids(&self, ti_ids: &[i64]) -> Result<Vec<TiRow>> {
        let mut out = Vec::with_capacity(ti_ids.len());
        for chunk in ti_ids.chunks(CHUNK) {
            let sql = format!(
                "SELECT {TI_COLUMNS} FROM task_instance WHERE id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&self.pool).await? {
                out.push(ti_from_row(&row)?);
            }
        }
        Ok(out)
    }

    /// Past tries of a task instance.
    pub async fn tries(&self, ti_id: i64) -> Result<Vec<TryRow>> {
        let rows = sqlx::query("SELECT try_number, state, start_date, end_date, hostname, pid, message FROM task_try WHERE ti_id = $1 ORDER BY try_number")
            .bind(ti_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(TryRow {
                    try_number: row.try_get("try_number")?,
                    state: row.try_get::<String, _>("state")?.parse()?,
                    start_date: opt_time(row, "start_date")?,
                    end_date: opt_time(row, "end_date")?,
                    hostname: row.try_get("hostname")?,
                    pid: row.try_get("pid")?,
                    message: row.try_get("message")?,
                })
            })
            .collect()
    }

    /// Counts of task instances per state (for metrics).
    pub async fn ti_state_counts(&self) -> Result<Vec<(TaskState, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM task_instance GROUP BY state")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get::<String, _>(0)?.parse()?, row.try_get(1)?)))
            .collect()
    }
}
