//! Schedules and Airflow's data-interval semantics: a cron run covers [start, end) and fires at `end`;
//! its logical date is `start`. `catchup: false` skips to the latest complete interval and reports how many
//! intervals it skipped, so missed occurrences are never dropped silently.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

/// When a DAG runs by itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    /// Manual triggers only (`schedule: null`).
    None,
    /// One run at `start_date`.
    Once,
    /// A 5-field cron expression (presets are stored expanded, with the preset kept for display).
    Cron { expr: String, display: String },
}

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

impl Schedule {
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
        })
    }

    /// Text for display (`null` for manual-only).
    pub fn summary(&self) -> Option<String> {
        match self {
            Schedule::None => None,
            Schedule::Once => Some("@once".into()),
            Schedule::Cron { display, .. } => Some(display.clone()),
        }
    }
}

fn compile(expr: &str) -> Result<Cron, String> {
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
        let tz = parse_timezone(timezone)?;
        let cron = match schedule {
            Schedule::Cron { expr, .. } => Some(compile(expr)?),
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

    /// The interval a run with this logical date covers (the logical date is aligned to the schedule).
    pub fn interval_for_logical_date(&self, logical_date: DateTime<Utc>) -> DataInterval {
        match &self.schedule {
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
            Schedule::None => None,
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
            Schedule::Once | Schedule::None => out.push(DataInterval { start: from, end: from }),
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
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(text: &str) -> DateTime<Utc> {
        parse_datetime(text, "UTC").unwrap()
    }

    fn cron(expr: &str, tz: &str) -> Timetable {
        Timetable::new(&Schedule::parse(Some(expr)).unwrap(), tz).unwrap()
    }

    #[test]
    fn presets_and_errors() {
        assert_eq!(Schedule::parse(None).unwrap(), Schedule::None);
        assert_eq!(Schedule::parse(Some("@once")).unwrap(), Schedule::Once);
        let Schedule::Cron { expr, display } = Schedule::parse(Some("@daily")).unwrap() else {
            panic!()
        };
        assert_eq!((expr.as_str(), display.as_str()), ("0 0 * * *", "@daily"));
        assert!(Schedule::parse(Some("0 0 * * * *")).unwrap_err().contains("5 fields"));
        assert!(Schedule::parse(Some("61 * * * *")).is_err());
        assert!(Schedule::parse(Some("@fortnightly")).unwrap_err().contains("preset"));
    }

    #[test]
    fn names_and_both_sundays() {
        let t = cron("30 4 * * SUN", "UTC");
        // 2026-11-22 is a Sunday.
        assert_eq!(
            t.next_fire(utc("2026-11-20"), false).unwrap(),
            utc("2026-11-22T04:30:00")
        );
        for expr in ["30 4 * * 0", "30 4 * * 7"] {
            assert_eq!(
                cron(expr, "UTC").next_fire(utc("2026-11-20"), false).unwrap(),
                utc("2026-11-22T04:30:00")
            );
        }
        assert_eq!(
            cron("0 0 1 JAN *", "UTC").next_fire(utc("2026-11-20"), false).unwrap(),
            utc("2027-01-01")
        );
    }

    #[test]
    fn day_of_month_or_day_of_week_like_vixie_cron() {
        // The 1st of each month and every Monday.
        let t = cron("0 0 1 * MON", "UTC");
        let mut cursor = utc("2026-11-25");
        let mut fires = Vec::new();
        for _ in 0..3 {
            cursor = t.next_fire(cursor, false).unwrap();
            fires.push(cursor);
        }
        // Mon 30 Nov, Tue 1 Dec (the 1st), Mon 7 Dec.
        assert_eq!(fires, vec![utc("2026-11-30"), utc("2026-12-01"), utc("2026-12-07")]);
    }

    #[test]
    fn daylight_saving_in_a_local_zone() {
        // Berlin springs forward on 2026-03-29 (02:00 -> 03:00) and falls back on 2026-10-25.
        let t = cron("0 1 * * *", "Europe/Berlin");
        assert_eq!(
            t.next_fire(utc("2026-03-28T12:00:00"), false).unwrap(),
            utc("2026-03-29T00:00:00")
        );
        assert_eq!(
            t.next_fire(utc("2026-03-29T12:00:00"), false).unwrap(),
            utc("2026-03-29T23:00:00")
        );
        assert_eq!(
            t.next_fire(utc("2026-10-25T12:00:00"), false).unwrap(),
            utc("2026-10-26T00:00:00")
        );
        // 02:30 does not exist on the spring-forward day: that day is not fired twice and the next days are.
        let t = cron("30 2 * * *", "Europe/Berlin");
        let first = t.next_fire(utc("2026-03-28T12:00:00"), false).unwrap();
        let second = t.next_fire(first, false).unwrap();
        assert!(second > first);
        assert_eq!(
            t.next_fire(utc("2026-03-30T00:00:00"), false).unwrap(),
            utc("2026-03-30T00:30:00")
        );
    }

    #[test]
    fn data_intervals_catchup_and_skipping() {
        let t = cron("@daily", "UTC");
        let start_date = Some(utc("2026-11-01"));
        let now = utc("2026-11-04T12:00:00");
        let first = t
            .next_run(NextRunParams {
                last: None,
                start_date,
                end_date: None,
                catchup: true,
                now,
            })
            .unwrap();
        assert_eq!(
            first.interval,
            DataInterval {
                start: utc("2026-11-01"),
                end: utc("2026-11-02")
            }
        );
        let second = t.next_run(NextRunParams {
            last: Some(first.interval),
            start_date,
            end_date: None,
            catchup: true,
            now,
        });
        assert_eq!(second.unwrap().interval.start, utc("2026-11-02"));
        // Without catchup: the latest complete interval, [11-03, 11-04), with two skipped and reported.
        let latest = t
            .next_run(NextRunParams {
                last: None,
                start_date,
                end_date: None,
                catchup: false,
                now,
            })
            .unwrap();
        assert_eq!(
            latest.interval,
            DataInterval {
                start: utc("2026-11-03"),
                end: utc("2026-11-04")
            }
        );
        assert_eq!(latest.skipped, 2);
        // A start date between occurrences aligns to the next one.
        let aligned = t
            .next_run(NextRunParams {
                last: None,
                start_date: Some(utc("2026-11-01T05:00:00")),
                end_date: None,
                catchup: true,
                now,
            })
            .unwrap();
        assert_eq!(aligned.interval.start, utc("2026-11-02"));
        // end_date stops the runs.
        let ended = t.next_run(NextRunParams {
            last: Some(DataInterval {
                start: utc("2026-11-02"),
                end: utc("2026-11-03"),
            }),
            start_date,
            end_date: Some(utc("2026-11-02T12:00:00")),
            catchup: true,
            now,
        });
        assert!(ended.is_none());
    }

    #[test]
    fn once_and_none() {
        let once = Timetable::new(&Schedule::Once, "UTC").unwrap();
        let params = NextRunParams {
            last: None,
            start_date: Some(utc("2026-11-01")),
            end_date: None,
            catchup: true,
            now: utc("2026-11-02"),
        };
        let run = once.next_run(params).unwrap();
        assert_eq!(run.interval.start, run.interval.end);
        assert!(once
            .next_run(NextRunParams {
                last: Some(run.interval),
                ..params
            })
            .is_none());
        assert!(Timetable::new(&Schedule::None, "UTC")
            .unwrap()
            .next_run(params)
            .is_none());
    }

    /// Regression: a `now` with a fraction of a second leaked into interval bounds and skipped one too many.
    #[test]
    fn fractions_of_a_second_do_not_leak_into_intervals() {
        let t = cron("@hourly", "UTC");
        let now = utc("2026-11-22T18:53:25.690703");
        let run = t
            .next_run(NextRunParams {
                last: None,
                start_date: Some(utc("2026-11-22T15:00:00")),
                end_date: None,
                catchup: false,
                now,
            })
            .unwrap();
        assert_eq!(
            run.interval,
            DataInterval {
                start: utc("2026-11-22T17:00:00"),
                end: utc("2026-11-22T18:00:00")
            }
        );
        assert_eq!(run.skipped, 2);
        assert_eq!(
            t.next_fire(utc("2026-11-22T18:00:00.5"), true),
            Some(utc("2026-11-22T19:00:00"))
        );
        assert_eq!(
            t.prev_fire(utc("2026-11-22T18:00:00.5"), false),
            Some(utc("2026-11-22T18:00:00"))
        );
    }

    #[test]
    fn backfill_intervals() {
        let t = cron("0 */6 * * *", "UTC");
        let intervals = t.intervals_between(utc("2026-11-01"), utc("2026-11-01T18:00:00"), 100);
        assert_eq!(intervals.len(), 4);
        assert_eq!(intervals[3].end, utc("2026-11-02"));
    }

    #[test]
    fn parses_dates() {
        assert_eq!(
            parse_datetime("2026-11-01", "Europe/Berlin").unwrap(),
            utc("2026-10-31T23:00:00")
        );
        assert_eq!(
            parse_datetime("2026-11-01T05:00:00+02:00", "UTC").unwrap(),
            utc("2026-11-01T03:00:00")
        );
        assert!(parse_datetime("yesterday", "UTC").is_err());
    }

    proptest! {
        /// Consecutive scheduled runs tile time: each starts where the previous ended, on a cron occurrence,
        /// and nothing is lost when catchup is on.
        #[test]
        fn intervals_tile(minute in 0u32..60, hour_step in 1u32..12, offset_minutes in 0i64..100_000) {
            let expr = format!("{minute} */{hour_step} * * *");
            let t = cron(&expr, "UTC");
            let start_date = utc("2026-01-01") + chrono::Duration::minutes(offset_minutes);
            let now = start_date + chrono::Duration::days(3);
            let mut last = None;
            for _ in 0..10 {
                let Some(run) = t.next_run(NextRunParams { last, start_date: Some(start_date), end_date: None, catchup: true, now }) else { break };
                prop_assert_eq!(run.skipped, 0);
                prop_assert!(run.interval.start >= start_date);
                prop_assert!(run.interval.end > run.interval.start);
                if let Some(previous) = last {
                    prop_assert_eq!(run.interval.start, previous.end);
                }
                prop_assert_eq!(t.next_fire(run.interval.start, true), Some(run.interval.start));
                last = Some(run.interval);
            }
        }
    }
}
