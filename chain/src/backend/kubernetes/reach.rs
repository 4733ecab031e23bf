//! Where a node is reached once its Services exist: the address and ports peers write into its enode (a cluster
//! IP in one region; a node address and node ports, or a load balancer's IP, across regions) and the URLs the
//! engine probes (cluster DNS, node ports or a load balancer, as the region's `access` says).

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use tokio_util::sync::CancellationToken;

use super::api::RegionApi;
use super::render::{self, object_name};
use super::{Access, KubeBackend, ServiceType};
use crate::error::{Error, Result};
use crate::output::PeerAddress;
use crate::spec::{Client, NetworkSpec, NodeSlot};

/// The node Services' addresses, once they exist.
pub(super) struct Reached {
    pub peer: PeerAddress,
    pub rpc: String,
    pub ws: Option<String>,
    pub metrics: Option<String>,
}

impl KubeBackend {
    /// How peers reach node `slot` (its peer Service) and the engine its RPC (its RPC Service).
    pub(super) async fn reach(
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
