//! Scheduling limits and run creation through the CLI: backfill, max_active_runs, max_active_tasks, logical
//! dates, and the listings.

mod common;

use std::time::Duration;

use common::*;

type Span = (String, String);

fn spans(rows: &[serde_json::Value]) -> Vec<Span> {
    let mut out: Vec<Span> = rows
        .iter()
        .map(|r| {
            (
                r["start_date"].as_str().unwrap_or_default().to_string(),
                r["end_date"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Most spans open at one instant.
fn max_overlap(spans: &[Span]) -> usize {
    spans
        .iter()
        .map(|(start, _)| spans.iter().filter(|(s, e)| s <= start && start < e).count())
        .max()
        .unwrap_or(0)
}

/// `create_cron_data_intervals` (Airflow's setting) keeps Airflow 2's reading: each run covers the interval up to
/// the next time.
#[test]
fn cron_data_intervals_when_configured() {
    let mut home = Home::new();
    home.env
        .push(("DAGCTL_CREATE_CRON_DATA_INTERVALS".into(), "true".into()));
    home.write_dag(
        "daily.yml",
        "daily:\n  schedule: '0 6 * * *'\n  start_date: 2026-10-01\n  tasks:\n    a: {operator: bash, bash_command: 'echo {{ ds }} {{ data_interval_end }}'}\n",
    );
    home.ok(&[
        "dags",
        "backfill",
        "daily",
        "-s",
        "2026-10-24",
        "-e",
        "2026-10-24T06:00",
        "--local",
    ]);
    let runs = home.json(&["dags", "list-runs", "daily"]);
    let run_id = runs[0]["run_id"].as_str().unwrap().to_string();
    let log = home.ok(&["tasks", "logs", "daily", &run_id, "a"]);
    assert!(log.contains("2026-10-24 2026-10-25T06:00:00+00:00"), "{log}");
    let bad = home
        .command()
        .env("DAGCTL_CREATE_CRON_DATA_INTERVALS", "maybe")
        .args(["dags", "list"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("must be true or false"), "{}", stderr(&bad));
}

#[test]
fn backfill_creates_one_run_per_interval_and_runs_them_locally() {
    let home = Home::new();
    home.write_dag(
        "daily.yml",
        "daily:\n  schedule: '0 6 * * *'\n  timezone: Europe/Berlin\n  start_date: 2026-10-01\n  tasks:\n    a: {operator: bash, bash_command: 'echo {{ ds }} {{ data_interval_end }}'}\n",
    );
    let out = home.ok(&[
        "dags",
        "backfill",
        "daily",
        "-s",
        "2026-10-24",
        "-e",
        "2026-10-26T06:00",
        "--local",
    ]);
    assert!(out.contains("3 backfill run(s) created"), "{out}");
    let runs = home.json(&["dags", "list-runs", "daily"]);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 3);
    assert!(runs
        .iter()
        .all(|r| r["state"] == "success" && r["run_type"] == "backfill"));
    // 06:00 in Berlin is 04:00 UTC in summer time and 05:00 UTC after the change on 2026-10-25.
    let mut dates: Vec<&str> = runs.iter().map(|r| r["logical_date"].as_str().unwrap()).collect();
    dates.sort();
    assert_eq!(
        dates,
        vec!["2026-10-24T04:00:00Z", "2026-10-25T05:00:00Z", "2026-10-26T05:00:00Z"]
    );
    let run_id = runs
        .iter()
        .find(|r| r["logical_date"] == "2026-10-25T05:00:00Z")
        .unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Airflow 3 reads a cron string as a CronTriggerTimetable: no data interval, its end is the logical date.
    let log = home.ok(&["tasks", "logs", "daily", &run_id, "a"]);
    assert!(log.contains("2026-10-25 2026-10-25T05:00:00+00:00"), "{log}");
    // A second backfill over the same days creates nothing new.
    let again = home.ok(&[
        "dags",
        "backfill",
        "daily",
        "-s",
        "2026-10-24",
        "-e",
        "2026-10-26T06:00",
    ]);
    assert!(again.contains("0 backfill run(s) created"), "{again}");
}

#[test]
fn max_active_runs_and_max_active_tasks_hold() {
    let home = Home::new();
    home.write_dag(
        "one.yml",
        "one:\n  max_active_runs: 1\n  tasks:\n    a: {operator: bash, bash_command: 'sleep 0.5'}\n",
    );
    let mut tasks = String::from("two:\n  max_active_tasks: 2\n  tasks:\n");
    for i in 0..5 {
        tasks.push_str(&format!("    t{i}: {{operator: bash, bash_command: 'sleep 0.4'}}\n"));
    }
    home.write_dag("two.yml", &tasks);
    let port = free_port();
    let _standalone = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(30), "standalone", || http_get(port, "/health"));
    for i in 0..3 {
        home.ok(&["dags", "trigger", "one", "--run-id", &format!("one-{i}")]);
    }
    home.ok(&[
        "dags",
        "trigger",
        "two",
        "--run-id",
        "two-0",
        "--wait",
        "--timeout",
        "60s",
    ]);
    let runs = wait_for(Duration::from_secs(60), "three runs of `one`", || {
        let runs = home.try_json(&["dags", "list-runs", "one"])?;
        let list = runs.as_array()?.clone();
        (list.len() == 3 && list.iter().all(|r| r["state"] == "success")).then_some(list)
    });
    assert_eq!(
        max_overlap(&spans(&runs)),
        1,
        "runs of a max_active_runs=1 DAG overlapped: {:?}",
        spans(&runs)
    );
    let states = home.states("two", "two-0");
    let overlap = max_overlap(&spans(&states));
    assert!(overlap <= 2, "more than 2 tasks ran at once: {:?}", spans(&states));
    assert_eq!(overlap, 2, "the limit allows 2 at once");
}

/// Airflow's `max_active_tis_per_dag`: one task's tries across all runs of its DAG, at most N at once, while
/// the DAG's other tasks run freely.
#[test]
fn max_active_tis_per_dag_limits_one_task_across_runs() {
    let home = Home::new();
    home.write_dag(
        "lim.yml",
        "lim:\n  max_active_runs: 4\n  tasks:\n    capped: {operator: bash, bash_command: 'sleep 0.4', max_active_tis_per_dag: 1}\n    free: {operator: bash, bash_command: 'sleep 0.4'}\n",
    );
    let port = free_port();
    let _standalone = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(30), "standalone", || http_get(port, "/health"));
    for i in 0..4 {
        home.ok(&["dags", "trigger", "lim", "--run-id", &format!("lim-{i}")]);
    }
    wait_for(Duration::from_secs(60), "four runs", || {
        let runs = home.try_json(&["dags", "list-runs", "lim"])?;
        let list = runs.as_array()?.clone();
        (list.len() == 4 && list.iter().all(|r| r["state"] == "success")).then_some(())
    });
    let of = |task: &str| -> Vec<serde_json::Value> {
        (0..4)
            .flat_map(|i| home.states("lim", &format!("lim-{i}")))
            .filter(|t| t["task_id"] == task)
            .collect()
    };
    assert_eq!(max_overlap(&spans(&of("capped"))), 1, "{:?}", spans(&of("capped")));
    assert!(
        max_overlap(&spans(&of("free"))) > 1,
        "the other task is not held: {:?}",
        spans(&of("free"))
    );
    let bad = Home::new();
    bad.write_dag(
        "bad.yml",
        "bad:\n  tasks:\n    t: {operator: empty, max_active_tis_per_dag: 0}\n",
    );
    let output = bad.run(&["dags", "validate"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("bad.yml:3") && stderr(&output).contains("max_active_tis_per_dag"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn trigger_with_a_logical_date_gets_its_interval_and_duplicates_conflict() {
    let home = Home::new();
    home.write_dag("h.yml", "h:\n  schedule: '@hourly'\n  start_date: 2026-01-01\n  is_paused_upon_creation: true\n  tasks:\n    a: {operator: empty}\n");
    let run = home.json(&["dags", "trigger", "h", "--logical-date", "2026-11-01T10:30:00+00:00"]);
    assert_eq!(run["logical_date"], "2026-11-01T10:30:00Z");
    assert_eq!(run["state"], "queued");
    let output = home.run(&["dags", "trigger", "h", "--logical-date", "2026-11-01T10:30:00+00:00"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("already has a run"), "{}", stderr(&output));
    let output = home.run(&["dags", "trigger", "h", "--run-id", "x"]);
    assert!(output.status.success());
    assert!(
        stderr(&output).contains("is paused"),
        "paused DAGs warn: {}",
        stderr(&output)
    );
    let output = home.run(&["dags", "trigger", "h", "--run-id", "x"]);
    assert!(stderr(&output).contains("already has a run `x`"), "{}", stderr(&output));
    let shown = home.ok(&["dags", "show", "h"]);
    assert!(
        shown.contains("schedule:    @hourly (UTC)") && shown.contains("paused:      true"),
        "{shown}"
    );
    assert_eq!(home.ok(&["tasks", "list", "h"]).trim(), "a");
    home.ok(&["dags", "unpause", "h"]);
    let dags = home.json(&["dags", "list"]);
    assert_eq!(dags[0]["is_paused"], false);
}

#[test]
fn a_manual_run_holding_an_interval_s_date_does_not_stop_the_schedule() {
    let home = Home::new();
    // Paused until the manual run exists: 4 missed hourly intervals, the third taken by hand.
    let start = chrono::Utc::now() - chrono::Duration::hours(4);
    let start_text = start.format("%Y-%m-%dT%H:00:00+00:00").to_string();
    home.write_dag(
        "cron.yml",
        &format!("cron:\n  schedule: '@hourly'\n  start_date: '{start_text}'\n  catchup: true\n  is_paused_upon_creation: true\n  tasks:\n    a: {{operator: empty}}\n"),
    );
    let taken = chrono::DateTime::parse_from_rfc3339(&start_text).unwrap() + chrono::Duration::hours(2);
    let taken_text = taken.to_rfc3339();
    home.ok(&[
        "dags",
        "trigger",
        "cron",
        "--run-id",
        "by-hand",
        "--logical-date",
        &taken_text,
    ]);
    let reserved = home.run(&["dags", "trigger", "cron", "--run-id", "scheduled__x"]);
    assert!(!reserved.status.success(), "scheduled__ ids are the scheduler's");
    assert!(stderr(&reserved).contains("reserved"), "{}", stderr(&reserved));
    home.ok(&["dags", "unpause", "cron"]);
    let port = free_port();
    let _standalone = home.spawn(&["standalone", "--port", &port.to_string()]);
    let runs = wait_for(
        Duration::from_secs(30),
        "the schedule to go past the taken interval",
        || {
            let runs = home.try_json(&["dags", "list-runs", "cron"])?;
            let rows = runs.as_array()?.clone();
            (rows.iter().filter(|r| r["run_type"] == "scheduled").count() >= 3
                && rows.iter().all(|r| r["state"] == "success"))
            .then_some(rows)
        },
    );
    let scheduled: Vec<&serde_json::Value> = runs.iter().filter(|r| r["run_type"] == "scheduled").collect();
    assert!(
        scheduled
            .iter()
            .all(|r| r["run_id"] != format!("scheduled__{}", taken.to_rfc3339())),
        "{runs:?}"
    );
    assert!(runs.iter().any(|r| r["run_id"] == "by-hand"), "{runs:?}");
}
