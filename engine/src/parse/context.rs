//! The DAG being read, and the errors and warnings that name its file, line, task and key.

use std::collections::HashMap;

use crate::error::{DagFileError, Location};
use crate::operators::OperatorRegistry;
use crate::yaml::Node;

pub(super) fn file_error(file: &str, line: Option<usize>, message: impl Into<String>) -> DagFileError {
    DagFileError {
        location: Location {
            file: file.to_string(),
            line,
            ..Default::default()
        },
        message: message.into(),
    }
}

pub(super) struct DagCtx<'a> {
    pub(super) file: &'a str,
    pub(super) dag_id: String,
    pub(super) errors: Vec<DagFileError>,
    pub(super) warnings: Vec<DagFileError>,
    pub(super) registry: &'a OperatorRegistry,
    /// Each error's (file, line, key, message), to report each cause once.
    pub(super) causes: HashMap<(String, usize, Option<String>, String), usize>,
    /// Whether a cron string means data intervals (see `FolderOptions::cron_data_intervals`).
    pub(super) cron_data_intervals: bool,
}

/// A value with where it was written.
#[derive(Clone)]
pub(super) struct Sourced {
    pub(super) node: Node,
    pub(super) file: String,
}

impl DagCtx<'_> {
    pub(super) fn error(
        &mut self,
        file: &str,
        line: usize,
        task_id: Option<&str>,
        key: Option<&str>,
        message: impl Into<String>,
    ) {
        let message = message.into();
        // One root cause, one error: a bad value that several tasks inherit (from `default_args` or a group)
        // is reported once, for none of them in particular.
        let cause = (file.to_string(), line, key.map(str::to_string), message.clone());
        if let Some(&index) = self.causes.get(&cause) {
            let earlier = &mut self.errors[index];
            if earlier.location.task_id.as_deref() != task_id {
                earlier.location.task_id = None;
            }
            return;
        }
        self.causes.insert(cause, self.errors.len());
        self.errors.push(DagFileError {
            location: Location {
                file: file.to_string(),
                line: Some(line),
                dag_id: Some(self.dag_id.clone()),
                task_id: task_id.map(str::to_string),
                key: key.map(str::to_string),
            },
            message,
        });
    }

    pub(super) fn warn(&mut self, file: &str, line: usize, key: &str, message: impl Into<String>) {
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
}
