//! The scheduler loop.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use engine::operators::OperatorRegistry;
use engine::spec::DagSpec;
use engine::state::Outcome;
use engine::state::{RunEvent, RunState, TaskEvent, TaskState};
use engine::store::runs::NewRun;
use engine::store::{DagRow, FinishedTry, RunType, ScheduledRun, Store, TiRow};
use engine::timetable::{DataInterval, NextRunParams, Schedule, Timetable};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use worker::{Adoption, Executor, ExecutorEvent, LaunchRequest};

use crate::dag_processor::DagProcessor;
use crate::evaluate::plan_run;
use crate::metrics::Metrics;
use crate::Result;

/// How a scheduler behaves.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Unique per scheduler process.
    pub id: String,
    pub hostname: String,
    /// Read DAG files from here (None: only what the store already has).
    pub dags_folder: Option<PathBuf>,
    pub paused_at_creation: bool,
    pub parse_interval: Duration,
    /// Longest sleep when there is nothing to do.
    pub idle_interval: Duration,
    pub heartbeat_interval: Duration,
    pub orphan_interval: Duration,
    /// A scheduler whose heartbeat is older than this is dead and its tasks are orphans.
    pub job_timeout: Duration,
    /// A running task on another host whose heartbeat is older than this is failed (Airflow's
    /// task_instance_heartbeat_timeout).
    pub ti_heartbeat_timeout: Duration,
    /// Only work on these runs, and stop when they have finished (`dags test`, local backfill).
    pub scope: Option<Vec<i64>>,
    pub create_scheduled_runs: bool,
}

impl SchedulerOptions {
    pub fn new(id: String, hostname: String) -> SchedulerOptions {
        SchedulerOptions {
            id,
            hostname,
            dags_folder: None,
            paused_at_creation: true,
            parse_interval: Duration::from_secs(2),
            idle_interval: Duration::from_millis(500),
            heartbeat_interval: Duration::from_secs(5),
            orphan_interval: Duration::from_secs(10),
            job_timeout: Duration::from_secs(30),
            ti_heartbeat_timeout: Duration::from_secs(300),
            scope: None,
            create_scheduled_runs: true,
        }
    }
}

/// Told to observers when a task instance's try ends.
#[derive(Debug, Clone)]
pub struct FinishedNotice {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    pub try_number: i64,
    pub state: TaskState,
}

struct InFlight {
    dag_id: String,
    run_id: String,
    task_id: String,
    started: Instant,
}

impl InFlight {
    fn new(ti: &TiRow) -> InFlight {
        InFlight {
            dag_id: ti.dag_id.clone(),
            run_id: ti.run_id.clone(),
            task_id: ti.task_id.clone(),
            started: Instant::now(),
        }
    }
}

/// One scheduler: create with [`Scheduler::new`], run with [`Scheduler::run`].
pub struct Scheduler {
    store: Store,
    options: SchedulerOptions,
    registry: OperatorRegistry,
    executor: Arc<dyn Executor>,
    events: mpsc::UnboundedReceiver<ExecutorEvent>,
    pending_events: Vec<ExecutorEvent>,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    notices: Option<mpsc::UnboundedSender<FinishedNotice>>,
    specs: HashMap<String, Arc<DagSpec>>,
    dags: HashMap<String, DagRow>,
    in_flight: HashMap<i64, InFlight>,
    next_due: HashMap<String, (String, Option<DateTime<Utc>>)>,
    processor: Option<DagProcessor>,
}

impl Scheduler {
    pub fn new(
        store: Store,
        options: SchedulerOptions,
        registry: OperatorRegistry,
        executor: Arc<dyn Executor>,
        events: mpsc::UnboundedReceiver<ExecutorEvent>,
        metrics: Arc<Metrics>,
    ) -> Scheduler {
        let processor = options
            .dags_folder
            .as_ref()
            .map(|folder| DagProcessor::new(folder, registry.clone(), options.paused_at_creation));
        Scheduler {
            store,
            options,
            registry,
            executor,
            events,
            pending_events: Vec::new(),
            metrics,
            wake: Arc::new(Notify::new()),
            notices: None,
            specs: HashMap::new(),
            dags: HashMap::new(),
            in_flight: HashMap::new(),
            next_due: HashMap::new(),
            processor,
        }
    }

    /// Notify this to make the scheduler look for new work at once (e.g. after a trigger).
    pub fn wake_handle(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Uses `wake` (shared with, e.g., the execution API of this process) to look for work at once.
    pub fn with_wake(mut self, wake: Arc<Notify>) -> Scheduler {
        self.wake = wake;
        self
    }

    /// Receives a notice for every finished try.
    pub fn subscribe(&mut self) -> mpsc::UnboundedReceiver<FinishedNotice> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.notices = Some(sender);
        receiver
    }

    /// Runs until `shutdown` is cancelled (or, with a scope, until the scoped runs have finished).
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        let now = Utc::now();
        self.store
            .register_job(&self.options.id, &self.options.hostname, std::process::id(), now)
            .await?;
        info!(scheduler_id = %self.options.id, "scheduler started");
        let full = self.options.scope.is_none();
        if full {
            self.handle_orphans(now).await?;
        }
        let mut next_parse = Instant::now();
        let mut next_heartbeat = Instant::now() + self.options.heartbeat_interval;
        let mut next_orphans = Instant::now() + self.options.orphan_interval;
        let result = loop {
            let started = Instant::now();
            let step = self.step(&mut next_parse, &mut next_heartbeat, &mut next_orphans).await;
            self.metrics.scheduler_heartbeat.fetch_add(1, Ordering::Relaxed);
            self.metrics
                .loop_duration_us
                .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            let busy = match step {
                Ok(busy) => busy,
                Err(err) => {
                    warn!(error = %err, "scheduler loop failed, retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    false
                }
            };
            if let Some(scope) = &self.options.scope {
                let idle = self.executor.running_count() == 0;
                while let Ok(event) = self.events.try_recv() {
                    self.pending_events.push(event);
                }
                if idle && self.pending_events.is_empty() && self.store.runs_unfinished(scope).await? == 0 {
                    break Ok(());
                }
            }
            if shutdown.is_cancelled() {
                break Ok(());
            }
            if busy {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                event = self.events.recv() => {
                    if let Some(event) = event {
                        self.pending_events.push(event);
                    }
                }
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.options.idle_interval) => {}
                _ = shutdown.cancelled() => break Ok(()),
            }
        };
        if self.options.scope.is_some() {
            self.executor.cancel_all();
        }
        // Tasks that still run are left to the next scheduler, which adopts them at once.
        let _ = self.store.set_job_state(&self.options.id, "stopped").await;
        info!(scheduler_id = %self.options.id, "scheduler stopped");
        result
    }

    async fn step(
        &mut self,
        next_parse: &mut Instant,
        next_heartbeat: &mut Instant,
        next_orphans: &mut Instant,
    ) -> Result<bool> {
        let full = self.options.scope.is_none();
        if full && Instant::now() >= *next_parse {
            self.process_dags().await?;
            *next_parse = Instant::now() + self.options.parse_interval;
        }
        let mut busy = self.drain_events().await? > 0;
        let now = Utc::now();
        if full && self.options.create_scheduled_runs {
            self.create_scheduled_runs(now).await?;
        }
        busy |= self.start_queued_runs(now).await? > 0;
        busy |= self.evaluate(now).await? > 0;
        busy |= self.claim_and_launch(now).await? > 0;
        if Instant::now() >= *next_heartbeat {
            self.heartbeat().await?;
            *next_heartbeat = Instant::now() + self.options.heartbeat_interval;
        }
        if full && Instant::now() >= *next_orphans {
            self.handle_orphans(Utc::now()).await?;
            *next_orphans = Instant::now() + self.options.orphan_interval;
        }
        self.metrics
            .executor_open_slots
            .store(self.executor.open_slots() as i64, Ordering::Relaxed);
        self.metrics
            .executor_running_tasks
            .store(self.executor.running_count() as i64, Ordering::Relaxed);
        Ok(busy)
    }

    async fn process_dags(&mut self) -> Result<()> {
        if let Some(processor) = &mut self.processor {
            let report = processor.process(&self.store).await?;
            if report.changed {
                let errors = report.files.iter().filter(|f| !f.errors.is_empty()).count();
                self.metrics
                    .dag_processing_import_errors
                    .store(errors as i64, Ordering::Relaxed);
                self.metrics
                    .dag_processing_total_parse_time_us
                    .store(report.parse_time.as_micros() as u64, Ordering::Relaxed);
            }
        }
        self.dags = self
            .store
            .list_dags(false)
            .await?
            .into_iter()
            .map(|dag| (dag.dag_id.clone(), dag))
            .collect();
        self.metrics
            .dag_processing_dags
            .store(self.dags.len() as i64, Ordering::Relaxed);
        Ok(())
    }

    async fn spec(&mut self, version_hash: &str) -> Result<Arc<DagSpec>> {
        if let Some(spec) = self.specs.get(version_hash) {
            return Ok(Arc::clone(spec));
        }
        let (spec, _, _) = self.store.dag_version(version_hash).await?;
        let spec = Arc::new(spec);
        self.specs.insert(version_hash.to_string(), Arc::clone(&spec));
        Ok(spec)
    }

    fn notify(&self, notice: FinishedNotice) {
        if let Some(sender) = &self.notices {
            let _ = sender.send(notice);
        }
    }

    /// Records every executor event that arrived: runners' pids, and runners that are gone. A try whose runner
    /// ended without reporting (killed, crashed, lost) is failed here, by the task's retry policy. Returns how
    /// many tries ended.
    async fn drain_events(&mut self) -> Result<usize> {
        while let Ok(event) = self.events.try_recv() {
            self.pending_events.push(event);
        }
        if self.pending_events.is_empty() {
            return Ok(0);
        }
        let events = std::mem::take(&mut self.pending_events);
        let mut exited = Vec::new();
        for event in events {
            match event {
                ExecutorEvent::Started { ti_id, pid } => {
                    self.metrics.ti_start.fetch_add(1, Ordering::Relaxed);
                    if let Some(pid) = pid {
                        self.store.set_pid(ti_id, pid).await?;
                    }
                }
                ExecutorEvent::Exited {
                    ti_id,
                    try_number,
                    detail,
                } => exited.push((ti_id, try_number, detail)),
            }
        }
        if exited.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = exited.iter().map(|(id, _, _)| *id).collect();
        let rows: HashMap<i64, TiRow> = self
            .store
            .tis_by_ids(&ids)
            .await?
            .into_iter()
            .map(|ti| (ti.id, ti))
            .collect();
        let now = Utc::now();
        let mut lost = Vec::new();
        for (ti_id, try_number, detail) in &exited {
            let Some(ti) = rows.get(ti_id) else { continue };
            if ti.try_number != *try_number || !ti.state.is_executing() {
                continue;
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
        for (ti_id, try_number, _) in &exited {
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
                try_number: *try_number,
                state,
            });
        }
        Ok(exited.len())
    }

    async fn create_scheduled_runs(&mut self, now: DateTime<Utc>) -> Result<()> {
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
                let created = self
                    .store
                    .create_scheduled_run(NewRun {
                        spec,
                        run_id: None,
                        run_type: RunType::Scheduled,
                        logical_date: Some(next.interval.start),
                        data_interval: Some(next.interval),
                        run_after: next.interval.end,
                        conf: Default::default(),
                        triggered_by: "timetable".into(),
                        triggering_user: None,
                        note: None,
                    })
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

    async fn start_queued_runs(&mut self, now: DateTime<Utc>) -> Result<usize> {
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

    /// Evaluates runs that changed. Returns how many task instances or runs changed.
    async fn evaluate(&mut self, now: DateTime<Utc>) -> Result<usize> {
        let mut total = 0;
        for _ in 0..20 {
            let batch = self
                .store
                .lock_runs_for_eval(now, 50, self.options.scope.as_deref())
                .await?;
            if batch.runs.is_empty() {
                break;
            }
            let count = batch.runs.len();
            let mut plans = Vec::with_capacity(count);
            let mut to_kill = Vec::new();
            for (run, tis) in &batch.runs {
                let spec = match self.spec(&run.version_hash).await {
                    Ok(spec) => spec,
                    Err(err) => {
                        warn!(dag_id = %run.dag_id, run_id = %run.run_id, error = %err, "run has no readable DAG version; failing it");
                        plans.push(engine::store::runs::RunPlan {
                            run_pk: run.id,
                            run_event: Some((run.state, RunEvent::Mark(RunState::Failed))),
                            ..Default::default()
                        });
                        continue;
                    }
                };
                let plan = plan_run(&spec, run, tis, &self.registry, now);
                for change in &plan.changes {
                    if change.from == TaskState::Running || change.from == TaskState::Restarting {
                        to_kill.push(change.ti_id);
                    }
                }
                if let Some((_, event)) = plan.run_event {
                    match event {
                        RunEvent::Finish { success: true } => {
                            self.metrics.dagrun_success.fetch_add(1, Ordering::Relaxed);
                            info!(dag_id = %run.dag_id, run_id = %run.run_id, "dag run succeeded");
                        }
                        RunEvent::Finish { success: false } | RunEvent::TimedOut | RunEvent::Mark(_) => {
                            self.metrics.dagrun_failed.fetch_add(1, Ordering::Relaxed);
                            info!(dag_id = %run.dag_id, run_id = %run.run_id, ?event, "dag run failed");
                        }
                        _ => {}
                    }
                    if let Some(start) = run.start_date {
                        let seconds = (now - start).num_milliseconds() as f64 / 1000.0;
                        let success = matches!(event, RunEvent::Finish { success: true });
                        self.metrics.observe_dagrun_duration(success, seconds);
                        debug!(dag_id = %run.dag_id, seconds, "dag run duration");
                    }
                }
                total += plan.changes.len() + usize::from(plan.run_event.is_some());
                plans.push(plan);
            }
            batch.apply(&plans, now).await?;
            for ti_id in to_kill {
                self.executor.cancel(ti_id);
            }
            if count < 50 {
                break;
            }
        }
        Ok(total)
    }

    /// Claims ready task instances within limits and starts them. Returns how many started.
    async fn claim_and_launch(&mut self, now: DateTime<Utc>) -> Result<usize> {
        let open = self.executor.open_slots();
        self.metrics.executor_open_slots.store(open as i64, Ordering::Relaxed);
        if open == 0 {
            return Ok(0);
        }
        // Versions the runs use (all a scoped scheduler knows), then the latest version of each DAG.
        let mut limits: HashMap<String, u32> = self
            .specs
            .values()
            .map(|spec| (spec.dag_id.clone(), spec.max_active_tasks))
            .collect();
        limits.extend(self.dags.values().map(|d| (d.dag_id.clone(), d.spec.max_active_tasks)));
        let started_claim = Instant::now();
        let claim = self
            .store
            .claim_scheduled(&self.options.id, open, &limits, self.options.scope.as_deref(), now)
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
                    ended_at: now,
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
        let ids: Vec<i64> = claim.queued.iter().map(|ti| ti.id).collect();
        let started = self.store.start_tis(&ids, &self.options.hostname, now).await?;
        let mut runs: HashMap<i64, String> = HashMap::new();
        for ti in claim.queued {
            let Some((_, try_number)) = started.iter().find(|(id, _)| *id == ti.id) else {
                continue;
            };
            if let Some(queued_at) = ti.queued_at {
                self.metrics
                    .observe_queued_duration((now - queued_at).num_microseconds().unwrap_or(0) as f64 / 1e6);
            }
            let version_hash = match runs.get(&ti.run_pk) {
                Some(hash) => hash.clone(),
                None => {
                    let run = self.store.get_run_by_pk(ti.run_pk).await?;
                    runs.insert(ti.run_pk, run.version_hash.clone());
                    run.version_hash
                }
            };
            let dag = self.spec(&version_hash).await?;
            let execution_timeout = dag.task(&ti.task_id).and_then(|task| task.execution_timeout);
            let mut ti = ti;
            ti.try_number = *try_number;
            ti.state = TaskState::Running;
            ti.start_date = Some(now);
            ti.hostname = Some(self.options.hostname.clone());
            self.in_flight.insert(ti.id, InFlight::new(&ti));
            self.executor.launch(LaunchRequest { ti, execution_timeout });
        }
        Ok(started.len())
    }

    async fn heartbeat(&mut self) -> Result<()> {
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
    async fn handle_orphans(&mut self, now: DateTime<Utc>) -> Result<()> {
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
