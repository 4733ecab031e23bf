//! Timetables, as Airflow's: a cron run by data interval covers [start, end) and fires at `end`, its logical
//! date `start` (CronDataIntervalTimetable); a cron run by trigger fires at its time, which is its logical date
//! (CronTriggerTimetable, Airflow 3's reading of a cron string); a timedelta run covers [start, start + delta)
//! (DeltaDataIntervalTimetable). `catchup: false` skips ahead and reports how many runs it skipped, so missed
//! occurrences are never dropped silently.

mod schedule;

use std::str::FromStr;

pub use schedule::{python_timedelta, Schedule};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

/// A data interval: the run covers `[start, end)` and may start at `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataInterval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The next run a timetable asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextRun {
    pub interval: DataInterval,
    /// Intervals skipped because catchup is off (0 when none).
    pub skipped: u64,
}

pub(crate) fn compile(expr: &str) -> Result<Cron, String> {
    Cron::from_str(expr).map_err(|err| err.to_string())
}

/// Parses a time zone name like `UTC` or `Europe/Berlin`.
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    name.parse::<Tz>()
        .map_err(|_| format!("unknown time zone `{name}` (expected an IANA name like Europe/Berlin)"))
}

/// A compiled timetable for one DAG.
pub struct Timetable {
    schedule: Schedule,
    cron: Option<Cron>,
    tz: Tz,
}

impl Timetable {
    pub fn new(schedule: &Schedule, timezone: &str) -> Result<Timetable, String> {
        let tz = match schedule {
            Schedule::CronTrigger {
                timezone: Some(own), ..
            }
            | Schedule::Cron {
                timezone: Some(own), ..
            } => parse_timezone(own)?,
            _ => parse_timezone(timezone)?,
        };
        let cron = match schedule {
            Schedule::Cron { expr, .. } | Schedule::CronTrigger { expr, .. } => Some(compile(expr)?),
            _ => None,
        };
        Ok(Timetable {
            schedule: schedule.clone(),
            cron,
            tz,
        })
    }

    /// The first cron occurrence strictly after `after` (or at it, when `inclusive`).
    pub fn next_fire(&self, after: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        let cron = self.cron.as_ref()?;
        // Cron works in whole seconds; a fraction would leak into every occurrence found from it.
        let whole = truncate_seconds(after);
        let inclusive = inclusive && whole == after;
        let local = whole.with_timezone(&self.tz);
        cron.find_next_occurrence(&local, inclusive)
            .ok()
            .map(|dt| truncate_seconds(dt.with_timezone(&Utc)))
    }

    /// The last cron occurrence strictly before `before` (or at it, when `inclusive`).
    pub fn prev_fire(&self, before: DateTime<Utc>, inclusive: bool) -> Option<DateTime<Utc>> {
        let cron = self.cron.as_ref()?;
        let whole = truncate_seconds(before);
        let inclusive = inclusive || whole != before;
        let local = whole.with_timezone(&self.tz);
        cron.find_previous_occurrence(&local, inclusive)
            .ok()
            .map(|dt| truncate_seconds(dt.with_timezone(&Utc)))
    }

    /// The interval that starts at a cron occurrence `start`.
    pub fn interval_starting(&self, start: DateTime<Utc>) -> Option<DataInterval> {
        Some(DataInterval {
            start,
            end: self.next_fire(start, false)?,
        })
    }

    /// The data interval before a trigger time (CronTriggerTimetable's `interval`; empty by default).
    fn trigger_interval(&self, at: DateTime<Utc>) -> DataInterval {
        let before = match &self.schedule {
            Schedule::CronTrigger { interval_seconds, .. } | Schedule::DeltaTrigger { interval_seconds, .. } => {
                chrono::Duration::seconds(*interval_seconds)
            }
            _ => chrono::Duration::zero(),
        };
        DataInterval {
            start: at - before,
            end: at,
        }
    }

    /// The interval a run with this logical date covers (the logical date is aligned to the schedule).
    pub fn interval_for_logical_date(&self, logical_date: DateTime<Utc>) -> DataInterval {
        match &self.schedule {
            Schedule::CronTrigger { .. } | Schedule::DeltaTrigger { .. } => self.trigger_interval(logical_date),
            Schedule::Delta { seconds } => DataInterval {
                start: logical_date,
                end: logical_date + chrono::Duration::seconds(*seconds),
            },
            Schedule::Cron { .. } => {
                let start = self.prev_fire(logical_date, true).unwrap_or(logical_date);
                self.interval_starting(start).unwrap_or(DataInterval {
                    start: logical_date,
                    end: logical_date,
                })
            }
            _ => DataInterval {
                start: logical_date,
                end: logical_date,
            },
        }
    }

    /// Start of the latest interval that is complete at `now`.
    fn latest_complete_start(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let last_end = self.prev_fire(now, true)?;
        self.prev_fire(last_end, false)
    }

    /// The next run to create after the last scheduled one, following Airflow's CronDataIntervalTimetable.
    /// `last` is the data interval of the latest scheduled (not manual) run. The returned run may lie in the
    /// future: it is due when `interval.end <= now`.
    pub fn next_run(&self, params: NextRunParams) -> Option<NextRun> {
        match &self.schedule {
            Schedule::None | Schedule::Assets { .. } => None,
            Schedule::Once => {
                if params.last.is_some() {
                    return None;
                }
                let start = params.start_date?;
                Some(NextRun {
                    interval: DataInterval { start, end: start },
                    skipped: 0,
                })
            }
            Schedule::Cron { .. } => {
                let proposed = match params.last {
                    Some(last) => last.end,
                    None => self.next_fire(params.start_date?, true)?,
                };
                let mut start = proposed;
                let mut skipped = 0;
                if !params.catchup {
                    if let Some(latest) = self.latest_complete_start(params.now) {
                        if latest > start {
                            skipped = self.count_fires(start, latest);
                            start = latest;
                        }
                    }
                }
                if let Some(end_date) = params.end_date {
                    if start > end_date {
                        return None;
                    }
                }
                Some(NextRun {
                    interval: self.interval_starting(start)?,
                    skipped,
                })
            }
            Schedule::CronTrigger { .. } => {
                // As Airflow 3's CronTriggerTimetable.next_dagrun_info: the time after the last run's (or the
                // first at or after start_date); without catchup, no earlier than the latest time at or
                // before now.
                let proposed = match params.last {
                    Some(last) => self.next_fire(last.end, false)?,
                    None => self.next_fire(params.start_date?, true)?,
                };
                let mut at = proposed;
                let mut skipped = 0;
                if !params.catchup {
                    if let Some(latest) = self.prev_fire(params.now, true) {
                        if latest > at {
                            skipped = self.count_fires(at, latest);
                            at = latest;
                        }
                    }
                }
                if params.end_date.is_some_and(|end| at > end) {
                    return None;
                }
                Some(NextRun {
                    interval: self.trigger_interval(at),
                    skipped,
                })
            }
            Schedule::DeltaTrigger { seconds, .. } => {
                // As Airflow 3's DeltaTriggerTimetable: a delta after the last run (or start_date); without
                // catchup, no earlier than now (a delta schedule is not aligned to anything).
                let delta = chrono::Duration::seconds(*seconds);
                let proposed = match params.last {
                    Some(last) => last.end + delta,
                    None => params.start_date?,
                };
                let mut at = proposed;
                let mut skipped = 0;
                if !params.catchup {
                    let now = truncate_seconds(params.now);
                    if now > at {
                        skipped = ((now - at).num_seconds() / seconds).max(0) as u64;
                        at = now;
                    }
                }
                if params.end_date.is_some_and(|end| at > end) {
                    return None;
                }
                Some(NextRun {
                    interval: self.trigger_interval(at),
                    skipped,
                })
            }
            Schedule::Delta { seconds } => {
                // As Airflow's DeltaDataIntervalTimetable: from start_date (or the last run's end); without
                // catchup, no earlier than one delta before now.
                let delta = chrono::Duration::seconds(*seconds);
                let proposed = match params.last {
                    Some(last) => last.end,
                    None => params.start_date?,
                };
                let mut start = proposed;
                let mut skipped = 0;
                if !params.catchup {
                    let latest = truncate_seconds(params.now) - delta;
                    if latest > start {
                        skipped = ((latest - start).num_seconds() / seconds).max(0) as u64;
                        start = latest;
                    }
                }
                if params.end_date.is_some_and(|end| start > end) {
                    return None;
                }
                Some(NextRun {
                    interval: DataInterval {
                        start,
                        end: start + delta,
                    },
                    skipped,
                })
            }
        }
    }

    /// Number of cron occurrences in [from, to), bounded so a pathological range cannot loop for long.
    fn count_fires(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> u64 {
        let mut count = 0;
        let mut cursor = from;
        while cursor < to && count < 1_000_000 {
            count += 1;
            match self.next_fire(cursor, false) {
                Some(next) => cursor = next,
                None => break,
            }
        }
        count
    }

    /// Every interval whose logical date lies in [from, to] (for backfill), at most `limit` of them.
    pub fn intervals_between(&self, from: DateTime<Utc>, to: DateTime<Utc>, limit: usize) -> Vec<DataInterval> {
        let mut out = Vec::new();
        match &self.schedule {
            Schedule::Cron { .. } => {
                let mut cursor = self.next_fire(from, true);
                while let Some(start) = cursor {
                    if start > to || out.len() >= limit {
                        break;
                    }
                    let Some(interval) = self.interval_starting(start) else {
                        break;
                    };
                    out.push(interval);
                    cursor = Some(interval.end);
                }
            }
            Schedule::CronTrigger { .. } => {
                let mut cursor = self.next_fire(from, true);
                while let Some(at) = cursor {
                    if at > to || out.len() >= limit {
                        break;
                    }
                    out.push(self.trigger_interval(at));
                    cursor = self.next_fire(at, false);
                }
            }
            Schedule::DeltaTrigger { seconds, .. } => {
                let delta = chrono::Duration::seconds(*seconds);
                let mut at = from;
                while at <= to && out.len() < limit {
                    out.push(self.trigger_interval(at));
                    at += delta;
                }
            }
            Schedule::Delta { seconds } => {
                let delta = chrono::Duration::seconds(*seconds);
                let mut start = from;
                while start <= to && out.len() < limit {
                    out.push(DataInterval {
                        start,
                        end: start + delta,
                    });
                    start += delta;
                }
            }
            Schedule::Once | Schedule::None | Schedule::Assets { .. } => {
                out.push(DataInterval { start: from, end: from })
            }
        }
        out
    }
}

fn truncate_seconds(at: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::Timelike;
    at.with_nanosecond(0).unwrap_or(at)
}

/// Inputs of [`Timetable::next_run`].
#[derive(Debug, Clone, Copy)]
pub struct NextRunParams {
    pub last: Option<DataInterval>,
    pub start_date: Option<DateTime<Utc>>,
    pub end_date: Option<DateTime<Utc>>,
    pub catchup: bool,
    pub now: DateTime<Utc>,
}

/// Parses a date or date-time as DAG files write it (`2024-11-11`, `2024-11-11T03:00:00`, with or without an
/// offset) in time zone `tz` when it has none.
pub fn parse_datetime(text: &str, tz: &str) -> Result<DateTime<Utc>, String> {
    use chrono::Datelike;
    let at = parse_any_datetime(text, tz)?;
    if !(1..=9999).contains(&at.year()) {
        return Err(format!(
            "`{}` is outside the dates Airflow takes (years 1 to 9999)",
            text.trim()
        ));
    }
    Ok(at)
}

fn parse_any_datetime(text: &str, tz: &str) -> Result<DateTime<Utc>, String> {
    let zone = parse_timezone(tz)?;
    let trimmed = text.trim();
    if let Ok(with_offset) = DateTime::parse_from_rfc3339(trimmed) {
        return Ok(with_offset.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%:z",
    ] {
        if let Ok(with_offset) = DateTime::parse_from_str(trimmed, format) {
            return Ok(with_offset.with_timezone(&Utc));
        }
    }
    let naive = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|format| chrono::NaiveDateTime::parse_from_str(trimmed, format).ok())
    .or_else(|| {
        chrono::NaiveDate::parse_from_str(trimmed, "%Y-%m-%d")
            .ok()
            .and_then(|date| date.and_hms_opt(0, 0, 0))
    })
    .ok_or_else(|| format!("`{trimmed}` is not a date (expected YYYY-MM-DD or an ISO 8601 date-time)"))?;
    zone.from_local_datetime(&naive)
        .earliest()
        .map(|dt| dt.with_timezone(&Utc))
        .ok_or_else(|| format!("`{trimmed}` does not exist in time zone {tz}"))
}

#[cfg(test)]
mod tests;
