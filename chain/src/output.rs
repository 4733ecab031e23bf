//! Plain-data output of generation: what a backend writes to disk and runs.

use std::path::PathBuf;

use alloy_primitives::{Address, Bytes};
use serde::{Deserialize, Serialize};

use crate::keys::NodeKey;
use crate::spec::{Client, Consensus, Role, Settings};

/// Ports the backend allocated for one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NodePorts {
    /// devp2p listen port (unused by anvil).
    pub p2p: u16,
    /// HTTP JSON-RPC port.
    pub rpc: u16,
    /// WebSocket JSON-RPC port, when wanted.
    #[serde(default)]
    pub ws: Option<u16>,
    /// Prometheus metrics port, when wanted.
    #[serde(default)]
    pub metrics: Option<u16>,
    /// Engine API port; geth 1.13 always opens one, so geth needs it.
    #[serde(default)]
    pub authrpc: Option<u16>,
    /// Raft port; GoQuorum raft needs it.
    #[serde(default)]
    pub raft: Option<u16>,
}

impl NodePorts {
    /// Just the two ports every node has.
    pub fn new(p2p: u16, rpc: u16) -> Self {
        Self {
            p2p,
            rpc,
            ws: None,
            metrics: None,
            authrpc: None,
            raft: None,
        }
    }
}

/// Where one node lives: chosen by the backend, passed to generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeParams {
    /// Absolute data directory; every generated file is relative to it.
    pub data_dir: PathBuf,
    /// Address the node binds RPC to and advertises to peers (an IP for geth-family peers).
    pub host: String,
    /// Allocated ports.
    pub ports: NodePorts,
    /// Where peers reach this node when that is not `host` and its own ports (a Kubernetes pod binds every
    /// interface and is reached through its Service); `None`: `host` and `ports`.
    pub advertise: Option<PeerAddress>,
}

impl NodeParams {
    /// Host and devp2p port written into this node's enode for its peers.
    pub fn peer_endpoint(&self) -> (&str, u16) {
        match &self.advertise {
            Some(a) => (a.host.as_str(), a.p2p),
            None => (self.host.as_str(), self.ports.p2p),
        }
    }

    /// The raft port peers dial (GoQuorum raft), when the node has one.
    pub fn peer_raft_port(&self) -> Option<u16> {
        match &self.advertise {
            Some(a) => a.raft.or(self.ports.raft),
            None => self.ports.raft,
        }
    }
}

/// How peers reach a node from outside its own network namespace or pod.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerAddress {
    /// An IP address (or a name every client resolves).
    pub host: String,
    /// The devp2p port peers dial.
    pub p2p: u16,
    /// The raft port peers dial (GoQuorum raft).
    #[serde(default)]
    pub raft: Option<u16>,
}

/// A program invocation: what to run, with which arguments and extra environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandSpec {
    /// Executable name, looked up on PATH (or replaced by the backend with a pinned install).
    pub program: String,
    /// Arguments, one per element; never shell-quoted.
    pub args: Vec<String>,
    /// Extra environment variables on top of the backend's.
    pub env: Vec<(String, String)>,
}

impl CommandSpec {
    /// A command with no arguments or environment yet.
    pub fn new(program: impl Into<String>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds an environment variable.
    pub fn env(&mut self, key: impl Into<String>, value: impl Into<String>) -> &mut Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The value following `flag` (`--flag value`) or after `flag=` (`--flag=value`).
    pub fn flag_value(&self, flag: &str) -> Option<&str> {
        let prefix = format!("{flag}=");
        self.args.iter().enumerate().find_map(|(i, arg)| {
            if arg == flag {
                self.args.get(i + 1).map(String::as_str)
            } else {
                arg.strip_prefix(&prefix)
            }
        })
    }

    /// Whether `flag` is present, alone or as `flag=value`.
    pub fn has_flag(&self, flag: &str) -> bool {
        let prefix = format!("{flag}=");
        self.args.iter().any(|arg| arg == flag || arg.starts_with(&prefix))
    }
}

/// One file to write into a node's data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Path relative to the node's data directory.
    pub path: PathBuf,
    /// File contents.
    pub contents: Vec<u8>,
    /// Holds key material: write it readable by the owner only (0600).
    pub secret: bool,
}

impl GeneratedFile {
    pub(crate) fn public(path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.into(),
            contents: contents.into(),
            secret: false,
        }
    }

    pub(crate) fn secret(path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        Self {
            path: path.into(),
            contents: contents.into(),
            secret: true,
        }
    }
}

/// Everything a backend needs to start one node.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Position in the network (validators first).
    pub index: usize,
    /// Unique node name.
    pub name: String,
    /// What the node does.
    pub role: Role,
    /// Region the node runs in.
    pub region: String,
    /// The node's key (p2p identity, and signing key for validators).
    pub key: NodeKey,
    /// Address of `key`.
    pub address: Address,
    /// `enode://…?discport=0` URL; `None` for anvil, which has no p2p.
    pub enode: Option<String>,
    /// The node's data directory, as passed in.
    pub data_dir: PathBuf,
    /// The node's host, as passed in.
    pub host: String,
    /// The node's ports, as passed in.
    pub ports: NodePorts,
    /// HTTP JSON-RPC URL.
    pub rpc_url: String,
    /// WebSocket URL when a ws port was given.
    pub ws_url: Option<String>,
    /// Prometheus scrape URL when a metrics port was given.
    pub metrics_url: Option<String>,
    /// Files to write under `data_dir` before anything runs.
    pub files: Vec<GeneratedFile>,
    /// Commands to run to completion, in order, before `command` (e.g. `geth init`).
    pub init: Vec<CommandSpec>,
    /// The long-running node process.
    pub command: CommandSpec,
}

impl NodeConfig {
    /// The generated file at `path` (relative to the data directory), if any.
    pub fn file(&self, path: &str) -> Option<&GeneratedFile> {
        self.files.iter().find(|f| f.path == std::path::Path::new(path))
    }
}

/// A whole generated network: genesis plus one config per node.
#[derive(Debug, Clone)]
pub struct GeneratedNetwork {
    /// Network name.
    pub name: String,
    /// Client of every node.
    pub client: Client,
    /// Consensus engine.
    pub consensus: Consensus,
    /// The validated settings with defaults filled in.
    pub settings: Settings,
    /// The genesis (or chain spec) JSON, pretty-printed; `None` for anvil without prefunding.
    pub genesis_json: Option<String>,
    /// The genesis file name inside each data dir (`genesis.json`, `spec.json`).
    pub genesis_file: Option<&'static str>,
    /// The genesis extraData, when the engine uses one.
    pub extra_data: Option<Bytes>,
    /// Validator (signer) addresses in the order the genesis lists them.
    pub validators: Vec<Address>,
    /// Every node's enode URL (empty for anvil).
    pub static_nodes: Vec<String>,
    /// Per-node configuration, validators first.
    pub nodes: Vec<NodeConfig>,
}
