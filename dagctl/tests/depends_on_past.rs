//! `depends_on_past` and `wait_for_downstream` on a real engine, as Airflow decides: a task runs only once the
//! same task (and with `wait_for_downstream`, the tasks right after it) succeeded or was skipped in the run
//! before by logical date; a failure there holds every later run (running, not failed) until it is cleared and
//! succeeds.

mod common;

use std::time::Duration;

use chrono::{Duration as Days, Utc};
use common::*;

fn state_of(home: &Home, run_id: &str, task: &str) -> String {
    home.states("past", run_id)
        .iter()
        .find(|t| t["task_id"] == task)
        .map(|t| t["state"].as_str().unwrap_or("none").to_string())
        .unwrap_or_default()
}

#[test]
fn a_failed_past_holds_later_runs_until_it_is_cleared() {
    let home = Home::new();
    let today = Utc::now().date_naive();
    let start = today - Days::days(4);
    let bad = (start + Days::days(1)).format("%Y-%m-%d").to_string();
    let marker = home.path().join("fixed");
    home.write_dag(
        "past.yaml",
        &format!(
            r#"past:
  schedule: "@daily"
  catchup: true
  max_active_runs: 5
  default_args: {{start_date: {start}, retries: 0}}
  tasks:
    prepare:
      operator: bash
      bash_command: "true"
      wait_for_downstream: true
    extract:
      operator: bash
      bash_command: 'test "{{{{ ds }}}}" != "{bad}" || test -f {marker}'
      dependencies: [prepare]
      depends_on_past: true
    load:
      operator: bash
      bash_command: "true"
      dependencies: [extract]
"#,
            marker = marker.display()
        ),
    );
    let port = free_port().to_string();
    let engine = home.spawn(&["standalone", "--port", &port]);
    let runs_of = || -> Vec<serde_json::Value> {
        home.try_json(&["dags", "list-runs", "past"])
            .and_then(|r| r.as_array().cloned())
            .unwrap_or_default()
    };
    // Five daily runs (a cron string runs at each time, today's midnight included): the first succeeds, the
    // second fails at `extract`, the later ones wait.
    let runs = wait_for(Duration::from_secs(90), "the first two runs to end", || {
        let mut runs = runs_of();
        runs.sort_by(|a, b| a["logical_date"].as_str().cmp(&b["logical_date"].as_str()));
        (runs.len() == 5 && runs[0]["state"] == "success" && runs[1]["state"] == "failed").then_some(runs)
    });
    let id = |i: usize| runs[i]["run_id"].as_str().unwrap().to_string();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(state_of(&home, &id(1), "extract"), "failed", "{}", engine.output());
    for i in [2, 3, 4] {
        let run = runs_of().into_iter().find(|r| r["run_id"] == id(i).as_str()).unwrap();
        assert_eq!(run["state"], "running", "a later run waits, it does not fail: {run}");
        for task in ["prepare", "extract", "load"] {
            let state = state_of(&home, &id(i), task);
            assert!(state == "none" || state.is_empty(), "{task} of run {i} is {state}");
        }
    }
    // `prepare` succeeded in the failed run, but `extract` right after it did not: with `wait_for_downstream`
    // it waits in the next run (and so does everything after it).
    assert_eq!(state_of(&home, &id(1), "prepare"), "success");
    assert_eq!(state_of(&home, &id(1), "load"), "upstream_failed");
    let prepare = state_of(&home, &id(2), "prepare");
    assert!(prepare == "none" || prepare.is_empty(), "prepare of run 3 is {prepare}");
    // Fixed and cleared, the failed run succeeds, and then the ones it held.
    std::fs::write(&marker, "").unwrap();
    home.ok(&["tasks", "clear", "past", "--run-id", &id(1), "--only-failed"]);
    wait_for(Duration::from_secs(90), "every run to succeed", || {
        let runs = runs_of();
        (runs.len() == 5 && runs.iter().all(|r| r["state"] == "success")).then_some(())
    });
    drop(engine);
}
