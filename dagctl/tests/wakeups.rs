//! The scheduler and `--wait` wake on changes, not on timers: with the scheduler's fallback sleep set to a
//! minute, a CLI trigger still starts at once (SQLite: the engine link; PostgreSQL: NOTIFY/LISTEN), `--wait`
//! returns as soon as the run ends, and a listening connection that is cut is reopened without losing the
//! change that came meanwhile.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The scheduler's fallback timer: far longer than any of these runs may take.
const IDLE: &str = "60s";
/// What a three-task chain may take end to end here when nothing waits on a timer (the `--wait` fallback alone
/// would add 5 s).
const BOUND: Duration = Duration::from_millis(4500);

fn chain_dag(home: &Home) {
    home.write_dag(
        "chain3.yml",
        "chain3:\n  tasks:\n    a: {operator: bash, bash_command: 'true'}\n    b: {operator: bash, bash_command: 'true', dependencies: [a]}\n    c: {operator: bash, bash_command: 'true', dependencies: [b]}\n",
    );
}

/// `slow`: a task that sleeps a second, then one more.
fn slow_dag(home: &Home) {
    home.write_dag(
        "slow.yml",
        "slow:\n  tasks:\n    a: {operator: bash, bash_command: 'sleep 1'}\n    b: {operator: bash, bash_command: 'true', dependencies: [a]}\n",
    );
}

/// `dags trigger chain3 --wait`, which must succeed; returns how long it took.
fn trigger_and_wait(home: &Home, run_id: &str) -> Duration {
    let started = Instant::now();
    let out = home.ok(&["dags", "trigger", "chain3", "--run-id", run_id, "--wait"]);
    let took = started.elapsed();
    assert!(out.contains(run_id), "{out}");
    took
}

#[test]
fn a_cli_trigger_on_sqlite_wakes_the_engine_and_wait_follows_its_changes() {
    let mut home = Home::new();
    home.env.push(("DAGCTL_SCHEDULER_IDLE_SLEEP_TIME".into(), IDLE.into()));
    chain_dag(&home);
    let port = free_port();
    let engine = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(30), "standalone", || http_get(port, "/health"));
    wait_for(Duration::from_secs(30), "the DAG", || {
        home.try_json(&["dags", "list"])
            .filter(|d| d.as_array().unwrap().iter().any(|d| d["dag_id"] == "chain3"))
    });
    let socket = home.path().join("run").join("engine.sock");
    assert!(socket.exists(), "no engine link at {}", socket.display());
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the link is for this data dir's user only");
    for i in 0..3 {
        let took = trigger_and_wait(&home, &format!("c{i}"));
        assert!(took < BOUND, "trigger --wait took {took:?}\n{}", engine.output());
    }
}

#[test]
fn postgres_notifications_wake_the_scheduler_and_a_cut_listener_is_reopened() {
    let mut home = Home::postgres();
    home.env.push(("DAGCTL_SCHEDULER_IDLE_SLEEP_TIME".into(), IDLE.into()));
    chain_dag(&home);
    slow_dag(&home);
    home.ok(&["dags", "list"]);
    let scheduler = home.spawn(&["scheduler"]);
    wait_for(Duration::from_secs(30), "the scheduler to listen", || {
        (pg_listeners(&home) >= 1).then_some(())
    });
    let took = trigger_and_wait(&home, "p0");
    assert!(took < BOUND, "trigger --wait took {took:?}\n{}", scheduler.output());
    // Cut the scheduler's listening connection, then trigger at once: the change may come while it is away,
    // and the scheduler must look again when it has listened anew. The first cut comes in the middle of a
    // run (its task sleeps), which must still end on time.
    home.ok(&["dags", "trigger", "slow", "--run-id", "mid"]);
    wait_for(Duration::from_secs(20), "the slow run's task to run", || {
        home.states("slow", "mid")
            .iter()
            .any(|ti| ti["task_id"] == "a" && ti["state"] == "running")
            .then_some(())
    });
    for i in 1..4 {
        let cut = block_on(engine::testing::terminate_pg_listeners(home.pg_name()));
        assert!(cut >= 1, "no listening connection to cut");
        let took = trigger_and_wait(&home, &format!("p{i}"));
        assert!(
            took < BOUND,
            "trigger --wait took {took:?} after the listener was cut\n{}",
            scheduler.output()
        );
    }
    let started = Instant::now();
    home.ok(&["dags", "trigger", "slow", "--run-id", "after", "--wait"]);
    let mid = home.json(&["dags", "list-runs", "slow"]);
    assert!(mid.as_array().unwrap().iter().all(|r| r["state"] == "success"), "{mid}");
    assert!(
        started.elapsed() < BOUND + Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_run_s_events_stream_its_changes_until_it_ends() {
    let mut home = Home::new();
    home.env.push(("DAGCTL_SCHEDULER_IDLE_SLEEP_TIME".into(), IDLE.into()));
    slow_dag(&home);
    let port = free_port();
    let engine = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(30), "standalone", || http_get(port, "/health"));
    wait_for(Duration::from_secs(30), "the DAG", || {
        home.try_json(&["dags", "list"])
            .filter(|d| d.as_array().unwrap().iter().any(|d| d["dag_id"] == "slow"))
    });
    let token = admin_token(&home, port);
    let auth = format!("Bearer {token}");
    let path = "/api/v2/dagctl/runs/slow/s1/events";
    home.ok(&["dags", "trigger", "slow", "--run-id", "s1"]);
    // The stream ends by itself once the run has ended.
    let started = Instant::now();
    let (status, headers, body) = http(port, "GET", path, &[("Authorization", &auth)], None);
    let body = String::from_utf8_lossy(&body).to_string();
    assert_eq!(status, 200, "{body}");
    assert!(
        headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "text/event-stream"),
        "{headers:?}"
    );
    let changes: Vec<&str> = body.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert!(changes.iter().any(|c| c.starts_with("try:")), "{body}");
    assert!(
        changes
            .last()
            .is_some_and(|c| c.starts_with("ended:") && c.ends_with(":success")),
        "{body}\n{}",
        engine.output()
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    // A finished run's stream says so at once; strangers and unknown runs get JSON errors.
    let (status, _, body) = http(port, "GET", path, &[("Authorization", &auth)], None);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("ended:"));
    let (status, _, body) = http(port, "GET", path, &[], None);
    assert_eq!(status, 401, "{}", String::from_utf8_lossy(&body));
    let (status, _, body) = http(
        port,
        "GET",
        "/api/v2/dagctl/runs/slow/nope/events",
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(status, 404);
    assert!(serde_json::from_slice::<serde_json::Value>(&body).unwrap()["detail"].is_string());
}

fn pg_listeners(home: &Home) -> u64 {
    block_on(engine::testing::count_pg_listeners(home.pg_name()))
}
