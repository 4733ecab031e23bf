//! How a scheduler behaves: its identity, intervals, timeouts and scope.

use std::path::PathBuf;
use std::time::Duration;

/// How long monitor samples are kept by default.
pub const DEFAULT_SAMPLE_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

/// How a scheduler behaves.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    /// Unique per scheduler process.
    pub id: String,
    pub hostname: String,
    /// Read DAG files from here (None: only what the store already has).
    pub dags_folder: Option<PathBuf>,
    /// How it is read: `.airflowignore` syntax and the budgets per file.
    pub folder_options: engine::parse::FolderOptions,
    /// The root of the git sync feeding the DAGs folder: its errors show as import errors.
    pub git_root: Option<PathBuf>,
    pub paused_at_creation: bool,
    pub parse_interval: Duration,
    /// Longest sleep when there is nothing to do.
    pub idle_interval: Duration,
    pub heartbeat_interval: Duration,
    pub orphan_interval: Duration,
    /// A scheduler whose heartbeat is older than this is dead and its tasks are orphans.
    pub job_timeout: Duration,
    /// A running task on another host whose heartbeat is older than this is failed (Airflow's
    /// task_instance_heartbeat_timeout).
    pub ti_heartbeat_timeout: Duration,
    /// Only work on these runs, and stop when they have finished (`dags test`, local backfill).
    pub scope: Option<Vec<i64>>,
    pub create_scheduled_runs: bool,
    /// Monitor samples older than this are deleted (checked every `prune_interval`); None keeps them.
    pub sample_retention: Option<Duration>,
    pub prune_interval: Duration,
    /// Where this scheduler's runners reach the task execution API; recorded with the scheduler's job so that
    /// runners of a scheduler that died can report to a live one.
    pub api_url: Option<String>,
}

impl SchedulerOptions {
    pub fn new(id: String, hostname: String) -> SchedulerOptions {
        SchedulerOptions {
            id,
            hostname,
            dags_folder: None,
            folder_options: engine::parse::FolderOptions::default(),
            git_root: None,
            paused_at_creation: true,
            parse_interval: Duration::from_secs(2),
            idle_interval: Duration::from_millis(500),
            heartbeat_interval: Duration::from_secs(5),
            orphan_interval: Duration::from_secs(10),
            job_timeout: Duration::from_secs(30),
            ti_heartbeat_timeout: Duration::from_secs(300),
            scope: None,
            create_scheduled_runs: true,
            sample_retention: Some(DEFAULT_SAMPLE_RETENTION),
            prune_interval: Duration::from_secs(600),
            api_url: None,
        }
    }
}
