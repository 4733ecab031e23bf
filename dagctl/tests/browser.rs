//! The web UI in Debian's headless Chromium (driven by playwright-core), signed in through a real OpenID
//! provider (panva's certified `oidc-provider`, run by `tests/web-harness/oidc-provider.mjs`): SSO login
//! with groups mapped to roles, the DAG list with an import error, trigger with conf, grid, graph, run
//! gantt, a live log, a Viewer's 403s, CSRF refusals, sign-out and the local admin's form login. The
//! scenario itself is `tests/web-harness/ui-scenarios.mjs`; screenshots land in
//! `<target>/tmp/ui-screenshots/`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::{free_port, http_get, wait_for, Home};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tool(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!("{var} is not set: run ./scripts/test.sh, which installs the browser-test tools and sets it")
    })
}

/// A child process killed by PID when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the test IdP and returns it with its issuer URL.
fn start_idp(node_tools: &str, redirect_uri: &str) -> (Killed, String) {
    let mut child = Command::new("node")
        .arg(repo().join("tests/web-harness/oidc-provider.mjs"))
        .args([
            "--port",
            "0",
            "--client-id",
            "dagctl",
            "--client-secret",
            "s3cret-for-tests",
        ])
        .args(["--redirect-uri", redirect_uri])
        .env("DAGCTL_NODE_TOOLS", node_tools)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start node oidc-provider.mjs");
    let stdout = child.stdout.take().unwrap();
    let guard = Killed(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(issuer) = line.strip_prefix("READY ") {
                let _ = tx.send(issuer.trim().to_string());
            }
        }
    });
    let issuer = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the OpenID provider printed READY within 60 s");
    (guard, issuer)
}

const LIVE_LOGS: &str = r#"
live-logs:
  default_args:
    owner: qa
    start_date: 2026-01-01
  schedule: null
  description: "Prints a tick a second, for the live log viewer"
  tasks:
    - task_id: tick
      operator: airflow.providers.standard.operators.bash.BashOperator
      bash_command: 'for i in 1 2 3 4 5 6; do echo "tick $i"; sleep 1; done'
"#;

const BROKEN: &str = "broken:\n  tasks:\n    - task_id: a\n      operator: airflow.operators.bash.BashOperator\n      bash_command: [not, a, string\n";

#[test]
fn a_user_signs_in_through_the_idp_and_uses_the_ui() {
    let node_tools = tool("DAGCTL_NODE_TOOLS");
    let chromium = tool("DAGCTL_CHROMIUM");
    let home = Home::new();
    home.write_dag(
        "hello-dagctl.yaml",
        &std::fs::read_to_string(repo().join("dags/hello-dagctl.yaml")).unwrap(),
    );
    home.write_dag("live-logs.yaml", LIVE_LOGS);
    home.write_dag("broken.yaml", BROKEN);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let (_idp, issuer) = start_idp(&node_tools, &format!("{base}/auth/oidc/callback"));
    std::fs::write(
        home.path().join("dagctl.toml"),
        format!(
            r#"
[oidc]
issuer = "{issuer}"
client_id = "dagctl"
client_secret = "s3cret-for-tests"
display_name = "Test IdP"
[oidc.role_map]
dagctl-admins = "Admin"
dagctl-ops = "Op"
dagctl-users = "User"
dagctl-viewers = "Viewer"
"#
        ),
    )
    .unwrap();
    let mut server = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(60), "standalone to answer /health", || {
        http_get(port, "/health").filter(|(code, _)| *code == 200)
    });
    let password = wait_for(Duration::from_secs(30), "the admin password file", || {
        std::fs::read_to_string(home.path().join("standalone_admin_password.txt")).ok()
    });
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let mut scenario = Command::new("timeout")
        .args(["300", "node"])
        .arg(repo().join("tests/web-harness/ui-scenarios.mjs"))
        .args(["--base", &base, "--admin-password", password.trim()])
        .arg("--shots")
        .arg(&shots)
        .env("DAGCTL_NODE_TOOLS", &node_tools)
        .env("DAGCTL_CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .output()
        .expect("run node ui-scenarios.mjs");
    let stdout = String::from_utf8_lossy(&scenario.stdout).to_string();
    let stderr = String::from_utf8_lossy(std::mem::take(&mut scenario.stderr).as_slice()).to_string();
    let log = server.output();
    server.stop();
    assert!(
        scenario.status.success() && stdout.contains("browser scenarios passed"),
        "browser scenarios failed ({}):\n{stdout}\n{stderr}\n--- dagctl log ---\n{log}",
        scenario.status
    );
    for name in ["dags", "grid", "graph", "run", "log", "users"] {
        let file = shots.join(format!("{name}.png"));
        let bytes = std::fs::read(&file).unwrap_or_else(|_| panic!("{} is missing", file.display()));
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name}.png is a PNG");
    }
    assert!(
        !log.contains("s3cret-for-tests"),
        "the client secret never reaches the log"
    );
}

/// The network page in Chromium: while `net watch --store` samples two anvil nodes, the charts draw and move
/// (points grow), the node table fills in and a warning appended to a node's log is listed. The scenario is
/// `tests/web-harness/network-charts.mjs`; its screenshot is `network.png`.
#[test]
fn the_network_page_charts_move_while_a_network_is_watched() {
    let node_tools = tool("DAGCTL_NODE_TOOLS");
    let chromium = tool("DAGCTL_CHROMIUM");
    let anvil = common::client_binary("anvil", "DAGCTL_ANVIL");
    let home = Home::new();
    let port = free_port();
    let mut server = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(60), "standalone to answer /health", || {
        http_get(port, "/health").filter(|(code, _)| *code == 200)
    });
    let password = wait_for(Duration::from_secs(30), "the admin password file", || {
        std::fs::read_to_string(home.path().join("standalone_admin_password.txt")).ok()
    });
    let up = home
        .command()
        .env("DAGCTL_ANVIL", &anvil)
        .args([
            "net",
            "up",
            "--client",
            "anvil",
            "--consensus",
            "interval",
            "--nodes",
            "2",
            "--block-time",
            "1",
        ])
        .args(["--name", "charted"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let watch = Killed(
        home.command()
            .args([
                "net",
                "watch",
                "charted",
                "--interval",
                "500ms",
                "--store",
                "-o",
                "json",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(800));
    let log = home.path().join("networks/charted/node-1.log");
    let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut file, b"WARN [12-02|00:00:01.000] Served eth_call   reqid=1\n").unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let scenario = Command::new("timeout")
        .args(["120", "node"])
        .arg(repo().join("tests/web-harness/network-charts.mjs"))
        .args([
            "--base",
            &format!("http://127.0.0.1:{port}"),
            "--admin-password",
            password.trim(),
        ])
        .args(["--network", "charted", "--shots"])
        .arg(&shots)
        .env("DAGCTL_NODE_TOOLS", &node_tools)
        .env("DAGCTL_CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .output()
        .expect("run node network-charts.mjs");
    // The watch ends by itself once the network is torn down; dropping it stops it by PID if not.
    let down = home.run(&["net", "down", "charted"]);
    drop(watch);
    let server_log = server.output();
    server.stop();
    let stdout = String::from_utf8_lossy(&scenario.stdout);
    assert!(
        scenario.status.success() && stdout.contains("network charts passed"),
        "network page scenario failed ({}):\n{stdout}\n{}\n--- dagctl log ---\n{server_log}",
        scenario.status,
        String::from_utf8_lossy(&scenario.stderr)
    );
    assert!(down.status.success());
    let bytes = std::fs::read(shots.join("network.png")).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
}

/// KPIs across runs, through the CLI, the REST API and the UI in Chromium: a DAG loads an anvil node four times
/// and then a closed port once; `chain.log_etl` (with `on_regression: fail`) keeps each run's KPIs and fails the
/// fifth on its error rate. `dagctl kpi` and the API show the trend and the regression; the run and trend pages
/// draw their charts (`tests/web-harness/kpi-pages.mjs`; screenshots `kpi-run.png`, `kpi-trend.png`).
#[test]
fn kpis_trend_across_runs_and_a_regression_shows_in_the_cli_the_api_and_the_ui() {
    let node_tools = tool("DAGCTL_NODE_TOOLS");
    let chromium = tool("DAGCTL_CHROMIUM");
    let home = Home::new();
    common::anvil_network(&home, "kpinet", 1);
    let shown = home.json(&["net", "show", "kpinet"]);
    let url = shown["rpc"].as_str().unwrap_or_else(|| panic!("{shown}")).to_string();
    home.write_dag(
        "trended.yaml",
        &format!(
            "trended:\n  default_args: {{owner: qa, start_date: 2026-11-01}}\n  params: {{url: \"{url}\"}}\n  tasks:\n    load:\n      operator: chain.load_test\n      url: \"{{{{ params.url }}}}\"\n      rate: 50\n      duration: 1s\n      timeout: 500ms\n    kpis:\n      operator: chain.log_etl\n      dependencies: [load]\n      trigger_rule: all_done\n      on_regression: fail\n"
        ),
    );
    let test_run = |conf: &str| {
        let output = home
            .command()
            .args(["dags", "test", "trended", "--conf", conf])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    for i in 0..4 {
        let text = test_run("{}");
        assert!(
            text.contains("--- run ") && text.contains(": success ---"),
            "run {i}: {text}"
        );
    }
    let closed = free_port();
    let text = test_run(&format!(r#"{{"url": "http://127.0.0.1:{closed}"}}"#));
    assert!(text.contains("regression: error_rate is 1.0000"), "{text}");
    assert!(
        text.contains("--- trended.kpis try 1: failed ---"),
        "on_regression: fail: {text}"
    );
    let runs = home.json(&["dags", "list-runs", "trended"]);
    let runs: Vec<String> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(runs.len(), 5);
    let newest = runs.iter().max().unwrap().clone();
    let oldest = runs.iter().min().unwrap().clone();
    let kpis = home.json(&["kpi", "trended", &newest]);
    assert_eq!(kpis["trend"].as_array().unwrap().len(), 5, "{}", kpis["trend"]);
    let regressions: Vec<&str> = kpis["regressions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kpi"].as_str().unwrap())
        .collect();
    assert!(regressions.contains(&"error_rate"), "{regressions:?}");
    let first = home.json(&["kpi", "trended", &oldest]);
    assert!(
        first["regressions"].as_array().unwrap().is_empty(),
        "the first run has no history"
    );
    assert_eq!(first["loads"][0]["errors"]["rate"], 0.0);

    // The API of a standalone engine on the same data.
    let port = free_port();
    let mut server = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(60), "standalone to answer /health", || {
        http_get(port, "/health").filter(|(code, _)| *code == 200)
    });
    let token = common::admin_token(&home, port);
    let auth = format!("Bearer {token}");
    let get = |path: &str, with_token: bool| {
        let headers: Vec<(&str, &str)> = if with_token {
            vec![("Authorization", auth.as_str())]
        } else {
            vec![]
        };
        let (status, head, body) = common::http(port, "GET", path, &headers, None);
        (status, head, String::from_utf8_lossy(&body).to_string())
    };
    let (status, _, body) = get("/api/v2/dagctl/dags/trended/kpi-trend", true);
    assert_eq!(status, 200, "{body}");
    let trend: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(trend["runs"].as_array().unwrap().len(), 5, "{trend}");
    assert_eq!(trend["runs"][4]["run_id"].as_str().unwrap(), newest, "oldest first");
    assert!(trend["regressions"].to_string().contains("error_rate"), "{trend}");
    let (status, _, body) = get(&format!("/api/v2/dagctl/runs/trended/{oldest}/kpis"), true);
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["loads"][0]["errors"]["calls"], 50, "{json}");
    let (status, head, body) = get(&format!("/api/v2/dagctl/runs/trended/{newest}/report.html"), true);
    assert_eq!(status, 200);
    assert!(
        head.iter().any(|(k, v)| k == "content-type" && v.contains("text/html")),
        "{head:?}"
    );
    assert!(body.contains("Regression: error_rate"));
    let (status, _, body) = get("/api/v2/dagctl/runs/trended/nope/kpis", true);
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("detail"), "{body}");
    assert_eq!(get("/api/v2/dagctl/dags/nope/kpi-trend", true).0, 404);
    assert_eq!(get("/api/v2/dagctl/dags/trended/kpi-trend", false).0, 401);

    // The pages in Chromium.
    let password = std::fs::read_to_string(home.path().join("standalone_admin_password.txt")).unwrap();
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let scenario = Command::new("timeout")
        .args(["120", "node"])
        .arg(repo().join("tests/web-harness/kpi-pages.mjs"))
        .args([
            "--base",
            &format!("http://127.0.0.1:{port}"),
            "--admin-password",
            password.trim(),
        ])
        .args(["--dag", "trended", "--run", &newest, "--shots"])
        .arg(&shots)
        .env("DAGCTL_NODE_TOOLS", &node_tools)
        .env("DAGCTL_CHROMIUM", &chromium)
        .stdin(Stdio::null())
        .output()
        .expect("run node kpi-pages.mjs");
    let server_log = server.output();
    server.stop();
    let down = home.run(&["net", "down", "kpinet"]);
    let stdout = String::from_utf8_lossy(&scenario.stdout);
    assert!(
        scenario.status.success() && stdout.contains("kpi pages passed"),
        "KPI pages scenario failed ({}):\n{stdout}\n{}\n--- dagctl log ---\n{server_log}",
        scenario.status,
        String::from_utf8_lossy(&scenario.stderr)
    );
    assert!(down.status.success());
    for shot in ["kpi-run.png", "kpi-trend.png"] {
        let bytes = std::fs::read(shots.join(shot)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{shot}");
    }
}
