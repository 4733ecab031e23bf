//! Liveness: this scheduler's heartbeat and its runners', and the tries of schedulers that died (adopted, failed
//! or requeued).

use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use engine::state::TaskState;
use engine::store::TiRow;
use tracing::{info, warn};
use worker::{Adoption, ExecutorEvent};

use crate::main_loop::{InFlight, Scheduler};
use crate::Result;

impl Scheduler {
    pub(crate) async fn heartbeat(&mut self) -> Result<()> {
        let now = Utc::now();
        self.store.heartbeat_job(&self.options.id, now).await?;
        let ids = self.executor.running_ids();
        for (ti_id, state) in self.store.heartbeat_tis(&ids, now).await? {
            info!(ti_id, %state, "task instance changed from outside while running: stopping its runner");
            self.executor.cancel(ti_id);
        }
        Ok(())
    }

    /// Adopts or fails the tries of schedulers that died, and requeues what they had only queued.
    pub(crate) async fn handle_orphans(&mut self, now: DateTime<Utc>) -> Result<()> {
        let jobs = self.store.running_jobs().await?;
        let mut live = vec![self.options.id.clone()];
        for job in jobs {
            if job.id == self.options.id {
                continue;
            }
            let stale = (now - job.heartbeat_at)
                .to_std()
                .map(|age| age > self.options.job_timeout)
                .unwrap_or(false);
            let gone_here = self.executor.engine_process_alive(&job.hostname, job.pid as u32) == Some(false);
            if stale || gone_here {
                info!(scheduler_id = %job.id, "scheduler is dead; taking over its tasks");
                self.store.set_job_state(&job.id, "dead").await?;
            } else {
                live.push(job.id);
            }
        }
        let orphans = self.store.executing_tis_not_owned_by(&live).await?;
        for ti in orphans {
            self.handle_orphan(ti, now).await?;
        }
        Ok(())
    }

    async fn handle_orphan(&mut self, ti: TiRow, now: DateTime<Utc>) -> Result<()> {
        if ti.state == TaskState::Queued {
            if self.store.requeue_ti(ti.id).await? {
                info!(dag_id = %ti.dag_id, task_id = %ti.task_id, "requeued a task its scheduler never started");
            }
            return Ok(());
        }
        let here = ti.hostname.as_deref() == Some(self.options.hostname.as_str());
        if !here {
            let silent = ti
                .heartbeat_at
                .map(|hb| {
                    (now - hb)
                        .to_std()
                        .map(|age| age > self.options.ti_heartbeat_timeout)
                        .unwrap_or(false)
                })
                .unwrap_or(true);
            if !silent {
                return Ok(());
            }
        }
        if !self
            .store
            .adopt_ti(ti.id, ti.scheduler_id.as_deref(), &self.options.id)
            .await?
        {
            return Ok(());
        }
        self.in_flight.insert(ti.id, InFlight::new(&ti));
        let gone = |detail: String| ExecutorEvent::Exited {
            ti_id: ti.id,
            try_number: ti.try_number,
            detail,
        };
        let adoption = if here {
            self.executor.adopt(&ti)
        } else {
            Adoption::NotMine
        };
        match adoption {
            Adoption::Watching => {
                info!(dag_id = %ti.dag_id, task_id = %ti.task_id, pid = ?ti.pid, "adopted a running task");
                self.metrics.ti_adopted.fetch_add(1, Ordering::Relaxed);
            }
            Adoption::Gone(why) => {
                info!(dag_id = %ti.dag_id, task_id = %ti.task_id, %why, "collecting a task whose scheduler died");
                self.metrics.ti_orphans_failed.fetch_add(1, Ordering::Relaxed);
                self.pending_events
                    .push(gone(format!("{why} (its scheduler died meanwhile)")));
            }
            Adoption::NotMine => {
                warn!(dag_id = %ti.dag_id, task_id = %ti.task_id, host = ?ti.hostname, "task on another host stopped heartbeating; failing it");
                self.metrics.ti_orphans_failed.fetch_add(1, Ordering::Relaxed);
                self.pending_events
                    .push(gone("no heartbeat from the task's host".into()));
            }
        }
        Ok(())
    }
}
