//! The task execution API's wire types, shared by the runner (client) and the engine (server, in `web`).
//!
//! Like Airflow 3's task execution API: a try's runner holds no database credentials; it talks to the
//! engine over HTTP with a token scoped to that one try, valid only while the try runs.
//!
//! | call | path |
//! |---|---|
//! | start: record pid and host, get the context | `POST /execution/task-instances/run` |
//! | heartbeat (403 once the try is no longer current) | `PUT /execution/task-instances/{id}/heartbeat` |
//! | log lines | `POST /execution/task-instances/{id}/logs` |
//! | final state, XCom and last log lines | `PATCH /execution/task-instances/{id}/state` |
//! | a variable, a connection (for templates; 404 when absent) | `GET /execution/variables/{key}`, `GET /execution/connections/{id}` |
//! | networks (for `chain.*` operators) | `/execution/networks/...` |

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use engine::spec::TaskSpec;
use engine::state::Outcome;
use engine::template::TemplateContext;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use crate::log::LogLine;

/// The environment variable holding the execution API's base URL in a runner's environment.
pub const API_URL_ENV: &str = "DAGCTL_EXECUTION_API_URL";
/// The environment variable holding a runner's try-scoped token.
pub const TOKEN_ENV: &str = "DAGCTL_TASK_TOKEN";
/// A response header of the start and heartbeat calls: the execution API addresses of the live engines
/// (comma-separated, newest first). A runner whose engine went away reports to one of them.
pub const ENGINES_HEADER: &str = "x-dagctl-engines";
/// The `kind` of execution tokens (API and session tokens are refused on `/execution`).
pub const TOKEN_KIND: &str = "execution";

/// Issues try-scoped tokens; the engine's signing key stays with the implementation.
pub trait TokenMinter: Send + Sync {
    /// A token for try `try_number` of task instance `ti_id`, expiring after `ttl` at the latest.
    fn mint(&self, ti_id: i64, try_number: i64, ttl: Duration) -> String;
}

/// `POST /execution/task-instances/run`: the runner names its try (the token must be for the same one).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    /// The try the runner was started for; `None`: the one its token is for.
    #[serde(default)]
    pub try_number: Option<i64>,
    /// The mapped instance (-1: a task that is not mapped).
    #[serde(default = "unmapped")]
    pub map_index: i64,
    pub hostname: String,
    pub pid: u32,
}

fn unmapped() -> i64 {
    engine::mapping::UNMAPPED
}

/// One XCom value of the run, as the context carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct XcomValue {
    pub task_id: String,
    pub key: String,
    /// The mapped instance that pushed it (-1: a task that is not mapped).
    #[serde(default = "unmapped")]
    pub map_index: i64,
    pub value: Json,
}

/// Everything a runner needs to run its try.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskContext {
    pub ti_id: i64,
    pub dag_id: String,
    pub run_id: String,
    pub task_id: String,
    /// Which instance of a mapped task this try runs (-1: the task is not mapped).
    #[serde(default = "unmapped")]
    pub map_index: i64,
    pub try_number: i64,
    pub max_tries: i64,
    pub task: TaskSpec,
    pub logical_date: Option<DateTime<Utc>>,
    pub data_interval_start: Option<DateTime<Utc>>,
    pub data_interval_end: Option<DateTime<Utc>>,
    pub run_after: DateTime<Utc>,
    pub conf: serde_json::Map<String, Json>,
    /// The DAG's params (the run's conf is laid over them when templates render).
    pub params: serde_json::Map<String, Json>,
    pub render_template_as_native_obj: bool,
    pub xcoms: Vec<XcomValue>,
    /// How often the runner heartbeats.
    pub heartbeat_interval_ms: u64,
}

impl TaskContext {
    /// The context templates render with.
    pub fn template_context(&self) -> TemplateContext {
        let mut params = self.params.clone();
        for (key, value) in &self.conf {
            params.insert(key.clone(), value.clone());
        }
        TemplateContext {
            dag_id: self.dag_id.clone(),
            task_id: self.task_id.clone(),
            map_index: self.map_index,
            run_id: self.run_id.clone(),
            try_number: self.try_number as u32,
            logical_date: self.logical_date,
            data_interval_start: self.data_interval_start,
            data_interval_end: self.data_interval_end,
            run_after: self.run_after,
            conf: self.conf.clone(),
            params,
            xcoms: self.xcom_map(),
            instance_xcoms: self.instance_xcoms(),
            native: self.render_template_as_native_obj,
            lookups: Default::default(),
        }
    }

    /// XCom values by (task id, key), a mapped task's as one list (as `xcom_pull` sees them).
    pub fn xcom_map(&self) -> HashMap<(String, String), Json> {
        let mut values: Vec<&XcomValue> = self.xcoms.iter().collect();
        values.sort_by_key(|x| x.map_index);
        engine::mapping::pull_view(
            values
                .into_iter()
                .map(|x| (x.task_id.clone(), x.key.clone(), x.map_index, x.value.clone())),
        )
    }

    /// The values mapped task instances pushed, by (task id, key, map_index).
    pub fn instance_xcoms(&self) -> HashMap<(String, String, i64), Json> {
        self.xcoms
            .iter()
            .filter(|x| x.map_index >= 0)
            .map(|x| ((x.task_id.clone(), x.key.clone(), x.map_index), x.value.clone()))
            .collect()
    }

    /// Airflow's `AIRFLOW_CTX_*` variables for this try.
    pub fn airflow_env(&self) -> Vec<(String, String)> {
        let logical = self.logical_date.unwrap_or(self.run_after).to_rfc3339();
        vec![
            ("AIRFLOW_CTX_DAG_ID".into(), self.dag_id.clone()),
            ("AIRFLOW_CTX_TASK_ID".into(), self.task_id.clone()),
            ("AIRFLOW_CTX_LOGICAL_DATE".into(), logical),
            ("AIRFLOW_CTX_DAG_RUN_ID".into(), self.run_id.clone()),
            ("AIRFLOW_CTX_TRY_NUMBER".into(), self.try_number.to_string()),
            ("AIRFLOW_CTX_DAG_OWNER".into(), self.task.owner.clone()),
        ]
    }
}

/// `GET /execution/variables/{key}` (404 when there is none).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VariableResponse {
    pub key: String,
    pub value: String,
}

/// `POST …/logs`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogBatch {
    pub lines: Vec<LogLine>,
}

/// An XCom value a try pushes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XcomPush {
    pub key: String,
    pub value: Json,
}

/// `PATCH …/state`: how the try ended, with its XCom and the last log lines.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FinishRequest {
    pub state: Outcome,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub xcoms: Vec<XcomPush>,
    #[serde(default)]
    pub logs: Vec<LogLine>,
}

/// The answer to a finish: the task instance's state after it (e.g. `up_for_retry` for a failure with
/// tries left).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinishResponse {
    pub state: String,
}
