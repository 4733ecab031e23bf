//! `task_groups`: each group's keys, parent and dependencies.

use std::collections::BTreeMap;

use crate::yaml::{Node, Value};

use super::context::{DagCtx, Sourced};

const GROUP_KEYS: &[&str] = &[
    "group_name",
    "tooltip",
    "dependencies",
    "parent_group_name",
    "prefix_group_id",
];

/// How deep task groups may nest (a task id of nested group prefixes soon passes Airflow's 250 characters).
const MAX_GROUP_DEPTH: usize = 64;

pub(super) struct Group {
    pub(super) line: usize,
    pub(super) dependencies: Vec<(String, usize)>,
    pub(super) parent: Option<String>,
    pub(super) prefix: bool,
}

impl DagCtx<'_> {
    pub(super) fn groups(&mut self, src: &Sourced) -> BTreeMap<String, Group> {
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
            if !super::task::is_airflow_key(&name, false, 200) {
                self.error(
                    &src.file,
                    node.line,
                    None,
                    Some("group_name"),
                    format!("task group `{name}`: a group id is 1 to 200 letters, digits, `_` and `-` (Airflow's pattern; no `.`, which joins a group to its tasks)"),
                );
            }
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
        // Parents must not lead back to the group: `a` in `b` in `a` (or a group its own parent) is refused,
        // and the loop is cut so the rest of the DAG can still be checked.
        let names: Vec<String> = out.keys().cloned().collect();
        for name in names {
            let mut path = vec![name.clone()];
            let mut current = out[&name].parent.clone();
            while let Some(parent) = current {
                if parent == name {
                    path.push(parent);
                    let message = if path.len() == 2 {
                        format!("task group `{name}` is its own parent")
                    } else {
                        format!("task group parents form a cycle: {}", path.join(" -> "))
                    };
                    let line = out[&name].line;
                    self.error(&src.file, line, None, Some("parent_group_name"), message);
                    if let Some(group) = out.get_mut(&name) {
                        group.parent = None;
                    }
                    break;
                }
                if path.contains(&parent) {
                    break;
                }
                if path.len() >= MAX_GROUP_DEPTH {
                    let line = out[&name].line;
                    self.error(
                        &src.file,
                        line,
                        None,
                        Some("parent_group_name"),
                        format!("task group `{name}` is nested more than {MAX_GROUP_DEPTH} groups deep"),
                    );
                    if let Some(group) = out.get_mut(&name) {
                        group.parent = None;
                    }
                    break;
                }
                path.push(parent.clone());
                current = out.get(&parent).and_then(|g| g.parent.clone());
            }
        }
        out
    }
}
