//! Store faults lose nothing: PostgreSQL sessions terminated during runs, a PostgreSQL database that stays
//! away for a while, a SQLite file locked by another program for longer than the busy timeout, and a scheduler
//! SIGKILLed while a second one, on another data dir, shares the database. Every run ends, every task ran once.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;

/// Five tasks per run (a -> b, c -> d -> e); each appends "RUN TASK TRY" to `marks`, and `d` reads the XCom of
/// `b` through its template.
fn five_task_dag(dag_id: &str, marks: &std::path::Path, sleep: &str) -> String {
    let mark = |task: &str| {
        format!(
            "'sleep {sleep}; echo \"$AIRFLOW_CTX_DAG_RUN_ID {task} $AIRFLOW_CTX_TRY_NUMBER\" >> {}; echo {task}-out'",
            marks.display()
        )
    };
    let d = format!(
        "'[ \"{{{{ ti.xcom_pull(task_ids=\"b\") }}}}\" = b-out ] || exit 7; sleep {sleep}; echo \"$AIRFLOW_CTX_DAG_RUN_ID d $AIRFLOW_CTX_TRY_NUMBER\" >> {}; echo d-out'",
        marks.display()
    );
    format!(
        "{dag_id}:\n  max_active_runs: 32\n  tasks:\n    a: {{operator: bash, bash_command: {a}}}\n    b: {{operator: bash, bash_command: {b}, dependencies: [a]}}\n    c: {{operator: bash, bash_command: {c}, dependencies: [a]}}\n    d: {{operator: bash, bash_command: {d}, dependencies: [b, c]}}\n    e: {{operator: bash, bash_command: {e}, dependencies: [d]}}\n",
        a = mark("a"),
        b = mark("b"),
        c = mark("c"),
        d = d,
        e = mark("e"),
    )
}

/// How often each "RUN TASK" was executed, from the marks file.
fn executions(marks: &std::path::Path) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for line in std::fs::read_to_string(marks).unwrap_or_default().lines() {
        let mut words = line.split_whitespace();
        let key = format!("{} {}", words.next().unwrap_or(""), words.next().unwrap_or(""));
        *seen.entry(key).or_insert(0) += 1;
    }
    seen
}

fn run_states(home: &Home, dag_id: &str) -> HashMap<String, String> {
    home.try_json(&["dags", "list-runs", dag_id, "--limit", "1000"])
        .and_then(|runs| runs.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["run_id"].as_str().unwrap_or("").to_string(),
                r["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Waits (bounded) until all `runs` runs of `dag_id` ended; asserts every one succeeded and every task of
/// each ran exactly once.
fn all_succeeded_once(home: &Home, dag_id: &str, runs: usize, marks: &std::path::Path, limit: Duration, logs: &str) {
    let states = wait_for(limit, "every run to end", || {
        let states = run_states(home, dag_id);
        (states.len() == runs && states.values().all(|s| s == "success" || s == "failed")).then_some(states)
    });
    let failed: Vec<_> = states.iter().filter(|(_, s)| *s != "success").collect();
    assert!(failed.is_empty(), "runs not successful: {failed:?}\n{logs}");
    let seen = executions(marks);
    assert_eq!(seen.len(), runs * 5, "tasks executed: {seen:?}");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "executed more than once: {twice:?}");
    for run_id in states.keys() {
        for ti in home.states(dag_id, run_id) {
            assert_eq!(ti["try_number"], 1, "{run_id}: {ti}");
        }
    }
}

fn trigger_runs(home: &Home, dag_id: &str, runs: usize) {
    wait_for(Duration::from_secs(30), "the DAG to load", || {
        home.try_json(&["dags", "list"])
            .filter(|d| d.as_array().unwrap().iter().any(|d| d["dag_id"] == dag_id))
    });
    for i in 0..runs {
        home.ok(&["dags", "trigger", dag_id, "--run-id", &format!("r{i:02}")]);
    }
}

#[test]
fn postgres_sessions_terminated_during_runs_lose_no_task() {
    let home = Home::postgres();
    let marks = home.path().join("marks");
    home.write_dag("blips.yml", &five_task_dag("blips", &marks, "1"));
    let port = free_port();
    let engine = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(30), "standalone", || http_get(port, "/health"));
    let runs = 20;
    trigger_runs(&home, "blips", runs);
    // Every session of the engine's database, again and again while the runs go on.
    let (mut ended, mut rounds, mut during) = (0, 0, 0);
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        ended += block_on(engine::testing::terminate_pg_sessions(home.pg_name()));
        rounds += 1;
        if rounds == 8 {
            during = executions(&marks).values().sum::<usize>();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(ended >= 20, "only {ended} sessions ended in {rounds} rounds");
    assert!(
        during < runs * 5,
        "the runs had ended 2 s into the faults ({during} tasks)"
    );
    all_succeeded_once(&home, "blips", runs, &marks, Duration::from_secs(120), &engine.output());
    // Felt by the engine's change listener, whose session every round cuts (a step that lost its session
    // mid-way, or the pool finding sessions cut, shows too when the cut came while they were at work).
    let output = engine.output();
    assert!(
        output.contains("LISTEN connection dropped"),
        "the faults were not felt: {output}"
    );
}

#[test]
fn a_postgres_database_away_for_a_while_keeps_the_running_task_s_outcome() {
    let home = Home::postgres();
    home.write_dag(
        "away.yml",
        "away:\n  tasks:\n    long: {operator: bash, bash_command: 'sleep 6; echo long-done'}\n    after: {operator: bash, bash_command: 'echo after', dependencies: [long]}\n",
    );
    let port = free_port();
    let engine = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(30), "standalone", || http_get(port, "/health"));
    trigger_runs(&home, "away", 1);
    wait_for(Duration::from_secs(30), "`long` to run", || {
        home.states("away", "r00")
            .iter()
            .any(|ti| ti["task_id"] == "long" && ti["state"] == "running" && ti["pid"].is_i64())
            .then_some(())
    });
    block_on(engine::testing::allow_pg_connections(home.pg_name(), false));
    block_on(engine::testing::terminate_pg_sessions(home.pg_name()));
    let down = Instant::now();
    let (code, body) = wait_for(Duration::from_secs(15), "/health to say the database is away", || {
        http_get(port, "/health").filter(|(code, _)| *code == 503)
    });
    assert_eq!(code, 503);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["metadatabase"]["status"], "unhealthy", "{body}");
    assert!(
        health["metadatabase"]["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{body}"
    );
    // `long` ends while the database is away; its runner keeps the outcome and retries.
    std::thread::sleep(Duration::from_secs(12).saturating_sub(down.elapsed()));
    assert!(pid_alive(engine.pid()), "the engine stopped: {}", engine.output());
    block_on(engine::testing::allow_pg_connections(home.pg_name(), true));
    let state = wait_for(Duration::from_secs(60), "the run to end", || {
        run_states(&home, "away")
            .get("r00")
            .filter(|s| *s == "success" || *s == "failed")
            .cloned()
    });
    assert_eq!(state, "success", "{}", engine.output());
    let states = home.states("away", "r00");
    assert!(states.iter().all(|ti| ti["try_number"] == 1), "{states:?}");
    let log = home.ok(&["tasks", "logs", "away", "r00", "long"]);
    assert!(log.contains("long-done"), "{log}");
    assert!(wait_for(Duration::from_secs(15), "/health to recover", || {
        http_get(port, "/health").filter(|(code, _)| *code == 200)
    })
    .1
    .contains("healthy"));
}

#[test]
fn a_sqlite_file_locked_past_the_busy_timeout_loses_no_task() {
    let home = Home::new();
    let marks = home.path().join("marks");
    home.write_dag("locked.yml", &five_task_dag("locked", &marks, "1"));
    let port = free_port();
    let engine = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(30), "standalone", || http_get(port, "/health"));
    let runs = 4;
    trigger_runs(&home, "locked", runs);
    wait_for(Duration::from_secs(30), "the first tasks to run", || {
        (!executions(&marks).is_empty()).then_some(())
    });
    // Longer than the engine's 30 s busy timeout: writes fail with "database is locked" meanwhile.
    let lock = engine::testing::hold_sqlite_lock(&home.path().join("dagctl.db"), Duration::from_secs(35));
    lock.join().unwrap();
    all_succeeded_once(&home, "locked", runs, &marks, Duration::from_secs(90), &engine.output());
    assert!(
        engine.output().contains("database is locked"),
        "the lock was not felt: {}",
        engine.output()
    );
}

#[test]
fn a_killed_scheduler_s_runners_report_to_a_survivor_on_another_data_dir() {
    let mut first_home = Home::postgres();
    // Schedulers that share a database share the signing key (as Airflow's components share theirs).
    first_home.env.push((
        "DAGCTL_SECRET_KEY".into(),
        "a-shared-secret-of-enough-length-for-tests".into(),
    ));
    let second_home = Home::sharing(&first_home);
    let marks = first_home.path().join("marks");
    let tasks = 300;
    let mut text = String::from("wide:\n  max_active_tasks: 1000\n  tasks:\n");
    for i in 0..tasks {
        text.push_str(&format!(
            "    t{i}: {{operator: bash, bash_command: 'sleep 0.3; echo \"$AIRFLOW_CTX_TASK_ID $AIRFLOW_CTX_TRY_NUMBER\" >> {}'}}\n",
            marks.display()
        ));
    }
    first_home.write_dag("wide.yml", &text);
    second_home.write_dag("wide.yml", &text);
    first_home.ok(&["dags", "list"]);
    let mut first = first_home.spawn(&["scheduler"]);
    let mut second = second_home.spawn(&["scheduler"]);
    for proc in [&first, &second] {
        wait_for(Duration::from_secs(30), "a scheduler to start", || {
            proc.output().contains("scheduler started").then_some(())
        });
    }
    first_home.ok(&["dags", "trigger", "wide", "--run-id", "w"]);
    wait_for(Duration::from_secs(120), "30% of the tasks", || {
        (executions(&marks).len() >= tasks * 3 / 10).then_some(())
    });
    let mine = first.output().clone();
    let first_pid = first.pid();
    first.kill9();
    let killed_at = chrono::Utc::now();
    let until = Instant::now() + Duration::from_secs(120);
    let state = loop {
        let state = run_states(&first_home, "wide").get("w").cloned().unwrap_or_default();
        if state == "success" || state == "failed" || Instant::now() > until {
            break state;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    second.stop();
    let states = first_home.states("wide", "w");
    let lost: Vec<_> = states.iter().filter(|ti| ti["state"] != "success").collect();
    assert!(
        lost.is_empty(),
        "{lost:?}\nfirst:\n{mine}\nsecond:\n{}",
        second.output()
    );
    assert_eq!(state, "success");
    let seen = executions(&marks);
    assert_eq!(seen.len(), tasks);
    assert!(seen.values().all(|n| *n == 1), "executed more than once: {seen:?}");
    assert!(states.iter().all(|ti| ti["try_number"] == 1), "{states:?}");
    // Tries of the first scheduler that ended after it died reported to the second one's execution API.
    // Scheduler ids are HOST-PID-RANDOM.
    let first_id = format!("-{first_pid}-");
    let reported_after = states
        .iter()
        .filter(|ti| ti["scheduler_id"].as_str().is_some_and(|id| id.contains(&first_id)))
        .filter(|ti| {
            ti["end_date"]
                .as_str()
                .and_then(|end| chrono::DateTime::parse_from_rfc3339(end).ok())
                .is_some_and(|end| end > killed_at)
        })
        .count();
    assert!(
        reported_after > 0,
        "no try of the first scheduler ended after it died:\n{}",
        second.output()
    );
}
