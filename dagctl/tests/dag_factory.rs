//! dag-factory's forms end to end through the real binary: a DAGs folder written the way dag-factory's own
//! examples are (nested `defaults.yml`, `.airflowignore`, typed values, `__join__`, relative start dates,
//! dict-form tasks in `default:`, YAML 1.1 and merge keys) loads and runs as Airflow would run it; a semantics
//! file gives Airflow's run and task states; what dagctl cannot build is one error per file, at its line.

mod common;

use std::path::Path;

use common::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/dag_factory");

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn home_with_fixtures() -> Home {
    let home = Home::new();
    copy_tree(&Path::new(FIXTURES).join("dags"), &home.dags());
    home
}

/// Runs `dags test DAG` and returns the run's state and each task's (state, try number).
fn test_run(home: &Home, dag: &str) -> (String, std::collections::BTreeMap<String, (String, i64)>, String) {
    let output = home.run(&["dags", "test", dag]);
    let log = format!("{}{}", stdout(&output), stderr(&output));
    let runs = home.json(&["dags", "list-runs", dag]);
    let run = &runs[0];
    let tasks = home
        .states(dag, run["run_id"].as_str().unwrap())
        .iter()
        .map(|ti| {
            (
                ti["task_id"].as_str().unwrap().to_string(),
                (
                    ti["state"].as_str().unwrap_or("none").to_string(),
                    ti["try_number"].as_i64().unwrap_or(0),
                ),
            )
        })
        .collect();
    let state = run["state"].as_str().unwrap().to_string();
    assert_eq!(
        output.status.success(),
        state == "success",
        "`dags test` exits 0 exactly when the run succeeds: {log}"
    );
    (state, tasks, log)
}

#[test]
fn a_dag_factory_folder_loads_with_its_layers_and_ignores() {
    let home = home_with_fixtures();
    let output = home.run(&["dags", "validate"]);
    let err = stderr(&output);
    assert!(output.status.success(), "{err}\n{}", stdout(&output));
    // drafts/ and scratch_* are ignored (both hold broken YAML); defaults.yml files are layers.
    assert!(
        stdout(&output).contains("3 file(s), 13 DAG(s), 0 error(s)"),
        "{}",
        stdout(&output)
    );
    assert!(!err.contains("broken.yml") && !err.contains("scratch_notes"), "{err}");
    // `provide_context` is a key Airflow's operators ignore: a warning with its line, not an error.
    let team = home.dags().join("team/team_dag.yml").display().to_string();
    assert!(
        err.contains(&format!("{team}:4")) && err.contains("provide_context"),
        "{err}"
    );

    let dags = home.json(&["dags", "list"]);
    let dag = |id: &str| {
        dags.as_array()
            .unwrap()
            .iter()
            .find(|d| d["dag_id"] == id)
            .unwrap_or_else(|| panic!("{id} in {dags}"))
            .clone()
    };
    let tags = |id: &str| {
        let mut tags: Vec<String> = dag(id)["tags"]
            .as_str()
            .unwrap()
            .split(',')
            .map(str::to_string)
            .collect();
        tags.sort();
        tags
    };
    assert_eq!(tags("team_dag"), ["global", "team"], "nested defaults.yml tags add up");
    assert_eq!(
        tags("typed_values"),
        ["forms", "typed"],
        "a builtins.list, the DAG's own"
    );
    assert_eq!(tags("skipped_leaf"), ["global"]);
}

#[test]
fn dag_factory_forms_run_as_airflow_runs_them() {
    let home = home_with_fixtures();
    let (state, tasks, log) = test_run(&home, "typed_values");
    assert_eq!(state, "success", "{log}");
    // `begin` and `work` come from the file's `default:` (dict-form tasks merged in); `work`'s command is the
    // DAG's own `__join__`, rendered with params merged from `default:` and the DAG.
    assert_eq!(tasks.keys().collect::<Vec<_>>(), ["after", "begin", "work"]);
    assert!(log.contains("hello dag-factory run1 True"), "{log}");
    let (state, tasks, log) = test_run(&home, "relative_start");
    assert_eq!(state, "success", "{log}");
    assert_eq!(
        tasks.keys().collect::<Vec<_>>(),
        ["only"],
        "a list of tasks is not merged with default:'s"
    );
    // retries: 1 and retry_delay: 1s from team/defaults.yml: the first try fails, the retry succeeds.
    let (state, tasks, log) = test_run(&home, "team_dag");
    assert_eq!(state, "success", "{log}");
    assert_eq!(tasks["flaky"], ("success".to_string(), 2), "{log}");
}

#[test]
fn run_and_task_states_match_airflow() {
    let home = home_with_fixtures();
    let state = |s: &str, try_number: i64| (s.to_string(), try_number);
    // (DAG, the run's state, each task's state)
    type Case = (&'static str, &'static str, &'static [(&'static str, &'static str)]);
    let cases: &[Case] = &[
        (
            "inner_failure_all_done_leaf",
            "success",
            &[
                ("boom", "failed"),
                ("needs_boom", "upstream_failed"),
                ("report", "success"),
            ],
        ),
        (
            "work_fails_teardown_runs",
            "failed",
            &[("create", "success"), ("work", "failed"), ("delete", "success")],
        ),
        (
            "setup_fails",
            "failed",
            &[
                ("create", "failed"),
                ("work", "upstream_failed"),
                ("delete", "upstream_failed"),
            ],
        ),
        (
            "teardown_fails",
            "success",
            &[("create", "success"), ("work", "success"), ("delete", "failed")],
        ),
        (
            "teardown_fails_the_run",
            "failed",
            &[("create", "success"), ("work", "success"), ("delete", "failed")],
        ),
        (
            "skipped_leaf",
            "success",
            &[("first", "success"), ("skip_me", "skipped")],
        ),
    ];
    for (dag, run_state, task_states) in cases {
        let (got, tasks, log) = test_run(&home, dag);
        assert_eq!(&got, run_state, "{dag}: {log}");
        for (task, expected) in *task_states {
            let tries = if *expected == "upstream_failed" { 0 } else { 1 };
            assert_eq!(tasks[*task], state(expected, tries), "{dag}.{task}: {tasks:?}");
        }
    }
}

/// Each instance's (task id, map_index) -> (state, message) of the latest run of `dag`.
fn instances(home: &Home, dag: &str) -> std::collections::BTreeMap<(String, i64), (String, String)> {
    let runs = home.json(&["dags", "list-runs", dag]);
    home.states(dag, runs[0]["run_id"].as_str().unwrap())
        .iter()
        .map(|ti| {
            (
                (
                    ti["task_id"].as_str().unwrap().to_string(),
                    ti["map_index"].as_i64().unwrap(),
                ),
                (
                    ti["state"].as_str().unwrap_or("none").to_string(),
                    ti["message"].as_str().unwrap_or_default().to_string(),
                ),
            )
        })
        .collect()
}

#[test]
fn mapped_tasks_expand_into_instances_with_airflows_states() {
    let home = home_with_fixtures();
    let key = |task: &str, i: i64| (task.to_string(), i);
    // (DAG, the run's state, each instance's state)
    type Case = (&'static str, &'static str, &'static [(&'static str, i64, &'static str)]);
    let cases: &[Case] = &[
        (
            "mapped_literal",
            "success",
            &[
                ("greet", 0, "success"),
                ("greet", 1, "success"),
                ("greet", 2, "success"),
                ("collect", -1, "success"),
            ],
        ),
        (
            "mapped_xcom",
            "success",
            &[
                ("make", -1, "success"),
                ("square", 0, "success"),
                ("square", 1, "success"),
                ("square", 2, "skipped"),
                ("total", -1, "success"),
            ],
        ),
        (
            "mapped_empty",
            "success",
            &[
                ("nothing", -1, "success"),
                ("each", -1, "skipped"),
                ("after", -1, "skipped"),
            ],
        ),
        (
            "mapped_not_a_list",
            "failed",
            &[
                ("text", -1, "success"),
                ("each", -1, "failed"),
                ("after", -1, "upstream_failed"),
            ],
        ),
    ];
    let mut logs = std::collections::BTreeMap::new();
    for (dag, run_state, expected) in cases {
        let (got, _, log) = test_run(&home, dag);
        assert_eq!(&got, run_state, "{dag}: {log}");
        let found = instances(&home, dag);
        assert_eq!(found.len(), expected.len(), "{dag}: exactly these instances: {found:?}");
        for (task, map_index, state) in *expected {
            assert_eq!(
                found[&key(task, *map_index)].0,
                *state,
                "{dag}.{task}[{map_index}]: {found:?}"
            );
        }
        logs.insert(*dag, (log, found));
    }
    // `partial` arguments are shared, each instance gets its element; the task after them pulls their values
    // as one list in map_index order.
    let (log, _) = &logs["mapped_literal"];
    assert!(log.contains(r#"got ["one world","two world","three world"]"#), "{log}");
    // Over an XCom: elements are whole values (here an `env` mapping each), `ti.map_index` renders, a
    // skipped instance pushes nothing.
    let (log, _) = &logs["mapped_xcom"];
    assert!(log.contains(r#"squares ["0:4","1:9"]"#), "{log}");
    let (_, found) = &logs["mapped_empty"];
    assert!(found[&key("each", -1)].1.contains("empty list"), "{found:?}");
    // Not a list: the mapped task fails naming the XCom's type.
    let (_, found) = &logs["mapped_not_a_list"];
    let message = &found[&key("each", -1)].1;
    assert!(
        message.contains("expected a list or a dict, got str") && message.contains("`text`"),
        "{message}"
    );
}

#[test]
fn what_dagctl_cannot_build_is_one_error_per_file_at_its_line() {
    let home = Home::new();
    let refused = Path::new(FIXTURES).join("refused");
    let output = home.run(&["dags", "validate", refused.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    let expected = [
        ("asset_schedule.yml", 3, "asset aliases and watchers are not supported"),
        (
            "timetable.yml",
            4,
            "of the timetable classes dagctl has CronTriggerTimetable",
        ),
        (
            "taskflow.yml",
            4,
            "Python TaskFlow tasks (`decorator:`) are not supported",
        ),
        ("python_operator.yml", 4, "PythonOperator"),
        ("bad_relative_date.yml", 2, "`2 weeks` is not a date"),
        ("bad_inherited_value.yml", 3, "retries"),
        (
            "bad_expand.yml",
            6,
            "`expand.bash_command` must be a list or `<task_id>.output`",
        ),
        ("bad_mapped_element.yml", 6, "invalid type: map, expected a string"),
    ];
    assert!(
        stdout(&output).contains(&format!(
            "{} file(s), 0 DAG(s), {} error(s)",
            expected.len(),
            expected.len()
        )),
        "one error each: {}\n{err}",
        stdout(&output)
    );
    for (file, line, needle) in expected {
        let at = format!("{}:{line}:", refused.join(file).display());
        let found = err.lines().find(|l| l.contains(&at));
        assert!(
            found.is_some_and(|l| l.contains(needle)),
            "{file}: expected `{needle}` at line {line}:\n{err}"
        );
    }
}
