//! Host usage of one node process, from `/proc/<pid>`: CPU % (all threads, `stat` utime + stime), resident
//! memory (`statm`), and disk read/write rates (`io`: bytes that reached the block layer). Rates and CPU
//! need two readings; the first reading of a process gives none.

use std::collections::BTreeMap;
use std::time::Instant;

/// What the kernel counts for a process at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Counters {
    at: Instant,
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
    rss_bytes: u64,
    read_bytes: Option<u64>,
    write_bytes: Option<u64>,
}

/// One process's usage over the last interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct HostUsage {
    /// Percent of one core (a process busy on two cores shows 200).
    pub cpu_percent: Option<f64>,
    pub rss_bytes: Option<f64>,
    pub disk_read_bytes_per_second: Option<f64>,
    pub disk_write_bytes_per_second: Option<f64>,
}

/// Keeps the previous counters of each process, to turn counters into rates.
#[derive(Debug, Default)]
pub struct HostSampler {
    previous: BTreeMap<u32, Counters>,
}

impl HostSampler {
    /// Usage of `pid` since the last call for it; all `None` if the process is gone.
    pub fn sample(&mut self, pid: u32) -> HostUsage {
        let Some(now) = read_counters(pid) else {
            self.previous.remove(&pid);
            return HostUsage::default();
        };
        let mut usage = HostUsage {
            rss_bytes: Some(now.rss_bytes as f64),
            ..HostUsage::default()
        };
        if let Some(before) = self.previous.insert(pid, now) {
            let seconds = now.at.duration_since(before.at).as_secs_f64();
            if seconds > 0.0 {
                let ticks = now.cpu_ticks.saturating_sub(before.cpu_ticks) as f64;
                usage.cpu_percent = Some(ticks / clock_ticks_per_second() / seconds * 100.0);
                let rate = |now: Option<u64>, before: Option<u64>| Some(now?.saturating_sub(before?) as f64 / seconds);
                usage.disk_read_bytes_per_second = rate(now.read_bytes, before.read_bytes);
                usage.disk_write_bytes_per_second = rate(now.write_bytes, before.write_bytes);
            }
        }
        usage
    }
}

fn clock_ticks_per_second() -> f64 {
    use std::sync::OnceLock;
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .filter(|t| *t > 0)
            .map_or(100.0, |t| t as f64)
    })
}

fn page_size() -> u64 {
    use std::sync::OnceLock;
    static PAGE: OnceLock<u64> = OnceLock::new();
    *PAGE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .filter(|p| *p > 0)
            .map_or(4096, |p| p as u64)
    })
}

/// utime + stime (clock ticks) from a `/proc/.../stat` file (a process's, or `/proc/thread-self/stat`);
/// `None` for a zombie or an unreadable file.
fn cpu_ticks(stat_path: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(stat_path).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3, the state.
    let after = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    if fields.first() == Some(&"Z") {
        return None;
    }
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 counted from the state.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// CPU seconds (user + system) used so far by what `stat_path` describes: `/proc/<pid>/stat` for a process
/// (all its threads), `/proc/thread-self/stat` for the calling thread.
pub fn cpu_seconds(stat_path: &str) -> Option<f64> {
    Some(cpu_ticks(stat_path)? as f64 / clock_ticks_per_second())
}

fn read_counters(pid: u32) -> Option<Counters> {
    let at = Instant::now();
    let cpu_ticks = cpu_ticks(&format!("/proc/{pid}/stat"))?;
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let rss_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // `io` is readable only by the process's owner (or root); rates are then left out.
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let io_field = |name: &str| {
        io.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some(Counters {
        at,
        cpu_ticks,
        rss_bytes: rss_pages * page_size(),
        read_bytes: io_field("read_bytes:"),
        write_bytes: io_field("write_bytes:"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_child_shows_cpu_memory_and_disk_writes() {
        // A shell that burns CPU and writes 8 MB to a file (synced, so it reaches the block layer).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("out");
        let mut child = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "dd if=/dev/zero of={} bs=1M count=8 conv=fsync 2>/dev/null; i=0; while [ $i -lt 100000000 ]; do i=$((i+1)); done",
                file.display()
            ))
            .spawn()
            .unwrap();
        let pid = child.id();
        let mut sampler = HostSampler::default();
        let first = sampler.sample(pid);
        assert!(first.rss_bytes.unwrap() > 0.0);
        assert_eq!(first.cpu_percent, None, "no rate from one reading");
        std::thread::sleep(std::time::Duration::from_millis(700));
        let second = sampler.sample(pid);
        let cpu = second.cpu_percent.expect("cpu");
        assert!(cpu > 20.0, "a shell loop keeps a core busy: {cpu}");
        assert!(
            cpu <= 100.0 * std::thread::available_parallelism().unwrap().get() as f64 + 5.0,
            "{cpu}"
        );
        assert!(second.disk_write_bytes_per_second.is_some());
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(
            sampler.sample(pid),
            HostUsage::default(),
            "a process that is gone has no usage"
        );
    }
}
