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
    // The engine creates the run for the CLI: a DAG file written just before is triggered as written, and
    // mistakes read as they do without an engine.
    home.write_dag(
        "fresh.yml",
        "fresh:\n  tasks:\n    t: {operator: bash, bash_command: 'true'}\n",
    );
    let run = home.json(&["dags", "trigger", "fresh", "--run-id", "f1", "--conf", "{\"k\": 1}"]);
    assert_eq!(run["run_id"], "f1", "{run}");
    assert_eq!(run["conf"]["k"], 1, "{run}");
    assert!(
        engine.output().contains("run triggered over the engine link"),
        "{}",
        engine.output()
    );
    let out = home.run(&["dags", "trigger", "nope"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("dag `nope` not found"), "{}", stderr(&out));
    let out = home.run(&["dags", "trigger", "fresh", "--run-id", "f1"]);
    assert!(!out.status.success());
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("f1"), "{}", stderr(&out));
    let out = home.run(&["dags", "trigger", "fresh", "--logical-date", "yesterday"]);
    assert!(!out.status.success());
    assert!(stderr(&out).starts_with("error: --logical-date"), "{}", stderr(&out));
    wait_for(Duration::from_secs(20), "the fresh run", || {
        home.states("fresh", "f1")
            .iter()
            .all(|ti| ti["state"] == "success")
            .then_some(())
    });
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
    // The CLI of another host (another data dir, no engine link): only the database tells the scheduler.
    let mut cli = Home::sharing(&home);
    cli.env
        .push(("DAGCTL_DAGS_FOLDER".into(), home.dags().display().to_string()));
    let pg_name = home.pg_name().to_string();
    let (_engine_home, home) = (home, cli);
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
        let cut = block_on(engine::testing::terminate_pg_listeners(&pg_name));
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
fn a_cli_waiting_through_the_engine_link_outlives_an_engine_restart() {
    let mut home = Home::new();
    home.env.push(("DAGCTL_SCHEDULER_IDLE_SLEEP_TIME".into(), IDLE.into()));
    slow_dag(&home);
    let port = free_port();
    let mut engine = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(30), "standalone", || http_get(port, "/health"));
    let waiter = home
        .command()
        .args([
            "dags",
            "trigger",
            "slow",
            "--run-id",
            "w1",
            "--wait",
            "--timeout",
            "60s",
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(20), "the run's first task to run", || {
        home.try_json(&["tasks", "states-for-dag-run", "slow", "w1"])
            .filter(|tis| tis.as_array().unwrap().iter().any(|ti| ti["state"] == "running"))
    });
    // The engine that answered the waiter goes; the waiter reads the store until a new engine ends the run.
    engine.stop();
    let engine = home.spawn(&["standalone", "--port", &port.to_string()]);
    let out = waiter.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(
        err.contains("w1 success") || err.contains("w1 failed"),
        "{err}\n{}",
        engine.output()
    );
    assert!(!err.contains("error:"), "{err}");
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

#[test]
fn a_listen_connection_that_cannot_be_opened_is_logged_once_and_timers_keep_scheduling() {
    let home = Home::postgres();
    let url = home.database_url.clone().unwrap();
    // The engine reaches PostgreSQL through a gate that turns away its listening connection (as a pooler in
    // transaction mode would), and only that one.
    let gate = RefusingGate::start(&url, "dagctl_listen");
    let mut engine_home = Home::sharing(&home);
    engine_home.database_url = Some(gate.url.clone());
    engine_home
        .env
        .push(("DAGCTL_SCHEDULER_IDLE_SLEEP_TIME".into(), "300ms".into()));
    chain_dag(&engine_home);
    engine_home.ok(&["dags", "list"]);
    let scheduler = engine_home.spawn(&["scheduler"]);
    // A CLI of another host: its NOTIFY reaches no one, so only the scheduler's timer finds the run.
    let mut cli = Home::sharing(&home);
    cli.env
        .push(("DAGCTL_DAGS_FOLDER".into(), engine_home.dags().display().to_string()));
    for i in 0..3 {
        let took = trigger_and_wait(&cli, &format!("t{i}"));
        assert!(took < BOUND, "trigger --wait took {took:?}\n{}", scheduler.output());
    }
    wait_for(Duration::from_secs(20), "the scheduler to try to listen again", || {
        (gate.refused() >= 3).then_some(())
    });
    let log = scheduler.output();
    assert_eq!(log.matches("cannot LISTEN for changes").count(), 1, "{log}");
    wait_for(Duration::from_secs(10), "no connection listening", || {
        (pg_listeners(&home) == 0).then_some(())
    });
}

/// A TCP gate to PostgreSQL that closes every connection whose startup message names `refused` (e.g. an
/// application name), and passes the others through. Stops when dropped.
struct RefusingGate {
    url: String,
    refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl RefusingGate {
    fn start(url: &str, refused: &'static str) -> RefusingGate {
        use std::io::{Read, Write};
        use std::net::{TcpListener, TcpStream};
        use std::sync::atomic::Ordering;
        let (head, tail) = url.split_once('@').unwrap();
        let (target, path) = tail.split_once('/').unwrap();
        let target = target.to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let separator = if path.contains('?') { '&' } else { '?' };
        let gate = RefusingGate {
            // Without TLS, so the gate can read the startup message.
            url: format!("{head}@127.0.0.1:{port}/{path}{separator}sslmode=disable"),
            refused: Default::default(),
            stop: Default::default(),
        };
        let (count, stop) = (gate.refused.clone(), gate.stop.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                let Ok((mut client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let mut length = [0u8; 4];
                if client.read_exact(&mut length).is_err() {
                    continue;
                }
                let mut startup = vec![0u8; (u32::from_be_bytes(length) as usize).saturating_sub(4).min(10_000)];
                if client.read_exact(&mut startup).is_err() {
                    continue;
                }
                if String::from_utf8_lossy(&startup).contains(refused) {
                    count.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let Ok(mut server) = TcpStream::connect(&target) else {
                    continue;
                };
                if server
                    .write_all(&length)
                    .and_then(|_| server.write_all(&startup))
                    .is_err()
                {
                    continue;
                }
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut client, &mut server);
                    let _ = server.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        gate
    }

    fn refused(&self) -> usize {
        self.refused.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for RefusingGate {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn pg_listeners(home: &Home) -> u64 {
    block_on(engine::testing::count_pg_listeners(home.pg_name()))
}
