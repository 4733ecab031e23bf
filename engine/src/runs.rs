//! Asking for a run: the one place that turns a request (scheduled, manual from the CLI, API or UI, backfill,
//! `dags test`) into the [`NewRun`] the store creates. It validates what callers give (run ids, data interval
//! bounds) and derives the rest as Airflow does: the data interval from the DAG's timetable for a logical
//! date, `run_after`, and run ids like `scheduled__2026-01-01T00:00:00+00:00`.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::spec::DagSpec;
use crate::store::runs::{validate_manual_run_id, NewRun, RunType};
use crate::timetable::{DataInterval, Timetable};

/// Why a run request was refused. Faces map each to their own wording and status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunRequestError {
    /// A run id a user chose breaks Airflow's pattern or takes a prefix reserved for the scheduler.
    #[error("{0}")]
    RunId(String),
    /// Only one bound of a data interval was given.
    #[error("give both the start and the end of the data interval, or neither")]
    HalfInterval,
    /// The data interval starts after it ends.
    #[error("the data interval starts after it ends")]
    ReversedInterval,
    /// A data interval was given without a logical date.
    #[error("a data interval needs a logical date")]
    IntervalWithoutLogicalDate,
}

impl From<RunRequestError> for crate::Error {
    fn from(err: RunRequestError) -> Self {
        crate::Error::invalid(err.to_string())
    }
}

/// A run id a user chose, checked: Airflow's pattern, 1 to 250 characters, not one of the prefixes the
/// engine gives its own runs (see [`validate_manual_run_id`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManualRunId(String);

impl ManualRunId {
    pub fn new(run_id: impl Into<String>) -> Result<ManualRunId, RunRequestError> {
        let run_id = run_id.into();
        validate_manual_run_id(&run_id).map_err(|err| RunRequestError::RunId(err.to_string()))?;
        Ok(ManualRunId(run_id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ManualRunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who or what asks for a run (Airflow's `DagRunTriggeredByType`, as stored in `triggered_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggeredBy {
    Cli,
    RestApi,
    Ui,
    Test,
    Timetable,
    Backfill,
    Asset,
}

impl TriggeredBy {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggeredBy::Cli => "cli",
            TriggeredBy::RestApi => "rest_api",
            TriggeredBy::Ui => "ui",
            TriggeredBy::Test => "test",
            TriggeredBy::Timetable => "timetable",
            TriggeredBy::Backfill => "backfill",
            TriggeredBy::Asset => "asset",
        }
    }
}

/// What kind of run is asked for, with what the caller decides about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunKind {
    /// A run triggered by hand. Without a run id it gets `manual__<logical date or run_after>`; with a logical
    /// date and no interval bounds, the interval the DAG's timetable gives that date; `run_after` defaults to
    /// the request's `now`.
    Manual {
        run_id: Option<ManualRunId>,
        logical_date: Option<DateTime<Utc>>,
        data_interval_start: Option<DateTime<Utc>>,
        data_interval_end: Option<DateTime<Utc>>,
        run_after: Option<DateTime<Utc>>,
    },
    /// One interval of a backfill: `backfill__<start>`, logical date the start, due at the end.
    Backfill { interval: DataInterval },
    /// The run a timetable asks for: `scheduled__<start>`, logical date the start, due at the end.
    Scheduled { interval: DataInterval },
    /// `dags test`: a manual run `test__<now>` at the logical date (default: now), due at that date.
    Test { logical_date: Option<DateTime<Utc>> },
    /// The run asset events ask for: `asset_triggered__<now>`, no logical date (as Airflow 3), due now.
    AssetTriggered,
}

/// A request for a run: its kind and what every run carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    pub kind: RunKind,
    pub triggered_by: TriggeredBy,
    pub conf: serde_json::Map<String, serde_json::Value>,
    /// The user who asked, when one did.
    pub user: Option<String>,
    pub note: Option<String>,
    /// The time of the request: the default `run_after` of manual runs and logical date of test runs.
    pub now: DateTime<Utc>,
}

impl RunRequest {
    /// A request with an empty conf, no user and no note.
    pub fn new(kind: RunKind, triggered_by: TriggeredBy, now: DateTime<Utc>) -> RunRequest {
        RunRequest {
            kind,
            triggered_by,
            conf: Default::default(),
            user: None,
            note: None,
            now,
        }
    }

    /// Checks the request and derives the run for `spec` (run id, logical date, data interval, `run_after`,
    /// run type). Writes nothing: give the result to `Store::create_run` (or `create_scheduled_run`).
    pub fn new_run(self, spec: &DagSpec) -> Result<NewRun<'_>, RunRequestError> {
        let interval_for = |date: DateTime<Utc>| {
            Timetable::new(&spec.schedule, &spec.timezone)
                .ok()
                .map(|timetable| timetable.interval_for_logical_date(date))
        };
        // A run that covers a whole interval: logical date its start, due at its end.
        let of_interval = |run_type: RunType, interval: DataInterval| {
            if interval.start > interval.end {
                return Err(RunRequestError::ReversedInterval);
            }
            let run_id = run_type.run_id(interval.start);
            Ok((run_type, run_id, Some(interval.start), Some(interval), interval.end))
        };
        let (run_type, run_id, logical_date, data_interval, run_after) = match self.kind {
            RunKind::Manual {
                run_id,
                logical_date,
                data_interval_start,
                data_interval_end,
                run_after,
            } => {
                let data_interval = match (data_interval_start, data_interval_end) {
                    (Some(start), Some(end)) if start <= end => Some(DataInterval { start, end }),
                    (Some(_), Some(_)) => return Err(RunRequestError::ReversedInterval),
                    (None, None) => logical_date.and_then(interval_for),
                    _ => return Err(RunRequestError::HalfInterval),
                };
                if data_interval.is_some() && logical_date.is_none() {
                    return Err(RunRequestError::IntervalWithoutLogicalDate);
                }
                let run_after = run_after.unwrap_or(self.now);
                let run_id = match run_id {
                    Some(run_id) => run_id.0,
                    None => RunType::Manual.run_id(logical_date.unwrap_or(run_after)),
                };
                (RunType::Manual, run_id, logical_date, data_interval, run_after)
            }
            RunKind::Backfill { interval } => of_interval(RunType::Backfill, interval)?,
            RunKind::Scheduled { interval } => of_interval(RunType::Scheduled, interval)?,
            RunKind::Test { logical_date } => {
                let date = logical_date.unwrap_or(self.now);
                let run_id = format!("test__{}", self.now.to_rfc3339_opts(SecondsFormat::Micros, true));
                (RunType::Manual, run_id, Some(date), interval_for(date), date)
            }
            RunKind::AssetTriggered => {
                let run_id = RunType::AssetTriggered.run_id(self.now);
                (RunType::AssetTriggered, run_id, None, None, self.now)
            }
        };
        Ok(NewRun {
            spec,
            run_id: Some(run_id),
            run_type,
            logical_date,
            data_interval,
            run_after,
            conf: self.conf,
            triggered_by: self.triggered_by.as_str().to_string(),
            triggering_user: self.user,
            note: self.note,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::timetable::Schedule;

    fn dag(schedule: &str) -> DagSpec {
        DagSpec {
            dag_id: "d".into(),
            fileloc: "d.yml".into(),
            description: None,
            schedule: Schedule::parse(Some(schedule)).unwrap(),
            timezone: "UTC".into(),
            start_date: None,
            end_date: None,
            catchup: false,
            max_active_runs: 16,
            max_active_tasks: 16,
            dagrun_timeout: None,
            tags: vec![],
            params: Default::default(),
            is_paused_upon_creation: None,
            owner: "airflow".into(),
            doc_md: None,
            render_template_as_native_obj: false,
            default_args: Default::default(),
            tasks: vec![],
        }
    }

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, h, m, 0).unwrap()
    }

    fn hour(h: u32) -> DataInterval {
        DataInterval {
            start: at(h, 0),
            end: at(h + 1, 0),
        }
    }

    fn manual(
        run_id: Option<&str>,
        logical_date: Option<DateTime<Utc>>,
        start: Option<DateTime<Utc>>,
        end: Option<DateTime<Utc>>,
    ) -> RunRequest {
        let kind = RunKind::Manual {
            run_id: run_id.map(|id| ManualRunId::new(id).unwrap()),
            logical_date,
            data_interval_start: start,
            data_interval_end: end,
            run_after: None,
        };
        RunRequest::new(kind, TriggeredBy::RestApi, at(12, 34))
    }

    #[test]
    fn a_manual_run_without_a_logical_date_is_named_after_run_after() {
        let hourly = dag("@hourly");
        let mut request = manual(None, None, None, None);
        request.user = Some("ada".into());
        request.note = Some("why".into());
        request.conf.insert("n".into(), 4.into());
        let run = request.new_run(&hourly).unwrap();
        assert_eq!(run.run_id.as_deref(), Some("manual__2026-03-01T12:34:00+00:00"));
        assert_eq!(run.run_type, RunType::Manual);
        assert_eq!(run.logical_date, None);
        assert_eq!(run.data_interval, None);
        assert_eq!(run.run_after, at(12, 34));
        assert_eq!(run.triggered_by, "rest_api");
        assert_eq!(run.triggering_user.as_deref(), Some("ada"));
        assert_eq!(run.note.as_deref(), Some("why"));
        assert_eq!(run.conf["n"], 4);
    }

    #[test]
    fn a_manual_run_with_a_logical_date_gets_the_timetable_s_interval() {
        let hourly = dag("@hourly");
        let manual_only = dag("null");
        let run = manual(None, Some(at(10, 30)), None, None).new_run(&hourly).unwrap();
        assert_eq!(run.run_id.as_deref(), Some("manual__2026-03-01T10:30:00+00:00"));
        assert_eq!(run.logical_date, Some(at(10, 30)));
        assert_eq!(run.data_interval, Some(hour(10)));
        assert_eq!(run.run_after, at(12, 34), "run_after is the request's time");
        // Without a schedule the interval is the logical date itself.
        let run = manual(None, Some(at(10, 30)), None, None)
            .new_run(&manual_only)
            .unwrap();
        assert_eq!(
            run.data_interval,
            Some(DataInterval {
                start: at(10, 30),
                end: at(10, 30)
            })
        );
    }

    #[test]
    fn a_manual_run_keeps_its_run_id_interval_and_run_after() {
        let hourly = dag("@hourly");
        let mut request = manual(Some("by-hand"), Some(at(9, 0)), Some(at(1, 0)), Some(at(2, 0)));
        if let RunKind::Manual { run_after, .. } = &mut request.kind {
            *run_after = Some(at(3, 0));
        }
        let run = request.new_run(&hourly).unwrap();
        assert_eq!(run.run_id.as_deref(), Some("by-hand"));
        assert_eq!(run.logical_date, Some(at(9, 0)));
        assert_eq!(run.data_interval, Some(hour(1)), "given bounds win over the timetable");
        assert_eq!(run.run_after, at(3, 0));
        let empty = manual(None, Some(at(9, 0)), Some(at(1, 0)), Some(at(1, 0)));
        assert!(empty.new_run(&hourly).is_ok(), "an empty interval is fine");
    }

    #[test]
    fn manual_data_interval_bounds_are_checked() {
        let hourly = dag("@hourly");
        let half = [(Some(at(1, 0)), None), (None, Some(at(2, 0)))];
        for (start, end) in half {
            let err = manual(None, Some(at(1, 0)), start, end).new_run(&hourly).unwrap_err();
            assert_eq!(err, RunRequestError::HalfInterval);
        }
        let err = manual(None, Some(at(1, 0)), Some(at(2, 0)), Some(at(1, 0)))
            .new_run(&hourly)
            .unwrap_err();
        assert_eq!(err, RunRequestError::ReversedInterval);
        let err = manual(None, None, Some(at(1, 0)), Some(at(2, 0)))
            .new_run(&hourly)
            .unwrap_err();
        assert_eq!(err, RunRequestError::IntervalWithoutLogicalDate);
        // The engine's error carries the same message.
        assert_eq!(
            crate::Error::from(err).to_string(),
            "a data interval needs a logical date"
        );
    }

    #[test]
    fn manual_run_ids_follow_airflow_s_pattern_and_leave_the_engine_s_prefixes_alone() {
        for good in ["a", "run-1", "x.y~z:1+2_3", &"r".repeat(250)] {
            assert_eq!(ManualRunId::new(good).unwrap().as_str(), good);
        }
        for bad in ["", ".", "..", "a/b", "a\\b", "has space", &"r".repeat(251)] {
            let err = ManualRunId::new(bad).unwrap_err();
            assert!(
                matches!(&err, RunRequestError::RunId(m) if m.contains("is not allowed")),
                "{bad:?}: {err}"
            );
        }
        for reserved in ["scheduled__2030-01-01T00:00:00+00:00", "backfill__x"] {
            let err = ManualRunId::new(reserved).unwrap_err();
            assert!(
                matches!(&err, RunRequestError::RunId(m) if m.contains("reserved for the scheduler")),
                "{reserved}: {err}"
            );
        }
        assert_eq!(ManualRunId::new("manual__x").unwrap().to_string(), "manual__x");
    }

    #[test]
    fn a_scheduled_run_covers_its_interval() {
        let hourly = dag("@hourly");
        let request = RunRequest::new(
            RunKind::Scheduled { interval: hour(5) },
            TriggeredBy::Timetable,
            at(12, 0),
        );
        let run = request.new_run(&hourly).unwrap();
        assert_eq!(run.run_id.as_deref(), Some("scheduled__2026-03-01T05:00:00+00:00"));
        assert_eq!(run.run_type, RunType::Scheduled);
        assert_eq!(run.logical_date, Some(at(5, 0)));
        assert_eq!(run.data_interval, Some(hour(5)));
        assert_eq!(run.run_after, at(6, 0));
        assert_eq!(run.triggered_by, "timetable");
        assert_eq!(run.triggering_user, None);
    }

    #[test]
    fn a_backfill_run_covers_its_interval() {
        let hourly = dag("@hourly");
        let mut request = RunRequest::new(
            RunKind::Backfill { interval: hour(7) },
            TriggeredBy::Backfill,
            at(12, 0),
        );
        request.user = Some("ada".into());
        let run = request.new_run(&hourly).unwrap();
        assert_eq!(run.run_id.as_deref(), Some("backfill__2026-03-01T07:00:00+00:00"));
        assert_eq!(run.run_type, RunType::Backfill);
        assert_eq!(run.logical_date, Some(at(7, 0)));
        assert_eq!(run.data_interval, Some(hour(7)));
        assert_eq!(run.run_after, at(8, 0));
        assert_eq!(run.triggered_by, "backfill");
        assert_eq!(run.triggering_user.as_deref(), Some("ada"));
    }

    #[test]
    fn scheduled_and_backfill_intervals_must_not_be_reversed() {
        let hourly = dag("@hourly");
        let reversed = DataInterval {
            start: at(2, 0),
            end: at(1, 0),
        };
        for kind in [
            RunKind::Scheduled { interval: reversed },
            RunKind::Backfill { interval: reversed },
        ] {
            let err = RunRequest::new(kind, TriggeredBy::Timetable, at(12, 0))
                .new_run(&hourly)
                .unwrap_err();
            assert_eq!(err, RunRequestError::ReversedInterval);
        }
    }

    #[test]
    fn a_test_run_is_a_manual_run_named_after_the_request_time() {
        let hourly = dag("@hourly");
        let now = at(12, 34) + chrono::Duration::microseconds(5);
        let request = RunRequest::new(
            RunKind::Test {
                logical_date: Some(at(10, 30)),
            },
            TriggeredBy::Test,
            now,
        );
        let run = request.new_run(&hourly).unwrap();
        assert_eq!(run.run_id.as_deref(), Some("test__2026-03-01T12:34:00.000005Z"));
        assert_eq!(run.run_type, RunType::Manual);
        assert_eq!(run.logical_date, Some(at(10, 30)));
        assert_eq!(run.data_interval, Some(hour(10)));
        assert_eq!(run.run_after, at(10, 30));
        assert_eq!(run.triggered_by, "test");
        // Without a logical date it runs for now.
        let request = RunRequest::new(RunKind::Test { logical_date: None }, TriggeredBy::Test, now);
        let run = request.new_run(&hourly).unwrap();
        assert_eq!(run.logical_date, Some(now));
        assert_eq!(run.run_after, now);
        assert_eq!(run.data_interval, Some(hour(12)));
    }

    #[test]
    fn triggered_by_uses_airflow_s_names() {
        let names: Vec<&str> = [
            TriggeredBy::Cli,
            TriggeredBy::RestApi,
            TriggeredBy::Ui,
            TriggeredBy::Test,
            TriggeredBy::Timetable,
            TriggeredBy::Backfill,
        ]
        .iter()
        .map(|t| t.as_str())
        .collect();
        assert_eq!(names, ["cli", "rest_api", "ui", "test", "timetable", "backfill"]);
    }
}
