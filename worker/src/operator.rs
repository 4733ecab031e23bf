//! The runtime side of operators: what an operator gets to run one try, what it answers, and the table of
//! operators a runner knows. `bash` and `empty` are registered like any other (e.g. `chain.*`).
//!
//! Arguments are checked when the DAG file is loaded (`engine::operators`); here they arrive rendered.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use engine::spec::TaskSpec;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use crate::client::ExecutionClient;
use crate::runner::TaskLog;

/// What an operator gets to run one try.
pub struct OperatorContext {
    pub dag_id: String,
    pub task_id: String,
    pub run_id: String,
    pub try_number: i64,
    /// The task as defined (`do_xcom_push`, `owner`, timeouts ...).
    pub task: TaskSpec,
    /// Arguments with templates rendered.
    pub args: serde_json::Map<String, Json>,
    /// XCom values of the run when the try started, by (task id, key).
    pub xcoms: HashMap<(String, String), Json>,
    /// Airflow's `AIRFLOW_CTX_*` variables and the execution API's URL and token, for child processes.
    pub env: Vec<(String, String)>,
    pub log: TaskLog,
    /// Cancelled on timeout, when the try is stopped from outside, or on SIGTERM: stop and clean up.
    pub cancel: CancellationToken,
    /// The engine, for what an operator records there (e.g. networks); holds only this try's token.
    pub api: ExecutionClient,
}

/// How a try ended.
#[derive(Debug, Clone, PartialEq)]
pub enum OperatorResult {
    /// Success, with an optional return value (pushed as XCom `return_value` when `do_xcom_push`).
    Success(Option<Json>),
    Skipped(String),
    Failed(String),
}

pub type OperatorFuture = Pin<Box<dyn Future<Output = OperatorResult> + Send>>;

/// An operator: runs one try in the runner's process.
pub trait Operator: Send + Sync {
    fn run(&self, ctx: OperatorContext) -> OperatorFuture;
}

/// Operators by canonical name.
#[derive(Clone, Default)]
pub struct OperatorRuntime {
    operators: HashMap<String, Arc<dyn Operator>>,
}

impl OperatorRuntime {
    /// The built-in operators: `bash` and `empty`.
    pub fn builtin() -> OperatorRuntime {
        let mut runtime = OperatorRuntime::default();
        runtime.register("bash", Arc::new(crate::operators::bash::Bash));
        runtime.register("empty", Arc::new(crate::operators::empty::Empty));
        runtime
    }

    pub fn register(&mut self, name: &str, operator: Arc<dyn Operator>) {
        self.operators.insert(name.to_string(), operator);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Operator>> {
        self.operators.get(name).cloned()
    }
}
