//! Where tries run and whether they still do: pids and hosts, heartbeats, and the orphans of schedulers that
//! died (adopted or put back).

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{ti_from_row, TiRow, TI_COLUMNS};
use crate::state::{next_task_state, TaskEvent, TaskState};
use crate::store::{micros, placeholders, Change, Store, CHUNK};
use crate::Result;

const EXECUTING: &str = TaskState::EXECUTING_SQL;

impl Store {
    /// Records where a try's runner runs (its own report at start), when `key` names task instance `ti_id`,
    /// `try_number` is its current, executing try and no other runner started it first (a try relaunched after
    /// its scheduler died is held by one runner). Returns the task instance as it then is, else `None` (and
    /// writes nothing).
    #[allow(clippy::too_many_arguments)]
    pub async fn set_runner(
        &self,
        ti_id: i64,
        key: (&str, &str, &str, i64),
        try_number: i64,
        hostname: &str,
        pid: u32,
        now: DateTime<Utc>,
    ) -> Result<Option<TiRow>> {
        let (dag_id, run_id, task_id, map_index) = key;
        let sql = format!(
            "UPDATE task_instance SET pid = $1, hostname = $2, heartbeat_at = $3 WHERE id = $4 AND try_number = $5 \
             AND state IN {EXECUTING} AND (pid IS NULL OR (pid = $1 AND hostname = $2)) \
             AND dag_id = $6 AND run_id = $7 AND task_id = $8 AND map_index = $9 RETURNING {TI_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(i64::from(pid))
            .bind(hostname)
            .bind(micros(now))
            .bind(ti_id)
            .bind(try_number)
            .bind(dag_id)
            .bind(run_id)
            .bind(task_id)
            .bind(map_index)
            .fetch_optional(&self.writer)
            .await?;
        row.as_ref().map(ti_from_row).transpose()
    }

    /// A runner's heartbeat: true while its try is still the current, executing one.
    pub async fn heartbeat_try(&self, ti_id: i64, try_number: i64, now: DateTime<Utc>) -> Result<bool> {
        let sql = format!(
            "UPDATE task_instance SET heartbeat_at = $1 WHERE id = $2 AND try_number = $3 AND state IN {EXECUTING}"
        );
        let result = sqlx::query(&sql)
            .bind(micros(now))
            .bind(ti_id)
            .bind(try_number)
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected() == 1)
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
            query.execute(&self.writer).await?;
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
            "SELECT {TI_COLUMNS} FROM task_instance WHERE state IN {EXECUTING} AND (scheduler_id IS NULL OR scheduler_id NOT IN ({}))",
            if live_scheduler_ids.is_empty() { "''".to_string() } else { placeholders(1, live_scheduler_ids.len()) }
        );
        let mut query = sqlx::query(&sql);
        for id in live_scheduler_ids {
            query = query.bind(id.clone());
        }
        query.fetch_all(&self.pool).await?.iter().map(ti_from_row).collect()
    }

    /// Task instances that are queued, running or restarting under scheduler `scheduler_id`.
    pub async fn executing_tis_owned_by(&self, scheduler_id: &str) -> Result<Vec<TiRow>> {
        let sql = format!("SELECT {TI_COLUMNS} FROM task_instance WHERE state IN {EXECUTING} AND scheduler_id = $1");
        sqlx::query(&sql)
            .bind(scheduler_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(ti_from_row)
            .collect()
    }

    /// Takes over an orphaned task instance (compare-and-set on its old owner).
    pub async fn adopt_ti(&self, ti_id: i64, old_owner: Option<&str>, new_owner: &str) -> Result<bool> {
        let result = sqlx::query("UPDATE task_instance SET scheduler_id = $1 WHERE id = $2 AND (scheduler_id = $3 OR ($3 IS NULL AND scheduler_id IS NULL))")
            .bind(new_owner)
            .bind(ti_id)
            .bind(old_owner.map(str::to_string))
            .execute(&self.writer)
            .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Puts an orphaned queued task instance back to scheduled (a change that wakes schedulers to claim it).
    pub async fn requeue_ti(&self, ti_id: i64) -> Result<bool> {
        let to = next_task_state(TaskState::Queued, TaskEvent::Requeue)?;
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "UPDATE task_instance SET state = $1, scheduler_id = NULL WHERE id = $2 AND state = 'queued' RETURNING run_pk",
        )
        .bind(to.as_str())
        .bind(ti_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.commit().await?;
            return Ok(false);
        };
        let changes = [Change::TasksChanged(row.try_get(0)?)];
        self.announce(&mut tx, &changes).await?;
        tx.commit().await?;
        self.emit(&changes);
        Ok(true)
    }
}
