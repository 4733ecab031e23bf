//! Faults on node processes (`dagctl chaos`, `chain.chaos`) on a real two-node anvil network: a paused node answers nothing
//! while its neighbour does, and answers again after; Ctrl-C during a pause resumes the node at once; kill with a
//! restart and restart bring nodes back as new processes on the same data and ports. anvil comes from
//! `DAGCTL_ANVIL` or `DAGCTL_CLIENTS_BIN`; without it the tests fail.

mod common;

use std::time::{Duration, Instant};

use common::{stderr, stdout, wait_for, Home};
use serde_json::Value;

/// Whether `url` answers `eth_blockNumber` within half a second.
fn answers(url: &str) -> bool {
    let (host, port) = url.trim_start_matches("http://").rsplit_once(':').unwrap();
    let port: u16 = port.trim_end_matches('/').parse().unwrap();
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let Ok(mut stream) = std::net::TcpStream::connect((host, port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if std::io::Write::write_all(&mut stream, request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut stream, &mut answer);
    answer.contains("\"result\"")
}

/// A process's state letter (`T` when stopped).
fn state(pid: u64) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.trim().chars().next())
        .unwrap_or('?')
}

fn nodes(home: &Home) -> Vec<(String, String, u64)> {
    let shown = home.json(&["net", "show", "faulted"]);
    shown["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["node"].as_str().unwrap().to_string(),
                n["rpc"].as_str().unwrap().to_string(),
                n["pid"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn process_faults_hit_their_targets_and_are_undone() {
    let home = Home::new();
    common::anvil_network(&home, "faulted", 2);
    let before = nodes(&home);
    let (url1, url2, pid1) = (before[0].1.clone(), before[1].1.clone(), before[0].2);

    // A 2 s pause of node-1: it answers nothing while node-2 does, then answers again, same process.
    let pause = home.spawn(&[
        "chaos",
        "--network",
        "faulted",
        "pause",
        "--duration",
        "2s",
        "--target",
        "node-1",
    ]);
    wait_for(Duration::from_secs(10), "node-1 to be stopped", || {
        (state(pid1) == 'T').then_some(())
    });
    assert!(!answers(&url1), "a paused node answers nothing");
    assert!(answers(&url2), "its neighbour answers");
    let started = Instant::now();
    wait_for(Duration::from_secs(10), "the pause to end", || {
        (!common::pid_alive(pause.pid())).then_some(())
    });
    let out = pause.output();
    assert!(
        out.contains("node-1: paused (SIGSTOP)") && out.contains("node-1: resumed (SIGCONT)"),
        "{out}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_ne!(state(pid1), 'T');
    assert!(answers(&url1), "answers again after the pause");

    // Ctrl-C during a long pause resumes the node at once.
    let long = home.spawn(&[
        "chaos",
        "--network",
        "faulted",
        "pause",
        "--duration",
        "5m",
        "--target",
        "re2:node-1",
    ]);
    wait_for(Duration::from_secs(10), "node-1 to be stopped", || {
        (state(pid1) == 'T').then_some(())
    });
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(long.pid()), nix::sys::signal::Signal::SIGINT).unwrap();
    wait_for(Duration::from_secs(10), "chaos to end on Ctrl-C", || {
        (!common::pid_alive(long.pid())).then_some(())
    });
    assert!(long.output().contains("cut short and undone"), "{}", long.output());
    assert_ne!(state(pid1), 'T', "no node is left stopped");
    assert!(answers(&url1));

    // Kill with a restart after 1 s: a new process, answering on the same port.
    let report = home.json(&[
        "chaos",
        "--network",
        "faulted",
        "kill",
        "--restart-after",
        "1s",
        "--target",
        "node-1",
    ]);
    assert_eq!(report["nodes"], serde_json::json!(["node-1"]));
    let actions: Vec<&str> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["sent SIGKILL", "started again"]);
    let after = nodes(&home);
    assert_ne!(after[0].2, pid1, "a new process");
    assert_eq!(after[0].1, url1, "on the same port");
    wait_for(Duration::from_secs(20), "the restarted node to answer", || {
        answers(&url1).then_some(())
    });
    // Restart by percentage: 50% of two nodes is one.
    let report: Value = home.json(&[
        "chaos",
        "--network",
        "faulted",
        "restart",
        "--target",
        "50%",
        "--seed",
        "3",
    ]);
    assert_eq!(report["nodes"].as_array().unwrap().len(), 1);
    home.ok(&["net", "down", "faulted"]);
}

#[test]
fn bad_faults_and_targets_are_one_clear_error() {
    let home = Home::new();
    common::anvil_network(&home, "faulted", 2);
    for (args, expected) in [
        (
            vec!["chaos", "pause", "--duration", "1s", "--target", "node-1"],
            "--network: which network?",
        ),
        (
            vec!["chaos", "--network", "faulted", "pause", "--duration", "1s"],
            "--target: which nodes?",
        ),
        (
            vec![
                "chaos",
                "--network",
                "faulted",
                "pause",
                "--duration",
                "0s",
                "--target",
                "node-1",
            ],
            "--duration: must be more than zero",
        ),
        (
            vec![
                "chaos",
                "--network",
                "faulted",
                "pause",
                "--duration",
                "1s",
                "--target",
                "node-9",
            ],
            "has no node `node-9`",
        ),
        (
            vec!["chaos", "--network", "faulted", "kill", "--target", "f"],
            "tolerates no faulty validator",
        ),
        (
            vec![
                "chaos",
                "--network",
                "faulted",
                "pause",
                "--duration",
                "2s",
                "--interval",
                "1s",
                "--repeat",
                "2",
                "--target",
                "node-1",
            ],
            "would overlap",
        ),
        (
            vec![
                "chaos",
                "--network",
                "faulted",
                "pause",
                "--duration",
                "2s",
                "--repeat",
                "2",
                "--target",
                "node-1",
            ],
            "--repeat: give --interval too",
        ),
        (
            vec!["chaos", "--network", "faulted", "kill", "--target", "101%"],
            "at most 100",
        ),
        (
            vec![
                "chaos",
                "--network",
                "faulted",
                "kill",
                "--signal",
                "HUP",
                "--target",
                "node-1",
            ],
            "--signal: `HUP`",
        ),
        (
            vec!["chaos", "--network", "nope", "restart", "--target", "node-1"],
            "network `nope` not found",
        ),
        (
            vec![
                "chaos",
                "--network",
                "faulted",
                "netem",
                "--duration",
                "1m",
                "loss",
                "--percent",
                "10",
                "--target",
                "node-1",
            ],
            "netem loss cannot be applied to nodes on loopback",
        ),
        (
            vec![
                "chaos",
                "--network",
                "faulted",
                "netem",
                "--duration",
                "1m",
                "loss",
                "--percent",
                "120",
                "--target",
                "node-1",
            ],
            "`loss.percent` is a percentage: 0 to 100, not 120",
        ),
        (
            vec![
                "chaos",
                "--network",
                "faulted",
                "partition",
                "--duration=-5s",
                "--target",
                "node-1",
            ],
            "--duration: invalid duration `-5s`: must not be negative",
        ),
        (
            vec![
                "chaos",
                "--network",
                "faulted",
                "partition",
                "--duration",
                "1m",
                "--target",
                "node-1",
                "--from",
                "node-1,node-2",
            ],
            "node `node-1` is in both groups of the partition (named twice)",
        ),
        (
            vec![
                "chaos",
                "--network",
                "faulted",
                "netem",
                "--duration",
                "1m",
                "delay",
                "--time",
                "100",
                "--target",
                "node-1",
            ],
            "network `faulted` runs anvil",
        ),
    ] {
        let output = home.run(&args);
        assert!(!output.status.success(), "{args:?}: {}", stdout(&output));
        let err = stderr(&output);
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
    }
    for (_, _, pid) in nodes(&home) {
        assert_ne!(state(pid), 'T', "nothing was applied");
    }
    home.ok(&["net", "down", "faulted"]);
}

/// `chain.chaos` in a DAG: a pause of node-1 and, 1 s later, a restart of node-2, at once; the XCom reports
/// both; a bash task checks both nodes answer afterwards. Bad faults are import errors naming the key.
#[test]
fn the_chaos_operator_runs_faults_side_by_side_in_a_dag() {
    let home = Home::new();
    let xcom = home.path().join("chaos.json");
    home.write_dag(
        "chaotic.yaml",
        &r#"chaotic:
  default_args: {owner: qa, start_date: 2026-11-01}
  tasks:
    deploy:
      operator: chain.deploy_network
      client: anvil
      consensus: interval
      nodes: 2
      block_time: 1s
    chaos:
      operator: chain.chaos
      dependencies: [deploy]
      network: deploy
      faults:
        - {pause: {duration: 2s}, target: node-1}
        - {restart: {}, target: "re2:node-2", offset: 1s}
    check:
      operator: bash
      dependencies: [chaos]
      bash_command: |
        echo '{{ ti.xcom_pull("chaos") | tojson }}' > XCOM
        for url in {{ ti.xcom_pull("deploy").nodes | map(attribute="rpc") | join(" ") }}; do
          curl -sf -m 2 -H 'Content-Type: application/json' -d '{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}' "$url" | grep -q result
        done
    teardown:
      operator: chain.teardown
      network: deploy
      trigger_rule: all_done
      dependencies: [check]
"#
        .replace("XCOM", xcom.to_str().unwrap()),
    );
    let output = home
        .command()
        .env("DAGCTL_ANVIL", common::client_binary("anvil", "DAGCTL_ANVIL"))
        .args(["dags", "test", "chaotic"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(output.status.success(), "{text}");
    assert!(text.contains("{chaos} INFO - node-1: paused (SIGSTOP)"), "{text}");
    assert!(text.contains("{chaos} INFO - node-2: restarted"), "{text}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&xcom).unwrap()).unwrap();
    let faults = report["faults"].as_array().unwrap();
    assert_eq!(faults.len(), 2, "{report}");
    assert_eq!(faults[0]["nodes"], serde_json::json!(["node-1"]));
    assert!(
        f64::from(faults[0]["seconds"].as_f64().unwrap() as f32) >= 2.0,
        "{report}"
    );
    assert_eq!(faults[1]["fault"], "restart");
    // The restart began during the pause: the faults ran side by side.
    let paused_at = faults[0]["steps"][0]["at"].as_str().unwrap().to_string();
    let resumed_at = faults[0]["steps"][1]["at"].as_str().unwrap().to_string();
    let restarted_at = faults[1]["steps"][0]["at"].as_str().unwrap().to_string();
    assert!(paused_at < restarted_at && restarted_at < resumed_at, "{report}");

    let dag = home.write_dag(
        "bad.yaml",
        "bad:\n  tasks:\n    c:\n      operator: chain.chaos\n      network: n\n      faults:\n        - {pause: {duration: 1s}, kill: {}, target: a}\n        - {pause: {duration: 1s}, target: \"101%\"}\n",
    );
    let output = home.run(&["dags", "validate", dag.to_str().unwrap()]);
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(!output.status.success());
    assert!(
        text.contains(
            "key `faults.0`: give exactly one of kill, pause, stop, restart, netem, partition, stress and clock"
        ),
        "{text}"
    );
    let dag = home.write_dag(
        "bad.yaml",
        "bad:\n  tasks:\n    c:\n      operator: chain.chaos\n      network: n\n      faults:\n        - {pause: {duration: 1s}, target: \"101%\"}\n",
    );
    let output = home.run(&["dags", "validate", dag.to_str().unwrap()]);
    let text = format!("{}{}", stdout(&output), stderr(&output));
    assert!(
        text.contains("key `faults.0.target`: `101%`: a percentage must be more than 0 and at most 100"),
        "{text}"
    );
}

/// The `stress-ng` processes of chaos faults: those tagged (`DAGCTL_CHAOS_TAG` in their environment) and
/// the workers in their process groups (which rename themselves and lose the tag).
fn tagged_stress() -> Vec<u32> {
    let stress: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with("stress-ng")))
        .collect();
    let leaders: Vec<u32> = stress
        .iter()
        .copied()
        .filter(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            env.split(|b| *b == 0).any(|v| v.starts_with(b"DAGCTL_CHAOS_TAG="))
        })
        .collect();
    stress
        .into_iter()
        .filter(|pid| leaders.contains(pid) || process_group(*pid).is_some_and(|g| leaders.contains(&g)))
        .collect()
}

/// The process group of `pid`.
fn process_group(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(2)?.parse().ok()
}

/// CPU ticks (user + system) process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|r| r.1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    fields.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

#[test]
fn stress_loads_the_host_with_stress_ng_and_is_undone_also_after_a_kill() {
    let home = Home::new();
    common::anvil_network(&home, "stressed", 2);
    // Ours alone: another test's stress-ng would be counted.
    assert!(tagged_stress().is_empty(), "a stress-ng of another fault runs");
    let stress = home.spawn(&[
        "chaos",
        "--network",
        "stressed",
        "stress",
        "--duration",
        "4s",
        "--cpu",
        "1",
        "--cpu-load",
        "50",
        "--memory",
        "16M",
        "--target",
        "node-1",
        "-o",
        "json",
    ]);
    let running = wait_for(Duration::from_secs(20), "stress-ng to run", || {
        let pids = tagged_stress();
        (!pids.is_empty()).then_some(pids)
    });
    let faults = home.ok(&["chaos", "faults"]);
    assert!(faults.contains("stressed stress node-1"), "{faults}");
    // It burns CPU: its workers use ticks (the tagged processes are stress-ng's parent and workers).
    let before: u64 = running.iter().map(|p| cpu_ticks(*p)).sum();
    std::thread::sleep(Duration::from_millis(1500));
    let after: u64 = tagged_stress().iter().map(|p| cpu_ticks(*p)).sum();
    assert!(
        after > before + 20,
        "stress-ng used {} ticks in 1.5 s: {running:?} then {:?}",
        after - before,
        tagged_stress()
    );
    wait_for(Duration::from_secs(20), "the stress to end", || {
        stress
            .child
            .as_ref()
            .map(|_| ())
            .filter(|_| !common::pid_alive(stress.pid()))
    });
    let output = stress.output();
    let json = &output[output.find('{').unwrap_or(0)..];
    let report: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {output}"));
    assert_eq!(report["nodes"], serde_json::json!(["node-1"]));
    assert!(
        report["fault"].as_str().unwrap().contains("1 CPU worker(s) at 50%"),
        "{report}"
    );
    assert!(
        tagged_stress().is_empty(),
        "stress-ng left behind: {:?}",
        tagged_stress()
    );
    assert_eq!(home.ok(&["chaos", "faults"]).trim(), "no fault in place");

    // SIGKILL of the command mid-stress: stress-ng outlives it until `chaos recover` kills it by its tag.
    let mut long = home.spawn(&[
        "chaos",
        "--network",
        "stressed",
        "stress",
        "--duration",
        "5m",
        "--cpu",
        "1",
        "--cpu-load",
        "10",
        "--target",
        "node-2",
    ]);
    wait_for(Duration::from_secs(20), "stress-ng to run", || {
        (!tagged_stress().is_empty()).then_some(())
    });
    long.kill9();
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        !tagged_stress().is_empty(),
        "stress-ng ended with its owner: nothing to recover"
    );
    let out = home.run(&["chaos", "recover"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("undid 1 fault part(s)"), "{}", stdout(&out));
    wait_for(Duration::from_secs(5), "stress-ng to be gone", || {
        tagged_stress().is_empty().then_some(())
    });
    // Bad settings are one line, naming the flag, and nothing runs.
    let bad = home.run(&[
        "chaos",
        "--network",
        "stressed",
        "stress",
        "--duration",
        "5s",
        "--cpu-load",
        "120",
        "--cpu",
        "1",
        "--target",
        "node-1",
    ]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("stress: `cpu_load` is a percentage"),
        "{}",
        stderr(&bad)
    );
    assert!(tagged_stress().is_empty());
    home.ok(&["net", "down", "stressed"]);
}

#[test]
fn a_fault_repeats_every_interval_as_pumba_does() {
    let home = Home::new();
    common::anvil_network(&home, "faulted", 2);
    let out = home.run(&[
        "chaos",
        "--network",
        "faulted",
        "pause",
        "--duration",
        "1s",
        "--interval",
        "3s",
        "--repeat",
        "2",
        "--target",
        "random:1",
        "--seed",
        "3",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let reports: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 2, "{reports:?}");
    let at = |r: &Value, i: usize| {
        r["steps"][i]["at"]
            .as_str()
            .unwrap()
            .parse::<chrono::DateTime<chrono::Utc>>()
            .unwrap()
    };
    // Each paused then resumed; the second starts one interval after the first.
    for r in reports {
        assert_eq!(r["steps"].as_array().unwrap().len(), 2, "{r}");
    }
    let apart = (at(&reports[1], 0) - at(&reports[0], 0)).num_milliseconds();
    assert!((2900..3600).contains(&apart), "{apart} ms apart");
    assert_eq!(home.ok(&["chaos", "faults"]).trim(), "no fault in place");
    for (_, url, _) in nodes(&home) {
        assert!(answers(&url), "{url} answers after the repeats");
    }
    home.ok(&["net", "down", "faulted"]);
}
