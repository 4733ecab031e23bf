//! A DAG's `tasks`: each task as written, ids with group prefixes, dependencies resolved (groups expanded),
//! topological order and priority weights.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::graph;
use crate::mapping::{MapSource, MappedArg};
use crate::spec::TaskSpec;
use crate::yaml::{Node, Value};

use super::context::{DagCtx, Sourced};
use super::groups::Group;
use super::task::{TaskDefaults, WrittenSource, WrittenTask};

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
        // A group and the groups it is nested in, innermost first (parents form no cycle: `groups` broke them).
        let chain = |group: &str| -> Vec<&str> {
            let mut out = Vec::new();
            let mut current = groups.get_key_value(group).map(|(k, _)| k.as_str());
            while let Some(name) = current {
                if out.contains(&name) {
                    break;
                }
                out.push(name);
                current = groups
                    .get(name)
                    .and_then(|g| g.parent.as_deref())
                    .and_then(|p| groups.get_key_value(p).map(|(k, _)| k.as_str()));
            }
            out
        };
        // Final ids: group prefixes, like Airflow's `group.task` (groups with `prefix_group_id: false` add none).
        let group_path = |group: &str| -> Vec<String> {
            let mut path: Vec<String> = chain(group)
                .into_iter()
                .filter(|name| groups.get(*name).is_none_or(|g| g.prefix))
                .map(str::to_string)
                .collect();
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
        let mut members: HashMap<&str, Vec<usize>> = groups.keys().map(|g| (g.as_str(), Vec::new())).collect();
        for (i, task) in written.iter().enumerate() {
            if let Some(group) = &task.group {
                for name in chain(group) {
                    if let Some(list) = members.get_mut(name) {
                        list.push(i);
                    }
                }
            }
        }
        let member_sets: HashMap<&str, HashSet<usize>> = members
            .iter()
            .map(|(g, list)| (*g, list.iter().copied().collect()))
            .collect();
        // A group as upstream means its leaves: members no other member depends on.
        let leaves: HashMap<&str, Vec<usize>> = members
            .iter()
            .map(|(g, inside)| {
                let depended_on: HashSet<&str> = inside
                    .iter()
                    .flat_map(|&k| written[k].dependencies.iter().map(|(dep, _)| dep.as_str()))
                    .collect();
                let leaves = inside
                    .iter()
                    .copied()
                    .filter(|&j| !depended_on.contains(written[j].name.as_str()))
                    .collect();
                (*g, leaves)
            })
            .collect();
        // A group's dependencies: not itself, not a group it is in or that is in it (each would be a cycle
        // Airflow refuses).
        let mut group_deps: Vec<(&str, &Group)> = Vec::new();
        for (group, spec) in groups {
            let ancestors = chain(group);
            let mut ok = true;
            for (dep, line) in &spec.dependencies {
                let problem = if dep == group {
                    Some(format!("task group `{group}` depends on itself"))
                } else if ancestors.contains(&dep.as_str()) {
                    Some(format!(
                        "task group `{group}` depends on task group `{dep}`, which contains it"
                    ))
                } else if groups.contains_key(dep) && chain(dep).contains(&group.as_str()) {
                    Some(format!(
                        "task group `{group}` depends on task group `{dep}`, which it contains"
                    ))
                } else {
                    None
                };
                if let Some(message) = problem {
                    self.error(&file, *line, None, Some("dependencies"), message);
                    ok = false;
                }
            }
            if ok {
                group_deps.push((group.as_str(), spec));
            }
        }
        // Upstream names as written, per task; then expand groups.
        let mut upstream: Vec<Vec<(String, usize)>> = written.iter().map(|task| task.dependencies.clone()).collect();
        for (group, spec) in group_deps {
            let inside = &member_sets[group];
            for &i in &members[group] {
                let has_upstream_inside = upstream[i].iter().any(|(name, _)| {
                    names.get(name).is_some_and(|j| inside.contains(j))
                        || (groups.contains_key(name)
                            && !members[name.as_str()].is_empty()
                            && chain(name).contains(&group))
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
                } else if let Some(inside) = member_sets.get(name.as_str()) {
                    if inside.contains(&i) {
                        self.error(
                            &file,
                            *line,
                            Some(&written[i].name),
                            Some("dependencies"),
                            format!(
                                "task `{}` is in task group `{name}` and cannot depend on it",
                                written[i].name
                            ),
                        );
                        continue;
                    }
                    ids.extend(leaves[name.as_str()].iter().map(|&j| final_ids[j].clone()));
                } else {
                    let known: Vec<&str> = written.iter().take(20).map(|t| t.name.as_str()).collect();
                    let more = if written.len() > known.len() { ", ..." } else { "" };
                    self.error(
                        &file,
                        *line,
                        Some(&written[i].name),
                        Some("dependencies"),
                        format!(
                            "unknown dependency `{name}`; tasks in this DAG: {}{more}",
                            known.join(", ")
                        ),
                    );
                }
            }
            ids.sort();
            ids.dedup();
            resolved.push(ids);
        }
        // Mapped arguments with their XCom sources named by final task id.
        let mut mapped: Vec<Vec<MappedArg>> = Vec::with_capacity(written.len());
        for task in &written {
            let mut args = Vec::with_capacity(task.expand.len());
            for (key, source) in &task.expand {
                let source = match source {
                    WrittenSource::Literal(items) => MapSource::Literal(items.clone()),
                    WrittenSource::Xcom { name, line } => match names.get(name) {
                        Some(&j) => MapSource::Xcom {
                            task_id: final_ids[j].clone(),
                        },
                        None => {
                            // An unknown name was reported with the dependencies it joined.
                            if member_sets.contains_key(name.as_str()) {
                                self.error(
                                    &file,
                                    *line,
                                    Some(&task.name),
                                    Some("expand"),
                                    format!("`{name}` is a task group; a task maps over one task's output"),
                                );
                            }
                            continue;
                        }
                    },
                };
                args.push(MappedArg {
                    key: key.clone(),
                    source,
                });
            }
            mapped.push(args);
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
        if weights.approximate > 0 {
            self.warn(
                &file,
                src.node.line,
                "tasks",
                format!(
                    "priority weights of {} tasks are upper bounds: counting each downstream task once would visit more than {} tasks",
                    weights.approximate,
                    graph::WEIGHT_STEPS
                ),
            );
        }
        let weights = weights.by_task;
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
                    depends_on_past: task.depends_on_past || task.wait_for_downstream,
                    wait_for_downstream: task.wait_for_downstream,
                    outlets: task.outlets.clone(),
                    max_active_tis_per_dag: task.max_active_tis_per_dag,
                    executor_config: task.executor_config.clone(),
                    expand: mapped[i].clone(),
                }
            })
            .collect()
    }
}
