//! Crash safety from the tasks' own ledger: the engine is SIGKILLed twice while 100 runs of 5 tasks go
//! through it (once right after triggers, in the window between a claim and its launch; once while tasks run),
//! and every task must have run exactly once, in its first try, with every run a success.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

const RUNS: usize = 100;
const TASKS: usize = 5;

fn trigger(home: &Home, range: std::ops::Range<usize>) {
    for i in range {
        home.ok(&["dags", "trigger", "ledger", "--run-id", &format!("r{i:03}")]);
    }
}

fn crash_twice_and_count(home: Home) {
    let ledger = home.path().join("ledger.txt");
    let mut tasks = String::from("ledger:\n  max_active_runs: 100\n  default_args: {retries: 0}\n  tasks:\n");
    for t in 0..TASKS {
        tasks.push_str(&format!(
            "    t{t}: {{operator: bash, bash_command: 'echo \"{{{{ run_id }}}} t{t} $AIRFLOW_CTX_TRY_NUMBER\" >> {}; sleep 0.3'}}\n",
            ledger.display()
        ));
    }
    home.write_dag("ledger.yml", &tasks);
    let port = free_port().to_string();
    let start = || {
        let engine = home.spawn(&["standalone", "--port", &port]);
        wait_for(Duration::from_secs(60), "the engine to answer /health", || {
            http_get(port.parse().unwrap(), "/health").filter(|(code, _)| *code == 200)
        });
        engine
    };
    let mut engine = start();
    // Kill 1: 100 ms after 20 triggers, while the scheduler claims and launches their first tries.
    trigger(&home, 0..20);
    std::thread::sleep(Duration::from_millis(100));
    engine.kill9();
    engine = start();
    // Kill 2: while tries of the next 80 runs are running.
    trigger(&home, 20..RUNS);
    std::thread::sleep(Duration::from_millis(1500));
    engine.kill9();
    let engine = start();
    let states = wait_for(Duration::from_secs(240), "every run to finish", || {
        let runs = home.json(&["dags", "list-runs", "ledger", "--limit", "1000"]);
        let runs = runs.as_array()?.clone();
        let done = runs.len() == RUNS && runs.iter().all(|r| r["state"] == "success" || r["state"] == "failed");
        done.then_some(runs)
    });
    let failed: Vec<&serde_json::Value> = states.iter().filter(|r| r["state"] != "success").collect();
    assert!(
        failed.is_empty(),
        "runs not successful: {failed:?}\n{}",
        engine.output()
    );
    let text = std::fs::read_to_string(&ledger).unwrap();
    let mut seen: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(run), Some(task), Some(try_number)) = (parts.next(), parts.next(), parts.next()) else {
            panic!("a torn ledger line: {line:?}");
        };
        seen.entry((run.to_string(), task.to_string()))
            .or_default()
            .push(try_number.to_string());
    }
    let twice: Vec<_> = seen.iter().filter(|(_, tries)| tries.len() > 1).collect();
    assert!(twice.is_empty(), "ran more than once: {twice:?}");
    assert_eq!(seen.len(), RUNS * TASKS, "every task ran once");
    assert!(
        seen.values().all(|tries| tries == &["1"]),
        "every task in its first try"
    );
}

#[test]
fn two_engine_kills_during_100_runs_lose_and_repeat_no_task_on_sqlite() {
    crash_twice_and_count(Home::new());
}

#[test]
fn two_engine_kills_during_100_runs_lose_and_repeat_no_task_on_postgres() {
    crash_twice_and_count(Home::postgres());
}
