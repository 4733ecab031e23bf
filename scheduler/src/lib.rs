//! The scheduler: reads the DAGs folder, creates runs from timetables, decides which task instances are ready
//! by their trigger rules, claims them within pools and limits, hands them to the executor, records their
//! ends with retries and timeouts, and adopts or fails the tries of schedulers that died.
//!
//! Several schedulers may share one PostgreSQL store: every state change is a compare-and-set and claims
//! skip rows another scheduler holds, so no task instance runs twice.

pub mod dag_processor;
pub mod evaluate;
pub mod metrics;
mod run;

pub use metrics::Metrics;
pub use run::{FinishedNotice, Scheduler, SchedulerOptions};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] engine::Error),
    #[error(transparent)]
    Worker(#[from] worker::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
