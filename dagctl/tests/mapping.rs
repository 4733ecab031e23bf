//! Dynamic task mapping on a real engine, seen through the API, the UI and the CLI: a task mapped over an
//! upstream's XCom expands into instances with their own map_index, state, tries, log and XCom; Airflow's
//! `listMapped` and `/{map_index}` endpoints read them; the grid shows the mapped task as one cell with its
//! count and the run page lists each instance; clearing the run re-expands the task over the new XCom (extra
//! instances are removed).

mod api_support;
mod common;

use std::time::Duration;

use api_support::*;
use common::*;
use serde_json::{json, Value};

const DAG: &str = "fan_out";

fn ti_path(run_id: &str, rest: &str) -> String {
    format!("/api/v2/dags/{DAG}/dagRuns/{}/taskInstances{rest}", enc(run_id))
}

fn wait_state(server: &Server, token: &str, run_id: &str, want: &str) {
    let path = format!("/api/v2/dags/{DAG}/dagRuns/{}", enc(run_id));
    wait_for(Duration::from_secs(60), &format!("{run_id} to be {want}"), || {
        let run = server.call("GET", &path, Some(token), None).json();
        (run["state"] == want).then_some(())
    });
}

#[test]
fn mapped_instances_are_served_by_the_api_ui_and_cli_and_re_expand_when_cleared() {
    let server = Server::start();
    let token = server.admin();
    let count = server.home.path().join("count");
    std::fs::write(&count, "3").unwrap();
    // `make` pushes [{"ITEM": "1"}, ...] (as many as the count file says); each instance of `each` gets one
    // as its `env`.
    server.home.write_dag(
        "fan_out.yaml",
        &format!(
            r#"{DAG}:
  schedule: null
  tasks:
    make:
      operator: bash
      bash_command: |
        seq 1 $(cat {count}) | sed 's/.*/{{"ITEM": "&"}}/' | paste -sd, - | sed 's/.*/[&]/' > "$DAGCTL_XCOM"
    each:
      operator: bash
      partial:
        bash_command: 'echo "item $ITEM of {{{{ ti.task_id }}}} [{{{{ ti.map_index }}}}]"; echo "$((ITEM * 10))"'
      expand:
        env: make.output
    sum:
      operator: bash
      bash_command: "echo 'second={{{{ ti.xcom_pull(task_ids=\"each\", map_indexes=1) }}}}'; echo '{{{{ ti.xcom_pull(task_ids=\"each\") | tojson }}}}'"
      dependencies: [each]
"#,
            count = count.display()
        ),
    );
    wait_for(Duration::from_secs(60), "fan_out to be parsed", || {
        (server
            .call("GET", &format!("/api/v2/dags/{DAG}"), Some(&token), None)
            .status
            == 200)
            .then_some(())
    });
    server
        .call(
            "PATCH",
            &format!("/api/v2/dags/{DAG}?update_mask=is_paused"),
            Some(&token),
            Some(&json!({"is_paused": false})),
        )
        .expect(200, "unpause");
    let resp = server.call(
        "POST",
        &format!("/api/v2/dags/{DAG}/dagRuns"),
        Some(&token),
        Some(&json!({"dag_run_id": "fan1", "logical_date": null})),
    );
    resp.expect(200, "trigger");
    wait_state(&server, &token, "fan1", "success");

    // listMapped: three instances in map_index order, each with its own try.
    let listed = server.call("GET", &ti_path("fan1", "/each/listMapped"), Some(&token), None);
    listed.expect(200, "listMapped");
    let listed = listed.json();
    assert_eq!(listed["total_entries"], 3, "{listed}");
    let indexes: Vec<i64> = listed["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ti| ti["map_index"].as_i64().unwrap())
        .collect();
    assert_eq!(indexes, [0, 1, 2]);
    assert!(listed["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .all(|ti| ti["state"] == "success"));
    // One instance by its map_index; the task without one says how to name an instance; a plain task has no
    // mapped instances.
    let one = server.call("GET", &ti_path("fan1", "/each/1"), Some(&token), None);
    one.expect(200, "instance 1");
    assert_eq!(
        (one.json()["map_index"].clone(), one.json()["task_id"].clone()),
        (json!(1), json!("each"))
    );
    let bare = server.call("GET", &ti_path("fan1", "/each"), Some(&token), None);
    assert_eq!(bare.status, 404, "{}", bare.text());
    assert!(bare.text().contains("is mapped"), "{}", bare.text());
    let plain = server.call("GET", &ti_path("fan1", "/sum/listMapped"), Some(&token), None);
    assert_eq!(plain.status, 404, "{}", plain.text());
    assert!(
        server
            .call("GET", &ti_path("fan1", "/each/7"), Some(&token), None)
            .status
            == 404
    );
    let tries = server.call("GET", &ti_path("fan1", "/each/2/tries"), Some(&token), None);
    tries.expect(200, "tries of instance 2");
    assert_eq!(tries.json()["task_instances"][0]["map_index"], 2, "{}", tries.text());
    // apache-airflow-client 3.3.2 reads the instances with its own models.
    let client = std::process::Command::new("timeout")
        .current_dir(repo_root())
        .args([
            "120",
            &python(),
            "tests/compat/airflow_client_mapped.py",
            "--url",
            &server.url(),
            "--username",
            "admin",
            "--password",
            &server.password,
            "--dag-id",
            DAG,
            "--run-id",
            "fan1",
            "--task-id",
            "each",
            "--count",
            "3",
        ])
        .output()
        .unwrap();
    assert!(
        client.status.success() && stdout(&client).contains("all mapped-instance steps passed"),
        "{}\n{}",
        stdout(&client),
        stderr(&client)
    );
    // Each instance's log (by map_index) and XCom.
    let log = server.call("GET", &ti_path("fan1", "/each/logs/1?map_index=2"), Some(&token), None);
    log.expect(200, "log of instance 2");
    assert!(log.text().contains("item 3 of each [2]"), "{}", log.text());
    let xcom = server.call(
        "GET",
        &ti_path("fan1", "/each/xcomEntries/return_value?map_index=1"),
        Some(&token),
        None,
    );
    xcom.expect(200, "xcom of instance 1");
    assert_eq!(xcom.json()["value"], "20", "{}", xcom.text());
    assert_eq!(xcom.json()["map_index"], 1);
    let all = server.call("GET", &ti_path("fan1", "/each/xcomEntries"), Some(&token), None);
    assert_eq!(all.json()["total_entries"], 3, "{}", all.text());
    // The task after them pulled one instance's value and all values, in map_index order.
    let log = server.call("GET", &ti_path("fan1", "/sum/logs/1"), Some(&token), None);
    assert!(log.text().contains("second=20"), "{}", log.text());
    let sum = server.call(
        "GET",
        &ti_path("fan1", "/sum/xcomEntries/return_value"),
        Some(&token),
        None,
    );
    assert_eq!(sum.json()["value"], r#"["10","20","30"]"#, "{}", sum.text());
    // The list of a run's task instances carries map_index and filters by it.
    let filtered = server.call("GET", &ti_path("fan1", "?map_index=0&map_index=2"), Some(&token), None);
    filtered.expect(200, "filtered list");
    assert_eq!(filtered.json()["total_entries"], 2, "{}", filtered.text());

    // The CLI: states per instance, the log of one instance, and a clear hint without --map-index.
    let states = server.home.states(DAG, "fan1");
    let each: Vec<&Value> = states.iter().filter(|t| t["task_id"] == "each").collect();
    assert_eq!(each.len(), 3, "{states:?}");
    let log = server
        .home
        .ok(&["tasks", "logs", DAG, "fan1", "each", "--map-index", "0"]);
    assert!(log.contains("item 1 of each [0]"), "{log}");
    let refused = server.home.run(&["tasks", "logs", DAG, "fan1", "each"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("--map-index"), "{}", stderr(&refused));

    // The UI: the grid shows `each` as one cell with its count; the run page lists each instance with a link
    // to its log, whose page reads that instance.
    let cookie = form_login(&server, "admin", &server.password.clone());
    let grid = server.raw("GET", &format!("/dags/{DAG}?view=grid"), &[("Cookie", &cookie)], None);
    assert_eq!(grid.status, 200);
    let html = grid.text();
    assert!(
        html.contains(r#"class="cell mapped s-success" data-mapped="3""#),
        "{html}"
    );
    let page = server.raw("GET", &format!("/dags/{DAG}/runs/fan1"), &[("Cookie", &cookie)], None);
    let html = page.text();
    for i in 0..3 {
        assert!(html.contains(&format!(r#"data-map-index="{i}""#)), "{html}");
        assert!(html.contains(&format!("tasks/each?map_index={i}")), "{html}");
    }
    let log_page = server.raw(
        "GET",
        &format!("/dags/{DAG}/runs/fan1/tasks/each?map_index=1"),
        &[("Cookie", &cookie)],
        None,
    );
    assert_eq!(log_page.status, 200);
    assert!(log_page.text().contains("item 2 of each [1]"), "{}", log_page.text());

    // Cleared with a shorter list upstream: the task expands again to two instances, the third is removed,
    // and `sum` sees the two values.
    std::fs::write(&count, "2").unwrap();
    server
        .call(
            "POST",
            &format!("/api/v2/dags/{DAG}/dagRuns/fan1/clear"),
            Some(&token),
            Some(&json!({"dry_run": false})),
        )
        .expect(200, "clear the run");
    wait_state(&server, &token, "fan1", "success");
    let listed = server
        .call("GET", &ti_path("fan1", "/each/listMapped"), Some(&token), None)
        .json();
    let states: Vec<(i64, String)> = listed["task_instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|ti| {
            (
                ti["map_index"].as_i64().unwrap(),
                ti["state"].as_str().unwrap_or("none").to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (0, "success".to_string()),
            (1, "success".to_string()),
            (2, "removed".to_string())
        ],
        "{listed}"
    );
    let sum = server.call(
        "GET",
        &ti_path("fan1", "/sum/xcomEntries/return_value"),
        Some(&token),
        None,
    );
    assert_eq!(sum.json()["value"], r#"["10","20"]"#, "{}", sum.text());

    // One instance cleared by [task_id, map_index]: only it runs again.
    let tries_of = || -> Vec<i64> {
        let listed = server
            .call("GET", &ti_path("fan1", "/each/listMapped"), Some(&token), None)
            .json();
        listed["task_instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ti| ti["try_number"].as_i64().unwrap())
            .collect()
    };
    let before = tries_of();
    let cleared = server.call(
        "POST",
        &format!("/api/v2/dags/{DAG}/clearTaskInstances"),
        Some(&token),
        Some(&json!({"dag_run_id": "fan1", "task_ids": [["each", 1]], "only_failed": false, "dry_run": false})),
    );
    cleared.expect(200, "clear one instance");
    assert_eq!(cleared.json()["total_entries"], 1, "{}", cleared.text());
    assert_eq!(cleared.json()["task_instances"][0]["map_index"], 1);
    wait_state(&server, &token, "fan1", "success");
    let after = tries_of();
    assert_eq!(
        (after[0], after[1], after[2]),
        (before[0], before[1] + 1, before[2]),
        "{before:?} -> {after:?}"
    );
}
