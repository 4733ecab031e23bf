//! Executor events: runners' pids, and runners that ended without reporting (their tries fail by the task's
//! retry policy); observers are told of every try that ends.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use chrono::Utc;
use engine::state::{Outcome, TaskState};
use engine::store::{FinishedTry, TiRow};
use tracing::{info, warn};
use worker::ExecutorEvent;

use crate::main_loop::Scheduler;
use crate::Result;

/// A runner that is gone, as its executor told.
struct Exit {
    ti_id: i64,
    try_number: i64,
    pid: Option<u32>,
    detail: String,
}

/// Told to observers when a task instance's try ends.
#[derive(Debug, Clone)]
pub struct FinishedNotice {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub map_index: i64,
    pub try_number: i64,
    pub state: TaskState,
}

impl Scheduler {
    fn notify(&self, notice: FinishedNotice) {
        if let Some(sender) = &self.notices {
            let _ = sender.send(notice);
        }
    }

    /// Records every executor event that arrived: runners' pids, and runners that are gone. A try whose runner
    /// ended without reporting (killed, crashed, lost) is failed here, by the task's retry policy. On a store
    /// error the events stay pending for the next step: none is dropped.
    pub(crate) async fn drain_events(&mut self) -> Result<()> {
        while let Ok(event) = self.events.try_recv() {
            self.pending_events.push(event);
        }
        if self.pending_events.is_empty() {
            return Ok(());
        }
        let mut exited = Vec::new();
        for event in std::mem::take(&mut self.pending_events) {
            match event {
                // The runner records its own pid and host when it starts (one write, by the execution API).
                ExecutorEvent::Started { .. } => {
                    self.metrics.ti_start.fetch_add(1, Ordering::Relaxed);
                }
                ExecutorEvent::Exited {
                    ti_id,
                    try_number,
                    pid,
                    detail,
                } => exited.push(Exit {
                    ti_id,
                    try_number,
                    pid,
                    detail,
                }),
            }
        }
        if exited.is_empty() {
            return Ok(());
        }
        match self.record_exits(&exited).await {
            Ok(()) => Ok(()),
            Err(err) => {
                let later = std::mem::take(&mut self.pending_events);
                self.pending_events = exited
                    .into_iter()
                    .map(|exit| ExecutorEvent::Exited {
                        ti_id: exit.ti_id,
                        try_number: exit.try_number,
                        pid: exit.pid,
                        detail: exit.detail,
                    })
                    .chain(later)
                    .collect();
                Err(err)
            }
        }
    }

    /// Fails the tries whose runner ended without reporting (one transaction), then counts and tells observers.
    async fn record_exits(&mut self, exited: &[Exit]) -> Result<()> {
        let ids: Vec<i64> = exited.iter().map(|exit| exit.ti_id).collect();
        let rows: HashMap<i64, TiRow> = self
            .store
            .tis_by_ids(&ids)
            .await?
            .into_iter()
            .map(|ti| (ti.id, ti))
            .collect();
        let now = Utc::now();
        let mut lost = Vec::new();
        for Exit {
            ti_id,
            try_number,
            pid,
            detail,
        } in exited
        {
            let Some(ti) = rows.get(ti_id) else { continue };
            if ti.try_number != *try_number || !ti.state.is_executing() {
                continue;
            }
            // Another runner started this try first (it was relaunched after its scheduler died): that one
            // holds it, and this scheduler looks after it at its next reconciliation.
            if let (Some(held), Some(pid)) = (ti.pid, pid) {
                if held != i64::from(*pid) {
                    info!(dag_id = %ti.dag_id, task_id = %ti.task_id, held, pid, "a second runner of a try stood down");
                    continue;
                }
            }
            let run = self.store.get_run_by_pk(ti.run_pk).await?;
            let spec = self.spec(&run.version_hash).await.ok();
            let task = spec.as_ref().and_then(|s| s.task(&ti.task_id));
            warn!(dag_id = %ti.dag_id, task_id = %ti.task_id, run_id = %ti.run_id, try_number, %detail, "task runner ended without reporting");
            lost.push(FinishedTry::by_policy(
                ti,
                *try_number,
                task,
                Outcome::Failed,
                Some(format!("the task's runner ended without reporting its state: {detail}")),
                vec![],
                now,
            ));
        }
        let results: HashMap<i64, TaskState> = self.store.finish_tries(&lost).await?.into_iter().collect();
        for Exit { ti_id, try_number, .. } in exited {
            let state = results
                .get(ti_id)
                .copied()
                .or_else(|| rows.get(ti_id).map(|ti| ti.state))
                .unwrap_or(TaskState::None);
            self.metrics.ti_finish.fetch_add(1, Ordering::Relaxed);
            match state {
                TaskState::Success => self.metrics.ti_successes.fetch_add(1, Ordering::Relaxed),
                TaskState::Failed => self.metrics.ti_failures.fetch_add(1, Ordering::Relaxed),
                TaskState::UpForRetry => self.metrics.ti_retries.fetch_add(1, Ordering::Relaxed),
                TaskState::Skipped => self.metrics.ti_skipped.fetch_add(1, Ordering::Relaxed),
                _ => 0,
            };
            let Some(flight) = self.in_flight.remove(ti_id) else {
                continue;
            };
            self.metrics
                .observe_task_duration(flight.started.elapsed().as_secs_f64());
            if state == TaskState::UpForRetry {
                warn!(dag_id = %flight.dag_id, task_id = %flight.task_id, run_id = %flight.run_id, "task failed, retrying");
            }
            self.notify(FinishedNotice {
                dag_id: flight.dag_id,
                run_id: flight.run_id,
                task_id: flight.task_id,
                map_index: flight.map_index,
                try_number: *try_number,
                state,
            });
        }
        Ok(())
    }
}
