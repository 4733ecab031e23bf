//! The Kubernetes backend: each node a StatefulSet of one pod running the client's official image (pinned by
//! digest) with the generated command line, its files in a ConfigMap, its keys in a Secret, and a Service for
//! p2p, RPC, WS and metrics, in the configured regions (a kube context and namespace each).
//!
//! [`NodeBackend::start`] checks everything it can before creating anything (the regions are configured and
//! answer, an image is pinned, names fit), then creates the Services first: their addresses (ClusterIP in one
//! region; node ports or load-balancer addresses across regions) go into the enodes the nodes are configured
//! with. A failure part-way deletes what was made. Every object carries `dagctl.io/network=<name>`; teardown
//! deletes by that label and waits until nothing is left. Readiness is the local backend's rule, probed through
//! the Services ([`Access`] says how the engine reaches them), with pod status for "gone" and the pod log API
//! for a failing node's tail.

mod api;
pub mod images;
mod record;
pub mod render;
pub mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use tokio_util::sync::CancellationToken;

pub use images::Images;
pub use record::{KubeNode, KubeRecord};
pub use watch::PodWatch;

use super::ready::{self, Watched, WatchedNode};
use super::{NodeBackend, NodeSignal, Progress, ReadyReport, TeardownReport};
use crate::error::{Error, Result};
use crate::output::{NodeParams, PeerAddress};
use crate::spec::{BackendKind, Client, Consensus, NetworkSpec, NodeSlot, Role, DEFAULT_REGION};
use api::RegionApi;
use render::{object_name, PodShape, MAX_OBJECT_NAME};

/// Log lines shown when a node fails.
const TAIL_LINES: i64 = 25;
/// Container waiting reasons that mean the node will not come up by itself.
const STUCK: &[&str] = &[
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];
/// How long a restarted node's new pod gets to run, and a restarted Clique signer to seal again.
const RESTART_TIMEOUT: Duration = Duration::from_secs(120);

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

    fn region(&self, name: &str) -> Result<&KubeRegion> {
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

/// Runs networks as pods.
#[derive(Clone)]
pub struct KubeBackend {
    options: KubeOptions,
}

/// The node Services' addresses, once they exist.
struct Reached {
    peer: PeerAddress,
    rpc: String,
    ws: Option<String>,
    metrics: Option<String>,
}

impl KubeBackend {
    pub fn new(options: KubeOptions) -> Self {
        Self { options }
    }

    pub fn options(&self) -> &KubeOptions {
        &self.options
    }

    /// The configured region each spec region maps to: the one named by its `context`, else by its name; a
    /// spec without regions runs in the first configured region.
    fn region_of(&self, spec: &NetworkSpec, spec_region: &str) -> Result<&KubeRegion> {
        let declared = spec.regions.iter().find(|r| r.name == spec_region);
        let name = declared.and_then(|r| r.context.as_deref()).unwrap_or(spec_region);
        if spec.regions.is_empty()
            && spec_region == DEFAULT_REGION
            && !self.options.regions.iter().any(|r| r.name == name)
        {
            return self.options.regions.first().ok_or_else(|| Error::Kube {
                region: DEFAULT_REGION.to_string(),
                reason: "no Kubernetes region is configured ([[chain.kubernetes.regions]] in dagctl.toml)".into(),
            });
        }
        self.options.region(name)
    }

    async fn connect_named(&self, name: &str) -> Result<RegionApi> {
        RegionApi::connect(self.options.region(name)?).await
    }

    /// Everything that can be checked before an object is made: the spec, names, the image, and each region
    /// (configured, reachable, of a Service type peers in other regions can dial).
    async fn preflight(
        &self,
        spec: &NetworkSpec,
    ) -> Result<(String, Vec<(NodeSlot, String)>, BTreeMap<String, RegionApi>)> {
        if spec.backend != BackendKind::Kubernetes {
            return Err(Error::InvalidField {
                field: "backend",
                reason: format!(
                    "the Kubernetes backend runs specs with `backend: kubernetes`, not `{}`",
                    spec.backend.as_str()
                ),
            });
        }
        let settings = spec.settings()?;
        let slots = spec.layout_with(&settings)?;
        if !spec.name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(Error::InvalidField {
                field: "name",
                reason: format!(
                    "`{}`: on Kubernetes a network name must start with a letter (it names Services)",
                    spec.name
                ),
            });
        }
        for slot in &slots {
            let name = object_name(&spec.name, &slot.name);
            if name.len() > MAX_OBJECT_NAME {
                return Err(Error::InvalidField {
                    field: "name",
                    reason: format!("`{name}` is longer than {MAX_OBJECT_NAME} characters: shorten the network name"),
                });
            }
        }
        let image = self.options.images.image(spec.client, &settings.version)?.to_string();
        let mut placed = Vec::with_capacity(slots.len());
        for slot in slots {
            let region = self.region_of(spec, &slot.region)?.name.clone();
            placed.push((slot, region));
        }
        let mut apis = BTreeMap::new();
        for (_, region) in &placed {
            if !apis.contains_key(region) {
                apis.insert(region.clone(), self.connect_named(region).await?);
            }
        }
        if apis.len() > 1 {
            if let Some(api) = apis.values().find(|a| a.region.service_type == ServiceType::ClusterIp) {
                return Err(Error::Kube {
                    region: api.region.name.clone(),
                    reason: "the network spans regions, so its nodes' Services must be NodePort or LoadBalancer (service_type) for peers in other regions to dial them".into(),
                });
            }
        }
        Ok((image, placed, apis))
    }

    async fn create(
        &self,
        spec: &NetworkSpec,
        image: &str,
        placed: &[(NodeSlot, String)],
        apis: &BTreeMap<String, RegionApi>,
        cancel: &CancellationToken,
        progress: Progress<'_>,
    ) -> Result<KubeRecord> {
        let check_cancel = || {
            if cancel.is_cancelled() {
                Err(Error::Cancelled(format!("starting network `{}`", spec.name)))
            } else {
                Ok(())
            }
        };
        let ports = render::container_ports(spec.client, spec.consensus);
        for api in apis.values() {
            api.apply(&render::headless_service(&spec.name, &ports)).await?;
        }
        let across_regions = apis.len() > 1;
        // Every Service first: load balancers get their addresses side by side.
        for (slot, region) in placed {
            check_cancel()?;
            let api = &apis[region];
            let peer = render::node_service(&spec.name, &slot.name, api.region.service_type.as_str(), &ports);
            api.apply(&peer).await?;
            let rpc = render::rpc_service(
                &spec.name,
                &slot.name,
                api.region.access.service_type().as_str(),
                &ports,
                &api.region.rpc_source_ranges,
            );
            api.apply(&rpc).await?;
        }
        let deadline = Instant::now() + self.options.object_timeout;
        let mut reached = Vec::with_capacity(placed.len());
        for (slot, region) in placed {
            reached.push(
                self.reach(&apis[region], spec, slot, across_regions, deadline, cancel)
                    .await?,
            );
        }
        progress(&format!(
            "{} Services in {} (enodes: {})",
            placed.len(),
            apis.keys().cloned().collect::<Vec<_>>().join(", "),
            if across_regions {
                "node ports or load balancers"
            } else {
                "cluster IPs"
            }
        ));
        let params: Vec<NodeParams> = reached
            .iter()
            .map(|r| NodeParams {
                data_dir: PathBuf::from(render::DATA_DIR),
                host: "0.0.0.0".into(),
                ports,
                advertise: Some(r.peer.clone()),
            })
            .collect();
        let mut network = crate::generate(spec, &params)?;
        let sealing_deferred = crate::backend::local::clique::defer_clique_sealing(&mut network);
        let shape = PodShape {
            resources: spec.resources.clone(),
            storage: spec.storage.clone(),
            grace_seconds: self.options.kill_grace.as_secs().max(1),
        };
        let mut nodes = Vec::with_capacity(placed.len());
        for ((node, (slot, region)), reach) in network.nodes.iter().zip(placed).zip(reached) {
            check_cancel()?;
            let api = &apis[region];
            for object in render::node_objects(&spec.name, spec.client, image, node, &shape) {
                api.apply(&object).await?;
            }
            nodes.push(KubeNode {
                name: slot.name.clone(),
                role: slot.role,
                region: region.clone(),
                namespace: api.region.namespace.clone(),
                object: object_name(&spec.name, &slot.name),
                rpc: reach.rpc,
                ws: reach.ws,
                metrics: reach.metrics,
                enode: node.enode.clone(),
                peer: reach.peer,
                address: node.address.to_checksum(None),
            });
        }
        progress(&format!(
            "{} StatefulSets of image {image} created{}",
            nodes.len(),
            if sealing_deferred {
                "; Clique signers seal once peered"
            } else {
                ""
            }
        ));
        Ok(KubeRecord {
            name: spec.name.clone(),
            client: spec.client,
            consensus: spec.consensus,
            chain_id: network.settings.chain_id,
            image: image.to_string(),
            sealing_deferred,
            kill_grace_seconds: shape.grace_seconds,
            deployer_host: self.options.host_id.clone(),
            deployer_pid: std::process::id(),
            regions: apis
                .values()
                .map(|a| (a.region.name.clone(), a.region.namespace.clone()))
                .collect(),
            nodes,
        })
    }

    /// How peers reach node `slot` (its peer Service) and the engine its RPC (its RPC Service).
    async fn reach(
        &self,
        api: &RegionApi,
        spec: &NetworkSpec,
        slot: &NodeSlot,
        across_regions: bool,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Reached> {
        let name = object_name(&spec.name, &slot.name);
        let ports = render::container_ports(spec.client, spec.consensus);
        let peer_service = self
            .settled_service(api, &name, api.region.service_type, deadline, cancel)
            .await?;
        let rpc_name = render::rpc_service_name(&spec.name, &slot.name);
        let rpc_service = self
            .settled_service(api, &rpc_name, api.region.access.service_type(), deadline, cancel)
            .await?;
        let fail = |reason: String| Error::Kube {
            region: api.region.name.clone(),
            reason,
        };
        let node_port = |service: &Service, port_name: &str| -> Result<u16> {
            service
                .spec
                .as_ref()
                .and_then(|s| s.ports.as_ref())
                .into_iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(port_name))
                .and_then(|p| p.node_port)
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| {
                    fail(format!(
                        "Service {} has no node port `{port_name}`",
                        service.metadata.name.as_deref().unwrap_or_default()
                    ))
                })
        };
        let needs_node_address = (across_regions && api.region.service_type == ServiceType::NodePort)
            || api.region.access == Access::NodePort;
        let node_address = match needs_node_address {
            true => Some(api.node_address().await?),
            false => None,
        };
        let peer = match (across_regions, api.region.service_type) {
            (false, _) => PeerAddress {
                host: peer_service
                    .spec
                    .as_ref()
                    .and_then(|s| s.cluster_ip.clone())
                    .filter(|ip| !ip.is_empty() && ip != "None")
                    .ok_or_else(|| fail(format!("Service {name} has no cluster IP")))?,
                p2p: ports.p2p,
                raft: ports.raft,
            },
            (true, ServiceType::NodePort) => PeerAddress {
                host: node_address.clone().unwrap_or_default(),
                p2p: node_port(&peer_service, "p2p")?,
                raft: ports.raft.map(|_| node_port(&peer_service, "raft")).transpose()?,
            },
            (true, _) => PeerAddress {
                host: load_balancer_ip(api, &peer_service).await?,
                p2p: ports.p2p,
                raft: ports.raft,
            },
        };
        let rpc_host = match api.region.access {
            Access::Cluster => format!("{rpc_name}.{}.svc", api.region.namespace),
            Access::NodePort => node_address.clone().unwrap_or_default(),
            Access::LoadBalancer => load_balancer_address(&rpc_service).unwrap_or_default(),
        };
        let url = |scheme: &str, port_name: &str, port: u16| -> Result<String> {
            let port = match api.region.access {
                Access::NodePort => node_port(&rpc_service, port_name)?,
                Access::Cluster | Access::LoadBalancer => port,
            };
            Ok(format!("{scheme}://{rpc_host}:{port}"))
        };
        let metrics_path = match spec.client {
            Client::Geth | Client::Quorum => "/debug/metrics/prometheus",
            _ => "/metrics",
        };
        Ok(Reached {
            peer,
            rpc: url("http", "rpc", ports.rpc)?,
            ws: match (spec.client, ports.ws) {
                // anvil serves WebSocket on its RPC port.
                (Client::Anvil, _) => Some(url("ws", "rpc", ports.rpc)?),
                (_, Some(ws)) => Some(url("ws", "ws", ws)?),
                (_, None) => None,
            },
            metrics: match ports.metrics {
                Some(m) => Some(format!("{}{metrics_path}", url("http", "metrics", m)?)),
                None => None,
            },
        })
    }

    /// Service `name` once what its type promises is there (a load balancer's address can take a while), by
    /// `deadline` and unless `cancel` fires first.
    async fn settled_service(
        &self,
        api: &RegionApi,
        name: &str,
        service_type: ServiceType,
        deadline: Instant,
        cancel: &CancellationToken,
    ) -> Result<Service> {
        loop {
            let service = api.service(name).await?;
            if service_type != ServiceType::LoadBalancer || load_balancer_address(&service).is_some() {
                return Ok(service);
            }
            if Instant::now() >= deadline {
                return Err(Error::Kube {
                    region: api.region.name.clone(),
                    reason: format!(
                        "Service {name} got no load-balancer address in {:?}",
                        self.options.object_timeout
                    ),
                });
            }
            tokio::select! {
                _ = cancel.cancelled() => {
                    return Err(Error::Cancelled(format!("waiting for Service {name}'s load balancer")))
                }
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// Deletes `network`'s objects in `regions` and waits until they are gone; how many StatefulSets there were.
    async fn remove(&self, network: &str, regions: &[String]) -> Result<usize> {
        let mut stateful_sets = 0;
        let mut first_error = None;
        for region in regions {
            let removed = async {
                let api = self.connect_named(region).await?;
                let count = api.delete_network(network).await?;
                api.wait_network_gone(network, self.options.kill_grace + self.options.object_timeout)
                    .await?;
                Ok::<usize, Error>(count)
            }
            .await;
            match removed {
                Ok(count) => stateful_sets += count,
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        match first_error {
            Some(err) => Err(err),
            None => Ok(stateful_sets),
        }
    }

    /// The connected regions of `record`.
    async fn connect_record(&self, record: &KubeRecord) -> Result<BTreeMap<String, RegionApi>> {
        let mut apis = BTreeMap::new();
        for (region, _) in &record.regions {
            apis.insert(region.clone(), self.connect_named(region).await?);
        }
        Ok(apis)
    }
}

/// A Service's load-balancer address (IP or host name), once it has one.
fn load_balancer_address(service: &Service) -> Option<String> {
    let ingress = service.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref()?;
    ingress.iter().find_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
}

/// A load balancer's address as an IP, for enodes: a host name (as some clouds give) is resolved once, here, since
/// not every client resolves names in its peers' enodes.
async fn load_balancer_ip(api: &RegionApi, service: &Service) -> Result<String> {
    let address = load_balancer_address(service).unwrap_or_default();
    if address.parse::<std::net::IpAddr>().is_ok() {
        return Ok(address);
    }
    let resolved = tokio::time::timeout(Duration::from_secs(10), tokio::net::lookup_host((address.as_str(), 0))).await;
    match resolved {
        Ok(Ok(mut addresses)) => addresses.next().map(|a| a.ip().to_string()).ok_or_else(|| Error::Kube {
            region: api.region.name.clone(),
            reason: format!("load balancer `{address}` resolves to no address"),
        }),
        _ => Err(Error::Kube {
            region: api.region.name.clone(),
            reason: format!("load balancer `{address}` cannot be resolved to an IP for the enodes"),
        }),
    }
}

/// Why a node's pod will not serve by itself, if it will not.
fn pod_gone(pod: &Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    if status.phase.as_deref() == Some("Failed") {
        return Some(format!(
            "its pod failed: {} {}",
            status.reason.as_deref().unwrap_or_default(),
            status.message.as_deref().unwrap_or_default()
        ));
    }
    let init = status.init_container_statuses.iter().flatten();
    for container in init.chain(status.container_statuses.iter().flatten()) {
        let state = container.state.as_ref();
        if let Some(waiting) = state.and_then(|s| s.waiting.as_ref()) {
            let reason = waiting.reason.as_deref().unwrap_or_default();
            if STUCK.contains(&reason) {
                return Some(format!(
                    "its container {} is stuck: {reason} {}",
                    container.name,
                    waiting.message.as_deref().unwrap_or_default()
                ));
            }
        }
        if let Some(done) = state.and_then(|s| s.terminated.as_ref()) {
            if container.name == "node" || done.exit_code != 0 {
                return Some(format!(
                    "its container {} exited with code {}{}",
                    container.name,
                    done.exit_code,
                    done.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
                ));
            }
        }
        if container.name == "node" && container.restart_count > 0 {
            return Some(format!("its container restarted {} times", container.restart_count));
        }
    }
    None
}

fn pod_running(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") && pod_gone(pod).is_none()
}

/// A record being waited for, with its regions connected.
struct Watch<'a> {
    record: &'a KubeRecord,
    apis: BTreeMap<String, RegionApi>,
}

impl Watch<'_> {
    /// Each node's pod as it is now (None: no pod yet).
    async fn pods(&self) -> Result<Vec<Option<Pod>>> {
        let mut by_name: BTreeMap<String, Pod> = BTreeMap::new();
        for api in self.apis.values() {
            for pod in api.pods(&self.record.name).await? {
                by_name.insert(pod.metadata.name.clone().unwrap_or_default(), pod);
            }
        }
        Ok(self.record.nodes.iter().map(|n| by_name.remove(&n.pod())).collect())
    }
}

impl Watched for Watch<'_> {
    fn network(&self) -> &str {
        &self.record.name
    }

    fn client(&self) -> Client {
        self.record.client
    }

    fn consensus(&self) -> Consensus {
        self.record.consensus
    }

    fn sealing_deferred(&self) -> bool {
        self.record.sealing_deferred
    }

    fn nodes(&self) -> Vec<WatchedNode<'_>> {
        self.record
            .nodes
            .iter()
            .map(|n| WatchedNode {
                name: &n.name,
                role: n.role,
                rpc: &n.rpc,
                address: &n.address,
            })
            .collect()
    }

    async fn gone(&self) -> Option<(usize, String)> {
        // An API server that does not answer for a moment is not a node that is gone.
        let pods = self.pods().await.ok()?;
        pods.iter()
            .enumerate()
            .find_map(|(i, pod)| pod.as_ref().and_then(pod_gone).map(|why| (i, why)))
    }

    async fn log_tail(&self, index: usize) -> String {
        let node = &self.record.nodes[index];
        let Some(api) = self.apis.get(&node.region) else {
            return String::new();
        };
        match api.log_tail(&node.pod(), TAIL_LINES).await {
            Ok(text) if text.trim().is_empty() => format!("\n(log of pod {} is empty)", node.pod()),
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                let mut out = format!("\nlast {} lines of pod {}:", lines.len(), node.pod());
                for line in lines {
                    out.push_str("\n  ");
                    out.push_str(line);
                }
                out
            }
            Err(err) => format!("\n(no log of pod {}: {err})", node.pod()),
        }
    }
}

impl NodeBackend for KubeBackend {
    type Record = KubeRecord;

    const KIND: &'static str = "kubernetes";

    /// Networks on Kubernetes are reached through the configured regions, from any engine that has them.
    fn host_id(&self) -> &str {
        "kubernetes"
    }

    async fn start(
        &self,
        spec: &NetworkSpec,
        cancel: &CancellationToken,
        progress: Progress<'_>,
    ) -> Result<KubeRecord> {
        let (image, placed, apis) = self.preflight(spec).await?;
        match self.create(spec, &image, &placed, &apis, cancel, progress).await {
            Ok(record) => Ok(record),
            Err(err) => {
                progress(&format!(
                    "starting network `{}` failed; deleting what was made",
                    spec.name
                ));
                let regions: Vec<String> = apis.keys().cloned().collect();
                if let Err(cleanup) = self.remove(&spec.name, &regions).await {
                    progress(&format!("cleaning up network `{}` failed: {cleanup}", spec.name));
                }
                Err(err)
            }
        }
    }

    async fn wait_ready(
        &self,
        record: &KubeRecord,
        timeout: Duration,
        cancel: &CancellationToken,
        progress: Progress<'_>,
    ) -> Result<ReadyReport> {
        let watch = Watch {
            record,
            apis: self.connect_record(record).await?,
        };
        ready::wait_ready(&watch, timeout, cancel, progress).await
    }

    async fn stop(&self, record: &KubeRecord) -> Result<TeardownReport> {
        let regions: Vec<String> = record.regions.iter().map(|(r, _)| r.clone()).collect();
        let stopped = self.remove(&record.name, &regions).await?;
        Ok(TeardownReport {
            stopped,
            removed_dir: true,
        })
    }

    async fn discard(&self, name: &str, _kind: &str) -> Result<()> {
        let regions: Vec<String> = self.options.regions.iter().map(|r| r.name.clone()).collect();
        self.remove(name, &regions).await.map(|_| ())
    }

    fn describe(&self, record: &KubeRecord) -> serde_json::Value {
        record.endpoints()
    }

    async fn signal(&self, record: &KubeRecord, node: &str, signal: NodeSignal) -> Result<()> {
        let node = &record.nodes[record.node_index(node)?];
        let api = self.connect_named(&node.region).await?;
        match signal {
            // A grace of 1s, not 0: 0 force-deletes the pod without waiting for its container to end, and
            // the StatefulSet may start the node again beside it (two signers with one key and one volume).
            NodeSignal::Kill => api.delete_pod(&node.pod(), Some(1)).await,
            NodeSignal::Terminate => api.delete_pod(&node.pod(), None).await,
            NodeSignal::Stop | NodeSignal::Continue => Err(Error::Network {
                name: record.name.clone(),
                reason: format!(
                    "{signal} cannot be sent to a pod through the Kubernetes API; use a pod-failure fault (Chaos Mesh) to pause node `{}`",
                    node.name
                ),
            }),
        }
    }

    async fn restart_node(&self, record: &KubeRecord, node: &str, progress: Progress<'_>) -> Result<KubeRecord> {
        let index = record.node_index(node)?;
        let node = &record.nodes[index];
        let apis = self.connect_record(record).await?;
        let api = apis.get(&node.region).ok_or_else(|| Error::Network {
            name: record.name.clone(),
            reason: format!(
                "node `{}` is in region `{}`, which the record does not list",
                node.name, node.region
            ),
        })?;
        let before = api
            .pods(&record.name)
            .await?
            .into_iter()
            .find(|p| p.metadata.name.as_deref() == Some(node.pod().as_str()))
            .and_then(|p| p.metadata.uid);
        api.delete_pod(&node.pod(), None).await?;
        progress(&format!(
            "node `{}`: pod {} deleted; its StatefulSet makes it again",
            node.name,
            node.pod()
        ));
        let deadline = Instant::now() + RESTART_TIMEOUT + self.options.kill_grace;
        loop {
            let pod = api
                .pods(&record.name)
                .await?
                .into_iter()
                .find(|p| p.metadata.name.as_deref() == Some(node.pod().as_str()));
            if let Some(pod) = pod.filter(|p| p.metadata.uid != before && pod_running(p)) {
                let _ = pod;
                break;
            }
            if Instant::now() >= deadline {
                return Err(Error::Network {
                    name: record.name.clone(),
                    reason: format!(
                        "node `{}`: its new pod is not running after {:?}",
                        node.name,
                        RESTART_TIMEOUT + self.options.kill_grace
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if record.sealing_deferred && node.role == Role::Validator {
            let watch = Watch { record, apis };
            ready::start_sealing(&watch, index, RESTART_TIMEOUT).await?;
        }
        Ok(record.clone())
    }

    async fn dead_nodes(&self, record: &KubeRecord) -> Result<Vec<String>> {
        let watch = Watch {
            record,
            apis: self.connect_record(record).await?,
        };
        let pods = watch.pods().await?;
        Ok(record
            .nodes
            .iter()
            .zip(pods)
            .filter(|(_, pod)| !pod.as_ref().is_some_and(pod_running))
            .map(|(n, _)| n.name.clone())
            .collect())
    }

    async fn apply_cluster_object(&self, region: &str, object: &serde_json::Value) -> Result<()> {
        let api = self.connect_named(region).await?;
        api.apply(object).await.map(|_| ())
    }

    async fn delete_cluster_object(&self, object: &ClusterObject) -> Result<()> {
        let api = self.connect_named(&object.region).await?;
        api.delete_object(&object.namespace, &object.api_version, &object.kind, &object.name)
            .await
    }

    async fn pod_watch(&self, record: &KubeRecord) -> Result<Option<PodWatch>> {
        let apis = self.connect_record(record).await?;
        Ok(Some(PodWatch::new(record.clone(), apis)))
    }

    fn deploy_may_be_elsewhere(&self, _kind: &str, record: Option<&KubeRecord>) -> bool {
        record.is_none_or(|r| r.deployer_host != self.options.host_id)
    }

    fn deploy_in_progress(&self, record: &KubeRecord) -> bool {
        record.deployer_host == self.options.host_id
            && record.deployer_pid != std::process::id()
            && crate::backend::local::process::pid_alive(record.deployer_pid)
    }
}
