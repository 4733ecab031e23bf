//! Acting on one node of a running network: a signal to its process group, or a restart with the command line
//! it was first started with.

use std::time::Duration;

use nix::sys::signal::Signal;

use super::{process, ready, LocalBackend, NetworkRecord, Progress};
use crate::backend::NodeSignal;
use crate::error::{Error, Result};
use crate::output::CommandSpec;

/// How long a restarted Clique signer may take to answer RPC and unlock its key before `miner_start`.
const RESTART_SEALING_TIMEOUT: Duration = Duration::from_secs(60);

/// Signals the node's process group (the node leads its own group), after checking by its working
/// directory that the pid is still that node's.
pub(super) fn signal(record: &NetworkRecord, node: &str, signal: NodeSignal) -> Result<()> {
    let target = &record.nodes[record.node_index(node)?];
    let Some(pid) = target.pid.filter(|pid| process::is_node_alive(*pid, &target.data_dir)) else {
        return Err(Error::Network {
            name: record.name.clone(),
            reason: format!("cannot send {signal} to node `{node}`: its process is gone"),
        });
    };
    process::signal_node(pid, posix_signal(signal)).map_err(|e| {
        Error::io(
            format!(
                "network `{}`: sending {signal} to node `{node}` (pid {pid})",
                record.name
            ),
            e,
        )
    })
}

/// Stops the node if it runs (SIGTERM, SIGKILL after the grace), then starts it again with the command it
/// was first started with, on the same data dir, ports and log. A Clique signer whose sealing readiness
/// started over RPC gets `miner_start` again once it answers.
pub(super) async fn restart(
    backend: &LocalBackend,
    record: &NetworkRecord,
    node: &str,
    progress: Progress<'_>,
) -> Result<NetworkRecord> {
    let mut record = record.clone();
    let index = record.node_index(node)?;
    let target = record.nodes[index].clone();
    let Some(launch) = target.launch.clone() else {
        return Err(Error::Network {
            name: record.name.clone(),
            reason: format!(
                "node `{node}` was started by a dagctl that did not record its command line; it cannot be restarted"
            ),
        });
    };
    if let Some(pid) = target.pid.filter(|pid| process::is_node_alive(*pid, &target.data_dir)) {
        progress(&format!("stopping {node} (pid {pid})"));
        let left = backend
            .stop_processes(&record.name, vec![(pid, target.data_dir.clone())])
            .await?;
        if !left.is_empty() {
            return Err(Error::Network {
                name: record.name.clone(),
                reason: format!("node `{node}` (pid {pid}) survived SIGKILL; not restarted"),
            });
        }
    }
    let command = match target.clock_offset {
        None => backend.node_command(
            super::record_netns(&record.netns, node),
            &target.name,
            &launch.program,
            &launch.command,
        )?,
        Some(offset) => {
            let Some(shim) = backend.options.clock_shim.as_ref() else {
                return Err(Error::Network {
                    name: record.name.clone(),
                    reason: format!(
                        "node `{node}` is to run with its clock skewed by {offset:+} s, but this dagctl has no clock supervisor configured"
                    ),
                });
            };
            let mut spec = CommandSpec::new("dagctl");
            spec.args(["clock-shim".to_string(), format!("{offset:+}s")]);
            spec.args([launch.program.to_string_lossy().into_owned()]);
            spec.args(launch.command.args.iter().cloned());
            spec.env = launch.command.env.clone();
            backend.node_command(super::record_netns(&record.netns, node), &target.name, shim, &spec)?
        }
    };
    let pid = process::spawn(command, &target.data_dir, &target.log, &target.name)?;
    record.nodes[index].pid = Some(pid);
    progress(&format!(
        "restarted {node} (pid {pid}) rpc {}{}",
        target.rpc,
        target
            .clock_offset
            .map(|o| format!(", its clock {o:+} s off"))
            .unwrap_or_default()
    ));
    if record.sealing_deferred && target.role == crate::spec::Role::Validator {
        ready::start_sealing(&record, index, RESTART_SEALING_TIMEOUT).await?;
        progress(&format!("{node} started sealing again"));
    }
    Ok(record)
}

fn posix_signal(signal: NodeSignal) -> Signal {
    match signal {
        NodeSignal::Stop => Signal::SIGSTOP,
        NodeSignal::Continue => Signal::SIGCONT,
        NodeSignal::Terminate => Signal::SIGTERM,
        NodeSignal::Kill => Signal::SIGKILL,
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::backend::local::{ClientBinaries, HostLauncher, Launcher, LocalOptions, NodeLaunch, NodeRecord};
    use crate::backend::{NodeBackend, TeardownReport};
    use crate::output::{CommandSpec, NodePorts};
    use crate::spec::{Client, Consensus};

    /// The state letter of `/proc/<pid>/stat` (`S` sleeping, `T` stopped, ...); `None` when gone.
    fn proc_state(pid: u32) -> Option<char> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?.1.split_whitespace().next()?.chars().next()
    }

    fn wait_until(what: &str, check: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the nodes' processes (by pid and data dir) when the test ends, even after a failed assertion.
    struct StopOnDrop(Vec<(u32, PathBuf)>);

    impl Drop for StopOnDrop {
        fn drop(&mut self) {
            process::stop_all(&self.0, Duration::from_secs(2));
        }
    }

    /// A harmless stand-in for a node: `sleep 60` started like a node, in its own data dir and group.
    fn sleeping_node(base_dir: &Path, name: &str) -> NodeRecord {
        let data_dir = base_dir.join(name);
        std::fs::create_dir_all(&data_dir).unwrap();
        let log = base_dir.join(format!("{name}.log"));
        let mut spec = CommandSpec::new("sleep");
        spec.args(["60"]);
        let command = HostLauncher.command(name, Path::new("sleep"), &spec);
        let pid = process::spawn(command, &data_dir, &log, name).unwrap();
        NodeRecord {
            name: name.to_string(),
            role: crate::spec::Role::Validator,
            region: "local".into(),
            rpc: "http://127.0.0.1:1".into(),
            ws: None,
            enode: None,
            address: crate::ZERO_ADDRESS.to_string(),
            pid: Some(pid),
            data_dir,
            log,
            ports: NodePorts::new(1, 2),
            launch: Some(NodeLaunch {
                program: "sleep".into(),
                command: spec,
            }),
            clock_offset: None,
        }
    }

    #[tokio::test]
    async fn restart_starts_a_dead_or_running_node_again_with_its_command() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let base_dir = root.join("networks").join("re");
        std::fs::create_dir_all(&base_dir).unwrap();
        let mut options = LocalOptions::new(root.join("networks"), ClientBinaries::default(), "h".into());
        options.kill_grace = Duration::from_secs(5);
        let backend = LocalBackend::new(options);
        let record = NetworkRecord {
            name: "re".into(),
            client: Client::Anvil,
            consensus: Consensus::Interval,
            chain_id: 1,
            base_dir: base_dir.clone(),
            deployer_pid: std::process::id(),
            sealing_deferred: false,
            nodes: vec![sleeping_node(&base_dir, "node-1"), sleeping_node(&base_dir, "node-2")],
            netns: None,
        };
        let mut cleanup = StopOnDrop(record.processes());
        let first = record.nodes[0].pid.unwrap();
        backend.signal(&record, "node-1", NodeSignal::Kill).await.unwrap();
        wait_until("node-1 is gone", || {
            !process::is_node_alive(first, &record.nodes[0].data_dir)
        });

        let lines = std::sync::Mutex::new(Vec::new());
        let progress = |line: &str| lines.lock().unwrap().push(line.to_string());
        let restarted = backend.restart_node(&record, "node-1", &progress).await.unwrap();
        let second = restarted.nodes[0].pid.unwrap();
        cleanup.0.push((second, record.nodes[0].data_dir.clone()));
        assert_ne!(second, first);
        assert!(
            process::is_node_alive(second, &record.nodes[0].data_dir),
            "same data dir"
        );
        assert_eq!(restarted.nodes[1], record.nodes[1], "node-2 untouched");
        assert!(backend.dead_nodes(&restarted).await.unwrap().is_empty());

        // A running node is stopped first.
        let again = backend.restart_node(&restarted, "node-1", &progress).await.unwrap();
        let third = again.nodes[0].pid.unwrap();
        cleanup.0.push((third, record.nodes[0].data_dir.clone()));
        assert!(!process::is_node_alive(second, &record.nodes[0].data_dir));
        assert!(process::is_node_alive(third, &record.nodes[0].data_dir));
        let lines = lines.lock().unwrap().join("\n");
        assert!(lines.contains(&format!("stopping node-1 (pid {second})")), "{lines}");

        // Unknown nodes and records without a command line are refused; nothing is started.
        let err = backend.restart_node(&again, "node-9", &progress).await.unwrap_err();
        assert!(err.to_string().contains("has no node `node-9`"), "{err}");
        let mut old = again.clone();
        old.nodes[1].launch = None;
        let err = backend.restart_node(&old, "node-2", &progress).await.unwrap_err();
        assert!(err.to_string().contains("cannot be restarted"), "{err}");
        assert!(process::is_node_alive(
            old.nodes[1].pid.unwrap(),
            &old.nodes[1].data_dir
        ));
        backend.stop(&again).await.unwrap();
    }

    #[tokio::test]
    async fn signal_reaches_only_the_named_node() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let base_dir = root.join("networks").join("sig");
        std::fs::create_dir_all(&base_dir).unwrap();
        let binaries = ClientBinaries {
            dir: None,
            overrides: Default::default(),
            path: None,
        };
        let mut options = LocalOptions::new(root.join("networks"), binaries, "h".into());
        options.kill_grace = Duration::from_secs(30);
        let backend = LocalBackend::new(options);
        let nodes: Vec<NodeRecord> = ["node-1", "node-2", "node-3"]
            .iter()
            .map(|name| sleeping_node(&base_dir, name))
            .collect();
        let record = NetworkRecord {
            name: "sig".into(),
            client: Client::Anvil,
            consensus: Consensus::Interval,
            chain_id: 1,
            base_dir: base_dir.clone(),
            deployer_pid: std::process::id(),
            sealing_deferred: false,
            nodes,
            netns: None,
        };
        let _cleanup = StopOnDrop(record.processes());
        let pid = |i: usize| record.nodes[i].pid.unwrap();
        let alive = |i: usize| process::is_node_alive(pid(i), &record.nodes[i].data_dir);
        assert!((0..3).all(alive));
        assert!(backend.dead_nodes(&record).await.unwrap().is_empty());

        backend.signal(&record, "node-1", NodeSignal::Stop).await.unwrap();
        wait_until("node-1 is stopped", || proc_state(pid(0)) == Some('T'));
        assert!(alive(0), "a paused node is still alive");
        // Not stopped: sleeping, or still running on a loaded machine ('S' or 'R'), never 'T'.
        assert!(matches!(proc_state(pid(1)), Some('S' | 'R')), "node-2 is not paused");
        assert!(matches!(proc_state(pid(2)), Some('S' | 'R')), "node-3 is not paused");

        backend.signal(&record, "node-1", NodeSignal::Continue).await.unwrap();
        wait_until("node-1 runs again", || matches!(proc_state(pid(0)), Some('S' | 'R')));

        backend.signal(&record, "node-1", NodeSignal::Kill).await.unwrap();
        wait_until("node-1 is gone", || !alive(0));
        backend.signal(&record, "node-2", NodeSignal::Terminate).await.unwrap();
        wait_until("node-2 is gone", || !alive(1));
        assert!(alive(2), "node-3 was not signalled");
        assert_eq!(backend.dead_nodes(&record).await.unwrap(), vec!["node-1", "node-2"]);

        let gone = backend.signal(&record, "node-1", NodeSignal::Stop).await.unwrap_err();
        assert!(
            gone.to_string().contains("node `node-1`: its process is gone"),
            "{gone}"
        );
        let unknown = backend.signal(&record, "node-9", NodeSignal::Kill).await.unwrap_err();
        assert!(
            unknown
                .to_string()
                .contains("has no node `node-9`; nodes: node-1, node-2, node-3"),
            "{unknown}"
        );
        assert!(alive(2), "failed signals touch nothing");

        // A paused node is resumed by the teardown, so it ends on SIGTERM, long before the grace is up.
        backend.signal(&record, "node-3", NodeSignal::Stop).await.unwrap();
        wait_until("node-3 is stopped", || proc_state(pid(2)) == Some('T'));
        let started = std::time::Instant::now();
        let report = backend.stop(&record).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(
            report,
            TeardownReport {
                stopped: 1,
                removed_dir: true
            }
        );
        assert!(!alive(2));
        assert!(!base_dir.exists());
    }
}
