//! Run and task-instance states (Airflow's names) and every legal transition, in one place.
//!
//! The store never writes a state it did not get from [`next_task_state`] or [`next_run_state`], and every
//! write is a compare-and-set on the state read, so two schedulers can never both move the same row.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// How a try ended, as its runner reports it (the store turns it into a state by the task's retry policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Skipped,
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Skipped => "skipped",
            Outcome::Failed => "failed",
        }
    }
}

/// State of a task instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Created, waiting for its upstream tasks (Airflow shows `null`).
    None,
    Scheduled,
    Queued,
    Running,
    Success,
    Failed,
    Skipped,
    UpstreamFailed,
    UpForRetry,
    /// Cleared while running: the current try's outcome is ignored and the task runs again.
    Restarting,
    /// The task is no longer in the DAG version the run uses.
    Removed,
}

impl TaskState {
    pub const ALL: [TaskState; 11] = [
        TaskState::None,
        TaskState::Scheduled,
        TaskState::Queued,
        TaskState::Running,
        TaskState::Success,
        TaskState::Failed,
        TaskState::Skipped,
        TaskState::UpstreamFailed,
        TaskState::UpForRetry,
        TaskState::Restarting,
        TaskState::Removed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::None => "none",
            TaskState::Scheduled => "scheduled",
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Success => "success",
            TaskState::Failed => "failed",
            TaskState::Skipped => "skipped",
            TaskState::UpstreamFailed => "upstream_failed",
            TaskState::UpForRetry => "up_for_retry",
            TaskState::Restarting => "restarting",
            TaskState::Removed => "removed",
        }
    }

    /// Finished for good: only a clear or a manual mark changes it.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TaskState::Success
                | TaskState::Failed
                | TaskState::Skipped
                | TaskState::UpstreamFailed
                | TaskState::Removed
        )
    }

    /// Counts as "done" for trigger rules of downstream tasks.
    pub fn is_done_for_downstream(self) -> bool {
        matches!(
            self,
            TaskState::Success | TaskState::Failed | TaskState::Skipped | TaskState::UpstreamFailed
        )
    }

    /// The states whose try may be executing somewhere, for SQL: `state IN {EXECUTING_SQL}`.
    pub const EXECUTING_SQL: &'static str = "('queued', 'running', 'restarting')";

    /// Has a process (or an in-process operator) that may be executing.
    pub fn is_executing(self) -> bool {
        matches!(self, TaskState::Queued | TaskState::Running | TaskState::Restarting)
    }
}

impl fmt::Display for TaskState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TaskState {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        TaskState::ALL
            .into_iter()
            .find(|state| state.as_str() == text || (text == "null" && *state == TaskState::None))
            .ok_or_else(|| Error::invalid(format!("unknown task state `{text}`")))
    }
}

/// What happens to a task instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskEvent {
    /// Upstream rules are met (from `none`) or the retry delay passed (from `up_for_retry`).
    Schedule,
    /// Claimed within pool and concurrency limits, handed to an executor.
    Queue,
    /// Orphaned in `queued` (its scheduler died before starting it): back to `scheduled`.
    Requeue,
    /// The executor started it.
    Start,
    /// Finished successfully (from `queued` for tasks the scheduler completes itself, like `empty`).
    Succeed,
    /// Failed; `can_retry` when tries remain.
    Fail { can_retry: bool },
    /// The task asked to be skipped (e.g. exit code 99).
    Skip,
    /// Its trigger rule says skip.
    SkipByRule,
    /// Its trigger rule says upstream failed.
    UpstreamFailed,
    /// A mapped task could not be expanded (its XCom is missing or not a list, or too long).
    MapFailed,
    /// A user cleared it to run again.
    Clear,
    /// The try that was running when it was cleared has ended.
    RestartDone,
    /// The run ended or timed out under it.
    Terminate,
    /// A user set its state by hand.
    Mark(TaskState),
    /// Its task is gone from the DAG version.
    Remove,
}

impl fmt::Display for TaskEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// The single transition function for task instances.
pub fn next_task_state(from: TaskState, event: TaskEvent) -> Result<TaskState> {
    use TaskEvent as E;
    use TaskState as S;
    let to = match (from, event) {
        (S::None | S::UpForRetry, E::Schedule) => S::Scheduled,
        (S::Scheduled, E::Queue) => S::Queued,
        (S::Queued, E::Requeue) => S::Scheduled,
        (S::Queued, E::Start) => S::Running,
        (S::Queued | S::Running, E::Succeed) => S::Success,
        (S::Queued | S::Running, E::Fail { can_retry: true }) => S::UpForRetry,
        (S::Queued | S::Running, E::Fail { can_retry: false }) => S::Failed,
        (S::Running, E::Skip) => S::Skipped,
        (S::None, E::SkipByRule) => S::Skipped,
        (S::None, E::UpstreamFailed) => S::UpstreamFailed,
        (S::None, E::MapFailed) => S::Failed,
        (S::Running | S::Restarting, E::Clear) => S::Restarting,
        (_, E::Clear) => S::None,
        (S::Restarting, E::RestartDone) => S::None,
        (S::Running | S::Restarting, E::Terminate) => S::Failed,
        (S::None | S::Scheduled | S::Queued | S::UpForRetry, E::Terminate) => S::Skipped,
        (_, E::Mark(target)) if target.is_finished() && target != S::Removed => target,
        (
            S::None | S::Scheduled | S::UpForRetry | S::Success | S::Failed | S::Skipped | S::UpstreamFailed,
            E::Remove,
        ) => S::Removed,
        _ => {
            return Err(Error::IllegalTransition {
                what: "task instance",
                from: from.to_string(),
                event: event.to_string(),
            })
        }
    };
    Ok(to)
}

/// State of a DAG run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Queued,
    Running,
    Success,
    Failed,
}

impl RunState {
    pub const ALL: [RunState; 4] = [RunState::Queued, RunState::Running, RunState::Success, RunState::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Success => "success",
            RunState::Failed => "failed",
        }
    }

    pub fn is_finished(self) -> bool {
        matches!(self, RunState::Success | RunState::Failed)
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        RunState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| {
                Error::invalid(format!(
                    "unknown run state `{text}`; expected queued, running, success or failed"
                ))
            })
    }
}

/// What happens to a DAG run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunEvent {
    /// Under max_active_runs: it starts.
    Start,
    /// All its tasks finished; `success` when its leaves succeeded or were skipped.
    Finish { success: bool },
    /// dagrun_timeout passed.
    TimedOut,
    /// Tasks were cleared: it runs again.
    Clear,
    /// A user set its state.
    Mark(RunState),
}

impl fmt::Display for RunEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

/// The single transition function for DAG runs.
pub fn next_run_state(from: RunState, event: RunEvent) -> Result<RunState> {
    use RunEvent as E;
    use RunState as S;
    let to = match (from, event) {
        (S::Queued, E::Start) => S::Running,
        (S::Running, E::Finish { success: true }) => S::Success,
        (S::Running, E::Finish { success: false }) => S::Failed,
        (S::Queued | S::Running, E::TimedOut) => S::Failed,
        (_, E::Clear) => S::Queued,
        (_, E::Mark(target)) => target,
        _ => {
            return Err(Error::IllegalTransition {
                what: "dag run",
                from: from.to_string(),
                event: event.to_string(),
            })
        }
    };
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use TaskState as S;

    #[test]
    fn the_sql_list_of_executing_states_is_is_executing() {
        for state in TaskState::ALL {
            let listed = TaskState::EXECUTING_SQL.contains(&format!("'{}'", state.as_str()));
            assert_eq!(listed, state.is_executing(), "{state}");
        }
    }

    fn all_events() -> Vec<TaskEvent> {
        let mut events = vec![
            TaskEvent::Schedule,
            TaskEvent::Queue,
            TaskEvent::Requeue,
            TaskEvent::Start,
            TaskEvent::Succeed,
            TaskEvent::Fail { can_retry: true },
            TaskEvent::Fail { can_retry: false },
            TaskEvent::Skip,
            TaskEvent::SkipByRule,
            TaskEvent::UpstreamFailed,
            TaskEvent::Clear,
            TaskEvent::RestartDone,
            TaskEvent::Terminate,
            TaskEvent::Remove,
        ];
        events.extend(TaskState::ALL.into_iter().map(TaskEvent::Mark));
        events
    }

    /// The whole table, written out independently of the match above.
    fn expected(from: TaskState, event: TaskEvent) -> Option<TaskState> {
        use TaskEvent as E;
        let legal: &[(TaskState, TaskEvent, TaskState)] = &[
            (S::None, E::Schedule, S::Scheduled),
            (S::UpForRetry, E::Schedule, S::Scheduled),
            (S::Scheduled, E::Queue, S::Queued),
            (S::Queued, E::Requeue, S::Scheduled),
            (S::Queued, E::Start, S::Running),
            (S::Queued, E::Succeed, S::Success),
            (S::Running, E::Succeed, S::Success),
            (S::Queued, E::Fail { can_retry: true }, S::UpForRetry),
            (S::Running, E::Fail { can_retry: true }, S::UpForRetry),
            (S::Queued, E::Fail { can_retry: false }, S::Failed),
            (S::Running, E::Fail { can_retry: false }, S::Failed),
            (S::Running, E::Skip, S::Skipped),
            (S::None, E::SkipByRule, S::Skipped),
            (S::None, E::UpstreamFailed, S::UpstreamFailed),
            (S::Restarting, E::RestartDone, S::None),
            (S::Running, E::Terminate, S::Failed),
            (S::Restarting, E::Terminate, S::Failed),
            (S::None, E::Terminate, S::Skipped),
            (S::Scheduled, E::Terminate, S::Skipped),
            (S::Queued, E::Terminate, S::Skipped),
            (S::UpForRetry, E::Terminate, S::Skipped),
        ];
        if let Some((_, _, to)) = legal.iter().find(|(f, e, _)| *f == from && *e == event) {
            return Some(*to);
        }
        match event {
            E::Clear if matches!(from, S::Running | S::Restarting) => Some(S::Restarting),
            E::Clear => Some(S::None),
            E::Mark(target) if matches!(target, S::Success | S::Failed | S::Skipped | S::UpstreamFailed) => {
                Some(target)
            }
            E::Remove if !matches!(from, S::Queued | S::Running | S::Restarting | S::Removed) => Some(S::Removed),
            _ => None,
        }
    }

    #[test]
    fn task_transition_table_is_exactly_as_specified() {
        let mut legal = 0;
        for from in TaskState::ALL {
            for event in all_events() {
                let got = next_task_state(from, event).ok();
                assert_eq!(got, expected(from, event), "{from} on {event}");
                legal += usize::from(got.is_some());
            }
        }
        assert_eq!(legal, 21 + 11 + 11 * 4 + 7);
    }

    #[test]
    fn run_transition_table() {
        for from in RunState::ALL {
            assert_eq!(next_run_state(from, RunEvent::Start).is_ok(), from == RunState::Queued);
            assert_eq!(
                next_run_state(from, RunEvent::Finish { success: true }).is_ok(),
                from == RunState::Running
            );
            assert_eq!(next_run_state(from, RunEvent::TimedOut).is_ok(), !from.is_finished());
            assert_eq!(next_run_state(from, RunEvent::Clear).unwrap(), RunState::Queued);
            for target in RunState::ALL {
                assert_eq!(next_run_state(from, RunEvent::Mark(target)).unwrap(), target);
            }
        }
    }

    #[test]
    fn states_round_trip_through_text() {
        for state in TaskState::ALL {
            assert_eq!(state.as_str().parse::<TaskState>().unwrap(), state);
        }
        for state in RunState::ALL {
            assert_eq!(state.as_str().parse::<RunState>().unwrap(), state);
        }
        assert!("bogus".parse::<TaskState>().is_err());
    }

    proptest! {
        /// Whatever happens, a finished task only leaves its state through a clear, a mark or removal.
        #[test]
        fn finished_states_are_sticky(events in proptest::collection::vec(0usize..25, 1..60)) {
            let all = all_events();
            let mut state = TaskState::None;
            for index in events {
                let event = all[index % all.len()];
                if let Ok(next) = next_task_state(state, event) {
                    if state.is_finished() && next != state {
                        prop_assert!(matches!(event, TaskEvent::Clear | TaskEvent::Mark(_) | TaskEvent::Remove));
                    }
                    state = next;
                }
            }
        }
    }
}
