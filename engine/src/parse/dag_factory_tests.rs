//! dag-factory's own forms (relative dates, typed values, `default:` merged all the way down, nested
//! `defaults.yml` tags, `.airflowignore`) and "one root cause, one error".

use std::time::Duration;

use chrono::{TimeZone, Utc};

use super::values::relative_date;
use super::*;

fn parse(text: &str) -> ParsedFile {
    parse_text("dags/test.yml", text, &[], &OperatorRegistry::builtin())
}

fn ok(text: &str) -> ParsedFile {
    let parsed = parse(text);
    assert!(parsed.errors.is_empty(), "{:#?}", parsed.errors);
    parsed
}

#[test]
fn relative_start_dates_count_back_from_the_start_of_today() {
    let now = Utc.with_ymd_and_hms(2026, 12, 4, 15, 30, 0).unwrap();
    let day = |text: &str, tz: &str| relative_date(text, tz, now);
    assert_eq!(
        day("2 days", "UTC"),
        Some(Utc.with_ymd_and_hms(2026, 12, 2, 0, 0, 0).unwrap())
    );
    assert_eq!(
        day("1 Day", "UTC"),
        Some(Utc.with_ymd_and_hms(2026, 12, 3, 0, 0, 0).unwrap())
    );
    assert_eq!(
        day("6 hours", "UTC"),
        Some(Utc.with_ymd_and_hms(2026, 12, 3, 18, 0, 0).unwrap())
    );
    assert_eq!(
        day("0 days", "UTC"),
        Some(Utc.with_ymd_and_hms(2026, 12, 4, 0, 0, 0).unwrap())
    );
    // Start of the day in the DAG's zone: 15:30 UTC is already 2026-12-05 in Tokyo, which began at
    // 2026-12-04 15:00 UTC.
    assert_eq!(
        day("1 day", "Asia/Tokyo"),
        Some(Utc.with_ymd_and_hms(2026, 12, 3, 15, 0, 0).unwrap())
    );
    // As dag-factory's pattern reads it: one unit, from the start of the text.
    assert_eq!(
        day("3 days ago", "UTC"),
        Some(Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap())
    );
    for bad in ["2 weeks", "days", "yesterday", "2days", "", "99999999999999999999 days"] {
        assert_eq!(day(bad, "UTC"), None, "{bad}");
    }

    let parsed = ok("d:\n  start_date: 2 days\n  schedule: '@daily'\n  tasks: {a: {operator: empty}}\n");
    let start = parsed.dags[0].start_date.unwrap();
    let today = Utc::now().date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    assert!(
        start == today - chrono::Duration::days(2) || start == today - chrono::Duration::days(3),
        "{start}"
    );
}

#[test]
fn a_bad_start_date_is_one_error_without_a_follow_on() {
    let parsed = parse("d:\n  start_date: 2 weeks\n  schedule: '@daily'\n  tasks: {a: {operator: empty}}\n");
    assert_eq!(parsed.errors.len(), 1, "{:#?}", parsed.errors);
    let error = &parsed.errors[0];
    assert_eq!(error.location.line, Some(2));
    assert!(error.message.contains("`2 weeks` is not a date"), "{}", error.message);
    assert!(
        error.message.contains("2 days"),
        "names the relative form: {}",
        error.message
    );
}

#[test]
fn typed_values_build_into_dates_durations_and_lists() {
    let parsed = ok(r#"
d:
  start_date: {__type__: datetime.datetime, year: 2025, month: 3, day: 1, hour: 6}
  end_date: {__type__: datetime.date, __args__: [2025, 12, 31]}
  schedule: "@daily"
  dagrun_timeout: {__type__: datetime.timedelta, __args__: [0, 0, 0, 0, 90]}
  tags: {__type__: builtins.list, items: [a, b]}
  default_args:
    retry_delay: {__type__: datetime.timedelta, minutes: 2}
  tasks:
    t:
      operator: bash
      bash_command: {__join__: ["echo ", {__join__: [run, 1]}]}
"#);
    let dag = &parsed.dags[0];
    assert_eq!(dag.start_date, Some(Utc.with_ymd_and_hms(2025, 3, 1, 6, 0, 0).unwrap()));
    assert_eq!(dag.end_date, Some(Utc.with_ymd_and_hms(2025, 12, 31, 0, 0, 0).unwrap()));
    assert_eq!(dag.dagrun_timeout, Some(Duration::from_secs(90 * 60)));
    assert_eq!(dag.tags, vec!["a", "b"]);
    assert_eq!(dag.tasks[0].retry_delay, Duration::from_secs(120));
    assert_eq!(dag.tasks[0].args["bash_command"], "echo run1");
}

#[test]
fn a_python_object_is_one_error_in_its_dag_and_the_other_dags_load() {
    let parsed = parse(
        r#"
assets:
  schedule: [{__type__: airflow.sdk.AssetAlias, name: "x"}]
  tasks: {a: {operator: empty}}
fine:
  tasks: {a: {operator: empty}}
"#,
    );
    assert_eq!(parsed.errors.len(), 1, "{:#?}", parsed.errors);
    let error = &parsed.errors[0];
    assert_eq!(error.location.dag_id.as_deref(), Some("assets"));
    assert_eq!(error.location.line, Some(3));
    assert!(error.message.contains("airflow.sdk.AssetAlias"), "{}", error.message);
    assert!(error.message.contains("aliases"), "{}", error.message);
    // parse_text keeps the good DAG; a file with errors loads none of them (parse_path).
    assert_eq!(
        parsed.dags.iter().map(|d| d.dag_id.as_str()).collect::<Vec<_>>(),
        ["fine"]
    );
}

#[test]
fn schedules_dagctl_does_not_have_yet_say_what_they_are() {
    for (schedule, what) in [
        ("{datasets: [s3://a], file: x.yml}", "an asset schedule"),
        ("[s3://a, 'not a uri']", "not an asset URI"),
        ("[]", "never triggers"),
        ("{__or__: [s3://a, [1]]}", "must be text"),
        ("{__type__: datetime.timedelta, hours: 0}", "longer than zero"),
        (
            "{__type__: airflow.timetables.trigger.CronTriggerTimetable, cron: '0 0 31 2 *'}",
            "never fires",
        ),
        (
            "{__type__: airflow.timetables.trigger.CronTriggerTimetable, cron: '@daily', timezone: Mars/Base}",
            "unknown time zone",
        ),
        (
            "{__type__: airflow.timetables.trigger.CronTriggerTimetable, timezone: UTC}",
            "needs `cron`",
        ),
        (
            "{__type__: airflow.timetables.trigger.CronTriggerTimetable, cron: '@daily', run_immediately: true}",
            "no argument `run_immediately`",
        ),
    ] {
        let parsed = parse(&format!(
            "d:\n  start_date: 2025-01-01\n  schedule: {schedule}\n  tasks: {{a: {{operator: empty}}}}\n"
        ));
        assert_eq!(parsed.errors.len(), 1, "{schedule}: {:#?}", parsed.errors);
        assert!(
            parsed.errors[0].message.contains(what),
            "{schedule}: {}",
            parsed.errors[0].message
        );
        assert_eq!(parsed.errors[0].location.line, Some(3));
    }
}

/// Airflow 3's meaning of a cron string (CronTriggerTimetable) unless `create_cron_data_intervals`; timedelta
/// schedules and the timetable classes as dag-factory writes them.
#[test]
fn timedelta_and_timetable_schedules_read_as_airflow_reads_them() {
    use crate::timetable::Schedule;
    let schedule_of = |text: &str| {
        let parsed = parse(&format!(
            "d:\n  start_date: 2025-01-01\n  schedule: {text}\n  tasks: {{a: {{operator: empty}}}}\n"
        ));
        assert!(parsed.errors.is_empty(), "{text}: {:#?}", parsed.errors);
        parsed.dags[0].schedule.clone()
    };
    let trigger = |expr: &str, display: &str, interval_seconds: i64, timezone: Option<&str>| Schedule::CronTrigger {
        expr: expr.into(),
        display: display.into(),
        interval_seconds,
        timezone: timezone.map(str::to_string),
    };
    assert_eq!(schedule_of("'@daily'"), trigger("0 0 * * *", "@daily", 0, None));
    // A timedelta: Airflow 3's DeltaTriggerTimetable by default, the data-interval one on request.
    assert_eq!(
        schedule_of("{__type__: datetime.timedelta, hours: 1, minutes: 30}"),
        Schedule::DeltaTrigger {
            seconds: 5400,
            interval_seconds: 0
        }
    );
    assert_eq!(
        schedule_of("{__type__: airflow.timetables.trigger.DeltaTriggerTimetable, __args__: [{__type__: datetime.timedelta, hours: 2}], interval: {__type__: datetime.timedelta, hours: 1}}"),
        Schedule::DeltaTrigger {
            seconds: 7200,
            interval_seconds: 3600
        }
    );
    assert_eq!(
        schedule_of("{__type__: airflow.timetables.trigger.CronTriggerTimetable, cron: '0 1 * * 3', timezone: Europe/Berlin, interval: {__type__: datetime.timedelta, days: 1}}"),
        trigger("0 1 * * 3", "0 1 * * 3", 86_400, Some("Europe/Berlin"))
    );
    assert_eq!(
        schedule_of("{__type__: airflow.sdk.CronTriggerTimetable, __args__: ['*/5 * * * *'], timezone: UTC}"),
        trigger("*/5 * * * *", "*/5 * * * *", 0, Some("UTC"))
    );
    assert_eq!(
        schedule_of("{__type__: airflow.timetables.interval.CronDataIntervalTimetable, __args__: ['@hourly', UTC]}"),
        Schedule::Cron {
            expr: "0 * * * *".into(),
            display: "@hourly".into(),
            timezone: Some("UTC".into())
        }
    );
    assert_eq!(
        schedule_of("{__type__: airflow.timetables.interval.DeltaDataIntervalTimetable, delta: {__type__: datetime.timedelta, days: 2}}"),
        Schedule::Delta { seconds: 172_800 }
    );
    // Assets: a list is all of them, dag-factory's folds a condition; Asset objects become their URIs.
    let Schedule::Assets { condition } =
        schedule_of("[s3://a, {__type__: airflow.sdk.Asset, name: b, uri: 's3://b'}, {__type__: airflow.datasets.Dataset, __args__: ['s3://c']}]")
    else {
        panic!()
    };
    assert_eq!(condition.display(), "(s3://a & s3://b & s3://c)");
    let Schedule::Assets { condition } = schedule_of("{__or__: [s3://a, {__and__: [s3://b, s3://c]}]}") else {
        panic!()
    };
    assert_eq!(condition.display(), "(s3://a | (s3://b & s3://c))");
    // One asset alone (an Asset object becomes its URI, which is no cron string).
    let Schedule::Assets { condition } = schedule_of("{__type__: airflow.sdk.Asset, uri: 's3://one'}") else {
        panic!()
    };
    assert_eq!(condition.display(), "s3://one");
    // `create_cron_data_intervals`: a cron string keeps Airflow 2's data intervals.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.yml");
    std::fs::write(
        &path,
        "d:\n  start_date: 2025-01-01\n  schedule: '@daily'\n  tasks: {a: {operator: empty}}\n",
    )
    .unwrap();
    let options = FolderOptions {
        cron_data_intervals: true,
        ..Default::default()
    };
    let parsed = parse_path(dir.path(), &path, &options, &OperatorRegistry::builtin());
    assert!(
        matches!(parsed.dags[0].schedule, Schedule::Cron { .. }),
        "{:?}",
        parsed.dags[0].schedule
    );
}

#[test]
fn dict_form_tasks_in_default_merge_into_every_dag() {
    let parsed = ok(r#"
default:
  default_args: {start_date: 2025-01-01, retries: 2}
  params: {env: dev, region: eu}
  tasks:
    begin: {operator: empty}
    work: {operator: bash, bash_command: "echo default", dependencies: [begin]}
one:
  params: {env: prod}
  tasks:
    work: {bash_command: "echo one"}
    extra: {operator: empty, dependencies: [work]}
two:
  tasks:
    - {task_id: only, operator: empty}
"#);
    let one = parsed.dags.iter().find(|d| d.dag_id == "one").unwrap();
    let mut ids: Vec<&str> = one.tasks.iter().map(|t| t.task_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["begin", "extra", "work"]);
    let work = one.tasks.iter().find(|t| t.task_id == "work").unwrap();
    assert_eq!(work.args["bash_command"], "echo one", "the DAG's value wins");
    assert_eq!(work.operator, "bash", "the rest comes from default:");
    assert_eq!(work.upstream, ["begin"]);
    assert_eq!(work.retries, 2);
    assert_eq!(one.params["env"], "prod");
    assert_eq!(one.params["region"], "eu", "params merge key by key");
    // A list of tasks does not merge with a mapping: the DAG's own list stands, as in dag-factory.
    let two = parsed.dags.iter().find(|d| d.dag_id == "two").unwrap();
    assert_eq!(
        two.tasks.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>(),
        ["only"]
    );
}

#[test]
fn a_bad_inherited_value_is_one_error_for_no_task_in_particular() {
    let parsed = parse(
        r#"
d:
  default_args: {retries: many}
  tasks:
    a: {operator: empty}
    b: {operator: empty}
    c: {operator: empty, retries: -1}
"#,
    );
    assert_eq!(parsed.errors.len(), 2, "{:#?}", parsed.errors);
    let inherited = &parsed.errors[0];
    assert_eq!(inherited.location.line, Some(3));
    assert_eq!(inherited.location.task_id, None, "several tasks inherit it");
    assert_eq!(parsed.errors[1].location.task_id.as_deref(), Some("c"));
}

#[test]
fn tags_of_nested_defaults_files_add_up_and_the_dags_own_win() {
    let dir = tempfile::tempdir().unwrap();
    let team = dir.path().join("team");
    std::fs::create_dir(&team).unwrap();
    std::fs::write(dir.path().join("defaults.yml"), "tags: [global, shared]\n").unwrap();
    std::fs::write(team.join("defaults.yml"), "tags: [team, shared]\n").unwrap();
    std::fs::write(
        team.join("dags.yml"),
        "plain:\n  tasks: {a: {operator: empty}}\nown:\n  tags: [mine]\n  tasks: {a: {operator: empty}}\n",
    )
    .unwrap();
    let files = load_folder(dir.path(), &Default::default(), &OperatorRegistry::builtin());
    assert_eq!(files.len(), 1);
    assert!(files[0].errors.is_empty(), "{:#?}", files[0].errors);
    let tags = |id: &str| files[0].dags.iter().find(|d| d.dag_id == id).unwrap().tags.clone();
    assert_eq!(tags("plain"), ["global", "shared", "team"]);
    assert_eq!(tags("own"), ["mine"]);
}

#[test]
fn airflowignore_skips_files_and_folders_in_either_syntax() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for folder in ["drafts", "team", "team/old"] {
        std::fs::create_dir_all(root.join(folder)).unwrap();
    }
    let dag = |name: &str| format!("{name}:\n  tasks: {{a: {{operator: empty}}}}\n");
    for (path, id) in [
        ("keep.yml", "keep"),
        ("scratch_x.yml", "scratch_x"),
        ("drafts/d.yml", "draft"),
        ("team/t.yml", "team_dag"),
        ("team/old/o.yml", "old"),
        ("team/wip.yaml", "wip"),
    ] {
        std::fs::write(root.join(path), dag(id)).unwrap();
    }
    std::fs::write(root.join(IGNORE_FILE), "scratch_*   # scratch files\ndrafts/\n").unwrap();
    std::fs::write(root.join("team").join(IGNORE_FILE), "old\nwip.yaml\n").unwrap();
    let ids = |syntax: IgnoreSyntax| {
        let mut ids: Vec<String> = load_folder(
            root,
            &FolderOptions {
                ignore_syntax: syntax,
                ..Default::default()
            },
            &OperatorRegistry::builtin(),
        )
        .iter()
        .flat_map(|f| f.dags.iter().map(|d| d.dag_id.clone()))
        .collect();
        ids.sort();
        ids
    };
    assert_eq!(ids(IgnoreSyntax::Glob), ["keep", "team_dag"]);
    std::fs::write(root.join(IGNORE_FILE), "^scratch_\n^drafts\n").unwrap();
    std::fs::write(root.join("team").join(IGNORE_FILE), "team/old\nwip\\.yaml$\n").unwrap();
    assert_eq!(ids(IgnoreSyntax::Regexp), ["keep", "team_dag"]);
    // A pattern Rust's regex cannot read is skipped with a warning on the .airflowignore's line.
    std::fs::write(root.join(IGNORE_FILE), "^scratch_\n^drafts\n(?!x)y\n").unwrap();
    let files = load_folder(
        root,
        &FolderOptions {
            ignore_syntax: IgnoreSyntax::Regexp,
            ..Default::default()
        },
        &OperatorRegistry::builtin(),
    );
    let note = files.iter().find(|f| f.path.ends_with(IGNORE_FILE)).unwrap();
    assert_eq!(note.warnings.len(), 1);
    assert_eq!(note.warnings[0].location.line, Some(3));
    assert!(note.dags.is_empty() && note.errors.is_empty());
}
