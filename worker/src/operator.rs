//! Operators that run inside the dagctl process (e.g. the blockchain operators), as opposed to `bash`, which
//! runs as a supervised child process.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use engine::store::Store;
use tokio_util::sync::CancellationToken;

use crate::log::LogWriter;

/// What an in-process operator gets to run one try.
pub struct OperatorContext {
    pub dag_id: String,
    pub task_id: String,
    pub run_id: String,
    pub try_number: i64,
    /// Arguments with templates rendered.
    pub args: serde_json::Map<String, serde_json::Value>,
    pub log: LogWriter,
    /// Cancelled on timeout or when the task is killed: stop and clean up.
    pub cancel: CancellationToken,
    pub store: Store,
}

/// How an in-process try ended.
#[derive(Debug, Clone, PartialEq)]
pub enum OperatorResult {
    /// Success, with an optional return value (pushed as XCom `return_value`).
    Success(Option<serde_json::Value>),
    Skipped(String),
    Failed(String),
}

pub type OperatorFuture = Pin<Box<dyn Future<Output = OperatorResult> + Send>>;

/// An operator that runs inside the process.
pub trait InProcessOperator: Send + Sync {
    fn run(&self, ctx: OperatorContext) -> OperatorFuture;
}

/// In-process operators by canonical name.
#[derive(Clone, Default)]
pub struct OperatorRuntime {
    operators: HashMap<String, Arc<dyn InProcessOperator>>,
}

impl OperatorRuntime {
    pub fn register(&mut self, name: &str, operator: Arc<dyn InProcessOperator>) {
        self.operators.insert(name.to_string(), operator);
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn InProcessOperator>> {
        self.operators.get(name).cloned()
    }
}
