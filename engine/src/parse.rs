//! DAG files in dag-factory's shape, read into [`DagSpec`]s with errors that name file, line, DAG, task and key.
//!
//! Layers, lowest first: every `defaults.yml` from the DAGs folder down to the file's folder, the file's
//! `default:` block, the DAG's own keys. `default_args` merge key by key across layers.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::duration::duration_from_node;
use crate::error::{DagFileError, Location};
use crate::graph;
use crate::operators::{Args, OperatorRegistry};
use crate::spec::{DagSpec, TaskSpec, DEFAULT_POOL};
use crate::timetable::{parse_datetime, parse_timezone, Schedule};
use crate::trigger::TriggerRule;
use crate::yaml::{self, Node, Value};

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
    "email",
    "email_on_failure",
    "email_on_retry",
];

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

const GROUP_KEYS: &[&str] = &[
    "group_name",
    "tooltip",
    "dependencies",
    "parent_group_name",
    "prefix_group_id",
];

/// The outcome of reading one DAG file.
#[derive(Debug, Clone, Default)]
pub struct ParsedFile {
    pub path: String,
    pub dags: Vec<DagSpec>,
    pub errors: Vec<DagFileError>,
    pub warnings: Vec<DagFileError>,
}

/// Reads every `*.yaml` / `*.yml` DAG file under `folder` (recursively; `defaults.yml` files are layers, not
/// DAGs). One broken file never hides the others. DAG ids defined twice are errors in the later file.
pub fn load_folder(folder: &Path, registry: &OperatorRegistry) -> Vec<ParsedFile> {
    let mut files = Vec::new();
    collect_files(folder, &mut files);
    files.sort();
    let mut out: Vec<ParsedFile> = files.iter().map(|path| parse_path(folder, path, registry)).collect();
    let mut seen: HashMap<String, String> = HashMap::new();
    for parsed in &mut out {
        let mut duplicates = Vec::new();
        for dag in &parsed.dags {
            if let Some(first) = seen.get(&dag.dag_id) {
                duplicates.push(DagFileError {
                    location: Location {
                        file: parsed.path.clone(),
                        dag_id: Some(dag.dag_id.clone()),
                        ..Default::default()
                    },
                    message: format!("dag `{}` is already defined in {first}", dag.dag_id),
                });
            } else {
                seen.insert(dag.dag_id.clone(), parsed.path.clone());
            }
        }
        if !duplicates.is_empty() {
            parsed.errors.extend(duplicates);
            parsed.dags.clear();
        }
    }
    out
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect_files(&path, out);
        } else if (name.ends_with(".yaml") || name.ends_with(".yml"))
            && name != "defaults.yml"
            && name != "defaults.yaml"
        {
            out.push(path);
        }
    }
}

/// Reads one file, with the `defaults.yml` layers between `root` and it.
pub fn parse_path(root: &Path, path: &Path, registry: &OperatorRegistry) -> ParsedFile {
    let display = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) => {
            return ParsedFile {
                path: display.clone(),
                errors: vec![file_error(&display, None, format!("cannot read file: {err}"))],
                ..Default::default()
            }
        }
    };
    let mut layers = Vec::new();
    let mut errors = Vec::new();
    for defaults in defaults_files(root, path) {
        match std::fs::read_to_string(&defaults)
            .map_err(|err| err.to_string())
            .and_then(|t| yaml::parse_str(&t).map_err(|err| format!("line {}: {}", err.line, err.message)))
        {
            Ok(docs) => layers.extend(docs.into_iter().map(|node| (defaults.display().to_string(), node))),
            Err(message) => errors.push(file_error(&defaults.display().to_string(), None, message)),
        }
    }
    let mut parsed = parse_text(&display, &text, &layers, registry);
    parsed.errors.splice(0..0, errors);
    if !parsed.errors.is_empty() {
        parsed.dags.clear();
    }
    parsed
}

fn defaults_files(root: &Path, path: &Path) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    let mut current = path.parent();
    while let Some(dir) = current {
        dirs.push(dir.to_path_buf());
        if dir == root || !dir.starts_with(root) {
            break;
        }
        current = dir.parent();
    }
    dirs.reverse();
    dirs.into_iter()
        .flat_map(|dir| [dir.join("defaults.yml"), dir.join("defaults.yaml")])
        .filter(|candidate| candidate.is_file())
        .collect()
}

fn file_error(file: &str, line: Option<usize>, message: impl Into<String>) -> DagFileError {
    DagFileError {
        location: Location {
            file: file.to_string(),
            line,
            ..Default::default()
        },
        message: message.into(),
    }
}

/// Reads DAGs from the text of one file. `layers` are `defaults.yml` documents (lowest first) with their paths.
pub fn parse_text(file: &str, text: &str, layers: &[(String, Node)], registry: &OperatorRegistry) -> ParsedFile {
    let mut parsed = ParsedFile {
        path: file.to_string(),
        ..Default::default()
    };
    let docs = match yaml::parse_str(text) {
        Ok(docs) => docs,
        Err(err) => {
            parsed.errors.push(file_error(
                file,
                Some(err.line),
                format!("invalid YAML: {}", err.message),
            ));
            return parsed;
        }
    };
    let mut base: Vec<Layer> = Vec::new();
    for (layer_file, node) in layers {
        match layer_entries(layer_file, node) {
            Ok(entries) => base.push(entries),
            Err(err) => parsed.errors.push(*err),
        }
    }
    for doc in &docs {
        if doc.value == Value::Null {
            continue;
        }
        let Some(entries) = doc.as_map() else {
            parsed.errors.push(file_error(
                file,
                Some(doc.line),
                format!("expected a mapping of dag ids to DAGs, got {}", doc.kind()),
            ));
            continue;
        };
        let mut file_default: Option<Layer> = None;
        if let Some(default) = doc.get("default") {
            match layer_entries(file, default) {
                Ok(entries) => file_default = Some(entries),
                Err(err) => parsed.errors.push(*err),
            }
        }
        for (key, value) in entries {
            let Some(dag_id) = key.key_text() else {
                parsed
                    .errors
                    .push(file_error(file, Some(key.line), "a dag id must be a string"));
                continue;
            };
            if dag_id == "default" {
                continue;
            }
            let mut stack: Vec<&Layer> = base.iter().collect();
            if let Some(layer) = &file_default {
                stack.push(layer);
            }
            let own = match layer_entries(file, value) {
                Ok(entries) => entries,
                Err(mut err) => {
                    err.location.dag_id = Some(dag_id.clone());
                    parsed.errors.push(*err);
                    continue;
                }
            };
            stack.push(&own);
            let mut ctx = DagCtx {
                file,
                dag_id: dag_id.clone(),
                errors: Vec::new(),
                warnings: Vec::new(),
                registry,
            };
            if let Some(dag) = ctx.build(&stack, key.line) {
                if ctx.errors.is_empty() {
                    parsed.dags.push(dag);
                }
            }
            parsed.errors.extend(ctx.errors);
            parsed.warnings.extend(ctx.warnings);
        }
    }
    parsed
}

/// One layer of DAG-level keys, and the file each key came from.
type Layer = Vec<(String, Node, String)>;

fn layer_entries(file: &str, node: &Node) -> Result<Layer, Box<DagFileError>> {
    let Some(entries) = node.as_map() else {
        return Err(Box::new(file_error(
            file,
            Some(node.line),
            format!("expected a mapping, got {}", node.kind()),
        )));
    };
    Ok(entries
        .iter()
        .map(|(k, v)| (k.key_text().unwrap_or_default(), v.clone(), file.to_string()))
        .collect())
}

struct DagCtx<'a> {
    file: &'a str,
    dag_id: String,
    errors: Vec<DagFileError>,
    warnings: Vec<DagFileError>,
    registry: &'a OperatorRegistry,
}

/// A value with where it was written.
#[derive(Clone)]
struct Sourced {
    node: Node,
    file: String,
}

impl DagCtx<'_> {
    fn error(&mut self, file: &str, line: usize, task_id: Option<&str>, key: Option<&str>, message: impl Into<String>) {
        self.errors.push(DagFileError {
            location: Location {
                file: file.to_string(),
                line: Some(line),
                dag_id: Some(self.dag_id.clone()),
                task_id: task_id.map(str::to_string),
                key: key.map(str::to_string),
            },
            message: message.into(),
        });
    }

    fn warn(&mut self, file: &str, line: usize, key: &str, message: impl Into<String>) {
        self.warnings.push(DagFileError {
            location: Location {
                file: file.to_string(),
                line: Some(line),
                dag_id: Some(self.dag_id.clone()),
                key: Some(key.to_string()),
                ..Default::default()
            },
            message: message.into(),
        });
    }

    fn build(&mut self, layers: &[&Layer], dag_line: usize) -> Option<DagSpec> {
        if self.dag_id.is_empty()
            || !self
                .dag_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            self.error(
                self.file,
                dag_line,
                None,
                None,
                "dag id may only contain letters, digits, `-`, `_` and `.`",
            );
            return None;
        }
        // Merge the layers: plain keys override, default_args merge key by key.
        let mut keys: BTreeMap<String, Sourced> = BTreeMap::new();
        let mut default_args: BTreeMap<String, Sourced> = BTreeMap::new();
        for layer in layers {
            for (key, node, file) in layer.iter() {
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
                        if !DEFAULT_ARG_KEYS.contains(&name.as_str()) {
                            self.error(
                                file,
                                k.line,
                                None,
                                Some(&format!("default_args.{name}")),
                                format!(
                                    "unknown default_args key `{name}`; expected one of {}",
                                    DEFAULT_ARG_KEYS.join(", ")
                                ),
                            );
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
                if let Some(src) = get("end_date").or_else(|| arg("end_date")) {
                    self.error(
                        &src.file,
                        src.node.line,
                        None,
                        Some("end_date"),
                        "`end_date` is before `start_date`",
                    );
                }
            }
        }
        if matches!(schedule, Schedule::Once | Schedule::Cron { .. }) && start_date.is_none() {
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
                Value::Seq(items) => items.iter().filter_map(|item| item.key_text()).collect(),
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
        if let Some(src) = arg("depends_on_past") {
            if src.node.value != Value::Bool(false) {
                self.error(
                    &src.file,
                    src.node.line,
                    None,
                    Some("default_args.depends_on_past"),
                    "`depends_on_past` is not supported by dagctl (only `false`)",
                );
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

    fn schedule(&mut self, src: &Sourced, key: &str) -> Schedule {
        let text = match &src.node.value {
            Value::Null => None,
            Value::Str(text) => Some(text.as_str()),
            _ => {
                self.error(
                    &src.file,
                    src.node.line,
                    None,
                    Some(key),
                    format!("`{key}` must be a cron string, a preset like @daily, or null"),
                );
                return Schedule::None;
            }
        };
        Schedule::parse(text).unwrap_or_else(|message| {
            self.error(&src.file, src.node.line, None, Some(key), message);
            Schedule::None
        })
    }

    fn date(&mut self, src: &Sourced, key: &str, tz: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        let text = match &src.node.value {
            Value::Str(text) => text.clone(),
            _ => {
                self.error(
                    &src.file,
                    src.node.line,
                    None,
                    Some(key),
                    format!("`{key}` must be a date like 2026-11-01, got {}", src.node.kind()),
                );
                return None;
            }
        };
        parse_datetime(&text, tz)
            .map_err(|message| self.error(&src.file, src.node.line, None, Some(key), message))
            .ok()
    }

    fn string(&mut self, src: &Sourced, key: &str, task: Option<&str>) -> Option<String> {
        match &src.node.value {
            Value::Str(text) => Some(text.clone()),
            Value::Null => None,
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => src.node.key_text(),
            _ => self.reject(
                src,
                task,
                key,
                format!("`{key}` must be a string, got {}", src.node.kind()),
            ),
        }
    }

    /// Records an error about `key` at `src` and yields nothing.
    fn reject<T>(&mut self, src: &Sourced, task: Option<&str>, key: &str, message: impl Into<String>) -> Option<T> {
        self.error(&src.file, src.node.line, task, Some(key), message);
        None
    }

    fn boolean(&mut self, src: &Sourced, key: &str, task: Option<&str>) -> Option<bool> {
        match &src.node.value {
            Value::Bool(b) => Some(*b),
            _ => self.reject(
                src,
                task,
                key,
                format!("`{key}` must be true or false, got {}", src.node.kind()),
            ),
        }
    }

    fn count(&mut self, src: &Sourced, key: &str, task: Option<&str>, min: i64) -> Option<u32> {
        match &src.node.value {
            Value::Int(n) if *n >= min && *n <= i64::from(u32::MAX) => Some(*n as u32),
            _ => self.reject(src, task, key, format!("`{key}` must be a whole number >= {min}")),
        }
    }

    fn integer(&mut self, src: &Sourced, key: &str, task: Option<&str>) -> Option<i64> {
        match &src.node.value {
            Value::Int(n) => Some(*n),
            _ => self.reject(src, task, key, format!("`{key}` must be a whole number")),
        }
    }

    fn duration(&mut self, src: &Sourced, key: &str, task: Option<&str>) -> Option<Duration> {
        duration_from_node(&src.node)
            .map_err(|message| self.error(&src.file, src.node.line, task, Some(key), message))
            .ok()
    }

    fn trigger_rule(&mut self, src: &Sourced, task: Option<&str>) -> Option<TriggerRule> {
        let Some(text) = src.node.as_str() else {
            self.error(
                &src.file,
                src.node.line,
                task,
                Some("trigger_rule"),
                "`trigger_rule` must be a string",
            );
            return None;
        };
        text.parse::<TriggerRule>()
            .map_err(|err| self.error(&src.file, src.node.line, task, Some("trigger_rule"), err.to_string()))
            .ok()
    }

    fn groups(&mut self, src: &Sourced) -> BTreeMap<String, Group> {
        let mut out = BTreeMap::new();
        let items: Vec<(Option<String>, &Node)> = match &src.node.value {
            Value::Seq(items) => items.iter().map(|item| (None, item)).collect(),
            Value::Map(entries) => entries.iter().map(|(k, v)| (k.key_text(), v)).collect(),
            _ => {
                self.error(
                    &src.file,
                    src.node.line,
                    None,
                    Some("task_groups"),
                    "`task_groups` must be a list or a mapping",
                );
                return out;
            }
        };
        for (key_name, node) in items {
            let Some(entries) = node.as_map() else {
                self.error(
                    &src.file,
                    node.line,
                    None,
                    Some("task_groups"),
                    "a task group must be a mapping",
                );
                continue;
            };
            for (k, _) in entries {
                let name = k.key_text().unwrap_or_default();
                if !GROUP_KEYS.contains(&name.as_str()) {
                    self.error(
                        &src.file,
                        k.line,
                        None,
                        Some(&name),
                        format!(
                            "unknown task group key `{name}`; expected one of {}",
                            GROUP_KEYS.join(", ")
                        ),
                    );
                }
            }
            let name = node.get("group_name").and_then(Node::key_text).or(key_name);
            let Some(name) = name else {
                self.error(
                    &src.file,
                    node.line,
                    None,
                    Some("group_name"),
                    "a task group needs `group_name`",
                );
                continue;
            };
            let dependencies = self.name_list(&src.file, node.get("dependencies"), None);
            let parent = node.get("parent_group_name").and_then(Node::key_text);
            let prefix = !matches!(node.get("prefix_group_id").map(|n| &n.value), Some(Value::Bool(false)));
            if out.contains_key(&name) {
                self.error(
                    &src.file,
                    node.line,
                    None,
                    Some("group_name"),
                    format!("task group `{name}` is defined twice"),
                );
            }
            out.insert(
                name,
                Group {
                    line: node.line,
                    dependencies,
                    parent,
                    prefix,
                },
            );
        }
        let names: Vec<String> = out.keys().cloned().collect();
        for name in names {
            let (line, parent) = (out[&name].line, out[&name].parent.clone());
            if let Some(parent) = parent {
                if !out.contains_key(&parent) {
                    self.error(
                        &src.file,
                        line,
                        None,
                        Some("parent_group_name"),
                        format!("unknown parent task group `{parent}`"),
                    );
                    if let Some(group) = out.get_mut(&name) {
                        group.parent = None;
                    }
                }
            }
        }
        out
    }

    fn name_list(&mut self, file: &str, node: Option<&Node>, task: Option<&str>) -> Vec<(String, usize)> {
        let Some(node) = node else { return Vec::new() };
        match &node.value {
            Value::Null => Vec::new(),
            Value::Seq(items) => items
                .iter()
                .filter_map(|item| match item.key_text() {
                    Some(name) if !matches!(item.value, Value::Seq(_) | Value::Map(_)) => Some((name, item.line)),
                    _ => {
                        self.error(
                            file,
                            item.line,
                            task,
                            Some("dependencies"),
                            "a dependency must be a task or task group name",
                        );
                        None
                    }
                })
                .collect(),
            Value::Str(name) => vec![(name.clone(), node.line)],
            _ => {
                self.error(
                    file,
                    node.line,
                    task,
                    Some("dependencies"),
                    "`dependencies` must be a list of task names",
                );
                Vec::new()
            }
        }
    }

    fn tasks(
        &mut self,
        src: &Sourced,
        defaults: &TaskDefaults,
        groups: &BTreeMap<String, Group>,
        owner: &str,
    ) -> Vec<TaskSpec> {
        let file = src.file.clone();
        let items: Vec<(Option<String>, &Node)> = match &src.node.value {
            Value::Seq(items) => items.iter().map(|item| (None, item)).collect(),
            Value::Map(entries) => entries.iter().map(|(k, v)| (k.key_text(), v)).collect(),
            _ => {
                self.error(
                    &file,
                    src.node.line,
                    None,
                    Some("tasks"),
                    "`tasks` must be a list or a mapping of task ids to tasks",
                );
                return Vec::new();
            }
        };
        if items.is_empty() {
            self.error(
                &file,
                src.node.line,
                None,
                Some("tasks"),
                "a DAG needs at least one task",
            );
        }
        // First pass: each task as written.
        let mut written: Vec<WrittenTask> = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        for (key_name, node) in items {
            let Some(task) = self.task(&file, key_name, node, defaults, owner) else {
                continue;
            };
            if let Some(group) = &task.group {
                if !groups.contains_key(group) {
                    self.error(
                        &file,
                        node.line,
                        Some(&task.name),
                        Some("task_group_name"),
                        format!("unknown task group `{group}`"),
                    );
                }
            }
            if let Some(first) = names.get(&task.name) {
                let first_line = written[*first].line;
                self.error(
                    &file,
                    node.line,
                    Some(&task.name),
                    Some("task_id"),
                    format!("task `{}` is defined twice (first at line {first_line})", task.name),
                );
                continue;
            }
            if groups.contains_key(&task.name) {
                self.error(
                    &file,
                    node.line,
                    Some(&task.name),
                    Some("task_id"),
                    format!("`{}` names both a task and a task group", task.name),
                );
            }
            names.insert(task.name.clone(), written.len());
            written.push(task);
        }
        // Final ids: group prefixes, like Airflow's `group.task`.
        let group_path = |group: &str| -> Vec<String> {
            let mut path = Vec::new();
            let mut current = Some(group.to_string());
            let mut guard = 0;
            while let Some(name) = current {
                guard += 1;
                if guard > 64 {
                    break;
                }
                let parent = groups.get(&name).and_then(|g| g.parent.clone());
                if groups.get(&name).map(|g| g.prefix).unwrap_or(true) {
                    path.push(name);
                }
                current = parent;
            }
            path.reverse();
            path
        };
        let final_ids: Vec<String> = written
            .iter()
            .map(|task| match &task.group {
                Some(group) if groups.contains_key(group) => {
                    let mut parts = group_path(group);
                    parts.push(task.name.clone());
                    parts.join(".")
                }
                _ => task.name.clone(),
            })
            .collect();
        // Which tasks each group holds, nested groups included.
        let in_group = |task: &WrittenTask, group: &str| -> bool {
            let mut current = task.group.clone();
            let mut guard = 0;
            while let Some(name) = current {
                guard += 1;
                if name == group {
                    return true;
                }
                if guard > 64 {
                    return false;
                }
                current = groups.get(&name).and_then(|g| g.parent.clone());
            }
            false
        };
        let members: BTreeMap<&str, Vec<usize>> = groups
            .keys()
            .map(|group| {
                (
                    group.as_str(),
                    (0..written.len()).filter(|&i| in_group(&written[i], group)).collect(),
                )
            })
            .collect();
        // Upstream names as written, per task; then expand groups.
        let mut upstream: Vec<Vec<(String, usize)>> = written.iter().map(|task| task.dependencies.clone()).collect();
        for (group, spec) in groups {
            let inside = &members[group.as_str()];
            for &i in inside {
                let has_upstream_inside = upstream[i].iter().any(|(name, _)| {
                    names.get(name).map(|j| inside.contains(j)).unwrap_or(false)
                        || members
                            .get(name.as_str())
                            .map(|m| m.iter().all(|j| inside.contains(j)) && !m.is_empty())
                            .unwrap_or(false)
                });
                if !has_upstream_inside {
                    upstream[i].extend(spec.dependencies.iter().cloned());
                }
            }
        }
        let mut resolved: Vec<Vec<String>> = Vec::new();
        for (i, deps) in upstream.iter().enumerate() {
            let mut ids: Vec<String> = Vec::new();
            for (name, line) in deps {
                if let Some(&j) = names.get(name) {
                    ids.push(final_ids[j].clone());
                } else if let Some(inside) = members.get(name.as_str()) {
                    // A group as upstream means its leaves: members no other member depends on.
                    for &j in inside {
                        let is_leaf = !inside
                            .iter()
                            .any(|&k| written[k].dependencies.iter().any(|(dep, _)| dep == &written[j].name));
                        if is_leaf && j != i {
                            ids.push(final_ids[j].clone());
                        }
                    }
                } else {
                    let known: Vec<&str> = written.iter().map(|t| t.name.as_str()).collect();
                    self.error(
                        &file,
                        *line,
                        Some(&written[i].name),
                        Some("dependencies"),
                        format!("unknown dependency `{name}`; tasks in this DAG: {}", known.join(", ")),
                    );
                }
            }
            ids.sort();
            ids.dedup();
            resolved.push(ids);
        }
        let edges: Vec<(String, Vec<String>)> = final_ids.iter().cloned().zip(resolved.iter().cloned()).collect();
        let order = match graph::topological_order(&edges) {
            Ok(order) => order,
            Err(cycle) => {
                let line = cycle
                    .first()
                    .and_then(|id| final_ids.iter().position(|f| f == id))
                    .map(|i| written[i].line)
                    .unwrap_or(src.node.line);
                let mut path = cycle.clone();
                if let Some(first) = cycle.first() {
                    path.push(first.clone());
                }
                self.error(
                    &file,
                    line,
                    cycle.first().map(String::as_str),
                    Some("dependencies"),
                    format!("dependency cycle: {}", path.join(" -> ")),
                );
                return Vec::new();
            }
        };
        let weights = graph::downstream_weights(
            &final_ids
                .iter()
                .zip(&resolved)
                .zip(&written)
                .map(|((id, up), task)| (id.clone(), up.clone(), task.priority_weight))
                .collect::<Vec<_>>(),
        );
        let position: HashMap<&String, usize> = final_ids.iter().enumerate().map(|(i, id)| (id, i)).collect();
        order
            .iter()
            .map(|id| {
                let i = position[id];
                let task = &written[i];
                TaskSpec {
                    task_id: id.clone(),
                    operator: task.operator.clone(),
                    args: task.args.clone(),
                    upstream: resolved[i].clone(),
                    trigger_rule: task.trigger_rule,
                    retries: task.retries,
                    retry_delay: task.retry_delay,
                    retry_exponential_backoff: task.retry_exponential_backoff,
                    max_retry_delay: task.max_retry_delay,
                    execution_timeout: task.execution_timeout,
                    pool: task.pool.clone(),
                    pool_slots: task.pool_slots,
                    priority_weight: task.priority_weight,
                    effective_priority: weights.get(id).copied().unwrap_or(task.priority_weight),
                    do_xcom_push: task.do_xcom_push,
                    task_group: task.group.clone(),
                    owner: task.owner.clone(),
                }
            })
            .collect()
    }

    fn task(
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

struct Group {
    line: usize,
    dependencies: Vec<(String, usize)>,
    parent: Option<String>,
    prefix: bool,
}

struct WrittenTask {
    name: String,
    line: usize,
    operator: String,
    args: serde_json::Map<String, serde_json::Value>,
    dependencies: Vec<(String, usize)>,
    group: Option<String>,
    trigger_rule: TriggerRule,
    retries: u32,
    retry_delay: Duration,
    retry_exponential_backoff: bool,
    max_retry_delay: Option<Duration>,
    execution_timeout: Option<Duration>,
    pool: String,
    pool_slots: u32,
    priority_weight: i64,
    do_xcom_push: bool,
    owner: String,
}

/// `default_args` that tasks inherit: those that are also task keys.
struct TaskDefaults {
    sources: HashMap<String, Sourced>,
}

impl TaskDefaults {
    fn read(default_args: &BTreeMap<String, Sourced>) -> Self {
        let sources = default_args
            .iter()
            .filter(|(key, _)| TASK_KEYS.contains(&key.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        TaskDefaults { sources }
    }
}

/// Ids of the DAGs in a set of parsed files, to tell which stored DAGs lost their file.
pub fn dag_ids(files: &[ParsedFile]) -> HashSet<String> {
    files
        .iter()
        .flat_map(|f| f.dags.iter().map(|d| d.dag_id.clone()))
        .collect()
}

#[cfg(test)]
mod tests;
