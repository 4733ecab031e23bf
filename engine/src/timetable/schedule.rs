//! What a DAG's `schedule` says: manual only, once, a cron expression read as data intervals (Airflow 2) or as
//! trigger times (Airflow 3), or a timedelta; with the checks that refuse schedules that never fire.

use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};

use super::{compile, parse_timezone};

/// When a DAG runs by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// Manual triggers only (`schedule: null`).
    None,
    /// One run at `start_date`.
    Once,
    /// A 5-field cron expression (presets are stored expanded, with the preset kept for display), as Airflow's
    /// CronDataIntervalTimetable: a run covers the interval from one time to the next and starts at its end;
    /// `timezone` overrides the DAG's.
    Cron {
        expr: String,
        display: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
    },
    /// Airflow 3's CronTriggerTimetable: a run at each cron time, its logical date that time and no data
    /// interval (or `interval_seconds` before it); `timezone` overrides the DAG's.
    CronTrigger {
        expr: String,
        display: String,
        #[serde(default)]
        interval_seconds: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timezone: Option<String>,
    },
    /// A `timedelta`, as Airflow's DeltaDataIntervalTimetable: intervals of that length from `start_date`, each
    /// run starting at its interval's end.
    Delta { seconds: i64 },
    /// A `timedelta` as Airflow 3 reads it by default (DeltaTriggerTimetable): a run at `start_date` and every
    /// delta after, its logical date that time (and no data interval, or `interval_seconds` before it).
    DeltaTrigger {
        seconds: i64,
        #[serde(default)]
        interval_seconds: i64,
    },
    /// Scheduled by assets: a run once the condition holds over the assets updated since the last such run.
    Assets { condition: crate::assets::AssetCondition },
}

/// The longest timedelta schedule taken (Python's timedelta allows more; a schedule longer than this is a
/// mistake).
const MAX_DELTA_SECONDS: i64 = 100 * 366 * 86_400;

impl Schedule {
    /// A timedelta schedule of `seconds`.
    pub fn delta(seconds: i64) -> Result<Schedule, String> {
        if seconds <= 0 {
            return Err("a timedelta schedule must be longer than zero".into());
        }
        if seconds > MAX_DELTA_SECONDS {
            return Err("a timedelta schedule is at most 100 years".into());
        }
        Ok(Schedule::Delta { seconds })
    }

    /// Airflow 3's DeltaTriggerTimetable: every `seconds` from `start_date`, with `interval_seconds` of data
    /// interval before each run.
    pub fn delta_trigger(seconds: i64, interval_seconds: i64) -> Result<Schedule, String> {
        Schedule::delta(seconds)?;
        if !(0..=MAX_DELTA_SECONDS).contains(&interval_seconds) {
            return Err("a DeltaTriggerTimetable's interval is 0 to 100 years".into());
        }
        Ok(Schedule::DeltaTrigger {
            seconds,
            interval_seconds,
        })
    }

    /// Airflow's CronTriggerTimetable over `cron` (an expression or preset), with an optional data interval
    /// before each time and an optional time zone of its own.
    pub fn cron_trigger(cron: &str, interval_seconds: i64, timezone: Option<&str>) -> Result<Schedule, String> {
        if let Some(tz) = timezone {
            parse_timezone(tz)?;
        }
        if !(0..=MAX_DELTA_SECONDS).contains(&interval_seconds) {
            return Err("a CronTriggerTimetable's interval is 0 to 100 years".into());
        }
        match Schedule::parse(Some(cron))? {
            Schedule::Cron { expr, display, .. } => Ok(Schedule::CronTrigger {
                expr,
                display,
                interval_seconds,
                timezone: timezone.map(str::to_string),
            }),
            _ => Err(format!("`{cron}` is not a cron expression or preset like @daily")),
        }
    }

    /// The data-interval form of a cron or timedelta schedule as its trigger form (Airflow 3 reads a cron
    /// string as a CronTriggerTimetable and a timedelta as a DeltaTriggerTimetable unless
    /// `create_cron_data_intervals` is set); other schedules unchanged.
    pub fn as_trigger(self) -> Schedule {
        match self {
            Schedule::Delta { seconds } => Schedule::DeltaTrigger {
                seconds,
                interval_seconds: 0,
            },
            Schedule::Cron {
                expr,
                display,
                timezone,
            } => Schedule::CronTrigger {
                expr,
                display,
                interval_seconds: 0,
                timezone,
            },
            other => other,
        }
    }

    /// Whether it makes runs by itself at regular times.
    pub fn is_periodic(&self) -> bool {
        matches!(
            self,
            Schedule::Cron { .. }
                | Schedule::CronTrigger { .. }
                | Schedule::Delta { .. }
                | Schedule::DeltaTrigger { .. }
        )
    }

    /// Parses `schedule` as written in a DAG file (`None` for null).
    pub fn parse(text: Option<&str>) -> Result<Schedule, String> {
        let Some(raw) = text else {
            return Ok(Schedule::None);
        };
        let trimmed = raw.trim();
        let expr = match trimmed {
            "" => return Err("an empty schedule; write null (or leave `schedule` out) for a DAG that only runs when triggered".into()),
            "None" | "none" | "null" => return Ok(Schedule::None),
            "@once" => return Ok(Schedule::Once),
            "@hourly" => "0 * * * *",
            "@daily" | "@midnight" => "0 0 * * *",
            "@weekly" => "0 0 * * 0",
            "@monthly" => "0 0 1 * *",
            "@quarterly" => "0 0 1 */3 *",
            "@yearly" | "@annually" => "0 0 1 1 *",
            other if other.starts_with('@') => {
                return Err(format!(
                    "unknown schedule preset `{other}`; expected @once, @hourly, @daily, @weekly, @monthly, @quarterly, @yearly or null"
                ))
            }
            other => other,
        };
        let fields = expr.split_whitespace().count();
        if fields != 5 {
            return Err(format!(
                "`{trimmed}` is not a cron expression: expected 5 fields (minute hour day-of-month month day-of-week), got {fields}"
            ));
        }
        if let Some(field) = expr.split_whitespace().find(|f| f.split(',').any(str::is_empty)) {
            return Err(format!(
                "`{trimmed}` is not a valid cron expression: the field `{field}` has an empty list item"
            ));
        }
        let cron = compile(expr).map_err(|err| format!("`{trimmed}` is not a valid cron expression: {err}"))?;
        // A schedule that never fires (`0 0 31 2 *`, the 31st of February) is a mistake: its next time is
        // looked for over ten years (enough for the 29th of February).
        let from = Utc.with_ymd_and_hms(2001, 1, 1, 0, 0, 0).single().unwrap_or_default();
        let fires = cron
            .find_next_occurrence(&from, false)
            .is_ok_and(|next| next < from + chrono::Duration::days(3653));
        if !fires {
            return Err(format!("`{trimmed}` never fires (no time matches it in ten years)"));
        }
        Ok(Schedule::Cron {
            expr: expr.to_string(),
            display: trimmed.to_string(),
            timezone: None,
        })
    }

    /// Text for display (`null` for manual-only).
    pub fn summary(&self) -> Option<String> {
        match self {
            Schedule::None => None,
            Schedule::Assets { condition } => Some(condition.display()),
            Schedule::Once => Some("@once".into()),
            Schedule::Cron { display, .. } | Schedule::CronTrigger { display, .. } => Some(display.clone()),
            Schedule::Delta { seconds } | Schedule::DeltaTrigger { seconds, .. } => Some(python_timedelta(*seconds)),
        }
    }
}

/// A duration as Python's `str(timedelta)` writes it (`1 day, 0:00:00`, `2:30:00`).
pub fn python_timedelta(seconds: i64) -> String {
    let (days, rest) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let clock = format!("{}:{:02}:{:02}", rest / 3600, rest % 3600 / 60, rest % 60);
    match days {
        0 => clock,
        1 | -1 => format!("{days} day, {clock}"),
        _ => format!("{days} days, {clock}"),
    }
}
