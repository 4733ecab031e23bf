//! Which operators exist and how their arguments are checked when a DAG file is validated.
//!
//! The engine registers the built-in `bash` and `empty`; other crates (e.g. `chain`) register theirs at start.
//! Validation runs before anything executes: a wrong or unknown argument is an error naming its line and key.
//! String arguments are templates, rendered when the task runs; a value that is a template is accepted here
//! wherever a string could become the expected type once rendered.

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

pub type ValidateFn = fn(&Args<'_>) -> Result<(), ArgError>;

/// One operator: canonical name, the dotted Airflow paths that map to it, and its argument check.
#[derive(Clone)]
pub struct OperatorDef {
    pub name: &'static str,
    pub aliases: &'static [&'static str],
    pub validate: ValidateFn,
    /// Runs inside the scheduler without an executor slot (Airflow does this for EmptyOperator).
    pub completes_in_scheduler: bool,
}

/// The operators known to this process.
#[derive(Clone)]
pub struct OperatorRegistry {
    operators: Vec<OperatorDef>,
}

impl Default for OperatorRegistry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl OperatorRegistry {
    /// `bash` and `empty`.
    pub fn builtin() -> Self {
        OperatorRegistry {
            operators: vec![
                OperatorDef {
                    name: "bash",
                    aliases: &[
                        "airflow.operators.bash.BashOperator",
                        "airflow.operators.bash_operator.BashOperator",
                        "airflow.providers.standard.operators.bash.BashOperator",
                        "BashOperator",
                    ],
                    validate: validate_bash,
                    completes_in_scheduler: false,
                },
                OperatorDef {
                    name: "empty",
                    aliases: &[
                        "airflow.operators.empty.EmptyOperator",
                        "airflow.providers.standard.operators.empty.EmptyOperator",
                        "airflow.operators.dummy.DummyOperator",
                        "airflow.operators.dummy_operator.DummyOperator",
                        "EmptyOperator",
                        "DummyOperator",
                    ],
                    validate: |args| args.only("empty", &[]),
                    completes_in_scheduler: true,
                },
            ],
        }
    }

    pub fn register(&mut self, def: OperatorDef) {
        self.operators.retain(|existing| existing.name != def.name);
        self.operators.push(def);
    }

    /// Finds an operator by canonical name or Airflow path.
    pub fn resolve(&self, name: &str) -> Option<&OperatorDef> {
        self.operators
            .iter()
            .find(|def| def.name == name || def.aliases.contains(&name))
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.operators.iter().map(|def| def.name).collect()
    }
}

fn validate_bash(args: &Args<'_>) -> Result<(), ArgError> {
    args.only(
        "bash",
        &[
            "bash_command",
            "env",
            "append_env",
            "cwd",
            "skip_on_exit_code",
            "output_encoding",
        ],
    )?;
    let command = args.require("bash_command")?;
    match &command.value {
        Value::Str(text) if !text.trim().is_empty() => {}
        _ => return Err(args.error("bash_command", command, "`bash_command` must be a non-empty string")),
    }
    args.string_map("env")?;
    args.boolean("append_env")?;
    args.string("cwd")?;
    args.string("output_encoding")?;
    if let Some(node) = args.get("skip_on_exit_code") {
        let valid = match &node.value {
            Value::Null => true,
            Value::Int(code) => (0..=255).contains(code),
            Value::Seq(items) => items
                .iter()
                .all(|item| matches!(item.value, Value::Int(code) if (0..=255).contains(&code))),
            Value::Str(text) => is_template(text),
            _ => false,
        };
        if !valid {
            return Err(args.error(
                "skip_on_exit_code",
                node,
                "`skip_on_exit_code` must be an exit code 0-255, a list of them, or null",
            ));
        }
    }
    Ok(())
}
