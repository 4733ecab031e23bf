//! Operators: one registration each ([`Operators::add`]) gives the engine the argument check it runs when a
//! DAG file is loaded ([`Operator::definition`]) and the runner the code it runs for a try
//! ([`Operator::run`]). `bash` and `empty` are registered like any other (e.g. `chain.*`).
//!
//! Arguments arrive rendered; an operator reads them as its typed argument struct with
//! [`OperatorContext::args_as`], the same struct its definition checked when the file was loaded.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use engine::operators::{OperatorArgs, OperatorDef, OperatorRegistry};
use engine::spec::TaskSpec;
use serde_json::Value as Json;
use tokio_util::sync::CancellationToken;

use crate::client::ExecutionClient;
use crate::runner::TaskLog;

/// What an operator gets to run one try.
pub struct OperatorContext {
    pub dag_id: String,
    pub task_id: String,
    /// The instance of a mapped task (-1: the task is not mapped).
    pub map_index: i64,
    pub run_id: String,
    pub try_number: i64,
    /// The task as defined (`do_xcom_push`, `owner`, timeouts ...).
    pub task: TaskSpec,
    /// Arguments with templates rendered.
    pub args: serde_json::Map<String, Json>,
    /// XCom values of the run when the try started, by (task id, key).
    pub xcoms: HashMap<(String, String), Json>,
    /// Airflow's `AIRFLOW_CTX_*` variables, for child processes (never the try's token).
    pub env: Vec<(String, String)>,
    pub log: TaskLog,
    /// Cancelled on timeout, when the try is stopped from outside, or on SIGTERM: stop and clean up.
    pub cancel: CancellationToken,
    /// The engine, for what an operator records there (e.g. networks); holds only this try's token.
    pub api: ExecutionClient,
}

impl OperatorContext {
    /// The rendered arguments as the operator's typed struct.
    pub fn args_as<A: OperatorArgs>(&self) -> Result<A, String> {
        engine::operators::from_rendered(&self.args)
    }
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

/// An operator: how its arguments are checked, and what it does for one try (in the runner's process).
pub trait Operator: Send + Sync {
    /// Its name, Airflow paths, argument check and whether the scheduler completes it itself.
    fn definition(&self) -> OperatorDef;
    fn run(&self, ctx: OperatorContext) -> OperatorFuture;
}

/// The operators of this binary.
#[derive(Clone)]
pub struct Operators {
    operators: HashMap<String, Arc<dyn Operator>>,
    registry: OperatorRegistry,
}

impl Default for Operators {
    fn default() -> Self {
        Operators {
            operators: HashMap::new(),
            registry: OperatorRegistry::empty(),
        }
    }
}

impl Operators {
    /// The built-in operators: `bash` and `empty`.
    pub fn builtin() -> Operators {
        let mut operators = Operators::default();
        operators.add(Arc::new(crate::operators::bash::Bash));
        operators.add(Arc::new(crate::operators::empty::Empty));
        operators
    }

    /// Registers an operator (a later one of the same name replaces the earlier).
    pub fn add(&mut self, operator: Arc<dyn Operator>) {
        let definition = operator.definition();
        self.operators.insert(definition.name.to_string(), operator);
        self.registry.register(definition);
    }

    /// The engine's view: argument checks by name and Airflow path.
    pub fn registry(&self) -> &OperatorRegistry {
        &self.registry
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Operator>> {
        self.operators.get(name).cloned()
    }
}
