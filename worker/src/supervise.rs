//! The task supervisor: a small process (`dagctl __supervise`) between the scheduler and a task's command.
//!
//! It is the leader of the task's process group, copies the command's stdout/stderr into the try's log,
//! remembers the last stdout line (Airflow's BashOperator pushes it as XCom), and writes the exit status to a
//! result file before it exits. Because it neither needs nor holds a pipe to the scheduler, a task keeps
//! running when its scheduler is killed, and a restarted scheduler can adopt it and read its result.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::log::LogWriter;

/// The hidden subcommand that runs the supervisor.
pub const SUBCOMMAND: &str = "__supervise";

/// What the supervisor leaves behind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SupervisorResult {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub last_stdout_line: Option<String>,
    /// Set when the command could not be started at all.
    pub spawn_error: Option<String>,
}

/// Where a try keeps its files.
#[derive(Debug, Clone)]
pub struct TryFiles {
    pub log: PathBuf,
    pub result: PathBuf,
    pub pid: PathBuf,
    pub xcom: PathBuf,
}

impl TryFiles {
    pub fn for_log(log: &Path) -> TryFiles {
        let with = |suffix: &str| {
            let mut name = log.as_os_str().to_owned();
            name.push(suffix);
            PathBuf::from(name)
        };
        TryFiles {
            log: log.to_path_buf(),
            result: with(".result.json"),
            pid: with(".pid"),
            xcom: with(".xcom.json"),
        }
    }
}

/// Reads a supervisor result file, if the supervisor finished.
pub fn read_result(path: &Path) -> Option<SupervisorResult> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Entry point of `dagctl __supervise --log L --result R --pidfile P -- PROGRAM ARGS...`. Returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let mut log = None;
    let mut result = None;
    let mut pidfile = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match arg.as_str() {
            "--log" => log = rest.next().map(PathBuf::from),
            "--result" => result = rest.next().map(PathBuf::from),
            "--pidfile" => pidfile = rest.next().map(PathBuf::from),
            "--" => break,
            other => {
                eprintln!("dagctl {SUBCOMMAND}: unexpected argument `{other}`");
                return 2;
            }
        }
    }
    let command: Vec<String> = rest.cloned().collect();
    let (Some(log), Some(result), Some(pidfile), Some(program)) = (log, result, pidfile, command.first()) else {
        eprintln!("dagctl {SUBCOMMAND}: usage: --log L --result R --pidfile P -- PROGRAM ARGS...");
        return 2;
    };
    let _ = std::fs::write(&pidfile, std::process::id().to_string());
    let writer = match LogWriter::open(&log) {
        Ok(writer) => writer,
        Err(err) => {
            eprintln!("dagctl {SUBCOMMAND}: cannot open log {}: {err}", log.display());
            return 2;
        }
    };
    let outcome = run(&writer, program, &command[1..]);
    let code = match (&outcome.exit_code, &outcome.signal) {
        (Some(code), _) => *code,
        (None, Some(signal)) => 128 + signal,
        _ => 1,
    };
    write_result(&result, &outcome);
    code
}

fn run(writer: &LogWriter, program: &str, args: &[String]) -> SupervisorResult {
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(err) => {
            let message = format!("cannot start `{program}`: {err}");
            writer.error(&message);
            return SupervisorResult {
                exit_code: Some(127),
                spawn_error: Some(message),
                ..Default::default()
            };
        }
    };
    let last_line: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let mut threads = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        threads.push(copy_lines(
            stdout,
            writer.clone(),
            "task.stdout",
            "info",
            Some(last_line.clone()),
        ));
    }
    if let Some(stderr) = child.stderr.take() {
        threads.push(copy_lines(stderr, writer.clone(), "task.stderr", "error", None));
    }
    let status = child.wait();
    for thread in threads {
        let _ = thread.join();
    }
    let last = last_line.lock().ok().and_then(|guard| guard.clone());
    match status {
        Ok(status) => SupervisorResult {
            exit_code: status.code(),
            signal: status.signal(),
            last_stdout_line: last,
            spawn_error: None,
        },
        Err(err) => SupervisorResult {
            exit_code: Some(1),
            spawn_error: Some(format!("wait failed: {err}")),
            last_stdout_line: last,
            signal: None,
        },
    }
}

fn copy_lines(
    stream: impl Read + Send + 'static,
    writer: LogWriter,
    logger: &'static str,
    level: &'static str,
    last: Option<Arc<Mutex<Option<String>>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buffer = Vec::new();
        loop {
            buffer.clear();
            match reader.read_until(b'\n', &mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    let text = String::from_utf8_lossy(&buffer);
                    let line = text.trim_end_matches(['\n', '\r']);
                    writer.line(level, logger, line);
                    if let Some(last) = &last {
                        if !line.is_empty() {
                            if let Ok(mut guard) = last.lock() {
                                *guard = Some(line.to_string());
                            }
                        }
                    }
                }
            }
        }
    })
}

fn write_result(path: &Path, result: &SupervisorResult) {
    let tmp = path.with_extension("tmp");
    if let Ok(json) = serde_json::to_vec(result) {
        if std::fs::write(&tmp, json).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}
