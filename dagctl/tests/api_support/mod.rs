//! The harness of the REST API tests (`api*.rs`): a `dagctl standalone` on a free port, its admin, users,
//! runs, and calls with their answers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use serde_json::{json, Value};

pub const DAG: &str = "hello-dagctl";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// One answer: status, headers (lower-case names) and body.
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|err| panic!("HTTP {} body is not JSON ({err}): {}", self.status, self.text()))
    }

    /// Asserts the status, and for an error that it is FastAPI-shaped JSON: `{"detail": ...}`.
    pub fn expect(&self, status: u16, what: &str) -> &Resp {
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
pub struct Server {
    // Declared first so the process stops before its home is removed.
    pub proc: Proc,
    pub port: u16,
    pub password: String,
    pub home: Home,
}

impl Server {
    pub fn start() -> Server {
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

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A request with an optional bearer token and JSON body.
    pub fn call(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Resp {
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

    pub fn raw(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
        let (status, headers, body) = http(self.port, method, path, headers, body);
        Resp { status, headers, body }
    }

    /// A token for a local user (`POST /auth/token`, 201).
    pub fn token(&self, username: &str, password: &str) -> String {
        let resp = self.call(
            "POST",
            "/auth/token",
            None,
            Some(&json!({"username": username, "password": password})),
        );
        resp.expect(201, &format!("login as {username}"));
        resp.json()["access_token"].as_str().unwrap().to_string()
    }

    pub fn admin(&self) -> String {
        self.token("admin", &self.password)
    }

    /// `dagctl users create` with the password on stdin.
    pub fn create_user(&self, username: &str, role: &str, password: &str) {
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

    pub fn total_runs(&self, token: &str) -> i64 {
        let resp = self.call("GET", &format!("/api/v2/dags/{DAG}/dagRuns"), Some(token), None);
        resp.expect(200, "list runs");
        resp.json()["total_entries"].as_i64().unwrap()
    }

    pub fn trigger(&self, token: &str, run_id: &str) -> Value {
        let resp = self.call(
            "POST",
            &format!("/api/v2/dags/{DAG}/dagRuns"),
            Some(token),
            Some(&json!({"dag_run_id": run_id, "logical_date": null})),
        );
        resp.expect(200, &format!("trigger {run_id}"));
        resp.json()
    }

    pub fn set_paused(&self, token: &str, paused: bool) {
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
pub fn enc(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn wait_run(server: &Server, token: &str, run_id: &str, want: &str) -> Value {
    let path = format!("/api/v2/dags/{DAG}/dagRuns/{run_id}");
    wait_for(Duration::from_secs(90), &format!("run {run_id} to be {want}"), || {
        let run = server.call("GET", &path, Some(token), None).json();
        (run["state"] == want).then_some(run)
    })
}

/// Signs in through the login form; returns the session cookie (`dagctl_session=...`).
pub fn form_login(server: &Server, username: &str, password: &str) -> String {
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
