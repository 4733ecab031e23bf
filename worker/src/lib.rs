//! Running tries: executors behind one [`executor::Executor`] trait, the task runner behind
//! `dagctl tasks run` with its client of the task execution API, the built-in operators (`bash`, `empty`)
//! and task logs behind one [`log::TaskLogs`] trait.
//!
//! This crate never decides states: runners report outcomes to the engine over the execution API, and
//! executors tell the scheduler when a runner is gone. It knows nothing of blockchains.

pub mod client;
pub mod execution;
pub mod executor;
pub mod host;
pub mod log;
pub mod operator;
pub mod operators;
pub mod runner;

pub use executor::{
    Adoption, Executor, ExecutorEvent, KubeExecutor, KubeOptions, LaunchRequest, LocalExecutor, LocalOptions,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error(transparent)]
    Engine(#[from] engine::Error),
    #[error(transparent)]
    Client(#[from] client::ClientError),
    #[error("{0}")]
    Operator(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
