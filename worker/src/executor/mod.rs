//! Executors start, stop, watch and adopt task runners; the scheduler talks to them only through
//! [`Executor`]. An executor never decides a state: runners report their tries' ends through the task
//! execution API, and the executor tells the scheduler when a runner is gone so a try whose runner died
//! without reporting is failed (and retried by policy).

pub mod host_link;
pub mod kubernetes;
pub mod local;

use std::time::Duration;

use engine::store::TiRow;

pub use kubernetes::{KubeExecutor, KubeOptions};
pub use local::{LocalExecutor, LocalOptions};

/// Everything an executor needs to start one try's runner.
#[derive(Debug, Clone)]
pub struct LaunchRequest {
    /// The task instance, already `running` with this try's number.
    pub ti: TiRow,
    /// The task's `execution_timeout` (the runner enforces it; the executor stops a runner that overruns it
    /// by far).
    pub execution_timeout: Option<Duration>,
    /// The task's `executor_config` (where and with what its pod runs; the local executor has no use for it).
    pub executor_config: Option<engine::executor_config::ExecutorConfig>,
}

/// What an executor tells the scheduler.
#[derive(Debug, Clone)]
pub enum ExecutorEvent {
    /// A runner was started (with its pid when it is a local process).
    Started { ti_id: i64, pid: Option<u32> },
    /// A runner is gone; `detail` says how it ended (exit status, the tail of its stderr).
    Exited {
        ti_id: i64,
        try_number: i64,
        /// The runner's pid when it was a local process (a try is held by the first runner that started it).
        pid: Option<u32>,
        detail: String,
    },
}

/// What adopting a try found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adoption {
    /// Its runner lives and is now watched (an `Exited` event follows when it ends).
    Watching,
    /// Its runner is gone.
    Gone(String),
    /// It runs where this executor cannot see (another host).
    NotMine,
}

/// Runs task tries somewhere: local processes now, pods next.
pub trait Executor: Send + Sync {
    /// Free slots under the executor's parallelism.
    fn open_slots(&self) -> usize;
    /// Task instances whose runners this executor watches.
    fn running_ids(&self) -> Vec<i64>;
    fn running_count(&self) -> usize {
        self.running_ids().len()
    }
    /// Starts one try's runner.
    fn launch(&self, request: LaunchRequest);
    /// Stops a try's runner (SIGTERM, then SIGKILL after a grace period).
    fn cancel(&self, ti_id: i64);
    /// Stops every runner (at the end of a scoped run such as `dags test`).
    fn cancel_all(&self) {
        for ti_id in self.running_ids() {
            self.cancel(ti_id);
        }
    }
    /// Whether this executor can see the runner of a try another scheduler started (the local executor: a
    /// process on this host; the Kubernetes executor: a pod in its namespace).
    fn can_adopt(&self, ti: &TiRow) -> bool;
    /// Takes over a try that another scheduler started.
    fn adopt(&self, ti: &TiRow) -> Adoption;
    /// Whether a process of the engine (a scheduler) on `hostname` with `pid` lives, when this executor can
    /// tell (it runs on that host); `None` otherwise.
    fn engine_process_alive(&self, hostname: &str, pid: u32) -> Option<bool>;
    /// The execution API addresses of the other live engines: runners started from now on report to them when
    /// this engine is gone.
    fn set_peer_engines(&self, urls: Vec<String>);
}
