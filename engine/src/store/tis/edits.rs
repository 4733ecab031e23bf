//! What users change on task instances by hand: clearing them so they run again, and marking a state (each
//! audited).

use chrono::Utc;

use super::TiRow;
use crate::state::{next_run_state, next_task_state, RunEvent, TaskEvent, TaskState};
use crate::store::changes::{apply_changes, TiChange};
use crate::store::{micros, misc, Change, Store};
use crate::{Error, Result};

impl Store {
    /// Clears task instances of a run so they run again (running ones restart when their try ends); the
    /// run goes back to queued. `task_ids` None means all (every instance of a mapped task); `only_failed` keeps
    /// successes. Returns the tasks cleared.
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
        if let Some(ids) = task_ids {
            if let Some(unknown) = ids.iter().find(|id| !tis.iter().any(|ti| &ti.task_id == *id)) {
                return Err(Error::NotFound(format!(
                    "task `{unknown}` in run `{run_id}` of dag `{dag_id}`"
                )));
            }
        }
        let chosen: Vec<i64> = tis
            .iter()
            .filter(|ti| task_ids.is_none_or(|ids| ids.contains(&ti.task_id)))
            .filter(|ti| !only_failed || matches!(ti.state, TaskState::Failed | TaskState::UpstreamFailed))
            .map(|ti| ti.id)
            .collect();
        self.clear_instances(&run, &tis, &chosen, user).await
    }

    /// Clears the chosen task instances (by id) of `run`, whose instances are `tis`. Returns the tasks
    /// cleared.
    pub async fn clear_instances(
        &self,
        run: &crate::store::RunRow,
        tis: &[TiRow],
        chosen: &[i64],
        user: Option<&str>,
    ) -> Result<Vec<String>> {
        let (dag_id, run_id) = (run.dag_id.as_str(), run.run_id.as_str());
        let now = Utc::now();
        let mut changes = Vec::new();
        let mut cleared = Vec::new();
        let mut cleared_ids = Vec::new();
        for ti in tis.iter().filter(|ti| chosen.contains(&ti.id)) {
            let to = next_task_state(ti.state, TaskEvent::Clear)?;
            changes.push(TiChange {
                ti_id: ti.id,
                from: ti.state,
                to,
                message: None,
            });
            cleared_ids.push(ti.id);
            if !cleared.contains(&ti.task_id) {
                cleared.push(ti.task_id.clone());
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
        // Cleared tasks get a fresh budget of retries on top of the tries already made, and lose their XCom
        // (as in Airflow: what a task after them pulls is what the new try pushes).
        for ti in tis.iter().filter(|ti| cleared_ids.contains(&ti.id)) {
            sqlx::query("DELETE FROM xcom WHERE run_pk = $1 AND task_id = $2 AND map_index = $3")
                .bind(ti.run_pk)
                .bind(&ti.task_id)
                .bind(ti.map_index)
                .execute(&mut *tx)
                .await?;
            sqlx::query("UPDATE task_instance SET max_tries = try_number + $1, next_retry_at = NULL WHERE id = $2")
                .bind(ti.max_tries - ti.try_number.min(ti.max_tries))
                .bind(ti.id)
                .execute(&mut *tx)
                .await?;
        }
        misc::log_event(
            &mut tx,
            "clear",
            Some(dag_id),
            Some(run_id),
            None,
            user,
            Some(&cleared.join(",")),
        )
        .await?;
        let changes = [Change::TasksChanged(run.id)];
        self.announce(&mut tx, &changes).await?;
        tx.commit().await?;
        self.emit(&changes);
        Ok(cleared)
    }

    /// Sets one task instance's state by hand (`map_index` -1 for a task that is not mapped).
    pub async fn mark_ti(
        &self,
        dag_id: &str,
        run_id: &str,
        task_id: &str,
        map_index: i64,
        state: TaskState,
        user: Option<&str>,
    ) -> Result<TiRow> {
        let ti = self.get_ti(dag_id, run_id, task_id, map_index).await?;
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
        misc::log_event(
            &mut tx,
            "mark_task",
            Some(dag_id),
            Some(run_id),
            Some(task_id),
            user,
            Some(to.as_str()),
        )
        .await?;
        let changes = [Change::TasksChanged(ti.run_pk)];
        self.announce(&mut tx, &changes).await?;
        tx.commit().await?;
        self.emit(&changes);
        self.get_ti(dag_id, run_id, task_id, map_index).await
    }
}
