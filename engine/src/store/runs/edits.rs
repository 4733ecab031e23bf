//! What users change on a run by hand: its state and its note (each audited).

use chrono::Utc;

use super::RunRow;
use crate::state::{next_run_state, RunEvent, RunState};
use crate::store::{micros, misc, Change, Store};
use crate::Result;

impl Store {
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
        misc::log_event(&mut tx, "set_note", Some(dag_id), Some(run_id), None, user, None).await?;
        tx.commit().await?;
        self.get_run(dag_id, run_id).await
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
        misc::log_event(
            &mut tx,
            "mark_run",
            Some(dag_id),
            Some(run_id),
            None,
            user,
            Some(to.as_str()),
        )
        .await?;
        let changes = [if to.is_finished() {
            Change::RunEnded(run.id, to)
        } else {
            Change::TasksChanged(run.id)
        }];
        self.announce(&mut tx, &changes).await?;
        tx.commit().await?;
        self.emit(&changes);
        self.get_run(dag_id, run_id).await
    }
}
