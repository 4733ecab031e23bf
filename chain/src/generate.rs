//! Turning a validated spec plus backend-chosen placement into a [`GeneratedNetwork`].

use alloy_primitives::{hex, Address, Bytes};
use serde_json::Value;

use crate::clients;
use crate::error::{Error, Result};
use crate::extradata::ExtraDataFormat;
use crate::keys::{KeySource, NodeKey};
use crate::output::{CommandSpec, GeneratedFile, GeneratedNetwork, NodeConfig, NodeParams};
use crate::spec::{Balance, Client, Consensus, NetworkSpec, NodeSlot, Role, Settings};

/// Generates keys (seeded from `spec.key_seed`, random otherwise) and every node's configuration.
///
/// `params` holds one entry per node of [`NetworkSpec::layout`], in layout order.
pub fn generate(spec: &NetworkSpec, params: &[NodeParams]) -> Result<GeneratedNetwork> {
    // Validate and count before making keys, so a bad request costs nothing.
    let slots = spec.layout()?;
    if params.len() != slots.len() {
        return Err(Error::NodeParamsCount {
            expected: slots.len(),
            got: params.len(),
        });
    }
    let count = u32::try_from(slots.len()).map_err(|_| Error::InvalidField {
        field: "nodes",
        reason: format!("{} nodes do not fit in u32", slots.len()),
    })?;
    let source = KeySource::from_seed(spec.key_seed.as_deref());
    let keys = NodeKey::generate_many(&source, count)?;
    generate_with_keys(spec, params, keys)
}

/// Like [`generate`], with caller-supplied node keys (one per node, in layout order).
pub fn generate_with_keys(spec: &NetworkSpec, params: &[NodeParams], keys: Vec<NodeKey>) -> Result<GeneratedNetwork> {
    let settings = spec.settings()?;
    let slots = spec.layout_with(&settings)?;
    if params.len() != slots.len() {
        return Err(Error::NodeParamsCount {
            expected: slots.len(),
            got: params.len(),
        });
    }
    if keys.len() != slots.len() {
        return Err(Error::InvalidField {
            field: "keys",
            reason: format!("expected {} node keys, got {}", slots.len(), keys.len()),
        });
    }
    for (slot, node_params) in slots.iter().zip(params) {
        check_params(spec.client, spec.consensus, slot, node_params)?;
    }
    let source = KeySource::from_seed(spec.key_seed.as_deref());
    let mut nodes = Vec::with_capacity(slots.len());
    for (index, ((slot, node_params), key)) in slots.iter().zip(params).zip(keys).enumerate() {
        let password_bytes = source.bytes32("password", index as u32, 0)?;
        nodes.push(PlannedNode {
            slot,
            params: node_params,
            key,
            password: hex::encode(&password_bytes[..16]),
        });
    }
    let mut validators: Vec<Address> = nodes
        .iter()
        .filter(|n| n.slot.role == Role::Validator)
        .map(|n| n.key.address())
        .collect();
    // Clients keep validator sets sorted; besu-docs asks for ascending order in extraData.
    validators.sort();
    let plan = Plan {
        spec,
        settings: &settings,
        nodes,
        validators,
        source,
    };
    let built = clients::build(&plan)?;
    let genesis_json = built
        .genesis
        .as_ref()
        .map(|genesis| {
            serde_json::to_string_pretty(genesis).map_err(|e| Error::Serialize {
                what: "genesis",
                reason: e.to_string(),
            })
        })
        .transpose()?;
    let static_nodes = plan.enodes();
    let mut node_configs = Vec::with_capacity(plan.nodes.len());
    for (planned, mut output) in plan.nodes.iter().zip(built.nodes) {
        if let (Some(json), Some(file)) = (&genesis_json, built.genesis_file) {
            output
                .files
                .insert(0, GeneratedFile::public(file, json.clone().into_bytes()));
        }
        node_configs.push(planned.config(spec.client, output));
    }
    Ok(GeneratedNetwork {
        name: spec.name.clone(),
        client: spec.client,
        consensus: spec.consensus,
        settings: plan.settings.clone(),
        genesis_json,
        genesis_file: built.genesis_file,
        extra_data: built.extra_data,
        validators: plan.validators.clone(),
        static_nodes,
        nodes: node_configs,
    })
}

/// The extraData layout a client x consensus pair uses, if any.
pub fn extra_data_format(client: Client, consensus: Consensus) -> Option<ExtraDataFormat> {
    match (client, consensus) {
        (Client::Anvil, _) => None,
        (_, Consensus::Clique) => Some(ExtraDataFormat::Clique),
        (Client::Quorum, Consensus::Ibft) => Some(ExtraDataFormat::QuorumIbft),
        (_, Consensus::Qbft) => Some(ExtraDataFormat::Qbft),
        (Client::Besu, Consensus::Ibft2) => Some(ExtraDataFormat::BesuIbft2),
        _ => None,
    }
}

fn check_params(client: Client, consensus: Consensus, slot: &NodeSlot, params: &NodeParams) -> Result<()> {
    let host_ok = !params.host.is_empty()
        && params
            .host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'));
    if !host_ok {
        return Err(Error::InvalidField {
            field: "host",
            reason: format!(
                "node `{}`: `{}` is not a host name or IP address",
                slot.name, params.host
            ),
        });
    }
    if !params.data_dir.is_absolute() {
        return Err(Error::InvalidField {
            field: "data_dir",
            reason: format!(
                "node `{}`: `{}` must be an absolute path",
                slot.name,
                params.data_dir.display()
            ),
        });
    }
    let missing = |port: &'static str| Error::MissingPort {
        node: slot.name.clone(),
        client,
        port,
    };
    if client == Client::Geth && params.ports.authrpc.is_none() {
        return Err(missing("authrpc"));
    }
    if consensus == Consensus::Raft && params.ports.raft.is_none() {
        return Err(missing("raft"));
    }
    Ok(())
}

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

    fn config(&self, client: Client, output: NodeOutput) -> NodeConfig {
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
            enode: (client != Client::Anvil).then(|| self.key.enode(host, ports.p2p)),
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
            .map(|n| n.key.enode(&n.params.host, n.params.ports.p2p))
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
