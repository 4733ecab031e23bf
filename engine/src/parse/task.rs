//! One task's keys: the common ones read here, the rest handed to its operator's argument check.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::operators::Args;
use crate::spec::DEFAULT_POOL;
use crate::trigger::TriggerRule;
use crate::yaml::{Node, Value};

use super::context::{DagCtx, Sourced};

/// Keys every task may have besides its operator's arguments.
pub(super) const TASK_KEYS: &[&str] = &[
    "task_id",
    "operator",
    "dependencies",
    "trigger_rule",
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "execution_timeout",
    "pool",
    "pool_slots",
    "priority_weight",
    "do_xcom_push",
    "task_group_name",
    "owner",
    "doc_md",
    "queue",
    "depends_on_past",
    "wait_for_downstream",
    "outlets",
    "max_active_tis_per_dag",
    "is_setup",
    "is_teardown",
    "as_teardown",
    "on_failure_fail_dagrun",
    "executor_config",
];

/// Why a task key Airflow knows cannot be had in dagctl, when it is one of those.
pub(super) fn not_supported_task_key(key: &str) -> Option<String> {
    match key {
        "inlets" => Some("`inlets` (asset lineage) are not supported by dagctl; `outlets` are".to_string()),
        _ if key.starts_with("python_callable") || (key.starts_with("on_") && key.contains("callback")) => {
            Some(format!("`{key}` names Python code, which dagctl does not run"))
        }
        _ => None,
    }
}

/// Task keys that describe the task itself: not inherited from `default_args`.
const OWN_KEYS: &[&str] = &["is_setup", "is_teardown", "as_teardown", "on_failure_fail_dagrun"];

pub(super) struct WrittenTask {
    pub(super) name: String,
    pub(super) line: usize,
    pub(super) operator: String,
    pub(super) args: serde_json::Map<String, serde_json::Value>,
    pub(super) dependencies: Vec<(String, usize)>,
    pub(super) group: Option<String>,
    pub(super) trigger_rule: TriggerRule,
    pub(super) retries: u32,
    pub(super) retry_delay: Duration,
    pub(super) retry_exponential_backoff: bool,
    pub(super) max_retry_delay: Option<Duration>,
    pub(super) execution_timeout: Option<Duration>,
    pub(super) pool: String,
    pub(super) pool_slots: u32,
    pub(super) priority_weight: i64,
    pub(super) do_xcom_push: bool,
    pub(super) owner: String,
    pub(super) is_setup: bool,
    pub(super) is_teardown: bool,
    pub(super) on_failure_fail_dagrun: bool,
    pub(super) depends_on_past: bool,
    pub(super) wait_for_downstream: bool,
    pub(super) outlets: Vec<String>,
    pub(super) max_active_tis_per_dag: Option<u32>,
    pub(super) executor_config: Option<crate::executor_config::ExecutorConfig>,
    /// `expand` arguments in written order; XCom sources name tasks as written (resolved with the
    /// dependencies, which they join).
    pub(super) expand: Vec<(String, WrittenSource)>,
}

/// Where a mapped argument's elements come from, as written.
#[derive(Clone)]
pub(super) enum WrittenSource {
    Literal(Vec<serde_json::Value>),
    Xcom { name: String, line: usize },
}

/// `default_args` that tasks inherit: those that are also task keys.
pub(super) struct TaskDefaults {
    sources: HashMap<String, Sourced>,
}

impl TaskDefaults {
    pub(super) fn read(default_args: &BTreeMap<String, Sourced>) -> Self {
        let sources = default_args
            .iter()
            .filter(|(key, _)| TASK_KEYS.contains(&key.as_str()) && !OWN_KEYS.contains(&key.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        TaskDefaults { sources }
    }
}

impl DagCtx<'_> {
    pub(super) fn task(
        &mut self,
        file: &str,
        key_name: Option<String>,
        node: &Node,
        defaults: &TaskDefaults,
        owner: &str,
    ) -> Option<WrittenTask> {
        let Some(entries) = node.as_map() else {
            self.error(
                file,
                node.line,
                key_name.as_deref(),
                None,
                format!("a task must be a mapping, got {}", node.kind()),
            );
            return None;
        };
        let name = match (node.get("task_id").and_then(Node::key_text), key_name) {
            (Some(id), Some(key)) if id != key => {
                self.error(
                    file,
                    node.line,
                    Some(&key),
                    Some("task_id"),
                    format!("`task_id: {id}` differs from its key `{key}`"),
                );
                return None;
            }
            (Some(id), _) | (None, Some(id)) => id,
            (None, None) => {
                self.error(
                    file,
                    node.line,
                    None,
                    Some("task_id"),
                    "a task in a list needs `task_id`",
                );
                return None;
            }
        };
        if !is_airflow_key(&name, true, 250) {
            self.error(
                file,
                node.line,
                Some(&name),
                Some("task_id"),
                "a task id is 1 to 250 letters, digits, `_`, `-` and `.` (Airflow's pattern)",
            );
            return None;
        }
        if node.get("decorator").is_some() {
            self.error(
                file,
                node.line,
                Some(name.as_str()),
                Some("decorator"),
                "Python TaskFlow tasks (`decorator:`) are not supported: dagctl runs no Python; use an operator",
            );
            return None;
        }
        let task = Some(name.as_str());
        let Some(operator_node) = node.get("operator") else {
            self.error(file, node.line, task, Some("operator"), "a task needs `operator`");
            return None;
        };
        let operator_name = operator_node.key_text().unwrap_or_default();
        let Some(def) = self.registry.resolve(&operator_name) else {
            self.error(
                file,
                operator_node.line,
                task,
                Some("operator"),
                if operator_name.rsplit('.').next().is_some_and(|class| class.contains("Python")) {
                    format!("`{operator_name}` runs Python, which dagctl does not: run a script with the bash operator instead")
                } else {
                    format!(
                        "unknown operator `{operator_name}`; available: {}",
                        self.registry.names().join(", ")
                    )
                },
            );
            return None;
        };
        let canonical = def.name.to_string();
        let validate = def.validate;
        let teardown_by_default = def.is_teardown;
        let mut args_entries = Vec::new();
        let mut common: HashMap<String, Sourced> = HashMap::new();
        let mut expand_node = None;
        let mut partial_node = None;
        for (k, v) in entries {
            let key = k.key_text().unwrap_or_default();
            if let Some(why) = not_supported_task_key(&key) {
                self.error(file, k.line, task, Some(&key), why);
                continue;
            }
            if key == "expand" {
                expand_node = Some(v);
            } else if key == "partial" {
                partial_node = Some(v);
            } else if TASK_KEYS.contains(&key.as_str()) {
                common.insert(
                    key,
                    Sourced {
                        node: v.clone(),
                        file: file.to_string(),
                    },
                );
            } else {
                args_entries.push((key, v));
            }
        }
        if let Some(partial) = partial_node {
            self.partial(file, partial, &mut args_entries, task);
        }
        let written_expand = expand_node.map(|expand| self.expand(file, expand, &args_entries, task));
        let expand = match &written_expand {
            Some((mapped, complete)) => {
                // An `expand` already refused is not checked further (one error for it, not two).
                if *complete {
                    self.validate_mapped(file, &args_entries, mapped, node.line, validate, task);
                }
                mapped
                    .iter()
                    .map(|(key, _, source)| (key.clone(), source.clone()))
                    .collect()
            }
            None => {
                let args = Args {
                    entries: args_entries.clone(),
                    task_line: node.line,
                };
                if let Err(err) = validate(&args) {
                    self.error(file, err.line, task, Some(&err.key), err.message);
                }
                Vec::new()
            }
        };
        let args_json: serde_json::Map<String, serde_json::Value> =
            args_entries.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
        let pick = |key: &str| common.get(key).cloned().or_else(|| defaults.sources.get(key).cloned());

        let roles = self.roles(file, &common, teardown_by_default, task);
        let written_rule = pick("trigger_rule").and_then(|src| self.trigger_rule(&src, task).map(|rule| (rule, src)));
        let trigger_rule = match written_rule {
            Some((rule, src))
                if roles.is_teardown && !matches!(rule, TriggerRule::AllDone | TriggerRule::AllDoneSetupSuccess) =>
            {
                self.error(
                    &src.file,
                    src.node.line,
                    task,
                    Some("trigger_rule"),
                    format!("a teardown task runs when its upstream is done: its trigger_rule is all_done_setup_success (the default) or all_done, not `{rule}`"),
                );
                rule
            }
            Some((rule, _)) => rule,
            None if roles.is_teardown => TriggerRule::AllDoneSetupSuccess,
            None => TriggerRule::default(),
        };
        let retries = pick("retries")
            .and_then(|src| self.count(&src, "retries", task, 0))
            .unwrap_or(0);
        let retry_delay = pick("retry_delay")
            .and_then(|src| self.duration(&src, "retry_delay", task))
            .unwrap_or(Duration::from_secs(300));
        let retry_exponential_backoff = pick("retry_exponential_backoff")
            .and_then(|src| self.boolean(&src, "retry_exponential_backoff", task))
            .unwrap_or(false);
        let max_retry_delay = pick("max_retry_delay").and_then(|src| self.duration(&src, "max_retry_delay", task));
        let execution_timeout =
            pick("execution_timeout").and_then(|src| self.duration(&src, "execution_timeout", task));
        if execution_timeout == Some(Duration::ZERO) {
            if let Some(src) = pick("execution_timeout") {
                self.error(
                    &src.file,
                    src.node.line,
                    task,
                    Some("execution_timeout"),
                    "`execution_timeout` must be longer than 0",
                );
            }
        }
        let pool = pick("pool")
            .and_then(|src| self.string(&src, "pool", task))
            .unwrap_or_else(|| DEFAULT_POOL.to_string());
        let pool_slots = pick("pool_slots")
            .and_then(|src| self.count(&src, "pool_slots", task, 1))
            .unwrap_or(1);
        let priority_weight = pick("priority_weight")
            .and_then(|src| self.integer(&src, "priority_weight", task))
            .unwrap_or(1);
        let do_xcom_push = pick("do_xcom_push")
            .and_then(|src| self.boolean(&src, "do_xcom_push", task))
            .unwrap_or(true);
        // Read for their shape only: dagctl has one queue, and a task's doc is not shown yet.
        for key in ["queue", "doc_md"] {
            if let Some(src) = pick(key) {
                self.string(&src, key, task);
            }
        }
        let task_owner = pick("owner")
            .and_then(|src| self.string(&src, "owner", task))
            .unwrap_or_else(|| owner.to_string());
        let depends_on_past = pick("depends_on_past")
            .and_then(|src| self.boolean(&src, "depends_on_past", task))
            .unwrap_or(false);
        let wait_for_downstream = pick("wait_for_downstream")
            .and_then(|src| self.boolean(&src, "wait_for_downstream", task))
            .unwrap_or(false);
        let outlets = pick("outlets").map(|src| self.outlets(&src, task)).unwrap_or_default();
        let max_active_tis_per_dag = pick("max_active_tis_per_dag")
            .filter(|src| src.node.value != Value::Null)
            .and_then(|src| self.count(&src, "max_active_tis_per_dag", task, 1));
        let executor_config = pick("executor_config")
            .filter(|src| src.node.value != Value::Null)
            .and_then(|src| self.executor_config(&src, task));
        let group = common.get("task_group_name").and_then(|src| src.node.key_text());
        let mut dependencies = self.name_list(file, node.get("dependencies"), task);
        dependencies.extend(roles.setups);
        // A task mapped over another's output runs after it, as Airflow's XComArg makes it.
        for (_, source) in &expand {
            if let WrittenSource::Xcom { name, line } = source {
                if !dependencies.iter().any(|(dep, _)| dep == name) {
                    dependencies.push((name.clone(), *line));
                }
            }
        }
        Some(WrittenTask {
            name,
            line: node.line,
            operator: canonical,
            args: args_json,
            dependencies,
            group,
            trigger_rule,
            retries,
            retry_delay,
            retry_exponential_backoff,
            max_retry_delay,
            execution_timeout,
            pool,
            pool_slots,
            priority_weight,
            do_xcom_push,
            owner: task_owner,
            is_setup: roles.is_setup,
            is_teardown: roles.is_teardown,
            on_failure_fail_dagrun: roles.on_failure_fail_dagrun,
            depends_on_past,
            wait_for_downstream,
            outlets,
            max_active_tis_per_dag,
            executor_config,
            expand,
        })
    }

    /// `is_setup`, `is_teardown`, `on_failure_fail_dagrun` and Airflow's `as_teardown` (`true`, or
    /// `{setups: [..], on_failure_fail_dagrun: ..}`: the setups become upstream tasks).
    fn roles(
        &mut self,
        file: &str,
        common: &HashMap<String, Sourced>,
        teardown_by_default: bool,
        task: Option<&str>,
    ) -> Roles {
        let flag = |ctx: &mut Self, key: &str| common.get(key).and_then(|src| ctx.boolean(src, key, task));
        let mut roles = Roles {
            is_setup: flag(self, "is_setup").unwrap_or(false),
            is_teardown: flag(self, "is_teardown").unwrap_or(teardown_by_default),
            on_failure_fail_dagrun: flag(self, "on_failure_fail_dagrun").unwrap_or(false),
            setups: Vec::new(),
        };
        if let Some(src) = common.get("as_teardown") {
            match &src.node.value {
                Value::Bool(b) => roles.is_teardown = *b,
                Value::Map(entries) => {
                    roles.is_teardown = true;
                    for (k, v) in entries {
                        let inner = Sourced {
                            node: v.clone(),
                            file: file.to_string(),
                        };
                        match k.key_text().as_deref() {
                            Some("setups") => roles.setups = self.name_list(file, Some(v), task),
                            Some("on_failure_fail_dagrun") => {
                                roles.on_failure_fail_dagrun =
                                    self.boolean(&inner, "on_failure_fail_dagrun", task).unwrap_or(false)
                            }
                            other => self.error(
                                file,
                                k.line,
                                task,
                                Some("as_teardown"),
                                format!(
                                    "unknown `as_teardown` key `{}`; expected setups or on_failure_fail_dagrun",
                                    other.unwrap_or("?")
                                ),
                            ),
                        }
                    }
                }
                _ => self.error(
                    file,
                    src.node.line,
                    task,
                    Some("as_teardown"),
                    format!(
                        "`as_teardown` must be true, false or a mapping of setups and on_failure_fail_dagrun, got {}",
                        src.node.kind()
                    ),
                ),
            }
        }
        let line = |key: &str| common.get(key).map(|src| src.node.line);
        if roles.is_setup && roles.is_teardown {
            let at = line("is_setup").or(line("is_teardown")).unwrap_or(0);
            self.error(
                file,
                at,
                task,
                Some("is_setup"),
                "a task cannot be both a setup and a teardown",
            );
        }
        if roles.on_failure_fail_dagrun && !roles.is_teardown {
            let at = line("on_failure_fail_dagrun").or(line("as_teardown")).unwrap_or(0);
            self.error(
                file,
                at,
                task,
                Some("on_failure_fail_dagrun"),
                "`on_failure_fail_dagrun` is for teardown tasks (add `is_teardown: true`)",
            );
        }
        roles
    }
}

/// Airflow's id patterns: `^[\w.-]+$` for task and DAG ids (`dots`), `^[\w-]+$` for task groups, `\w` being a
/// letter or digit of any script, or `_`.
pub(super) fn is_airflow_key(id: &str, dots: bool, max_len: usize) -> bool {
    !id.is_empty()
        && id.chars().count() <= max_len
        && id
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || (dots && c == '.'))
}

/// A task's setup and teardown markers.
struct Roles {
    is_setup: bool,
    is_teardown: bool,
    on_failure_fail_dagrun: bool,
    /// `as_teardown`'s setups, as dependencies.
    setups: Vec<(String, usize)>,
}
