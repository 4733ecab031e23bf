//! One `git` command: a cleared environment (no engine secret reaches git, its hooks or its helpers),
//! credentials only through the environment (never on the command line, where `ps` shows them), and a time
//! limit that kills git with the helpers it started (ssh, git-remote-https).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

/// How every git command of one sync runs.
pub(super) struct Git {
    pub program: PathBuf,
    /// The environment: PATH, HOME, LANG and the GIT_* settings (credentials included).
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

/// The most of git's error output kept in a message.
const MAX_MESSAGE: usize = 600;

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
        let pid = child.id();
        let mut stdout = child.stdout.take();
        let mut stderr = child.stderr.take();
        let read_all = async {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            // Both at once: git blocks on a full pipe that is not read.
            let read_out = async {
                if let Some(s) = stdout.as_mut() {
                    let _ = s.take(1 << 20).read_to_end(&mut out).await;
                }
            };
            let read_err = async {
                if let Some(s) = stderr.as_mut() {
                    let _ = s.take(1 << 20).read_to_end(&mut err).await;
                }
            };
            tokio::join!(read_out, read_err);
            let status = child.wait().await;
            (status, out, err)
        };
        let verb = args
            .iter()
            .map(|a| a.to_string_lossy())
            .find(|a| !a.starts_with('-'))
            .unwrap_or_default()
            .to_string();
        match tokio::time::timeout(self.timeout, read_all).await {
            Err(_) => {
                if let Some(pid) = pid {
                    worker::runner::group::signal_child_group(pid, nix::sys::signal::Signal::SIGKILL);
                }
                Err(format!(
                    "git {verb} took longer than {:?} and was stopped",
                    self.timeout
                ))
            }
            Ok((Err(err), _, _)) => Err(format!("git {verb}: {err}")),
            Ok((Ok(status), out, _)) if status.success() => Ok(String::from_utf8_lossy(&out).trim().to_string()),
            Ok((Ok(status), _, err)) => {
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
