//! The long-running processes: `dagctl standalone` and `dagctl scheduler`, driven like a user would, with
//! crashes (SIGKILL) and two schedulers on one PostgreSQL database.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;

fn run_state(home: &Home, dag_id: &str, run_id: &str) -> Option<String> {
    let runs = home.try_json(&["dags", "list-runs", dag_id, "--limit", "1000"])?;
    runs.as_array()?
        .iter()
        .find(|r| r["run_id"] == run_id)
        .map(|r| r["state"].as_str().unwrap_or_default().to_string())
}

#[test]
fn standalone_runs_triggers_and_serves_health_and_metrics() {
    let home = Home::new();
    home.write_dag("ok.yml", "ok:\n  tasks:\n    a: {operator: bash, bash_command: 'echo one'}\n    b: {operator: bash, bash_command: 'echo two', dependencies: [a]}\n");
    home.write_dag(
        "bad.yml",
        "bad:\n  tasks:\n    a: {operator: bash, bash_command: 'exit 1'}\n",
    );
    let port = free_port();
    let standalone = home.spawn(&["standalone", "--port", &port.to_string()]);
    let (status, body) = wait_for(Duration::from_secs(30), "standalone to answer /health", || {
        http_get(port, "/health")
    });
    assert_eq!(status, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["metadatabase"]["status"], "healthy");

    let output = home.run(&[
        "dags",
        "trigger",
        "ok",
        "--conf",
        r#"{"x": 1}"#,
        "--wait",
        "--timeout",
        "60s",
    ]);
    assert!(output.status.success(), "{}\n{}", stderr(&output), standalone.output());
    assert!(
        stderr(&output).contains("2/2 tasks done (2 success"),
        "{}",
        stderr(&output)
    );
    let output = home.run(&["trigger", "bad", "--wait", "--timeout", "60s"]);
    assert_eq!(output.status.code(), Some(1), "a failed run exits non-zero");
    assert!(stderr(&output).contains("failed tasks: a"), "{}", stderr(&output));

    // The run's end is recorded when the runner reports; the executor counts the try when its process is
    // reaped, a moment later.
    let metrics = wait_for(Duration::from_secs(10), "the failed try to be counted", || {
        http_get(port, "/metrics")
            .filter(|(status, metrics)| *status == 200 && metrics.contains("dagctl_ti_failures 1"))
            .map(|(_, metrics)| metrics)
    });
    assert!(metrics.contains("dagctl_ti_successes 2"), "{metrics}");
    assert!(metrics.contains("dagctl_ti_failures 1"), "{metrics}");
    assert!(
        metrics.contains("dagctl_pool_open_slots{pool=\"default_pool\"} 128"),
        "{metrics}"
    );
    let (_, version) = http_get(port, "/api/v2/version").unwrap();
    assert!(version.contains("\"version\""));
    let (status, _) = http_get(port, "/no/such/page").unwrap();
    assert_eq!(status, 404);
}

#[test]
fn dags_test_runs_its_tasks_itself_while_a_standalone_runs() {
    let home = Home::new();
    let mut text = String::from("solo:\n  tasks:\n");
    for i in 0..4 {
        text.push_str(&format!(
            "    t{i}: {{operator: bash, bash_command: 'sleep 0.7; echo mine-{i}'}}\n"
        ));
    }
    home.write_dag("solo.yml", &text);
    let port = free_port();
    let _standalone = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(30), "standalone", || http_get(port, "/health"));
    // With one slot, three tasks wait in `scheduled` for seconds: the standalone could take them, and must not.
    let output = home
        .command()
        .args(["dags", "test", "solo"])
        .env("DAGCTL_PARALLELISM", "1")
        .output()
        .unwrap();
    let out = stdout(&output);
    assert!(output.status.success(), "{out}");
    for i in 0..4 {
        assert!(
            out.contains(&format!("{{task.stdout}} INFO - mine-{i}")),
            "task t{i} ran elsewhere: {out}"
        );
    }
}

#[test]
fn dag_files_are_picked_up_changed_and_removed_without_restart() {
    let home = Home::new();
    let port = free_port();
    let _standalone = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(30), "standalone", || http_get(port, "/health"));
    // A new file with a cron schedule: the scheduler creates its missed runs (catchup on).
    let start = (chrono::Utc::now() - chrono::Duration::hours(3)).format("%Y-%m-%dT%H:00:00+00:00");
    home.write_dag("cron.yml", &format!("cron:\n  schedule: '@hourly'\n  start_date: '{start}'\n  catchup: true\n  tasks:\n    a: {{operator: empty}}\n"));
    let runs = wait_for(Duration::from_secs(20), "3 scheduled runs", || {
        let runs = home.try_json(&["dags", "list-runs", "cron"])?;
        (runs
            .as_array()
            .map(|r| r.iter().filter(|r| r["state"] == "success").count())
            .unwrap_or(0)
            >= 3)
            .then_some(runs)
    });
    assert!(runs.as_array().unwrap().iter().all(|r| r["run_type"] == "scheduled"));
    // Catchup off: one run for the latest time (Airflow 3 runs a cron string at each time), the three times
    // before it skipped and reported.
    home.write_dag(
        "nocatch.yml",
        &format!("nocatch:\n  schedule: '@hourly'\n  start_date: '{start}'\n  tasks:\n    a: {{operator: empty}}\n"),
    );
    wait_for(Duration::from_secs(20), "the latest run of nocatch", || {
        let runs = home.try_json(&["dags", "list-runs", "nocatch"])?;
        (runs.as_array().map(|r| r.len()).unwrap_or(0) == 1).then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        home.json(&["dags", "list-runs", "nocatch"]).as_array().unwrap().len(),
        1
    );
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    assert!(metrics.contains("dagctl_dagrun_missed_schedules 3"), "{metrics}");
    // An edit makes a new version; a deletion makes the DAG disappear.
    home.write_dag("cron.yml", &format!("cron:\n  description: edited\n  schedule: '@hourly'\n  start_date: '{start}'\n  catchup: true\n  tasks:\n    a: {{operator: empty}}\n"));
    wait_for(Duration::from_secs(20), "version 2", || {
        let dags = home.json(&["dags", "list"]);
        dags.as_array()
            .unwrap()
            .iter()
            .any(|d| d["dag_id"] == "cron" && d["description"] == "edited")
            .then_some(())
    });
    std::fs::remove_file(home.dags().join("nocatch.yml")).unwrap();
    wait_for(Duration::from_secs(20), "nocatch to go", || {
        let dags = home.json(&["dags", "list"]);
        (!dags.as_array().unwrap().iter().any(|d| d["dag_id"] == "nocatch")).then_some(())
    });
}

#[test]
fn a_killed_scheduler_s_tasks_are_adopted_or_collected_after_restart() {
    let home = Home::new();
    let marks = home.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    home.write_dag(
        "crash.yml",
        &format!(
            r#"
crash:
  tasks:
    long: {{operator: bash, bash_command: 'echo start >> {m}/long; sleep 4; echo "done"'}}
    short: {{operator: bash, bash_command: 'echo start >> {m}/short; sleep 1; echo ok'}}
    after: {{operator: bash, bash_command: 'echo start >> {m}/after', dependencies: [long, short]}}
"#,
            m = marks.display()
        ),
    );
    let port = free_port();
    let mut first = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(30), "standalone", || http_get(port, "/health"));
    let out = home.ok(&["dags", "trigger", "crash", "--run-id", "crash-1"]);
    assert!(out.contains("crash-1"));
    wait_for(Duration::from_secs(20), "both tasks to start", || {
        (marks.join("long").exists() && marks.join("short").exists()).then_some(())
    });
    first.kill9();
    // `short` ends while no scheduler runs; `long` is still running when the next one starts. The next one
    // listens where the first did: runners report to the execution API at that address.
    std::thread::sleep(Duration::from_millis(1500));
    let second = home.spawn(&["standalone", "--port", &port.to_string()]);
    let state = wait_for(Duration::from_secs(40), "the run to finish", || {
        run_state(&home, "crash", "crash-1").filter(|s| s == "success" || s == "failed")
    });
    assert_eq!(state, "success", "{}", second.output());
    for task in ["long", "short", "after"] {
        let starts = std::fs::read_to_string(marks.join(task)).unwrap().lines().count();
        assert_eq!(starts, 1, "{task} ran {starts} times");
    }
    let states = home.states("crash", "crash-1");
    assert!(states.iter().all(|s| s["try_number"] == 1), "{states:?}");
    let log = home.ok(&["tasks", "logs", "crash", "crash-1", "long"]);
    assert!(
        log.contains("adopted by a new scheduler") && log.contains("done"),
        "{log}"
    );
}

#[test]
fn a_killed_task_process_is_failed_and_retried_by_policy() {
    let home = Home::new();
    let marks = home.path().join("n");
    home.write_dag(
        "lost.yml",
        &format!("lost:\n  tasks:\n    t: {{operator: bash, retries: 1, retry_delay: 0, bash_command: 'echo x >> {m}; [ $(wc -l < {m}) -ge 2 ] || sleep 30'}}\n", m = marks.display()),
    );
    let port = free_port();
    let mut first = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(30), "standalone", || http_get(port, "/health"));
    home.ok(&["dags", "trigger", "lost", "--run-id", "lost-1"]);
    wait_for(Duration::from_secs(20), "the first try", || {
        marks.exists().then_some(())
    });
    let pid = wait_for(Duration::from_secs(10), "its pid", || {
        home.states("lost", "lost-1")[0]["pid"].as_i64()
    });
    first.kill9();
    // The task dies too (say the machine's OOM killer took it): the next scheduler fails it and retries.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let port = free_port();
    let _second = home.spawn(&["standalone", "--port", &port.to_string()]);
    let state = wait_for(Duration::from_secs(40), "the run to finish", || {
        run_state(&home, "lost", "lost-1").filter(|s| s == "success" || s == "failed")
    });
    assert_eq!(state, "success");
    assert_eq!(home.states("lost", "lost-1")[0]["try_number"], 2);
}

#[test]
fn two_schedulers_on_postgres_never_run_a_task_twice() {
    let home = Home::postgres();
    let out = home.path().join("executions");
    std::fs::create_dir_all(&out).unwrap();
    let tasks = 2000;
    let mut text = String::from("many:\n  max_active_tasks: 1000\n  tasks:\n");
    for i in 0..tasks {
        text.push_str(&format!("    t{i}: {{operator: bash, do_xcom_push: false, bash_command: 'echo \"$AIRFLOW_CTX_TASK_ID $AIRFLOW_CTX_TRY_NUMBER\" >> {}/$$'}}\n", out.display()));
    }
    home.write_dag("many.yml", &text);
    home.ok(&["dags", "list"]);
    let mut first = home.spawn(&["scheduler"]);
    let mut second = home.spawn(&["scheduler"]);
    home.ok(&["dags", "trigger", "many", "--run-id", "many-1"]);
    let state = wait_for(Duration::from_secs(300), "2000 tasks", || {
        run_state(&home, "many", "many-1").filter(|s| s == "success" || s == "failed")
    });
    first.stop();
    second.stop();
    assert_eq!(state, "success", "{}\n{}", first.output(), second.output());
    let mut seen = HashSet::new();
    let mut executions = 0;
    for entry in std::fs::read_dir(&out).unwrap() {
        for line in std::fs::read_to_string(entry.unwrap().path()).unwrap().lines() {
            executions += 1;
            assert!(seen.insert(line.to_string()), "executed twice: {line}");
        }
    }
    assert_eq!(executions, tasks);
    let states = home.states("many", "many-1");
    let owners: HashSet<&str> = states.iter().filter_map(|s| s["scheduler_id"].as_str()).collect();
    assert_eq!(owners.len(), 2, "both schedulers took work");
}
