//! Airflow's variables and connections, end to end: the CLI (encrypted at rest, masked unless asked), templates
//! in a running try (`var.value`, `var.json`, `conn.x`; secrets masked in the log; a missing name fails the
//! task naming it), and the REST API's roles and masking. apache-airflow-client drives the same endpoints in
//! `api.rs` (`tests/compat/airflow_client_compat.py`).

mod api_support;
mod common;

use std::os::unix::fs::PermissionsExt;

use api_support::{Resp, Server};
use common::*;
use serde_json::json;

const TOKEN: &str = "tok-abcdef123";
const PASSWORD: &str = "pw-secret-9";

fn fails(home: &Home, args: &[&str]) -> String {
    let output = home.run(args);
    assert!(
        !output.status.success(),
        "dagctl {args:?} succeeded: {}",
        stdout(&output)
    );
    let err = stderr(&output);
    assert_eq!(err.trim().lines().count(), 1, "one readable line: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

fn seed(home: &Home) {
    home.ok(&["variables", "set", "region", "eu-west", "--description", "where"]);
    home.ok(&["variables", "set", "cfg", r#"{"nodes": 4}"#, "--serialize-json"]);
    home.ok(&["variables", "set", "rpc_token", TOKEN]);
    home.ok(&[
        "variables",
        "set",
        "db",
        r#"{"host": "db.local", "password": "inner-pw-77"}"#,
        "-j",
    ]);
    home.ok(&[
        "connections",
        "add",
        "rpc",
        "--conn-uri",
        &format!("ethereum://user:{PASSWORD}@127.0.0.1:8545?chain_id=1337"),
    ]);
}

fn cli_round_trip(home: Home) {
    seed(&home);
    assert_eq!(home.ok(&["variables", "get", "region"]).trim(), "eu-west");
    assert_eq!(home.ok(&["variables", "get", "rpc_token"]).trim(), "***");
    assert_eq!(
        home.ok(&["variables", "get", "rpc_token", "--show-secrets"]).trim(),
        TOKEN
    );
    assert_eq!(home.ok(&["variables", "get", "nope", "--default", "d"]).trim(), "d");
    let listed = home.json(&["variables", "list"]).to_string();
    assert!(listed.contains("eu-west") && !listed.contains(TOKEN), "{listed}");
    assert!(home
        .json(&["variables", "list", "--show-secrets"])
        .to_string()
        .contains(TOKEN));
    let conn = home.json(&["connections", "get", "rpc"]);
    assert_eq!(conn[0]["password"], "***", "{conn}");
    assert_eq!(conn[0]["host"], "127.0.0.1");
    assert!(!conn.to_string().contains(PASSWORD), "{conn}");
    let shown = home.json(&["connections", "get", "rpc", "--show-secrets"]);
    assert_eq!(shown[0]["password"], PASSWORD);
    assert!(!home.json(&["connections", "list"]).to_string().contains(PASSWORD));

    // Bad input: one line, non-zero, nothing written.
    assert!(fails(&home, &["variables", "get", "nope"]).contains("variable `nope` does not exist"));
    assert!(fails(&home, &["variables", "delete", "nope"]).contains("nope"));
    assert!(fails(&home, &["connections", "add", "rpc", "--conn-type", "http"]).contains("already exists"));
    assert!(fails(&home, &["connections", "add", "bad/id", "--conn-type", "http"]).contains("connection id"));
    assert!(fails(&home, &["connections", "add", "x", "--conn-uri", "http://h:notaport"]).contains("port"));
    assert!(fails(
        &home,
        &["connections", "add", "x", "--conn-type", "http", "--conn-extra", "[1]"]
    )
    .contains("JSON object"));
    assert!(fails(&home, &["variables", "set", "x", "{no", "--serialize-json"]).contains("not JSON"));

    // Export (values in clear, the file private), delete, import back.
    let file = home.path().join("vars.json");
    std::fs::write(&file, "old").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    home.ok(&["variables", "export", file.to_str().unwrap()]);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    let exported: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    assert_eq!(exported["cfg"], json!({"nodes": 4}));
    assert_eq!(exported["region"], json!({"value": "eu-west", "description": "where"}));
    for key in ["region", "cfg", "rpc_token", "db"] {
        home.ok(&["variables", "delete", key]);
    }
    let broken = home.path().join("broken.json");
    std::fs::write(&broken, r#"{"a": "1", "": "empty key"}"#).unwrap();
    fails(&home, &["variables", "import", broken.to_str().unwrap()]);
    assert!(
        home.json(&["variables", "list"]).as_array().unwrap().is_empty(),
        "nothing half-imported"
    );
    assert!(home
        .ok(&["variables", "import", file.to_str().unwrap()])
        .contains("4 variable(s) imported"));
    assert_eq!(
        home.ok(&["variables", "get", "rpc_token", "--show-secrets"]).trim(),
        TOKEN
    );
    assert!(fails(
        &home,
        &[
            "variables",
            "import",
            file.to_str().unwrap(),
            "--action-on-existing-key",
            "fail"
        ]
    )
    .contains("already exists"));
    assert!(home
        .ok(&[
            "variables",
            "import",
            file.to_str().unwrap(),
            "--action-on-existing-key",
            "skip"
        ])
        .contains("0 variable(s) imported, 4 skipped"));
}

#[test]
fn the_cli_keeps_variables_and_connections_encrypted_and_masked_on_sqlite() {
    cli_round_trip(Home::new());
    let home = Home::new();
    // Encrypted at rest with a key outside the database, made private.
    seed(&home);
    let key = home.path().join("fernet_key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let mut raw = Vec::new();
    for entry in std::fs::read_dir(home.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("dagctl.db") {
            raw.extend(std::fs::read(&path).unwrap());
        }
    }
    assert!(!raw.is_empty(), "the SQLite files were read");
    for secret in [TOKEN, PASSWORD, "eu-west"] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "`{secret}` is in the database in clear"
        );
    }
    // Another key cannot read them: a clear error, not garbage.
    let output = home
        .command()
        .env("DAGCTL_FERNET_KEY", "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=")
        .args(["variables", "get", "region"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(stderr(&output).contains("Fernet"), "{}", stderr(&output));
    // Rotation: the new key first, the old one after it; then the new key alone reads everything.
    let old = std::fs::read_to_string(&key).unwrap().trim().to_string();
    let new = "cw_0x689RpI-jtRR7oE8h_eQsKImvJapLeSbXpwF4e4=";
    let with = |keys: &str, args: &[&str]| {
        home.command()
            .env("DAGCTL_FERNET_KEY", keys)
            .args(args)
            .output()
            .unwrap()
    };
    let rotated = with(&format!("{new},{old}"), &["rotate-fernet-key"]);
    assert!(rotated.status.success(), "{}", stderr(&rotated));
    let read = with(new, &["variables", "get", "rpc_token", "--show-secrets"]);
    assert_eq!(stdout(&read).trim(), TOKEN, "{}", stderr(&read));
}

#[test]
fn the_cli_keeps_variables_and_connections_on_postgres() {
    cli_round_trip(Home::postgres());
}

#[test]
fn templates_read_variables_and_connections_and_never_print_their_secrets() {
    let home = Home::new();
    seed(&home);
    home.write_dag(
        "secrets.yaml",
        r#"secrets-demo:
  schedule: null
  default_args: {start_date: 2026-11-01}
  tasks:
    show:
      operator: bash
      bash_command: "echo db={{ var.json.db.host }}/{{ var.json.db.password }} region={{ var.value.region }} nodes={{ var.json.cfg.nodes }} rpc={{ conn.rpc.host }}:{{ conn.rpc.port }} chain={{ conn.rpc.extra_dejson.chain_id }} pw={{ conn.rpc.password }} token={{ var.value.rpc_token }} fallback={{ var.value.get('unset', 'dflt') }}"
    from_env:
      operator: bash
      bash_command: 'echo "env token=$T"'
      env: {T: "{{ var.value.rpc_token }}"}
    missing:
      operator: bash
      bash_command: "echo {{ var.value.nope }}"
    missing_conn:
      operator: bash
      bash_command: "echo {{ conn.nowhere.host }}"
"#,
    );
    let output = home.run(&["dags", "test", "secrets-demo"]);
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        !output.status.success(),
        "the tasks naming missing values fail the run: {text}"
    );
    let show = section(&text, "secrets-demo", "show");
    assert!(show.contains("try 1: success ---"), "{show}");
    assert!(
        show.contains(
            "db=db.local/*** region=eu-west nodes=4 rpc=127.0.0.1:8545 chain=1337 pw=*** token=*** fallback=dflt"
        ),
        "{show}"
    );
    assert!(
        section(&text, "secrets-demo", "from_env").contains("env token=***"),
        "{text}"
    );
    let missing = section(&text, "secrets-demo", "missing");
    assert!(missing.contains("variable `nope` does not exist"), "{missing}");
    let missing = section(&text, "secrets-demo", "missing_conn");
    assert!(missing.contains("connection `nowhere` does not exist"), "{missing}");
    for secret in [TOKEN, PASSWORD, "inner-pw-77"] {
        assert!(!text.contains(secret), "`{secret}` reached the output: {text}");
    }
}

/// A `chain.*` operator reaches a node that dagctl did not deploy through an `ethereum` connection.
#[test]
fn a_chain_operator_targets_a_node_through_an_ethereum_connection() {
    let home = Home::new();
    let port = free_port();
    let mut anvil = std::process::Command::new(client_binary("anvil", "DAGCTL_ANVIL"))
        .args(["--port", &port.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_for(std::time::Duration::from_secs(30), "anvil to answer", || {
        rpc(&url, "eth_chainId", json!([]))
    });
    home.ok(&[
        "connections",
        "add",
        "devnet",
        "--conn-type",
        "ethereum",
        "--conn-host",
        "127.0.0.1",
        "--conn-port",
        &port.to_string(),
        "--conn-extra",
        r#"{"chain_id": 31337}"#,
    ]);
    home.write_dag(
        "external.yaml",
        "external:\n  schedule: null\n  default_args: {start_date: 2026-11-01}\n  tasks:\n    audit:\n      operator: chain.audit\n      url: \"{{ conn.devnet.rpc_url }}\"\n",
    );
    let output = home.run(&["dags", "test", "external"]);
    let text = format!("{}{}", stdout(&output), stderr(&output));
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(anvil.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    );
    let _ = anvil.wait();
    assert!(output.status.success(), "{text}");
    let audit = section(&text, "external", "audit");
    assert!(audit.contains(&url), "the audit went to the connection's node: {audit}");
}

fn expect(resp: &Resp, status: u16, what: &str) -> serde_json::Value {
    resp.expect(status, what);
    if resp.body.is_empty() {
        json!(null)
    } else {
        resp.json()
    }
}

#[test]
fn the_api_masks_secrets_for_everyone_but_admins_and_refuses_viewers() {
    let server = Server::start();
    let admin = server.admin();
    server.create_user("op1", "Op", "op-password-1");
    server.create_user("viewer1", "Viewer", "viewer-password-1");
    let op = server.token("op1", "op-password-1");
    let viewer = server.token("viewer1", "viewer-password-1");
    let body = json!({"key": "db_password", "value": "s3cret-value", "description": "d"});
    expect(
        &server.call("POST", "/api/v2/variables", Some(&admin), Some(&body)),
        201,
        "create",
    );
    expect(
        &server.call("POST", "/api/v2/variables", Some(&admin), Some(&body)),
        409,
        "taken",
    );
    let cfg = json!({"key": "cfg", "value": {"rpc": "http://x", "api_key": "k-123456"}});
    expect(
        &server.call("POST", "/api/v2/variables", Some(&op), Some(&cfg)),
        201,
        "op creates",
    );
    let as_op = expect(
        &server.call("GET", "/api/v2/variables/db_password", Some(&op), None),
        200,
        "op reads",
    );
    assert_eq!(as_op["value"], "***");
    let as_admin = expect(
        &server.call("GET", "/api/v2/variables/db_password", Some(&admin), None),
        200,
        "admin",
    );
    assert_eq!(as_admin["value"], "s3cret-value");
    let listed = expect(
        &server.call("GET", "/api/v2/variables", Some(&op), None),
        200,
        "op lists",
    );
    let text = listed.to_string();
    assert!(
        !text.contains("s3cret-value") && !text.contains("k-123456") && text.contains("http://x"),
        "{text}"
    );
    expect(
        &server.call("GET", "/api/v2/variables", Some(&viewer), None),
        403,
        "viewer",
    );
    expect(
        &server.call("GET", "/api/v2/connections", Some(&viewer), None),
        403,
        "viewer",
    );
    expect(&server.call("GET", "/api/v2/variables", None, None), 401, "anonymous");
    // An Op sending the masked value back keeps the stored one.
    let back = json!({"key": "db_password", "value": "***", "description": "changed"});
    expect(
        &server.call("PATCH", "/api/v2/variables/db_password", Some(&op), Some(&back)),
        200,
        "op patch",
    );
    let after = expect(
        &server.call("GET", "/api/v2/variables/db_password", Some(&admin), None),
        200,
        "admin",
    );
    assert_eq!(
        (after["value"].as_str(), after["description"].as_str()),
        (Some("s3cret-value"), Some("changed"))
    );

    // A JSON value an Op saw partly masked and sends back with one change keeps its secret field.
    let seen = expect(
        &server.call("GET", "/api/v2/variables/cfg", Some(&op), None),
        200,
        "op reads cfg",
    );
    let mut value: serde_json::Value = serde_json::from_str(seen["value"].as_str().unwrap()).unwrap();
    assert_eq!(value["api_key"], "***");
    value["rpc"] = json!("http://y");
    let body = json!({"key": "cfg", "value": value});
    expect(
        &server.call("PATCH", "/api/v2/variables/cfg", Some(&op), Some(&body)),
        200,
        "op patches cfg",
    );
    let stored = expect(
        &server.call("GET", "/api/v2/variables/cfg", Some(&admin), None),
        200,
        "admin",
    );
    let stored: serde_json::Value = serde_json::from_str(stored["value"].as_str().unwrap()).unwrap();
    assert_eq!(stored, json!({"rpc": "http://y", "api_key": "k-123456"}));
    // Ordering by value would give masked values away.
    expect(
        &server.call("GET", "/api/v2/variables?order_by=value", Some(&op), None),
        403,
        "op orders by value",
    );
    expect(
        &server.call("GET", "/api/v2/variables?order_by=value", Some(&admin), None),
        200,
        "admin orders by value",
    );

    let conn = json!({"connection_id": "rpc", "conn_type": "ethereum", "host": "127.0.0.1", "port": 8545,
                      "password": "conn-pass-1", "extra": "{\"token\": \"x-tok-999\", \"chain_id\": 5}"});
    expect(
        &server.call("POST", "/api/v2/connections", Some(&op), Some(&conn)),
        201,
        "op creates a connection",
    );
    let seen = expect(
        &server.call("GET", "/api/v2/connections/rpc", Some(&op), None),
        200,
        "op reads",
    );
    assert_eq!(seen["password"], "***");
    assert!(!seen.to_string().contains("x-tok-999"), "{seen}");
    // The masked values sent back with one real change keep the secrets.
    let mut again = seen.clone();
    again["port"] = json!(8546);
    again.as_object_mut().unwrap().remove("team_name");
    expect(
        &server.call("PATCH", "/api/v2/connections/rpc", Some(&op), Some(&again)),
        200,
        "op patch",
    );
    let full = expect(
        &server.call("GET", "/api/v2/connections/rpc", Some(&admin), None),
        200,
        "admin",
    );
    assert_eq!(
        (full["password"].as_str(), full["port"].as_i64()),
        (Some("conn-pass-1"), Some(8546))
    );
    assert!(full["extra"].as_str().unwrap().contains("x-tok-999"));

    // Bulk: one failure does not stop the others; skip skips.
    let bulk = json!({"actions": [
        {"action": "create", "entities": [{"key": "db_password", "value": "x"}, {"key": "fresh", "value": "1"}]},
        {"action": "delete", "entities": ["nope", "fresh"], "action_on_non_existence": "skip"},
    ]});
    let answer = expect(
        &server.call("PATCH", "/api/v2/variables", Some(&op), Some(&bulk)),
        200,
        "bulk",
    );
    assert_eq!(answer["create"]["success"], json!(["fresh"]), "{answer}");
    assert_eq!(answer["create"]["errors"][0]["status_code"], 409, "{answer}");
    assert_eq!(answer["delete"]["success"], json!(["fresh"]), "{answer}");
    assert_eq!(answer["delete"]["errors"], json!([]), "{answer}");

    // Bad input: 4xx with a JSON body, nothing written.
    for (method, path, body, status) in [
        ("POST", "/api/v2/variables", json!({"value": "no key"}), 422),
        ("POST", "/api/v2/variables", json!({"key": "", "value": "x"}), 422),
        (
            "POST",
            "/api/v2/variables",
            json!({"key": "k", "value": "x", "bogus": 1}),
            422,
        ),
        (
            "POST",
            "/api/v2/connections",
            json!({"connection_id": "a b", "conn_type": "http"}),
            422,
        ),
        (
            "POST",
            "/api/v2/connections",
            json!({"connection_id": "a", "conn_type": "http", "extra": "[1]"}),
            422,
        ),
        (
            "POST",
            "/api/v2/connections",
            json!({"connection_id": "a", "conn_type": "http", "port": 99999}),
            422,
        ),
        (
            "PATCH",
            "/api/v2/variables/other",
            json!({"key": "db_password", "value": "x"}),
            400,
        ),
        ("GET", "/api/v2/variables/none-such", json!(null), 404),
        ("DELETE", "/api/v2/connections/none-such", json!(null), 404),
    ] {
        let body = (!body.is_null()).then_some(&body);
        let resp = server.call(method, path, Some(&admin), body);
        assert_eq!(resp.status, status, "{method} {path}: {}", resp.text());
        assert!(
            resp.json()["detail"].is_string() || resp.json()["detail"].is_array(),
            "{}",
            resp.text()
        );
    }
    let names = expect(
        &server.call("GET", "/api/v2/connections", Some(&admin), None),
        200,
        "list",
    );
    assert_eq!(names["total_entries"], 1, "{names}");
    // An API token cannot read variables through the execution API.
    expect(
        &server.call("GET", "/execution/variables/db_password", Some(&admin), None),
        401,
        "execution API",
    );
}
