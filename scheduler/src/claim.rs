//! Claiming ready task instances within pools and limits, and launching their tries on the executor.

use std::sync::atomic::Ordering;
use std::time::Instant;

use chrono::{DateTime, Utc};
use engine::state::TaskEvent;
use engine::store::{ClaimLimits, FinishedTry, TiRow};
use tracing::warn;
use worker::LaunchRequest;

use crate::main_loop::{InFlight, Scheduler};
use crate::Result;

impl Scheduler {
    /// Claims ready task instances within limits and starts them. Returns how many started; records whether
    /// they filled every open slot (`slots_full`).
    pub(crate) async fn claim_and_launch(&mut self, now: DateTime<Utc>) -> Result<usize> {
        let open = self.executor.open_slots();
        self.metrics.executor_open_slots.store(open as i64, Ordering::Relaxed);
        self.slots_full = open == 0;
        if open == 0 {
            return Ok(0);
        }
        // Versions the runs use (all a scoped scheduler knows), then the latest version of each DAG.
        let mut limits = ClaimLimits::default();
        for spec in self
            .specs
            .values()
            .map(|s| s.as_ref())
            .chain(self.dags.values().map(|d| &d.spec))
        {
            limits
                .max_active_tasks
                .insert(spec.dag_id.clone(), spec.max_active_tasks);
            for task in &spec.tasks {
                let key = (spec.dag_id.clone(), task.task_id.clone());
                match task.max_active_tis_per_dag {
                    Some(n) => limits.per_task.insert(key, n),
                    None => limits.per_task.remove(&key),
                };
            }
        }
        let started_claim = Instant::now();
        // Claimed and started in one transaction: each comes back running, with its new try number.
        let claim = self
            .store
            .claim_and_start(
                &self.options.id,
                &self.options.hostname,
                open,
                &limits,
                self.options.scope.as_deref(),
                now,
            )
            .await?;
        self.metrics
            .critical_section_duration_us
            .store(started_claim.elapsed().as_micros() as u64, Ordering::Relaxed);
        self.metrics
            .tasks_executable
            .store(claim.queued.len() as i64, Ordering::Relaxed);
        self.metrics
            .tasks_starving
            .store(claim.missing_pool.len() as i64, Ordering::Relaxed);
        if !claim.missing_pool.is_empty() {
            let tries: Vec<FinishedTry> = claim
                .missing_pool
                .iter()
                .map(|ti| FinishedTry {
                    outlets: Vec::new(),
                    ti_id: ti.id,
                    run_pk: ti.run_pk,
                    try_number: ti.try_number,
                    event: TaskEvent::Fail { can_retry: false },
                    message: Some(format!(
                        "pool `{}` does not exist; create it (dagctl pools set) and clear the task",
                        ti.pool
                    )),
                    xcoms: vec![],
                    next_retry_at: None,
                    // After the claim's own stamp (taken under the write lock), never before it.
                    ended_at: Utc::now(),
                })
                .collect();
            for ti in &claim.missing_pool {
                warn!(dag_id = %ti.dag_id, task_id = %ti.task_id, pool = %ti.pool, "task uses a pool that does not exist");
            }
            self.store.finish_tries(&tries).await?;
        }
        if claim.queued.is_empty() {
            return Ok(claim.missing_pool.len());
        }
        if self.options.scope.is_none() {
            // The engines the new runners are told of. Best effort: on a store error they get those known before.
            let _ = self.refresh_peers(now).await;
        }
        let started = claim.queued.len();
        for ti in claim.queued {
            // Queued and started at once: the wait is from being scheduled to the start.
            if let Some(start) = ti.start_date {
                self.metrics.observe_queued_duration(
                    (start - ti.updated_at).num_microseconds().unwrap_or(0).max(0) as f64 / 1e6,
                );
            }
            let version_hash = match claim.versions.get(&ti.run_pk) {
                Some(hash) => hash.clone(),
                None => self.store.get_run_by_pk(ti.run_pk).await?.version_hash,
            };
            self.launch_try(ti, &version_hash).await?;
        }
        self.slots_full = started >= open;
        Ok(started)
    }

    /// Starts the runner of try `ti.try_number` (recorded as running) on the executor.
    pub(crate) async fn launch_try(&mut self, ti: TiRow, version_hash: &str) -> Result<()> {
        let dag = self.spec(version_hash).await?;
        let task = dag.task(&ti.task_id);
        let execution_timeout = task.and_then(|task| task.execution_timeout);
        let executor_config = task.and_then(|task| task.executor_config.clone());
        self.in_flight.insert(ti.id, InFlight::new(&ti));
        let span = tracing::info_span!("launch", dag_id = %ti.dag_id, run_id = %ti.run_id, task_id = %ti.task_id, try_number = ti.try_number);
        span.in_scope(|| {
            tracing::debug!("launching the try's runner");
            self.executor.launch(LaunchRequest {
                ti,
                execution_timeout,
                executor_config,
            });
        });
        Ok(())
    }
}
