//! The typed DAG model that parsing produces and the store keeps (as JSON, by content hash).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::timetable::Schedule;
use crate::trigger::TriggerRule;

/// Name of the pool every task uses unless it names another.
pub const DEFAULT_POOL: &str = "default_pool";

/// One DAG as defined in a file, after defaults are applied and the file is validated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DagSpec {
    pub dag_id: String,
    /// Path of the file that defines it.
    pub fileloc: String,
    pub description: Option<String>,
    pub schedule: Schedule,
    /// IANA time zone in which the schedule is evaluated.
    pub timezone: String,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub catchup: bool,
    pub max_active_runs: u32,
    pub max_active_tasks: u32,
    #[serde(with = "opt_duration_ms")]
    pub dagrun_timeout: Option<Duration>,
    pub tags: Vec<String>,
    pub params: serde_json::Map<String, serde_json::Value>,
    pub is_paused_upon_creation: Option<bool>,
    pub owner: String,
    pub doc_md: Option<String>,
    pub render_template_as_native_obj: bool,
    /// Default arguments as written (for display); already applied to each task.
    pub default_args: serde_json::Map<String, serde_json::Value>,
    /// Tasks in a topological order.
    pub tasks: Vec<TaskSpec>,
}

impl DagSpec {
    pub fn task(&self, task_id: &str) -> Option<&TaskSpec> {
        self.tasks.iter().find(|task| task.task_id == task_id)
    }

    /// Ids of the tasks that list `task_id` as upstream.
    pub fn downstream_of<'a>(&'a self, task_id: &'a str) -> impl Iterator<Item = &'a TaskSpec> + 'a {
        self.tasks
            .iter()
            .filter(move |task| task.upstream.iter().any(|up| up == task_id))
    }
}

/// One task of a DAG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub task_id: String,
    /// Canonical operator name, e.g. `bash`, `empty`, `chain.deploy_network`.
    pub operator: String,
    /// Operator arguments as written (strings are templates, rendered when the task runs).
    pub args: serde_json::Map<String, serde_json::Value>,
    pub upstream: Vec<String>,
    pub trigger_rule: TriggerRule,
    pub retries: u32,
    #[serde(with = "duration_ms")]
    pub retry_delay: Duration,
    pub retry_exponential_backoff: bool,
    #[serde(with = "opt_duration_ms")]
    pub max_retry_delay: Option<Duration>,
    #[serde(with = "opt_duration_ms")]
    pub execution_timeout: Option<Duration>,
    pub pool: String,
    pub pool_slots: u32,
    /// Weight as written; the scheduler orders by [`TaskSpec::effective_priority`].
    pub priority_weight: i64,
    /// Own weight plus the weights of all downstream tasks (Airflow's `downstream` weight rule).
    pub effective_priority: i64,
    pub do_xcom_push: bool,
    pub task_group: Option<String>,
    pub owner: String,
    /// Airflow's setup and teardown markers. A teardown (`chain.teardown` by default) runs when its upstream is
    /// done and one of its setups succeeded, and its own outcome does not decide its run's unless
    /// `on_failure_fail_dagrun`.
    #[serde(default)]
    pub is_setup: bool,
    #[serde(default)]
    pub is_teardown: bool,
    #[serde(default)]
    pub on_failure_fail_dagrun: bool,
    /// Airflow's `depends_on_past`: runs only once this task succeeded or was skipped in the run before (by
    /// logical date).
    #[serde(default, skip_serializing_if = "is_false")]
    pub depends_on_past: bool,
    /// Airflow's `wait_for_downstream` (implies `depends_on_past`): also the tasks right after this one in the
    /// run before must have succeeded or been skipped.
    #[serde(default, skip_serializing_if = "is_false")]
    pub wait_for_downstream: bool,
    /// Airflow's `max_active_tis_per_dag`: tries of this task running at once across its DAG's runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_active_tis_per_dag: Option<u32>,
    /// Asset URIs this task updates when it succeeds (Airflow's `outlets`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outlets: Vec<String>,
    /// Airflow's dynamic task mapping: the arguments this task is mapped over, in written order (see
    /// [`crate::mapping`]). Empty for a plain task.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expand: Vec<crate::mapping::MappedArg>,
    /// Where the task's tries run (Airflow's `executor_config`; the Kubernetes executor's pod overrides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_config: Option<crate::executor_config::ExecutorConfig>,
}

/// Fields added to a spec are left out while false, so DAGs that do not use them keep their version hash.
fn is_false(value: &bool) -> bool {
    !*value
}

impl TaskSpec {
    /// Whether the task is mapped (runs once per element of its `expand` arguments).
    pub fn is_mapped(&self) -> bool {
        !self.expand.is_empty()
    }

    /// The delay before retry number `try_number` + 1, given the try that just failed.
    pub fn retry_delay_after(&self, try_number: u32) -> Duration {
        let base = self.retry_delay;
        let delay = if self.retry_exponential_backoff {
            let exponent = try_number.saturating_sub(1).min(30);
            base.saturating_mul(1u32 << exponent)
        } else {
            base
        };
        let cap = self.max_retry_delay.unwrap_or(Duration::from_secs(86_400));
        delay.min(cap)
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(value.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(deserializer)?))
    }
}

mod opt_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.serialize_some(&(duration.as_millis() as u64)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(deserializer)?.map(Duration::from_millis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(delay: u64, exponential: bool, cap: Option<u64>) -> TaskSpec {
        TaskSpec {
            task_id: "t".into(),
            operator: "empty".into(),
            args: Default::default(),
            upstream: vec![],
            trigger_rule: TriggerRule::AllSuccess,
            retries: 5,
            retry_delay: Duration::from_secs(delay),
            retry_exponential_backoff: exponential,
            max_retry_delay: cap.map(Duration::from_secs),
            execution_timeout: None,
            pool: DEFAULT_POOL.into(),
            pool_slots: 1,
            priority_weight: 1,
            effective_priority: 1,
            do_xcom_push: true,
            task_group: None,
            owner: "airflow".into(),
            is_setup: false,
            is_teardown: false,
            on_failure_fail_dagrun: false,
            depends_on_past: false,
            wait_for_downstream: false,
            outlets: Vec::new(),
            expand: Vec::new(),
            max_active_tis_per_dag: None,
            executor_config: None,
        }
    }

    #[test]
    fn retry_delay_constant_and_exponential_with_cap() {
        assert_eq!(task(10, false, None).retry_delay_after(3), Duration::from_secs(10));
        let exp = task(10, true, Some(35));
        assert_eq!(exp.retry_delay_after(1), Duration::from_secs(10));
        assert_eq!(exp.retry_delay_after(2), Duration::from_secs(20));
        assert_eq!(exp.retry_delay_after(3), Duration::from_secs(35));
        assert_eq!(task(10, true, None).retry_delay_after(100), Duration::from_secs(86_400));
    }
}
