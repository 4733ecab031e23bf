//! How the Kubernetes backend is set up: the regions (a kube context and namespace each, how peers and the engine
//! reach the nodes' Services), the image pins, and the serializable form runners get from the engine.

use std::path::PathBuf;
use std::time::Duration;

use super::{Images, KubeBackend};
use crate::error::{Error, Result};
use crate::spec::Client;

/// The type of each node's Service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ServiceType {
    #[serde(rename = "ClusterIP")]
    ClusterIp,
    NodePort,
    LoadBalancer,
}

impl ServiceType {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "clusterip" => Some(Self::ClusterIp),
            "nodeport" => Some(Self::NodePort),
            "loadbalancer" => Some(Self::LoadBalancer),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIp => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// How the engine reaches a node's RPC and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Access {
    /// Through the Service's cluster DNS name (the engine runs in the cluster).
    Cluster,
    /// Through a node's address and the Service's node port.
    NodePort,
    /// Through the Service's load-balancer address.
    LoadBalancer,
}

impl Access {
    /// The type of a node's RPC Service this access needs.
    pub fn service_type(self) -> ServiceType {
        match self {
            Access::Cluster => ServiceType::ClusterIp,
            Access::NodePort => ServiceType::NodePort,
            Access::LoadBalancer => ServiceType::LoadBalancer,
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "cluster" => Some(Self::Cluster),
            "node-port" | "nodeport" => Some(Self::NodePort),
            "load-balancer" | "loadbalancer" => Some(Self::LoadBalancer),
            _ => None,
        }
    }
}

/// One configured region: where its API server is and how its nodes are reached.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KubeRegion {
    pub name: String,
    /// None: the engine's own service account (in-cluster).
    pub kubeconfig: Option<PathBuf>,
    pub context: Option<String>,
    pub namespace: String,
    /// Type of the nodes' Services; across regions it must be `NodePort` or `LoadBalancer`.
    pub service_type: ServiceType,
    pub access: Access,
    /// The address node ports are reached at; None: the first Ready node's.
    pub node_address: Option<String>,
    /// Who may reach the nodes' RPC load balancers (`access = "load-balancer"`): CIDRs; none means the cloud's
    /// default (often everyone).
    #[serde(default)]
    pub rpc_source_ranges: Vec<String>,
}

/// Settings of the Kubernetes backend, built once by the caller.
#[derive(Debug, Clone)]
pub struct KubeOptions {
    pub regions: Vec<KubeRegion>,
    pub images: Images,
    /// Name of this machine, recorded as the deployer's.
    pub host_id: String,
    /// Seconds a node's pod gets between SIGTERM and SIGKILL.
    pub kill_grace: Duration,
    /// How long load-balancer addresses and teardown may take.
    pub object_timeout: Duration,
}

impl KubeOptions {
    pub fn new(regions: Vec<KubeRegion>, images: Images, host_id: String) -> Self {
        Self {
            regions,
            images,
            host_id,
            kill_grace: Duration::from_secs(10),
            object_timeout: Duration::from_secs(120),
        }
    }

    pub(super) fn region(&self, name: &str) -> Result<&KubeRegion> {
        self.regions.iter().find(|r| r.name == name).ok_or_else(|| Error::Kube {
            region: name.to_string(),
            reason: format!(
                "is not configured ([[chain.kubernetes.regions]] has: {})",
                if self.regions.is_empty() {
                    "none".to_string()
                } else {
                    self.regions
                        .iter()
                        .map(|r| r.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        })
    }
}

/// An object dagctl made in a region outside a network's own (a Chaos Mesh fault): enough to delete it later,
/// from another process.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterObject {
    pub region: String,
    pub namespace: String,
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

/// The backend's settings as the configuration gives them (`[chain.kubernetes]`): serializable, so a task runner
/// gets them from the engine as JSON.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KubeSetup {
    pub regions: Vec<KubeRegion>,
    /// `(client, version, image)` pins, each by digest.
    pub images: Vec<(Client, String, String)>,
    pub kill_grace_seconds: u64,
}

impl KubeSetup {
    /// The backend these settings describe, recording `host` as the deployer's machine. Fails on an image not
    /// pinned by digest.
    pub fn backend(&self, host: String) -> Result<KubeBackend> {
        let images = Images::new(self.images.iter().cloned())?;
        let mut options = KubeOptions::new(self.regions.clone(), images, host);
        options.kill_grace = Duration::from_secs(self.kill_grace_seconds);
        Ok(KubeBackend::new(options))
    }
}
