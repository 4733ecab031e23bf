//! One task's keys: the common ones read here, the rest handed to its operator's argument check.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::operators::Args;
use crate::spec::DEFAULT_POOL;
use crate::trigger::TriggerRule;
use crate::yaml::{Node, Value};

use super::context::{DagCtx, Sourced};

/// Keys every task may have besides its operator's arguments.
const TASK_KEYS: &[&str] = &[
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
];

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
}

/// `default_args` that tasks inherit: those that are also task keys.
pub(super) struct TaskDefaults {
    sources: HashMap<String, Sourced>,
}

impl TaskDefaults {
    pub(super) fn read(default_args: &BTreeMap<String, Sourced>) -> Self {
        let sources = default_args
            .iter()
            .filter(|(key, _)| TASK_KEYS.contains(&key.as_str()))
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
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_".contains(c)) {
            self.error(
                file,
                node.line,
                Some(&name),
                Some("task_id"),
                "task id may only contain letters, digits, `-` and `_`",
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
                format!(
                    "unknown operator `{operator_name}`; available: {}",
                    self.registry.names().join(", ")
                ),
            );
            return None;
        };
        let canonical = def.name.to_string();
        let validate = def.validate;
        let mut args_entries = Vec::new();
        let mut common: HashMap<String, Sourced> = HashMap::new();
        for (k, v) in entries {
            let key = k.key_text().unwrap_or_default();
            if TASK_KEYS.contains(&key.as_str()) {
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
        let args = Args {
            entries: args_entries,
            task_line: node.line,
        };
        if let Err(err) = validate(&args) {
            self.error(file, err.line, task, Some(&err.key), err.message);
        }
        let args_json: serde_json::Map<String, serde_json::Value> =
            args.entries.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
        let pick = |key: &str| common.get(key).cloned().or_else(|| defaults.sources.get(key).cloned());

        let trigger_rule = pick("trigger_rule")
            .and_then(|src| self.trigger_rule(&src, task))
            .unwrap_or_default();
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
        let task_owner = pick("owner")
            .and_then(|src| self.string(&src, "owner", task))
            .unwrap_or_else(|| owner.to_string());
        if let Some(src) = pick("depends_on_past") {
            if src.node.value != Value::Bool(false) {
                self.error(
                    &src.file,
                    src.node.line,
                    task,
                    Some("depends_on_past"),
                    "`depends_on_past` is not supported by dagctl (only `false`)",
                );
            }
        }
        let group = common.get("task_group_name").and_then(|src| src.node.key_text());
        let dependencies = self.name_list(file, node.get("dependencies"), task);
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
        })
    }
}
