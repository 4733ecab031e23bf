//! Readers of one value (schedules, dates, strings, booleans, numbers, durations, trigger rules, name lists),
//! each recording an error at the value's file and line when it has the wrong shape.

use std::time::Duration;

use crate::duration::duration_from_node;
use crate::timetable::{parse_datetime, Schedule};
use crate::trigger::TriggerRule;
use crate::yaml::{Node, Value};

use super::context::{DagCtx, Sourced};

impl DagCtx<'_> {
    pub(super) fn schedule(&mut self, src: &Sourced, key: &str) -> Schedule {
        let text = match &src.node.value {
            Value::Null => None,
            // A cron expression never has `&`, `|`, `(` or `://`: one asset (an Asset object becomes its URI) or
            // a condition.
            Value::Str(text)
                if text.contains(['&', '|']) || text.contains("://") || text.trim_start().starts_with('(') =>
            {
                return match crate::assets::AssetCondition::parse(text) {
                    Ok(condition) => Schedule::Assets { condition },
                    Err(message) => {
                        self.error(&src.file, src.node.line, None, Some(key), message);
                        Schedule::None
                    }
                };
            }
            Value::Str(text) => Some(text.as_str()),
            Value::Seq(items) => {
                let mut uris = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_str() {
                        Some(uri) => uris.push(uri.to_string()),
                        None => {
                            self.error(
                                &src.file,
                                item.line,
                                None,
                                Some(key),
                                format!(
                                    "an asset in `{key}` must be a URI or an airflow.sdk.Asset, got {}",
                                    item.kind()
                                ),
                            );
                            return Schedule::None;
                        }
                    }
                }
                return match crate::assets::AssetCondition::all_of(uris) {
                    Ok(condition) => Schedule::Assets { condition },
                    Err(message) => {
                        self.error(&src.file, src.node.line, None, Some(key), message);
                        Schedule::None
                    }
                };
            }
            Value::Map(_) if src.node.get("__type__").is_some() => return self.typed_schedule(src, key),
            Value::Map(_) => return self.unsupported_schedule(src, key, "an asset schedule"),
            _ => {
                self.error(
                    &src.file,
                    src.node.line,
                    None,
                    Some(key),
                    format!("`{key}` must be a cron string, a preset like @daily, or null"),
                );
                return Schedule::None;
            }
        };
        match Schedule::parse(text) {
            Ok(schedule) if self.cron_data_intervals => schedule,
            Ok(schedule) => schedule.as_trigger(),
            Err(message) => {
                self.error(&src.file, src.node.line, None, Some(key), message);
                Schedule::None
            }
        }
    }

    /// A `timedelta` or a timetable class as a schedule.
    fn typed_schedule(&mut self, src: &Sourced, key: &str) -> Schedule {
        let node = &src.node;
        let type_name = node
            .get("__type__")
            .and_then(Node::as_str)
            .unwrap_or_default()
            .to_string();
        let fail = |ctx: &mut Self, line: usize, message: String| {
            ctx.error(&src.file, line, None, Some(key), message);
            Schedule::None
        };
        if type_name == "datetime.timedelta" {
            return match duration_from_node(node).and_then(|d| Schedule::delta(d.as_secs() as i64)) {
                Ok(schedule) if self.cron_data_intervals => schedule,
                Ok(schedule) => schedule.as_trigger(),
                Err(message) => fail(self, node.line, message),
            };
        }
        let Some((short, _)) = super::typed::timetable_kind(&type_name) else {
            return fail(
                self,
                node.line,
                format!("`{key}` is a `{type_name}`, which dagctl does not schedule by; write a cron string, a preset like @daily, a timedelta, a CronTriggerTimetable, or null"),
            );
        };
        let mut cron = None;
        let mut timezone = None;
        let mut delta = None;
        let mut interval = 0i64;
        for (name, value) in node.as_map().unwrap_or_default() {
            let name = name.as_str().unwrap_or_default();
            let text = || value.as_str().map(str::to_string);
            let result: Result<(), String> = match (short, name) {
                (_, "__type__") => Ok(()),
                ("CronTriggerTimetable" | "CronDataIntervalTimetable", "cron") => {
                    cron = text();
                    cron.as_ref()
                        .map(|_| ())
                        .ok_or_else(|| "`cron` must be a cron string".to_string())
                }
                ("CronTriggerTimetable" | "CronDataIntervalTimetable", "timezone") => {
                    timezone = text();
                    timezone
                        .as_ref()
                        .map(|_| ())
                        .ok_or_else(|| "`timezone` must be a time zone name like UTC".to_string())
                }
                ("CronTriggerTimetable" | "DeltaTriggerTimetable", "interval") => {
                    duration_from_node(value).map(|d| interval = d.as_secs() as i64)
                }
                ("CronTriggerTimetable", "run_immediately") if value.value == Value::Bool(false) => Ok(()),
                ("DeltaDataIntervalTimetable" | "DeltaTriggerTimetable", "delta") => {
                    duration_from_node(value).map(|d| delta = Some(d.as_secs() as i64))
                }
                (_, other) => Err(format!("{short} has no argument `{other}` that dagctl reads")),
            };
            if let Err(message) = result {
                return fail(self, value.line, message);
            }
        }
        let built = match short {
            "CronTriggerTimetable" => match &cron {
                Some(c) => Schedule::cron_trigger(c, interval, timezone.as_deref()),
                None => Err("a CronTriggerTimetable needs `cron`".into()),
            },
            "CronDataIntervalTimetable" => match &cron {
                Some(c) => Schedule::parse(Some(c)).and_then(|schedule| match schedule {
                    Schedule::Cron { expr, display, .. } => {
                        if let Some(tz) = &timezone {
                            crate::timetable::parse_timezone(tz)?;
                        }
                        Ok(Schedule::Cron {
                            expr,
                            display,
                            timezone,
                        })
                    }
                    _ => Err(format!("`{c}` is not a cron expression or preset like @daily")),
                }),
                None => Err("a CronDataIntervalTimetable needs `cron`".into()),
            },
            "DeltaTriggerTimetable" => match delta {
                Some(seconds) => Schedule::delta_trigger(seconds, interval),
                None => Err("a DeltaTriggerTimetable needs `delta`".into()),
            },
            _ => match delta {
                Some(seconds) => Schedule::delta(seconds),
                None => Err("a DeltaDataIntervalTimetable needs `delta`".into()),
            },
        };
        built.unwrap_or_else(|message| fail(self, node.line, message))
    }

    fn unsupported_schedule(&mut self, src: &Sourced, key: &str, what: &str) -> Schedule {
        self.error(
            &src.file,
            src.node.line,
            None,
            Some(key),
            format!("`{key}` is {what}, which dagctl does not schedule by yet; write a cron string, a preset like @daily, or null"),
        );
        Schedule::None
    }

    pub(super) fn date(&mut self, src: &Sourced, key: &str, tz: &str) -> Option<chrono::DateTime<chrono::Utc>> {
        let text = match &src.node.value {
            Value::Str(text) => text.clone(),
            _ => {
                self.error(
                    &src.file,
                    src.node.line,
                    None,
                    Some(key),
                    format!("`{key}` must be a date like 2026-11-01, got {}", src.node.kind()),
                );
                return None;
            }
        };
        match parse_datetime(&text, tz) {
            Ok(date) => Some(date),
            Err(message) => match relative_date(&text, tz, chrono::Utc::now()) {
                Some(date) => Some(date),
                None => self.reject(
                    src,
                    None,
                    key,
                    format!("{message}, or a time before today as dag-factory writes it (`2 days`, `6 hours`)"),
                ),
            },
        }
    }

    pub(super) fn string(&mut self, src: &Sourced, key: &str, task: Option<&str>) -> Option<String> {
        match &src.node.value {
            Value::Str(text) => Some(text.clone()),
            Value::Null => None,
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => src.node.key_text(),
            _ => self.reject(
                src,
                task,
                key,
                format!("`{key}` must be a string, got {}", src.node.kind()),
            ),
        }
    }

    /// Records an error about `key` at `src` and yields nothing.
    fn reject<T>(&mut self, src: &Sourced, task: Option<&str>, key: &str, message: impl Into<String>) -> Option<T> {
        self.error(&src.file, src.node.line, task, Some(key), message);
        None
    }

    pub(super) fn boolean(&mut self, src: &Sourced, key: &str, task: Option<&str>) -> Option<bool> {
        match &src.node.value {
            Value::Bool(b) => Some(*b),
            _ => self.reject(
                src,
                task,
                key,
                format!("`{key}` must be true or false, got {}", src.node.kind()),
            ),
        }
    }

    pub(super) fn count(&mut self, src: &Sourced, key: &str, task: Option<&str>, min: i64) -> Option<u32> {
        match &src.node.value {
            Value::Int(n) if *n >= min && *n <= i64::from(u32::MAX) => Some(*n as u32),
            _ => self.reject(src, task, key, format!("`{key}` must be a whole number >= {min}")),
        }
    }

    pub(super) fn integer(&mut self, src: &Sourced, key: &str, task: Option<&str>) -> Option<i64> {
        match &src.node.value {
            Value::Int(n) => Some(*n),
            _ => self.reject(src, task, key, format!("`{key}` must be a whole number")),
        }
    }

    pub(super) fn duration(&mut self, src: &Sourced, key: &str, task: Option<&str>) -> Option<Duration> {
        duration_from_node(&src.node)
            .map_err(|message| self.error(&src.file, src.node.line, task, Some(key), message))
            .ok()
    }

    pub(super) fn trigger_rule(&mut self, src: &Sourced, task: Option<&str>) -> Option<TriggerRule> {
        let Some(text) = src.node.as_str() else {
            self.error(
                &src.file,
                src.node.line,
                task,
                Some("trigger_rule"),
                "`trigger_rule` must be a string",
            );
            return None;
        };
        text.parse::<TriggerRule>()
            .map_err(|err| self.error(&src.file, src.node.line, task, Some("trigger_rule"), err.to_string()))
            .ok()
    }

    pub(super) fn name_list(&mut self, file: &str, node: Option<&Node>, task: Option<&str>) -> Vec<(String, usize)> {
        let Some(node) = node else { return Vec::new() };
        match &node.value {
            Value::Null => Vec::new(),
            Value::Seq(items) => items
                .iter()
                .filter_map(|item| match item.key_text() {
                    Some(name) if !matches!(item.value, Value::Seq(_) | Value::Map(_)) => Some((name, item.line)),
                    _ => {
                        self.error(
                            file,
                            item.line,
                            task,
                            Some("dependencies"),
                            "a dependency must be a task or task group name",
                        );
                        None
                    }
                })
                .collect(),
            Value::Str(name) => vec![(name.clone(), node.line)],
            _ => {
                self.error(
                    file,
                    node.line,
                    task,
                    Some("dependencies"),
                    "`dependencies` must be a list of task names",
                );
                Vec::new()
            }
        }
    }
}

/// dag-factory's relative dates: `N hours`, `N minutes`, `N seconds` or `N days` (one of them, read from the
/// start of the text as its pattern reads it) before the start of today in `tz`, the day `now` falls on.
pub(super) fn relative_date(
    text: &str,
    tz: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    let zone = crate::timetable::parse_timezone(tz).ok()?;
    let mut rest = text;
    let mut delta = chrono::Duration::zero();
    let mut any = false;
    for (unit, seconds) in [("hour", 3600), ("minute", 60), ("second", 1), ("day", 86_400)] {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 {
            continue;
        }
        let after = rest[digits..].trim_start();
        if after.len() == rest[digits..].len()
            || !after
                .get(..unit.len())
                .is_some_and(|word| word.eq_ignore_ascii_case(unit))
        {
            continue;
        }
        let amount: i64 = rest[..digits].parse().ok()?;
        delta = delta.checked_add(&chrono::Duration::try_seconds(amount.checked_mul(seconds)?)?)?;
        rest = &after[unit.len()..];
        any = true;
    }
    if !any {
        return None;
    }
    let today = now.with_timezone(&zone).date_naive().and_hms_opt(0, 0, 0)?;
    let start_of_day = zone.from_local_datetime(&today).earliest()?;
    start_of_day.with_timezone(&chrono::Utc).checked_sub_signed(delta)
}

/// The known key `name` is probably a typo of: at most two edits away, and fewer than a third of its length.
pub(super) fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edits(name, k), *k))
        .filter(|(d, k)| *d <= 2 && *d * 3 < k.len().max(name.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance.
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (previous + usize::from(ca != *cb)).min(row[j] + 1).min(current + 1);
            previous = current;
        }
    }
    row[b.len()]
}
