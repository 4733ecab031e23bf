//! Node logs shipped to CloudWatch Logs, against a real local endpoint: moto in server mode (PyPI, installed
//! by `scripts/install-pytools.sh`, run by the interpreter `DAGCTL_PYTHON` names), which speaks the CloudWatch
//! Logs API. What was shipped is read back with the AWS SDK and compared. Without `DAGCTL_PYTHON`, or without
//! moto in it, the tests fail.

mod common;

use std::time::{Duration, Instant};

use chain::monitor::cloudwatch::{self, sdk, CloudWatchSettings, CloudWatchSink};
use chrono::Utc;
use common::{free_port, stderr, stdout, wait_for, Home};

/// A moto server on a free loopback port, stopped (by PID) when dropped.
struct Moto {
    child: std::process::Child,
    port: u16,
}

impl Moto {
    fn start() -> Moto {
        let python = std::env::var_os("DAGCTL_PYTHON").filter(|p| !p.is_empty()).expect(
            "DAGCTL_PYTHON must name the venv python of scripts/install-pytools.sh (with moto); ./scripts/test.sh sets it",
        );
        let port = free_port();
        let child = std::process::Command::new(python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto server starts");
        let mut moto = Moto { child, port };
        wait_for(Duration::from_secs(30), "moto to listen", || {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto server exited ({status}): is moto[server] installed in DAGCTL_PYTHON's venv?");
            }
            std::net::TcpStream::connect(("127.0.0.1", moto.port)).ok()
        });
        moto
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// moto takes any credentials; these never leave loopback. The instance metadata service is never asked.
const ACCESS_KEY: &str = "AKIDDAGCTLTEST";
const SECRET_KEY: &str = "dagctl-test-secret-never-logged";

fn credentials_in_env() {
    std::env::set_var("AWS_ACCESS_KEY_ID", ACCESS_KEY);
    std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET_KEY);
    std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
}

fn settings(endpoint: String) -> CloudWatchSettings {
    CloudWatchSettings {
        log_group: Some("/dagctl/test".into()),
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint),
        min_level: None,
    }
}

/// Every message of one stream, oldest first, through the SDK (paged).
async fn read_back(client: &sdk::Client, group: &str, stream: &str) -> Vec<String> {
    let mut messages = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..100 {
        let page = client
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await
            .unwrap();
        let events = page.events();
        messages.extend(events.iter().map(|e| e.message().unwrap_or_default().to_string()));
        let next = page.next_forward_token().map(str::to_string);
        if events.is_empty() || next == token {
            return messages;
        }
        token = next;
    }
    panic!("more than 100 pages in {group}/{stream}");
}

/// Lines of two nodes reach their streams complete and in order: more than one call's worth (10,000 events),
/// non-ASCII text, and a line over the 256 KiB event limit (cut to fit, not refused). The lines fit the sink's
/// queue (20,000) even if its sender gets no CPU while they are queued: a full queue drops by design.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sink_ships_every_line_to_its_node_stream_in_order() {
    credentials_in_env();
    let moto = Moto::start();
    let settings = settings(moto.url());
    let client = cloudwatch::client(&settings).await.unwrap();
    let sink = CloudWatchSink::start(client.clone(), settings.log_group("ignored"));
    let node1: Vec<String> = (0..15_000)
        .map(|i| format!("INFO [12-03|10:00:00.000] Imported new chain segment number={i}"))
        .collect();
    let long = "x".repeat(300_000);
    let node2 = [
        "WARN [12-03|10:00:00.000] Über-long block time, 区块 took=12s".to_string(),
        long.clone(),
        "a line in no known format".to_string(),
    ];
    let started = Instant::now();
    for (i, line) in node1.iter().enumerate() {
        sink.send("node-1", Utc::now(), line);
        if let Some(line) = node2.get(i) {
            sink.send("node-2", Utc::now(), line);
        }
    }
    let queued_in = started.elapsed();
    let outcome = sink.finish(Duration::from_secs(120)).await;
    assert_eq!((outcome.sent, outcome.dropped), (15_003, 0), "{outcome:?}");
    assert!(
        queued_in < Duration::from_secs(2),
        "queueing 15,003 lines took {queued_in:?}"
    );

    assert_eq!(read_back(&client, "/dagctl/test", "node-1").await, node1);
    let shipped2 = read_back(&client, "/dagctl/test", "node-2").await;
    assert_eq!(shipped2.len(), 3);
    assert_eq!((&shipped2[0], &shipped2[2]), (&node2[0], &node2[2]));
    assert!(
        long.starts_with(&shipped2[1]) && shipped2[1].len() == 262_144 - 26,
        "{}",
        shipped2[1].len()
    );
    let streams = client
        .describe_log_streams()
        .log_group_name("/dagctl/test")
        .send()
        .await
        .unwrap();
    let mut names: Vec<&str> = streams
        .log_streams()
        .iter()
        .filter_map(|s| s.log_stream_name())
        .collect();
    names.sort();
    assert_eq!(names, ["node-1", "node-2"]);
}

/// An endpoint that does not answer costs the monitor nothing: sending never waits, and every line is
/// counted as dropped with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_endpoint_drops_lines_counted_without_blocking() {
    credentials_in_env();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let client = cloudwatch::client(&settings(url)).await.unwrap();
    let sink = CloudWatchSink::start(client, "/dagctl/test".into());
    let started = Instant::now();
    for i in 0..100 {
        sink.send("node-1", Utc::now(), &format!("line {i}"));
    }
    assert!(started.elapsed() < Duration::from_millis(200), "sending never waits");
    let outcome = sink.finish(Duration::from_secs(60)).await;
    assert_eq!((outcome.sent, outcome.dropped), (0, 100), "{outcome:?}");
    let reason = outcome.last_error.unwrap();
    assert!(reason.contains("cannot make log group `/dagctl/test`"), "{reason}");
    assert!(!reason.contains(SECRET_KEY));
}

/// Without a region anywhere, the sink is refused before anything is sent.
#[tokio::test]
async fn no_region_is_a_clear_error() {
    credentials_in_env();
    let empty = tempfile::tempdir().unwrap();
    std::env::remove_var("AWS_REGION");
    std::env::remove_var("AWS_DEFAULT_REGION");
    std::env::remove_var("AWS_PROFILE");
    std::env::set_var("AWS_CONFIG_FILE", empty.path().join("config"));
    std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", empty.path().join("credentials"));
    let mut settings = settings("http://127.0.0.1:9".into());
    settings.region = None;
    let err = cloudwatch::client(&settings).await.unwrap_err();
    assert!(err.contains("no AWS region"), "{err}");
}

/// `chain.monitor` with `cloudwatch:` in a DAG: the WARN and ERROR lines appended to a node's log reach the
/// network's log group, in the node's stream, as written; the credentials, passed to runners by
/// `DAGCTL_RUNNER_PASS_ENV`, appear in no log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monitor_ships_node_logs_to_the_network_log_group() {
    credentials_in_env();
    let moto = Moto::start();
    let home = Home::new();
    home.write_dag(
        "shipped.yaml",
        &r#"shipped:
  schedule: null
  default_args: {owner: qa, start_date: 2026-11-01}
  tasks:
    deploy:
      operator: chain.deploy_network
      client: anvil
      consensus: interval
      nodes: 2
      block_time: 1s
    monitor:
      operator: chain.monitor
      dependencies: [deploy]
      network: deploy
      interval: 300ms
      cloudwatch: {region: us-east-1, endpoint_url: "MOTO", min_level: warn}
      execution_timeout: 60
    pause:
      operator: bash
      dependencies: [deploy]
      bash_command: |
        sleep 1
        log='LOGDIR/{{ ti.xcom_pull("deploy").name }}/node-1.log'
        for i in 1 2 3; do echo "WARN [12-02|00:00:0$i.000] Served eth_call                 reqid=$i" >> "$log"; done
        echo "INFO [12-02|00:00:04.000] Not shipped below warn" >> "$log"
        echo "EROR [12-02|00:00:05.000] Database compaction failed   err=\"disk full\"" >> "$log"
        sleep 3
    teardown:
      operator: chain.teardown
      network: deploy
      trigger_rule: all_done
      dependencies: [pause]
"#
        .replace("MOTO", &moto.url())
        .replace("LOGDIR", home.path().join("networks").to_str().unwrap()),
    );
    let output = home
        .command()
        .env("DAGCTL_ANVIL", common::client_binary("anvil", "DAGCTL_ANVIL"))
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(
            "DAGCTL_RUNNER_PASS_ENV",
            "AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY,AWS_EC2_METADATA_DISABLED",
        )
        .args(["dags", "test", "shipped"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(output.status.success(), "{text}");
    let name = home.json(&["net", "ls", "--all"])[0]["name"]
        .as_str()
        .unwrap()
        .to_string();
    let group = format!("/dagctl/networks/{name}");
    assert!(
        text.contains(&format!("shipping node logs to CloudWatch Logs group `{group}`")),
        "{text}"
    );

    let client = cloudwatch::client(&settings(moto.url())).await.unwrap();
    let shipped = read_back(&client, &group, "node-1").await;
    let expected: Vec<String> = (1..=3)
        .map(|i| format!("WARN [12-02|00:00:0{i}.000] Served eth_call                 reqid={i}"))
        .chain(["EROR [12-02|00:00:05.000] Database compaction failed   err=\"disk full\"".to_string()])
        .collect();
    assert_eq!(shipped, expected);
    // node-2 wrote nothing at warn or above: no stream was needed.
    let streams = client
        .describe_log_streams()
        .log_group_name(&group)
        .send()
        .await
        .unwrap();
    let names: Vec<&str> = streams
        .log_streams()
        .iter()
        .filter_map(|s| s.log_stream_name())
        .collect();
    assert_eq!(names, ["node-1"]);
    // The monitor's log counts what went out.
    assert!(
        text.contains("4 log lines shipped to CloudWatch Logs, 0 dropped"),
        "{text}"
    );
    // The run's KPIs with its node logs read back from CloudWatch: the alerts and the lines by level are
    // those shipped (the monitor's own stored alerts are not used).
    let run_id = home.json(&["dags", "list-runs", "shipped"])[0]["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let kpis = home
        .command()
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["kpi", &run_id, "-o", "json", "--cloudwatch-region", "us-east-1"])
        .args(["--cloudwatch-endpoint-url", &moto.url()])
        .output()
        .unwrap();
    assert!(kpis.status.success(), "{}", stderr(&kpis));
    let kpis: serde_json::Value = serde_json::from_slice(&kpis.stdout).unwrap();
    assert_eq!(kpis["logs_from"], format!("cloudwatch {group}"));
    assert_eq!(
        kpis["log_lines"],
        serde_json::json!([{"node": "node-1", "level": "error", "count": 1}, {"node": "node-1", "level": "warn", "count": 3}])
    );
    let alerts: Vec<(String, String, i64)> = kpis["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["level"].as_str().unwrap().to_string(),
                a["pattern"].as_str().unwrap().to_string(),
                a["count"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!((alerts[0].0.as_str(), alerts[0].2), ("warn", 3), "{alerts:?}");
    assert!(alerts[0].1.starts_with("Served eth_call"), "{alerts:?}");
    assert_eq!((alerts[1].0.as_str(), alerts[1].2), ("error", 1), "{alerts:?}");
    // A log group that is not there: one readable line, not a panic.
    let missing = home
        .command()
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args([
            "kpi",
            &run_id,
            "--cloudwatch-region",
            "us-east-1",
            "--cloudwatch-log-group",
            "/nope",
        ])
        .args(["--cloudwatch-endpoint-url", &moto.url()])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    let err = stderr(&missing);
    assert!(err.contains("cannot read log group `/nope`"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // The secret is in no log and no file the engine wrote.
    let found = std::process::Command::new("grep")
        .args(["-r", "-l", SECRET_KEY])
        .arg(home.path())
        .output()
        .unwrap();
    assert!(
        stdout(&found).trim().is_empty(),
        "the secret key was written to {}",
        stdout(&found)
    );
    assert!(!text.contains(SECRET_KEY));
}
