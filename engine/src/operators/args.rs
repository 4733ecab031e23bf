//! The YAML view of a task's operator arguments, for validators that need lines and keys.

use std::collections::BTreeMap;

use crate::yaml::{Node, Value};

/// A problem with one operator argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgError {
    pub key: String,
    pub line: usize,
    pub message: String,
}

/// The arguments of one task, after the keys every task has were taken out.
pub struct Args<'a> {
    pub entries: Vec<(String, &'a Node)>,
    /// Line of the task itself, for errors about missing keys.
    pub task_line: usize,
}

impl<'a> Args<'a> {
    pub fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
    }

    /// Fails on the first key that is not in `allowed`.
    pub fn only(&self, operator: &str, allowed: &[&str]) -> Result<(), ArgError> {
        for (key, node) in &self.entries {
            if !allowed.contains(&key.as_str()) {
                let expected = if allowed.is_empty() {
                    "it takes no arguments".to_string()
                } else {
                    format!("expected one of {}", allowed.join(", "))
                };
                return Err(ArgError {
                    key: key.clone(),
                    line: node.line,
                    message: format!("unknown argument `{key}` for operator `{operator}`; {expected}"),
                });
            }
        }
        Ok(())
    }

    pub fn require(&self, key: &str) -> Result<&'a Node, ArgError> {
        self.get(key).ok_or_else(|| ArgError {
            key: key.to_string(),
            line: self.task_line,
            message: format!("missing required argument `{key}`"),
        })
    }

    pub fn error(&self, key: &str, node: &Node, message: impl Into<String>) -> ArgError {
        ArgError {
            key: key.to_string(),
            line: node.line,
            message: message.into(),
        }
    }

    /// A string (templates allowed).
    pub fn string(&self, key: &str) -> Result<Option<String>, ArgError> {
        let Some(node) = self.get(key) else {
            return Ok(None);
        };
        match &node.value {
            Value::Str(text) => Ok(Some(text.clone())),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => Ok(node.key_text()),
            _ => Err(self.error(key, node, format!("`{key}` must be a string, got {}", node.kind()))),
        }
    }

    pub fn boolean(&self, key: &str) -> Result<Option<bool>, ArgError> {
        let Some(node) = self.get(key) else {
            return Ok(None);
        };
        match &node.value {
            Value::Bool(b) => Ok(Some(*b)),
            Value::Str(text) if is_template(text) => Ok(None),
            _ => Err(self.error(key, node, format!("`{key}` must be true or false, got {}", node.kind()))),
        }
    }

    /// A mapping whose values are scalars (e.g. environment variables).
    pub fn string_map(&self, key: &str) -> Result<Option<BTreeMap<String, String>>, ArgError> {
        let Some(node) = self.get(key) else {
            return Ok(None);
        };
        let Some(entries) = node.as_map() else {
            if let Value::Str(text) = &node.value {
                if is_template(text) {
                    return Ok(None);
                }
            }
            return Err(self.error(key, node, format!("`{key}` must be a mapping, got {}", node.kind())));
        };
        let mut out = BTreeMap::new();
        for (k, v) in entries {
            let name = k.key_text().unwrap_or_default();
            let value = match &v.value {
                Value::Str(text) => text.clone(),
                Value::Int(_) | Value::Float(_) | Value::Bool(_) => v.key_text().unwrap_or_default(),
                _ => return Err(self.error(key, v, format!("`{key}.{name}` must be a string, got {}", v.kind()))),
            };
            out.insert(name, value);
        }
        Ok(Some(out))
    }
}

/// True when a string contains Jinja syntax and is rendered at run time.
pub fn is_template(text: &str) -> bool {
    text.contains("{{") || text.contains("{%")
}
