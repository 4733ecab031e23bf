//! Bad and odd input to the REST API of a real `dagctl standalone`: a 4xx with a JSON body that names the
//! problem, and nothing written.

mod api_support;
mod common;

use serde_json::{json, Value};

use api_support::*;

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
