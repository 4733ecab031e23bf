//! A network as planned before any client writes its files: the nodes with their keys and ports, the plan
//! every client module reads ([`Plan`]), what a client module answers ([`ClientOutput`]), and the encoding
//! helpers they share. `generate` makes the plan and hands it to `clients`; both depend on this module, and
//! neither on the other's internals.

use alloy_primitives::{hex, Address, Bytes};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::extradata::extra_data_format;
use crate::keys::{KeySource, NodeKey};
use crate::output::{CommandSpec, GeneratedFile, NodeConfig, NodeParams};
use crate::spec::{Balance, Client, NetworkSpec, NodeSlot, Role, Settings};

/// A node with everything decided except client-specific files and commands.
pub(crate) struct PlannedNode<'a> {
    pub slot: &'a NodeSlot,
    pub params: &'a NodeParams,
    pub key: NodeKey,
    /// Password for the node's keystore (validators of keystore-based clients).
    pub password: String,
}

impl PlannedNode<'_> {
    /// Absolute path of `relative` inside this node's data dir, as a command argument.
    pub fn path(&self, relative: &str) -> String {
        self.params.data_dir.join(relative).to_string_lossy().into_owned()
    }

    /// The data dir as a command argument.
    pub fn data_dir(&self) -> String {
        self.params.data_dir.to_string_lossy().into_owned()
    }

    /// Whether this node seals/votes.
    pub fn is_validator(&self) -> bool {
        self.slot.role == Role::Validator
    }

    pub(crate) fn config(&self, client: Client, output: NodeOutput) -> NodeConfig {
        let host = &self.params.host;
        let ports = self.params.ports;
        let bracketed = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.clone()
        };
        let metrics_path = match client {
            Client::Geth | Client::Quorum => "/debug/metrics/prometheus",
            Client::Besu | Client::Openethereum | Client::Anvil => "/metrics",
        };
        NodeConfig {
            index: self.slot.index,
            name: self.slot.name.clone(),
            role: self.slot.role,
            region: self.slot.region.clone(),
            address: self.key.address(),
            enode: (client != Client::Anvil).then(|| {
                let (peer_host, peer_port) = self.params.peer_endpoint();
                self.key.enode(peer_host, peer_port)
            }),
            key: self.key.clone(),
            data_dir: self.params.data_dir.clone(),
            host: host.clone(),
            ports,
            rpc_url: format!("http://{bracketed}:{}", ports.rpc),
            ws_url: match client {
                // anvil serves WebSocket on its RPC port.
                Client::Anvil => Some(format!("ws://{bracketed}:{}", ports.rpc)),
                _ => ports.ws.map(|ws| format!("ws://{bracketed}:{ws}")),
            },
            metrics_url: ports
                .metrics
                .filter(|_| client != Client::Anvil)
                .map(|m| format!("http://{bracketed}:{m}{metrics_path}")),
            files: output.files,
            init: output.init,
            command: output.command,
        }
    }
}

/// Shared inputs for the client modules.
pub(crate) struct Plan<'a> {
    pub spec: &'a NetworkSpec,
    pub settings: &'a Settings,
    pub nodes: Vec<PlannedNode<'a>>,
    /// Validator addresses, sorted ascending.
    pub validators: Vec<Address>,
    pub source: KeySource,
}

impl Plan<'_> {
    /// Genesis allocation: every node's address when `node_balance` is set, then the
    /// spec's accounts (which win over a node entry for the same address).
    pub fn alloc(&self) -> Vec<(Address, Balance)> {
        let mut alloc: Vec<(Address, Balance)> = Vec::new();
        if let Some(balance) = self.spec.node_balance {
            for node in &self.nodes {
                alloc.push((node.key.address(), balance));
            }
        }
        for account in &self.spec.accounts {
            alloc.retain(|(address, _)| *address != account.address);
            alloc.push((account.address, account.balance));
        }
        alloc.sort_by_key(|(address, _)| *address);
        alloc
    }

    /// Every node's `enode://…?discport=0` URL, in node order.
    pub fn enodes(&self) -> Vec<String> {
        if self.spec.client == Client::Anvil {
            return Vec::new();
        }
        self.nodes
            .iter()
            .map(|n| {
                let (host, port) = n.params.peer_endpoint();
                n.key.enode(host, port)
            })
            .collect()
    }

    /// Enodes of every node except `skip`.
    pub fn peer_enodes(&self, skip: usize) -> Vec<String> {
        self.enodes()
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != skip)
            .map(|(_, e)| e)
            .collect()
    }

    /// The genesis extraData for this client x consensus, if it has one.
    pub fn extra_data(&self) -> Option<Bytes> {
        extra_data_format(self.spec.client, self.spec.consensus)
            .map(|format| crate::extradata::encode(format, &self.validators))
    }

    /// Block time in whole seconds (validation guarantees it is whole where this is used).
    pub fn block_time_secs(&self) -> u64 {
        self.settings.block_time.map(|d| d.as_secs()).unwrap_or_default()
    }

    /// Block time in milliseconds.
    pub fn block_time_millis(&self) -> u64 {
        self.settings
            .block_time
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or_default()
    }

    /// Request timeout in whole seconds.
    pub fn request_timeout_secs(&self) -> u64 {
        self.settings.request_timeout.map(|d| d.as_secs()).unwrap_or_default()
    }

    /// The epoch, or the default where the engine has one.
    pub fn epoch(&self) -> u64 {
        self.settings.epoch.unwrap_or(crate::spec::DEFAULT_EPOCH)
    }
}

/// Client-specific files and commands for one node.
pub(crate) struct NodeOutput {
    pub files: Vec<GeneratedFile>,
    pub init: Vec<CommandSpec>,
    pub command: CommandSpec,
}

/// What a client module produces.
pub(crate) struct ClientOutput {
    pub genesis: Option<Value>,
    pub genesis_file: Option<&'static str>,
    pub extra_data: Option<Bytes>,
    pub nodes: Vec<NodeOutput>,
}

/// `0x`-prefixed lowercase hex of a number, the genesis quantity format.
pub(crate) fn quantity(n: u64) -> String {
    format!("{n:#x}")
}

/// `0x`-prefixed hex of bytes.
pub(crate) fn hex_data(bytes: &[u8]) -> String {
    hex::encode_prefixed(bytes)
}

/// Lowercase hex address without `0x` (geth testdata style alloc keys).
pub(crate) fn bare_address(address: &Address) -> String {
    hex::encode(address)
}

/// A JSON string array from enodes, for static-nodes.json.
pub(crate) fn static_nodes_json(enodes: &[String]) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(enodes).map_err(|e| Error::Serialize {
        what: "static-nodes.json",
        reason: e.to_string(),
    })
}
