//! Executors and the task runner: render a task's templates, run its operator (a supervised process for
//! `bash`, in-process for operators that register an [`operator::InProcessOperator`]), capture its log per
//! try, and report the outcome and XCom back to the scheduler.
//!
//! This crate never decides states: it reports what happened; the scheduler turns that into transitions.
//! It knows nothing of HTTP or blockchains.

pub mod executor;
pub mod log;
pub mod operator;
pub mod supervise;

pub use executor::{ExecutorEvent, ExecutorOptions, LaunchRequest, LocalExecutor, Outcome, TaskReport};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error(transparent)]
    Engine(#[from] engine::Error),
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
