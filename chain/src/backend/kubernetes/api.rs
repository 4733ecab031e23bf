//! One region's API server: connect (and prove it answers), apply objects server-side, read pods and their
//! logs, delete a network's objects and wait until they are gone. Every call is bounded in time.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::Value;

use super::render::network_selector;
use super::KubeRegion;
use crate::error::{Error, Result};

/// The longest one API call may take (kube's client has no read timeout of its own).
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How long connecting to a region (its `/version`) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The field manager of dagctl's server-side applies.
const FIELD_MANAGER: &str = "dagctl";
/// Every kind of object a network has, deleted in this order (the StatefulSets first, so no pod comes back).
const KINDS: &[(&str, &str, &str)] = &[
    ("apps", "v1", "StatefulSet"),
    ("", "v1", "Pod"),
    ("", "v1", "Service"),
    ("", "v1", "ConfigMap"),
    ("", "v1", "Secret"),
    ("", "v1", "PersistentVolumeClaim"),
];

/// A connected region.
#[derive(Clone)]
pub(super) struct RegionApi {
    pub region: KubeRegion,
    client: kube::Client,
}

async fn timed<T>(
    what: impl Fn() -> String,
    call: impl std::future::Future<Output = kube::Result<T>>,
) -> Result<T, String> {
    match tokio::time::timeout(CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(format!("{}: {}", what(), describe(&err))),
        Err(_) => Err(format!("{}: no answer in {}s", what(), CALL_TIMEOUT.as_secs())),
    }
}

fn describe(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

fn not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.code == 404)
}

fn resource(group: &str, version: &str, kind: &str) -> ApiResource {
    let gvk = GroupVersionKind::gvk(group, version, kind);
    // Chaos Mesh's resources are plural as they are singular (`networkchaos`), which kube's guess (`…chaoses`)
    // is not.
    if kind.ends_with("Chaos") {
        ApiResource::from_gvk_with_plural(&gvk, &kind.to_ascii_lowercase())
    } else {
        ApiResource::from_gvk(&gvk)
    }
}

impl RegionApi {
    /// A client for `region` that has answered `/version`.
    pub async fn connect(region: &KubeRegion) -> Result<Self> {
        let fail = |reason: String| Error::Kube {
            region: region.name.clone(),
            reason,
        };
        let client = worker::executor::kubernetes::client(region.kubeconfig.as_deref(), region.context.as_deref())
            .await
            .map_err(fail)?;
        match tokio::time::timeout(CONNECT_TIMEOUT, client.apiserver_version()).await {
            Ok(Ok(_)) => {}
            Ok(Err(err)) => return Err(fail(format!("the API server is not reachable: {}", describe(&err)))),
            Err(_) => {
                return Err(fail(format!(
                    "the API server did not answer in {}s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
        }
        Ok(Self {
            region: region.clone(),
            client,
        })
    }

    /// The region's API client.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    fn error(&self, reason: String) -> Error {
        Error::Kube {
            region: self.region.name.clone(),
            reason,
        }
    }

    fn dynamic(&self, group: &str, version: &str, kind: &str) -> (Api<DynamicObject>, ApiResource) {
        let resource = resource(group, version, kind);
        (
            Api::namespaced_with(self.client.clone(), &self.region.namespace, &resource),
            resource,
        )
    }

    /// Creates or updates `object` (server-side apply, dagctl's field manager) in the region's namespace and
    /// returns it as the server stored it.
    pub async fn apply(&self, object: &Value) -> Result<Value> {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let (api, _) = self.dynamic(group, version, kind);
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let applied = timed(
            || format!("applying {kind} {}/{name}", self.region.namespace),
            api.patch(name, &params, &Patch::Apply(object)),
        )
        .await
        .map_err(|reason| self.error(reason))?;
        serde_json::to_value(applied).map_err(|e| self.error(format!("{kind} {name}: {e}")))
    }

    /// Service `name` as it is now.
    pub async fn service(&self, name: &str) -> Result<Service> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), &self.region.namespace);
        timed(|| format!("reading Service {name}"), api.get(name))
            .await
            .map_err(|reason| self.error(reason))
    }

    /// The pods of `network`.
    pub async fn pods(&self, network: &str) -> Result<Vec<Pod>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.region.namespace);
        let params = ListParams::default().labels(&network_selector(network));
        timed(|| format!("listing the pods of network `{network}`"), api.list(&params))
            .await
            .map(|list| list.items)
            .map_err(|reason| self.error(reason))
    }

    /// Deletes pod `name` (`grace` seconds to stop; the pod's own when `None`). A pod already gone is fine.
    pub async fn delete_pod(&self, name: &str, grace: Option<u32>) -> Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.region.namespace);
        let params = DeleteParams {
            grace_period_seconds: grace,
            ..DeleteParams::default()
        };
        match tokio::time::timeout(CALL_TIMEOUT, api.delete(name, &params)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) if not_found(&err) => Ok(()),
            Ok(Err(err)) => Err(self.error(format!("deleting pod {name}: {}", describe(&err)))),
            Err(_) => Err(self.error(format!("deleting pod {name}: no answer"))),
        }
    }

    /// The last `lines` lines of container `container` of pod `pod`.
    pub async fn log_tail(&self, pod: &str, container: &str, lines: i64) -> Result<String> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), &self.region.namespace);
        let params = LogParams {
            container: Some(container.into()),
            tail_lines: Some(lines),
            ..LogParams::default()
        };
        timed(|| format!("reading the log of pod {pod}"), api.logs(pod, &params))
            .await
            .map_err(|reason| self.error(reason))
    }

    /// The address peers in other regions and the engine (`access = "node-port"`) reach this region's node
    /// ports at: the configured one, else the first Ready node's external (or internal) IP.
    pub async fn node_address(&self) -> Result<String> {
        if let Some(address) = &self.region.node_address {
            return Ok(address.clone());
        }
        let api: Api<Node> = Api::all(self.client.clone());
        let nodes = timed(|| "listing nodes".to_string(), api.list(&ListParams::default()))
            .await
            .map_err(|reason| self.error(format!("{reason} (set node_address for the region to skip this)")))?;
        let ready = |node: &Node| {
            node.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        let address = nodes.items.iter().filter(|n| ready(n)).find_map(|node| {
            let addresses = node.status.as_ref()?.addresses.as_ref()?;
            let of = |kind: &str| addresses.iter().find(|a| a.type_ == kind).map(|a| a.address.clone());
            of("ExternalIP").or_else(|| of("InternalIP"))
        });
        address.ok_or_else(|| self.error("no Ready node has an address (set node_address for the region)".into()))
    }

    /// Deletes object `kind` `name` (of `api_version`) in `namespace`; one already gone is fine.
    pub async fn delete_object(&self, namespace: &str, api_version: &str, kind: &str, name: &str) -> Result<()> {
        let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
        let resource = resource(group, version, kind);
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &resource);
        match tokio::time::timeout(CALL_TIMEOUT, api.delete(name, &DeleteParams::background())).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) if not_found(&err) => Ok(()),
            Ok(Err(err)) => Err(self.error(format!("deleting {kind} {namespace}/{name}: {}", describe(&err)))),
            Err(_) => Err(self.error(format!("deleting {kind} {namespace}/{name}: no answer"))),
        }
    }

    /// Deletes every object of `network` in the region's namespace; how many StatefulSets there were.
    pub async fn delete_network(&self, network: &str) -> Result<usize> {
        let selector = network_selector(network);
        let mut stateful_sets = 0;
        for (group, version, kind) in KINDS {
            let (api, _) = self.dynamic(group, version, kind);
            let list = timed(
                || format!("listing {kind}s of network `{network}`"),
                api.list(&ListParams::default().labels(&selector)),
            )
            .await
            .map_err(|reason| self.error(reason))?;
            for object in list.items {
                let name = object.metadata.name.unwrap_or_default();
                let params = DeleteParams::background();
                match tokio::time::timeout(CALL_TIMEOUT, api.delete(&name, &params)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) if not_found(&err) => {}
                    Ok(Err(err)) => return Err(self.error(format!("deleting {kind} {name}: {}", describe(&err)))),
                    Err(_) => return Err(self.error(format!("deleting {kind} {name}: no answer"))),
                }
                if *kind == "StatefulSet" {
                    stateful_sets += 1;
                }
            }
        }
        Ok(stateful_sets)
    }

    /// Waits until no object of `network` is left in the region's namespace (pods end after their grace).
    pub async fn wait_network_gone(&self, network: &str, timeout: Duration) -> Result<()> {
        let selector = network_selector(network);
        let deadline = Instant::now() + timeout;
        loop {
            let mut left = Vec::new();
            for (group, version, kind) in KINDS {
                let (api, _) = self.dynamic(group, version, kind);
                let list = timed(
                    || format!("listing {kind}s of network `{network}`"),
                    api.list(&ListParams::default().labels(&selector)),
                )
                .await
                .map_err(|reason| self.error(reason))?;
                left.extend(
                    list.items
                        .into_iter()
                        .map(|o| format!("{kind} {}", o.metadata.name.unwrap_or_default())),
                );
            }
            if left.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(self.error(format!(
                    "objects of network `{network}` are still there after {timeout:?}: {}",
                    left.join(", ")
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}
