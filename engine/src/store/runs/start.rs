//! Starting runs: the queued runs the scheduler may start, and moving them to running.

use chrono::{DateTime, Utc};

use super::{run_from_row, RunRow, RUN_COLUMNS};
use crate::state::{next_run_state, RunEvent, RunState};
use crate::store::{micros, Change, Store};
use crate::Result;

impl Store {
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
        let changes: Vec<Change> = started.iter().map(|pk| Change::RunStarted(*pk)).collect();
        self.announce(&mut tx, &changes).await?;
        tx.commit().await?;
        self.emit(&changes);
        Ok(started)
    }
}
