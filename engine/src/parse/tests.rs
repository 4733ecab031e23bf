use std::time::Duration;

use super::*;
use crate::timetable::Schedule;
use crate::trigger::TriggerRule;

fn parse(text: &str) -> ParsedFile {
    parse_text("dags/test.yml", text, &[], &OperatorRegistry::builtin())
}

fn only_error(text: &str) -> DagFileError {
    let parsed = parse(text);
    assert!(
        parsed.dags.is_empty(),
        "expected no DAGs, got {:?}",
        parsed.dags.iter().map(|d| &d.dag_id).collect::<Vec<_>>()
    );
    assert_eq!(parsed.errors.len(), 1, "{:#?}", parsed.errors);
    parsed.errors[0].clone()
}

const DAG_FACTORY_EXAMPLE: &str = r#"
default:
  default_args:
    start_date: 2024-11-11

basic_example_dag:
  default_args:
    owner: "custom_owner"
  description: "this is an example dag"
  schedule: "0 3 * * *"
  render_template_as_native_obj: True
  catchup: false
  task_groups:
    - group_name: "example_task_group"
      tooltip: "this is an example task group"
      dependencies: [task_1]
  tasks:
    - task_id: "task_1"
      operator: airflow.operators.bash.BashOperator
      bash_command: "echo 1"
    - task_id: "task_2"
      operator: airflow.operators.bash.BashOperator
      bash_command: "echo 2"
      dependencies: [task_1]
    - task_id: "task_3"
      operator: airflow.operators.bash.BashOperator
      bash_command: "echo 3"
      dependencies: [task_1]
      task_group_name: "example_task_group"
"#;

#[test]
fn reads_dag_factory_example_as_is() {
    let parsed = parse(DAG_FACTORY_EXAMPLE);
    assert!(parsed.errors.is_empty(), "{:#?}", parsed.errors);
    let dag = &parsed.dags[0];
    assert_eq!(dag.dag_id, "basic_example_dag");
    assert_eq!(dag.owner, "custom_owner");
    assert_eq!(
        dag.schedule,
        Schedule::CronTrigger {
            expr: "0 3 * * *".into(),
            display: "0 3 * * *".into(),
            interval_seconds: 0,
            timezone: None,
        }
    );
    assert_eq!(dag.start_date.unwrap().to_rfc3339(), "2024-11-11T00:00:00+00:00");
    assert!(dag.render_template_as_native_obj);
    let ids: Vec<&str> = dag.tasks.iter().map(|t| t.task_id.as_str()).collect();
    assert_eq!(ids, vec!["task_1", "task_2", "example_task_group.task_3"]);
    assert_eq!(dag.task("example_task_group.task_3").unwrap().upstream, vec!["task_1"]);
    assert_eq!(dag.task("task_1").unwrap().operator, "bash");
    assert_eq!(dag.task("task_1").unwrap().effective_priority, 3);
}

#[test]
fn tasks_as_dict_with_defaults_and_airflow3_paths() {
    let parsed = parse(
        r#"
etl:
  schedule: "@daily"
  start_date: 2026-11-01
  dagrun_timeout: {__type__: datetime.timedelta, seconds: 600}
  default_args: {retries: 2, retry_delay: 30s, retry_exponential_backoff: true, max_retry_delay: 5m, pool: chain}
  params: {nodes: 4}
  tags: [chain, nightly]
  tasks:
    extract:
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: echo extract
      execution_timeout: 90
    load:
      operator: airflow.providers.standard.operators.empty.EmptyOperator
      dependencies: [extract]
      retries: 0
      trigger_rule: all_done
"#,
    );
    assert!(parsed.errors.is_empty(), "{:#?}", parsed.errors);
    let dag = &parsed.dags[0];
    assert_eq!(dag.dagrun_timeout, Some(Duration::from_secs(600)));
    assert_eq!(dag.params["nodes"], 4);
    assert_eq!(dag.tags, vec!["chain", "nightly"]);
    let extract = dag.task("extract").unwrap();
    assert_eq!(
        (extract.retries, extract.retry_delay, extract.pool.as_str()),
        (2, Duration::from_secs(30), "chain")
    );
    assert_eq!(extract.max_retry_delay, Some(Duration::from_secs(300)));
    assert_eq!(extract.execution_timeout, Some(Duration::from_secs(90)));
    let load = dag.task("load").unwrap();
    assert_eq!(
        (load.retries, load.trigger_rule, load.operator.as_str()),
        (0, TriggerRule::AllDone, "empty")
    );
}

#[test]
fn schedule_interval_is_accepted_with_a_warning() {
    let parsed =
        parse("old:\n  schedule_interval: '@hourly'\n  start_date: 2026-01-01\n  tasks: {a: {operator: empty}}\n");
    assert!(parsed.errors.is_empty(), "{:#?}", parsed.errors);
    assert_eq!(parsed.warnings.len(), 1);
    assert_eq!(parsed.warnings[0].location.line, Some(2));
    assert!(parsed.warnings[0].message.contains("deprecated"));
}

#[test]
fn errors_name_file_line_dag_task_and_key() {
    let err =
        only_error("d:\n  tasks:\n    a: {operator: bash, bash_command: x}\n    b:\n      operator: SparkOperator\n");
    assert_eq!(err.location.line, Some(5));
    assert_eq!(err.location.task_id.as_deref(), Some("b"));
    assert_eq!(err.location.key.as_deref(), Some("operator"));
    assert!(
        err.message.contains("unknown operator `SparkOperator`"),
        "{}",
        err.message
    );
    assert!(
        err.to_string()
            .starts_with("dags/test.yml:5: dag `d`, task `b`, key `operator`:"),
        "{err}"
    );

    let err = only_error("d:\n  tasks:\n    a:\n      operator: bash\n      bash_command: x\n      bash_comand: y\n");
    assert_eq!(
        (err.location.line, err.location.key.as_deref()),
        (Some(6), Some("bash_comand"))
    );

    let err = only_error("d:\n  shedule: '@daily'\n  tasks: {a: {operator: empty}}\n");
    assert_eq!(
        (err.location.line, err.location.key.as_deref()),
        (Some(2), Some("shedule"))
    );

    let err = only_error("d:\n  schedule: '0 25 * * *'\n  start_date: 2026-01-01\n  tasks: {a: {operator: empty}}\n");
    assert_eq!(
        (err.location.line, err.location.key.as_deref()),
        (Some(2), Some("schedule"))
    );

    let err = only_error("d:\n  tasks:\n    a: {operator: empty, dependencies: [c]}\n    b: {operator: empty}\n");
    assert_eq!(
        (err.location.line, err.location.task_id.as_deref()),
        (Some(3), Some("a"))
    );
    assert!(err.message.contains("unknown dependency `c`"));

    let err = only_error(
        "d:\n  tasks:\n    a: {operator: empty, dependencies: [b]}\n    b: {operator: empty, dependencies: [a]}\n",
    );
    assert!(err.message.contains("dependency cycle"), "{}", err.message);

    let err = only_error("d:\n  tasks:\n    a: {operator: bash}\n");
    assert!(err.message.contains("missing required argument `bash_command`"));

    let err = only_error("d:\n  default_args: {retries: many}\n  tasks:\n    a: {operator: empty}\n");
    assert_eq!(
        (err.location.line, err.location.key.as_deref()),
        (Some(2), Some("retries"))
    );

    let err = only_error("d:\n  tasks:\n    a: {operator: empty, retry_delay: 5 parsecs}\n");
    assert_eq!(err.location.key.as_deref(), Some("retry_delay"));

    let err = only_error("d:\n  tasks:\n    a: {operator: empty, trigger_rule: sometimes}\n");
    assert!(err.message.contains("all_success"));

    let err = only_error("d:\n  schedule: '@daily'\n  tasks:\n    a: {operator: empty}\n");
    assert_eq!(err.location.key.as_deref(), Some("start_date"));

    let err = only_error("d: [1, 2]\n");
    assert_eq!(err.location.line, Some(1));

    let err = only_error("a: {b: 1\n");
    assert!(err.message.contains("invalid YAML"));
}

#[test]
fn one_bad_dag_voids_its_file_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.yml"), "good:\n  tasks: {a: {operator: empty}}\n").unwrap();
    std::fs::write(
        dir.path().join("bad.yml"),
        "bad:\n  tasks: {a: {operator: nope}}\nalso:\n  tasks: {a: {operator: empty}}\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("team")).unwrap();
    std::fs::write(
        dir.path().join("defaults.yml"),
        "default_args: {owner: global_owner, retries: 3}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("team/defaults.yml"),
        "default_args: {owner: team_owner}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("team/nested.yaml"),
        "nested:\n  tasks: {a: {operator: empty}}\n",
    )
    .unwrap();
    let files = load_folder(dir.path(), &Default::default(), &OperatorRegistry::builtin());
    assert_eq!(files.len(), 3);
    let by_name = |suffix: &str| files.iter().find(|f| f.path.ends_with(suffix)).unwrap();
    assert!(by_name("bad.yml").dags.is_empty());
    assert_eq!(by_name("bad.yml").errors.len(), 1);
    assert_eq!(by_name("good.yml").dags[0].owner, "global_owner");
    let nested = &by_name("nested.yaml").dags[0];
    assert_eq!(nested.owner, "team_owner");
    assert_eq!(nested.tasks[0].retries, 3);
}

#[test]
fn duplicate_dag_ids_across_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yml"), "same:\n  tasks: {a: {operator: empty}}\n").unwrap();
    std::fs::write(dir.path().join("b.yml"), "same:\n  tasks: {a: {operator: empty}}\n").unwrap();
    let files = load_folder(dir.path(), &Default::default(), &OperatorRegistry::builtin());
    assert_eq!(files[0].dags.len(), 1);
    assert!(files[1].errors[0].message.contains("already defined"));
}

#[test]
fn group_dependencies_expand_to_roots_and_leaves() {
    let parsed = parse(
        r#"
g:
  task_groups:
    build: {dependencies: [start]}
  tasks:
    start: {operator: empty}
    compile: {operator: empty, task_group_name: build}
    link: {operator: empty, task_group_name: build, dependencies: [compile]}
    ship: {operator: empty, dependencies: [build]}
"#,
    );
    assert!(parsed.errors.is_empty(), "{:#?}", parsed.errors);
    let dag = &parsed.dags[0];
    assert_eq!(dag.task("build.compile").unwrap().upstream, vec!["start"]);
    assert_eq!(dag.task("build.link").unwrap().upstream, vec!["build.compile"]);
    assert_eq!(dag.task("ship").unwrap().upstream, vec!["build.link"]);
}

#[test]
fn never_panics_on_odd_input() {
    for text in [
        "",
        "~",
        "- 1\n- 2",
        "d: ~",
        "d: {tasks: ~}",
        "d: {tasks: []}",
        "d: {tasks: [1]}",
        "d: {tasks: {a: 1}}",
        "? [a]\n: 1",
        "d: {default_args: [1], tasks: {}}",
        "d: {task_groups: 5, tasks: {}}",
        "&a [*a]",
    ] {
        let _ = parse(text);
    }
}

#[test]
fn setup_and_teardown_markers_are_read_and_checked() {
    let parsed = parse(
        "d:\n  tasks:\n    up: {operator: bash, bash_command: x, is_setup: true}\n    down: {operator: bash, bash_command: x, as_teardown: {setups: [up], on_failure_fail_dagrun: true}}\n    plain: {operator: bash, bash_command: x, dependencies: [up], trigger_rule: all_done}\n",
    );
    assert!(parsed.errors.is_empty(), "{:#?}", parsed.errors);
    let dag = &parsed.dags[0];
    let down = dag.task("down").unwrap();
    assert!(down.is_teardown && down.on_failure_fail_dagrun && !down.is_setup);
    assert_eq!(down.trigger_rule, TriggerRule::AllDoneSetupSuccess);
    assert_eq!(down.upstream, vec!["up".to_string()]);
    assert!(dag.task("up").unwrap().is_setup);
    assert!(!dag.task("plain").unwrap().is_teardown);
    let cases = [
        (
            "    t: {operator: bash, bash_command: x, is_setup: true, is_teardown: true}\n",
            "cannot be both a setup and a teardown",
        ),
        (
            "    t: {operator: bash, bash_command: x, on_failure_fail_dagrun: true}\n",
            "`on_failure_fail_dagrun` is for teardown tasks",
        ),
        (
            "    t: {operator: bash, bash_command: x, is_teardown: true, trigger_rule: all_success}\n",
            "a teardown task runs when its upstream is done",
        ),
        (
            "    t: {operator: bash, bash_command: x, as_teardown: [a]}\n",
            "`as_teardown` must be",
        ),
        (
            "    t: {operator: bash, bash_command: x, as_teardown: {setup: [a]}}\n",
            "unknown `as_teardown` key `setup`",
        ),
        (
            "    t: {operator: bash, bash_command: x, is_teardown: 'yes'}\n",
            "`is_teardown` must be true or false",
        ),
    ];
    for (task, want) in cases {
        let err = only_error(&format!("d:\n  tasks:\n{task}"));
        assert!(err.message.contains(want), "{task}: {}", err.message);
        assert_eq!(err.location.line, Some(3), "{task}: {err:?}");
    }
    // Markers belong to a task: `default_args` cannot make every task a teardown (Airflow's operators do not
    // take them as arguments either).
    let parsed = parse("d:\n  default_args: {is_teardown: true}\n  tasks:\n    t: {operator: bash, bash_command: x}\n");
    assert!(parsed.errors.is_empty(), "{:#?}", parsed.errors);
    assert!(!parsed.dags[0].task("t").unwrap().is_teardown);
    assert!(
        parsed.warnings[0].message.contains("`is_teardown` is ignored"),
        "{:#?}",
        parsed.warnings
    );
}

#[test]
fn ids_follow_airflow_s_patterns_and_empty_dags_load() {
    let parsed = parse(
        "d:\n  tasks:\n    extract.v2: {operator: bash, bash_command: x}\n    größe_1: {operator: bash, bash_command: x, dependencies: [extract.v2]}\n",
    );
    assert!(parsed.errors.is_empty(), "{:#?}", parsed.errors);
    let dag = &parsed.dags[0];
    assert_eq!(dag.task("größe_1").unwrap().upstream, vec!["extract.v2".to_string()]);
    let parsed = parse("empty:\n  tasks: []\nalso_empty:\n  tasks: {}\n");
    assert!(parsed.errors.is_empty(), "{:#?}", parsed.errors);
    assert_eq!(parsed.dags.len(), 2);
    assert!(parsed.dags.iter().all(|d| d.tasks.is_empty()));
    let long = "t".repeat(251);
    let cases = [
        (
            format!("    {long}: {{operator: bash, bash_command: x}}\n"),
            "1 to 250 letters",
        ),
        (
            "    'a/b': {operator: bash, bash_command: x}\n".to_string(),
            "1 to 250 letters",
        ),
        (
            "    t: {decorator: airflow.decorators.task, python_callable: f}\n".to_string(),
            "Python TaskFlow tasks",
        ),
    ];
    for (task, want) in cases {
        let err = only_error(&format!("d:\n  tasks:\n{task}"));
        assert!(err.message.contains(want), "{task}: {}", err.message);
    }
    let err = only_error(
        "d:\n  task_groups:\n    a.b: {}\n  tasks:\n    t: {operator: bash, bash_command: x, task_group_name: a.b}\n",
    );
    assert!(err.message.contains("a group id is 1 to 200"), "{}", err.message);
}

#[test]
fn default_args_airflow_ignores_warn_and_typos_still_fail() {
    let parsed = parse(
        "d:\n  default_args:\n    owner: me\n    provide_context: true\n    sla: 3600\n    catchup: false\n  tasks:\n    t: {operator: bash, bash_command: x}\n",
    );
    assert!(parsed.errors.is_empty(), "{:#?}", parsed.errors);
    assert_eq!(parsed.dags.len(), 1);
    let lines: Vec<(Option<usize>, &str)> = parsed
        .warnings
        .iter()
        .map(|w| (w.location.line, w.message.as_str()))
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert_eq!(lines[0].0, Some(4), "{lines:?}");
    assert!(lines[0].1.contains("`provide_context` is ignored"), "{lines:?}");
    let err = only_error("d:\n  default_args:\n    retires: 2\n  tasks:\n    t: {operator: bash, bash_command: x}\n");
    assert!(err.message.contains("did you mean `retries`?"), "{}", err.message);
    assert_eq!(err.location.line, Some(3));
}

#[test]
fn executor_config_is_checked_where_it_is_written_and_inherited_from_default_args() {
    let err = only_error(
        "d:\n  tasks:\n    a:\n      operator: bash\n      bash_command: x\n      executor_config:\n        image: x\n        resources:\n          limits: {cpu: lots}\n",
    );
    assert_eq!(err.location.line, Some(9), "{err:?}");
    assert_eq!(err.location.task_id.as_deref(), Some("a"));
    assert_eq!(
        err.location.key.as_deref(),
        Some("executor_config.resources.limits.cpu")
    );
    assert!(err.message.contains("`lots` is not a quantity"), "{err:?}");
    let err = only_error("d:\n  tasks:\n    a:\n      operator: bash\n      bash_command: x\n      executor_config:\n        pod_override: {}\n");
    assert_eq!(err.location.line, Some(7), "{err:?}");
    assert_eq!(err.location.key.as_deref(), Some("executor_config.pod_override"));
    assert!(err.message.contains("unknown key `pod_override`"), "{err:?}");

    let parsed = parse(
        "d:\n  default_args:\n    executor_config: {image: 'runner@sha256:ab', node_selector: {pool: load}}\n  tasks:\n    a: {operator: bash, bash_command: x}\n    b:\n      operator: bash\n      bash_command: x\n      executor_config: {image: other}\n",
    );
    assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    let dag = &parsed.dags[0];
    let a = dag.task("a").unwrap().executor_config.as_ref().unwrap();
    assert_eq!(a.image.as_deref(), Some("runner@sha256:ab"));
    assert_eq!(a.node_selector["pool"], "load");
    let b = dag.task("b").unwrap().executor_config.as_ref().unwrap();
    assert_eq!(
        b.image.as_deref(),
        Some("other"),
        "a task's own executor_config replaces the default"
    );
    assert!(b.node_selector.is_empty());
}
