//! The CLI end to end, through the real binary on SQLite: DAG files, `dags test`, bad input, task behaviour.

mod common;

use std::time::{Duration, Instant};

use common::*;

#[test]
fn validate_reports_file_line_and_key_and_exits_non_zero() {
    let home = Home::new();
    home.write_dag("good.yml", "good:\n  tasks:\n    a: {operator: empty}\n");
    let bad = home.write_dag(
        "bad.yml",
        "bad:\n  tasks:\n    a:\n      operator: bash\n      bash_command: echo\n      retries: lots\n",
    );
    let output = home.run(&["dags", "validate"]);
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(
        err.contains(&format!("{}:6: dag `bad`, task `a`, key `retries`", bad.display())),
        "{err}"
    );
    assert!(stdout(&output).contains("2 file(s), 1 DAG(s), 1 error(s)"));
    // The good file still loads, and the broken one is listed as an import error with its line.
    let dags = home.json(&["dags", "list"]);
    assert_eq!(dags.as_array().unwrap().len(), 1);
    let errors = home.json(&["dags", "list-import-errors"]);
    assert_eq!(errors[0]["line"], 6);
    let ok = home.run(&["dags", "validate", home.dags().join("good.yml").to_str().unwrap()]);
    assert!(ok.status.success());
}

#[test]
fn dags_test_runs_templates_xcom_and_context_and_prints_logs() {
    let home = Home::new();
    home.write_dag(
        "hello.yml",
        r#"
hello:
  params: {who: world}
  tasks:
    greet:
      operator: airflow.operators.bash.BashOperator
      bash_command: 'echo "hello {{ params.who }} {{ ds }} {{ macros.ds_add(ds, 1) }}"; echo "{\"n\": 3}" > "$DAGCTL_XCOM"'
    use:
      operator: bash
      bash_command: 'echo "n={{ ti.xcom_pull(task_ids="greet").n }} $AIRFLOW_CTX_DAG_ID/$AIRFLOW_CTX_TASK_ID/$AIRFLOW_CTX_TRY_NUMBER/$AIRFLOW_CTX_DAG_RUN_ID"'
      dependencies: [greet]
    last_line:
      operator: bash
      bash_command: 'echo first; echo "{{ ti.xcom_pull(task_ids="use") }}"'
      dependencies: [use]
    done: {operator: empty, dependencies: [last_line]}
"#,
    );
    let out = home.ok(&["dags", "test", "hello", "2026-11-01", "--conf", r#"{"who": "dagctl"}"#]);
    assert!(out.contains("hello dagctl 2026-11-01 2026-11-02"), "{out}");
    assert!(out.contains("n=3 hello/use/1/test__"), "{out}");
    // bash pushes its last stdout line as XCom when do_xcom_push is on (the default).
    assert!(out.contains("{task.stdout} INFO - n=3 hello/use/1/test__"), "{out}");
    assert!(out.contains("--- run test__") && out.contains(": success ---"), "{out}");
}

#[test]
fn failing_dag_test_exits_non_zero_and_template_errors_name_the_field() {
    let home = Home::new();
    home.write_dag(
        "f.yml",
        "f:\n  tasks:\n    t:\n      operator: bash\n      bash_command: 'echo {{ params.nope }}'\n",
    );
    let output = home.run(&["dags", "test", "f"]);
    assert_eq!(output.status.code(), Some(1));
    let out = stdout(&output);
    assert!(out.contains("template error in `bash_command`"), "{out}");
}

#[test]
fn bad_input_gives_one_readable_line_and_writes_nothing() {
    let home = Home::new();
    home.write_dag("d.yml", "d:\n  tasks:\n    a: {operator: empty}\n");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["dags", "trigger", "d", "--conf", "{not json"],
            "--conf is not valid JSON",
        ),
        (
            vec!["dags", "trigger", "d", "--conf", "[1, 2]"],
            "--conf must be a JSON object",
        ),
        (vec!["dags", "trigger", "nope"], "dag `nope` not found"),
        (
            vec!["dags", "trigger", "d", "--logical-date", "someday"],
            "--logical-date",
        ),
        (
            vec!["dags", "list-runs", "d", "--state", "sleeping"],
            "unknown run state `sleeping`",
        ),
        (vec!["tasks", "logs", "d", "no-run", "a"], "not found"),
        (
            vec!["dags", "backfill", "d", "-s", "2026-01-01", "-e", "2026-01-02"],
            "has no schedule",
        ),
    ];
    for (args, expected) in cases {
        let output = home.run(&args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let err = stderr(&output);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: ") && err.contains(expected), "{args:?}: {err}");
    }
    // Nothing was written by the failed triggers.
    assert_eq!(home.json(&["dags", "list-runs", "d"]).as_array().unwrap().len(), 0);
    // A bad environment or config file is one line too.
    let output = home
        .command()
        .args(["dags", "list"])
        .env("DAGCTL_PARALLELISM", "many")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("DAGCTL_PARALLELISM"));
    std::fs::write(home.path().join("dagctl.toml"), "paralelism = 2\n").unwrap();
    let output = home.run(&["dags", "list"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("unknown field `paralelism`"),
        "{}",
        stderr(&output)
    );
    std::fs::remove_file(home.path().join("dagctl.toml")).unwrap();
    // Unknown verbs are usage errors (exit 2).
    assert_eq!(home.run(&["dags", "explode"]).status.code(), Some(2));
}

#[test]
fn retries_wait_their_delay_then_succeed() {
    let home = Home::new();
    let marker = home.path().join("attempts");
    home.write_dag(
        "r.yml",
        &format!(
            "r:\n  tasks:\n    flaky:\n      operator: bash\n      retries: 3\n      retry_delay: 1s\n      retry_exponential_backoff: true\n      max_retry_delay: 2s\n      bash_command: 'echo x >> {m}; [ $(wc -l < {m}) -ge 3 ]'\n",
            m = marker.display()
        ),
    );
    let started = Instant::now();
    home.ok(&["dags", "test", "r"]);
    let elapsed = started.elapsed();
    assert_eq!(std::fs::read_to_string(&marker).unwrap().lines().count(), 3);
    // Delays 1 s then 2 s (exponential, capped at 2 s).
    assert!(elapsed >= Duration::from_secs(3), "{elapsed:?}");
    let runs = home.json(&["dags", "list-runs", "r"]);
    let run_id = runs[0]["run_id"].as_str().unwrap().to_string();
    let states = home.states("r", &run_id);
    assert_eq!(states[0]["state"], "success");
    assert_eq!(states[0]["try_number"], 3);
    // Each try has its own log.
    for try_number in ["1", "2", "3"] {
        let log = home.ok(&["tasks", "logs", "r", &run_id, "flaky", "--try", try_number]);
        assert!(log.contains(&format!("starting try {try_number} of 4")), "{log}");
    }
}

#[test]
fn execution_timeout_kills_the_whole_process_group() {
    let home = Home::new();
    let pidfile = home.path().join("child.pid");
    home.write_dag(
        "t.yml",
        &format!("t:\n  tasks:\n    slow:\n      operator: bash\n      execution_timeout: 1s\n      bash_command: 'sleep 120 & echo $! > {}; wait'\n", pidfile.display()),
    );
    let started = Instant::now();
    let output = home.run(&["dags", "test", "t"]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(stdout(&output).contains("timed out after 1s"), "{}", stdout(&output));
    let child: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    wait_for(Duration::from_secs(10), "the background child to die", || {
        (!pid_alive(child)).then_some(())
    });
}

#[test]
fn exit_99_skips_and_trigger_rules_route_around_failures() {
    let home = Home::new();
    home.write_dag(
        "rules.yml",
        r#"
rules:
  tasks:
    skipper: {operator: bash, bash_command: 'exit 99'}
    after_skip: {operator: bash, bash_command: 'true', dependencies: [skipper]}
    boom: {operator: bash, bash_command: 'exit 3'}
    on_fail: {operator: bash, bash_command: 'true', dependencies: [boom], trigger_rule: one_failed}
    needs_success: {operator: empty, dependencies: [boom]}
    none_failed: {operator: empty, dependencies: [skipper], trigger_rule: none_failed}
    teardown: {operator: bash, bash_command: 'true', dependencies: [needs_success, on_fail], trigger_rule: all_done, is_teardown: true}
"#,
    );
    // The same without the teardown marker: its last task ran and succeeded, so the run did (Airflow's rule).
    let plain = std::fs::read_to_string(home.dags().join("rules.yml"))
        .unwrap()
        .replace("rules:", "rules_plain:")
        .replace(", is_teardown: true", "");
    home.write_dag("rules_plain.yml", &plain);
    let output = home.run(&["dags", "test", "rules_plain"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = home.run(&["dags", "test", "rules"]);
    assert_eq!(
        output.status.code(),
        Some(1),
        "the run fails: boom failed upstream of the teardown, which does not decide"
    );
    let runs = home.json(&["dags", "list-runs", "rules"]);
    assert_eq!(runs[0]["state"], "failed");
    let states = home.states("rules", runs[0]["run_id"].as_str().unwrap());
    let state = |task: &str| {
        states.iter().find(|s| s["task_id"] == task).unwrap()["state"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(state("skipper"), "skipped");
    assert_eq!(state("after_skip"), "skipped");
    assert_eq!(state("boom"), "failed");
    assert_eq!(state("on_fail"), "success");
    assert_eq!(state("needs_success"), "upstream_failed");
    assert_eq!(state("none_failed"), "success");
    assert_eq!(state("teardown"), "success");
}

#[test]
fn dagrun_timeout_fails_the_run_and_stops_its_tasks() {
    let home = Home::new();
    home.write_dag("slow.yml", "slow:\n  dagrun_timeout: 2s\n  tasks:\n    long: {operator: bash, bash_command: 'sleep 60'}\n    after: {operator: empty, dependencies: [long]}\n");
    let started = Instant::now();
    let output = home.run(&["dags", "test", "slow"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    let runs = home.json(&["dags", "list-runs", "slow"]);
    let states = home.states("slow", runs[0]["run_id"].as_str().unwrap());
    assert_eq!(states[0]["state"], "failed");
    assert_eq!(states[1]["state"], "skipped");
}

#[test]
fn pools_limit_concurrency() {
    let home = Home::new();
    home.ok(&["pools", "set", "single", "1", "one at a time"]);
    let mut text = String::from("p:\n  default_args: {pool: single}\n  tasks:\n");
    for i in 0..3 {
        text.push_str(&format!("    t{i}: {{operator: bash, bash_command: 'sleep 0.3'}}\n"));
    }
    home.write_dag("p.yml", &text);
    home.ok(&["dags", "test", "p"]);
    let runs = home.json(&["dags", "list-runs", "p"]);
    let states = home.states("p", runs[0]["run_id"].as_str().unwrap());
    let mut spans: Vec<(String, String)> = states
        .iter()
        .map(|s| {
            (
                s["start_date"].as_str().unwrap().to_string(),
                s["end_date"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    spans.sort();
    for pair in spans.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "tasks in a one-slot pool overlapped: {pair:?}");
    }
    let pools = home.json(&["pools", "list"]);
    assert!(pools
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["pool"] == "single" && p["slots"] == 1));
}

#[test]
fn tasks_do_not_inherit_the_engine_s_secrets() {
    let home = Home::new();
    home.write_dag(
        "env.yml",
        "env:\n  tasks:\n    show:\n      operator: bash\n      bash_command: 'echo \"pw=${DAGCTL_ADMIN_PASSWORD:-unset} key=${DAGCTL_SECRET_KEY:-unset} oidc=${DAGCTL_OIDC_CLIENT_SECRET:-unset} home=${DAGCTL_HOME:+set}\"'\n",
    );
    let output = home
        .command()
        .args(["dags", "test", "env"])
        .env("DAGCTL_ADMIN_PASSWORD", "hunter2-admin")
        .env("DAGCTL_SECRET_KEY", "hunter2-signing-key")
        .env("DAGCTL_OIDC_CLIENT_SECRET", "hunter2-oidc")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let out = stdout(&output);
    assert!(output.status.success(), "{out}{}", stderr(&output));
    // The runner's environment is an allow-list (issue 8): not even the data dir, which holds the database.
    assert!(out.contains("pw=unset key=unset oidc=unset home=\n"), "{out}");
    assert!(!out.contains("hunter2"), "{out}");
}

/// `dagctl ... | head -1`: a listing whose reader has gone ends quietly (SIGPIPE, as `ls` does), never with a
/// panic. Every listing here is larger than a pipe's buffer, so it does write after the reader left.
#[test]
fn no_listing_panics_into_a_closed_pipe() {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    let home = Home::new();
    let mut big = String::from("big:\n  tasks:\n");
    for i in 0..1500 {
        big.push_str(&format!(
            "    task_number_{i:05}: {{operator: bash, bash_command: 'echo {i}'}}\n"
        ));
    }
    home.write_dag("big.yml", &big);
    let mut many = String::new();
    for i in 0..1500 {
        many.push_str(&format!("dag_number_{i:05}:\n  tasks:\n    t: {{operator: empty}}\n"));
    }
    home.write_dag("many.yml", &many);
    let mut broken = String::new();
    for i in 0..1500 {
        broken.push_str(&format!(
            "broken_{i:05}:\n  tasks:\n    t: {{operator: no_such_operator_{i}}}\n"
        ));
    }
    home.write_dag("broken.yml", &broken);
    home.ok(&["dags", "list"]);
    let listings: &[&[&str]] = &[
        &["dags", "list"],
        &["dags", "list", "-o", "json"],
        &["dags", "show", "big"],
        &["dags", "show", "big", "-o", "json"],
        &["tasks", "list", "big"],
        &["tasks", "list", "big", "-o", "json"],
        &["dags", "list-import-errors"],
        &["dags", "list-import-errors", "-o", "json"],
    ];
    for args in listings {
        let mut child = home
            .command()
            .args(*args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        // The reader is gone now (stdout dropped); the rest of the listing meets a closed pipe.
        let output = child.wait_with_output().unwrap();
        let err = stderr(&output);
        assert!(!first.is_empty(), "{args:?}: no first line; {err}");
        assert!(
            !err.contains("panicked") && output.status.code() != Some(101),
            "{args:?}: {err}"
        );
        assert!(
            output.status.success() || output.status.signal() == Some(13),
            "{args:?} ended {:?}: {err}",
            output.status
        );
    }
}

/// `dags validate FILE` reads a DAG file with every `defaults.yml` from the DAGs folder down, as the engine
/// does, and checks a `defaults.yml` named on its own as the layer it is.
#[test]
fn validate_reads_a_file_with_its_layers_and_a_defaults_file_as_a_layer() {
    let home = Home::new();
    std::fs::create_dir_all(home.dags().join("dev")).unwrap();
    home.write_dag("defaults.yml", "default_args:\n  owner: team\n  retries: many\n");
    home.write_dag("dev/defaults.yml", "default_args:\n  retry_delay: 30s\n");
    home.write_dag(
        "dev/x.yml",
        "x:\n  tasks:\n    t: {operator: bash, bash_command: 'true'}\n",
    );
    let top = home.dags().join("defaults.yml").display().to_string();
    let dev_defaults = home.dags().join("dev/defaults.yml").display().to_string();
    let dev_dag = home.dags().join("dev/x.yml").display().to_string();
    // The DAG file alone: the folder's top layer applies, with its bad `retries`.
    let out = home.run(&["dags", "validate", &dev_dag]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&top) && stderr(&out).contains("retries"),
        "{}",
        stderr(&out)
    );
    // The defaults file alone: a layer (no DAGs), checked with the layers above it.
    let out = home.run(&["dags", "validate", &dev_defaults]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 file(s), 0 DAG(s), 1 error(s)"),
        "{}",
        stdout(&out)
    );
    assert!(!stderr(&out).contains("defaults_check"), "{}", stderr(&out));
    home.write_dag("defaults.yml", "default_args:\n  owner: team\n  retries: 2\n");
    let out = home.run(&["dags", "validate", &dev_defaults]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("1 file(s), 0 DAG(s), 0 error(s)"),
        "{}",
        stdout(&out)
    );
    home.write_dag("dev/defaults.yml", "default_args:\n  retry_delay: soon\n");
    let out = home.run(&["dags", "validate", &dev_defaults]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&format!("{dev_defaults}:2")), "{}", stderr(&out));
}

#[test]
fn the_bundled_example_keeps_run_conf_out_of_the_shell() {
    let home = Home::new();
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../dags/hello-dagctl.yaml");
    home.write_dag("hello-dagctl.yaml", &std::fs::read_to_string(example).unwrap());
    let marker = home.path().join("injected");
    let who = format!("x\"; echo INJECTED > {}; echo \"", marker.display());
    let conf = serde_json::json!({ "who": who }).to_string();
    let out = home.ok(&["dags", "test", "hello-dagctl", "--conf", &conf]);
    assert!(!marker.exists(), "conf ran as shell text:\n{out}");
    assert!(
        out.contains(&format!("hello {who} on")),
        "conf is printed as written:\n{out}"
    );
}
