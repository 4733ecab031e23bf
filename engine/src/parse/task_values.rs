//! A task's structured keys read beside its arguments: `executor_config` and `outlets`.

use crate::yaml::Value;

use super::context::{DagCtx, Sourced};

impl DagCtx<'_> {
    /// `executor_config`: checked as the executor will read it; an error is on the line of the key it is about.
    pub(super) fn executor_config(
        &mut self,
        src: &Sourced,
        task: Option<&str>,
    ) -> Option<crate::executor_config::ExecutorConfig> {
        match crate::executor_config::ExecutorConfig::from_json(src.node.to_json()) {
            Ok(config) => Some(config),
            Err(issue) => {
                // The line of the deepest written key on the issue's path (`resources.limits.cpu`).
                let mut node = &src.node;
                for part in issue.key.split(['.', '[']).filter(|part| !part.is_empty()) {
                    let child = match part.strip_suffix(']').and_then(|index| index.parse::<usize>().ok()) {
                        Some(index) => match &node.value {
                            Value::Seq(items) => items.get(index),
                            _ => None,
                        },
                        None => node.get(part),
                    };
                    match child {
                        Some(child) => node = child,
                        None => break,
                    }
                }
                let key = if issue.key.is_empty() {
                    "executor_config".to_string()
                } else {
                    format!("executor_config.{}", issue.key)
                };
                self.error(&src.file, node.line, task, Some(&key), issue.message);
                None
            }
        }
    }

    /// `outlets`: the assets a task updates when it succeeds (URIs, or `airflow.sdk.Asset`s built into theirs).
    pub(super) fn outlets(&mut self, src: &Sourced, task: Option<&str>) -> Vec<String> {
        let items = match &src.node.value {
            Value::Seq(items) => items.clone(),
            Value::Str(_) => vec![src.node.clone()],
            Value::Null => Vec::new(),
            other => {
                let kind = src.node.kind();
                let _ = other;
                self.error(
                    &src.file,
                    src.node.line,
                    task,
                    Some("outlets"),
                    format!("`outlets` must be a list of asset URIs, got {kind}"),
                );
                return Vec::new();
            }
        };
        let mut out = Vec::new();
        for item in items {
            let checked = match item.as_str() {
                Some(uri) => crate::assets::check_uri(uri).map(|_| uri.to_string()),
                None => Err(format!(
                    "an outlet must be an asset URI or an airflow.sdk.Asset, got {}",
                    item.kind()
                )),
            };
            match checked {
                Ok(uri) if !out.contains(&uri) => out.push(uri),
                Ok(_) => {}
                Err(message) => self.error(&src.file, item.line, task, Some("outlets"), message),
            }
        }
        out
    }
}
