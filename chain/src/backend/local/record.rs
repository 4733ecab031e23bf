//! What the local backend records of a network in the store: its nodes, their processes and endpoints.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::process;
use crate::error::{Error, Result};
use crate::output::{CommandSpec, NodePorts};
use crate::spec::{Client, Consensus, Role};

/// One running node as recorded in the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub role: Role,
    pub region: String,
    pub rpc: String,
    pub ws: Option<String>,
    pub enode: Option<String>,
    /// The node's own address (its signer address for validators).
    pub address: String,
    pub pid: Option<u32>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub ports: NodePorts,
    /// How the node was started, so it can be started again ([`super::LocalBackend`]'s `restart_node`).
    /// Absent in records written before restarts existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<NodeLaunch>,
    /// Seconds the node's wall clock is skewed by while a clock fault holds: it runs under the clock
    /// supervisor ([`crate::chaos::clock`]) whenever it is (re)started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_offset: Option<i64>,
}

/// The program (resolved to a path) and command line a node runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLaunch {
    pub program: PathBuf,
    pub command: CommandSpec,
}

/// A network started by the local backend: everything needed to probe, re-attach to or stop it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    pub name: String,
    pub client: Client,
    pub consensus: Consensus,
    pub chain_id: u64,
    /// The network's directory: node data dirs and logs live under it.
    pub base_dir: PathBuf,
    /// The process that deployed it; while it lives and the network is `starting`, leave it alone.
    pub deployer_pid: u32,
    /// Clique signers were started without `--mine`; readiness starts sealing over RPC
    /// (`miner_start`) once every node has its peers. See [`defer_clique_sealing`].
    #[serde(default)]
    pub sealing_deferred: bool,
    pub nodes: Vec<NodeRecord>,
    /// The nodes' network namespaces (`isolation: netns`); absent when they run on loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<super::netns::NetnsLayout>,
}

impl NetworkRecord {
    /// The endpoints pushed as XCom by `chain.deploy_network` and printed by `dagctl net up`.
    pub fn endpoints(&self) -> serde_json::Value {
        let nodes: Vec<serde_json::Value> = self
            .nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "name": n.name,
                    "rpc": n.rpc,
                    "ws": n.ws,
                    "enode": n.enode,
                    "address": n.address,
                    "pid": n.pid,
                })
            })
            .collect();
        serde_json::json!({
            "name": self.name,
            "client": self.client,
            "consensus": self.consensus,
            "chain_id": self.chain_id,
            "rpc": self.nodes.first().map(|n| n.rpc.clone()),
            "nodes": nodes,
        })
    }

    /// The index of node `name`, or an error listing the nodes there are.
    pub fn node_index(&self, name: &str) -> Result<usize> {
        self.nodes.iter().position(|n| n.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
            Error::Network {
                name: self.name.clone(),
                reason: format!("has no node `{name}`; nodes: {}", known.join(", ")),
            }
        })
    }

    /// `(pid, data_dir)` of every node that has a process.
    pub(super) fn processes(&self) -> Vec<(u32, PathBuf)> {
        self.nodes
            .iter()
            .filter_map(|n| n.pid.map(|pid| (pid, n.data_dir.clone())))
            .collect()
    }

    /// Names of nodes whose process is gone.
    pub fn dead_nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|n| !n.pid.is_some_and(|pid| process::is_node_alive(pid, &n.data_dir)))
            .map(|n| n.name.clone())
            .collect()
    }
}
