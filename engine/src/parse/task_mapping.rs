//! A mapped task's `partial` and `expand` keys (Airflow's `.partial(...).expand(...)`): the arguments every
//! instance shares, the ones it is mapped over and where their values come from, checked as the operator will
//! see them.

use crate::operators::Args;
use crate::yaml::{Node, Value};

use super::context::DagCtx;
use super::task::{WrittenSource, TASK_KEYS};

impl DagCtx<'_> {
    /// `partial`: arguments every mapped instance shares, laid beside the task's own (Airflow's
    /// `.partial(...)`; dagctl also takes them written on the task itself).
    pub(super) fn partial<'n>(
        &mut self,
        file: &str,
        partial: &'n Node,
        args: &mut Vec<(String, &'n Node)>,
        task: Option<&str>,
    ) {
        let Some(entries) = partial.as_map() else {
            self.error(
                file,
                partial.line,
                task,
                Some("partial"),
                format!(
                    "`partial` must be a mapping of operator arguments, got {}",
                    partial.kind()
                ),
            );
            return;
        };
        for (k, v) in entries {
            let key = k.key_text().unwrap_or_default();
            if TASK_KEYS.contains(&key.as_str()) || key == "expand" || key == "partial" {
                self.error(
                    file,
                    k.line,
                    task,
                    Some("partial"),
                    format!("`partial` holds operator arguments; write `{key}` on the task itself"),
                );
            } else if args.iter().any(|(existing, _)| *existing == key) {
                self.error(
                    file,
                    k.line,
                    task,
                    Some("partial"),
                    format!("`{key}` is given both in `partial` and on the task"),
                );
            } else {
                args.push((key, v));
            }
        }
    }

    /// `expand`: each argument a list written here or dag-factory's `task_id.output` (the upstream task's
    /// XCom), with the node it was written as; and whether every entry was taken (none refused).
    pub(super) fn expand<'n>(
        &mut self,
        file: &str,
        expand: &'n Node,
        args: &[(String, &'n Node)],
        task: Option<&str>,
    ) -> (Vec<(String, &'n Node, WrittenSource)>, bool) {
        let entries = match expand.as_map() {
            Some(entries) if !entries.is_empty() => entries,
            _ => {
                self.error(
                    file,
                    expand.line,
                    task,
                    Some("expand"),
                    format!(
                        "`expand` must be a mapping of operator arguments to lists (or `task_id.output`), got {}",
                        expand.kind()
                    ),
                );
                return (Vec::new(), false);
            }
        };
        let mut out = Vec::new();
        for (k, v) in entries {
            let key = k.key_text().unwrap_or_default();
            if TASK_KEYS.contains(&key.as_str()) {
                self.error(
                    file,
                    k.line,
                    task,
                    Some("expand"),
                    format!("`{key}` cannot be mapped: `expand` maps operator arguments"),
                );
                continue;
            }
            if args.iter().any(|(existing, _)| *existing == key) {
                self.error(
                    file,
                    k.line,
                    task,
                    Some("expand"),
                    format!("`{key}` is both mapped in `expand` and given as a fixed argument"),
                );
                continue;
            }
            let xcom_name = v
                .as_str()
                .and_then(|text| text.trim().strip_suffix(".output"))
                .filter(|name| !name.is_empty() && !name.contains(char::is_whitespace));
            let source = match (&v.value, xcom_name) {
                (Value::Seq(items), _) => WrittenSource::Literal(items.iter().map(Node::to_json).collect()),
                (_, Some(name)) => WrittenSource::Xcom {
                    name: name.to_string(),
                    line: v.line,
                },
                (value, None) => {
                    let got = match value {
                        Value::Str(text) => format!("the string `{text}`"),
                        _ => v.kind().to_string(),
                    };
                    self.error(
                        file,
                        v.line,
                        task,
                        Some("expand"),
                        format!(
                            "`expand.{key}` must be a list or `<task_id>.output` (an upstream task's XCom), got {got}"
                        ),
                    );
                    continue;
                }
            };
            out.push((key, v, source));
        }
        let complete = out.len() == entries.len();
        (out, complete)
    }

    /// Checks a mapped task's arguments with each written element in place (every element of every list is
    /// checked once); an argument mapped over an XCom is not known until the task runs, so only its name is.
    pub(super) fn validate_mapped(
        &mut self,
        file: &str,
        fixed: &[(String, &Node)],
        mapped: &[(String, &Node, WrittenSource)],
        task_line: usize,
        validate: crate::operators::ValidateFn,
        task: Option<&str>,
    ) {
        let placeholder = |line: usize| Node {
            value: Value::Str("{{ mapped }}".into()),
            line,
            col: 0,
        };
        let variants = mapped
            .iter()
            .map(|(_, node, _)| match &node.value {
                Value::Seq(items) => items.len(),
                _ => 0,
            })
            .max()
            .unwrap_or(0)
            .max(1);
        let deferred: Vec<&str> = mapped
            .iter()
            .filter(|(_, node, _)| !matches!(&node.value, Value::Seq(items) if !items.is_empty()))
            .map(|(key, _, _)| key.as_str())
            .collect();
        for variant in 0..variants {
            let owned: Vec<(String, Node)> = mapped
                .iter()
                .map(|(key, node, _)| {
                    let element = match &node.value {
                        Value::Seq(items) if !items.is_empty() => items[variant.min(items.len() - 1)].clone(),
                        _ => placeholder(node.line),
                    };
                    (key.clone(), element)
                })
                .collect();
            let mut entries = fixed.to_vec();
            entries.extend(owned.iter().map(|(k, n)| (k.clone(), n)));
            let args = Args { entries, task_line };
            match validate(&args) {
                Ok(()) => {}
                Err(err) if deferred.contains(&err.key.as_str()) && !err.message.starts_with("unknown argument") => {}
                Err(err) => {
                    self.error(file, err.line, task, Some(&err.key), err.message);
                    return;
                }
            }
        }
    }
}
