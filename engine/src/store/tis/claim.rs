//! Claiming task instances: the critical section that queues ready task instances within pools and limits
//! and starts their next try, in one transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{ti_from_row, TiRow, TI_COLUMNS};
use crate::state::{next_task_state, TaskEvent, TaskState};
use crate::store::{micros, placeholders, Backend, Change, Store, CHUNK};
use crate::Result;

const EXECUTING: &str = TaskState::EXECUTING_SQL;

/// Result of a claim: task instances now queued for this scheduler, and those whose pool does not exist.
#[derive(Debug, Default)]
pub struct Claim {
    pub queued: Vec<TiRow>,
    /// The DAG version of each run the claimed task instances belong to, by run pk.
    pub versions: HashMap<i64, String>,
    pub missing_pool: Vec<TiRow>,
}

/// The concurrency limits a claim respects besides pools and its own count.
#[derive(Debug, Clone, Default)]
pub struct ClaimLimits {
    /// Each DAG's `max_active_tasks` (16 when a DAG is not named).
    pub max_active_tasks: HashMap<String, u32>,
    /// Airflow's `max_active_tis_per_dag`: tries of one task running at once across its DAG's runs, by
    /// (DAG, task), for the tasks that set it.
    pub per_task: HashMap<(String, String), u32>,
}

impl Store {
    /// The critical section: picks `scheduled` task instances of running runs by priority, within pool slots,
    /// each DAG's `max_active_tasks`, each task's `max_active_tis_per_dag` and `max_count`, moves them to
    /// `queued` for `scheduler_id` and starts their next try on `hostname`, in one transaction: `queued` holds
    /// them as they are then (running, with their new try number; `updated_at` left as read, when they became
    /// scheduled). Task instances whose pool does not exist are queued, not started. On PostgreSQL the pool
    /// rows are locked for the duration, so schedulers take turns here.
    pub async fn claim_and_start(
        &self,
        scheduler_id: &str,
        hostname: &str,
        max_count: usize,
        limits: &ClaimLimits,
        scope: Option<&[i64]>,
        now: DateTime<Utc>,
    ) -> Result<Claim> {
        let mut claim = Claim::default();
        if max_count == 0 {
            return Ok(claim);
        }
        let scope_clause = match scope {
            Some(ids) if !ids.is_empty() => format!(
                " AND ti.run_pk IN ({})",
                ids.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
            ),
            Some(_) => " AND 1 = 0".into(),
            None => " AND r.triggered_by <> 'test'".into(),
        };
        // Nothing to claim is known without the write transaction (and its lock on SQLite): a change that
        // makes a task instance scheduled afterwards wakes the next step.
        let ready = format!(
            "FROM task_instance ti JOIN dag_run r ON r.id = ti.run_pk WHERE ti.state = 'scheduled' AND r.state = 'running'{scope_clause}"
        );
        let any = sqlx::query(&format!("SELECT ti.id {ready} LIMIT 1"))
            .fetch_optional(&self.pool)
            .await?;
        if any.is_none() {
            return Ok(claim);
        }
        let mut tx = self.begin().await?;
        // A start is stamped once the write lock is held: a try whose end made room for this one (recorded by
        // a runner, with its own clock) is then never seen to overlap it.
        let now = Utc::now().max(now);
        let lock = if self.backend == Backend::Postgres {
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
        // Slots used per pool and tries running per DAG, from one read.
        let mut pool_used: HashMap<String, i64> = HashMap::new();
        let mut dag_active: HashMap<String, i64> = HashMap::new();
        for row in sqlx::query(&format!(
            "SELECT pool, dag_id, CAST(SUM(pool_slots) AS BIGINT), COUNT(*) FROM task_instance WHERE state IN {EXECUTING} GROUP BY pool, dag_id"
        ))
        .fetch_all(&mut *tx)
        .await?
        {
            *pool_used.entry(row.try_get(0)?).or_insert(0) += row.try_get::<Option<i64>, _>(2)?.unwrap_or(0);
            *dag_active.entry(row.try_get(1)?).or_insert(0) += row.try_get::<i64, _>(3)?;
        }
        let mut task_active: HashMap<(String, String), i64> = HashMap::new();
        if !limits.per_task.is_empty() {
            for row in sqlx::query(&format!(
                "SELECT dag_id, task_id, COUNT(*) FROM task_instance WHERE state IN {EXECUTING} GROUP BY dag_id, task_id"
            ))
            .fetch_all(&mut *tx)
            .await?
            {
                task_active.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
            }
        }
        let columns = TI_COLUMNS
            .split(", ")
            .map(|c| format!("ti.{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let candidates_limit = (max_count * 4).max(64);
        let sql = format!(
            "SELECT {columns}, r.version_hash {ready} \
             ORDER BY ti.priority_weight DESC, r.run_after, ti.id LIMIT {candidates_limit}{}",
            // Rows another scheduler is changing right now are skipped, not waited for.
            if self.backend == Backend::Postgres {
                " FOR UPDATE OF ti SKIP LOCKED"
            } else {
                ""
            }
        );
        let mut candidates: Vec<TiRow> = Vec::new();
        for row in sqlx::query(&sql).fetch_all(&mut *tx).await? {
            let ti = ti_from_row(&row)?;
            if let std::collections::hash_map::Entry::Vacant(entry) = claim.versions.entry(ti.run_pk) {
                entry.insert(row.try_get::<String, _>("version_hash")?);
            }
            candidates.push(ti);
        }
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
            let limit = i64::from(limits.max_active_tasks.get(&ti.dag_id).copied().unwrap_or(16));
            let active = dag_active.entry(ti.dag_id.clone()).or_insert(0);
            if *active >= limit {
                continue;
            }
            let task_key = (ti.dag_id.clone(), ti.task_id.clone());
            if let Some(task_limit) = limits.per_task.get(&task_key) {
                let running = task_active.entry(task_key).or_insert(0);
                if *running >= i64::from(*task_limit) {
                    continue;
                }
                *running += 1;
            }
            *used += ti.pool_slots;
            *active += 1;
            chosen.push(ti);
        }
        let queued = next_task_state(TaskState::Scheduled, TaskEvent::Queue)?;
        let running = next_task_state(queued, TaskEvent::Start)?;
        let mut runs = Vec::new();
        // The claimed task instances start here, on `hostname`; those whose pool does not exist are only queued.
        for (group, start_on) in [(&mut chosen, Some(hostname)), (&mut claim.missing_pool, None)] {
            let to = if start_on.is_some() { running } else { queued };
            // (id, try number) of each row that moved.
            let mut updated: HashMap<i64, i64> = HashMap::new();
            for chunk in group.chunks(CHUNK) {
                let start = if start_on.is_some() {
                    ", try_number = try_number + 1, start_date = $2, end_date = NULL, heartbeat_at = $2, hostname = $4, \
                     pid = NULL, message = NULL, next_retry_at = NULL"
                } else {
                    ""
                };
                let first = if start_on.is_some() { 5 } else { 4 };
                let sql = format!(
                    "UPDATE task_instance SET state = $1, queued_at = $2, updated_at = $2, scheduler_id = $3{start} \
                     WHERE state = 'scheduled' AND id IN ({}) RETURNING id, try_number, run_pk",
                    placeholders(first, chunk.len())
                );
                let mut query = sqlx::query(&sql).bind(to.as_str()).bind(micros(now)).bind(scheduler_id);
                if let Some(hostname) = start_on {
                    query = query.bind(hostname);
                }
                for ti in chunk {
                    query = query.bind(ti.id);
                }
                for row in query.fetch_all(&mut *tx).await? {
                    updated.insert(row.try_get(0)?, row.try_get(1)?);
                    if start_on.is_some() {
                        runs.push(row.try_get::<i64, _>(2)?);
                    }
                }
            }
            group.retain(|ti| updated.contains_key(&ti.id));
            for ti in group.iter_mut() {
                ti.state = to;
                ti.queued_at = Some(now);
                ti.scheduler_id = Some(scheduler_id.to_string());
                if let Some(hostname) = start_on {
                    ti.try_number = updated[&ti.id];
                    ti.start_date = Some(now);
                    ti.end_date = None;
                    ti.hostname = Some(hostname.to_string());
                    ti.pid = None;
                    ti.message = None;
                    ti.next_retry_at = None;
                    ti.heartbeat_at = Some(now);
                }
            }
        }
        runs.sort_unstable();
        runs.dedup();
        let changes: Vec<Change> = runs.into_iter().map(Change::TasksChanged).collect();
        self.announce(&mut tx, &changes).await?;
        tx.commit().await?;
        self.emit(&changes);
        claim.queued = chosen;
        Ok(claim)
    }
}
