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
