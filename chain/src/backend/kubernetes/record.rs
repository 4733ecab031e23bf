//! What the Kubernetes backend records of a network in the store: where each node's objects are and how its
//! endpoints are reached. The regions' connections come from the configuration, by name.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::output::PeerAddress;
use crate::spec::{Client, Consensus, Role};

/// One node: its objects (all named [`KubeNode::object`]) and endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeNode {
    pub name: String,
    pub role: Role,
    /// The configured region it runs in.
    pub region: String,
    pub namespace: String,
    /// Name of its Service, ConfigMap, Secret and StatefulSet; its pod is `<object>-0`.
    pub object: String,
    /// Where the engine reaches its JSON-RPC.
    pub rpc: String,
    pub ws: Option<String>,
    /// Its Prometheus endpoint, when the client serves one.
    pub metrics: Option<String>,
    pub enode: Option<String>,
    /// Where its peers dial it.
    pub peer: PeerAddress,
    /// Its own (signer) address.
    pub address: String,
}

impl KubeNode {
    /// The node's pod (a StatefulSet of one).
    pub fn pod(&self) -> String {
        format!("{}-0", self.object)
    }
}

/// A network on Kubernetes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeRecord {
    pub name: String,
    pub client: Client,
    pub consensus: Consensus,
    pub chain_id: u64,
    /// The image every node runs (pinned by digest).
    pub image: String,
    /// Clique signers start sealing over RPC once peered (see the local backend's `clique` module).
    #[serde(default)]
    pub sealing_deferred: bool,
    /// Seconds a node's pod gets between SIGTERM and SIGKILL (also a pod-kill fault's grace).
    #[serde(default = "default_grace")]
    pub kill_grace_seconds: u64,
    /// The machine and process that deployed it; while that process lives the deploy may still be going on.
    pub deployer_host: String,
    pub deployer_pid: u32,
    /// Every region the network has objects in, with its namespace.
    pub regions: Vec<(String, String)>,
    pub nodes: Vec<KubeNode>,
}

fn default_grace() -> u64 {
    10
}

impl KubeRecord {
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

    /// The endpoints pushed as XCom by `chain.deploy_network`, in the local backend's shape.
    pub fn endpoints(&self) -> serde_json::Value {
        let nodes: Vec<serde_json::Value> = self
            .nodes
            .iter()
            .map(|n| {
                serde_json::json!({
                    "name": n.name,
                    "rpc": n.rpc,
                    "ws": n.ws,
                    "metrics": n.metrics,
                    "enode": n.enode,
                    "address": n.address,
                    "region": n.region,
                    "namespace": n.namespace,
                    "pod": n.pod(),
                })
            })
            .collect();
        serde_json::json!({
            "name": self.name,
            "backend": "kubernetes",
            "client": self.client,
            "consensus": self.consensus,
            "chain_id": self.chain_id,
            "image": self.image,
            "rpc": self.nodes.first().map(|n| n.rpc.clone()),
            "nodes": nodes,
        })
    }
}
