//! The runner's process group: the runner leads it and a task's processes (bash and whatever it starts)
//! join it, so the executor stops a whole try with one `killpg`, and a runner that ends a try itself
//! (timeout, cancel) signals every member but itself.

use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::{getpgrp, getpid, setpgid, Pid};

/// Makes the runner the leader of its own process group (as the executor starts it already; a runner started
/// by hand gets one too). Returns whether the runner leads its group.
pub fn lead_own_group() -> bool {
    let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
    getpgrp() == getpid()
}

/// Sends `signal` to every process of the runner's group except the runner. Returns how many were signalled.
pub fn signal_members(signal: Signal) -> usize {
    let me = getpid();
    let group = getpgrp();
    let mut count = 0;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        if pid == me.as_raw() {
            continue;
        }
        if process_group_of(pid) == Some(group.as_raw()) && kill(Pid::from_raw(pid), signal).is_ok() {
            count += 1;
        }
    }
    count
}

/// Signals a child that leads its own group (when the runner could not lead one).
pub fn signal_child_group(pid: u32, signal: Signal) {
    let _ = killpg(Pid::from_raw(pid as i32), signal);
}

/// The process group of `pid`, from `/proc/<pid>/stat` (fields after the command: state, ppid, pgrp).
fn process_group_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(2)?.parse().ok()
}
