//! The scheduler: reads the DAGs folder, creates runs from timetables, decides which task instances are ready
//! by their trigger rules, claims them within pools and limits, hands them to the executor, records their
//! ends with retries and timeouts, and adopts or fails the tries of schedulers that died.
//!
//! Several schedulers may share one PostgreSQL store: every state change is a compare-and-set and claims
//! skip rows another scheduler holds, so no task instance runs twice.

mod claim;
pub mod dag_processor;
pub mod evaluate;
mod events;
pub mod git_sync;
mod main_loop;
pub mod metrics;
mod options;
mod orphans;
mod runs;

pub use events::FinishedNotice;
pub use main_loop::Scheduler;
pub use metrics::Metrics;
pub use options::{SchedulerOptions, DEFAULT_SAMPLE_RETENTION};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Engine(#[from] engine::Error),
    #[error(transparent)]
    Worker(#[from] worker::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
