//! Timetables against Airflow's semantics: presets, names, DST, data intervals, trigger and delta schedules.
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
    let Schedule::Cron { expr, display, .. } = Schedule::parse(Some("@daily")).unwrap() else {
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

/// The runs the scheduler makes between `begin` (when it starts) and `end`, waking at each due time.
fn simulate(
    t: &Timetable,
    start_date: DateTime<Utc>,
    catchup: bool,
    begin: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<DataInterval> {
    let mut now = begin;
    let mut last = None;
    let mut out = Vec::new();
    for _ in 0..20_000 {
        let Some(run) = t.next_run(NextRunParams {
            last,
            start_date: Some(start_date),
            end_date: None,
            catchup,
            now,
        }) else {
            break;
        };
        if run.interval.end > end {
            break;
        }
        now = now.max(run.interval.end);
        out.push(run.interval);
        last = Some(run.interval);
    }
    out
}

#[test]
fn trigger_and_delta_schedules_as_airflow_3() {
    let t = Timetable::new(&Schedule::cron_trigger("@daily", 0, None).unwrap(), "UTC").unwrap();
    // A run at each time: logical date = run_after = the time, no data interval.
    let runs = simulate(
        &t,
        utc("2026-11-01T10:00:00"),
        true,
        utc("2026-11-04T12:00:00"),
        utc("2026-11-05T00:00:00"),
    );
    let starts: Vec<String> = runs.iter().map(|r| r.start.to_rfc3339()).collect();
    assert_eq!(
        starts,
        [
            "2026-11-02T00:00:00+00:00",
            "2026-11-03T00:00:00+00:00",
            "2026-11-04T00:00:00+00:00",
            "2026-11-05T00:00:00+00:00"
        ]
    );
    assert!(runs.iter().all(|r| r.start == r.end));
    // Without catchup: the latest time at or before now first, then each one after.
    let runs = simulate(
        &t,
        utc("2026-11-01T10:00:00"),
        false,
        utc("2026-11-04T12:00:00"),
        utc("2026-11-06T00:00:00"),
    );
    assert_eq!(runs[0].start, utc("2026-11-04T00:00:00"));
    assert_eq!(runs.len(), 3);
    // An interval before each time, and a zone of its own.
    let t = Timetable::new(
        &Schedule::cron_trigger("0 6 * * *", 3600, Some("Europe/Berlin")).unwrap(),
        "UTC",
    )
    .unwrap();
    let run = t
        .next_run(NextRunParams {
            last: None,
            start_date: Some(utc("2026-11-01")),
            end_date: None,
            catchup: true,
            now: utc("2026-11-01"),
        })
        .unwrap();
    assert_eq!(
        (run.interval.start, run.interval.end),
        (utc("2026-11-01T04:00:00"), utc("2026-11-01T05:00:00"))
    );
    // timedelta: intervals of that length from start_date, each starting at its end.
    let t = Timetable::new(&Schedule::delta(6 * 3600).unwrap(), "UTC").unwrap();
    let runs = simulate(
        &t,
        utc("2026-11-01T01:30:00"),
        true,
        utc("2026-11-02T00:00:00"),
        utc("2026-11-02T00:00:00"),
    );
    let starts: Vec<String> = runs.iter().map(|r| r.start.format("%dT%H:%M").to_string()).collect();
    assert_eq!(starts, ["01T01:30", "01T07:30", "01T13:30"]);
    let runs = simulate(
        &t,
        utc("2026-11-01T01:30:00"),
        false,
        utc("2026-11-03T00:00:00"),
        utc("2026-11-03T12:00:00"),
    );
    assert_eq!(
        (runs[0].start, runs[0].end),
        (utc("2026-11-02T18:00:00"), utc("2026-11-03T00:00:00"))
    );
    assert_eq!(runs.len(), 3);
}

proptest! {
    /// Over a week, a CronTriggerTimetable makes a run at every time the cron names from `start_date` on
    /// (catchup) or from the latest one when the scheduler starts (no catchup), and a timedelta schedule one
    /// per interval of that length: checked against times computed here without the cron library.
    #[test]
    fn a_week_of_trigger_and_delta_runs(minute in 0u32..60, hour_step in 1u32..8, offset_minutes in 0i64..20_000,
                                        late_minutes in 0i64..5_000, catchup in any::<bool>(), delta_minutes in 7i64..3000) {
        use chrono::Timelike;
        let start_date = utc("2026-03-01") + chrono::Duration::minutes(offset_minutes);
        let begin = start_date + chrono::Duration::minutes(late_minutes);
        let end = start_date + chrono::Duration::days(7);
        let expr = format!("{minute} */{hour_step} * * *");
        let t = Timetable::new(&Schedule::cron_trigger(&expr, 0, None).unwrap(), "UTC").unwrap();
        let got: Vec<DateTime<Utc>> = simulate(&t, start_date, catchup, begin, end).iter().map(|r| r.start).collect();
        let fires: Vec<DateTime<Utc>> = (0..=7 * 24 * 60 + 20_000 + 5_000)
            .map(|m| utc("2026-03-01") + chrono::Duration::minutes(m))
            .filter(|at| at.minute() == minute && at.hour() % hour_step == 0 && *at >= start_date && *at <= end)
            .collect();
        let first = if catchup { start_date } else { fires.iter().rev().find(|f| **f <= begin).copied().unwrap_or(start_date) };
        let want: Vec<DateTime<Utc>> = fires.into_iter().filter(|f| *f >= first).collect();
        prop_assert_eq!(got, want);

        let delta = chrono::Duration::minutes(delta_minutes);
        let t = Timetable::new(&Schedule::delta(delta.num_seconds()).unwrap(), "UTC").unwrap();
        let got: Vec<DateTime<Utc>> = simulate(&t, start_date, catchup, begin, end).iter().map(|r| r.start).collect();
        let first = if catchup || begin - delta <= start_date { start_date } else { begin - delta };
        let want: Vec<DateTime<Utc>> = (0..)
            .map(|k| first + delta * k)
            .take_while(|s| *s + delta <= end)
            .collect();
        prop_assert_eq!(got, want);
    }
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
