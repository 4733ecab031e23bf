//! Assets on a real engine, as Airflow decides: a task's success updates its `outlets`; a DAG scheduled by a
//! list of assets runs once all of them were updated since its last asset-triggered run, one scheduled by
//! `|` once any was; an `empty` task with outlets updates them too; a failed task updates nothing; an event made through the API counts like a task's.
//! apache-airflow-client 3.3.2 reads the assets and events and creates one; the UI lists them.

mod api_support;
mod common;

use std::process::Command;
use std::time::Duration;

use api_support::*;
use common::*;
use serde_json::{json, Value};

const BLOCKS: &str = "s3://lake/blocks";
const RECEIPTS: &str = "s3://lake/receipts";

fn runs_of(server: &Server, token: &str, dag: &str) -> Vec<Value> {
    let resp = server.call(
        "GET",
        &format!("/api/v2/dags/{dag}/dagRuns?limit=100"),
        Some(token),
        None,
    );
    resp.expect(200, "list runs");
    resp.json()["dag_runs"].as_array().unwrap().clone()
}

fn trigger_and_wait(server: &Server, token: &str, dag: &str, want: &str) {
    let resp = server.call(
        "POST",
        &format!("/api/v2/dags/{dag}/dagRuns"),
        Some(token),
        Some(&json!({"logical_date": null})),
    );
    resp.expect(200, &format!("trigger {dag}"));
    let run_id = resp.json()["dag_run_id"].as_str().unwrap().to_string();
    wait_for(Duration::from_secs(60), &format!("{dag} {run_id} to be {want}"), || {
        let run = server
            .call(
                "GET",
                &format!("/api/v2/dags/{dag}/dagRuns/{}", enc(&run_id)),
                Some(token),
                None,
            )
            .json();
        (run["state"] == want).then_some(())
    });
}

fn asset_runs(server: &Server, token: &str, dag: &str) -> Vec<Value> {
    runs_of(server, token, dag)
        .into_iter()
        .filter(|r| r["run_type"] == "asset_triggered")
        .collect()
}

#[test]
fn outlets_trigger_the_dags_their_assets_schedule_as_airflow_does() {
    let server = Server::start();
    let token = server.admin();
    server.home.write_dag(
        "assets.yaml",
        &format!(
            r#"make_blocks:
  schedule: null
  tasks:
    make: {{operator: empty, outlets: ["{BLOCKS}"]}}
make_receipts:
  schedule: null
  tasks:
    make:
      operator: bash
      bash_command: "true"
      outlets: [{{__type__: airflow.sdk.Asset, name: receipts, uri: "{RECEIPTS}"}}]
broken_blocks:
  schedule: null
  tasks:
    make: {{operator: bash, bash_command: "exit 1", outlets: ["{BLOCKS}"]}}
needs_both:
  schedule: ["{BLOCKS}", "{RECEIPTS}"]
  tasks:
    t: {{operator: bash, bash_command: "true"}}
needs_either:
  schedule: {{__or__: ["{BLOCKS}", "s3://lake/other"]}}
  tasks:
    t: {{operator: bash, bash_command: "true"}}
"#
        ),
    );
    for dag in [
        "make_blocks",
        "make_receipts",
        "broken_blocks",
        "needs_both",
        "needs_either",
    ] {
        wait_for(Duration::from_secs(60), &format!("{dag} to be parsed"), || {
            (server
                .call("GET", &format!("/api/v2/dags/{dag}"), Some(&token), None)
                .status
                == 200)
                .then_some(())
        });
        let resp = server.call(
            "PATCH",
            &format!("/api/v2/dags/{dag}?update_mask=is_paused"),
            Some(&token),
            Some(&json!({"is_paused": false})),
        );
        resp.expect(200, "unpause");
    }
    let details = server
        .call("GET", "/api/v2/dags/needs_either/details", Some(&token), None)
        .json();
    assert_eq!(
        details["timetable_summary"], "(s3://lake/blocks | s3://lake/other)",
        "{details}"
    );

    // A failed producer updates nothing.
    trigger_and_wait(&server, &token, "broken_blocks", "failed");
    // Blocks alone: `needs_either` runs, `needs_both` waits.
    trigger_and_wait(&server, &token, "make_blocks", "success");
    wait_for(Duration::from_secs(30), "needs_either to run", || {
        asset_runs(&server, &token, "needs_either")
            .iter()
            .any(|r| r["state"] == "success")
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        asset_runs(&server, &token, "needs_both").is_empty(),
        "needs_both waits for receipts"
    );
    assert_eq!(asset_runs(&server, &token, "needs_either").len(), 1);
    // Receipts too: `needs_both` runs once, with both events upstream; `needs_either` does not run again.
    trigger_and_wait(&server, &token, "make_receipts", "success");
    let both = wait_for(Duration::from_secs(30), "needs_both to run", || {
        asset_runs(&server, &token, "needs_both")
            .into_iter()
            .find(|r| r["state"] == "success")
    });
    assert!(
        both["logical_date"].is_null(),
        "asset-triggered runs have no logical date: {both}"
    );
    assert_eq!(both["triggered_by"], "asset");
    let upstream = server
        .call(
            "GET",
            &format!(
                "/api/v2/dags/needs_both/dagRuns/{}/upstreamAssetEvents",
                enc(both["dag_run_id"].as_str().unwrap())
            ),
            Some(&token),
            None,
        )
        .json();
    let mut uris: Vec<&str> = upstream["asset_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["uri"].as_str().unwrap())
        .collect();
    uris.sort();
    assert_eq!(uris, [BLOCKS, RECEIPTS], "{upstream}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(asset_runs(&server, &token, "needs_either").len(), 1);
    assert_eq!(asset_runs(&server, &token, "needs_both").len(), 1);

    // Events: from the successful producers only, each naming its source and the runs it went into.
    let events = server
        .call("GET", "/api/v2/assets/events?order_by=timestamp", Some(&token), None)
        .json();
    let events = events["asset_events"].as_array().unwrap();
    let sources: Vec<(&str, &str)> = events
        .iter()
        .map(|e| (e["uri"].as_str().unwrap(), e["source_dag_id"].as_str().unwrap()))
        .collect();
    assert_eq!(
        sources,
        [(BLOCKS, "make_blocks"), (RECEIPTS, "make_receipts")],
        "{events:?}"
    );
    let mut went: Vec<&str> = events[0]["created_dagruns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["dag_id"].as_str().unwrap())
        .collect();
    went.sort();
    assert_eq!(went, ["needs_both", "needs_either"], "{:?}", events[0]);
    // Bad input: a JSON body naming what was wrong.
    for (body, status) in [
        (json!({"asset_id": 999999}), 404),
        (json!({"asset_id": "x"}), 422),
        (json!({"asset_id": 1, "bogus": 1}), 422),
    ] {
        let resp = server.call("POST", "/api/v2/assets/events", Some(&token), Some(&body));
        assert_eq!(resp.status, status, "{body}: {}", resp.text());
    }
    assert_eq!(server.call("GET", "/api/v2/assets/x", Some(&token), None).status, 422);

    // The official client: assets, events, and an event made by hand that triggers `needs_either`.
    let output = Command::new(python())
        .current_dir(repo_root())
        .args([
            "tests/compat/airflow_client_assets.py",
            "--url",
            &server.url(),
            "--token",
            &token,
            "--uri",
            BLOCKS,
            "--consumer",
            "needs_either",
        ])
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(output.status.success(), "{text}\n{}", server.proc.output());
    assert!(text.contains("ok: all asset steps passed"), "{text}");

    // The UI lists the assets and their events.
    let cookie = form_login(&server, "admin", &server.password.clone());
    let page = server.raw("GET", "/assets", &[("Cookie", &cookie)], None);
    assert_eq!(page.status, 200);
    let html = page.text().replace("&#x2f;", "/");
    assert!(
        html.contains(BLOCKS) && html.contains(RECEIPTS) && html.contains("make_receipts"),
        "{html}"
    );
}

#[test]
fn asset_uris_that_are_not_uris_are_import_errors_with_their_line() {
    let home = Home::new();
    home.write_dag(
        "bad.yaml",
        "bad:\n  schedule: null\n  tasks:\n    t:\n      operator: bash\n      bash_command: x\n      outlets:\n        - s3://fine\n        - not a uri\n",
    );
    home.write_dag(
        "bad_schedule.yaml",
        "bad_schedule:\n  schedule: [s3://fine, 'airflow://reserved']\n  tasks:\n    t: {operator: empty}\n",
    );
    let output = home.run(&["dags", "validate"]);
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("bad.yaml:9") && text.contains("not an asset URI"),
        "{text}"
    );
    assert!(
        text.contains("bad_schedule.yaml:2") && text.contains("reserved"),
        "{text}"
    );
}
