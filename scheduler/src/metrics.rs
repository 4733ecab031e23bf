//! Engine metrics under Airflow's names (dots become underscores, prefixed `dagctl_`), rendered as
//! Prometheus text. Labels are bounded: state, pool name.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters and gauges the scheduler updates as it works.
#[derive(Default)]
pub struct Metrics {
    pub scheduler_heartbeat: AtomicU64,
    pub loop_duration_us: AtomicU64,
    pub critical_section_duration_us: AtomicU64,
    pub tasks_executable: AtomicI64,
    pub tasks_starving: AtomicI64,
    pub executor_open_slots: AtomicI64,
    pub executor_running_tasks: AtomicI64,
    pub executor_queued_tasks: AtomicI64,
    pub ti_start: AtomicU64,
    pub ti_finish: AtomicU64,
    pub ti_successes: AtomicU64,
    pub ti_failures: AtomicU64,
    pub ti_skipped: AtomicU64,
    pub ti_retries: AtomicU64,
    pub ti_adopted: AtomicU64,
    pub ti_orphans_failed: AtomicU64,
    /// Tries of this scheduler found lost (not running here, no end recorded) and failed or requeued.
    pub ti_reconciled: AtomicU64,
    /// Scheduler loop steps that failed (store errors); the loop retries.
    pub scheduler_loop_errors: AtomicU64,
    pub dagrun_success: AtomicU64,
    pub dagrun_failed: AtomicU64,
    pub dagrun_created: AtomicU64,
    pub dagrun_missed_schedules: AtomicU64,
    pub dag_processing_import_errors: AtomicI64,
    pub dag_processing_total_parse_time_us: AtomicU64,
    pub dag_processing_dags: AtomicI64,
    /// Sum and count of task durations, seconds.
    task_duration: Mutex<(f64, u64)>,
    /// Sum and count of how long task instances waited from being scheduled (ready) to their try's start,
    /// seconds (a claim queues and starts in one step, so this is Airflow's wait in `scheduled` and `queued`).
    queued_duration: Mutex<(f64, u64)>,
    dagrun_duration_success: Mutex<(f64, u64)>,
    dagrun_duration_failed: Mutex<(f64, u64)>,
    /// Scheduled runs: start minus the end of their data interval, seconds.
    dagrun_schedule_delay: Mutex<(f64, u64)>,
}

impl Metrics {
    pub fn observe_task_duration(&self, seconds: f64) {
        if let Ok(mut d) = self.task_duration.lock() {
            d.0 += seconds;
            d.1 += 1;
        }
    }

    pub fn observe_queued_duration(&self, seconds: f64) {
        if let Ok(mut d) = self.queued_duration.lock() {
            d.0 += seconds;
            d.1 += 1;
        }
    }

    pub fn observe_dagrun_duration(&self, success: bool, seconds: f64) {
        let lock = if success {
            &self.dagrun_duration_success
        } else {
            &self.dagrun_duration_failed
        };
        if let Ok(mut d) = lock.lock() {
            d.0 += seconds;
            d.1 += 1;
        }
    }

    pub fn observe_schedule_delay(&self, seconds: f64) {
        if let Ok(mut d) = self.dagrun_schedule_delay.lock() {
            d.0 += seconds;
            d.1 += 1;
        }
    }

    /// Prometheus exposition text; `pools` adds `pool.*` gauges (name, open, running, queued slots).
    pub fn render(&self, pools: &[(String, i64, i64, i64)], ti_states: &[(String, i64)]) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP dagctl_{name} {help}\n# TYPE dagctl_{name} counter\ndagctl_{name} {value}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, value: f64| {
            let _ = writeln!(
                out,
                "# HELP dagctl_{name} {help}\n# TYPE dagctl_{name} gauge\ndagctl_{name} {value}"
            );
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let loadi = |a: &AtomicI64| a.load(Ordering::Relaxed) as f64;
        counter(
            &mut out,
            "scheduler_heartbeat",
            "Scheduler loop iterations.",
            load(&self.scheduler_heartbeat),
        );
        gauge(
            &mut out,
            "scheduler_scheduler_loop_duration_seconds",
            "Duration of the last scheduler loop.",
            load(&self.loop_duration_us) as f64 / 1e6,
        );
        gauge(
            &mut out,
            "scheduler_critical_section_duration_seconds",
            "Duration of the last claim of task instances.",
            load(&self.critical_section_duration_us) as f64 / 1e6,
        );
        gauge(
            &mut out,
            "scheduler_tasks_executable",
            "Task instances claimed in the last loop.",
            loadi(&self.tasks_executable),
        );
        gauge(
            &mut out,
            "scheduler_tasks_starving",
            "Task instances that could not run for lack of a pool.",
            loadi(&self.tasks_starving),
        );
        gauge(
            &mut out,
            "executor_open_slots",
            "Free executor slots.",
            loadi(&self.executor_open_slots),
        );
        gauge(
            &mut out,
            "executor_running_tasks",
            "Tries the executor is running.",
            loadi(&self.executor_running_tasks),
        );
        gauge(
            &mut out,
            "executor_queued_tasks",
            "Tries handed to the executor and not yet started.",
            loadi(&self.executor_queued_tasks),
        );
        counter(&mut out, "ti_start", "Task tries started.", load(&self.ti_start));
        counter(&mut out, "ti_finish", "Task tries finished.", load(&self.ti_finish));
        counter(
            &mut out,
            "ti_successes",
            "Task instances that succeeded.",
            load(&self.ti_successes),
        );
        counter(
            &mut out,
            "ti_failures",
            "Task instances that failed for good.",
            load(&self.ti_failures),
        );
        counter(
            &mut out,
            "ti_skipped",
            "Task instances that skipped themselves.",
            load(&self.ti_skipped),
        );
        counter(
            &mut out,
            "ti_retries",
            "Task tries that failed and will retry.",
            load(&self.ti_retries),
        );
        counter(
            &mut out,
            "ti_adopted",
            "Running tries adopted from a scheduler that died.",
            load(&self.ti_adopted),
        );
        counter(
            &mut out,
            "task_instances_without_heartbeats_killed",
            "Orphaned tries failed because their process was gone.",
            load(&self.ti_orphans_failed),
        );
        counter(
            &mut out,
            "ti_reconciled",
            "Tries this scheduler lost track of (after a store error) and failed by policy or requeued.",
            load(&self.ti_reconciled),
        );
        counter(
            &mut out,
            "scheduler_loop_errors",
            "Scheduler loop steps that failed on a store error and were retried.",
            load(&self.scheduler_loop_errors),
        );
        counter(
            &mut out,
            "dagrun_success",
            "DAG runs that succeeded.",
            load(&self.dagrun_success),
        );
        counter(
            &mut out,
            "dagrun_failed",
            "DAG runs that failed.",
            load(&self.dagrun_failed),
        );
        counter(
            &mut out,
            "dagrun_created",
            "DAG runs created by the scheduler.",
            load(&self.dagrun_created),
        );
        counter(
            &mut out,
            "dagrun_missed_schedules",
            "Cron intervals skipped because catchup is off.",
            load(&self.dagrun_missed_schedules),
        );
        gauge(
            &mut out,
            "dag_processing_import_errors",
            "DAG files with errors.",
            loadi(&self.dag_processing_import_errors),
        );
        gauge(
            &mut out,
            "dag_processing_total_parse_time_seconds",
            "Time to read the DAGs folder.",
            load(&self.dag_processing_total_parse_time_us) as f64 / 1e6,
        );
        gauge(
            &mut out,
            "dag_processing_dags",
            "DAGs loaded.",
            loadi(&self.dag_processing_dags),
        );
        for (name, lock) in [
            ("task_duration_seconds", &self.task_duration),
            ("task_queued_duration_seconds", &self.queued_duration),
        ] {
            let (sum, count) = lock.lock().map(|d| *d).unwrap_or_default();
            let _ = writeln!(
                out,
                "# TYPE dagctl_{name} summary\ndagctl_{name}_sum {sum}\ndagctl_{name}_count {count}"
            );
        }
        if !pools.is_empty() {
            let _ = writeln!(out, "# TYPE dagctl_pool_open_slots gauge");
            for (pool, open, _, _) in pools {
                let _ = writeln!(out, "dagctl_pool_open_slots{{pool=\"{}\"}} {open}", escape(pool));
            }
            let _ = writeln!(out, "# TYPE dagctl_pool_running_slots gauge");
            for (pool, _, running, _) in pools {
                let _ = writeln!(out, "dagctl_pool_running_slots{{pool=\"{}\"}} {running}", escape(pool));
            }
            let _ = writeln!(out, "# TYPE dagctl_pool_queued_slots gauge");
            for (pool, _, _, queued) in pools {
                let _ = writeln!(out, "dagctl_pool_queued_slots{{pool=\"{}\"}} {queued}", escape(pool));
            }
        }
        if !ti_states.is_empty() {
            let _ = writeln!(out, "# TYPE dagctl_task_instances gauge");
            for (state, count) in ti_states {
                let _ = writeln!(out, "dagctl_task_instances{{state=\"{state}\"}} {count}");
            }
        }
        out
    }
}

fn escape(label: &str) -> String {
    label.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}
