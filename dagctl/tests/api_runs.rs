//! Runs, task logs and task actions through the REST API of a real `dagctl standalone`: paging by cursor and
//! offset, logs as JSON pages and NDJSON, clear/mark/note/XCom, and the grid.

mod api_support;
mod common;

use std::collections::HashSet;
use std::time::Duration;

use serde_json::{json, Value};

use api_support::*;
use common::*;

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
