//! The runner host: one long-lived process per local executor that starts each try's runner by forking
//! itself, so a try pays neither `execve`, the dynamic loader nor the runner's own start-up (Airflow's
//! LocalExecutor forks its task processes for the same reason).
//!
//! The executor starts it once as `<runner binary> tasks host <room>` with the allow-listed environment, its
//! stdin a Unix socket. Over that socket, one JSON object per line, the executor sends [`Launch`]es and the host
//! answers with [`HostEvent`]s. The host is single-threaded and never starts an async runtime: each forked child
//! becomes one try's runner (its own process group, its own runtime, stdin `/dev/null`, stderr a memory file
//! the host reads back when it ends) and runs exactly as `tasks run` would.
//!
//! A forked runner rewrites its command line in place (the `room` argument reserves the space), so
//! `/proc/<pid>/cmdline` and `ps` show `... tasks run DAG RUN TASK --try N --map-index M`, as for an exec'd
//! runner: a scheduler that restarts adopts both kinds by the same check.
//!
//! When the executor goes away (the engine stops or is killed) the host takes no more launches, keeps
//! reaping its runners, which go on and report to the engine that adopts them, and exits after the last.

pub mod serve;

use serde::{Deserialize, Serialize};

/// The verb that starts a runner host.
pub const HOST_VERB: [&str; 2] = ["tasks", "host"];
/// Bytes reserved on the host's command line for its runners' titles.
pub const TITLE_ROOM: usize = 2048;
/// The most of a runner's stderr kept for the executor (its tail).
pub const STDERR_TAIL: usize = 2048;

/// One try to start: the runner's arguments (`tasks run DAG RUN TASK --try N --map-index M`, as an exec'd
/// runner gets them) and what an exec'd runner would read from its environment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Launch {
    /// Identifies the launch in the host's answers.
    pub id: u64,
    pub argv: Vec<String>,
    pub api_url: String,
    pub token: String,
}

/// What the host tells the executor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum HostEvent {
    /// The host is up; a runner's title (its arguments, each with a NUL) must fit in `room` bytes.
    Ready { pid: u32, room: usize },
    /// A launch's runner was forked.
    Started { id: u64, pid: u32 },
    /// A launch could not be started.
    NotStarted { id: u64, error: String },
    /// A launch's runner ended: its exit code or the signal that killed it, and the tail of its stderr.
    Exited {
        id: u64,
        pid: u32,
        code: Option<i32>,
        signal: Option<i32>,
        stderr: String,
    },
}

/// The bytes of a title: each argument followed by a NUL.
pub fn title_bytes(argv: &[String]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for arg in argv {
        bytes.extend_from_slice(arg.as_bytes());
        bytes.push(0);
    }
    bytes
}

/// The tail of a runner's stderr, on one line (the same shape as for an exec'd runner).
pub fn tail_line(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL);
    String::from_utf8_lossy(&bytes[start..])
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_as_one_json_line() {
        let event = HostEvent::Exited {
            id: 7,
            pid: 42,
            code: None,
            signal: Some(9),
            stderr: "a | b".into(),
        };
        let line = serde_json::to_string(&event).unwrap();
        assert!(!line.contains('\n'));
        assert!(line.contains(r#""event":"exited""#), "{line}");
        assert_eq!(serde_json::from_str::<HostEvent>(&line).unwrap(), event);
    }

    #[test]
    fn titles_and_tails() {
        assert_eq!(title_bytes(&["tasks".into(), "run".into()]), b"tasks\0run\0");
        assert_eq!(tail_line(b"one\n\n two \nthree"), "one | two | three");
        let long = "x".repeat(5000);
        assert_eq!(tail_line(long.as_bytes()).len(), STDERR_TAIL);
    }
}
