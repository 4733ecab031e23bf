//! The scheduler loop: one step after another (DAG files, executor events, new runs, queued runs, evaluation,
//! claims, heartbeats, orphans), sleeping while there is nothing to do. Each step's work is in its own module.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use engine::operators::OperatorRegistry;
use engine::spec::DagSpec;
use engine::store::{Change, DagRow, Store, TiRow};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing::{info, warn};
use worker::{Executor, ExecutorEvent};

use crate::dag_processor::DagProcessor;
use crate::events::FinishedNotice;
use crate::metrics::Metrics;
use crate::options::SchedulerOptions;
use crate::Result;

pub(crate) struct InFlight {
    pub(crate) dag_id: String,
    pub(crate) run_id: String,
    pub(crate) task_id: String,
    pub(crate) map_index: i64,
    pub(crate) started: Instant,
}

impl InFlight {
    pub(crate) fn new(ti: &TiRow) -> InFlight {
        InFlight {
            dag_id: ti.dag_id.clone(),
            run_id: ti.run_id.clone(),
            task_id: ti.task_id.clone(),
            map_index: ti.map_index,
            started: Instant::now(),
        }
    }
}

/// One scheduler: create with [`Scheduler::new`], run with [`Scheduler::run`].
pub struct Scheduler {
    pub(crate) store: Store,
    pub(crate) options: SchedulerOptions,
    pub(crate) registry: OperatorRegistry,
    pub(crate) executor: Arc<dyn Executor>,
    pub(crate) events: mpsc::UnboundedReceiver<ExecutorEvent>,
    pub(crate) pending_events: Vec<ExecutorEvent>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) notices: Option<mpsc::UnboundedSender<FinishedNotice>>,
    pub(crate) specs: HashMap<String, Arc<DagSpec>>,
    pub(crate) dags: HashMap<String, DagRow>,
    pub(crate) in_flight: HashMap<i64, InFlight>,
    pub(crate) next_due: HashMap<String, (String, Option<DateTime<Utc>>)>,
    pub(crate) processor: Option<DagProcessor>,
    /// When old monitor samples are next deleted.
    pub(crate) next_prune: Instant,
    /// The last claim filled every open slot: a runner that ends frees one that ready tasks may wait for.
    pub(crate) slots_full: bool,
    /// When a step last failed on a store error: other schedulers' heartbeats are not judged until they have
    /// had `job_timeout` to write again (a database blip stops every scheduler's heartbeat, not only theirs).
    pub(crate) store_failed_at: Option<Instant>,
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
        let processor = options.dags_folder.as_ref().map(|folder| {
            let processor = DagProcessor::new(
                folder,
                options.folder_options,
                registry.clone(),
                options.paused_at_creation,
            );
            match &options.git_root {
                Some(root) => processor.with_git_root(root),
                None => processor,
            }
        });
        Scheduler {
            store,
            options,
            registry,
            executor,
            events,
            pending_events: Vec::new(),
            metrics,
            notices: None,
            specs: HashMap::new(),
            dags: HashMap::new(),
            in_flight: HashMap::new(),
            next_due: HashMap::new(),
            processor,
            next_prune: Instant::now(),
            slots_full: false,
            store_failed_at: None,
        }
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
            .register_job(
                &self.options.id,
                &self.options.hostname,
                std::process::id(),
                self.options.api_url.as_deref(),
                now,
            )
            .await?;
        info!(scheduler_id = %self.options.id, "scheduler started");
        let full = self.options.scope.is_none();
        if full {
            self.handle_orphans(now).await?;
        }
        let mut next_parse = Instant::now();
        let mut next_heartbeat = Instant::now() + self.options.heartbeat_interval;
        let mut next_orphans = Instant::now() + self.options.orphan_interval;
        // Changes committed by this process or (on PostgreSQL) any other wake the loop at once; the idle
        // interval is the fallback.
        let mut changes = self.store.subscribe();
        let result = loop {
            let started = Instant::now();
            let span = tracing::debug_span!("scheduler_loop", scheduler_id = %self.options.id);
            let step = self
                .step(&mut next_parse, &mut next_heartbeat, &mut next_orphans)
                .instrument(span)
                .await;
            self.metrics.scheduler_heartbeat.fetch_add(1, Ordering::Relaxed);
            self.metrics
                .loop_duration_us
                .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
            let busy = match step {
                Ok(busy) => busy,
                Err(err) => {
                    // Nothing is lost: executor events stay pending until recorded, and every other step
                    // starts again from what the store holds.
                    warn!(error = %err, "scheduler loop failed, retrying");
                    self.store_failed_at = Some(Instant::now());
                    self.metrics.scheduler_loop_errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    false
                }
            };
            if let Some(scope) = &self.options.scope {
                let idle = self.executor.running_count() == 0;
                while let Ok(event) = self.events.try_recv() {
                    self.pending_events.push(event);
                }
                // A store error here is one more turn of the loop, not the end of the scoped runs.
                let unfinished = self.store.runs_unfinished(scope).await.unwrap_or(1);
                if idle && self.pending_events.is_empty() && unfinished == 0 {
                    break Ok(());
                }
                // A runner's end that came during the step is recorded at once (it may be the last).
                if !self.pending_events.is_empty() {
                    tokio::task::yield_now().await;
                    continue;
                }
            }
            if shutdown.is_cancelled() {
                break Ok(());
            }
            if busy {
                tokio::task::yield_now().await;
                continue;
            }
            // Wait for something a step can act on. A runner that started or log lines that came change
            // nothing to schedule: they are taken without a step, which would only hold the store's write lock
            // while the runner's own calls wait for it.
            let idle_until = tokio::time::Instant::now() + self.options.idle_interval;
            let stop = loop {
                tokio::select! {
                    event = self.events.recv() => match event {
                        Some(ExecutorEvent::Started { .. }) => {
                            self.metrics.ti_start.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        Some(event) => {
                            self.pending_events.push(event);
                            // A runner that reported its end changes nothing a step would act on: its exit
                            // is recorded here (a runner that ended without reporting fails its try, which
                            // is a store change that wakes the next step). A slot it frees is worth a step
                            // when tasks may be waiting for one; the last runner of scoped runs ends them.
                            let last = self.options.scope.is_some() && self.executor.running_count() <= 1;
                            if !self.slots_full && !last && self.drain_events().await.is_ok() {
                                continue;
                            }
                        }
                        None => {}
                    },
                    change = changes.next() => {
                        if matches!(change, Change::Log(_)) {
                            continue;
                        }
                        // One step looks at everything: the changes that came meanwhile need no step of their
                        // own.
                        changes.drain();
                    }
                    _ = tokio::time::sleep_until(idle_until) => {}
                    _ = shutdown.cancelled() => break true,
                }
                break false;
            };
            if stop {
                break Ok(());
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
        self.drain_events().await?;
        let mut busy = false;
        let now = Utc::now();
        if full && self.options.create_scheduled_runs {
            self.create_scheduled_runs(now).await?;
            busy |= self.create_asset_runs(now).await? > 0;
        }
        // Runs started and task states changed here wake the next step through the store's change events
        // (as changes made by the API or other schedulers do), so neither asks for another step at once.
        self.start_queued_runs(now).await?;
        // Another step at once only when evaluation stopped at its batch limit.
        busy |= self.evaluate(now).await?;
        // Another step at once only when the claim filled every open slot (more may be ready): a step after
        // a launch that left slots open would find nothing and only compete with the new runners' calls.
        let launched = self.claim_and_launch(now).await?;
        busy |= launched > 0 && self.slots_full;
        if Instant::now() >= *next_heartbeat {
            self.heartbeat().await?;
            *next_heartbeat = Instant::now() + self.options.heartbeat_interval;
        }
        if full && Instant::now() >= *next_orphans {
            self.handle_orphans(Utc::now()).await?;
            *next_orphans = Instant::now() + self.options.orphan_interval;
        }
        if full && Instant::now() >= self.next_prune {
            self.next_prune = Instant::now() + self.options.prune_interval;
            if let Some(retention) = self
                .options
                .sample_retention
                .and_then(|r| chrono::Duration::from_std(r).ok())
            {
                let pruned = self.store.prune_samples(Utc::now() - retention).await?;
                if pruned > 0 {
                    info!(pruned, "deleted monitor samples past their retention");
                }
            }
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

    pub(crate) async fn spec(&mut self, version_hash: &str) -> Result<Arc<DagSpec>> {
        if let Some(spec) = self.specs.get(version_hash) {
            return Ok(Arc::clone(spec));
        }
        let (spec, _, _) = self.store.dag_version(version_hash).await?;
        let spec = Arc::new(spec);
        self.specs.insert(version_hash.to_string(), Arc::clone(&spec));
        Ok(spec)
    }
}
