//! [`Backends`]: the engine's one [`NodeBackend`], which runs each network on the backend its spec names
//! (`backend: local`, the default, or `backend: kubernetes` when regions are configured) and acts on a stored
//! network through the backend its record belongs to. The operators, the CLI and the scheduler's reaper and
//! recovery all go through it, so a spec runs locally or on Kubernetes by changing one field.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::kubernetes::{ClusterObject, KubeBackend, KubeRecord, PodWatch};
use super::local::{LocalBackend, NetworkRecord};
use super::{NodeBackend, NodeSignal, Progress, ReadyReport, TeardownReport};
use crate::error::{Error, Result};
use crate::spec::{BackendKind, NetworkSpec};

/// The record of a network on either backend, stored as that backend's own record (a local record reads as
/// before; a Kubernetes record has fields a local one lacks, so it is tried first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AnyRecord {
    Kubernetes(KubeRecord),
    Local(NetworkRecord),
}

impl AnyRecord {
    pub fn name(&self) -> &str {
        match self {
            AnyRecord::Local(r) => &r.name,
            AnyRecord::Kubernetes(r) => &r.name,
        }
    }

    /// Client, consensus and chain id.
    pub fn chain(&self) -> (crate::spec::Client, crate::spec::Consensus, u64) {
        match self {
            AnyRecord::Local(r) => (r.client, r.consensus, r.chain_id),
            AnyRecord::Kubernetes(r) => (r.client, r.consensus, r.chain_id),
        }
    }

    /// Name and role of every node.
    pub fn roles(&self) -> Vec<(String, crate::spec::Role)> {
        match self {
            AnyRecord::Local(r) => r.nodes.iter().map(|n| (n.name.clone(), n.role)).collect(),
            AnyRecord::Kubernetes(r) => r.nodes.iter().map(|n| (n.name.clone(), n.role)).collect(),
        }
    }

    /// `(node, rpc url)` of every node.
    pub fn rpc_endpoints(&self) -> Vec<(String, String)> {
        match self {
            AnyRecord::Local(r) => r.nodes.iter().map(|n| (n.name.clone(), n.rpc.clone())).collect(),
            AnyRecord::Kubernetes(r) => r.nodes.iter().map(|n| (n.name.clone(), n.rpc.clone())).collect(),
        }
    }

    /// `(node, websocket url)` of every node that serves one.
    pub fn ws_endpoints(&self) -> Vec<(String, String)> {
        match self {
            AnyRecord::Local(r) => r
                .nodes
                .iter()
                .filter_map(|n| Some((n.name.clone(), n.ws.clone()?)))
                .collect(),
            AnyRecord::Kubernetes(r) => r
                .nodes
                .iter()
                .filter_map(|n| Some((n.name.clone(), n.ws.clone()?)))
                .collect(),
        }
    }

    /// The local record, or an error saying what is not available on Kubernetes yet.
    pub fn local(&self, what: &str) -> Result<&NetworkRecord> {
        match self {
            AnyRecord::Local(record) => Ok(record),
            AnyRecord::Kubernetes(record) => Err(Error::Network {
                name: record.name.clone(),
                reason: format!("it runs on Kubernetes, where {what} is not available"),
            }),
        }
    }
}

/// Local networks always; Kubernetes networks when `[chain.kubernetes]` has regions.
#[derive(Clone)]
pub struct Backends {
    local: LocalBackend,
    kube: Option<KubeBackend>,
}

impl Backends {
    pub fn new(local: LocalBackend, kube: Option<KubeBackend>) -> Self {
        Self { local, kube }
    }

    pub fn local(&self) -> &LocalBackend {
        &self.local
    }

    pub fn kubernetes(&self) -> Option<&KubeBackend> {
        self.kube.as_ref()
    }

    fn kube(&self) -> Result<&KubeBackend> {
        self.kube.as_ref().ok_or_else(|| Error::InvalidField {
            field: "backend",
            reason: "`kubernetes` needs regions in [chain.kubernetes] of dagctl.toml; none are configured".into(),
        })
    }
}

impl NodeBackend for Backends {
    type Record = AnyRecord;

    const KIND: &'static str = LocalBackend::KIND;

    fn host_id(&self) -> &str {
        self.local.host_id()
    }

    fn kind_of(&self, spec: &NetworkSpec) -> Result<&'static str> {
        match spec.backend {
            BackendKind::Local => Ok(LocalBackend::KIND),
            BackendKind::Kubernetes => self.kube().map(|_| KubeBackend::KIND),
        }
    }

    fn serves(&self, kind: &str) -> bool {
        kind == LocalBackend::KIND || (kind == KubeBackend::KIND && self.kube.is_some())
    }

    fn host_for(&self, kind: &str) -> &str {
        match (&self.kube, kind == KubeBackend::KIND) {
            (Some(kube), true) => kube.host_id(),
            _ => self.local.host_id(),
        }
    }

    async fn start(&self, spec: &NetworkSpec, cancel: &CancellationToken, progress: Progress<'_>) -> Result<AnyRecord> {
        match spec.backend {
            BackendKind::Local => self.local.start(spec, cancel, progress).await.map(AnyRecord::Local),
            BackendKind::Kubernetes => self
                .kube()?
                .start(spec, cancel, progress)
                .await
                .map(AnyRecord::Kubernetes),
        }
    }

    async fn wait_ready(
        &self,
        record: &AnyRecord,
        timeout: Duration,
        cancel: &CancellationToken,
        progress: Progress<'_>,
    ) -> Result<ReadyReport> {
        match record {
            AnyRecord::Local(r) => self.local.wait_ready(r, timeout, cancel, progress).await,
            AnyRecord::Kubernetes(r) => self.kube()?.wait_ready(r, timeout, cancel, progress).await,
        }
    }

    async fn stop(&self, record: &AnyRecord) -> Result<TeardownReport> {
        match record {
            AnyRecord::Local(r) => self.local.stop(r).await,
            AnyRecord::Kubernetes(r) => self.kube()?.stop(r).await,
        }
    }

    async fn discard(&self, name: &str, kind: &str) -> Result<()> {
        if kind == KubeBackend::KIND {
            self.kube()?.discard(name, kind).await
        } else {
            self.local.discard(name, kind).await
        }
    }

    fn describe(&self, record: &AnyRecord) -> serde_json::Value {
        match record {
            AnyRecord::Local(r) => self.local.describe(r),
            AnyRecord::Kubernetes(r) => r.endpoints(),
        }
    }

    async fn signal(&self, record: &AnyRecord, node: &str, signal: NodeSignal) -> Result<()> {
        match record {
            AnyRecord::Local(r) => self.local.signal(r, node, signal).await,
            AnyRecord::Kubernetes(r) => self.kube()?.signal(r, node, signal).await,
        }
    }

    async fn restart_node(&self, record: &AnyRecord, node: &str, progress: Progress<'_>) -> Result<AnyRecord> {
        match record {
            AnyRecord::Local(r) => self.local.restart_node(r, node, progress).await.map(AnyRecord::Local),
            AnyRecord::Kubernetes(r) => self
                .kube()?
                .restart_node(r, node, progress)
                .await
                .map(AnyRecord::Kubernetes),
        }
    }

    async fn dead_nodes(&self, record: &AnyRecord) -> Result<Vec<String>> {
        match record {
            AnyRecord::Local(r) => self.local.dead_nodes(r).await,
            AnyRecord::Kubernetes(r) => self.kube()?.dead_nodes(r).await,
        }
    }

    async fn apply_cluster_object(&self, region: &str, object: &serde_json::Value) -> Result<()> {
        self.kube()?.apply_cluster_object(region, object).await
    }

    async fn delete_cluster_object(&self, object: &ClusterObject) -> Result<()> {
        self.kube()?.delete_cluster_object(object).await
    }

    async fn pod_watch(&self, record: &AnyRecord) -> Result<Option<PodWatch>> {
        match record {
            AnyRecord::Local(_) => Ok(None),
            AnyRecord::Kubernetes(r) => self.kube()?.pod_watch(r).await,
        }
    }

    fn deploy_may_be_elsewhere(&self, kind: &str, record: Option<&AnyRecord>) -> bool {
        let Some(kube) = &self.kube else { return false };
        match record {
            Some(AnyRecord::Kubernetes(r)) => kube.deploy_may_be_elsewhere(kind, Some(r)),
            Some(AnyRecord::Local(_)) => false,
            None => kind == KubeBackend::KIND && kube.deploy_may_be_elsewhere(kind, None),
        }
    }

    fn deploy_in_progress(&self, record: &AnyRecord) -> bool {
        match record {
            AnyRecord::Local(r) => self.local.deploy_in_progress(r),
            AnyRecord::Kubernetes(r) => self.kube.as_ref().is_some_and(|k| k.deploy_in_progress(r)),
        }
    }
}
