//! Task instances: claiming within pools and limits, starting, finishing (with tries and XCom), heartbeats,
//! clearing, orphans.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use super::runs::{apply_changes, TiChange};
use super::{micros, opt_time, placeholders, time, Store, CHUNK};
use crate::state::{next_run_state, next_task_state, RunEvent, RunState, TaskEvent, TaskState};
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

pub(crate) const TI_COLUMNS: &str = "id, uuid, run_pk, dag_id, run_id, task_id, state, try_number, max_tries, operator, pool, pool_slots, \
     priority_weight, queued_at, start_date, end_date, hostname, pid, scheduler_id, heartbeat_at, next_retry_at, message, updated_at";

pub(crate) fn ti_from_row(row: &AnyRow) -> Result<TiRow> {
    Ok(TiRow {
        id: row.try_get("id")?,
        uuid: row.try_get("uuid")?,
        run_pk: row.try_get("run_pk")?,
        dag_id: row.try_get("dag_id")?,
        run_id: row.try_get("run_id")?,
        task_id: row.try_get("task_id")?,
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

/// The end of one try, as the executor reports it.
#[derive(Debug, Clone)]
pub struct FinishedTry {
    pub ti_id: i64,
    pub run_pk: i64,
    pub try_number: i64,
    /// `Succeed`, `Skip` or `Fail { can_retry }`.
    pub event: TaskEvent,
    pub message: Option<String>,
    /// XCom values to store (key, JSON), only kept on success.
    pub xcoms: Vec<(String, serde_json::Value)>,
    /// When the next try may start (for `Fail { can_retry: true }`).
    pub next_retry_at: Option<DateTime<Utc>>,
    pub ended_at: DateTime<Utc>,
}

impl FinishedTry {
    /// The end of `ti`'s try `try_number` by the task's retry policy: a failure with tries left becomes
    /// `up_for_retry` after the task's (exponential, capped) retry delay. `task` is `None` when the DAG version
    /// no longer has the task (then a failure is final).
    pub fn by_policy(
        ti: &TiRow,
        try_number: i64,
        task: Option<&crate::spec::TaskSpec>,
        outcome: crate::state::Outcome,
        message: Option<String>,
        xcoms: Vec<(String, serde_json::Value)>,
        ended_at: DateTime<Utc>,
    ) -> FinishedTry {
        use crate::state::Outcome;
        let can_retry = try_number <= ti.max_tries;
        let event = match outcome {
            Outcome::Success => TaskEvent::Succeed,
            Outcome::Skipped => TaskEvent::Skip,
            Outcome::Failed => TaskEvent::Fail { can_retry },
        };
        let next_retry_at = match (outcome, task) {
            (Outcome::Failed, Some(task)) if can_retry => {
                let delay = task.retry_delay_after(try_number.max(1) as u32);
                Some(ended_at + chrono::Duration::from_std(delay).unwrap_or_default())
            }
            _ => None,
        };
        FinishedTry {
            ti_id: ti.id,
            run_pk: ti.run_pk,
            try_number,
            event,
            message,
            xcoms,
            next_retry_at,
            ended_at,
        }
    }
}

/// Result of a claim: task instances now queued for this scheduler, and those whose pool does not exist.
#[derive(Debug, Default)]
pub struct Claim {
    pub queued: Vec<TiRow>,
    pub missing_pool: Vec<TiRow>,
}

impl Store {
    /// The critical section: picks `scheduled` task instances of running runs by priority, within pool slots,
    /// each DAG's `max_active_tasks` and `max_count`, and moves them to `queued` for `scheduler_id`. On
    /// PostgreSQL the pool rows are locked for the duration, so schedulers take turns here.
    pub async fn claim_scheduled(
        &self,
        scheduler_id: &str,
        max_count: usize,
        max_active_tasks: &HashMap<String, u32>,
        scope: Option<&[i64]>,
        now: DateTime<Utc>,
    ) -> Result<Claim> {
        let mut claim = Claim::default();
        if max_count == 0 {
            return Ok(claim);
        }
        let mut tx = self.begin().await?;
        let lock = if self.backend == super::Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let pools: HashMap<String, i64> = sqlx::query(&format!("SELECT name, slots FROM pool{lock}"))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_>>()?;
        let mut pool_used: HashMap<String, i64> = sqlx::query(
            "SELECT pool, CAST(SUM(pool_slots) AS BIGINT) FROM task_instance WHERE state IN ('queued', 'running', 'restarting') GROUP BY pool",
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, row.try_get::<Option<i64>, _>(1)?.unwrap_or(0))))
        .collect::<Result<_>>()?;
        let mut dag_active: HashMap<String, i64> =
            sqlx::query("SELECT dag_id, COUNT(*) FROM task_instance WHERE state IN ('queued', 'running', 'restarting') GROUP BY dag_id")
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect::<Result<_>>()?;
        let scope_clause = match scope {
            Some(ids) if !ids.is_empty() => format!(
                " AND ti.run_pk IN ({})",
                ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            ),
            Some(_) => " AND 1 = 0".into(),
            None => " AND r.triggered_by <> 'test'".into(),
        };
        let columns = TI_COLUMNS
            .split(", ")
            .map(|c| format!("ti.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let candidates_limit = (max_count * 4).max(64);
        let sql = format!(
            "SELECT {columns} FROM task_instance ti JOIN dag_run r ON r.id = ti.run_pk WHERE ti.state = 'scheduled' AND r.state = 'running'{scope_clause} \
             ORDER BY ti.priority_weight DESC, r.run_after, ti.id LIMIT {candidates_limit}{}",
            // Rows another scheduler is changing right now are skipped, not waited for.
            if self.backend == super::Backend::Postgres { " FOR UPDATE OF ti SKIP LOCKED" } else { "" }
        );
        let candidates: Vec<TiRow> = sqlx::query(&sql)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(ti_from_row)
            .collect::<Result<_>>()?;
        let mut chosen = Vec::new();
        for ti in candidates {
            if chosen.len() + claim.missing_pool.len() >= max_count {
                break;
            }
            let Some(slots) = pools.get(&ti.pool) else {
                claim.missing_pool.push(ti);
                continue;
            };
            let used = pool_used.entry(ti.pool.clone()).or_insert(0);
            if *used + ti.pool_slots > *slots {
                continue;
            }
            let limit = i64::from(max_active_tasks.get(&ti.dag_id).copied().unwrap_or(16));
            let active = dag_active.entry(ti.dag_id.clone()).or_insert(0);
            if *active >= limit {
                continue;
            }
            *used += ti.pool_slots;
            *active += 1;
            chosen.push(ti);
        }
        let to = next_task_state(TaskState::Scheduled, TaskEvent::Queue)?;
        for group in [&mut chosen, &mut claim.missing_pool] {
            let mut updated = Vec::new();
            for chunk in group.chunks(CHUNK) {
                let sql = format!(
                    "UPDATE task_instance SET state = $1, queued_at = $2, updated_at = $2, scheduler_id = $3 WHERE state = 'scheduled' AND id IN ({}) RETURNING id",
                    placeholders(4, chunk.len())
                );
                let mut query = sqlx::query(&sql).bind(to.as_str()).bind(micros(now)).bind(scheduler_id);
                for ti in chunk {
                    query = query.bind(ti.id);
                }
                for row in query.fetch_all(&mut *tx).await? {
                    updated.push(row.try_get::<i64, _>(0)?);
                }
            }
            group.retain(|ti| updated.contains(&ti.id));
            for ti in group.iter_mut() {
                ti.state = to;
                ti.queued_at = Some(now);
                ti.scheduler_id = Some(scheduler_id.to_string());
            }
        }
        tx.commit().await?;
        claim.queued = chosen;
        Ok(claim)
    }

    /// Moves queued task instances to running and starts their next try. Returns (id, try number) of those
    /// that moved (a task cleared or terminated meanwhile does not).
    pub async fn start_tis(&self, ti_ids: &[i64], hostname: &str, now: DateTime<Utc>) -> Result<Vec<(i64, i64)>> {
        let to = next_task_state(TaskState::Queued, TaskEvent::Start)?;
        let mut tx = self.begin().await?;
        let mut started = Vec::new();
        for chunk in ti_ids.chunks(CHUNK) {
            let sql = format!(
                "UPDATE task_instance SET state = $1, try_number = try_number + 1, start_date = $2, end_date = NULL, heartbeat_at = $2, \
                 updated_at = $2, hostname = $3, pid = NULL, message = NULL, next_retry_at = NULL WHERE state = 'queued' AND id IN ({}) RETURNING id, try_number",
                placeholders(4, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(to.as_str()).bind(micros(now)).bind(hostname);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&mut *tx).await? {
                started.push((row.try_get(0)?, row.try_get(1)?));
            }
        }
        tx.commit().await?;
        Ok(started)
    }

    /// Records the process of a running try.
    pub async fn set_pid(&self, ti_id: i64, pid: u32) -> Result<()> {
        sqlx::query("UPDATE task_instance SET pid = $1 WHERE id = $2")
            .bind(i64::from(pid))
            .bind(ti_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records finished tries in one transaction: state (by the transition function), try history, XCom,
    /// and marks their runs for evaluation. A try that no longer matches the row (cleared, terminated, or
    /// already recorded) is ignored. Returns the new state per task instance that changed.
    pub async fn finish_tries(&self, tries: &[FinishedTry]) -> Result<Vec<(i64, TaskState)>> {
        if tries.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin().await?;
        // Runs first, always in id order, so writers lock rows in the same order.
        let mut run_pks: Vec<i64> = tries.iter().map(|t| t.run_pk).collect();
        run_pks.sort_unstable();
        run_pks.dedup();
        for chunk in run_pks.chunks(CHUNK) {
            let sql = format!(
                "UPDATE dag_run SET needs_eval = 1 WHERE id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for pk in chunk {
                query = query.bind(*pk);
            }
            query.execute(&mut *tx).await?;
        }
        let mut results = Vec::new();
        for done in tries {
            let row =
                sqlx::query("SELECT state, try_number, start_date, hostname, pid FROM task_instance WHERE id = $1")
                    .bind(done.ti_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(row) = row else { continue };
            let state: TaskState = row.try_get::<String, _>(0)?.parse()?;
            let try_number: i64 = row.try_get(1)?;
            if try_number != done.try_number
                || !matches!(state, TaskState::Running | TaskState::Queued | TaskState::Restarting)
            {
                continue;
            }
            let event = if state == TaskState::Restarting {
                TaskEvent::RestartDone
            } else {
                done.event
            };
            let to = next_task_state(state, event)?;
            let retry_at = if to == TaskState::UpForRetry {
                done.next_retry_at.map(micros)
            } else {
                None
            };
            let end = if to == TaskState::None {
                None
            } else {
                Some(micros(done.ended_at))
            };
            let result = sqlx::query(
                "UPDATE task_instance SET state = $1, end_date = $2, next_retry_at = $3, message = $4, updated_at = $5, \
                 start_date = CASE WHEN $1 = 'none' THEN NULL ELSE start_date END WHERE id = $6 AND state = $7 AND try_number = $8",
            )
            .bind(to.as_str())
            .bind(end)
            .bind(retry_at)
            .bind(done.message.clone())
            .bind(micros(done.ended_at))
            .bind(done.ti_id)
            .bind(state.as_str())
            .bind(try_number)
            .execute(&mut *tx)
            .await?;
            if result.rows_affected() != 1 {
                continue;
            }
            let try_state = match done.event {
                TaskEvent::Succeed => TaskState::Success,
                TaskEvent::Skip => TaskState::Skipped,
                _ => TaskState::Failed,
            };
            sqlx::query(
                "INSERT INTO task_try (ti_id, try_number, state, start_date, end_date, hostname, pid, message) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (ti_id, try_number) DO NOTHING",
            )
            .bind(done.ti_id)
            .bind(try_number)
            .bind(try_state.as_str())
            .bind(row.try_get::<Option<i64>, _>(2)?)
            .bind(micros(done.ended_at))
            .bind(row.try_get::<Option<String>, _>(3)?)
            .bind(row.try_get::<Option<i64>, _>(4)?)
            .bind(done.message.clone())
            .execute(&mut *tx)
            .await?;
            if to == TaskState::Success {
                let task_id: String = sqlx::query("SELECT task_id FROM task_instance WHERE id = $1")
                    .bind(done.ti_id)
                    .fetch_one(&mut *tx)
                    .await?
                    .try_get(0)?;
                for (key, value) in &done.xcoms {
                    sqlx::query(
                        "INSERT INTO xcom (run_pk, task_id, key_name, value, created_at) VALUES ($1, $2, $3, $4, $5) \
                         ON CONFLICT (run_pk, task_id, key_name) DO UPDATE SET value = excluded.value, created_at = excluded.created_at",
                    )
                    .bind(done.run_pk)
                    .bind(&task_id)
                    .bind(key)
                    .bind(value.to_string())
                    .bind(micros(done.ended_at))
                    .execute(&mut *tx)
                    .await?;
                }
            }
            results.push((done.ti_id, to));
        }
        tx.commit().await?;
        Ok(results)
    }

    /// Refreshes the heartbeat of running task instances and returns the ids among them that are no longer
    /// `running` in the store (cleared, marked or terminated from outside: their processes must stop).
    pub async fn heartbeat_tis(&self, ti_ids: &[i64], now: DateTime<Utc>) -> Result<Vec<(i64, TaskState)>> {
        let mut gone = Vec::new();
        for chunk in ti_ids.chunks(CHUNK) {
            let sql = format!(
                "UPDATE task_instance SET heartbeat_at = $1 WHERE state = 'running' AND id IN ({})",
                placeholders(2, chunk.len())
            );
            let mut query = sqlx::query(&sql).bind(micros(now));
            for id in chunk {
                query = query.bind(*id);
            }
            query.execute(&self.pool).await?;
            let sql = format!(
                "SELECT id, state FROM task_instance WHERE state <> 'running' AND id IN ({})",
                placeholders(1, chunk.len())
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&self.pool).await? {
                gone.push((row.try_get(0)?, row.try_get::<String, _>(1)?.parse()?));
            }
        }
        Ok(gone)
    }

    /// Task instances that are queued, running or restarting under a scheduler other than the live ones.
    pub async fn executing_tis_not_owned_by(&self, live_scheduler_ids: &[String]) -> Result<Vec<TiRow>> {
        let sql = format!(
            "SELECT {TI_COLUMNS} FROM task_instance WHERE state IN ('queued', 'running', 'restarting') AND (scheduler_id IS NULL OR scheduler_id NOT IN ({}))",
            if live_scheduler_ids.is_empty() { "''".to_string() } else { placeholders(1, live_scheduler_ids.len()) }
        );
        let mut query = sqlx::query(&sql);
        for id in live_scheduler_ids {
            query = query.bind(id.clone());
        }
        query.fetch_all(&self.pool).await?.iter().map(ti_from_row).collect()
    }

    /// Takes over an orphaned task instance (compare-and-set on its old owner).
    pub async fn adopt_ti(&self, ti_id: i64, old_owner: Option<&str>, new_owner: &str) -> Result<bool> {
        let result = sqlx::query("UPDATE task_instance SET scheduler_id = $1 WHERE id = $2 AND (scheduler_id = $3 OR ($3 IS NULL AND scheduler_id IS NULL))")
            .bind(new_owner)
            .bind(ti_id)
            .bind(old_owner.map(str::to_string))
            .execute(&self.pool)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Puts an orphaned queued task instance back to scheduled.
    pub async fn requeue_ti(&self, ti_id: i64) -> Result<bool> {
        let to = next_task_state(TaskState::Queued, TaskEvent::Requeue)?;
        let result =
            sqlx::query("UPDATE task_instance SET state = $1, scheduler_id = NULL WHERE id = $2 AND state = 'queued'")
                .bind(to.as_str())
                .bind(ti_id)
                .execute(&self.pool)
                .await?;
        Ok(result.rows_affected() == 1)
    }

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

    pub async fn get_ti(&self, dag_id: &str, run_id: &str, task_id: &str) -> Result<TiRow> {
        let sql = format!("SELECT {TI_COLUMNS} FROM task_instance WHERE dag_id = $1 AND run_id = $2 AND task_id = $3");
        let row = sqlx::query(&sql)
            .bind(dag_id)
            .bind(run_id)
            .bind(task_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| ti_from_row(&r))
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("task `{task_id}` in run `{run_id}` of dag `{dag_id}`")))
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

    /// Records where a try's runner runs (its own report at start), when the try is still the current one.
    pub async fn set_runner(
        &self,
        ti_id: i64,
        try_number: i64,
        hostname: &str,
        pid: u32,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let result = sqlx::query(
            "UPDATE task_instance SET pid = $1, hostname = $2, heartbeat_at = $3 WHERE id = $4 AND try_number = $5 \
             AND state IN ('queued', 'running', 'restarting')",
        )
        .bind(i64::from(pid))
        .bind(hostname)
        .bind(micros(now))
        .bind(ti_id)
        .bind(try_number)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// A runner's heartbeat: true while its try is still the current, executing one.
    pub async fn heartbeat_try(&self, ti_id: i64, try_number: i64, now: DateTime<Utc>) -> Result<bool> {
        let result = sqlx::query(
            "UPDATE task_instance SET heartbeat_at = $1 WHERE id = $2 AND try_number = $3 AND state IN ('queued', 'running', 'restarting')",
        )
        .bind(micros(now))
        .bind(ti_id)
        .bind(try_number)
        .execute(&self.pool)
        .await?;
        Ok(result.rows_affected() == 1)
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

    /// Clears task instances of a run so they run again (running ones restart when their try ends); the
    /// run goes back to queued. `task_ids` None means all; `only_failed` keeps successes.
    pub async fn clear_tis(
        &self,
        dag_id: &str,
        run_id: &str,
        task_ids: Option<&[String]>,
        only_failed: bool,
        user: Option<&str>,
    ) -> Result<Vec<String>> {
        let run = self.get_run(dag_id, run_id).await?;
        let tis = self.tis_of_run(run.id).await?;
        let now = Utc::now();
        let mut changes = Vec::new();
        let mut cleared = Vec::new();
        for ti in &tis {
            if let Some(ids) = task_ids {
                if !ids.contains(&ti.task_id) {
                    continue;
                }
            }
            if only_failed && !matches!(ti.state, TaskState::Failed | TaskState::UpstreamFailed) {
                continue;
            }
            let to = next_task_state(ti.state, TaskEvent::Clear)?;
            changes.push(TiChange {
                ti_id: ti.id,
                from: ti.state,
                to,
                message: None,
            });
            cleared.push(ti.task_id.clone());
        }
        if let Some(ids) = task_ids {
            if let Some(unknown) = ids.iter().find(|id| !tis.iter().any(|ti| &ti.task_id == *id)) {
                return Err(Error::NotFound(format!(
                    "task `{unknown}` in run `{run_id}` of dag `{dag_id}`"
                )));
            }
        }
        let mut tx = self.begin().await?;
        let run_state = next_run_state(run.state, RunEvent::Clear)?;
        sqlx::query("UPDATE dag_run SET state = $1, end_date = NULL, needs_eval = 1, updated_at = $2 WHERE id = $3")
            .bind(run_state.as_str())
            .bind(micros(now))
            .bind(run.id)
            .execute(&mut *tx)
            .await?;
        apply_changes(&mut tx, &changes, now).await?;
        // Cleared tasks get a fresh budget of retries on top of the tries already made.
        for ti in tis.iter().filter(|ti| cleared.contains(&ti.task_id)) {
            sqlx::query("UPDATE task_instance SET max_tries = try_number + $1, next_retry_at = NULL WHERE id = $2")
                .bind(ti.max_tries - ti.try_number.min(ti.max_tries))
                .bind(ti.id)
                .execute(&mut *tx)
                .await?;
        }
        super::misc::log_event(
            &mut tx,
            "clear",
            Some(dag_id),
            Some(run_id),
            None,
            user,
            Some(&cleared.join(",")),
        )
        .await?;
        tx.commit().await?;
        Ok(cleared)
    }

    /// Sets one task instance's state by hand.
    pub async fn mark_ti(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
        state: TaskState,
        user: Option<&str>,
    ) -> Result<TiRow> {
        let ti = self.get_ti(dag_id, run_id, task_id).await?;
        let to = next_task_state(ti.state, TaskEvent::Mark(state))?;
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE dag_run SET needs_eval = 1 WHERE id = $1")
            .bind(ti.run_pk)
            .execute(&mut *tx)
            .await?;
        apply_changes(
            &mut tx,
            &[TiChange {
                ti_id: ti.id,
                from: ti.state,
                to,
                message: Some(format!("marked {to} by hand")),
            }],
            Utc::now(),
        )
        .await?;
        super::misc::log_event(
            &mut tx,
            "mark_task",
            Some(dag_id),
            Some(run_id),
            Some(task_id),
            user,
            Some(to.as_str()),
        )
        .await?;
        tx.commit().await?;
        self.get_ti(dag_id, run_id, task_id).await
    }

    /// Whether any run of `run_pks` is still unfinished.
    pub async fn runs_unfinished(&self, run_pks: &[i64]) -> Result<usize> {
        if run_pks.is_empty() {
            return Ok(0);
        }
        let sql = format!(
            "SELECT COUNT(*) FROM dag_run WHERE state IN ('queued', 'running') AND id IN ({})",
            placeholders(1, run_pks.len())
        );
        let mut query = sqlx::query(&sql);
        for pk in run_pks {
            query = query.bind(*pk);
        }
        let count: i64 = query.fetch_one(&self.pool).await?.try_get(0)?;
        Ok(count as usize)
    }

    /// States of a run's task instances, for progress displays.
    pub async fn run_progress(&self, run_pk: i64) -> Result<(RunState, Vec<(String, TaskState)>)> {
        let run = self.get_run_by_pk(run_pk).await?;
        let tis = self.tis_of_run(run_pk).await?;
        Ok((run.state, tis.into_iter().map(|ti| (ti.task_id, ti.state)).collect()))
    }
}
