//! Node processes: how one is launched, told apart from an unrelated process that reused its pid,
//! stopped, and how its log is read back.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::error::{Error, Result};
use crate::output::CommandSpec;

/// How a node's process is started. The default runs it directly on this host. Network namespaces
/// (`isolation: netns`) are not a launcher: they are per network, kept in its record, and applied on top of
/// whatever the launcher builds (`LocalBackend::node_command`, `netns::enter`).
pub trait Launcher: Send + Sync {
    /// Address the node binds to and its peers dial.
    fn node_host(&self, node: &str) -> String;

    /// The OS command that runs `program` with `spec`'s arguments and environment for `node`.
    /// The backend adds working directory, stdio and process group.
    fn command(&self, node: &str, program: &Path, spec: &CommandSpec) -> Command;
}

/// Runs nodes as plain processes on this host, bound to 127.0.0.1.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostLauncher;

impl Launcher for HostLauncher {
    fn node_host(&self, _node: &str) -> String {
        "127.0.0.1".to_string()
    }

    fn command(&self, _node: &str, program: &Path, spec: &CommandSpec) -> Command {
        let mut command = Command::new(program);
        command.args(&spec.args);
        for (key, value) in &spec.env {
            command.env(key, value);
        }
        command
    }
}

/// Starts a long-running node process in its own process group, working directory `data_dir`,
/// stdout and stderr appended to `log`. Returns its pid. The child is reaped by a thread so it
/// never lingers as a zombie while this process lives.
pub fn spawn(mut command: Command, data_dir: &Path, log: &Path, node: &str) -> Result<u32> {
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(|e| Error::io(format!("node `{node}`: cannot open log {}", log.display()), e))?;
    let stderr = log_file
        .try_clone()
        .map_err(|e| Error::io(format!("node `{node}`: log {}", log.display()), e))?;
    command
        .current_dir(data_dir)
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(stderr)
        // Own group: a terminal's Ctrl-C does not reach the node, and teardown signals the group.
        .process_group(0);
    let program = command.get_program().to_string_lossy().into_owned();
    let mut child = command
        .spawn()
        .map_err(|e| Error::io(format!("node `{node}`: cannot start {program}"), e))?;
    let pid = child.id();
    std::thread::Builder::new()
        .name(format!("reap-{pid}"))
        .spawn(move || {
            let _ = child.wait();
        })
        .map_err(|e| Error::io(format!("node `{node}`: cannot watch pid {pid}"), e))?;
    Ok(pid)
}

/// Whether `pid` is a live (not zombie) process whose working directory is `data_dir`: the
/// working directory tells our node from an unrelated process that got the same pid later.
pub fn is_node_alive(pid: u32, data_dir: &Path) -> bool {
    let proc_dir = PathBuf::from(format!("/proc/{pid}"));
    let Ok(stat) = std::fs::read_to_string(proc_dir.join("stat")) else {
        return false;
    };
    // The state follows the parenthesised command name, which may itself hold spaces.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X") | None) {
        return false;
    }
    match std::fs::read_link(proc_dir.join("cwd")) {
        Ok(cwd) => cwd == data_dir,
        // Not allowed to look (another user's process): it is not one of ours.
        Err(_) => false,
    }
}

/// The processes (of those this user may look at) that listen on TCP `port` with their working directory under
/// `dir` (which may have been removed since): whether a port is still held by one of a network's nodes, and not
/// by whatever else took the freed port since.
pub fn listeners_under(port: u16, dir: &Path) -> Vec<u32> {
    // Sockets in LISTEN state (0A) on the port, by inode, from the IPv4 and IPv6 tables.
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (fields.get(1), fields.get(3), fields.get(9)) else {
                continue;
            };
            let on_port = local
                .rsplit_once(':')
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok())
                == Some(port);
            if on_port && *state == "0A" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let under = std::fs::read_link(entry.path().join("cwd"))
            .map(|cwd| {
                let text = cwd.to_string_lossy();
                Path::new(text.trim_end_matches(" (deleted)")).starts_with(dir)
            })
            .unwrap_or(false);
        if !under {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .map(|target| inodes.iter().any(|i| target.as_os_str() == i.as_str()))
                .unwrap_or(false)
        });
        if holds {
            out.push(pid);
        }
    }
    out
}

/// Stops the nodes `(pid, data_dir)`: SIGTERM (then SIGCONT, so a paused node can act on it) to each
/// process group, SIGKILL after `grace`, then waits (bounded) until they are gone. Returns the pids that
/// were still alive at the end.
pub fn stop_all(nodes: &[(u32, PathBuf)], grace: Duration) -> Vec<u32> {
    let alive = |list: &[(u32, PathBuf)]| -> Vec<(u32, PathBuf)> {
        list.iter()
            .filter(|(pid, dir)| is_node_alive(*pid, dir))
            .cloned()
            .collect()
    };
    let mut running = alive(nodes);
    for (pid, _) in &running {
        signal_group(*pid, Signal::SIGTERM);
        signal_group(*pid, Signal::SIGCONT);
    }
    running = wait_gone(running, grace);
    for (pid, _) in &running {
        signal_group(*pid, Signal::SIGKILL);
    }
    running = wait_gone(running, Duration::from_secs(5));
    running.into_iter().map(|(pid, _)| pid).collect()
}

fn wait_gone(mut running: Vec<(u32, PathBuf)>, limit: Duration) -> Vec<(u32, PathBuf)> {
    let deadline = Instant::now() + limit;
    while !running.is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        running.retain(|(pid, dir)| is_node_alive(*pid, dir));
    }
    running
}

fn signal_group(pid: u32, signal: Signal) {
    let _ = signal_node(pid, signal);
}

/// Sends `signal` to the node `pid`: to its process group (the node leads its own group, see
/// [`spawn`]), or to the process alone when it has no group of its own. The caller checks first
/// that `pid` is still the node ([`is_node_alive`]).
pub fn signal_node(pid: u32, signal: Signal) -> std::io::Result<()> {
    let raw = i32::try_from(pid).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // The node leads its own group (process_group(0)), so its pgid is its pid.
    if killpg(Pid::from_raw(raw), signal).is_ok() {
        return Ok(());
    }
    nix::sys::signal::kill(Pid::from_raw(raw), signal).map_err(std::io::Error::from)
}

/// Whether any process has `pid` (signal 0). Unlike [`is_node_alive`] it cannot tell which process.
pub fn pid_alive(pid: u32) -> bool {
    i32::try_from(pid).is_ok_and(|raw| nix::sys::signal::kill(Pid::from_raw(raw), None).is_ok())
}

/// The last `lines` lines of a log file (reads at most the final 256 KiB).
pub fn log_tail(path: &Path, lines: usize) -> Vec<String> {
    let Ok(mut file) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(256 * 1024);
    if file.seek(SeekFrom::Start(start)).is_err() {
        return Vec::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

/// A log tail formatted for an error message: `"\nlast lines of PATH:\n  ..."`, or empty.
pub fn format_tail(path: &Path, lines: usize) -> String {
    let tail = log_tail(path, lines);
    if tail.is_empty() {
        return format!("\n(log {} is empty)", path.display());
    }
    let mut out = format!("\nlast {} lines of {}:", tail.len(), path.display());
    for line in tail {
        out.push_str("\n  ");
        out.push_str(&line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_are_found_by_port_and_working_directory() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(listeners_under(port, &cwd), vec![std::process::id()]);
        assert!(listeners_under(port, Path::new("/nonexistent-dagctl-dir")).is_empty());
        drop(listener);
        assert!(listeners_under(port, &cwd).is_empty(), "a closed port has no listener");
    }

    #[test]
    fn spawn_check_and_stop_a_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().canonicalize().unwrap();
        let log = data_dir.join("node.log");
        let mut spec = CommandSpec::new("sh");
        spec.args(["-c", "echo started; echo oops >&2; exec sleep 30"]);
        let command = HostLauncher.command("n", Path::new("/bin/sh"), &spec);
        let pid = spawn(command, &data_dir, &log, "n").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while log_tail(&log, 5).len() < 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(is_node_alive(pid, &data_dir));
        assert!(
            !is_node_alive(pid, Path::new("/")),
            "another working dir is another process"
        );
        assert_eq!(log_tail(&log, 5), vec!["started", "oops"]);
        assert!(format_tail(&log, 1).ends_with("\n  oops"));
        let left = stop_all(&[(pid, data_dir.clone())], Duration::from_secs(5));
        assert!(left.is_empty());
        assert!(!is_node_alive(pid, &data_dir));
    }

    #[test]
    fn missing_processes_and_logs() {
        assert!(!is_node_alive(u32::MAX - 1, Path::new("/")));
        assert!(log_tail(Path::new("/nonexistent/x.log"), 3).is_empty());
        assert!(format_tail(Path::new("/nonexistent/x.log"), 3).contains("empty"));
    }
}
