//! A DAG's `tasks`: each task as written, ids with group prefixes, dependencies resolved (groups expanded),
//! topological order and priority weights.

use std::collections::{BTreeMap, HashMap};

use crate::graph;
use crate::spec::TaskSpec;
use crate::yaml::{Node, Value};

use super::context::{DagCtx, Sourced};
use super::groups::Group;
use super::task::{TaskDefaults, WrittenTask};

impl DagCtx<'_> {
    pub(super) fn tasks(
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
                    is_setup: task.is_setup,
                    is_teardown: task.is_teardown,
                    on_failure_fail_dagrun: task.on_failure_fail_dagrun,
                }
            })
            .collect()
    }
}
