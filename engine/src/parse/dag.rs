//! A DAG's own keys: the layers merged, then read into a [`DagSpec`].

use std::collections::BTreeMap;

use crate::spec::DagSpec;
use crate::timetable::{parse_timezone, Schedule};
use crate::yaml::{Node, Value};

use super::context::{DagCtx, Sourced};
use super::layers::Layer;
use super::task::TaskDefaults;

/// The longest tag, as Airflow's `TAG_MAX_LEN`.
const MAX_TAG_LEN: usize = 100;

/// Keys a DAG may have.
const DAG_KEYS: &[&str] = &[
    "default_args",
    "description",
    "schedule",
    "schedule_interval",
    "start_date",
    "end_date",
    "catchup",
    "max_active_runs",
    "max_active_tasks",
    "concurrency",
    "dagrun_timeout",
    "tags",
    "params",
    "is_paused_upon_creation",
    "tasks",
    "task_groups",
    "timezone",
    "doc_md",
    "render_template_as_native_obj",
    "dag_display_name",
    "default_view",
    "orientation",
    "max_consecutive_failed_dag_runs",
    "owner_links",
];

/// Keys `default_args` may have (they apply to every task, or to the DAG where noted).
const DEFAULT_ARG_KEYS: &[&str] = &[
    "owner",
    "start_date",
    "end_date",
    "timezone",
    "retries",
    "retry_delay",
    "retry_exponential_backoff",
    "max_retry_delay",
    "execution_timeout",
    "pool",
    "pool_slots",
    "priority_weight",
    "trigger_rule",
    "do_xcom_push",
    "queue",
    "depends_on_past",
    "wait_for_downstream",
    "max_active_tis_per_dag",
    "executor_config",
    "email",
    "email_on_failure",
    "email_on_retry",
];

/// Why a DAG key Airflow or dag-factory knows cannot be had in dagctl, when it is one of those.
fn not_supported_dag_key(key: &str) -> Option<String> {
    let python = (key.starts_with("on_") || key.starts_with("sla_miss")) && key.contains("callback")
        || matches!(
            key,
            "user_defined_macros"
                | "user_defined_filters"
                | "doc_md_python_callable_name"
                | "doc_md_python_callable_file"
        );
    if python {
        return Some(format!("`{key}` names Python code, which dagctl does not run"));
    }
    match key {
        "doc_md_file_path" => Some("`doc_md_file_path` is not supported: write the markdown in `doc_md`".into()),
        "template_searchpath" => {
            Some("`template_searchpath` is not supported: templates are written in the task's fields".into())
        }
        "access_control" => {
            Some("`access_control` is not supported: roles are set per user (Admin, Op, User, Viewer)".into())
        }
        _ => None,
    }
}

impl DagCtx<'_> {
    pub(super) fn build(&mut self, layers: &[&Layer], dag_line: usize) -> Option<DagSpec> {
        if !super::task::is_airflow_key(&self.dag_id, true, 250) {
            self.error(
                self.file,
                dag_line,
                None,
                None,
                "a dag id is 1 to 250 letters, digits, `_`, `-` and `.` (Airflow's pattern)",
            );
            return None;
        }
        // Merge the layers: plain keys override, default_args merge key by key.
        let mut keys: BTreeMap<String, Sourced> = BTreeMap::new();
        let mut default_args: BTreeMap<String, Sourced> = BTreeMap::new();
        for (depth, layer) in layers.iter().enumerate() {
            let defaults_file = depth + 1 < layers.len();
            for (key, node, file) in layer.iter() {
                if let Some(why) = not_supported_dag_key(key) {
                    self.error(file, node.line, None, Some(key), why);
                    continue;
                }
                if !DAG_KEYS.contains(&key.as_str()) {
                    self.error(
                        file,
                        node.line,
                        None,
                        Some(key),
                        format!("unknown DAG key `{key}`; expected one of {}", DAG_KEYS.join(", ")),
                    );
                    continue;
                }
                if key == "default_args" {
                    let Some(entries) = node.as_map() else {
                        self.error(file, node.line, None, Some(key), "`default_args` must be a mapping");
                        continue;
                    };
                    for (k, v) in entries {
                        let name = k.key_text().unwrap_or_default();
                        if let Some(why) = super::task::not_supported_task_key(&name) {
                            self.error(file, k.line, None, Some(&format!("default_args.{name}")), why);
                            continue;
                        }
                        if !DEFAULT_ARG_KEYS.contains(&name.as_str()) {
                            // Airflow hands each operator only the default_args it takes, so other keys are
                            // harmless there; one a letter or two from a known key is a typo.
                            let key = format!("default_args.{name}");
                            match super::values::closest(&name, DEFAULT_ARG_KEYS) {
                                Some(known) => self.error(
                                    file,
                                    k.line,
                                    None,
                                    Some(&key),
                                    format!("unknown default_args key `{name}`; did you mean `{known}`?"),
                                ),
                                None => self.warn(
                                    file,
                                    k.line,
                                    &key,
                                    format!("default_args key `{name}` is ignored: no dagctl operator takes it (Airflow ignores it the same way for operators that do not)"),
                                ),
                            }
                            continue;
                        }
                        default_args.insert(
                            name,
                            Sourced {
                                node: v.clone(),
                                file: file.clone(),
                            },
                        );
                    }
                } else if let (true, "tags", Some(Value::Seq(earlier)), Value::Seq(more)) = (
                    defaults_file,
                    key.as_str(),
                    keys.get("tags").map(|s| &s.node.value),
                    &node.value,
                ) {
                    // Tags of nested defaults.yml files add up (sorted, each once), as dag-factory merges them.
                    let mut all: Vec<Node> = earlier.iter().chain(more).cloned().collect();
                    all.sort_by_key(|tag| tag.key_text());
                    all.dedup_by_key(|tag| tag.key_text());
                    keys.insert(
                        key.clone(),
                        Sourced {
                            node: Node {
                                value: Value::Seq(all),
                                ..node.clone()
                            },
                            file: file.clone(),
                        },
                    );
                } else {
                    keys.insert(
                        key.clone(),
                        Sourced {
                            node: node.clone(),
                            file: file.clone(),
                        },
                    );
                }
            }
        }
        let file = self.file.to_string();
        let get = |key: &str| keys.get(key).cloned();
        let arg = |key: &str| default_args.get(key).cloned();

        let timezone = match get("timezone").or_else(|| arg("timezone")) {
            Some(src) => match src
                .node
                .as_str()
                .map(|name| parse_timezone(name).map(|_| name.to_string()))
            {
                Some(Ok(name)) => name,
                Some(Err(message)) => {
                    self.error(&src.file, src.node.line, None, Some("timezone"), message);
                    "UTC".into()
                }
                None => {
                    self.error(
                        &src.file,
                        src.node.line,
                        None,
                        Some("timezone"),
                        "`timezone` must be a string",
                    );
                    "UTC".into()
                }
            },
            None => "UTC".into(),
        };

        let schedule = match (get("schedule"), get("schedule_interval")) {
            (Some(_), Some(old)) => {
                self.error(
                    &old.file,
                    old.node.line,
                    None,
                    Some("schedule_interval"),
                    "use either `schedule` or `schedule_interval`, not both",
                );
                Schedule::None
            }
            (Some(src), None) => self.schedule(&src, "schedule"),
            (None, Some(src)) => {
                self.warn(
                    &src.file,
                    src.node.line,
                    "schedule_interval",
                    "`schedule_interval` is deprecated; use `schedule`",
                );
                self.schedule(&src, "schedule_interval")
            }
            (None, None) => Schedule::None,
        };

        let start_date = get("start_date")
            .or_else(|| arg("start_date"))
            .and_then(|src| self.date(&src, "start_date", &timezone));
        let end_date = get("end_date")
            .or_else(|| arg("end_date"))
            .and_then(|src| self.date(&src, "end_date", &timezone));
        if let (Some(start), Some(end)) = (start_date, end_date) {
            if end < start {
                // Airflow accepts such a DAG; it is never scheduled.
                if let Some(src) = get("end_date").or_else(|| arg("end_date")) {
                    self.warn(
                        &src.file,
                        src.node.line,
                        "end_date",
                        "`end_date` is before `start_date`: no scheduled run will be made (manual runs still can)",
                    );
                }
            }
        }
        let start_date_written = get("start_date").or_else(|| arg("start_date")).is_some();
        if (schedule == Schedule::Once || schedule.is_periodic()) && !start_date_written {
            let line = get("schedule")
                .or_else(|| get("schedule_interval"))
                .map(|s| s.node.line)
                .unwrap_or(dag_line);
            self.error(
                &file,
                line,
                None,
                Some("start_date"),
                "a scheduled DAG needs a `start_date` (in the DAG or its default_args)",
            );
        }

        let description = get("description").and_then(|src| self.string(&src, "description", None));
        let doc_md = get("doc_md").and_then(|src| self.string(&src, "doc_md", None));
        let catchup = get("catchup")
            .and_then(|src| self.boolean(&src, "catchup", None))
            .unwrap_or(false);
        let render_native = get("render_template_as_native_obj")
            .and_then(|src| self.boolean(&src, "render_template_as_native_obj", None))
            .unwrap_or(false);
        let max_active_runs = get("max_active_runs")
            .and_then(|src| self.count(&src, "max_active_runs", None, 1))
            .unwrap_or(16);
        let max_active_tasks = get("max_active_tasks")
            .map(|src| (src, "max_active_tasks"))
            .or_else(|| get("concurrency").map(|src| (src, "concurrency")))
            .and_then(|(src, key)| self.count(&src, key, None, 1))
            .unwrap_or(16);
        let dagrun_timeout = get("dagrun_timeout").and_then(|src| self.duration(&src, "dagrun_timeout", None));
        let is_paused_upon_creation =
            get("is_paused_upon_creation").and_then(|src| self.boolean(&src, "is_paused_upon_creation", None));
        let tags = match get("tags") {
            None => Vec::new(),
            Some(src) => match &src.node.value {
                Value::Seq(items) => {
                    let mut tags = Vec::new();
                    for item in items {
                        match &item.value {
                            Value::Str(_) | Value::Int(_) | Value::Float(_) | Value::Bool(_) => {
                                let tag = item.key_text().unwrap_or_default();
                                if tag.chars().count() > MAX_TAG_LEN {
                                    self.error(
                                        &src.file,
                                        item.line,
                                        None,
                                        Some("tags"),
                                        format!("a tag is at most {MAX_TAG_LEN} characters (Airflow's limit), this one has {}", tag.chars().count()),
                                    );
                                } else {
                                    tags.push(tag);
                                }
                            }
                            _ => self.error(
                                &src.file,
                                item.line,
                                None,
                                Some("tags"),
                                format!("a tag must be text, got {}", item.kind()),
                            ),
                        }
                    }
                    tags
                }
                _ => {
                    self.error(
                        &src.file,
                        src.node.line,
                        None,
                        Some("tags"),
                        "`tags` must be a list of strings",
                    );
                    Vec::new()
                }
            },
        };
        let params = match get("params") {
            None => serde_json::Map::new(),
            Some(src) => match src.node.to_json() {
                serde_json::Value::Object(map) => map,
                _ => {
                    self.error(
                        &src.file,
                        src.node.line,
                        None,
                        Some("params"),
                        "`params` must be a mapping",
                    );
                    serde_json::Map::new()
                }
            },
        };
        for key in ["dag_display_name", "default_view", "orientation"] {
            if let Some(src) = get(key) {
                self.string(&src, key, None);
            }
        }
        let owner = arg("owner")
            .and_then(|src| self.string(&src, "owner", None))
            .unwrap_or_else(|| "airflow".into());
        let defaults = TaskDefaults::read(&default_args);

        let groups = match get("task_groups") {
            Some(src) => self.groups(&src),
            None => BTreeMap::new(),
        };
        let Some(tasks_src) = get("tasks") else {
            self.error(&file, dag_line, None, Some("tasks"), "a DAG needs `tasks`");
            return None;
        };
        let tasks = self.tasks(&tasks_src, &defaults, &groups, &owner);

        let default_args_json: serde_json::Map<String, serde_json::Value> = default_args
            .iter()
            .map(|(k, v)| (k.clone(), v.node.to_json()))
            .collect();
        Some(DagSpec {
            dag_id: self.dag_id.clone(),
            fileloc: file,
            description,
            schedule,
            timezone,
            start_date,
            end_date,
            catchup,
            max_active_runs,
            max_active_tasks,
            dagrun_timeout,
            tags,
            params,
            is_paused_upon_creation,
            owner,
            doc_md,
            render_template_as_native_obj: render_native,
            default_args: default_args_json,
            tasks,
        })
    }
}
