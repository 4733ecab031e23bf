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
pub(crate) mod clique;
pub mod netns;
mod node_ops;
pub mod process;
mod ready;
mod record;
pub mod rpc;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use super::{Progress, ReadyReport, TeardownReport};
pub use clients::{ClientBinaries, ANVIL_INSTALL_VERSION, GETH_INSTALL_VERSION, QUORUM_INSTALL_VERSION};
pub use clique::defer_clique_sealing;
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
    /// The program whose `clock-shim OFFSET PROGRAM ARGS...` runs a node under a skewed wall clock
    /// ([`crate::chaos::clock`]): the dagctl binary. None: clock faults are refused.
    pub clock_shim: Option<PathBuf>,
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
            clock_shim: None,
        }
    }
}

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

    /// The command that runs `program` with `spec` for `node`, in `namespace` when it has one.
    fn node_command(
        &self,
        namespace: Option<&str>,
        node: &str,
        program: &Path,
        spec: &crate::output::CommandSpec,
    ) -> Result<std::process::Command> {
        let mut command = self.launcher.command(node, program, spec);
        if let Some(ns) = namespace {
            netns::enter(&mut command, ns)?;
        }
        Ok(command)
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
        if spec.isolation == crate::spec::Isolation::Netns {
            let names: Vec<String> = slots.iter().map(|s| s.name.clone()).collect();
            let layout = netns::create(&spec.name, &names)?;
            progress(&format!(
                "network namespaces {}..{} on bridge {} ({}/24)",
                layout.nodes.first().map(|n| n.namespace.as_str()).unwrap_or_default(),
                layout.nodes.last().map(|n| n.namespace.as_str()).unwrap_or_default(),
                layout.bridge,
                layout.gateway
            ));
            record.netns = Some(layout);
        }
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
                host: match record.netns.as_ref().and_then(|l| l.of(&slot.name)) {
                    Some(ns) => ns.ip.clone(),
                    None => self.launcher.node_host(&slot.name),
                },
                ports: node_ports,
                advertise: None,
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
                clock_offset: None,
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
            let command = self.node_command(
                record_netns(&record.netns, &node.name),
                &node.name,
                &binary,
                &node.command,
            )?;
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
            netns: None,
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
        if let Some(layout) = &record.netns {
            let left = netns::remove(layout);
            if !left.is_empty() {
                return Err(Error::Network {
                    name: record.name.clone(),
                    reason: format!("its network namespaces could not all be removed: {}", left.join("; ")),
                });
            }
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
    async fn discard(&self, name: &str, _kind: &str) -> Result<()> {
        let left = netns::remove_named(name);
        if !left.is_empty() {
            return Err(Error::Network {
                name: name.to_string(),
                reason: format!("its network namespaces could not all be removed: {}", left.join("; ")),
            });
        }
        let dir = self.options.networks_dir.join(name);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(format!("cannot remove {}", dir.display()), e))?;
        }
        Ok(())
    }

    fn describe(&self, record: &NetworkRecord) -> serde_json::Value {
        record.endpoints()
    }

    /// Signals the node's process group after checking by its working directory that the pid is still that
    /// node's ([`node_ops::signal`]).
    async fn signal(&self, record: &NetworkRecord, node: &str, signal: NodeSignal) -> Result<()> {
        node_ops::signal(record, node, signal)
    }

    /// Stops the node if it runs, then starts it again with its recorded command line ([`node_ops::restart`]).
    async fn restart_node(&self, record: &NetworkRecord, node: &str, progress: Progress<'_>) -> Result<NetworkRecord> {
        node_ops::restart(self, record, node, progress).await
    }

    async fn dead_nodes(&self, record: &NetworkRecord) -> Result<Vec<String>> {
        Ok(record.dead_nodes())
    }

    /// Whether the process that started `record` is another one and still lives.
    fn deploy_in_progress(&self, record: &NetworkRecord) -> bool {
        record.deployer_pid != std::process::id() && process::pid_alive(record.deployer_pid)
    }
}

/// The network namespace of `node`, if the network has them.
fn record_netns<'a>(layout: &'a Option<netns::NetnsLayout>, node: &str) -> Option<&'a str> {
    layout.as_ref()?.of(node).map(|n| n.namespace.as_str())
}

/// Says which node listens beyond loopback (every listener dagctl configures is on the node's host address;
/// GoQuorum's raft transport binds every interface whatever its flags).
fn warn_exposed(record: &NetworkRecord, progress: Progress<'_>) {
    for node in &record.nodes {
        let Some(pid) = node.pid else { continue };
        let Ok(listeners) = crate::audit::listening_sockets(pid) else {
            continue;
        };
        // In its own namespace a node's address is private to this host's bridge.
        let own = record
            .netns
            .as_ref()
            .and_then(|l| l.of(&node.name))
            .and_then(|n| n.ip.parse::<std::net::IpAddr>().ok());
        for listener in listeners
            .iter()
            .filter(|l| !l.is_loopback() && Some(l.address.ip()) != own)
        {
            let why = if node.ports.raft == Some(listener.address.port()) {
                ": GoQuorum's raft transport listens on every interface and has no flag to bind it; firewall this port if the host is reachable"
            } else {
                ""
            };
            progress(&format!("warning: {} listens on {listener}{why}", node.name));
        }
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
                advertise: None,
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
        backend.discard("half", "local").await.unwrap();
        assert!(!dir.path().join("half").exists());
        backend.discard("never-started", "local").await.unwrap();
        assert!(dir.path().exists());
    }
}
