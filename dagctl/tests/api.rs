//! The REST API (`/api/v2`, Airflow 3's paths and shapes) of a real `dagctl standalone`, driven over HTTP:
//! the official Airflow client and schemathesis against it, login on every route, roles checked on the
//! server, bad input answered with a 4xx JSON that names the problem, paging and task logs.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

const DAG: &str = "hello-dagctl";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// One answer: status, headers (lower-case names) and body.
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("HTTP {} body is not JSON ({err}): {}", self.status, self.text()))
    }

    /// Asserts the status, and for an error that it is FastAPI-shaped JSON: `{"detail": ...}`.
    fn expect(&self, status: u16, what: &str) -> &Resp {
        assert_eq!(self.status, status, "{what}: HTTP {} {}", self.status, self.text());
        if status >= 400 {
            let ct = self.header("content-type").unwrap_or("");
            assert!(
                ct.starts_with("application/json"),
                "{what}: error content-type `{ct}`: {}",
                self.text()
            );
            assert!(
                self.json().get("detail").is_some(),
                "{what}: no `detail`: {}",
                self.text()
            );
        }
        self
    }
}

/// A running standalone of one test, with `hello-dagctl` in its DAGs folder.
struct Server {
    // Declared first so the process stops before its home is removed.
    proc: Proc,
    port: u16,
    password: String,
    home: Home,
}

impl Server {
    fn start() -> Server {
        let home = Home::new();
        let dag = std::fs::read_to_string(repo_root().join("dags/hello-dagctl.yaml")).unwrap();
        home.write_dag("hello-dagctl.yaml", &dag);
        let port = free_port();
        let proc = home.spawn(&["standalone", "--port", &port.to_string()]);
        let (status, body) = wait_for(Duration::from_secs(60), "standalone to answer /health", || {
            http_get(port, "/health")
        });
        assert_eq!(status, 200, "{body}\n{}", proc.output());
        let password_file = home.path().join("standalone_admin_password.txt");
        let password = std::fs::read_to_string(&password_file)
            .unwrap_or_else(|err| panic!("{}: {err}\n{}", password_file.display(), proc.output()))
            .trim()
            .to_string();
        assert_eq!(password.len(), 20, "generated admin password");
        let server = Server {
            proc,
            port,
            password,
            home,
        };
        let token = server.token("admin", &server.password.clone());
        wait_for(Duration::from_secs(60), "hello-dagctl to be parsed", || {
            (server
                .call("GET", &format!("/api/v2/dags/{DAG}"), Some(&token), None)
                .status
                == 200)
                .then_some(())
        });
        server
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A request with an optional bearer token and JSON body.
    fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Resp {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers: Vec<(&str, &str)> = vec![("Accept", "application/json")];
        if let Some(auth) = &auth {
            headers.push(("Authorization", auth));
        }
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap());
        if bytes.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        self.raw(method, path, &headers, bytes.as_deref())
    }

    fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
        let (status, headers, body) = http(self.port, method, path, headers, body);
        Resp { status, headers, body }
    }

    /// A token for a local user (`POST /auth/token`, 201).
    fn token(&self, username: &str, password: &str) -> String {
        let resp = self.call(
            "POST",
            "/auth/token",
            None,
            Some(&json!({"username": username, "password": password})),
        );
        resp.expect(201, &format!("login as {username}"));
        resp.json()["access_token"].as_str().unwrap().to_string()
    }

    fn admin(&self) -> String {
        self.token("admin", &self.password)
    }

    /// `dagctl users create` with the password on stdin.
    fn create_user(&self, username: &str, role: &str, password: &str) {
        use std::io::Write;
        let mut child = self
            .home
            .command()
            .args(["users", "create", "--username", username, "--role", role])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{password}\n").as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "users create {username}: {}", stderr(&output));
    }

    fn total_runs(&self, token: &str) -> i64 {
        let resp = self.call("GET", &format!("/api/v2/dags/{DAG}/dagRuns"), Some(token), None);
        resp.expect(200, "list runs");
        resp.json()["total_entries"].as_i64().unwrap()
    }

    fn trigger(&self, token: &str, run_id: &str) -> Value {
        let resp = self.call(
            "POST",
            &format!("/api/v2/dags/{DAG}/dagRuns"),
            Some(token),
            Some(&json!({"dag_run_id": run_id, "logical_date": null})),
        );
        resp.expect(200, &format!("trigger {run_id}"));
        resp.json()
    }

    fn set_paused(&self, token: &str, paused: bool) {
        self.call(
            "PATCH",
            &format!("/api/v2/dags/{DAG}?update_mask=is_paused"),
            Some(token),
            Some(&json!({"is_paused": paused})),
        )
        .expect(200, "pause/unpause");
    }
}

/// Percent-encodes a query value.
fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The interpreter of the venv `scripts/install-pytools.sh` makes; the tests that need it fail without it.
fn python() -> String {
    match std::env::var("DAGCTL_PYTHON") {
        Ok(py) if !py.is_empty() => {
            assert!(
                Path::new(&py).exists(),
                "DAGCTL_PYTHON={py} does not exist: run ./scripts/test.sh, or set DAGCTL_PYTHON=$(scripts/install-pytools.sh ~/.cache/dagctl/py)"
            );
            py
        }
        _ => panic!(
            "DAGCTL_PYTHON is not set: run ./scripts/test.sh (it installs the pinned airflow client and schemathesis), \
             or set DAGCTL_PYTHON=$(scripts/install-pytools.sh ~/.cache/dagctl/py)"
        ),
    }
}

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
fn every_route_but_health_version_and_metrics_needs_login() {
    let server = Server::start();
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_root().join("web/openapi/openapi.json")).unwrap()).unwrap();
    let fill = |path: &str| {
        path.replace("{dag_id}", DAG)
            .replace("{dag_run_id}", "x")
            .replace("{task_id}", "greet")
            .replace("{try_number}", "1")
            .replace("{xcom_key}", "return_value")
            .replace("{event_log_id}", "1")
            .replace("{import_error_id}", "1")
            .replace("{pool_name}", "default_pool")
            .replace("{network_name}", "nope")
    };
    let mut routes: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "patch", "put", "delete"].contains(&method.as_str()) {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    assert!(routes.len() >= 25, "the OpenAPI doc lists {} operations", routes.len());
    // Ours, not in Airflow's document.
    for path in [
        "/api/v2/openapi.json",
        "/api/v2/dagctl/whoami",
        "/api/v2/dagctl/dags/{dag_id}/grid",
        "/api/v2/dagctl/dags/{dag_id}/graph",
        "/api/v2/dagctl/networks/{network_name}/series",
        "/api/v2/dagctl/networks/{network_name}/alerts",
    ] {
        routes.push(("GET".into(), path.into()));
    }
    let open = [("GET", "/api/v2/version"), ("GET", "/api/v2/monitor/health")];
    let mut checked = 0;
    for (method, path) in &routes {
        let url = fill(path);
        if open.contains(&(method.as_str(), path.as_str())) {
            server
                .call(method, &url, None, None)
                .expect(200, &format!("{method} {path} without login"));
            continue;
        }
        if path == "/auth/token" {
            let resp = server.call(method, &url, None, None);
            assert!(
                (400..500).contains(&resp.status),
                "POST /auth/token without a body: HTTP {} {}",
                resp.status,
                resp.text()
            );
            continue;
        }
        // With no body, and with a JSON body that would be valid enough: login comes first either way.
        let bodies: Vec<Option<Value>> = if method == "GET" || method == "DELETE" {
            vec![None]
        } else {
            vec![None, Some(json!({}))]
        };
        for body in bodies {
            let resp = server.call(method, &url, None, body.as_ref());
            resp.expect(401, &format!("{method} {url} without login (body {body:?})"));
            assert_eq!(
                resp.header("www-authenticate"),
                Some("Bearer"),
                "{method} {url}: {:?}",
                resp.headers
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} requests checked");
    for path in ["/health", "/metrics"] {
        let resp = server.call("GET", path, None, None);
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
    }

    // A token of this server works; garbage, another scheme and another server's token do not.
    let token = server.admin();
    server
        .call("GET", "/api/v2/dags", Some(&token), None)
        .expect(200, "own token");
    server
        .call("GET", "/api/v2/dags", Some("not-a-jwt"), None)
        .expect(401, "garbage token");
    let tampered = format!("{}x", &token[..token.len() - 1]);
    server
        .call("GET", "/api/v2/dags", Some(&tampered), None)
        .expect(401, "tampered token");
    server
        .raw(
            "GET",
            "/api/v2/dags",
            &[("Authorization", "Basic YWRtaW46YWRtaW4=")],
            None,
        )
        .expect(401, "basic auth");
    let other = Server::start();
    let foreign = other.admin();
    other
        .call("GET", "/api/v2/dags", Some(&foreign), None)
        .expect(200, "the other server's token on the other server");
    server
        .call("GET", "/api/v2/dags", Some(&foreign), None)
        .expect(401, "another server's token");
    server
        .call(
            "POST",
            &format!("/api/v2/dags/{DAG}/dagRuns"),
            Some(&foreign),
            Some(&json!({})),
        )
        .expect(401, "another server's token, trigger");
    assert_eq!(server.total_runs(&token), 0, "nothing was triggered");
}

#[test]
fn roles_are_enforced_on_the_server() {
    let server = Server::start();
    let admin = server.admin();
    server.create_user("viewer", "Viewer", "viewer-pass-1");
    server.create_user("user1", "User", "user1-pass-1");
    server.create_user("op1", "Op", "op1-pass-123");
    let viewer = server.token("viewer", "viewer-pass-1");
    let user = server.token("user1", "user1-pass-1");
    let op = server.token("op1", "op1-pass-123");
    let whoami = server.call("GET", "/api/v2/dagctl/whoami", Some(&viewer), None);
    whoami.expect(200, "whoami");
    assert_eq!(whoami.json()["role"], "Viewer");

    let pools = |token: &str| {
        let resp = server.call("GET", "/api/v2/pools", Some(token), None);
        resp.expect(200, "list pools");
        let mut names: Vec<String> = resp.json()["pools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| format!("{}={}", p["name"].as_str().unwrap(), p["slots"]))
            .collect();
        names.sort();
        names
    };
    let paused = || {
        let resp = server.call("GET", &format!("/api/v2/dags/{DAG}"), Some(&admin), None);
        resp.expect(200, "get dag");
        resp.json()["is_paused"].as_bool().unwrap()
    };
    let events_by = |owner: &str| {
        let resp = server.call(
            "GET",
            &format!("/api/v2/eventLogs?owner={owner}&limit=100"),
            Some(&admin),
            None,
        );
        resp.expect(200, "event logs");
        resp.json()["event_logs"].as_array().unwrap().clone()
    };
    let pools_before = pools(&admin);
    assert!(!paused());

    // Viewer: reads, and nothing else.
    let resp = server.call("GET", "/api/v2/dags", Some(&viewer), None);
    resp.expect(200, "viewer lists dags");
    assert!(resp.text().contains(DAG));
    server
        .call("GET", "/api/v2/pools", Some(&viewer), None)
        .expect(200, "viewer lists pools");
    server
        .call("GET", "/api/v2/eventLogs", Some(&viewer), None)
        .expect(200, "viewer reads the audit log");
    let resp = server.call(
        "PATCH",
        &format!("/api/v2/dags/{DAG}?update_mask=is_paused"),
        Some(&viewer),
        Some(&json!({"is_paused": true})),
    );
    resp.expect(403, "viewer pauses");
    assert!(resp.text().contains("User"), "names the role needed: {}", resp.text());
    server
        .call(
            "POST",
            &format!("/api/v2/dags/{DAG}/dagRuns"),
            Some(&viewer),
            Some(&json!({"dag_run_id": "by-viewer"})),
        )
        .expect(403, "viewer triggers");
    server
        .call(
            "POST",
            "/api/v2/pools",
            Some(&viewer),
            Some(&json!({"name": "viewer-pool", "slots": 3})),
        )
        .expect(403, "viewer creates a pool");
    server
        .call(
            "PATCH",
            "/api/v2/pools/default_pool",
            Some(&viewer),
            Some(&json!({"slots": 1})),
        )
        .expect(403, "viewer patches a pool");
    server
        .call("DELETE", "/api/v2/pools/default_pool", Some(&viewer), None)
        .expect(403, "viewer deletes a pool");
    assert_eq!(server.total_runs(&admin), 0, "a refused trigger made a run");
    assert!(!paused(), "a refused pause paused");
    assert_eq!(pools(&admin), pools_before, "refused pool changes changed pools");
    assert_eq!(
        events_by("viewer"),
        Vec::<Value>::new(),
        "the viewer's refused requests were recorded as done"
    );

    // User: triggers and pauses, no pools.
    let run = server.trigger(&user, "by-user1");
    assert_eq!(run["dag_run_id"], "by-user1");
    server.set_paused(&user, true);
    assert!(paused());
    server
        .call(
            "POST",
            "/api/v2/pools",
            Some(&user),
            Some(&json!({"name": "user-pool", "slots": 3})),
        )
        .expect(403, "user creates a pool");
    assert_eq!(pools(&admin), pools_before);
    let mine = events_by("user1");
    assert!(
        mine.iter()
            .any(|e| e["event"] == "trigger" && e["dag_id"] == DAG && e["run_id"] == "by-user1"),
        "{mine:?}"
    );
    assert!(
        mine.iter().any(|e| e["event"] == "paused" && e["dag_id"] == DAG),
        "{mine:?}"
    );
    assert!(mine.iter().all(|e| e["owner"] == "user1"), "{mine:?}");

    // Op: manages pools.
    let resp = server.call(
        "POST",
        "/api/v2/pools",
        Some(&op),
        Some(&json!({"name": "op-pool", "slots": 3, "description": "by op1"})),
    );
    resp.expect(201, "op creates a pool");
    assert_eq!(resp.json()["slots"], 3);
    let resp = server.call(
        "PATCH",
        "/api/v2/pools/op-pool?update_mask=slots",
        Some(&op),
        Some(&json!({"slots": 5})),
    );
    resp.expect(200, "op patches a pool");
    assert_eq!(resp.json()["slots"], 5);
    let resp = server.call("GET", "/api/v2/pools/op-pool", Some(&viewer), None);
    resp.expect(200, "viewer reads the pool");
    assert_eq!(resp.json()["slots"], 5);
    let resp = server.call("DELETE", "/api/v2/pools/op-pool", Some(&op), None);
    assert_eq!(resp.status, 204, "{}", resp.text());
    server
        .call("GET", "/api/v2/pools/op-pool", Some(&op), None)
        .expect(404, "deleted pool");
    assert_eq!(pools(&admin), pools_before);
    let ops = events_by("op1");
    let kinds: Vec<&str> = ops.iter().filter_map(|e| e["event"].as_str()).collect();
    assert!(kinds.contains(&"pool_put") && kinds.contains(&"pool_delete"), "{ops:?}");
    assert_eq!(events_by("viewer"), Vec::<Value>::new());
}

#[test]
fn bad_input_gets_a_4xx_json_and_writes_nothing() {
    let server = Server::start();
    let token = server.admin();
    let runs_path = format!("/api/v2/dags/{DAG}/dagRuns");
    let auth = format!("Bearer {token}");
    let post = |content_type: &str, body: &[u8]| {
        server.raw(
            "POST",
            &runs_path,
            &[("Authorization", &auth), ("Content-Type", content_type)],
            Some(body),
        )
    };
    let resp = post("application/json", br#"{"conf": "#);
    resp.expect(422, "malformed JSON");
    assert_eq!(resp.json()["detail"][0]["type"], "json_invalid", "{}", resp.text());
    let resp = post("application/json", br#"{"bogus": 1}"#);
    resp.expect(422, "unknown field");
    assert!(resp.text().contains("bogus"), "{}", resp.text());
    post("application/json", br#"{"conf": "x"}"#).expect(422, "conf of the wrong type");
    post("application/json", b"").expect(422, "an empty body");
    post("text/plain", br#"{"dag_run_id": "plain"}"#).expect(415, "text/plain body");
    post("application/x-www-form-urlencoded", b"dag_run_id=form").expect(415, "form body");
    let mut big = br#"{"conf": {"pad": ""#.to_vec();
    big.extend(vec![b'a'; 1 << 20]);
    big.extend(br#""}}"#);
    post("application/json", &big).expect(413, "a body over 1 MiB");
    let resp = server.call("POST", &runs_path, Some(&token), Some(&json!({"dag_run_id": "a/b"})));
    resp.expect(422, "a run id with /");
    assert!(resp.text().contains("dag_run_id"), "{}", resp.text());
    server
        .call(
            "POST",
            "/api/v2/dags/no-such-dag/dagRuns",
            Some(&token),
            Some(&json!({})),
        )
        .expect(404, "unknown dag");
    let created = server.trigger(&token, "only-one");
    assert_eq!(created["dag_run_id"], "only-one");
    let resp = server.call(
        "POST",
        &runs_path,
        Some(&token),
        Some(&json!({"dag_run_id": "only-one"})),
    );
    resp.expect(409, "duplicate run id");

    // Query parameters of the run list.
    for (query, status) in [
        ("limit=abc", 422),
        ("limit=-1", 422),
        ("limit=100000", 422),
        ("offset=-5", 422),
        ("bogus=1", 400),
        ("state=bogus", 422),
        ("run_type=nope", 422),
        ("order_by=nope", 400),
        ("cursor=garbage", 422),
        ("run_after_gte=yesterday", 422),
        ("cursor=&offset=2", 400),
    ] {
        let resp = server.call("GET", &format!("{runs_path}?{query}"), Some(&token), None);
        resp.expect(status, &format!("GET dagRuns?{query}"));
    }
    server
        .call("GET", "/api/v2/dags/no-such-dag/dagRuns", Some(&token), None)
        .expect(404, "runs of an unknown dag");

    let resp = server.call("GET", &runs_path, Some(&token), None);
    resp.expect(200, "list runs");
    let list = resp.json();
    assert_eq!(list["total_entries"], 1, "{list}");
    assert_eq!(list["dag_runs"][0]["dag_run_id"], "only-one");
    let resp = server.call("GET", "/api/v2/dags/~/dagRuns", Some(&token), None);
    assert_eq!(resp.json()["total_entries"], 1, "{}", resp.text());

    // PATCH of a DAG with a wrong type leaves it alone.
    let dag_path = format!("/api/v2/dags/{DAG}");
    let before = server.call("GET", &dag_path, Some(&token), None).json()["is_paused"].clone();
    assert_eq!(before, false);
    server
        .call("PATCH", &dag_path, Some(&token), Some(&json!({"is_paused": "yes"})))
        .expect(422, "is_paused as a string");
    server
        .call("PATCH", &dag_path, Some(&token), Some(&json!({})))
        .expect(422, "no is_paused");
    server
        .call(
            "PATCH",
            &format!("{dag_path}?update_mask=owners"),
            Some(&token),
            Some(&json!({"is_paused": true})),
        )
        .expect(400, "update_mask of a field that cannot change");
    assert_eq!(
        server.call("GET", &dag_path, Some(&token), None).json()["is_paused"],
        before
    );

    // Login: a wrong password is 401; a form body with the right one works.
    let resp = server.call(
        "POST",
        "/auth/token",
        None,
        Some(&json!({"username": "admin", "password": "wrong-password"})),
    );
    resp.expect(401, "wrong password");
    assert!(!resp.text().contains("access_token"));
    server
        .call(
            "POST",
            "/auth/token",
            None,
            Some(&json!({"username": "nobody", "password": "x"})),
        )
        .expect(401, "unknown user");
    let form = format!("username=admin&password={}", enc(&server.password));
    let resp = server.raw(
        "POST",
        "/auth/token",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(form.as_bytes()),
    );
    resp.expect(201, "form login");
    let form_token = resp.json()["access_token"].as_str().unwrap().to_string();
    server
        .call("GET", "/api/v2/dags", Some(&form_token), None)
        .expect(200, "the form login's token");
    let log = server.proc.output();
    assert!(!log.contains("panicked"), "{log}");

    // A JSON array is not an object: Airflow (pydantic) answers 422. serde's derive would read it as the
    // struct's fields in order (`[]` = all defaults, `["id"]` = dag_run_id), so it must be refused before.
    for body in [&b"[]"[..], br#"["positional-id"]"#] {
        let resp = post("application/json", body);
        resp.expect(422, &format!("the array body {}", String::from_utf8_lossy(body)));
    }
    assert_eq!(server.total_runs(&token), 1, "an array body made a run");
}

#[test]
fn runs_page_by_cursor_and_offset() {
    let server = Server::start();
    let token = server.admin();
    server.set_paused(&token, true);
    // Ids out of alphabetical order, so id order (creation) is not run-id order.
    let ids = ["golf", "charlie", "alpha", "foxtrot", "bravo", "echo", "delta"];
    for id in ids {
        server.trigger(&token, id);
    }
    let expected: Vec<String> = ids.iter().map(|s| s.to_string()).collect();

    let walk = |base: &str, order: &str| {
        let mut seen: Vec<Value> = Vec::new();
        let mut cursor = String::new();
        for _ in 0..10 {
            let resp = server.call(
                "GET",
                &format!("{base}?limit=3&cursor={}{order}", enc(&cursor)),
                Some(&token),
                None,
            );
            resp.expect(200, "cursor page");
            let page = resp.json();
            assert_eq!(page["total_entries"], 7, "{page}");
            let runs = page["dag_runs"].as_array().unwrap();
            assert!(runs.len() <= 3, "{page}");
            seen.extend(runs.iter().cloned());
            match &page["next_cursor"] {
                Value::Null => return seen,
                Value::String(next) => cursor = next.clone(),
                other => panic!("next_cursor {other}"),
            }
        }
        panic!("cursor paging did not end after 10 pages: {seen:?}");
    };
    let run_ids = |runs: &[Value]| -> Vec<String> {
        runs.iter()
            .map(|r| r["dag_run_id"].as_str().unwrap().to_string())
            .collect()
    };

    let all = walk("/api/v2/dags/~/dagRuns", "");
    assert_eq!(run_ids(&all), expected, "by id");
    assert_eq!(
        all.iter()
            .map(|r| r["dag_run_id"].clone())
            .collect::<HashSet<_>>()
            .len(),
        7
    );
    assert!(
        all.iter().all(|r| r["dag_id"] == DAG && r["state"] == "queued"),
        "{all:?}"
    );

    let newest_first = walk(&format!("/api/v2/dags/{DAG}/dagRuns"), "&order_by=-run_after");
    let mut reversed = expected.clone();
    reversed.reverse();
    assert_eq!(run_ids(&newest_first), reversed, "by -run_after");
    let afters: Vec<&str> = newest_first.iter().map(|r| r["run_after"].as_str().unwrap()).collect();
    assert!(afters.windows(2).all(|w| w[0] >= w[1]), "{afters:?}");

    // A cursor of one order is refused by another.
    let resp = server.call("GET", "/api/v2/dags/~/dagRuns?limit=3&cursor=", Some(&token), None);
    let next = resp.json()["next_cursor"].as_str().unwrap().to_string();
    server
        .call(
            "GET",
            &format!(
                "/api/v2/dags/~/dagRuns?limit=3&cursor={}&order_by=-run_after",
                enc(&next)
            ),
            Some(&token),
            None,
        )
        .expect(422, "cursor of another order");

    let mut by_offset = Vec::new();
    for offset in [0, 3, 6, 9] {
        let resp = server.call(
            "GET",
            &format!("/api/v2/dags/~/dagRuns?limit=3&offset={offset}"),
            Some(&token),
            None,
        );
        resp.expect(200, "offset page");
        let page = resp.json();
        assert_eq!(page["total_entries"], 7);
        assert!(page.get("next_cursor").is_none(), "offset paging has no cursor: {page}");
        by_offset.extend(page["dag_runs"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(run_ids(&by_offset), expected, "offset paging");

    let query = |q: &str| {
        let resp = server.call("GET", &format!("/api/v2/dags/{DAG}/dagRuns?{q}"), Some(&token), None);
        resp.expect(200, q);
        let page = resp.json();
        (
            page["total_entries"].as_i64().unwrap(),
            run_ids(page["dag_runs"].as_array().unwrap()),
        )
    };
    assert_eq!(query("state=queued").0, 7);
    assert_eq!(query("state=success&state=failed"), (0, vec![]));
    assert_eq!(query("run_id_pattern=rav"), (1, vec!["bravo".to_string()]));
    assert_eq!(query("run_id_pattern=ECH"), (1, vec!["echo".to_string()]));
    assert_eq!(
        query("run_id_pattern=a&state=queued&order_by=run_id"),
        (
            4,
            vec!["alpha", "bravo", "charlie", "delta"]
                .into_iter()
                .map(String::from)
                .collect()
        )
    );
    assert_eq!(query("limit=0"), (7, vec![]));
}

#[test]
fn task_logs_json_pages_and_ndjson() {
    let server = Server::start();
    let token = server.admin();
    server.trigger(&token, "logs-1");
    let run_path = format!("/api/v2/dags/{DAG}/dagRuns/logs-1");
    wait_for(Duration::from_secs(90), "run logs-1 to succeed", || {
        let resp = server.call("GET", &run_path, Some(&token), None);
        let state = resp.json()["state"].as_str().unwrap_or_default().to_string();
        assert_ne!(state, "failed", "{}\n{}", resp.text(), server.proc.output());
        (state == "success").then_some(())
    });
    let logs = format!("{run_path}/taskInstances/greet/logs/1");
    let resp = server.call("GET", &logs, Some(&token), None);
    resp.expect(200, "log as JSON");
    let page = resp.json();
    let content = page["content"].as_array().unwrap();
    assert!(!content.is_empty(), "{page}");
    assert!(content.iter().all(|m| m["event"].is_string()), "{page}");
    assert!(
        content
            .iter()
            .any(|m| m["event"].as_str().unwrap().contains("hello world on")),
        "{page}"
    );
    let next = page["continuation_token"].as_str().unwrap();
    let resp = server.call("GET", &format!("{logs}?token={}", enc(next)), Some(&token), None);
    resp.expect(200, "the next log page");
    assert_eq!(resp.json()["content"], json!([]), "{}", resp.text());
    let resp = server.call(
        "GET",
        &format!("{logs}?full_content=true&token={}", enc(next)),
        Some(&token),
        None,
    );
    assert_eq!(
        resp.json()["content"].as_array().unwrap().len(),
        content.len(),
        "full_content starts over"
    );
    server
        .call("GET", &format!("{logs}?token=nonsense"), Some(&token), None)
        .expect(422, "a token not from this server");

    let auth = format!("Bearer {token}");
    let resp = server.raw(
        "GET",
        &logs,
        &[("Authorization", &auth), ("Accept", "application/x-ndjson")],
        None,
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("content-type"), Some("application/x-ndjson"));
    let text = resp.text();
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("NDJSON line `{l}`: {err}")))
        .collect();
    assert_eq!(lines.len(), content.len(), "{text}");
    assert!(lines.iter().all(|m| m["event"].is_string()), "{text}");
    assert_eq!(&lines, content);

    for bad in ["9", "0"] {
        server
            .call(
                "GET",
                &format!("{run_path}/taskInstances/greet/logs/{bad}"),
                Some(&token),
                None,
            )
            .expect(404, &format!("try {bad}"));
    }
    server
        .call(
            "GET",
            &format!("{run_path}/taskInstances/greet/logs/one"),
            Some(&token),
            None,
        )
        .expect(422, "try `one`");
    server
        .call(
            "GET",
            &format!("{run_path}/taskInstances/nope/logs/1"),
            Some(&token),
            None,
        )
        .expect(404, "unknown task");
}

fn wait_run(server: &Server, token: &str, run_id: &str, want: &str) -> Value {
    let path = format!("/api/v2/dags/{DAG}/dagRuns/{run_id}");
    wait_for(Duration::from_secs(90), &format!("run {run_id} to be {want}"), || {
        let run = server.call("GET", &path, Some(token), None).json();
        (run["state"] == want).then_some(run)
    })
}

#[test]
fn clear_mark_note_and_xcom_through_the_api() {
    let server = Server::start();
    let token = server.admin();
    server.trigger(&token, "c-1");
    wait_run(&server, &token, "c-1", "success");
    let ti_path = format!("/api/v2/dags/{DAG}/dagRuns/c-1/taskInstances");

    // XCom pushed by `greet`.
    let list = server.call("GET", &format!("{ti_path}/greet/xcomEntries"), Some(&token), None);
    list.expect(200, "xcom list");
    let entries = list.json();
    assert_eq!(entries["total_entries"], 1, "{entries}");
    let key = entries["xcom_entries"][0]["key"].as_str().unwrap().to_string();
    let one = server.call("GET", &format!("{ti_path}/greet/xcomEntries/{key}"), Some(&token), None);
    one.expect(200, "xcom entry");
    assert_eq!(one.json()["value"], json!({"answer": 42}), "{}", one.text());
    server
        .call("GET", &format!("{ti_path}/greet/xcomEntries/nope"), Some(&token), None)
        .expect(404, "unknown xcom key");

    // clearTaskInstances: a dry run lists greet and everything downstream and changes nothing.
    let clear = format!("/api/v2/dags/{DAG}/clearTaskInstances");
    let body = json!({"dag_run_id": "c-1", "task_ids": ["greet"], "include_downstream": true, "only_failed": false});
    let mut dry = body.clone();
    dry["dry_run"] = json!(true);
    let resp = server.call("POST", &clear, Some(&token), Some(&dry));
    resp.expect(200, "dry-run clear");
    let mut ids: Vec<String> = resp.json()["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["task_id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, ["checks.context", "checks.read_xcom", "done", "greet"]);
    let run = server
        .call("GET", &format!("/api/v2/dags/{DAG}/dagRuns/c-1"), Some(&token), None)
        .json();
    assert_eq!(run["state"], "success", "a dry run changes nothing");

    // The real clear: the tasks run again (try 2) and the run succeeds again.
    let mut real = body.clone();
    real["dry_run"] = json!(false);
    server
        .call("POST", &clear, Some(&token), Some(&real))
        .expect(200, "clear");
    wait_run(&server, &token, "c-1", "success");
    let greet = server
        .call("GET", &format!("{ti_path}/greet"), Some(&token), None)
        .json();
    assert_eq!(greet["try_number"], 2, "{greet}");
    let tries = server.call("GET", &format!("{ti_path}/greet/tries"), Some(&token), None);
    tries.expect(200, "tries");
    assert_eq!(tries.json()["total_entries"], 2, "{}", tries.text());
    server
        .call("POST", &clear, Some(&token), Some(&json!({"task_ids": ["greet"]})))
        .expect(400, "clear without a run or dates");
    server
        .call(
            "POST",
            &clear,
            Some(&token),
            Some(&json!({"dag_run_id": "c-1", "task_ids": ["nope"]})),
        )
        .expect(404, "clear of an unknown task");

    // PATCH state and note, audited with the user.
    let run_path = format!("/api/v2/dags/{DAG}/dagRuns/c-1");
    let resp = server.call(
        "PATCH",
        &format!("{run_path}?update_mask=state"),
        Some(&token),
        Some(&json!({"state": "failed"})),
    );
    resp.expect(200, "mark failed");
    assert_eq!(resp.json()["state"], "failed");
    let resp = server.call(
        "PATCH",
        &format!("{run_path}?update_mask=note"),
        Some(&token),
        Some(&json!({"note": "checked by hand"})),
    );
    resp.expect(200, "note");
    assert_eq!(resp.json()["note"], "checked by hand");
    assert_eq!(resp.json()["state"], "failed", "update_mask=note leaves the state");
    server
        .call("PATCH", &run_path, Some(&token), Some(&json!({"state": "running"})))
        .expect(422, "running cannot be set");
    let events = server
        .call(
            "GET",
            &format!("/api/v2/eventLogs?dag_id={DAG}&event=mark_run"),
            Some(&token),
            None,
        )
        .json();
    assert_eq!(events["total_entries"], 1, "{events}");
    assert_eq!(events["event_logs"][0]["owner"], "admin", "{events}");

    // The run's own clear endpoint: dry run by default, then for real.
    let resp = server.call("POST", &format!("{run_path}/clear"), Some(&token), Some(&json!({})));
    resp.expect(200, "run clear dry run");
    assert_eq!(resp.json()["total_entries"], 4, "{}", resp.text());
    let resp = server.call(
        "POST",
        &format!("{run_path}/clear"),
        Some(&token),
        Some(&json!({"dry_run": false})),
    );
    resp.expect(200, "run clear");
    assert!(
        ["queued", "running"].contains(&resp.json()["state"].as_str().unwrap()),
        "{}",
        resp.text()
    );
    wait_run(&server, &token, "c-1", "success");
}

#[test]
fn pages_without_a_session_redirect_to_login() {
    let server = Server::start();
    for path in [
        "/",
        "/dags",
        "/dags/hello-dagctl",
        "/dags/hello-dagctl?view=graph",
        "/dags/hello-dagctl/trigger",
        "/dags/hello-dagctl/runs/r",
        "/dags/hello-dagctl/runs/r/tasks/greet",
        "/runs",
        "/networks",
        "/audit",
        "/pools",
        "/users",
    ] {
        let resp = server.raw("GET", path, &[], None);
        assert!(
            [302, 303, 307].contains(&resp.status),
            "GET {path} without a session: HTTP {}",
            resp.status
        );
        let to = resp.header("location").unwrap_or_default();
        assert!(
            to.starts_with("/login") || to == "/dags",
            "GET {path} redirects to {to}"
        );
    }
    for path in [
        "/dags/hello-dagctl/pause",
        "/dags/hello-dagctl/trigger",
        "/dags/hello-dagctl/runs/r/clear",
        "/logout",
    ] {
        let resp = server.raw(
            "POST",
            path,
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(b"paused=true"),
        );
        assert!(
            [302, 303, 307].contains(&resp.status) && resp.header("location").unwrap_or_default().starts_with("/login"),
            "POST {path} without a session: HTTP {} to {:?}",
            resp.status,
            resp.header("location")
        );
    }
    // A forged session cookie is no session.
    let resp = server.raw(
        "GET",
        "/dags",
        &[("Cookie", "dagctl_session=eyJhbGciOiJub25lIn0.e30.")],
        None,
    );
    assert!(resp.header("location").unwrap_or_default().starts_with("/login"));
    // The login page is public (it has to be), and its form carries a login CSRF token.
    let resp = server.raw("GET", "/login", &[], None);
    assert_eq!(resp.status, 200);
    assert!(resp.text().contains("name=\"csrf_token\""));
    assert!(resp
        .headers
        .iter()
        .any(|(n, v)| n == "set-cookie" && v.starts_with("dagctl_login_csrf=") && v.contains("HttpOnly")));
    // A login post without the matching CSRF cookie is refused even with the right password.
    let body = format!("username=admin&password={}&csrf_token=abc", enc(&server.password));
    let resp = server.raw(
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(body.as_bytes()),
    );
    assert_eq!(resp.status, 403, "login without its CSRF cookie");
    // With it: a session cookie, HttpOnly and SameSite=Lax (no Secure over plain http).
    let resp = server.raw(
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", "dagctl_login_csrf=abc"),
        ],
        Some(body.as_bytes()),
    );
    assert_eq!(resp.status, 303, "{}", resp.text());
    let cookie = resp
        .headers
        .iter()
        .find(|(n, v)| n == "set-cookie" && v.starts_with("dagctl_session="))
        .map(|(_, v)| v.clone())
        .expect("a session cookie");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && !cookie.contains("Secure"),
        "{cookie}"
    );
}

#[test]
fn the_grid_pages_through_runs_newest_first() {
    let server = Server::start();
    let token = server.admin();
    server.set_paused(&token, true);
    for i in 0..30 {
        server.trigger(&token, &format!("g-{i:02}"));
    }
    let grid = |query: &str| {
        let resp = server.call(
            "GET",
            &format!("/api/v2/dagctl/dags/{DAG}/grid?{query}"),
            Some(&token),
            None,
        );
        resp.expect(200, "grid");
        resp.json()
    };
    let first = grid("limit=25");
    assert_eq!(first["total_runs"], 30);
    assert_eq!(
        first["tasks"],
        json!(["greet", "checks.read_xcom", "checks.context", "done"])
    );
    let runs = first["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 25);
    assert_eq!(runs[0]["dag_run_id"], "g-29", "newest first");
    assert_eq!(runs[0]["task_instances"].as_object().unwrap().len(), 4);
    let second = grid("limit=25&offset=25");
    let ids: Vec<&str> = second["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dag_run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["g-04", "g-03", "g-02", "g-01", "g-00"]);
    server
        .call(
            "GET",
            &format!("/api/v2/dagctl/dags/{DAG}/grid?limit=1000"),
            Some(&token),
            None,
        )
        .expect(422, "a grid page is at most 100 runs");

    // The page: signed in through the form, page 2 shows runs 26-30 and links back to newer ones.
    let body = format!("username=admin&password={}&csrf_token=t0", enc(&server.password));
    let resp = server.raw(
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", "dagctl_login_csrf=t0"),
        ],
        Some(body.as_bytes()),
    );
    let session = resp
        .headers
        .iter()
        .find_map(|(n, v)| {
            (n == "set-cookie" && v.starts_with("dagctl_session=")).then(|| v.split(';').next().unwrap().to_string())
        })
        .expect("session cookie");
    let page = server.raw(
        "GET",
        &format!("/dags/{DAG}?view=grid&page=1"),
        &[("Cookie", &session)],
        None,
    );
    assert_eq!(page.status, 200);
    let html = page.text();
    assert!(html.contains("30 runs · showing 26–30"), "{html}");
    assert!(html.contains("page=0") && !html.contains("page=2"), "newer link only");
    assert_eq!(html.matches("class=\"bar ").count(), 5, "five run columns");
    assert_eq!(
        html.matches("class=\"cell s-").count(),
        5 * 4 + 9,
        "cells plus the legend"
    );
}

/// Signs in through the login form; returns the session cookie (`dagctl_session=...`).
fn form_login(server: &Server, username: &str, password: &str) -> String {
    let body = format!("username={}&password={}&csrf_token=t1", enc(username), enc(password));
    let resp = server.raw(
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", "dagctl_login_csrf=t1"),
        ],
        Some(body.as_bytes()),
    );
    assert_eq!(resp.status, 303, "form login of {username}: {}", resp.text());
    resp.headers
        .iter()
        .find_map(|(n, v)| {
            (n == "set-cookie" && v.starts_with("dagctl_session=")).then(|| v.split(';').next().unwrap().to_string())
        })
        .expect("session cookie")
}

#[test]
fn sessions_end_at_sign_out_and_roles_apply_at_once() {
    let server = Server::start();
    // Sign-out revokes the session itself, not only the browser's copy.
    let session = form_login(&server, "admin", &server.password);
    let page = server.raw("GET", "/dags", &[("Cookie", &session)], None);
    assert_eq!(page.status, 200);
    let html = page.text();
    let csrf = html
        .split("name=\"csrf_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a CSRF token on the page")
        .to_string();
    let body = format!("csrf_token={}", enc(&csrf));
    let resp = server.raw(
        "POST",
        "/logout",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", &session),
        ],
        Some(body.as_bytes()),
    );
    assert_eq!(resp.status, 303);
    let again = server.raw("GET", "/dags", &[("Cookie", &session)], None);
    assert!(
        again.header("location").unwrap_or_default().starts_with("/login"),
        "a signed-out session cookie replayed: HTTP {}",
        again.status
    );
    let api = server.raw("GET", "/api/v2/dags", &[("Cookie", &session)], None);
    api.expect(401, "a signed-out session on the API");

    // A session token is not a bearer token.
    let fresh = form_login(&server, "admin", &server.password);
    let jwt = fresh.trim_start_matches("dagctl_session=");
    server
        .call("GET", "/api/v2/dags", Some(jwt), None)
        .expect(401, "a session token used as a bearer token");

    // Roles come from the store on every request: promoting a Viewer works for the token already issued.
    server.create_user("vic", "Viewer", "vic-password-1");
    let token = server.token("vic", "vic-password-1");
    server
        .call(
            "PATCH",
            &format!("/api/v2/dags/{DAG}?update_mask=is_paused"),
            Some(&token),
            Some(&json!({"is_paused": true})),
        )
        .expect(403, "Viewer pauses");
    server.create_user("vic", "User", "vic-password-1");
    server
        .call(
            "PATCH",
            &format!("/api/v2/dags/{DAG}?update_mask=is_paused"),
            Some(&token),
            Some(&json!({"is_paused": true})),
        )
        .expect(200, "the same token after promotion to User");
}

#[test]
fn odd_requests_still_get_json_errors() {
    let server = Server::start();
    let token = server.admin();
    let auth = format!("Bearer {token}");
    let h: &[(&str, &str)] = &[("Authorization", &auth)];
    server
        .raw("GET", "/api/v2/dags/%FF%FE", h, None)
        .expect(400, "a path that is not UTF-8");
    server
        .raw("PUT", "/api/v2/dags", h, None)
        .expect(405, "a method the route lacks");
    server
        .raw("GET", "/api/v2/nothing-here", h, None)
        .expect(404, "an unknown endpoint");
    let long = "x".repeat(300);
    server
        .call(
            "GET",
            &format!("/api/v2/dags?dag_id_pattern={long}"),
            Some(&token),
            None,
        )
        .expect(422, "a pattern over 250 characters");
    server
        .call(
            "GET",
            &format!("/api/v2/dags/~/dagRuns?run_id_pattern={long}"),
            Some(&token),
            None,
        )
        .expect(422, "a run id pattern over 250 characters");
    server
        .call(
            "GET",
            "/api/v2/dags?order_by=dag_id&order_by=-dag_id",
            Some(&token),
            None,
        )
        .expect(400, "two order_by columns");
    server.trigger(&token, "odd-1");
    let both = server.call(
        "GET",
        "/api/v2/dags/~/dagRuns?run_type=manual&run_type=scheduled",
        Some(&token),
        None,
    );
    both.expect(200, "two run types");
    assert_eq!(both.json()["total_entries"], 1);
    let assets = server.call(
        "GET",
        "/api/v2/dags/~/dagRuns?run_type=asset_triggered",
        Some(&token),
        None,
    );
    assets.expect(200, "an asset run type");
    assert_eq!(assets.json()["total_entries"], 0);
    // A PATCH with one bad field changes nothing, not even the good one.
    let run = format!("/api/v2/dags/{DAG}/dagRuns/odd-1");
    server
        .call(
            "PATCH",
            &run,
            Some(&token),
            Some(&json!({"state": "failed", "note": "n".repeat(1001)})),
        )
        .expect(422, "an overlong note");
    let now = server.call("GET", &run, Some(&token), None).json();
    assert_ne!(now["state"], "failed", "{now}");
    assert_eq!(now["note"], Value::Null);
    // The reserved run id prefixes belong to the scheduler.
    server
        .call(
            "POST",
            &format!("/api/v2/dags/{DAG}/dagRuns"),
            Some(&token),
            Some(&json!({"dag_run_id": "scheduled__2030-01-01T00:00:00+00:00"})),
        )
        .expect(422, "a scheduled__ run id");
    server
        .call(
            "POST",
            &format!("/api/v2/dags/{DAG}/dagRuns"),
            Some(&token),
            Some(&json!({"dag_run_id": "a\\b"})),
        )
        .expect(422, "a backslash in a run id");
    // Pools: a taken name is a conflict, and the existing pool is untouched.
    server
        .call(
            "POST",
            "/api/v2/pools",
            Some(&token),
            Some(&json!({"name": "p1", "slots": 3})),
        )
        .expect(201, "create p1");
    server
        .call(
            "POST",
            "/api/v2/pools",
            Some(&token),
            Some(&json!({"name": "p1", "slots": 9})),
        )
        .expect(409, "create p1 again");
    let pool = server.call("GET", "/api/v2/pools/p1", Some(&token), None).json();
    assert_eq!(pool["slots"], 3);
    // Airflow's health endpoint needs no login.
    server
        .raw("GET", "/api/v2/monitor/health", &[], None)
        .expect(200, "monitor health");
}

#[test]
fn repeated_failed_sign_ins_are_throttled_per_user() {
    let server = Server::start();
    server.create_user("ops-bot", "Op", "ops-bot-password");
    let attempt = |username: &str, password: &str| {
        server.call(
            "POST",
            "/auth/token",
            None,
            Some(&json!({"username": username, "password": password})),
        )
    };
    for i in 0..5 {
        attempt("admin", &format!("wrong-{i}")).expect(401, "a wrong password");
    }
    // Now even the right password waits; another user does not.
    let locked = attempt("admin", &server.password.clone());
    locked.expect(429, "the sixth attempt within the window");
    assert!(locked.text().contains("try again in"), "{}", locked.text());
    attempt("ops-bot", "ops-bot-password").expect(201, "another user signs in");
    // The login form says so too.
    let body = format!("username=admin&password={}&csrf_token=t2", enc(&server.password));
    let page = server.raw(
        "POST",
        "/login",
        &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Cookie", "dagctl_login_csrf=t2"),
        ],
        Some(body.as_bytes()),
    );
    assert_eq!(page.status, 429);
    assert!(page.text().contains("too many failed sign-ins"), "{}", page.text());
}

#[test]
fn a_signed_in_user_can_mint_an_api_token() {
    let server = Server::start();
    let token = server.admin();
    let resp = server.call("POST", "/api/v2/dagctl/token", Some(&token), None);
    resp.expect(201, "mint a token");
    let minted = resp.json()["access_token"].as_str().unwrap().to_string();
    assert_ne!(minted, token);
    server
        .call("GET", "/api/v2/dags", Some(&minted), None)
        .expect(200, "the minted token works");
    server
        .call("POST", "/api/v2/dagctl/token", None, None)
        .expect(401, "not without a login");
    let events = server
        .call("GET", "/api/v2/eventLogs?event=token_issued", Some(&token), None)
        .json();
    assert_eq!(events["total_entries"], 1, "{events}");
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
