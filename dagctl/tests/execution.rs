//! The task runner and the task execution API through the real `dagctl` binary: what a task's environment
//! holds, the try-scoped token's rules, and a chain operator that outlives a killed scheduler.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{admin_token, free_port, http, http_get, wait_for, Home};
use serde_json::Value;

fn run_state(home: &Home, dag_id: &str, run_id: &str) -> Option<String> {
    let runs = home.try_json(&["dags", "list-runs", dag_id])?;
    runs.as_array()?
        .iter()
        .find(|r| r["run_id"] == run_id)
        .and_then(|r| r["state"].as_str().map(str::to_string))
}

fn state_of(home: &Home, dag_id: &str, run_id: &str, task_id: &str) -> Value {
    home.states(dag_id, run_id)
        .into_iter()
        .find(|s| s["task_id"] == task_id)
        .unwrap_or(Value::Null)
}

/// The claims of a JWT (not verified: the test only reads which try it is for).
fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT");
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut count = 0;
    let mut bytes = Vec::new();
    for c in payload.bytes() {
        let value = alphabet.iter().position(|a| *a == c).expect("base64url") as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    serde_json::from_slice(&bytes).expect("JSON claims")
}

#[test]
fn a_task_s_environment_is_an_allow_list_without_engine_secrets_or_database_url() {
    let home = Home::postgres();
    let url = home.database_url.clone().unwrap();
    home.write_dag(
        "envdump.yml",
        "envdump:\n  tasks:\n    dump: {operator: bash, bash_command: 'env | sort'}\n    appended: {operator: bash, append_env: true, env: {EXTRA: 'yes'}, bash_command: 'env | sort'}\n    replaced: {operator: bash, env: {ONLY: 'this'}, bash_command: 'env | sort'}\n",
    );
    let secrets = [
        ("DAGCTL_ADMIN_PASSWORD", "admin-pass-7f3a9c"),
        ("DAGCTL_SECRET_KEY", "signing-key-0123456789abcdef"),
        ("DAGCTL_OIDC_CLIENT_SECRET", "oidc-secret-55aa"),
        ("AWS_SECRET_ACCESS_KEY", "aws-secret-in-the-engine-env"),
    ];
    let mut command = home.command();
    command.args(["dags", "test", "envdump"]);
    for (name, value) in secrets {
        command.env(name, value);
    }
    let output = command.output().expect("run dagctl");
    let printed = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let runs = home.json(&["dags", "list-runs", "envdump"]);
    let run_id = runs[0]["run_id"].as_str().unwrap().to_string();
    let password = url
        .split(':')
        .nth(2)
        .and_then(|p| p.split('@').next())
        .unwrap()
        .to_string();
    for task in ["dump", "appended", "replaced"] {
        let log = home.ok(&["tasks", "logs", "envdump", &run_id, task]);
        assert!(log.contains("AIRFLOW_CTX_DAG_ID=envdump"), "{task}: {log}");
        assert!(log.contains(&format!("AIRFLOW_CTX_TASK_ID={task}")), "{task}: {log}");
        // The try's token stays with its runner: a Viewer reading this log could otherwise act as the try.
        assert!(!log.contains("DAGCTL_TASK_TOKEN"), "{task}: {log}");
        assert!(!log.contains("DAGCTL_EXECUTION_API_URL"), "{task}: {log}");
        assert!(!log.contains("DAGCTL_DATABASE_URL"), "{task}: {log}");
        assert!(
            !log.contains(&url) && !log.contains(&format!(":{password}@")),
            "{task}: {log}"
        );
        assert!(!log.contains("DAGCTL_HOME="), "{task}: {log}");
        for (name, value) in secrets {
            assert!(!log.contains(name) && !log.contains(value), "{task} sees {name}: {log}");
        }
    }
    let dump = home.ok(&["tasks", "logs", "envdump", &run_id, "dump"]);
    assert!(dump.contains("PATH="), "{dump}");
    let appended = home.ok(&["tasks", "logs", "envdump", &run_id, "appended"]);
    assert!(
        appended.contains("EXTRA=yes") && appended.contains("PATH="),
        "{appended}"
    );
    let replaced = home.ok(&["tasks", "logs", "envdump", &run_id, "replaced"]);
    assert!(
        replaced.contains("ONLY=this") && !replaced.contains("HOME="),
        "{replaced}"
    );
    // Nor does the runner's own command line or the engine's answers carry them.
    assert!(!printed.contains(&url));
}

#[test]
fn tries_run_in_the_lean_runner_binary_beside_dagctl() {
    // The task prints its runner's command line and its runner's parent's.
    let dag = "who:\n  tasks:\n    me: {operator: bash, bash_command: \"tr '\\\\0' ' ' < /proc/$PPID/cmdline; echo; tr '\\\\0' ' ' < /proc/$(cut -d' ' -f4 /proc/$PPID/stat)/cmdline; echo\"}\n";
    let exe = Path::new(common::BIN).with_file_name("dagctl-runner");
    let runner_and_parent = |home: &Home| {
        let out = home.ok(&["dags", "test", "who"]);
        let at = out
            .lines()
            .position(|l| l.contains("tasks run who"))
            .unwrap_or_else(|| panic!("{out}"));
        let lines: Vec<&str> = out.lines().collect();
        (lines[at].to_string(), lines[at + 1].to_string())
    };

    // By default the runner is forked by the runner host, and titled with its arguments as an exec'd one is.
    let home = Home::new();
    home.write_dag("who.yaml", dag);
    let (runner, parent) = runner_and_parent(&home);
    assert!(
        runner.contains(&format!("{} tasks run who ", exe.display())) && runner.contains("--try 1 --map-index -1"),
        "{runner}"
    );
    assert!(
        parent.contains(&format!("{} tasks host", exe.display())) && !parent.contains("---"),
        "the runner's parent is the host, titled `tasks host`: {parent}"
    );

    // `fork_runners = false`: the runner binary is started for the try by the engine itself.
    let mut home = Home::new();
    home.env.push(("DAGCTL_FORK_RUNNERS".into(), "false".into()));
    home.write_dag("who.yaml", dag);
    let (runner, parent) = runner_and_parent(&home);
    assert!(
        runner.contains(&format!("{} tasks run who ", exe.display())),
        "{runner}"
    );
    assert!(
        parent.contains(&format!("{} dags test who", common::BIN)),
        "the runner's parent is the engine: {parent}"
    );
}

#[test]
fn execution_tokens_are_scoped_to_one_running_try() {
    let home = Home::new();
    let marks = home.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    home.write_dag(
        "tokens.yml",
        &format!(
            r#"
tokens:
  tasks:
    holder: {{operator: bash, bash_command: 'touch {m}/started; for i in $(seq 600); do [ -e {m}/release ] && exit 0; sleep 0.1; done; exit 1'}}
    other: {{operator: bash, bash_command: 'echo other'}}
"#,
            m = marks.display()
        ),
    );
    let port = free_port();
    // Runners started one by one hold their token in their environment (a forked runner holds it in memory
    // only), where this test reads it; the rules checked are the server's, whoever holds the token.
    let mut home = home;
    home.env.push(("DAGCTL_FORK_RUNNERS".into(), "false".into()));
    let _server = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(30), "standalone", || http_get(port, "/health"));
    home.ok(&["dags", "trigger", "tokens", "--run-id", "tok-1"]);
    // The token is in the runner's own environment only (the command never sees it); the test reads it there.
    let token = wait_for(Duration::from_secs(30), "the holder's runner and its token", || {
        marks.join("started").exists().then_some(())?;
        let pid = state_of(&home, "tokens", "tok-1", "holder")["pid"].as_i64()?;
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        environ
            .split(|b| *b == 0)
            .find_map(|var| var.strip_prefix(b"DAGCTL_TASK_TOKEN="))
            .map(|t| String::from_utf8_lossy(t).to_string())
    });
    let holder = claims(&token)["ti"].as_i64().expect("ti in claims");
    wait_for(Duration::from_secs(30), "`other` to finish", || {
        (state_of(&home, "tokens", "tok-1", "other")["state"] == "success").then_some(())
    });
    let bearer = format!("Bearer {token}");
    let auth = [("Authorization", bearer.as_str()), ("Content-Type", "application/json")];
    let heartbeat = |id: i64, headers: &[(&str, &str)]| {
        http(
            port,
            "PUT",
            &format!("/execution/task-instances/{id}/heartbeat"),
            headers,
            None,
        )
        .0
    };
    assert_eq!(heartbeat(holder, &auth), 204);
    // Another task instance's path, with this token.
    assert_eq!(heartbeat(holder + 1, &auth), 403);
    assert_eq!(heartbeat(holder - 1, &auth), 403);
    // No token, a malformed one, a tampered one, a user's API token.
    assert_eq!(heartbeat(holder, &[]), 401);
    assert_eq!(heartbeat(holder, &[("Authorization", "Bearer not-a-jwt")]), 401);
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(
        heartbeat(holder, &[("Authorization", &format!("Bearer {tampered}"))]),
        401
    );
    let api_token = admin_token(&home, port);
    assert_eq!(
        heartbeat(holder, &[("Authorization", &format!("Bearer {api_token}"))]),
        401
    );
    // A start naming another task than the token's.
    let start = br#"{"dag_id":"tokens","run_id":"tok-1","task_id":"other","hostname":"h","pid":1}"#;
    let (status, _, body) = http(port, "POST", "/execution/task-instances/run", &auth, Some(start));
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    let wrong_try = br#"{"dag_id":"tokens","run_id":"tok-1","task_id":"holder","try_number":7,"hostname":"h","pid":1}"#;
    assert_eq!(
        http(port, "POST", "/execution/task-instances/run", &auth, Some(wrong_try)).0,
        403
    );
    // States a try may not report, unknown fields, not JSON: 4xx, nothing changes.
    let state_path = format!("/execution/task-instances/{holder}/state");
    for body in [
        &br#"{"state":"running"}"#[..],
        br#"{"state":"up_for_retry"}"#,
        br#"{"state":"success","bogus":1}"#,
        br#"[1,2]"#,
        b"not json",
    ] {
        let (status, headers, reply) = http(port, "PATCH", &state_path, &auth, Some(body));
        assert_eq!(
            status,
            422,
            "{}: {}",
            String::from_utf8_lossy(body),
            String::from_utf8_lossy(&reply)
        );
        assert!(headers
            .iter()
            .any(|(n, v)| n == "content-type" && v.starts_with("application/json")));
    }
    assert_eq!(state_of(&home, "tokens", "tok-1", "holder")["state"], "running");
    // A log line sent with the token lands in the try's log.
    let line = br#"{"lines":[{"timestamp":"2026-12-02T00:00:00.000Z","level":"info","logger":"test","event":"sent by the test"}]}"#;
    let send_line = || {
        http(
            port,
            "POST",
            &format!("/execution/task-instances/{holder}/logs"),
            &auth,
            Some(line),
        )
        .0
    };
    assert_eq!(send_line(), 204);
    // Monitor samples: for a network that exists, stored with this try's run and task; bad batches are 4xx.
    let claim = br#"{"name":"tok-net","backend":"local","host":"h","spec":"{}"}"#;
    assert_eq!(http(port, "POST", "/execution/networks", &auth, Some(claim)).0, 204);
    let sample = br#"{"samples":[{"node":"n1","metric":"head","at":"2026-12-02T00:00:00Z","value":7}]}"#;
    assert_eq!(
        http(port, "POST", "/execution/networks/nope/samples", &auth, Some(sample)).0,
        404
    );
    assert_eq!(
        http(port, "POST", "/execution/networks/tok-net/samples", &[], Some(sample)).0,
        401
    );
    let (status, _, reply) = http(port, "POST", "/execution/networks/tok-net/samples", &auth, Some(sample));
    assert_eq!(status, 204, "{}", String::from_utf8_lossy(&reply));
    let too_many = format!(
        r#"{{"samples":[{}]}}"#,
        vec![r#"{"node":"n","metric":"m","at":"2026-12-02T00:00:00Z","value":1}"#; 10_001].join(",")
    );
    for body in [
        too_many.as_bytes(),
        br#"{"samples":[{"node":"","metric":"head","at":"2026-12-02T00:00:00Z","value":1}]}"#,
        br#"{"samples":[{"node":"n","metric":"head","at":"yesterday","value":1}]}"#,
        br#"{"samples":[{"node":"n","metric":"head","at":"2026-12-02T00:00:00Z","value":1,"network":"x"}]}"#,
    ] {
        let (status, _, reply) = http(port, "POST", "/execution/networks/tok-net/samples", &auth, Some(body));
        assert_eq!(status, 422, "{}", String::from_utf8_lossy(&reply));
    }
    let alert = br#"{"alerts":[{"node":"n1","level":"warn","pattern":"Served #","message":"WARN Served 1","count":2,"first_at":"2026-12-02T00:00:00Z","last_at":"2026-12-02T00:00:01Z"}]}"#;
    assert_eq!(
        http(port, "POST", "/execution/networks/tok-net/alerts", &auth, Some(alert)).0,
        204
    );
    assert_eq!(
        http(port, "POST", "/execution/networks/nope/alerts", &auth, Some(alert)).0,
        404
    );
    for body in [
        &br#"{"alerts":[{"node":"n1","level":"info","pattern":"p","message":"m","count":1,"first_at":"2026-12-02T00:00:00Z","last_at":"2026-12-02T00:00:00Z"}]}"#[..],
        br#"{"alerts":[{"node":"n1","level":"warn","pattern":"p","message":"m","count":0,"first_at":"2026-12-02T00:00:00Z","last_at":"2026-12-02T00:00:00Z"}]}"#,
        br#"{"alerts":[{"node":"n1","level":"warn","pattern":"p","message":"m","count":1,"first_at":"2026-12-02T00:00:09Z","last_at":"2026-12-02T00:00:00Z"}]}"#,
    ] {
        let (status, _, reply) = http(port, "POST", "/execution/networks/tok-net/alerts", &auth, Some(body));
        assert_eq!(status, 422, "{}", String::from_utf8_lossy(&reply));
    }
    let alerts = home.json(&["net", "alerts", "tok-net"]);
    assert_eq!(alerts.as_array().unwrap().len(), 1, "{alerts}");
    assert_eq!(
        (alerts[0]["count"].as_i64(), alerts[0]["task_id"].as_str()),
        (Some(2), Some("holder"))
    );
    let stored = home.json(&["net", "samples", "tok-net"]);
    assert_eq!(stored.as_array().unwrap().len(), 1, "{stored}");
    assert_eq!(stored[0]["value"], 7.0);
    std::fs::write(marks.join("release"), "").unwrap();
    let state = wait_for(Duration::from_secs(30), "the run to finish", || {
        run_state(&home, "tokens", "tok-1").filter(|s| s == "success" || s == "failed")
    });
    assert_eq!(state, "success");
    let log = home.ok(&["tasks", "logs", "tokens", "tok-1", "holder"]);
    assert!(
        log.contains("sent by the test") && log.contains("task succeeded"),
        "{log}"
    );
    // After the try ended its token is worth nothing.
    assert_eq!(heartbeat(holder, &auth), 403);
    let (status, _, body) = http(port, "PATCH", &state_path, &auth, Some(br#"{"state":"failed"}"#));
    assert_eq!(status, 403, "{}", String::from_utf8_lossy(&body));
    assert_eq!(send_line(), 403);
    let networks = http(port, "GET", "/execution/networks", &auth, None).0;
    assert_eq!(networks, 403);
    let holder_state = state_of(&home, "tokens", "tok-1", "holder");
    assert_eq!(holder_state["state"], "success");
    assert_eq!(holder_state["try_number"], 1);
}

fn geth() -> PathBuf {
    common::client_binary("geth", "DAGCTL_GETH")
}

fn alive(pid: i64) -> bool {
    Path::new(&format!("/proc/{pid}/cwd")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

#[test]
fn a_chain_operator_survives_a_scheduler_sigkill_and_is_adopted() {
    let home = Home::new();
    let geth = geth();
    home.write_dag(
        "adopt.yml",
        r#"
adopt:
  tasks:
    deploy: {operator: chain.deploy_network, client: geth, consensus: clique, nodes: 1, block_time: 2, ready_timeout: 2m}
    down: {operator: chain.teardown, network: deploy, trigger_rule: all_done, dependencies: [deploy]}
"#,
    );
    let port = free_port();
    let start = |home: &Home| {
        let log = home.path().join(format!("standalone-{}.log", rand_suffix()));
        let file = std::fs::File::create(&log).unwrap();
        let child = home
            .command()
            .env("DAGCTL_GETH", &geth)
            .args(["standalone", "--port", &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("spawn standalone");
        common::Proc {
            child: Some(child),
            log,
        }
    };
    let mut first = start(&home);
    wait_for(Duration::from_secs(30), "standalone", || http_get(port, "/health"));
    home.ok(&["dags", "trigger", "adopt", "--run-id", "adopt-1"]);
    // The deploy is under way (its network is recorded as starting) in its own runner process.
    let runner = wait_for(Duration::from_secs(60), "the deploy to be starting", || {
        let nets = home.try_json(&["net", "ls"])?;
        let starting = nets.as_array()?.iter().any(|n| n["status"] == "starting");
        let pid = state_of(&home, "adopt", "adopt-1", "deploy")["pid"].as_i64()?;
        starting.then_some(pid)
    });
    first.kill9();
    assert!(alive(runner), "the deploy's runner died with its scheduler");
    let second = start(&home);
    let state = wait_for(Duration::from_secs(180), "the run to finish", || {
        run_state(&home, "adopt", "adopt-1").filter(|s| s == "success" || s == "failed")
    });
    let deploy = state_of(&home, "adopt", "adopt-1", "deploy");
    assert_eq!(state, "success", "{deploy}\n{}", second.output());
    assert_eq!(deploy["try_number"], 1, "{deploy}");
    let log = home.ok(&["tasks", "logs", "adopt", "adopt-1", "deploy"]);
    assert!(log.contains("adopted by a new scheduler"), "{log}");
    assert!(log.contains("ready in"), "{log}");
    assert!(!alive(runner), "the runner is gone after its try");
    let nets = home.json(&["net", "ls", "--all"]);
    let net = &nets.as_array().unwrap()[0];
    assert_eq!(net["status"], "removed", "{nets}");
    // Nothing of the network is left running: no process works under this test's data dir.
    let home_text = home.path().display().to_string();
    let left = wait_for_none(Duration::from_secs(15), || processes_mentioning(&home_text));
    assert!(left.is_empty(), "processes left running: {left:?}");
    drop(second);
}

/// Pids of processes (other than the test's own standalone) whose command line mentions `text`.
fn processes_mentioning(text: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(text) && !cmdline.contains("standalone") && alive(i64::from(pid)) {
            pids.push(pid);
        }
    }
    pids
}

/// Waits (bounded) until `check` returns nothing; returns what it last returned.
fn wait_for_none<T>(limit: Duration, check: impl Fn() -> Vec<T>) -> Vec<T> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let found = check();
        if found.is_empty() || std::time::Instant::now() >= deadline {
            return found;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn rand_suffix() -> String {
    format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[test]
fn a_webserver_on_its_own_data_dir_receives_and_serves_the_logs_of_another_host_s_runners() {
    // Two data dirs sharing one PostgreSQL database and signing key: the scheduler's runners report to the
    // webserver's execution API, so the webserver holds (and serves) the logs; the scheduler's dir has none.
    let web_home = Home::postgres();
    let mut sched_home = Home::new();
    sched_home.database_url = web_home.database_url.clone();
    let secret = "a-shared-signing-key-for-both-processes";
    sched_home.write_dag(
        "remote.yml",
        "remote:\n  tasks:\n    say: {operator: bash, bash_command: 'echo from-the-runner-$AIRFLOW_CTX_TASK_ID'}\n",
    );
    let port = free_port();
    let mut web = web_home.command();
    let web_log = web_home.path().join("webserver.log");
    let file = std::fs::File::create(&web_log).unwrap();
    let web_child = web
        .env("DAGCTL_SECRET_KEY", secret)
        .args(["webserver", "--port", &port.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let _web = common::Proc {
        child: Some(web_child),
        log: web_log,
    };
    wait_for(Duration::from_secs(60), "webserver", || http_get(port, "/health"));
    let sched_log = sched_home.path().join("scheduler.log");
    let file = std::fs::File::create(&sched_log).unwrap();
    let sched_child = sched_home
        .command()
        .env("DAGCTL_SECRET_KEY", secret)
        .env("DAGCTL_EXECUTION_API_URL", format!("http://127.0.0.1:{port}"))
        .args(["scheduler"])
        .stdin(std::process::Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let sched = common::Proc {
        child: Some(sched_child),
        log: sched_log,
    };
    wait_for(Duration::from_secs(30), "the DAG in the store", || {
        sched_home
            .try_json(&["dags", "list"])
            .filter(|d| d.to_string().contains("remote"))
    });
    sched_home.ok(&["dags", "trigger", "remote", "--run-id", "remote-1"]);
    let state = wait_for(Duration::from_secs(60), "the run to finish", || {
        run_state(&sched_home, "remote", "remote-1").filter(|s| s == "success" || s == "failed")
    });
    assert_eq!(state, "success", "{}", sched.output());
    assert!(
        !sched_home.path().join("logs").join("dag_id=remote").exists(),
        "the scheduler's host holds no task log"
    );
    let token = admin_token(&web_home, port);
    let (status, _, body) = http(
        port,
        "GET",
        "/api/v2/dags/remote/dagRuns/remote-1/taskInstances/say/logs/1",
        &[("Authorization", &format!("Bearer {token}"))],
        None,
    );
    let text = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("from-the-runner-say") && text.contains("task succeeded"),
        "{text}"
    );
}

/// The parent of `pid` (field 4 of /proc/<pid>/stat).
fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " ").trim().to_string())
        .unwrap_or_default()
}

/// The runner hosts (`tasks host`) whose parent is `engine`.
fn hosts_of(engine: i32) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| parent_of(*pid) == Some(engine) && cmdline(*pid).contains("tasks host"))
        .collect()
}

/// Runners are forked by a runner host. A host killed with SIGKILL while a try runs loses nothing: its runner
/// goes on, reports its end and is watched to it; the next try gets a new host; a stopped engine's host leaves
/// once its last runner has ended.
#[test]
fn a_killed_runner_host_loses_no_try_and_is_replaced() {
    let home = Home::new();
    let marks = home.path().join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    home.write_dag(
        "hold.yml",
        &format!(
            "hold:\n  tasks:\n    wait: {{operator: bash, bash_command: 'touch {m}/started; for i in $(seq 300); do [ -e {m}/release ] && exit 0; sleep 0.1; done; exit 1'}}\n    after: {{operator: bash, bash_command: 'echo after', dependencies: [wait]}}\n",
            m = marks.display()
        ),
    );
    let port = free_port();
    let mut server = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(30), "standalone", || http_get(port, "/health"));
    home.ok(&["dags", "trigger", "hold", "--run-id", "h-1"]);
    let runner = wait_for(Duration::from_secs(30), "the runner of `wait`", || {
        marks.join("started").exists().then_some(())?;
        state_of(&home, "hold", "h-1", "wait")["pid"].as_i64()
    }) as i32;
    let host = parent_of(runner).expect("the runner's parent");
    assert!(cmdline(host).contains("tasks host"), "{}", cmdline(host));
    assert_eq!(parent_of(host), Some(server.pid()), "the host is the engine's child");
    assert!(
        cmdline(runner).contains("tasks run hold h-1 wait --try 1"),
        "{}",
        cmdline(runner)
    );

    nix::sys::signal::kill(nix::unistd::Pid::from_raw(host), nix::sys::signal::Signal::SIGKILL).unwrap();
    wait_for(Duration::from_secs(10), "the killed host to be reaped", || {
        (!common::pid_alive(host)).then_some(())
    });
    assert!(common::pid_alive(runner), "the runner outlives its host");
    std::fs::write(marks.join("release"), "").unwrap();
    wait_for(Duration::from_secs(60), "run h-1 to succeed", || {
        (run_state(&home, "hold", "h-1").as_deref() == Some("success")).then_some(())
    });
    assert_eq!(
        state_of(&home, "hold", "h-1", "wait")["try_number"],
        1,
        "no try was repeated"
    );

    // `after` ran on a new host; so does the next run.
    home.ok(&["dags", "trigger", "hold", "--run-id", "h-2"]);
    wait_for(Duration::from_secs(60), "run h-2 to succeed", || {
        (run_state(&home, "hold", "h-2").as_deref() == Some("success")).then_some(())
    });
    let hosts = hosts_of(server.pid());
    assert_eq!(hosts.len(), 1, "one host: {hosts:?}");
    assert_ne!(hosts[0], host);

    server.stop();
    wait_for(Duration::from_secs(10), "the host to leave with its engine", || {
        (!common::pid_alive(hosts[0])).then_some(())
    });
}
