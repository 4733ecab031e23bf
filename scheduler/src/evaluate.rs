//! Evaluating runs: deciding what happens next in one DAG run, as a pure function of its DAG, its task
//! instances and the time ([`plan_run`]); and the scheduler's step that locks the runs needing evaluation,
//! plans them and writes the plans.

use std::collections::HashMap;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use engine::mapping::{map_length, UNMAPPED};
use engine::operators::OperatorRegistry;
use engine::spec::{DagSpec, TaskSpec};
use engine::state::{next_task_state, RunEvent, RunState, TaskEvent, TaskState};
use engine::store::runs::{Expansion, RunPlan, TiChange};
use engine::store::{RunRow, TiRow};
use engine::trigger::{evaluate, Decision, UpstreamCounts};
use tracing::{debug, info, warn};

use crate::main_loop::Scheduler;
use crate::Result;

/// Plans one run: schedules tasks whose trigger rules are met (completing scheduler-only operators such as
/// `empty` at once), skips or upstream-fails the others by their rules, expands mapped tasks, reschedules
/// retries that are due, times the run out, and finishes it when every task is done.
pub fn plan_run(
    dag: &DagSpec,
    run: &RunRow,
    tis: &[TiRow],
    registry: &OperatorRegistry,
    now: DateTime<Utc>,
) -> RunPlan {
    plan_run_after(dag, run, tis, &RunInputs::default(), registry, now)
}

/// What a run's plan reads besides its DAG and task instances.
#[derive(Debug, Default, Clone, Copy)]
pub struct RunInputs<'a> {
    /// The task states of the run before (for `depends_on_past` and `wait_for_downstream`).
    pub past: Option<&'a HashMap<String, TaskState>>,
    /// The run's XCom values by (task id, key), for mapped tasks that expand over an upstream's output.
    pub xcoms: Option<&'a HashMap<(String, String), serde_json::Value>>,
}

/// How often a run whose tasks wait on the run before it (`depends_on_past`) is looked at again.
const PAST_POLL: chrono::Duration = chrono::Duration::seconds(2);

/// Whether `task` may start as far as the run before says (`past`: its task states; None: no run before, or no
/// logical date): its own try there succeeded or was skipped (or it did not exist yet), and with
/// `wait_for_downstream`, so did the tasks right after it.
fn past_allows(dag: &DagSpec, task: &TaskSpec, past: Option<&HashMap<String, TaskState>>) -> bool {
    let Some(past) = past.filter(|_| task.depends_on_past) else {
        return true;
    };
    let done = |id: &str| {
        past.get(id)
            .is_none_or(|s| matches!(s, TaskState::Success | TaskState::Skipped))
    };
    if !done(&task.task_id) {
        return false;
    }
    !task.wait_for_downstream
        || dag
            .tasks
            .iter()
            .filter(|t| t.upstream.contains(&task.task_id))
            .all(|t| done(&t.task_id))
}

/// Records one state change in `plan` if `event_chain` is legal from `from`; returns the new state.
fn change(
    ti: &TiRow,
    from: TaskState,
    event_chain: &[TaskEvent],
    message: Option<String>,
    plan: &mut RunPlan,
) -> Option<TaskState> {
    let mut state = from;
    for event in event_chain {
        state = next_task_state(state, *event).ok()?;
    }
    plan.changes.push(TiChange {
        ti_id: ti.id,
        from,
        to: state,
        message,
    });
    Some(state)
}

/// [`plan_run`] with what the run before and the run's XCom say.
pub fn plan_run_after(
    dag: &DagSpec,
    run: &RunRow,
    tis: &[TiRow],
    inputs: &RunInputs<'_>,
    registry: &OperatorRegistry,
    now: DateTime<Utc>,
) -> RunPlan {
    let mut plan = RunPlan {
        run_pk: run.id,
        ..Default::default()
    };
    let mut states: HashMap<i64, TaskState> = tis.iter().map(|ti| (ti.id, ti.state)).collect();
    // The instances of each task, by map_index (one for a task that is not mapped).
    let mut by_task: HashMap<&str, Vec<&TiRow>> = HashMap::new();
    for ti in tis {
        by_task.entry(ti.task_id.as_str()).or_default().push(ti);
    }
    for instances in by_task.values_mut() {
        instances.sort_by_key(|ti| ti.map_index);
    }

    // A run past its dagrun_timeout ends now: unfinished tasks are terminated.
    if let (Some(timeout), Some(started)) = (dag.dagrun_timeout, run.start_date) {
        let deadline = started + chrono::Duration::from_std(timeout).unwrap_or_default();
        if now >= deadline {
            for ti in tis.iter().filter(|ti| !ti.state.is_finished()) {
                change(
                    ti,
                    ti.state,
                    &[TaskEvent::Terminate],
                    Some("dag run timed out".into()),
                    &mut plan,
                );
            }
            plan.run_event = Some((run.state, RunEvent::TimedOut));
            return plan;
        }
        plan.next_eval_at = Some(deadline);
    }

    let setups: std::collections::HashSet<&str> = dag
        .tasks
        .iter()
        .filter(|t| t.is_setup)
        .map(|t| t.task_id.as_str())
        .collect();
    for task in &dag.tasks {
        let Some(instances) = by_task.get(task.task_id.as_str()) else {
            continue;
        };
        // The trigger rule's decision, once per task (every instance of a mapped task has the same upstream).
        let mut decision = None;
        // A mapped task all of whose instances wait (new, or cleared) expands (again) when it may run; while
        // one of them is still stopping (cleared while running) nothing is decided for it.
        if task.is_mapped() && instances.iter().any(|ti| states[&ti.id] == TaskState::Restarting) {
            continue;
        }
        let fresh = task.is_mapped() && instances.iter().all(|ti| states[&ti.id] == TaskState::None);
        for ti in instances {
            let state = states[&ti.id];
            match state {
                TaskState::None => {
                    let decided = *decision.get_or_insert_with(|| {
                        let counts = UpstreamCounts::from_upstream(
                            task.upstream
                                .iter()
                                .flat_map(|up| {
                                    let is_setup = setups.contains(up.as_str());
                                    by_task
                                        .get(up.as_str())
                                        .into_iter()
                                        .flatten()
                                        .map(move |up_ti| (up_ti.id, is_setup))
                                })
                                .map(|(id, is_setup)| (states[&id], is_setup)),
                        );
                        evaluate(task.trigger_rule, counts)
                    });
                    let new_state = match decided {
                        Decision::Wait => None,
                        Decision::Run if !past_allows(dag, task, inputs.past) => {
                            let again = now + PAST_POLL;
                            plan.next_eval_at = Some(plan.next_eval_at.map_or(again, |at| at.min(again)));
                            None
                        }
                        Decision::Run if fresh => {
                            // As Airflow's mapped-upstream check: the tasks it maps over must be done; a failed
                            // one fails it upstream, a skipped one skips it.
                            let sources = source_states(task, &by_task, &states);
                            if sources.iter().any(|s| !s.is_finished()) {
                                break;
                            }
                            let verdict = if sources
                                .iter()
                                .any(|s| matches!(s, TaskState::Failed | TaskState::UpstreamFailed))
                            {
                                Some((TaskEvent::UpstreamFailed, None))
                            } else if sources.contains(&TaskState::Skipped) {
                                Some((
                                    TaskEvent::SkipByRule,
                                    Some("the task it maps over was skipped".to_string()),
                                ))
                            } else {
                                None
                            };
                            if let Some((event, message)) = verdict {
                                for (i, ti) in instances.iter().enumerate() {
                                    let event = if i == 0 { event } else { TaskEvent::Remove };
                                    if let Some(to) = change(ti, TaskState::None, &[event], message.clone(), &mut plan)
                                    {
                                        states.insert(ti.id, to);
                                    }
                                }
                                break;
                            }
                            for (id, to) in expand_task(task, instances, inputs, &mut plan) {
                                states.insert(id, to);
                            }
                            break;
                        }
                        Decision::Run => {
                            // A task with outlets ends through a runner, where its asset events are recorded (as
                            // Airflow does not skip EmptyOperators with outlets); so does every mapped instance.
                            let in_scheduler = task.outlets.is_empty()
                                && !task.is_mapped()
                                && registry
                                    .resolve(&task.operator)
                                    .map(|def| def.completes_in_scheduler)
                                    .unwrap_or(false);
                            if in_scheduler {
                                change(
                                    ti,
                                    state,
                                    &[TaskEvent::Schedule, TaskEvent::Queue, TaskEvent::Succeed],
                                    None,
                                    &mut plan,
                                )
                            } else {
                                change(ti, state, &[TaskEvent::Schedule], None, &mut plan)
                            }
                        }
                        Decision::Skip => change(
                            ti,
                            state,
                            &[TaskEvent::SkipByRule],
                            Some(format!("skipped by trigger rule {}", task.trigger_rule)),
                            &mut plan,
                        ),
                        Decision::UpstreamFailed => change(ti, state, &[TaskEvent::UpstreamFailed], None, &mut plan),
                    };
                    if let Some(new_state) = new_state {
                        states.insert(ti.id, new_state);
                    }
                }
                TaskState::UpForRetry => match ti.next_retry_at {
                    Some(at) if at > now => {
                        plan.next_eval_at = Some(plan.next_eval_at.map_or(at, |current| current.min(at)));
                    }
                    _ => {
                        if let Some(new_state) = change(ti, state, &[TaskEvent::Schedule], None, &mut plan) {
                            states.insert(ti.id, new_state);
                        }
                    }
                },
                _ => {}
            }
        }
    }

    let all_finished = tis.iter().all(|ti| states[&ti.id].is_finished());
    if all_finished && run.state == RunState::Running {
        // A task's outcome is its worst instance's (a mapped task failed when one of its instances did).
        let mut by_task_state: HashMap<&str, TaskState> = HashMap::new();
        for ti in tis {
            let state = states[&ti.id];
            let entry = by_task_state.entry(ti.task_id.as_str()).or_insert(state);
            if matches!(state, TaskState::Failed | TaskState::UpstreamFailed) {
                *entry = state;
            }
        }
        plan.run_event = Some((
            run.state,
            RunEvent::Finish {
                success: run_succeeded(dag, &by_task_state),
            },
        ));
    }
    plan
}

/// The states of the instances of the tasks a mapped task maps over (by XCom).
fn source_states(
    task: &TaskSpec,
    by_task: &HashMap<&str, Vec<&TiRow>>,
    states: &HashMap<i64, TaskState>,
) -> Vec<TaskState> {
    task.expand
        .iter()
        .filter_map(|arg| match &arg.source {
            engine::mapping::MapSource::Xcom { task_id } => Some(task_id.as_str()),
            engine::mapping::MapSource::Literal(_) => None,
        })
        .flat_map(|id| by_task.get(id).into_iter().flatten())
        .map(|ti| states[&ti.id])
        .filter(|s| *s != TaskState::Removed)
        .collect()
}

/// Expands a mapped task whose instances all wait and whose trigger rule lets it run: as many instances as
/// its mapped arguments have elements are scheduled (made when missing, the unexpanded one becoming instance
/// 0), extra ones from an earlier expansion are removed; none skips it and an XCom it cannot map over fails it.
/// Returns the new states of existing instances.
fn expand_task(
    task: &TaskSpec,
    instances: &[&TiRow],
    inputs: &RunInputs<'_>,
    plan: &mut RunPlan,
) -> Vec<(i64, TaskState)> {
    let xcom = |task_id: &str| {
        inputs
            .xcoms
            .and_then(|x| x.get(&(task_id.to_string(), "return_value".to_string())))
    };
    let mut out = Vec::new();
    let mut record = |ti: &TiRow, events: &[TaskEvent], message: Option<String>, plan: &mut RunPlan| {
        if let Some(to) = change(ti, TaskState::None, events, message, plan) {
            out.push((ti.id, to));
        }
    };
    // Instance 0 is the unexpanded one until it is renumbered.
    let index_of = |ti: &TiRow| ti.map_index.max(0);
    match map_length(&task.expand, &xcom) {
        Ok(0) => {
            for (i, ti) in instances.iter().enumerate() {
                if i == 0 {
                    let why = "mapped over an empty list: no instance to run".to_string();
                    record(ti, &[TaskEvent::SkipByRule], Some(why), plan);
                } else {
                    record(ti, &[TaskEvent::Remove], None, plan);
                }
            }
        }
        Ok(length) => {
            let length = length as i64;
            for ti in instances {
                if index_of(ti) < length {
                    record(ti, &[TaskEvent::Schedule], None, plan);
                } else {
                    record(
                        ti,
                        &[TaskEvent::Remove],
                        Some("not in the mapped arguments any more".into()),
                        plan,
                    );
                }
            }
            let existing: std::collections::HashSet<i64> = instances.iter().map(|ti| index_of(ti)).collect();
            plan.expansions.push(Expansion {
                renumber: instances.iter().find(|ti| ti.map_index == UNMAPPED).map(|ti| ti.id),
                template_ti: instances[0].id,
                create: (0..length).filter(|i| !existing.contains(i)).collect(),
                max_tries: i64::from(task.retries),
            });
            info!(task_id = %task.task_id, run_pk = plan.run_pk, instances = length, "mapped task expanded");
        }
        Err(why) => {
            for (i, ti) in instances.iter().enumerate() {
                if i == 0 {
                    record(ti, &[TaskEvent::MapFailed], Some(why.clone()), plan);
                } else {
                    record(ti, &[TaskEvent::Remove], None, plan);
                }
            }
        }
    }
    out
}

/// A run succeeds when none of its deciding leaves failed or was failed upstream, as Airflow decides: the
/// leaves are the tasks with no downstream other than teardowns, teardowns themselves (without
/// `on_failure_fail_dagrun`) excepted; a DAG of teardowns only is decided by its plain leaves. A plain task with
/// trigger rule `all_done` at the end is a leaf like any other: when it succeeds the run succeeds, even if a
/// task before it failed.
pub fn run_succeeded(dag: &DagSpec, states: &HashMap<&str, TaskState>) -> bool {
    let ignorable = |task: &TaskSpec| task.is_teardown && !task.on_failure_fail_dagrun;
    let mut has_downstream = std::collections::HashSet::new();
    let mut has_deciding_downstream = std::collections::HashSet::new();
    for task in &dag.tasks {
        for up in &task.upstream {
            has_downstream.insert(up.as_str());
            if !ignorable(task) {
                has_deciding_downstream.insert(up.as_str());
            }
        }
    }
    let mut leaves: Vec<&TaskSpec> = dag
        .tasks
        .iter()
        .filter(|task| !ignorable(task) && !has_deciding_downstream.contains(task.task_id.as_str()))
        .collect();
    if leaves.is_empty() {
        leaves = dag
            .tasks
            .iter()
            .filter(|task| !has_downstream.contains(task.task_id.as_str()))
            .collect();
    }
    !leaves.iter().any(|task| {
        matches!(
            states.get(task.task_id.as_str()),
            Some(TaskState::Failed | TaskState::UpstreamFailed)
        )
    })
}

impl Scheduler {
    /// Evaluates runs that changed, up to 20 batches of 50. Returns whether more may wait.
    pub(crate) async fn evaluate(&mut self, now: DateTime<Utc>) -> Result<bool> {
        if !self.store.runs_due_for_eval(now, self.options.scope.as_deref()).await? {
            return Ok(false);
        }
        for _ in 0..20 {
            let mut batch = self
                .store
                .lock_runs_for_eval(now, 50, self.options.scope.as_deref())
                .await?;
            if batch.runs.is_empty() && batch.waiting.is_empty() {
                return Ok(false);
            }
            let count = batch.runs.len() + batch.waiting.len();
            // A run whose task instances are all in flight or done has nothing to decide, unless it may time out.
            let mut idle = Vec::new();
            for run in std::mem::take(&mut batch.waiting) {
                let times_out = match self.spec(&run.version_hash).await {
                    Ok(spec) => spec.dagrun_timeout.is_some(),
                    Err(_) => true,
                };
                if times_out {
                    let tis = batch.task_instances(run.id).await?;
                    batch.runs.push((run, tis));
                } else {
                    idle.push(engine::store::runs::RunPlan {
                        run_pk: run.id,
                        ..Default::default()
                    });
                }
            }
            let loaded = batch.runs.len();
            // The task states of the run before, for runs of DAGs with `depends_on_past` tasks; the run's XCom,
            // for runs with mapped tasks that wait to expand over an upstream's output.
            let mut pasts = Vec::with_capacity(loaded);
            let mut xcoms = Vec::with_capacity(loaded);
            for i in 0..loaded {
                let (dag_id, logical_date, hash, run_pk) = {
                    let run = &batch.runs[i].0;
                    (run.dag_id.clone(), run.logical_date, run.version_hash.clone(), run.id)
                };
                let (wanted, catchup, mapping) = match self.spec(&hash).await {
                    Ok(spec) => {
                        let tis = &batch.runs[i].1;
                        let mapping = spec.tasks.iter().any(|t| {
                            t.expand
                                .iter()
                                .any(|a| matches!(a.source, engine::mapping::MapSource::Xcom { .. }))
                                && tis
                                    .iter()
                                    .any(|ti| ti.task_id == t.task_id && ti.state == TaskState::None)
                        });
                        (spec.tasks.iter().any(|t| t.depends_on_past), spec.catchup, mapping)
                    }
                    Err(_) => (false, false, false),
                };
                pasts.push(if wanted {
                    batch.previous_run_states(&dag_id, logical_date, catchup).await?
                } else {
                    None
                });
                xcoms.push(if mapping {
                    Some(batch.xcoms_of_run(run_pk).await?)
                } else {
                    None
                });
            }
            let mut plans = idle;
            let mut to_kill = Vec::new();
            for (((run, tis), past), xcom) in batch.runs.iter().zip(&pasts).zip(&xcoms) {
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
                let inputs = RunInputs {
                    past: past.as_ref(),
                    xcoms: xcom.as_ref(),
                };
                let plan = plan_run_after(&spec, run, tis, &inputs, &self.registry, now);
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
                plans.push(plan);
            }
            batch.apply(&plans, now).await?;
            for ti_id in to_kill {
                self.executor.cancel(ti_id);
            }
            if count < 50 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

#[cfg(test)]
#[path = "evaluate_tests.rs"]
mod tests;
