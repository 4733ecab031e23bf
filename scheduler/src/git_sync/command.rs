//! One `git` command: a cleared environment (no engine secret reaches git, its hooks or its helpers),
//! credentials only through the environment (never on the command line, where `ps` shows them), and a time
//! limit that stops git with the helpers it started (ssh, git-remote-https): SIGTERM to its process group, then
//! SIGKILL. A command whose future is dropped (the engine stopping) has its group killed too.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio::io::{AsyncRead, AsyncReadExt};

/// How every git command of one sync runs.
#[derive(Clone)]
pub(super) struct Git {
    pub program: PathBuf,
    /// The environment: PATH, HOME, LANG and the GIT_* settings (credentials included).
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

/// The most of git's error output kept in a message.
const MAX_MESSAGE: usize = 600;
/// The most of git's output kept (the rest is read and dropped, so git never blocks on a full pipe).
const MAX_OUTPUT: usize = 1 << 20;
/// How long git has to stop after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// Kills a process group when dropped, unless disarmed.
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            worker::runner::group::signal_child_group(pid, Signal::SIGKILL);
        }
    }
}

async fn drain(mut source: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match source.read(&mut chunk).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&chunk[..n.min(room)]);
            }
        }
    }
}

impl Git {
    /// Runs `git ARGS`; its standard output, or its error output's last lines as the error.
    pub async fn run(&self, args: &[OsString]) -> Result<String, String> {
        let mut command = tokio::process::Command::new(&self.program);
        command
            .args(args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|err| format!("cannot run {}: {err}", self.program.display()))?;
        let mut guard = GroupGuard(child.id());
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let verb = args
            .iter()
            .map(|a| a.to_string_lossy())
            .find(|a| !a.starts_with('-'))
            .unwrap_or_default()
            .to_string();
        let read_all = async {
            // Both at once: git blocks on a full pipe that is not read.
            let (out, err) = tokio::join!(
                async {
                    match stdout {
                        Some(s) => drain(s).await,
                        None => Vec::new(),
                    }
                },
                async {
                    match stderr {
                        Some(s) => drain(s).await,
                        None => Vec::new(),
                    }
                }
            );
            (out, err)
        };
        let (out, err) = match tokio::time::timeout(self.timeout, read_all).await {
            Ok(output) => output,
            Err(_) => {
                if let Some(pid) = guard.0 {
                    worker::runner::group::signal_child_group(pid, Signal::SIGTERM);
                }
                if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_err() {
                    drop(guard);
                    let _ = child.wait().await;
                } else {
                    // git is gone; its helpers get the same end.
                    drop(guard);
                }
                return Err(format!(
                    "git {verb} took longer than {:?} and was stopped",
                    self.timeout
                ));
            }
        };
        let status = child.wait().await;
        guard.0 = None;
        match status {
            Err(err) => Err(format!("git {verb}: {err}")),
            Ok(status) if status.success() => Ok(String::from_utf8_lossy(&out).trim().to_string()),
            Ok(status) => {
                let text = String::from_utf8_lossy(&err);
                let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
                let mut message = lines[lines.len().saturating_sub(3)..].join("; ");
                if message.len() > MAX_MESSAGE {
                    let mut cut = MAX_MESSAGE;
                    while !message.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    message.truncate(cut);
                    message.push('…');
                }
                if message.is_empty() {
                    message = format!("exit {status}");
                }
                Err(format!("git {verb} failed: {message}"))
            }
        }
    }
}
