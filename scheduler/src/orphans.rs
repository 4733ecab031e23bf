//! Liveness: this scheduler's heartbeat and its runners', and the tries of schedulers that died (adopted, failed
//! or requeued).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

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
            // After a store error of our own, the others' heartbeats may be old for the same reason.
            let judged = self
                .store_failed_at
                .is_none_or(|at| at.elapsed() > self.options.job_timeout);
            let stale = judged
                && (now - job.heartbeat_at)
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
        self.refresh_peers(now).await?;
        let orphans = self.store.executing_tis_not_owned_by(&live).await?;
        for ti in orphans {
            self.handle_orphan(ti, now).await?;
        }
        self.reconcile_own().await
    }

    /// Tells the executor the live engines, so that runners launched from now on can report to another one
    /// should this one die (also before every launch: a scheduler that started a moment ago is known to the
    /// runners launched after it).
    pub(crate) async fn refresh_peers(&mut self, now: DateTime<Utc>) -> Result<()> {
        let peers = self
            .store
            .live_api_urls(now - chrono::Duration::from_std(self.options.job_timeout).unwrap_or_default())
            .await?;
        self.executor.set_peer_engines(peers);
        Ok(())
    }

    /// Finds this scheduler's own tries that it lost track of: recorded as queued or running under it, but
    /// neither running on its executor nor ended by an event waiting to be recorded (a store error between a
    /// claim and the launch). Queued ones go back to scheduled; running ones that no runner started are
    /// launched now; ones whose runner started are watched again if it lives, else end by the retry policy.
    async fn reconcile_own(&mut self) -> Result<()> {
        let mine = self.store.executing_tis_owned_by(&self.options.id).await?;
        if mine.is_empty() {
            return Ok(());
        }
        // In this order: a runner that ends after the snapshot is in it; one that ended before has its event
        // in the channel (events are sent before a runner leaves the running set).
        let running: HashSet<i64> = self.executor.running_ids().into_iter().collect();
        while let Ok(event) = self.events.try_recv() {
            self.pending_events.push(event);
        }
        let ending: HashSet<i64> = self
            .pending_events
            .iter()
            .filter_map(|event| match event {
                ExecutorEvent::Exited { ti_id, .. } => Some(*ti_id),
                ExecutorEvent::Started { .. } => None,
            })
            .collect();
        for ti in mine {
            if running.contains(&ti.id) || ending.contains(&ti.id) {
                continue;
            }
            self.metrics.ti_reconciled.fetch_add(1, Ordering::Relaxed);
            if ti.state == TaskState::Queued {
                if self.store.requeue_ti(ti.id).await? {
                    warn!(dag_id = %ti.dag_id, task_id = %ti.task_id, run_id = %ti.run_id, "requeued a task this scheduler claimed but never started");
                }
                continue;
            }
            if ti.pid.is_none() {
                warn!(dag_id = %ti.dag_id, task_id = %ti.task_id, run_id = %ti.run_id, try_number = ti.try_number, "launching a try this scheduler started but never launched");
                self.relaunch(ti).await?;
                continue;
            }
            self.in_flight.entry(ti.id).or_insert_with(|| InFlight::new(&ti));
            self.watch_or_collect(&ti, "its scheduler had lost track of it");
        }
        Ok(())
    }

    /// Launches try `ti.try_number` of `ti` on this scheduler's executor (a try recorded as started whose
    /// runner never reported). Should an earlier runner of the same try still start, the first one to start
    /// holds the try and the other stands down.
    async fn relaunch(&mut self, mut ti: TiRow) -> Result<()> {
        let run = self.store.get_run_by_pk(ti.run_pk).await?;
        ti.hostname = Some(self.options.hostname.clone());
        self.launch_try(ti, &run.version_hash).await
    }

    /// Watches the runner of `ti` again if it lives on this host, else ends the try by its retry policy.
    fn watch_or_collect(&mut self, ti: &TiRow, why_here: &str) {
        let adoption = if self.executor.can_adopt(ti) {
            self.executor.adopt(ti)
        } else {
            Adoption::NotMine
        };
        let gone = |detail: String| ExecutorEvent::Exited {
            ti_id: ti.id,
            try_number: ti.try_number,
            pid: ti.pid.and_then(|p| u32::try_from(p).ok()),
            detail,
        };
        match adoption {
            Adoption::Watching => {
                info!(dag_id = %ti.dag_id, task_id = %ti.task_id, pid = ?ti.pid, "adopted a running task");
                self.metrics.ti_adopted.fetch_add(1, Ordering::Relaxed);
            }
            Adoption::Gone(why) => {
                info!(dag_id = %ti.dag_id, task_id = %ti.task_id, %why, "collecting a task whose runner is gone");
                self.metrics.ti_orphans_failed.fetch_add(1, Ordering::Relaxed);
                self.pending_events.push(gone(format!("{why} ({why_here})")));
            }
            Adoption::NotMine => {
                warn!(dag_id = %ti.dag_id, task_id = %ti.task_id, host = ?ti.hostname, "task on another host stopped heartbeating; failing it");
                self.metrics.ti_orphans_failed.fetch_add(1, Ordering::Relaxed);
                self.pending_events
                    .push(gone("no heartbeat from the task's host".into()));
            }
        }
    }

    async fn handle_orphan(&mut self, ti: TiRow, now: DateTime<Utc>) -> Result<()> {
        if ti.state == TaskState::Queued {
            if self.store.requeue_ti(ti.id).await? {
                info!(dag_id = %ti.dag_id, task_id = %ti.task_id, "requeued a task its scheduler never started");
            }
            return Ok(());
        }
        let age = |at: Option<DateTime<Utc>>| at.and_then(|at| (now - at).to_std().ok()).unwrap_or(Duration::MAX);
        let here = self.executor.can_adopt(&ti);
        if !here && age(ti.heartbeat_at) <= self.options.ti_heartbeat_timeout {
            return Ok(());
        }
        // Started by the dead scheduler, but no runner has reported yet: give one launched just before the
        // scheduler died time to reach this engine, then launch the try here.
        if ti.pid.is_none() && age(ti.heartbeat_at) <= self.options.orphan_interval {
            return Ok(());
        }
        if !self
            .store
            .adopt_ti(ti.id, ti.scheduler_id.as_deref(), &self.options.id)
            .await?
        {
            return Ok(());
        }
        if ti.pid.is_none() {
            info!(dag_id = %ti.dag_id, task_id = %ti.task_id, "launching a try whose scheduler died before its runner reported");
            self.metrics.ti_adopted.fetch_add(1, Ordering::Relaxed);
            return self.relaunch(ti).await;
        }
        self.in_flight.insert(ti.id, InFlight::new(&ti));
        self.watch_or_collect(&ti, "its scheduler died meanwhile");
        Ok(())
    }
}
