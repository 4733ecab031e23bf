//! The Kubernetes backend: each node a StatefulSet of one pod running the client's official image (pinned by
//! digest) with the generated command line, its files in a ConfigMap, its keys in a Secret, a peer Service (p2p)
//! and an RPC Service (RPC, WS, metrics), in the configured regions (a kube context and namespace each).
//!
//! - [`settings`]: regions, options, image pins, what runners get; [`render`]: the objects as JSON;
//!   [`api`]: one region's API server; [`reach`]: where peers and the engine reach a node; [`pods`]: pod status,
//!   readiness's view and log tails; [`watch`]: pod usage and logs for monitors; [`record`]: what is stored.
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
mod pods;
mod reach;
mod record;
pub mod render;
mod settings;
pub mod watch;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

pub use images::Images;
pub use record::{KubeNode, KubeRecord};
pub use settings::{Access, ClusterObject, KubeOptions, KubeRegion, KubeSetup, ServiceType};
pub use watch::PodWatch;

use super::ready;
use super::{NodeBackend, NodeSignal, Progress, ReadyReport, TeardownReport};
use crate::error::{Error, Result};
use crate::output::NodeParams;
use crate::spec::{BackendKind, NetworkSpec, NodeSlot, Role, DEFAULT_REGION};
use api::RegionApi;
use pods::{pod_running, Watch};
use render::{object_name, PodShape, MAX_OBJECT_NAME};

/// How long a restarted node's new pod gets to run, and a restarted Clique signer to seal again.
const RESTART_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs networks as pods.
#[derive(Clone)]
pub struct KubeBackend {
    options: KubeOptions,
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
        let watch = Watch::new(record, self.connect_record(record).await?);
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
            let watch = Watch::new(record, apis);
            ready::start_sealing(&watch, index, RESTART_TIMEOUT).await?;
        }
        Ok(record.clone())
    }

    async fn dead_nodes(&self, record: &KubeRecord) -> Result<Vec<String>> {
        let watch = Watch::new(record, self.connect_record(record).await?);
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
