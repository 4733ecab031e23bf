//! Runs the scheduler makes and starts: scheduled runs from timetables (within `max_active_runs`, giving way to
//! runs that hold an interval's logical date), and queued runs started as their DAG's limit allows.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use engine::runs::{RunKind, RunRequest, TriggeredBy};
use engine::state::RunState;
use engine::store::{DagRow, RunType, ScheduledRun};
use engine::timetable::{DataInterval, NextRunParams, Schedule, Timetable};
use tracing::{info, warn};

use crate::main_loop::Scheduler;
use crate::Result;

impl Scheduler {
    pub(crate) async fn create_scheduled_runs(&mut self, now: DateTime<Utc>) -> Result<()> {
        let mut active: HashMap<String, i64> = HashMap::new();
        let mut counted = false;
        let dags: Vec<DagRow> = self
            .dags
            .values()
            .filter(|d| !d.is_paused && !d.is_stale && d.spec.schedule != Schedule::None)
            .cloned()
            .collect();
        for dag in dags {
            if let Some((hash, due)) = self.next_due.get(&dag.dag_id) {
                if *hash == dag.version_hash && due.map(|d| now < d).unwrap_or(true) {
                    continue;
                }
            }
            if !counted {
                for (dag_id, _, count) in self.store.active_run_counts().await? {
                    *active.entry(dag_id).or_default() += count;
                }
                counted = true;
            }
            let spec = &dag.spec;
            let timetable = match Timetable::new(&spec.schedule, &spec.timezone) {
                Ok(timetable) => timetable,
                Err(message) => {
                    warn!(dag_id = %dag.dag_id, "cannot schedule: {message}");
                    self.next_due
                        .insert(dag.dag_id.clone(), (dag.version_hash.clone(), None));
                    continue;
                }
            };
            let mut due = None;
            // An interval whose logical date a manual or backfill run already holds is done: move past it.
            let mut taken: Option<DataInterval> = None;
            for _ in 0..100 {
                let running = active.get(&dag.dag_id).copied().unwrap_or(0);
                if running >= i64::from(spec.max_active_runs) {
                    // Look again soon: a run may finish.
                    due = Some(now + chrono::Duration::seconds(1));
                    break;
                }
                let mut last = self.store.latest_scheduled_interval(&dag.dag_id).await?;
                if let Some(interval) = taken {
                    if last.is_none_or(|l| l.start < interval.start) {
                        last = Some(interval);
                    }
                }
                let params = NextRunParams {
                    last,
                    start_date: spec.start_date,
                    end_date: spec.end_date,
                    catchup: spec.catchup,
                    now,
                };
                let Some(next) = timetable.next_run(params) else {
                    self.store.set_next_dagrun(&dag.dag_id, None).await?;
                    due = None;
                    break;
                };
                if next.interval.end > now {
                    self.store.set_next_dagrun(&dag.dag_id, Some(next.interval)).await?;
                    due = Some(next.interval.end);
                    break;
                }
                if next.skipped > 0 {
                    warn!(dag_id = %dag.dag_id, skipped = next.skipped, "catchup is off: skipping missed schedule intervals");
                    self.metrics
                        .dagrun_missed_schedules
                        .fetch_add(next.skipped, Ordering::Relaxed);
                    self.store
                        .audit(
                            "missed_schedules",
                            Some(&dag.dag_id),
                            None,
                            Some("scheduler"),
                            Some(&format!("{} intervals skipped (catchup is off)", next.skipped)),
                        )
                        .await?;
                }
                let request = RunRequest::new(
                    RunKind::Scheduled {
                        interval: next.interval,
                    },
                    TriggeredBy::Timetable,
                    now,
                );
                let created = self
                    .store
                    .create_scheduled_run(request.new_run(spec).map_err(engine::Error::from)?)
                    .await?;
                match created {
                    ScheduledRun::Created(run) => {
                        info!(dag_id = %run.dag_id, run_id = %run.run_id, "created scheduled run");
                        self.metrics.dagrun_created.fetch_add(1, Ordering::Relaxed);
                        *active.entry(dag.dag_id.clone()).or_default() += 1;
                    }
                    // Another scheduler made it; continue from the store's view.
                    ScheduledRun::Exists {
                        run_type: RunType::Scheduled,
                        ..
                    } => continue,
                    ScheduledRun::Exists { run_id, run_type } => {
                        warn!(dag_id = %dag.dag_id, %run_id, run_type = run_type.as_str(),
                              "a run already holds this interval's logical date: no scheduled run for it");
                        taken = Some(next.interval);
                    }
                }
            }
            self.next_due
                .insert(dag.dag_id.clone(), (dag.version_hash.clone(), due));
        }
        Ok(())
    }

    /// Makes the asset-triggered run of each DAG whose asset condition holds over the assets updated since its
    /// last one (paused DAGs keep their queue until they are unpaused, as in Airflow). Returns how many.
    pub(crate) async fn create_asset_runs(&mut self, now: DateTime<Utc>) -> Result<usize> {
        let mut created = 0;
        for dag_id in self.store.dags_with_queued_assets().await? {
            let Some(dag) = self.dags.get(&dag_id).cloned() else {
                continue;
            };
            if dag.is_paused || dag.is_stale {
                continue;
            }
            let Schedule::Assets { condition } = &dag.spec.schedule else {
                continue;
            };
            let request = RunRequest::new(RunKind::AssetTriggered, TriggeredBy::Asset, now);
            let new = request.new_run(&dag.spec).map_err(engine::Error::from)?;
            if let Some(run) = self.store.trigger_by_assets(&dag.spec, condition, new).await? {
                info!(dag_id = %run.dag_id, run_id = %run.run_id, "created asset-triggered run");
                self.metrics.dagrun_created.fetch_add(1, Ordering::Relaxed);
                created += 1;
            }
        }
        Ok(created)
    }

    pub(crate) async fn start_queued_runs(&mut self, now: DateTime<Utc>) -> Result<usize> {
        let queued = self.store.queued_runs(self.options.scope.as_deref()).await?;
        if queued.is_empty() {
            return Ok(0);
        }
        let mut running: HashMap<String, i64> = HashMap::new();
        for (dag_id, state, count) in self.store.active_run_counts().await? {
            if state == RunState::Running {
                running.insert(dag_id, count);
            }
        }
        let mut to_start = Vec::new();
        for run in &queued {
            let spec = self.spec(&run.version_hash).await?;
            let count = running.entry(run.dag_id.clone()).or_default();
            if *count < i64::from(spec.max_active_runs) {
                *count += 1;
                to_start.push(run.id);
            }
        }
        let started = self.store.start_runs(&to_start, now).await?;
        for run in queued
            .iter()
            .filter(|run| run.run_type == RunType::Scheduled && started.contains(&run.id))
        {
            self.metrics
                .observe_schedule_delay((now - run.run_after).num_milliseconds() as f64 / 1000.0);
        }
        Ok(started.len())
    }
}
