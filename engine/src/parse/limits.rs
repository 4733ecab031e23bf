//! The budgets one DAG file is read within. A file past one is one import error naming the limit and the
//! setting that changes it, and costs the engine no more than the budget: it is not read further.

use std::time::Duration;

use super::ignore::IgnoreSyntax;

/// What reading one DAG file may cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// The largest file read, in bytes (`dag_file_max_bytes`).
    pub max_file_bytes: u64,
    /// The longest one file may take to read (Airflow's `dagbag_import_timeout`).
    pub import_timeout: Duration,
    /// How deep lists and mappings may nest.
    pub max_depth: usize,
    /// Errors kept per file: the first ones, then one saying how many more there were.
    pub max_errors: usize,
}

/// The default largest DAG file: 4 MiB holds 100,000 one-line tasks.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 4 << 20;

/// The default time limit per file, Airflow's `dagbag_import_timeout` default.
pub const DEFAULT_IMPORT_TIMEOUT: Duration = Duration::from_secs(30);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            import_timeout: DEFAULT_IMPORT_TIMEOUT,
            max_depth: crate::yaml::MAX_DEPTH,
            max_errors: 100,
        }
    }
}

/// How a DAGs folder is read: which files, the budgets for each, and how cron strings are read.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FolderOptions {
    pub ignore_syntax: IgnoreSyntax,
    pub limits: Limits,
    /// Airflow's `[scheduler] create_cron_data_intervals`: a cron string schedules by data intervals
    /// (CronDataIntervalTimetable, Airflow 2's meaning) instead of at each time (CronTriggerTimetable, Airflow
    /// 3's default).
    pub cron_data_intervals: bool,
}

/// Keeps the first `max` of `items`, and when there were more, a last one made by `more` from how many
/// were left out.
pub(super) fn keep_first<T>(items: &mut Vec<T>, max: usize, more: impl FnOnce(usize) -> T) {
    if items.len() > max {
        let left_out = items.len() - max;
        items.truncate(max);
        items.push(more(left_out));
    }
}
