//! Task logs in the database (`task_logs = "database"`, what the Helm chart sets): a try run by one engine is
//! read by another that shares only the PostgreSQL database (another pod, another disk), and an engine that
//! keeps logs in files does not see it.

mod common;

use common::*;

fn with_logs_in_database(home: &Home) {
    std::fs::write(home.path().join("dagctl.toml"), "task_logs = \"database\"\n").unwrap();
}

#[test]
fn a_try_logged_by_one_engine_is_read_by_another_on_the_same_database() {
    let runner = Home::postgres();
    with_logs_in_database(&runner);
    runner.write_dag(
        "shared.yaml",
        "shared:\n  tasks:\n    speak:\n      operator: bash\n      bash_command: \"for i in 1 2 3; do echo said-$i; done\"\n",
    );
    runner.ok(&["dags", "test", "shared"]);
    let runs = runner.json(&["dags", "list-runs", "shared"]);
    let run_id = runs[0]["run_id"].as_str().unwrap().to_string();
    assert!(
        !runner.path().join("logs").join("dag_id=shared").exists(),
        "nothing written to files"
    );

    let reader = Home::sharing(&runner);
    with_logs_in_database(&reader);
    let log = reader.ok(&["tasks", "logs", "shared", &run_id, "speak"]);
    for i in 1..=3 {
        assert!(log.contains(&format!("said-{i}")), "{log}");
    }

    let files_only = Home::sharing(&runner);
    let out = files_only.run(&["tasks", "logs", "shared", &run_id, "speak"]);
    assert!(!out.status.success(), "an engine that reads files has no such log");
    assert!(stderr(&out).contains("no log for try 1"), "{}", stderr(&out));

    let bad = Home::sharing(&runner);
    std::fs::write(bad.path().join("dagctl.toml"), "task_logs = \"s3\"\n").unwrap();
    let out = bad.run(&["tasks", "logs", "shared", &run_id, "speak"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("task_logs: `s3`"), "{}", stderr(&out));
}
