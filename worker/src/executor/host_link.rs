//! The local executor's side of the runner host ([`crate::host`]): starts it, sends launches, and routes
//! its answers to the launches waiting for them.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::oneshot;

use crate::host::{title_bytes, HostEvent, Launch, HOST_VERB, TITLE_ROOM};

/// How long a new host has to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(5);
/// How long a host has to take a launch and say it forked it; a host that does not is killed.
const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// How a forked runner ended.
#[derive(Debug, Clone)]
pub struct RunnerExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    /// The tail of its stderr, on one line.
    pub stderr: String,
}

/// Why a launch did not give a runner.
#[derive(Debug)]
pub enum LaunchError {
    /// Nothing was forked (the host refused it or was gone before it read the launch).
    NotForked(String),
    /// The host went away (or was killed for not answering) after the launch was sent: a runner may have been
    /// forked.
    Lost(String),
}

#[derive(Default)]
struct Pending {
    started: Option<oneshot::Sender<Result<u32, String>>>,
    exited: Option<oneshot::Sender<RunnerExit>>,
}

/// A running host. Dropping it closes the host's socket: the host then takes no more launches and leaves after
/// its last runner.
pub struct HostLink {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    shared: Arc<Shared>,
    next_id: AtomicU64,
    room: usize,
    pid: u32,
}

/// What the link and the task reading the host's answers share (the reader never holds the writer, so the
/// link can be dropped).
struct Shared {
    pending: Mutex<HashMap<u64, Pending>>,
    alive: AtomicBool,
}

impl Shared {
    /// The host is gone: launches waiting on it learn so (their senders are dropped).
    fn gone(&self) {
        self.alive.store(false, Ordering::SeqCst);
        if let Ok(mut pending) = self.pending.lock() {
            pending.clear();
        }
    }
}

impl HostLink {
    /// Starts `<exe> tasks host` with `env` (the runners' allow-listed environment) and waits until it is
    /// ready.
    pub async fn start(exe: &Path, env: &[(String, String)]) -> Result<Arc<HostLink>, String> {
        let (ours, theirs) =
            std::os::unix::net::UnixStream::pair().map_err(|e| format!("cannot make the host's socket: {e}"))?;
        let mut command = tokio::process::Command::new(exe);
        command
            .args(HOST_VERB)
            // The room its runners write their titles in (see crate::host).
            .arg("-".repeat(TITLE_ROOM))
            .env_clear()
            .envs(env.iter().cloned())
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .kill_on_drop(false);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot start the runner host {}: {e}", exe.display()))?;
        let stream = ours
            .set_nonblocking(true)
            .and_then(|_| tokio::net::UnixStream::from_std(ours))
            .map_err(|e| format!("cannot use the host's socket: {e}"))?;
        let (read, write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        let ready = match tokio::time::timeout(READY_WITHIN, lines.next_line()).await {
            Ok(Ok(Some(line))) => serde_json::from_str::<HostEvent>(&line).ok(),
            _ => None,
        };
        let Some(HostEvent::Ready { pid, room }) = ready else {
            let _ = child.start_kill();
            tokio::spawn(async move { child.wait().await });
            return Err(format!(
                "the runner host {} did not say it was ready within {READY_WITHIN:?}",
                exe.display()
            ));
        };
        // Reaped when it ends (it outlives this link only while its runners run).
        tokio::spawn(async move { child.wait().await });
        let shared = Arc::new(Shared {
            pending: Mutex::new(HashMap::new()),
            alive: AtomicBool::new(true),
        });
        tokio::spawn(route(Arc::clone(&shared), lines));
        Ok(Arc::new(HostLink {
            writer: tokio::sync::Mutex::new(write),
            shared,
            next_id: AtomicU64::new(1),
            room,
            pid,
        }))
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn is_alive(&self) -> bool {
        self.shared.alive.load(Ordering::SeqCst)
    }

    /// Whether a runner with these arguments can be forked (its title fits the host's room).
    pub fn fits(&self, argv: &[String]) -> bool {
        title_bytes(argv).len() <= self.room
    }

    /// Forks a runner: its pid, and what tells when it ends (an error when the host went away first).
    pub async fn launch(
        &self,
        argv: Vec<String>,
        api_url: String,
        token: String,
    ) -> Result<(u32, oneshot::Receiver<RunnerExit>), LaunchError> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        let (started_tx, started_rx) = oneshot::channel();
        let (exited_tx, exited_rx) = oneshot::channel();
        if let Ok(mut pending) = self.shared.pending.lock() {
            pending.insert(
                id,
                Pending {
                    started: Some(started_tx),
                    exited: Some(exited_tx),
                },
            );
        }
        let launch = Launch {
            id,
            argv,
            api_url,
            token,
        };
        let mut line = serde_json::to_vec(&launch).map_err(|e| LaunchError::NotForked(e.to_string()))?;
        line.push(b'\n');
        let written =
            tokio::time::timeout(ANSWER_WITHIN, async { self.writer.lock().await.write_all(&line).await }).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                // Nothing of this launch reached the host (the answers it sent before are still read).
                self.forget(id);
                return Err(LaunchError::NotForked(format!("the runner host is gone: {err}")));
            }
            Err(_) => {
                self.kill();
                return Err(LaunchError::Lost(format!(
                    "the runner host did not take a launch within {ANSWER_WITHIN:?}: killed"
                )));
            }
        }
        match tokio::time::timeout(ANSWER_WITHIN, started_rx).await {
            Ok(Ok(Ok(pid))) => Ok((pid, exited_rx)),
            Ok(Ok(Err(error))) => Err(LaunchError::NotForked(error)),
            Ok(Err(_)) => Err(LaunchError::Lost(
                "the runner host ended before it said whether it started the runner".into(),
            )),
            Err(_) => {
                self.kill();
                Err(LaunchError::Lost(format!(
                    "the runner host did not answer a launch within {ANSWER_WITHIN:?}: killed"
                )))
            }
        }
    }

    fn forget(&self, id: u64) {
        if let Ok(mut pending) = self.shared.pending.lock() {
            pending.remove(&id);
        }
    }

    /// Kills a host that does not answer (its runners live on, watched by pid).
    fn kill(&self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        self.shared.gone();
    }
}

/// Reads the host's answers until it closes its socket, and hands each to the launch waiting for it.
async fn route(shared: Arc<Shared>, mut lines: Lines<BufReader<OwnedReadHalf>>) {
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(event) = serde_json::from_str::<HostEvent>(&line) else {
            tracing::warn!(line = %line, "the runner host said something unknown");
            continue;
        };
        let Ok(mut pending) = shared.pending.lock() else {
            break;
        };
        match event {
            HostEvent::Ready { .. } => {}
            HostEvent::Started { id, pid } => {
                if let Some(started) = pending.get_mut(&id).and_then(|p| p.started.take()) {
                    let _ = started.send(Ok(pid));
                }
            }
            HostEvent::NotStarted { id, error } => {
                if let Some(started) = pending.remove(&id).and_then(|mut p| p.started.take()) {
                    let _ = started.send(Err(error));
                }
            }
            HostEvent::Exited {
                id,
                code,
                signal,
                stderr,
                ..
            } => {
                if let Some(exited) = pending.remove(&id).and_then(|mut p| p.exited.take()) {
                    let _ = exited.send(RunnerExit { code, signal, stderr });
                }
            }
        }
    }
    shared.gone();
}
