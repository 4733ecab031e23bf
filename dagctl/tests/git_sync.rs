//! DAGs from a git repository (`[git]` in dagctl.toml) on a real `dagctl standalone` and real `git`: the
//! repository is served over HTTP by this test (git's "dumb" HTTP protocol, static files) and only with the
//! right token (HTTP Basic). Checks that can fail: a wrong token is an import error that names the repository
//! and not the token; the token put right, the DAG loads with its commit; a commit pushed while a run is
//! running makes a new version without moving that run (its log still says what the first commit said); a
//! commit that breaks the file keeps the last good version runnable and shows the import error.

mod common;
#[path = "common/git_http.rs"]
mod git_http;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::*;
use git_http::{Repo, Server, TOKEN};
use serde_json::{json, Value};

fn dag_yaml(words: &str, seconds: u32) -> String {
    format!("pinned:\n  schedule: null\n  tasks:\n    say:\n      operator: bash\n      bash_command: \"sleep {seconds}; echo {words}\"\n")
}

fn get(port: u16, token: &str, path: &str) -> (u16, Value) {
    let auth = format!("Bearer {token}");
    let (status, _, body) = http(port, "GET", path, &[("Authorization", &auth)], None);
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn trigger(port: u16, token: &str, run_id: &str) {
    let auth = format!("Bearer {token}");
    let body = json!({"dag_run_id": run_id, "logical_date": null}).to_string();
    let (status, _, reply) = http(
        port,
        "POST",
        "/api/v2/dags/pinned/dagRuns",
        &[("Authorization", &auth), ("Content-Type", "application/json")],
        Some(body.as_bytes()),
    );
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&reply));
}

fn run_state(port: u16, token: &str, run_id: &str) -> Value {
    get(port, token, &format!("/api/v2/dags/pinned/dagRuns/{run_id}")).1
}

fn wait_run_done(port: u16, token: &str, run_id: &str) -> Value {
    wait_for(Duration::from_secs(60), &format!("run {run_id} to end"), || {
        let run = run_state(port, token, run_id);
        matches!(run["state"].as_str(), Some("success" | "failed")).then_some(run)
    })
}

fn import_errors(port: u16, token: &str) -> Vec<Value> {
    get(port, token, "/api/v2/importErrors").1["import_errors"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn dags_follow_a_git_branch_with_runs_pinned_to_their_commit() {
    let mut home = Home::new();
    home.unset.push("DAGCTL_DAGS_FOLDER");
    let repo = Repo::new(home.path());
    let first = repo.publish(&dag_yaml("from-the-first-commit", 4));
    let server = Server::start(repo.served.clone());
    let token_file = home.path().join("git-token");
    std::fs::write(&token_file, "not-the-token\n").unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{}/dags.git", server.port);
    std::fs::write(
        home.path().join("dagctl.toml"),
        format!(
            "port = {port}\n[git]\nurl = \"{url}\"\nsubdir = \"dags\"\ninterval = \"1s\"\ntoken_file = \"{}\"\n",
            token_file.display()
        ),
    )
    .unwrap();
    let mut engine = home.spawn(&["standalone"]);
    wait_for(Duration::from_secs(60), "the engine to answer", || {
        http_get(port, "/api/v2/monitor/health").filter(|(s, _)| *s == 200)
    });
    let api = admin_token(&home, port);

    // A wrong token: an import error naming the repository, never the token.
    let errors = wait_for(Duration::from_secs(30), "the sync error to show", || {
        let errors = import_errors(port, &api);
        (!errors.is_empty()).then_some(errors)
    });
    let shown = errors[0].to_string();
    assert!(
        errors.len() == 1 && shown.contains(&url) && shown.contains("cannot be synced"),
        "{shown}"
    );
    assert!(!shown.contains("not-the-token"), "{shown}");
    let encoded = git_http::basic_auth().replace("Basic ", "");
    assert!(!shown.contains(&encoded), "{shown}");
    assert_eq!(get(port, &api, "/api/v2/dags/pinned").0, 404);

    // The token put right (read again at every sync): the DAG loads at the first commit.
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let dag = wait_for(Duration::from_secs(30), "the DAG from the first commit", || {
        let (status, dag) = get(port, &api, "/api/v2/dags/pinned");
        (status == 200).then_some(dag)
    });
    assert_eq!(dag["bundle_version"], json!(first), "{dag}");
    assert!(
        dag["fileloc"]
            .as_str()
            .unwrap()
            .ends_with("dags-git/current/dags/pinned.yaml"),
        "{dag}"
    );
    wait_for(Duration::from_secs(10), "the sync error to clear", || {
        import_errors(port, &api).is_empty().then_some(())
    });

    // A run at the first commit; a second commit lands while it runs.
    trigger(port, &api, "during-first");
    wait_for(Duration::from_secs(30), "the first run to be running", || {
        (run_state(port, &api, "during-first")["state"] == "running").then_some(())
    });
    let second = repo.publish(&dag_yaml("from-the-second-commit", 0));
    wait_for(Duration::from_secs(30), "the DAG at the second commit", || {
        (get(port, &api, "/api/v2/dags/pinned").1["bundle_version"] == json!(second)).then_some(())
    });
    let run = wait_run_done(port, &api, "during-first");
    assert_eq!(run["state"], "success", "{run}");
    assert_eq!(run["bundle_version"], json!(first), "the run keeps its version: {run}");
    assert_eq!(run["dag_versions"][0]["version_number"], 1, "{run}");
    let log = home.ok(&["tasks", "logs", "pinned", "during-first", "say"]);
    assert!(
        log.contains("from-the-first-commit") && !log.contains("from-the-second-commit"),
        "{log}"
    );

    trigger(port, &api, "after-second");
    let run = wait_run_done(port, &api, "after-second");
    assert_eq!(run["state"], "success", "{run}");
    assert_eq!(run["bundle_version"], json!(second), "{run}");
    assert_eq!(run["dag_versions"][0]["version_number"], 2, "{run}");
    assert_eq!(run["dag_versions"][0]["bundle_version"], json!(second), "{run}");
    let log = home.ok(&["tasks", "logs", "pinned", "after-second", "say"]);
    assert!(log.contains("from-the-second-commit"), "{log}");

    // A commit that breaks the file: the import error shows, the second version stays and still runs.
    let broken = repo.publish("pinned:\n  tasks: [unclosed\n");
    let errors = wait_for(Duration::from_secs(30), "the broken commit's import error", || {
        let errors = import_errors(port, &api);
        errors
            .iter()
            .any(|e| e["filename"].as_str().is_some_and(|f| f.ends_with("dags/pinned.yaml")))
            .then_some(errors)
    });
    let error = errors
        .iter()
        .find(|e| e["filename"].as_str().is_some_and(|f| f.ends_with("dags/pinned.yaml")))
        .unwrap();
    assert!(
        error["stack_trace"].as_str().unwrap().contains("pinned.yaml:"),
        "{error}"
    );
    let dag = get(port, &api, "/api/v2/dags/pinned").1;
    assert_eq!(dag["is_stale"], false, "{dag}");
    assert_eq!(dag["bundle_version"], json!(second), "the last good read stays: {dag}");
    assert_ne!(broken, second);
    trigger(port, &api, "after-broken");
    let run = wait_run_done(port, &api, "after-broken");
    assert_eq!(run["state"], "success", "{run}");
    assert_eq!(run["dag_versions"][0]["version_number"], 2, "{run}");

    let versions = get(port, &api, "/api/v2/dags/pinned/dagVersions").1;
    let commits: Vec<&Value> = versions["dag_versions"]
        .as_array()
        .map(|v| v.iter().map(|v| &v["bundle_version"]).collect())
        .unwrap_or_default();
    assert_eq!(commits, [&json!(first), &json!(second)], "{versions}");

    let out = engine.output();
    engine.stop();
    assert!(
        !out.contains(TOKEN) && !out.contains(&encoded),
        "the token never reaches the engine's log"
    );
    assert!(server.requests.load(Ordering::Relaxed) > 0);

    // A new engine with no checkout (a fresh pod's empty data dir) and a sync that fails: the DAGs stay as
    // the database has them, not stale, and the error shows.
    std::fs::remove_dir_all(home.path().join("dags-git")).unwrap();
    std::fs::write(&token_file, "revoked\n").unwrap();
    let mut engine = home.spawn(&["standalone"]);
    wait_for(Duration::from_secs(60), "the engine to answer again", || {
        http_get(port, "/api/v2/monitor/health").filter(|(s, _)| *s == 200)
    });
    let api = admin_token(&home, port);
    wait_for(Duration::from_secs(30), "the sync error after the restart", || {
        import_errors(port, &api)
            .iter()
            .any(|e| e["filename"].as_str().is_some_and(|f| f.starts_with("git ")))
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    let dag = get(port, &api, "/api/v2/dags/pinned").1;
    assert_eq!(dag["is_stale"], false, "no checkout is not a deleted DAG: {dag}");
    engine.stop();
}
