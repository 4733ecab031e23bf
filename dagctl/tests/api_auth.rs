//! Login and roles on a real `dagctl standalone`: every route but health, version and metrics needs a principal,
//! roles are enforced on the server, sessions end at sign-out, failed sign-ins are throttled.

mod api_support;
mod common;

use serde_json::{json, Value};

use api_support::*;

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

/// `POST /auth/token` from the loopback address `source` (any of 127.0.0.0/8 reaches the server), as a
/// client elsewhere would; the answer's status.
fn sign_in_from(port: u16, source: &str, username: &str, password: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = json!({"username": username, "password": password}).to_string();
    common::block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        let mut stream = socket
            .connect(format!("127.0.0.1:{port}").parse().unwrap())
            .await
            .unwrap();
        let request = format!(
            "POST /auth/token HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer);
        text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
    })
}

#[test]
fn nobody_can_lock_a_user_out_and_a_flood_of_names_does_not_reset_the_count() {
    let server = Server::start();
    let port = server.port;
    let password = server.password.clone();
    // Cheap lockout: passwords over the length limit are refused without a hash and are not counted...
    let long = "x".repeat(1025);
    for _ in 0..20 {
        assert_eq!(sign_in_from(port, "127.0.0.2", "admin", &long), 401);
    }
    assert_eq!(
        sign_in_from(port, "127.0.0.1", "admin", &password),
        201,
        "the admin is not locked out"
    );
    // ...and wrong passwords from another address lock that address's guesses, not the real user.
    for i in 0..5 {
        assert_eq!(sign_in_from(port, "127.0.0.2", "admin", &format!("guess-{i}")), 401);
    }
    assert_eq!(
        sign_in_from(port, "127.0.0.2", "admin", &password),
        429,
        "the guesser waits"
    );
    assert_eq!(
        sign_in_from(port, "127.0.0.1", "admin", &password),
        201,
        "the real user does not"
    );
    // A flood of made-up names from one address stops that address, whose later guesses at a real user
    // are throttled.
    let mut refused_at = None;
    for i in 0..200 {
        if sign_in_from(port, "127.0.0.3", &format!("made-up-{i}"), "nope") == 429 {
            refused_at = Some(i);
            break;
        }
    }
    assert_eq!(
        refused_at,
        Some(50),
        "the flooding address is stopped after 50 failures"
    );
    let statuses: Vec<u16> = (0..30)
        .map(|i| sign_in_from(port, "127.0.0.3", "admin", &format!("guess-{i}")))
        .collect();
    assert!(statuses.iter().all(|s| *s == 429), "{statuses:?}");
    // The flood cost the real user nothing.
    assert_eq!(sign_in_from(port, "127.0.0.1", "admin", &password), 201);
}
