//! The ends of tries: their state by the retry policy and the transition function, the try history, XCom.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::TiRow;
use crate::state::{next_task_state, TaskEvent, TaskState};
use crate::store::{micros, placeholders, Change, Store, CHUNK};
use crate::Result;

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
    /// Asset URIs the task updates: an event for each is recorded with a success (Airflow's `outlets`).
    pub outlets: Vec<String>,
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
            outlets: task.map(|t| t.outlets.clone()).unwrap_or_default(),
        }
    }
}

impl Store {
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
        let changes: Vec<Change> = run_pks.iter().map(|pk| Change::TryEnded(*pk)).collect();
        self.announce(&mut tx, &changes).await?;
        let mut results = Vec::new();
        for done in tries {
            let row =
                sqlx::query("SELECT state, try_number, start_date, hostname, pid, task_id, dag_id, run_id, map_index FROM task_instance WHERE id = $1")
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
                let task_id: String = row.try_get(5)?;
                let map_index: i64 = row.try_get(8)?;
                // The assets it updates, with the success that updated them.
                for uri in &done.outlets {
                    crate::store::assets::record_event(
                        &mut tx,
                        &crate::store::NewAssetEvent {
                            uri: Some(uri.clone()),
                            source_dag_id: Some(row.try_get(6)?),
                            source_task_id: Some(task_id.clone()),
                            source_run_id: Some(row.try_get(7)?),
                            source_map_index: Some(map_index),
                            at: done.ended_at,
                            ..Default::default()
                        },
                    )
                    .await?;
                }
                for (key, value) in &done.xcoms {
                    sqlx::query(
                        "INSERT INTO xcom (run_pk, task_id, map_index, key_name, value, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (run_pk, task_id, map_index, key_name) DO UPDATE SET value = excluded.value, created_at = excluded.created_at",
                    )
                    .bind(done.run_pk)
                    .bind(&task_id)
                    .bind(map_index)
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
        self.emit(&changes);
        Ok(results)
    }
}
