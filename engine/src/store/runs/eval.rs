//! Run evaluation batches: running runs locked for evaluation with their task instances, and the plans the
//! scheduler decided for them, written in the same transaction.

use chrono::{DateTime, Utc};
use sqlx::{Any, Transaction};

use super::{run_from_row, RunRow, RUN_COLUMNS};
use crate::state::{next_run_state, RunEvent, RunState, TaskState};
use crate::store::changes::{apply_changes, TiChange};
use crate::store::tis::{ti_from_row, TiRow, TI_COLUMNS};
use crate::store::{micros, Change, Store};
use crate::Result;

/// Runs locked for evaluation, with their task instances; apply plans with [`EvalBatch::apply`].
pub struct EvalBatch {
    store: Store,
    tx: Transaction<'static, Any>,
    pub runs: Vec<(RunRow, Vec<TiRow>)>,
    /// Locked runs with nothing to decide but a timeout: every task instance is scheduled, queued, running or
    /// finished, and one at least is not finished (their task instances are not read; see
    /// [`EvalBatch::task_instances`]). A run of many task instances in flight is looked at after each try's end:
    /// this spares reading all its task instances each time.
    pub waiting: Vec<RunRow>,
}

/// What evaluation decided for one run.
#[derive(Debug, Clone, Default)]
pub struct RunPlan {
    pub run_pk: i64,
    /// Mapped tasks expanded: written before `changes` (which schedule their existing instances).
    pub expansions: Vec<Expansion>,
    pub changes: Vec<TiChange>,
    pub run_event: Option<(RunState, RunEvent)>,
    /// When the run must be looked at again even if nothing changes (a retry delay or timeout ends).
    pub next_eval_at: Option<DateTime<Utc>>,
}

/// New instances of a mapped task that evaluation expanded (they start `scheduled`).
#[derive(Debug, Clone, PartialEq)]
pub struct Expansion {
    /// An unexpanded instance (`map_index` -1) that becomes instance 0.
    pub renumber: Option<i64>,
    /// An existing instance of the task whose run, operator, pool and priority the new ones share.
    pub template_ti: i64,
    /// The map indexes to create.
    pub create: Vec<i64>,
    /// Tries the new instances may make beyond the first (the task's `retries`).
    pub max_tries: i64,
}

impl EvalBatch {
    /// The task states of the run before the one with `logical_date` in DAG `dag_id` (by logical date, as
    /// Airflow's `get_previous_dagrun`), for `depends_on_past`. None when there is no logical date (a manual run
    /// of Airflow 3) or no run before it.
    /// `dags test` runs are never the run before; with `scheduled_only` (a DAG with catchup, as Airflow's
    /// `PrevDagrunDep`) only scheduled and backfill runs are.
    pub async fn previous_run_states(
        &mut self,
        dag_id: &str,
        logical_date: Option<DateTime<Utc>>,
        scheduled_only: bool,
    ) -> Result<Option<std::collections::HashMap<String, crate::state::TaskState>>> {
        let Some(logical_date) = logical_date else {
            return Ok(None);
        };
        let kinds = if scheduled_only {
            " AND run_type IN ('scheduled', 'backfill')"
        } else {
            ""
        };
        let previous: Option<i64> = sqlx::query_scalar(&format!(
            "SELECT id FROM dag_run WHERE dag_id = $1 AND logical_date IS NOT NULL AND logical_date < $2 \
             AND triggered_by <> 'test'{kinds} ORDER BY logical_date DESC LIMIT 1"
        ))
        .bind(dag_id)
        .bind(micros(logical_date))
        .fetch_optional(&mut *self.tx)
        .await?;
        let Some(previous) = previous else {
            return Ok(None);
        };
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT task_id, state FROM task_instance WHERE run_pk = $1")
            .bind(previous)
            .fetch_all(&mut *self.tx)
            .await?;
        let mut states = std::collections::HashMap::with_capacity(rows.len());
        for (task_id, state) in rows {
            let state: TaskState = state.parse()?;
            // A mapped task counts as done before only when every one of its instances is.
            let done = |s: &TaskState| matches!(s, TaskState::Success | TaskState::Skipped | TaskState::Removed);
            match states.get(&task_id) {
                Some(seen) if !done(seen) => {}
                _ if state == TaskState::Removed => {
                    states.entry(task_id).or_insert(TaskState::Skipped);
                }
                _ => {
                    states.insert(task_id, state);
                }
            }
        }
        Ok(Some(states))
    }

    /// The run's XCom values by (task id, key), a mapped task's as one list (for expanding mapped tasks).
    pub async fn xcoms_of_run(
        &mut self,
        run_pk: i64,
    ) -> Result<std::collections::HashMap<(String, String), serde_json::Value>> {
        crate::store::misc::xcoms_of_run(&mut *self.tx, run_pk).await
    }

    /// The task instances of a run of this batch (of one in `waiting`, when its plan needs them after all).
    pub async fn task_instances(&mut self, run_pk: i64) -> Result<Vec<TiRow>> {
        task_instances(&mut self.tx, run_pk).await
    }

    /// Writes every plan and commits. Returns how many task instances changed.
    pub async fn apply(mut self, plans: &[RunPlan], now: DateTime<Utc>) -> Result<usize> {
        let mut changed = 0;
        let mut events = Vec::new();
        for plan in plans {
            let mut created = 0;
            for expansion in &plan.expansions {
                created += expand(&mut self.tx, expansion, now).await?;
            }
            let moved = apply_changes(&mut self.tx, &plan.changes, now).await? + created;
            if moved > 0 {
                events.push(Change::TasksChanged(plan.run_pk));
            }
            changed += moved;
            match plan.run_event {
                Some((from, event)) => {
                    let to = next_run_state(from, event)?;
                    if to.is_finished() {
                        events.push(Change::RunEnded(plan.run_pk, to));
                    }
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
        self.store.announce(&mut self.tx, &events).await?;
        self.tx.commit().await?;
        self.store.emit(&events);
        Ok(changed)
    }
}

impl Store {
    /// Locks up to `limit` running runs that need evaluation (skipping runs another scheduler holds) and
    /// loads their task instances.
    pub async fn lock_runs_for_eval(&self, now: DateTime<Utc>, limit: i64, scope: Option<&[i64]>) -> Result<EvalBatch> {
        let mut tx = self.begin().await?;
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM dag_run WHERE {} ORDER BY id LIMIT {limit}{}",
            due_for_eval(scope),
            self.skip_locked()
        );
        let runs: Vec<RunRow> = sqlx::query(&sql)
            .bind(micros(now))
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(run_from_row)
            .collect::<Result<_>>()?;
        // Per run: its task instances that evaluation would move (waiting for upstream, retry due, restarting)
        // and those not finished.
        let summary = format!(
            "SELECT CAST(SUM(CASE WHEN state IN ({}) THEN 1 ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN state IN ({}) THEN 0 ELSE 1 END) AS BIGINT) FROM task_instance WHERE run_pk = $1",
            states_sql(|s| matches!(s, TaskState::None | TaskState::UpForRetry | TaskState::Restarting)),
            states_sql(TaskState::is_finished),
        );
        let mut out = Vec::with_capacity(runs.len());
        let mut waiting = Vec::new();
        for run in runs {
            let (undecided, unfinished): (Option<i64>, Option<i64>) =
                sqlx::query_as(&summary).bind(run.id).fetch_one(&mut *tx).await?;
            if undecided.unwrap_or(0) == 0 && unfinished.unwrap_or(0) > 0 {
                waiting.push(run);
                continue;
            }
            let tis = task_instances(&mut tx, run.id).await?;
            out.push((run, tis));
        }
        Ok(EvalBatch {
            store: self.clone(),
            tx,
            runs: out,
            waiting,
        })
    }

    /// Whether any run waits for evaluation (a read, no lock): a scheduler woken by a change it made itself
    /// then skips the write transaction of [`Store::lock_runs_for_eval`].
    pub async fn runs_due_for_eval(&self, now: DateTime<Utc>, scope: Option<&[i64]>) -> Result<bool> {
        let sql = format!("SELECT id FROM dag_run WHERE {} LIMIT 1", due_for_eval(scope));
        Ok(sqlx::query(&sql)
            .bind(micros(now))
            .fetch_optional(&self.pool)
            .await?
            .is_some())
    }
}

/// The task states `keep` holds, as an SQL list.
fn states_sql(keep: impl Fn(TaskState) -> bool) -> String {
    TaskState::ALL
        .iter()
        .filter(|s| keep(**s))
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn task_instances(tx: &mut Transaction<'static, Any>, run_pk: i64) -> Result<Vec<TiRow>> {
    let sql = format!("SELECT {TI_COLUMNS} FROM task_instance WHERE run_pk = $1");
    sqlx::query(&sql)
        .bind(run_pk)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(ti_from_row)
        .collect()
}

/// The condition on `dag_run` (`$1`: now) of the running runs a scheduler evaluates: changed or due, and its
/// scope's, or (unscoped) every run but `dags test` runs, which belong to the process that runs them.
fn due_for_eval(scope: Option<&[i64]>) -> String {
    let scope = match scope {
        Some(ids) if !ids.is_empty() => format!(
            " AND id IN ({})",
            ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
        ),
        Some(_) => " AND 1 = 0".to_string(),
        None => " AND triggered_by <> 'test'".to_string(),
    };
    format!("state = 'running' AND (needs_eval = 1 OR next_eval_at <= $1){scope}")
}

/// Writes one expansion: the unexpanded instance becomes instance 0 and the missing instances are created
/// `scheduled`, sharing the template instance's run, operator, pool and priority. Returns how many were made.
async fn expand(tx: &mut Transaction<'static, Any>, expansion: &Expansion, now: DateTime<Utc>) -> Result<usize> {
    if let Some(id) = expansion.renumber {
        sqlx::query("UPDATE task_instance SET map_index = 0, updated_at = $1 WHERE id = $2 AND map_index = -1")
            .bind(micros(now))
            .bind(id)
            .execute(&mut **tx)
            .await?;
    }
    let mut created = 0;
    for map_index in &expansion.create {
        created += sqlx::query(
            "INSERT INTO task_instance (uuid, run_pk, dag_id, run_id, task_id, map_index, state, try_number, max_tries, \
             operator, pool, pool_slots, priority_weight, updated_at) \
             SELECT $1, run_pk, dag_id, run_id, task_id, $2, 'scheduled', 0, $3, operator, pool, pool_slots, priority_weight, $4 \
             FROM task_instance WHERE id = $5",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(*map_index)
        .bind(expansion.max_tries)
        .bind(micros(now))
        .bind(expansion.template_ti)
        .execute(&mut **tx)
        .await?
        .rows_affected() as usize;
    }
    Ok(created)
}
