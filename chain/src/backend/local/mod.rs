//! The local backend: real client processes on this machine, behind [`NodeBackend`].
//!
//! [`NodeBackend::start`] allocates free loopback ports and a data dir per node, writes the
//! generated files, runs the init commands and starts every node in its own process group with
//! its output in `<network>/<node>.log`. [`NodeBackend::wait_ready`] waits until every node
//! answers RPC, has its expected peers and sees new blocks. [`NodeBackend::stop`] stops
//! every process (SIGTERM, SIGKILL after a grace) and removes the network's directory.
//! [`NodeBackend::signal`] sends a signal to one node's process group.
//! How a node process is launched is a [`Launcher`], so a node can later run in its own network
//! namespace without changing the rest.

pub mod clients;
mod clique;
pub mod process;
mod ready;
mod record;
pub mod rpc;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;

pub use super::{Progress, ReadyReport, TeardownReport};
pub use clients::{ClientBinaries, ANVIL_INSTALL_VERSION, GETH_INSTALL_VERSION, QUORUM_INSTALL_VERSION};
pub use process::{HostLauncher, Launcher};
pub use record::{NetworkRecord, NodeLaunch, NodeRecord};

use super::{NodeBackend, NodeSignal};
use crate::error::{Error, Result};
use crate::output::{GeneratedNetwork, NodeParams, NodePorts};
use crate::spec::{Client, Consensus, NetworkSpec};

/// Settings of the local backend, built once by the caller.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Parent of every network's directory (`<home>/networks`).
    pub networks_dir: PathBuf,
    /// Where client binaries are found.
    pub binaries: ClientBinaries,
    /// Name of this machine, recorded with each network.
    pub host_id: String,
    /// How long a node gets between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// Longest time one init command (e.g. `geth init`) may take.
    pub init_timeout: Duration,
}

impl LocalOptions {
    /// Options with default timeouts.
    pub fn new(networks_dir: PathBuf, binaries: ClientBinaries, host_id: String) -> Self {
        Self {
            networks_dir,
            binaries,
            host_id,
            kill_grace: Duration::from_secs(10),
            init_timeout: Duration::from_secs(120),
        }
    }
}

/// How long a restarted Clique signer may take to answer RPC and unlock its key before `miner_start`.
const RESTART_SEALING_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs networks as processes on this machine.
#[derive(Clone)]
pub struct LocalBackend {
    options: LocalOptions,
    launcher: Arc<dyn Launcher>,
}

impl LocalBackend {
    /// A backend that runs nodes directly on this host.
    pub fn new(options: LocalOptions) -> Self {
        Self::with_launcher(options, Arc::new(HostLauncher))
    }

    /// A backend with a custom way of launching node processes.
    pub fn with_launcher(options: LocalOptions, launcher: Arc<dyn Launcher>) -> Self {
        Self { options, launcher }
    }

    pub fn options(&self) -> &LocalOptions {
        &self.options
    }

    async fn start_nodes(
        &self,
        spec: &NetworkSpec,
        program: &Path,
        record: &mut NetworkRecord,
        cancel: &CancellationToken,
        progress: Progress<'_>,
    ) -> Result<()> {
        let slots = spec.layout()?;
        let needs_authrpc = matches!(spec.client, Client::Geth | Client::Quorum);
        let needs_raft = spec.consensus == Consensus::Raft;
        let has_ws = spec.client != Client::Anvil;
        // Every client but anvil serves Prometheus metrics, on the node's host (the monitor scrapes them).
        let has_metrics = spec.client != Client::Anvil;
        let per_node =
            2 + usize::from(has_ws) + usize::from(needs_authrpc) + usize::from(needs_raft) + usize::from(has_metrics);
        let ports = free_ports(slots.len() * per_node)?;
        let mut params = Vec::with_capacity(slots.len());
        for (i, slot) in slots.iter().enumerate() {
            let mut next = ports[i * per_node..(i + 1) * per_node].iter().copied();
            let mut node_ports = NodePorts::new(next.next().unwrap_or(0), next.next().unwrap_or(0));
            node_ports.ws = has_ws.then(|| next.next().unwrap_or(0));
            node_ports.authrpc = needs_authrpc.then(|| next.next().unwrap_or(0));
            node_ports.raft = needs_raft.then(|| next.next().unwrap_or(0));
            node_ports.metrics = has_metrics.then(|| next.next().unwrap_or(0));
            params.push(NodeParams {
                data_dir: record.base_dir.join(&slot.name),
                host: self.launcher.node_host(&slot.name),
                ports: node_ports,
            });
        }
        let mut network = crate::generate(spec, &params)?;
        record.sealing_deferred = clique::defer_clique_sealing(&mut network);
        write_files(&network)?;
        for node in &network.nodes {
            record.nodes.push(NodeRecord {
                name: node.name.clone(),
                role: node.role,
                region: node.region.clone(),
                rpc: node.rpc_url.clone(),
                ws: node.ws_url.clone(),
                enode: node.enode.clone(),
                address: node.address.to_checksum(None),
                pid: None,
                data_dir: node.data_dir.clone(),
                log: record.base_dir.join(format!("{}.log", node.name)),
                ports: node.ports,
                launch: None,
            });
        }
        let client_program = spec.client.program();
        let check_cancel = || {
            if cancel.is_cancelled() {
                Err(Error::Cancelled(format!("starting network `{}`", spec.name)))
            } else {
                Ok(())
            }
        };
        for (node, node_record) in network.nodes.iter().zip(&record.nodes) {
            for init in &node.init {
                check_cancel()?;
                let binary = if init.program == client_program {
                    program.to_path_buf()
                } else {
                    PathBuf::from(&init.program)
                };
                self.run_init(node_record, &binary, init).await?;
            }
        }
        check_cancel()?;
        for (node, node_record) in network.nodes.iter().zip(record.nodes.iter_mut()) {
            let binary = if node.command.program == client_program {
                program.to_path_buf()
            } else {
                PathBuf::from(&node.command.program)
            };
            let command = self.launcher.command(&node.name, &binary, &node.command);
            let pid = process::spawn(command, &node.data_dir, &node_record.log, &node.name)?;
            node_record.pid = Some(pid);
            node_record.launch = Some(NodeLaunch {
                program: binary,
                command: node.command.clone(),
            });
            progress(&format!("started {} (pid {pid}) rpc {}", node.name, node_record.rpc));
        }
        Ok(())
    }

    /// Stops `processes` (SIGTERM, SIGKILL after the grace) off the async threads; returns the pids that survived.
    async fn stop_processes(&self, network: &str, processes: Vec<(u32, PathBuf)>) -> Result<Vec<u32>> {
        let grace = self.options.kill_grace;
        tokio::task::spawn_blocking(move || process::stop_all(&processes, grace))
            .await
            .map_err(|e| Error::io(format!("network `{network}`: stopping nodes"), e))
    }

    async fn run_init(&self, node: &NodeRecord, binary: &Path, init: &crate::output::CommandSpec) -> Result<()> {
        let shown = format!("{} {}", init.program, init.args.join(" "));
        let mut command = self.launcher.command(&node.name, binary, init);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(|e| Error::io(format!("node `{}`: log {}", node.name, node.log.display()), e))?;
        let log_err = log
            .try_clone()
            .map_err(|e| Error::io(format!("node `{}`: log", node.name), e))?;
        command
            .current_dir(&node.data_dir)
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let mut command = tokio::process::Command::from(command);
        command.kill_on_drop(true);
        let failed = |reason: String| Error::InitFailed {
            node: node.name.clone(),
            command: shown.clone(),
            reason,
            log_tail: process::format_tail(&node.log, 20),
        };
        let mut child = command.spawn().map_err(|e| failed(e.to_string()))?;
        let status = tokio::time::timeout(self.options.init_timeout, child.wait())
            .await
            .map_err(|_| failed(format!("did not finish within {:?}", self.options.init_timeout)))?
            .map_err(|e| failed(e.to_string()))?;
        if !status.success() {
            return Err(failed(format!("exited with {status}")));
        }
        Ok(())
    }
}

impl NodeBackend for LocalBackend {
    type Record = NetworkRecord;

    const KIND: &'static str = "local";

    fn host_id(&self) -> &str {
        &self.options.host_id
    }

    /// Writes files, runs init commands and starts every node. Does not wait for readiness. On
    /// any failure everything started so far is stopped and the directory removed.
    async fn start(
        &self,
        spec: &NetworkSpec,
        cancel: &CancellationToken,
        progress: Progress<'_>,
    ) -> Result<NetworkRecord> {
        let slots = spec.layout()?;
        let settings = spec.settings()?;
        let program = self
            .options
            .binaries
            .resolve(spec.client, spec.consensus, &settings.version)?;
        progress(&format!(
            "using {} for {} {} ({} nodes)",
            program.display(),
            spec.client,
            spec.consensus,
            slots.len()
        ));
        let base_dir = self.options.networks_dir.join(&spec.name);
        // The store claim guarantees no live network uses this name: a leftover dir is stale.
        if base_dir.exists() {
            std::fs::remove_dir_all(&base_dir)
                .map_err(|e| Error::io(format!("cannot remove stale {}", base_dir.display()), e))?;
        }
        std::fs::create_dir_all(&base_dir)
            .map_err(|e| Error::io(format!("cannot create {}", base_dir.display()), e))?;
        let base_dir = base_dir
            .canonicalize()
            .map_err(|e| Error::io(format!("cannot resolve {}", base_dir.display()), e))?;
        let mut record = NetworkRecord {
            name: spec.name.clone(),
            client: spec.client,
            consensus: spec.consensus,
            chain_id: settings.chain_id,
            base_dir: base_dir.clone(),
            deployer_pid: std::process::id(),
            sealing_deferred: false,
            nodes: Vec::new(),
        };
        match self.start_nodes(spec, &program, &mut record, cancel, progress).await {
            Ok(()) => Ok(record),
            Err(err) => {
                progress(&format!("start failed, cleaning up: {err}"));
                self.stop(&record).await?;
                Err(err)
            }
        }
    }

    /// Waits until every node answers RPC, has its expected peers and sees new blocks. Fails
    /// early when a node process exits; the error names the node and shows its last log lines.
    async fn wait_ready(
        &self,
        record: &NetworkRecord,
        timeout: Duration,
        cancel: &CancellationToken,
        progress: Progress<'_>,
    ) -> Result<ReadyReport> {
        let report = ready::wait_ready(record, timeout, cancel, progress).await?;
        warn_exposed(record, progress);
        Ok(report)
    }

    /// Stops every node of `record` and removes its directory. Safe to call again.
    async fn stop(&self, record: &NetworkRecord) -> Result<TeardownReport> {
        let processes = record.processes();
        let running = processes
            .iter()
            .filter(|(pid, dir)| process::is_node_alive(*pid, dir))
            .count();
        let left = self.stop_processes(&record.name, processes).await?;
        if !left.is_empty() {
            return Err(Error::Network {
                name: record.name.clone(),
                reason: format!("processes {left:?} survived SIGKILL; data dir kept"),
            });
        }
        let removed_dir = record.base_dir.exists();
        if removed_dir {
            std::fs::remove_dir_all(&record.base_dir)
                .map_err(|e| Error::io(format!("cannot remove {}", record.base_dir.display()), e))?;
        }
        Ok(TeardownReport {
            stopped: running,
            removed_dir,
        })
    }

    /// Removes the network's directory.
    async fn discard(&self, name: &str) -> Result<()> {
        let dir = self.options.networks_dir.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("cannot remove {}", dir.display()), e))?;
        }
        Ok(())
    }

    fn describe(&self, record: &NetworkRecord) -> serde_json::Value {
        record.endpoints()
    }

    /// Signals the node's process group (the node leads its own group), after checking by its working
    /// directory that the pid is still that node's.
    async fn signal(&self, record: &NetworkRecord, node: &str, signal: NodeSignal) -> Result<()> {
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
    async fn restart_node(&self, record: &NetworkRecord, node: &str, progress: Progress<'_>) -> Result<NetworkRecord> {
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
            let left = self
                .stop_processes(&record.name, vec![(pid, target.data_dir.clone())])
                .await?;
            if !left.is_empty() {
                return Err(Error::Network {
                    name: record.name.clone(),
                    reason: format!("node `{node}` (pid {pid}) survived SIGKILL; not restarted"),
                });
            }
        }
        let command = self.launcher.command(&target.name, &launch.program, &launch.command);
        let pid = process::spawn(command, &target.data_dir, &target.log, &target.name)?;
        record.nodes[index].pid = Some(pid);
        progress(&format!("restarted {node} (pid {pid}) rpc {}", target.rpc));
        if record.sealing_deferred && target.role == crate::spec::Role::Validator {
            ready::start_sealing(&record, &record.nodes[index], RESTART_SEALING_TIMEOUT).await?;
            progress(&format!("{node} started sealing again"));
        }
        Ok(record)
    }

    async fn dead_nodes(&self, record: &NetworkRecord) -> Result<Vec<String>> {
        Ok(record.dead_nodes())
    }

    /// Whether the process that started `record` is another one and still lives.
    fn deploy_in_progress(&self, record: &NetworkRecord) -> bool {
        record.deployer_pid != std::process::id() && process::pid_alive(record.deployer_pid)
    }
}

/// Says which node listens beyond loopback (every listener dagctl configures is on the node's host address;
/// GoQuorum's raft transport binds every interface whatever its flags).
fn warn_exposed(record: &NetworkRecord, progress: Progress<'_>) {
    for node in &record.nodes {
        let Some(pid) = node.pid else { continue };
        let Ok(listeners) = crate::audit::listening_sockets(pid) else {
            continue;
        };
        for listener in listeners.iter().filter(|l| !l.is_loopback()) {
            let why = if node.ports.raft == Some(listener.address.port()) {
                ": GoQuorum's raft transport listens on every interface and has no flag to bind it; firewall this port if the host is reachable"
            } else {
                ""
            };
            progress(&format!("warning: {} listens on {listener}{why}", node.name));
        }
    }
}

fn posix_signal(signal: NodeSignal) -> Signal {
    match signal {
        NodeSignal::Stop => Signal::SIGSTOP,
        NodeSignal::Continue => Signal::SIGCONT,
        NodeSignal::Terminate => Signal::SIGTERM,
        NodeSignal::Kill => Signal::SIGKILL,
    }
}

/// `count` distinct free TCP ports on 127.0.0.1. The listeners are held until all are chosen so
/// no port is handed out twice; another process may still take one before the node binds it.
pub fn free_ports(count: usize) -> Result<Vec<u16>> {
    let mut listeners = Vec::with_capacity(count);
    let mut ports = Vec::with_capacity(count);
    for _ in 0..count {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .map_err(|e| Error::io("cannot allocate a free port on 127.0.0.1", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| Error::io("cannot read an allocated port", e))?
            .port();
        ports.push(port);
        listeners.push(listener);
    }
    Ok(ports)
}

fn write_files(network: &GeneratedNetwork) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    for node in &network.nodes {
        std::fs::create_dir_all(&node.data_dir)
            .map_err(|e| Error::io(format!("cannot create {}", node.data_dir.display()), e))?;
        for file in &node.files {
            let path = node.data_dir.join(&file.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| Error::io(format!("cannot create {}", parent.display()), e))?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            if file.secret {
                options.mode(0o600);
            }
            let mut handle = options
                .open(&path)
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
            handle
                .write_all(&file.contents)
                .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::CommandSpec;

    #[test]
    fn clique_signers_start_without_mine_and_with_the_miner_api() {
        let spec = NetworkSpec {
            members: 1,
            key_seed: Some("t".into()),
            ..NetworkSpec::new("n", Client::Geth, Consensus::Clique, 2)
        };
        let params: Vec<NodeParams> = (0..3u16)
            .map(|i| NodeParams {
                data_dir: PathBuf::from(format!("/d/{i}")),
                host: "127.0.0.1".into(),
                ports: NodePorts {
                    authrpc: Some(9000 + i),
                    ..NodePorts::new(8000 + i, 8100 + i)
                },
            })
            .collect();
        let mut network = crate::generate(&spec, &params).unwrap();
        assert!(network.nodes[0].command.has_flag("--mine"));
        assert!(clique::defer_clique_sealing(&mut network));
        for node in &network.nodes {
            assert!(!node.command.has_flag("--mine"));
        }
        let apis = network.nodes[0].command.flag_value("--http.api").unwrap();
        assert!(apis.ends_with(",miner"), "{apis}");
        assert!(!network.nodes[2]
            .command
            .flag_value("--http.api")
            .unwrap()
            .contains("miner"));
        let mut anvil = crate::generate(
            &NetworkSpec::new("a", Client::Anvil, Consensus::Interval, 1),
            &params[..1],
        )
        .unwrap();
        assert!(!clique::defer_clique_sealing(&mut anvil));
    }

    #[test]
    fn free_ports_are_distinct() {
        let ports = free_ports(20).unwrap();
        let mut unique = ports.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), 20);
        assert!(ports.iter().all(|p| *p > 0));
    }

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
        };
        let _cleanup = StopOnDrop(record.processes());
        let pid = |i: usize| record.nodes[i].pid.unwrap();
        let alive = |i: usize| process::is_node_alive(pid(i), &record.nodes[i].data_dir);
        assert!((0..3).all(alive));
        assert!(backend.dead_nodes(&record).await.unwrap().is_empty());

        backend.signal(&record, "node-1", NodeSignal::Stop).await.unwrap();
        wait_until("node-1 is stopped", || proc_state(pid(0)) == Some('T'));
        assert!(alive(0), "a paused node is still alive");
        assert_eq!(proc_state(pid(1)), Some('S'), "node-2 is not paused");
        assert_eq!(proc_state(pid(2)), Some('S'), "node-3 is not paused");

        backend.signal(&record, "node-1", NodeSignal::Continue).await.unwrap();
        wait_until("node-1 runs again", || proc_state(pid(0)) == Some('S'));

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

    #[tokio::test]
    async fn discard_removes_a_network_dir_and_tolerates_none() {
        let dir = tempfile::tempdir().unwrap();
        let binaries = ClientBinaries {
            dir: None,
            overrides: Default::default(),
            path: None,
        };
        let backend = LocalBackend::new(LocalOptions::new(dir.path().to_path_buf(), binaries, "h".into()));
        std::fs::create_dir_all(dir.path().join("half").join("node-1")).unwrap();
        backend.discard("half").await.unwrap();
        assert!(!dir.path().join("half").exists());
        backend.discard("never-started").await.unwrap();
        assert!(dir.path().exists());
    }
}
