//! Hostile or careless input against the real binary: a DAGs folder full of broken and oversized files, and
//! file modes under a careless umask.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// Every file and folder under `dir` that others than its owner may read, write or enter (symbolic links and
/// sockets aside), skipping `skip`.
fn open_to_others(dir: &Path, skip: &Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path == skip {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let kind = meta.file_type();
        if kind.is_symlink() || std::os::unix::fs::FileTypeExt::is_socket(&kind) {
            continue;
        }
        if meta.permissions().mode() & 0o077 != 0 {
            out.push(format!("{} {:o}", path.display(), meta.permissions().mode() & 0o777));
        }
        if kind.is_dir() {
            open_to_others(&path, skip, out);
        }
    }
}

#[test]
fn the_data_dir_and_everything_made_in_it_are_private_whatever_the_umask() {
    let home = Home::new();
    let written_by_task = home.path().join("written_by_task.txt");
    home.write_dag(
        "d.yml",
        &format!(
            "d:\n  tasks:\n    a: {{operator: bash, bash_command: 'echo hi > {}'}}\n",
            written_by_task.display()
        ),
    );
    let careless = |args: &[&str]| {
        let mut command = home.command();
        command.args(args).stdin(Stdio::null());
        // SAFETY: umask is async-signal-safe and touches nothing but this child's own mask.
        unsafe {
            command.pre_exec(|| {
                nix::sys::stat::umask(nix::sys::stat::Mode::empty());
                Ok(())
            });
        }
        let output = command.output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    };
    careless(&["dags", "test", "d"]);
    // As an older dagctl (or a hand-made data dir) left it: readable by everyone.
    std::fs::set_permissions(home.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(home.path().join("dagctl.db"), std::fs::Permissions::from_mode(0o644)).unwrap();
    careless(&["dags", "list"]);
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(home.path()), 0o700);
    assert_eq!(mode(&home.path().join("dagctl.db")), 0o600);
    assert_eq!(mode(&written_by_task), 0o600, "tasks inherit the private umask");
    let mut open = Vec::new();
    open_to_others(home.path(), &home.dags().join("d.yml"), &mut open);
    assert!(open.is_empty(), "open to others: {open:#?}");
    assert!(home.path().join("logs").is_dir(), "a log was written");
}

#[test]
fn a_folder_of_broken_and_oversized_files_keeps_the_engine_healthy() {
    let home = Home::new();
    // 50 broken files of several kinds, an alias bomb, a file over the size limit, deep nesting.
    for i in 0..50 {
        let text = match i % 5 {
            0 => format!("bad{i}:\n  tasks: [unclosed\n"),
            1 => format!("bad{i}:\n  tasks:\n    a: {{operator: nope}}\n"),
            2 => format!("bad{i}:\n  params: {}{}\n  tasks: {{a: {{operator: empty}}}}\n", "[".repeat(500), "]".repeat(500)),
            3 => format!("bad{i}:\n  schedule: 0 0 31 2 *\n  start_date: 2025-01-01\n  tasks: {{a: {{operator: empty}}}}\n"),
            _ => format!("bad{i}:\n  task_groups: {{g: {{parent_group_name: g}}}}\n  tasks: {{a: {{operator: empty, task_group_name: g}}}}\n"),
        };
        home.write_dag(&format!("bad{i:02}.yml"), &text);
    }
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    for level in 1..10 {
        let previous = (b'a' + level - 1) as char;
        let this = (b'a' + level) as char;
        bomb.push_str(&format!("{this}: &{this} [*{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}, *{previous}]\n"));
    }
    bomb.push_str("bomb:\n  tags: *j\n  tasks: {a: {operator: empty}}\n");
    home.write_dag("bomb.yml", &bomb);
    home.write_dag(
        "huge.yml",
        &format!(
            "huge:\n  description: {}\n  tasks: {{a: {{operator: empty}}}}\n",
            "x".repeat(5 << 20)
        ),
    );
    home.write_dag(
        "good.yml",
        "good:\n  tasks:\n    a: {operator: bash, bash_command: 'true'}\n",
    );

    let started = Instant::now();
    let output = home.run(&["dags", "validate"]);
    let validate_took = started.elapsed();
    assert_eq!(output.status.code(), Some(1));
    let err = stderr(&output);
    assert!(err.contains("dag_file_max_bytes"), "{err}");
    assert!(err.contains("alias"), "{err}");
    assert!(stdout(&output).contains("53 file(s), 1 DAG(s)"), "{}", stdout(&output));

    let port = free_port();
    let engine = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(60), "the engine to answer /health", || {
        http_get(port, "/health").filter(|(code, _)| *code == 200)
    });
    // The good DAG runs while the broken files sit in the folder, and the CLI stays quick.
    let started = Instant::now();
    let dags = home.json(&["dags", "list"]);
    let list_took = started.elapsed();
    assert_eq!(dags.as_array().unwrap().len(), 1, "{dags}");
    home.ok(&["dags", "trigger", "good", "--wait"]);
    let runs = home.json(&["dags", "list-runs", "good"]);
    assert_eq!(runs[0]["state"], "success", "{runs}");
    let errors = home.json(&["dags", "list-import-errors"]);
    let files: std::collections::BTreeSet<&str> = errors
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["filepath"].as_str())
        .collect();
    assert_eq!(files.len(), 52, "every broken file is an import error: {errors}");
    for _ in 0..10 {
        let (code, body) = http_get(port, "/api/v2/monitor/health").unwrap();
        assert_eq!(code, 200);
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            health["scheduler"]["status"],
            "healthy",
            "{health}\n{}",
            engine.output()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    eprintln!("validate of 53 files: {validate_took:?}; dags list beside them: {list_took:?}");
}

#[test]
fn a_connection_flood_gets_503s_and_never_stops_the_scheduler() {
    use std::io::Read;
    let home = Home::new();
    std::fs::write(home.path().join("dagctl.toml"), "max_connections = 20\n").unwrap();
    home.write_dag(
        "good.yml",
        "good:\n  tasks:\n    a: {operator: bash, bash_command: 'echo ran'}\n",
    );
    let port = free_port();
    let engine = home.spawn(&["standalone", "--port", &port.to_string()]);
    wait_for(Duration::from_secs(60), "the engine to answer /health", || {
        http_get(port, "/health").filter(|(code, _)| *code == 200)
    });
    // 60 connections that never send a byte: 20 fill the cap, the other 40 are answered 503 at once. (The
    // server may still count a probe's connection for a moment after the probe closed it: then one more is
    // refused, and the flood is tried again, at most three times.)
    let flood = || {
        let mut held: Vec<std::net::TcpStream> = (0..60)
            .map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).unwrap())
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let mut busy = 0;
        for stream in &mut held {
            stream.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
            let mut head = [0u8; 12];
            if stream.read_exact(&mut head).is_ok() && &head == b"HTTP/1.1 503" {
                busy += 1;
            }
        }
        (held, busy)
    };
    let (mut held, mut busy) = flood();
    for _ in 0..2 {
        if busy == 40 {
            break;
        }
        drop(held);
        std::thread::sleep(Duration::from_secs(1));
        (held, busy) = flood();
    }
    assert_eq!(
        busy,
        40,
        "connections over the cap are told so at once\n{}",
        engine.output()
    );
    // A run triggered meanwhile succeeds: its runner's calls retry until the silent connections are closed
    // (header read timeout), and the scheduler never ran short of descriptors.
    let started = Instant::now();
    home.ok(&["dags", "trigger", "good", "--wait"]);
    let runs = home.json(&["dags", "list-runs", "good"]);
    assert_eq!(runs[0]["state"], "success", "{runs}\n{}", engine.output());
    // The silent connections were closed by the server.
    for stream in &mut held {
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    }
    drop(held);
    let (code, body) = http_get(port, "/api/v2/monitor/health").unwrap();
    assert_eq!(code, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["scheduler"]["status"], "healthy", "{health}");
    eprintln!("run under a flood took {:?}", started.elapsed());
}

#[test]
fn secrets_in_run_conf_never_reach_the_task_log() {
    let home = Home::new();
    home.write_dag(
        "s.yml",
        "s:\n  tasks:\n    t:\n      operator: bash\n      env: {TOKEN: '{{ dag_run.conf.api_token }}'}\n      append_env: true\n      bash_command: 'echo \"calling with $TOKEN for {{ dag_run.conf.who }}\"'\n",
    );
    let secret = "tok-5ecret-value";
    let conf = serde_json::json!({"api_token": secret, "who": "alice"}).to_string();
    let out = home.ok(&["dags", "test", "s", "--conf", &conf]);
    assert!(out.contains("calling with *** for alice"), "{out}");
    assert!(!out.contains(secret), "{out}");
    let runs = home.json(&["dags", "list-runs", "s"]);
    let log = home.ok(&["tasks", "logs", "s", runs[0]["run_id"].as_str().unwrap(), "t"]);
    assert!(log.contains("calling with ***") && !log.contains(secret), "{log}");
}
