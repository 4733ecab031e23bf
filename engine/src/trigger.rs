//! Airflow's trigger rules: given the states of a task's upstream tasks, may it run now, must it wait, or is
//! it skipped / upstream_failed?

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::state::TaskState;
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TriggerRule {
    #[default]
    AllSuccess,
    AllFailed,
    AllDone,
    AllDoneMinOneSuccess,
    /// `all_done`, but with setup tasks upstream at least one of them must have succeeded (a teardown's rule).
    AllDoneSetupSuccess,
    AllSkipped,
    OneSuccess,
    OneFailed,
    OneDone,
    NoneFailed,
    NoneFailedMinOneSuccess,
    NoneSkipped,
    Always,
}

impl TriggerRule {
    pub const ALL: [TriggerRule; 13] = [
        TriggerRule::AllSuccess,
        TriggerRule::AllFailed,
        TriggerRule::AllDone,
        TriggerRule::AllDoneMinOneSuccess,
        TriggerRule::AllDoneSetupSuccess,
        TriggerRule::AllSkipped,
        TriggerRule::OneSuccess,
        TriggerRule::OneFailed,
        TriggerRule::OneDone,
        TriggerRule::NoneFailed,
        TriggerRule::NoneFailedMinOneSuccess,
        TriggerRule::NoneSkipped,
        TriggerRule::Always,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TriggerRule::AllSuccess => "all_success",
            TriggerRule::AllFailed => "all_failed",
            TriggerRule::AllDone => "all_done",
            TriggerRule::AllDoneMinOneSuccess => "all_done_min_one_success",
            TriggerRule::AllDoneSetupSuccess => "all_done_setup_success",
            TriggerRule::AllSkipped => "all_skipped",
            TriggerRule::OneSuccess => "one_success",
            TriggerRule::OneFailed => "one_failed",
            TriggerRule::OneDone => "one_done",
            TriggerRule::NoneFailed => "none_failed",
            TriggerRule::NoneFailedMinOneSuccess => "none_failed_min_one_success",
            TriggerRule::NoneSkipped => "none_skipped",
            TriggerRule::Always => "always",
        }
    }
}

impl fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TriggerRule {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        // Airflow 2 spelled one rule differently before it was renamed.
        let text = if text == "none_failed_or_skipped" {
            "none_failed_min_one_success"
        } else {
            text
        };
        TriggerRule::ALL
            .into_iter()
            .find(|rule| rule.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = TriggerRule::ALL.iter().map(|rule| rule.as_str()).collect();
                Error::invalid(format!(
                    "unknown trigger rule `{text}`; expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// How many upstream tasks are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UpstreamCounts {
    pub total: usize,
    pub success: usize,
    pub failed: usize,
    pub upstream_failed: usize,
    pub skipped: usize,
    /// Setup tasks among them, and how many of those succeeded or were skipped.
    pub setup: usize,
    pub setup_success: usize,
    pub setup_skipped: usize,
}

impl UpstreamCounts {
    pub fn from_states(states: impl IntoIterator<Item = TaskState>) -> Self {
        Self::from_upstream(states.into_iter().map(|state| (state, false)))
    }

    /// From each upstream task's state and whether it is a setup task.
    pub fn from_upstream(upstream: impl IntoIterator<Item = (TaskState, bool)>) -> Self {
        let mut counts = UpstreamCounts::default();
        for (state, is_setup) in upstream {
            if is_setup && state != TaskState::Removed {
                counts.setup += 1;
                match state {
                    TaskState::Success => counts.setup_success += 1,
                    TaskState::Skipped => counts.setup_skipped += 1,
                    _ => {}
                }
            }
            // A removed upstream no longer exists for its downstream tasks.
            if state == TaskState::Removed {
                continue;
            }
            counts.total += 1;
            match state {
                TaskState::Success => counts.success += 1,
                TaskState::Failed => counts.failed += 1,
                TaskState::UpstreamFailed => counts.upstream_failed += 1,
                TaskState::Skipped => counts.skipped += 1,
                _ => {}
            }
        }
        counts
    }

    fn done(&self) -> usize {
        self.success + self.failed + self.upstream_failed + self.skipped
    }

    fn all_done(&self) -> bool {
        self.done() == self.total
    }

    fn any_failed(&self) -> usize {
        self.failed + self.upstream_failed
    }
}

/// What a trigger rule decides for a task in state `none`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Wait,
    Run,
    Skip,
    UpstreamFailed,
}

/// Evaluates a trigger rule as Airflow's TriggerRuleDep does (with `flag_upstream_failed`).
pub fn evaluate(rule: TriggerRule, counts: UpstreamCounts) -> Decision {
    use Decision::*;
    use TriggerRule as R;
    if counts.total == 0 {
        return Run;
    }
    let all_done = counts.all_done();
    match rule {
        R::Always => Run,
        R::AllSuccess => {
            if counts.any_failed() > 0 {
                UpstreamFailed
            } else if counts.skipped > 0 {
                Skip
            } else if counts.success == counts.total {
                Run
            } else {
                Wait
            }
        }
        R::AllFailed => {
            if counts.success + counts.skipped > 0 {
                Skip
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
        R::AllDone => {
            if all_done {
                Run
            } else {
                Wait
            }
        }
        // As Airflow: setups upstream that were all skipped skip it; none succeeded fails it upstream.
        R::AllDoneSetupSuccess => {
            if !all_done {
                Wait
            } else if counts.setup > 0 && counts.setup_skipped >= counts.setup {
                Skip
            } else if counts.setup > 0 && counts.setup_success == 0 {
                UpstreamFailed
            } else {
                Run
            }
        }
        R::AllDoneMinOneSuccess => {
            if !all_done {
                Wait
            } else if counts.success > 0 {
                Run
            } else {
                Skip
            }
        }
        R::AllSkipped => {
            if counts.success + counts.any_failed() > 0 {
                Skip
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
        R::OneSuccess => {
            if counts.success > 0 {
                Run
            } else if !all_done {
                Wait
            } else if counts.skipped == counts.total {
                Skip
            } else {
                UpstreamFailed
            }
        }
        R::OneFailed => {
            if counts.any_failed() > 0 {
                Run
            } else if all_done {
                Skip
            } else {
                Wait
            }
        }
        R::OneDone => {
            if counts.success + counts.failed > 0 {
                Run
            } else if all_done {
                Skip
            } else {
                Wait
            }
        }
        R::NoneFailed => {
            if counts.any_failed() > 0 {
                UpstreamFailed
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
        R::NoneFailedMinOneSuccess => {
            if counts.any_failed() > 0 {
                UpstreamFailed
            } else if !all_done {
                Wait
            } else if counts.success > 0 {
                Run
            } else {
                Skip
            }
        }
        R::NoneSkipped => {
            if counts.skipped > 0 {
                Skip
            } else if all_done {
                Run
            } else {
                Wait
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use Decision::*;
    use TaskState as S;

    fn decide(rule: TriggerRule, states: &[TaskState]) -> Decision {
        evaluate(rule, UpstreamCounts::from_states(states.iter().copied()))
    }

    #[test]
    fn each_rule_on_typical_upstreams() {
        use TriggerRule as R;
        let cases: &[(TriggerRule, &[TaskState], Decision)] = &[
            (R::AllSuccess, &[S::Success, S::Success], Run),
            (R::AllSuccess, &[S::Success, S::Running], Wait),
            (R::AllSuccess, &[S::Failed, S::Running], UpstreamFailed),
            (R::AllSuccess, &[S::Skipped, S::Success], Skip),
            (R::AllFailed, &[S::Failed, S::UpstreamFailed], Run),
            (R::AllFailed, &[S::Failed, S::Success], Skip),
            (R::AllFailed, &[S::Failed, S::Running], Wait),
            (R::AllDone, &[S::Failed, S::Skipped, S::Success], Run),
            (R::AllDone, &[S::Failed, S::UpForRetry], Wait),
            (R::AllDoneSetupSuccess, &[S::Failed, S::Success], Run),
            (R::AllDoneSetupSuccess, &[S::Failed, S::Running], Wait),
            (R::AllDoneMinOneSuccess, &[S::Failed, S::Success], Run),
            (R::AllDoneMinOneSuccess, &[S::Failed, S::Skipped], Skip),
            (R::AllSkipped, &[S::Skipped, S::Skipped], Run),
            (R::AllSkipped, &[S::Skipped, S::Success], Skip),
            (R::AllSkipped, &[S::Skipped, S::Queued], Wait),
            (R::OneSuccess, &[S::Success, S::Running], Run),
            (R::OneSuccess, &[S::Failed, S::Running], Wait),
            (R::OneSuccess, &[S::Failed, S::Skipped], UpstreamFailed),
            (R::OneSuccess, &[S::Skipped, S::Skipped], Skip),
            (R::OneFailed, &[S::Failed, S::Running], Run),
            (R::OneFailed, &[S::Success, S::Skipped], Skip),
            (R::OneDone, &[S::Failed, S::Running], Run),
            (R::OneDone, &[S::Skipped, S::Skipped], Skip),
            (R::OneDone, &[S::Skipped, S::Running], Wait),
            (R::NoneFailed, &[S::Skipped, S::Success], Run),
            (R::NoneFailed, &[S::UpstreamFailed, S::Running], UpstreamFailed),
            (R::NoneFailedMinOneSuccess, &[S::Skipped, S::Success], Run),
            (R::NoneFailedMinOneSuccess, &[S::Skipped, S::Skipped], Skip),
            (R::NoneFailedMinOneSuccess, &[S::Failed, S::Success], UpstreamFailed),
            (R::NoneSkipped, &[S::Failed, S::Success], Run),
            (R::NoneSkipped, &[S::Skipped, S::Running], Skip),
            (R::Always, &[S::Running, S::None], Run),
            (R::AllSuccess, &[S::Success, S::Removed], Run),
        ];
        for (rule, states, want) in cases {
            assert_eq!(decide(*rule, states), *want, "{rule} on {states:?}");
        }
    }

    #[test]
    fn a_teardown_needs_one_of_its_setups_to_have_succeeded() {
        let teardown = |upstream: &[(TaskState, bool)]| {
            evaluate(
                TriggerRule::AllDoneSetupSuccess,
                UpstreamCounts::from_upstream(upstream.iter().copied()),
            )
        };
        // setup succeeded, work failed: the teardown runs
        assert_eq!(teardown(&[(S::Success, true), (S::Failed, false)]), Run);
        // one of two setups succeeded
        assert_eq!(
            teardown(&[(S::Failed, true), (S::Success, true), (S::UpstreamFailed, false)]),
            Run
        );
        // no setup succeeded: nothing to tear down
        assert_eq!(
            teardown(&[(S::Failed, true), (S::UpstreamFailed, false)]),
            UpstreamFailed
        );
        // every setup skipped
        assert_eq!(teardown(&[(S::Skipped, true), (S::Skipped, false)]), Skip);
        // no setups upstream: as all_done
        assert_eq!(teardown(&[(S::Failed, false), (S::Skipped, false)]), Run);
        assert_eq!(teardown(&[(S::Success, true), (S::Running, false)]), Wait);
    }

    #[test]
    fn no_upstream_always_runs_and_names_parse() {
        for rule in TriggerRule::ALL {
            assert_eq!(decide(rule, &[]), Run);
            assert_eq!(rule.as_str().parse::<TriggerRule>().unwrap(), rule);
        }
        let err = "all_sucess".parse::<TriggerRule>().unwrap_err().to_string();
        assert!(err.contains("all_success"), "{err}");
    }

    fn any_state() -> impl Strategy<Value = TaskState> {
        proptest::sample::select(TaskState::ALL.to_vec())
    }

    proptest! {
        /// When every upstream is done, no rule waits; a decision taken early is never contradicted later: a rule
        /// that said Run still says Run once the remaining upstreams finish, and one that said no never says Run.
        #[test]
        fn decisions_are_final_and_complete(states in proptest::collection::vec(any_state(), 1..8),
                                            finals in proptest::collection::vec(
                                                proptest::sample::select(vec![S::Success, S::Failed, S::Skipped, S::UpstreamFailed]), 8)) {
            let finished: Vec<TaskState> = states.iter().zip(&finals)
                .map(|(s, f)| if s.is_done_for_downstream() || *s == S::Removed { *s } else { *f })
                .collect();
            for rule in TriggerRule::ALL {
                let now = decide(rule, &states);
                let later = decide(rule, &finished);
                prop_assert_ne!(later, Wait, "{} waits with all upstream done", rule);
                if now == Run {
                    prop_assert_eq!(later, Run, "{} changed its mind", rule);
                }
                if matches!(now, Skip | UpstreamFailed) {
                    prop_assert_ne!(later, Run, "{} would run after deciding not to", rule);
                }
            }
        }
    }
}
