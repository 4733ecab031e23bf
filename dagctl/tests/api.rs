//! The REST API (`/api/v2`, Airflow 3's paths and shapes) of a real `dagctl standalone`, as other programs see it:
//! the official Airflow client and schemathesis against it, and a `webserver` without a scheduler. Login and
//! roles: `api_auth.rs`; bad input: `api_input.rs`; runs, logs and task actions: `api_runs.rs`.

mod api_support;
mod common;

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use api_support::*;
use common::*;

/// Runs a command to completion within `limit` (killed after it), with stdout and stderr in files.
fn run_bounded(mut command: Command, limit: Duration, scratch: &Path) -> (Option<ExitStatus>, String, String) {
    let out_path = scratch.join(format!("bounded-{}.out", std::process::id()));
    let err_path = scratch.join(format!("bounded-{}.err", std::process::id()));
    let mut child = command
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {command:?}: {err}"));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (status, read(&out_path), read(&err_path))
}

#[test]
fn airflow_client_3_3_2_drives_the_api() {
    let py = python();
    let server = Server::start();
    let mut command = Command::new(&py);
    command.current_dir(repo_root()).args([
        "tests/compat/airflow_client_compat.py",
        "--url",
        &server.url(),
        "--username",
        "admin",
        "--password",
        &server.password,
        "--dag-id",
        DAG,
        "--timeout",
        "90",
    ]);
    let (status, out, err) = run_bounded(command, Duration::from_secs(240), server.home.path());
    assert!(
        status.is_some_and(|s| s.success()),
        "airflow client compat: {status:?}\nstdout:\n{out}\nstderr:\n{err}\nserver:\n{}",
        server.proc.output()
    );
    assert!(
        out.contains("all airflow-client compatibility steps passed"),
        "stdout:\n{out}\nstderr:\n{err}"
    );
}

#[test]
fn schemathesis_finds_no_server_error() {
    let py = python();
    let server = Server::start();
    let token = server.admin();
    server.trigger(&token, "for-schemathesis");
    let mut command = Command::new("bash");
    command
        .current_dir(repo_root())
        .env("DAGCTL_PYTHON", &py)
        .env("TMPDIR", server.home.path())
        .args(["tests/compat/run_schemathesis.sh", &server.url(), &token]);
    let (status, out, err) = run_bounded(command, Duration::from_secs(240), server.home.path());
    assert!(
        status.is_some_and(|s| s.success()),
        "schemathesis: {status:?}\nstdout:\n{out}\nstderr:\n{err}"
    );
    let server_log = server.proc.output();
    assert!(!server_log.contains("panicked"), "the server panicked:\n{server_log}");
}

#[test]
fn the_webserver_serves_the_api_without_a_scheduler() {
    let home = Home::new();
    let dag = std::fs::read_to_string(repo_root().join("dags/hello-dagctl.yaml")).unwrap();
    home.write_dag("hello-dagctl.yaml", &dag);
    // The CLI reads the folder into the store; the web server only reads the store.
    home.ok(&["dags", "list"]);
    let port = free_port();
    let proc = home.spawn(&["webserver", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(60), "webserver to answer /health", || {
        http_get(port, "/health").filter(|(code, _)| *code != 0)
    });
    let password = std::fs::read_to_string(home.path().join("standalone_admin_password.txt"))
        .unwrap_or_else(|err| panic!("admin password file: {err}\n{}", proc.output()));
    let (status, _, body) = http(
        port,
        "POST",
        "/auth/token",
        &[("Content-Type", "application/json")],
        Some(
            json!({"username": "admin", "password": password.trim()})
                .to_string()
                .as_bytes(),
        ),
    );
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let token: Value = serde_json::from_slice(&body).unwrap();
    let auth = format!("Bearer {}", token["access_token"].as_str().unwrap());
    let (status, _, body) = http(port, "GET", "/api/v2/dags", &[("Authorization", &auth)], None);
    assert_eq!(status, 200);
    let dags: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(dags["dags"][0]["dag_id"], DAG, "{dags}");
    // No scheduler runs here: the health report says so.
    let (_, _, body) = http(port, "GET", "/api/v2/monitor/health", &[], None);
    let health: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["metadatabase"]["status"], "healthy");
    assert_eq!(health["scheduler"]["status"], "unhealthy", "{health}");
}
